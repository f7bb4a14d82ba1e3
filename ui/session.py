"""Per-session state: who this browser is, its active run, and its training job (start, keep, discard).

Nothing here is shared between sessions except through the job registry, which keys jobs by browser, or,
with sign-in, by person (ui/auth.py): then a person's job, drawings and active model follow them to every
browser (the active model is kept in <runs dir>/.users/<key>.json).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import streamlit as st

from mnistcore.config import TrainConfig
from mnistcore.fileio import atomic_write_json, read_bounded
from mnistcore.runs import RunQuotaError, RunStore
from ui import auth, cache
from ui.background import JobError
from ui.jobs import REGISTRY, JobSnapshot, TrainingJob, browser_key, is_one_click_recipe

ACTIVE_RUN = "ui_active_run"  # session_state key: the run id the user has chosen (or None)
ACTIVE_GONE = "ui_active_gone"  # session_state key: the active run that was deleted elsewhere, to tell the user
ACTIVATED_JOB = "ui_activated_job"  # session_state key: the (job, run) whose run was last made active
SESSION_ID = "ui_session_id"  # session_state key: this browser's id
KEEP_IF_CLOSED = "train_keep_if_closed"  # session_state key: keep a job's partial model if its page is closed
UI_REPORT_EVERY = 10  # batches between progress events: smooth curves even on a slow machine
RUN_PARAM = "run"  # ?run=ID in the URL: the run a page shows, so that a copied link reopens the same view
LINK_SEEN = "ui_run_link_seen"  # session_state key: the ?run= value already acted on
MISSING_LINK = "ui_missing_link"  # session_state key: a linked run that does not exist, until the user moves on


USERS_DIR = ".users"  # in the runs dir: per-person settings (the active model), one small JSON file each


def session_id() -> str:
    """Whose jobs, tasks and drawings these are: the signed-in person's key (ui/auth.py), else this browser's.

    The browser's id is kept in session state: the same after a reload, private to the browser.

    Derived from Streamlit's XSRF cookie (one secret per browser, re-masked on every page load), so a
    user who reloads (or whose page got stuck) finds their running job again. Without the cookie
    (AppTest, XSRF protection off) it is a random id that lives as long as the session.
    """
    if (key := auth.user_key()) is not None:
        return key
    if SESSION_ID not in st.session_state:
        st.session_state[SESSION_ID] = browser_key(st.context.cookies.get("_streamlit_xsrf")) or uuid.uuid4().hex
    return st.session_state[SESSION_ID]


def _prefs_path(key: str) -> Path:
    return Path(cache.runs_dir()) / USERS_DIR / f"{key}.json"


def _saved_active(key: str) -> str | None:
    """The signed-in person's active model as last chosen on any browser (None: none saved or unreadable)."""
    try:
        value = json.loads(read_bounded(_prefs_path(key), 4096)).get("active_run")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def active_run_id() -> str | None:
    """The session's active run: its choice when that run still exists, else the newest run, else None.

    With sign-in, the person's choice on another browser wins over this tab's older one.
    """
    ids = [r.run_id for r in cache.list_runs()]
    if (key := auth.user_key()) is not None and (saved := _saved_active(key)) in ids:
        st.session_state[ACTIVE_RUN] = saved
    _follow_link(ids)
    chosen = st.session_state.get(ACTIVE_RUN)
    if chosen not in ids:
        if chosen is not None:  # deleted elsewhere (another tab or user): the sidebar tells the user
            st.session_state[ACTIVE_GONE] = chosen
        chosen = ids[0] if ids else None
        st.session_state[ACTIVE_RUN] = chosen
    # The URL follows the model shown (kept as it was while a link to a missing run awaits the user).
    if chosen is not None and MISSING_LINK not in st.session_state and st.query_params.get(RUN_PARAM) != chosen:
        st.query_params[RUN_PARAM] = chosen
        st.session_state[LINK_SEEN] = chosen
    return chosen


def _follow_link(ids: list[str]) -> None:
    """A new ?run=ID in the URL makes that run active; one that does not exist is remembered for link_notice()."""
    linked = st.query_params.get(RUN_PARAM)
    if linked is None or linked == st.session_state.get(LINK_SEEN):
        return
    st.session_state[LINK_SEEN] = linked
    if linked in ids:
        set_active(linked)
        st.session_state.pop(MISSING_LINK, None)
    else:
        st.session_state[MISSING_LINK] = linked


