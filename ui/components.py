"""Small Streamlit building blocks shared by the pages."""

from __future__ import annotations

import streamlit as st

from mnistcore.config import PRESETS
from mnistcore.runs import RunInfo
from ui import session, units_view
from ui.background import Status
from ui.figures import training_curves
from ui.jobs import ONE_CLICK_PRESET, TrainingJob


def live_progress(job: TrainingJob, curves: bool = False, key: str = "job", units: bool = False) -> None:
    """Progress (and curves, and the hidden units forming) of a job, refreshed every 0.5 s while it runs,
    with one full rerun at its end."""
    was_running = job.running

    @st.fragment(run_every=0.5 if was_running else None)
    def _live() -> None:
        snap = job.snapshot()
        with st.container(key=f"{key}_progress"):
            st.progress(snap.fraction, text=snap.progress_text)
        if curves:
            if snap.events:
                st.plotly_chart(training_curves(snap.events), key=f"{key}_curves")
            else:
                st.caption("The curves appear after the first batches.")
        if units:
            units_view.live_grid(snap, key)
        if was_running and not snap.running:
            session.activate_finished_job()
            st.rerun()

    _live()


def train_default_prompt(where: str) -> None:
    """For a user with no model yet: one obvious button that trains the model made for drawing, then its progress."""
    job = session.current_job()
    if job is not None and job.running:
        st.info("Training a model for you — this page updates by itself when it is ready.")
        live_progress(job, key=f"{where}_default")
        return
    preset = PRESETS[ONE_CLICK_PRESET]
    seconds = session.default_train_seconds()
    st.info(
        f"There is no trained model yet. Train one made for reading digits you draw: a network with one "
        f"hidden layer of {preset.hidden} units, trained for {preset.epochs} passes over "
        f"{60000 - preset.holdout:,} of MNIST's 60,000 handwritten digits (the other {preset.holdout:,} check how "
        "sure it may be), many of them slanted, stretched, thickened, blurred or broken the way digits drawn "
        f"with a mouse or a finger are. It takes about {seconds} s; then draw digits, explore its confusion "
        "matrix and its mistakes."
    )
    label = f"Train a model for drawing (~{seconds} s)"
    clicked = st.button(label, key=f"{where}_train_default", type="primary", icon=":material/bolt:")
    if clicked and session.start_job(preset) is not None:
        st.rerun()


def model_card(info: RunInfo) -> None:
    """The active model: test accuracy, shape and recipe, when and how long it trained."""
    c = info.config
    with st.container(border=True, key="model_card"):
        cols = st.columns([1, 2])
        cols[0].metric("Test accuracy", f"{info.test_accuracy:.2%}")
        cols[1].markdown(
            f"**784-{c.hidden}-10** · {c.optimizer} lr {c.lr:g} · batch {c.batch_size} · "
            f"{len(info.history)}/{c.epochs} epochs · seed {c.seed}"
            + (f" · dropout {c.dropout:g}" if c.dropout else "")
            + (" · one-cycle" if c.schedule == "onecycle" else "")
            + (" · augmented" if c.augment else "")
            + (" for drawing" if c.augment and c.augment_style == "draw" else "")
            + f"  \nTrained {info.created[:16].replace('T', ' ')} UTC in {info.train_seconds:.1f} s"
            + (" · **stopped early**" if info.stopped else "")
            + f"  \n`{info.run_id}`"
        )


def job_status_sidebar() -> None:
    """A one-line status of this session's running job in the sidebar (pages that show no progress of their own)."""
    job = session.current_job()
    if job is None or job.status != Status.RUNNING:
        return
    st.caption("Training in the background")
    live_progress(job, key="sidebar_job")
