"""Server-wide, read-only caches: the dataset, loaded models, evaluations and the pictures made from them.

Everything here is shared by all sessions and must never be mutated: models are in eval mode and only
used under no_grad, evaluation arrays are made read-only. Per-session state lives in ui/session.py.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import streamlit as st

from mnistcore.data import DataError, MnistData, default_data_dir, load_mnist, provision_mnist
from mnistcore.evaluate import Evaluation, cell_indices, evaluate
from mnistcore.model import ShallowNet
from mnistcore.ood import OodModel
from mnistcore.predict import predict_prepared
from mnistcore.preprocess import prepare_digit
from mnistcore.runs import META, RunError, RunInfo, RunStore, default_runs_dir
from mnistcore.snapshots import UnitSnapshots
from ui.background import process
from ui.figures import mosaic, upscale
from ui.gallery import html_grid


def data_dir() -> str:
    return str(default_data_dir().resolve())


def runs_dir() -> str:
    return str(default_runs_dir().resolve())


def store() -> RunStore:
    """The runs store acting for this session's person (ui/auth.py): with sign-in it owns, checks and limits."""
    from ui import auth

    return RunStore(runs_dir(), actor=auth.actor())


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


@st.cache_resource(max_entries=16, show_spinner=False)
def _load_ood(root: str, run_id: str) -> OodModel | None:
    store = RunStore(root)
    ood = store.load_ood(store.info(run_id))
    if ood is not None:
        ood.means.setflags(write=False)
        ood.bases.setflags(write=False)
    return ood


def get_ood(run_id: str) -> OodModel | None:
    """The run's "not a digit" model (read-only, shared), or None: an older run, or one gone meanwhile."""
    try:
        _check_exists(runs_dir(), run_id)
        return _load_ood(runs_dir(), run_id)
    except RunError:
        return None


@st.cache_resource(max_entries=16, show_spinner=False)
def _load_snapshots(root: str, run_id: str) -> UnitSnapshots | None:
    store = RunStore(root)
    snaps = store.load_snapshots(store.info(run_id))
    if snaps is not None:
        for arr in (snaps.units, snaps.epochs, snaps.weights):
            arr.setflags(write=False)
    return snaps


def get_snapshots(run_id: str) -> tuple[UnitSnapshots | None, str | None]:
    """The run's per-epoch pictures of its watched units (read-only, shared): (snapshots, None); (None, None)
    for a run saved without them; (None, why) when its file is damaged."""
    try:
        return _load_snapshots(runs_dir(), run_id), None
    except RunError as exc:
        return None, str(exc)


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
    arrays = (ev.labels, ev.predictions, ev.probabilities, ev.confusion, ev.precision, ev.recall, ev.support, ev.f1)
    for arr in (*arrays, *([ev.logits] if ev.logits is not None else [])):
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


def _meta_stamp(root: str, run_id: str) -> tuple[int, int, int]:
    """(inode, mtime ns, size) of the run's meta.json: changes with every rename; RunError once it is deleted.

    Another server process may share the runs dir: the caches below are keyed by run id (whose weights never
    change), so each use first checks here that the run still exists, and its info is re-read when this
    stamp changes, so a rename or delete made elsewhere shows at the next page run.
    """
    if not run_id or run_id.startswith(".") or "/" in run_id or "\\" in run_id:
        raise RunError(f"{run_id!r} is not a run id")
    try:
        st_ = os.stat(os.path.join(root, run_id, META))
    except OSError:
        raise RunError(f"no run {run_id!r} in {root}: it has been deleted (here or by another server)") from None
    return st_.st_ino, st_.st_mtime_ns, st_.st_size


@st.cache_resource(max_entries=64, show_spinner=False)
def _run_info(root: str, run_id: str, stamp: tuple[int, int, int]) -> RunInfo:
    return RunStore(root).info(run_id)


def _check_exists(root: str, run_id: str) -> tuple[int, int, int]:
    """The run's meta stamp; a run deleted elsewhere is dropped from the caches and RunError raised."""
    try:
        return _meta_stamp(root, run_id)
    except RunError:
        forget_run(run_id)
        raise


def get_model(run_id: str) -> tuple[ShallowNet, RunInfo] | None:
    """The saved model (shared, read-only) with its current info, or None after showing why it cannot be loaded."""
    root = runs_dir()
    try:
        stamp = _check_exists(root, run_id)
        model, _ = _load_model(root, run_id)
        return model, _run_info(root, run_id, stamp)
    except RunError as exc:
        st.error(f"That saved model cannot be loaded: {exc}")
        return None


def get_evaluation(run_id: str) -> Evaluation | None:
    """The run's evaluation on the test set (shared, read-only), or None after showing why not."""
    get_data()
    try:
        _check_exists(runs_dir(), run_id)
        return _evaluation(runs_dir(), run_id, data_dir())
    except RunError as exc:
        st.error(f"That saved model cannot be evaluated: {exc}")
        return None


def cell_grid(run_id: str, true: int, pred: int) -> tuple[str, int]:
    """HTML grid of the test images in one confusion cell (most confident first) and how many there are."""
    _check_exists(runs_dir(), run_id)
    return _cell_grid(runs_dir(), run_id, data_dir(), int(true), int(pred))


def forget_run(run_id: str) -> None:
    """Drop a deleted run from the caches."""
    _load_model.clear(runs_dir(), run_id)
    _load_ood.clear(runs_dir(), run_id)
    _evaluation.clear(runs_dir(), run_id, data_dir())
    _load_snapshots.clear(runs_dir(), run_id)


def test_images() -> np.ndarray:
    """The 10 000 test images as a (read-only by convention) uint8 array."""
    return get_data().test_images.numpy()


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


@st.cache_resource(show_spinner=False)
def _jobs_warmed() -> threading.Thread:
    thread = threading.Thread(target=process.warm_up, name="mnist-forkserver-warm-up", daemon=True)
    thread.start()
    return thread


def warm_up_jobs() -> None:
    """Start the training jobs' forkserver once per server, in the background."""
    _jobs_warmed()