def _leave_missing_link() -> None:
    st.session_state.pop(MISSING_LINK, None)
    st.query_params.pop(RUN_PARAM, None)
    st.session_state[LINK_SEEN] = None


def link_notice() -> bool:
    """When the URL's ?run= names a run that does not exist: say so and offer the active model. True while shown."""
    missing = st.session_state.get(MISSING_LINK)
    if missing is None:
        return False
    active = active_run_id()
    with st.container(key="missing_run", border=True):
        st.warning(
            f"This link shows run `{missing}`, which does not exist on this server: it has been deleted "
            "(or the link is mistyped).",
            icon=":material/link_off:",
        )
        if active is not None:
            label = next((r.label for r in cache.list_runs() if r.run_id == active), active)
            st.button(
                f"Show the active model instead: {label}",
                key="missing_run_active",
                type="primary",
                on_click=_leave_missing_link,
            )
        else:
            st.button(
                "Continue (there are no saved models yet)", key="missing_run_active", on_click=_leave_missing_link
            )
    return True


def set_active(run_id: str | None) -> None:
    """Make `run_id` this session's active model (and, with sign-in, the person's on every browser)."""
    st.session_state[ACTIVE_RUN] = run_id
    if (key := auth.user_key()) is not None:
        try:
            _prefs_path(key).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(_prefs_path(key), {"active_run": run_id})
        except OSError:  # an unwritable runs dir: the choice still holds in this tab
            pass


def current_job() -> TrainingJob | None:
    """This browser's current (or last) training job; never another browser's. Counts as a sign of life."""
    job = REGISTRY.get(session_id())
    if job is not None:
        job.touch()
    return job


def start_job(config: TrainConfig, **job_options: Any) -> TrainingJob | None:
    """Start a training job for this browser; show the reason when it cannot start.

    job_options go to the job (e.g. extra=..., train_kwargs=...); keep_if_abandoned follows the user's
    choice on the Train page unless given.
    """
    job_options.setdefault("keep_if_abandoned", bool(st.session_state.get(KEEP_IF_CLOSED, False)))
    store = cache.store()
    if quota_full(store):
        return None
    try:
        return REGISTRY.start(
            session_id(), config.with_(report_every=UI_REPORT_EVERY), cache.get_data(), store, **job_options
        )
    except JobError as exc:
        st.error(str(exc))
        return None


def quota_full(store: RunStore) -> bool:
    """With sign-in: when the person already keeps as many runs as allowed, say so, link the Runs page, True."""
    try:
        store.check_quota()
    except RunQuotaError as exc:
        st.error(f"Training cannot start: {exc}.", icon=":material/inventory_2:")
        st.page_link("app_pages/runs.py", label="Open the Runs page", icon=":material/table_chart:")
        return True
    return False


def activate_finished_job(snap: JobSnapshot | None = None) -> bool:
    """Make a finished (or kept) job's run the active model once; True when that changed something."""
    if snap is None:
        job = current_job()
        if job is None:
            return False
        snap = job.snapshot()
    if snap.run_info is None or st.session_state.get(ACTIVATED_JOB) == (snap.job_id, snap.run_info.run_id):
        return False
    st.session_state[ACTIVATED_JOB] = (snap.job_id, snap.run_info.run_id)
    set_active(snap.run_info.run_id)
    return True


def keep(job: TrainingJob) -> None:
    """Save a stopped job's partial model and make it the active one (a second click does nothing)."""
    try:
        job.keep()
    except JobError as exc:
        st.session_state["ui_job_error"] = str(exc)
        return
    activate_finished_job()


def discard(job: TrainingJob) -> None:
    """Drop a stopped job's partial model."""
    try:
        job.discard()
    except JobError as exc:
        st.session_state["ui_job_error"] = str(exc)


def default_train_seconds() -> int:
    """How long the one-click model takes here: measured on this server, else from saved runs, else a guess."""
    saved = [r.train_seconds for r in cache.list_runs() if is_one_click_recipe(r.config)]
    return REGISTRY.default_seconds(saved)
