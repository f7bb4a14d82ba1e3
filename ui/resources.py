"""Shared, read-only resources (dataset, models, evaluations) cached once per server, plus session state.

Everything cached here is shared by all sessions and must never be mutated: models are in eval mode
and only used under no_grad, evaluation arrays are made read-only.
"""

from __future__ import annotations

import uuid

import numpy as np
import streamlit as st

from mnistcore.data import DataError, MnistData, default_data_dir, load_mnist, provision_mnist
from mnistcore.evaluate import Evaluation, cell_indices, evaluate
from mnistcore.model import ShallowNet
from mnistcore.predict import predict_prepared
from mnistcore.preprocess import prepare_digit
from mnistcore.runs import RunError, RunInfo, RunStore, default_runs_dir
from ui.figures import mosaic, upscale
from ui.gallery import html_grid
from ui.jobs import REGISTRY, TrainingJob, browser_key

ACTIVE_RUN = "ui_active_run"  # session_state key: the run id the user has chosen (or None)
ACTIVATED_JOB = "ui_activated_job"
SESSION_ID = "ui_session_id"  # session_state key: the job whose run was last made active


def data_dir() -> str:
    return str(default_data_dir().resolve())


def runs_dir() -> str:
    return str(default_runs_dir().resolve())


def store() -> RunStore:
    return RunStore(runs_dir())


@st.cache_resource(show_spinner="Loading MNIST…")
def _load_data(path: str) -> MnistData:
    provision_mnist(path)
    return load_mnist(path)


def get_data() -> MnistData:
    """The dataset, loaded once per server; shows the reason and stops the page when it is missing."""
    try:
        return _load_data(data_dir())
    except DataError as exc:
        st.error(f"MNIST is not available: {exc}")
        st.stop()


@st.cache_resource(max_entries=16, show_spinner="Loading model…")
def _load_model(root: str, run_id: str) -> tuple[ShallowNet, RunInfo]:
    model, info = RunStore(root).load(run_id)
    model.requires_grad_(False)
    _warm_up(model)
    return model, info


def _warm_up(model: ShallowNet) -> None:
    """One throw-away prediction, so the first stroke on the canvas does not pay for lazy initialisation."""
    canvas = np.zeros((280, 280), np.uint8)
    canvas[60:220, 130:150] = 255
    digit = prepare_digit(canvas)
    if not digit.empty:
        predict_prepared(model, digit)


@st.cache_resource(max_entries=16, show_spinner="Evaluating on the 10 000 test images…")
def _evaluation(root: str, run_id: str, data_path: str) -> Evaluation:
    model, _ = _load_model(root, run_id)
    data = _load_data(data_path)
    ev = evaluate(model, data.test_images, data.test_labels)
    for arr in (ev.labels, ev.predictions, ev.probabilities, ev.confusion, ev.precision, ev.recall, ev.support):
        arr.setflags(write=False)
    return ev


@st.cache_resource(max_entries=64, show_spinner=False)
def _cell_grid(root: str, run_id: str, data_path: str, true: int, pred: int) -> tuple[str, int]:
    ev = _evaluation(root, run_id, data_path)
    idx = cell_indices(ev, true, pred)
    images = _load_data(data_path).test_images.numpy()[idx]
    conf = ev.confidence[idx]
    return html_grid(images, [f"{c:.2f}" for c in conf], idx), len(idx)


def list_runs() -> list[RunInfo]:
    return store().list()


def active_run_id() -> str | None:
    """The session's active run: its choice when that run still exists, else the newest run, else None."""
    runs = list_runs()
    ids = [r.run_id for r in runs]
    chosen = st.session_state.get(ACTIVE_RUN)
    if chosen not in ids:
        chosen = ids[0] if ids else None
        st.session_state[ACTIVE_RUN] = chosen
    return chosen


def set_active(run_id: str | None) -> None:
    st.session_state[ACTIVE_RUN] = run_id


def get_model(run_id: str) -> tuple[ShallowNet, RunInfo] | None:
    """The saved model (shared, read-only), or None after showing why it cannot be loaded."""
    try:
        return _load_model(runs_dir(), run_id)
    except RunError as exc:
        st.error(f"That saved model cannot be loaded: {exc}")
        return None


def get_evaluation(run_id: str) -> Evaluation | None:
    get_data()
    try:
        return _evaluation(runs_dir(), run_id, data_dir())
    except RunError as exc:
        st.error(f"That saved model cannot be evaluated: {exc}")
        return None


def cell_grid(run_id: str, true: int, pred: int) -> tuple[str, int]:
    """HTML grid of the test images in one confusion cell (most confident first) and how many there are."""
    return _cell_grid(runs_dir(), run_id, data_dir(), int(true), int(pred))


def forget_run(run_id: str) -> None:
    """Drop a deleted run from the caches."""
    _load_model.clear(runs_dir(), run_id)
    _evaluation.clear(runs_dir(), run_id, data_dir())


def test_images() -> np.ndarray:
    """The 10 000 test images as a (read-only by convention) uint8 array."""
    return get_data().test_images.numpy()


# ---------------------------------------------------------------- sessions and jobs

def session_id() -> str:
    """An id for this browser, kept in session state: the same after a reload, private to the browser.

    Derived from Streamlit's XSRF cookie (one secret per browser, re-masked on every page load), so a
    user who reloads (or whose page got stuck) finds their running job again. Without the cookie
    (AppTest, XSRF protection off) it is a random id that lives as long as the session.
    """
    if SESSION_ID not in st.session_state:
        st.session_state[SESSION_ID] = browser_key(st.context.cookies.get("_streamlit_xsrf")) or uuid.uuid4().hex
    return st.session_state[SESSION_ID]


def current_job() -> TrainingJob | None:
    return REGISTRY.get(session_id())


def activate_finished_job() -> bool:
    """Make a finished (or kept) job's run the active model once; True when that changed something."""
    job = current_job()
    if job is None:
        return False
    snap = job.snapshot()
    if snap.run_info is None or st.session_state.get(ACTIVATED_JOB) == (snap.job_id, snap.run_info.run_id):
        return False
    st.session_state[ACTIVATED_JOB] = (snap.job_id, snap.run_info.run_id)
    set_active(snap.run_info.run_id)
    return True


def default_train_seconds() -> int:
    from ui.jobs import is_default_recipe

    saved = [r.train_seconds for r in list_runs() if is_default_recipe(r.config)]
    return REGISTRY.default_seconds(saved)


@st.cache_resource(show_spinner=False)
def _sample_grid(data_path: str, per_class: int) -> np.ndarray:
    data = _load_data(data_path)
    labels = data.train_labels.numpy()
    images = data.train_images.numpy()
    picks = np.concatenate([np.flatnonzero(labels == d)[:per_class] for d in range(10)])
    return upscale(mosaic(images[picks], cols=per_class, pad=2, fill=40), 2)


def sample_grid(per_class: int = 12) -> np.ndarray:
    """A picture of the first `per_class` training images of each digit, one row per digit."""
    get_data()
    return _sample_grid(data_dir(), per_class)
