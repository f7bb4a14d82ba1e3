"""The training form (preset + hyper-parameters) and the job panel (progress, curves, Stop, keep/discard)."""

from __future__ import annotations

import streamlit as st

from mnistcore.config import OPTIMIZERS, PRESETS, SCHEDULES, TrainConfig
from ui import components, session
from ui.background import Status
from ui.jobs import TrainingJob

BATCH_SIZES = [16, 32, 64, 128, 256, 512, 1024, 2048]
LEARNING_RATES = [1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1]
EPOCH_SLIDER_MAX = 20  # the Epochs slider's end (further when the chosen preset has more epochs)
FIELDS = {  # widget key -> TrainConfig field
    "train_hidden": "hidden",
    "train_epochs": "epochs",
    "train_batch": "batch_size",
    "train_lr": "lr",
    "train_optimizer": "optimizer",
    "train_seed": "seed",
    "train_dropout": "dropout",
    "train_schedule": "schedule",
    "train_augment": "augment",
}
_BEST = PRESETS["best"]
_DRAW = PRESETS["draw"]


def _apply_preset() -> None:
    """Copy the chosen preset's values into the form's widgets."""
    preset = PRESETS[st.session_state.get("train_preset", "default")]
    for key, name in FIELDS.items():
        st.session_state[key] = getattr(preset, name)


def _max_epochs() -> int:
    return max(EPOCH_SLIDER_MAX, PRESETS[st.session_state.get("train_preset", "default")].epochs)


def form(disabled: bool) -> TrainConfig | None:
    """Draw the preset selector and the form; the config to train when Start was pressed, else None."""
    if not st.session_state.get("train_form_ready"):  # first visit in this session: the default preset
        _apply_preset()
        st.session_state["train_form_ready"] = True
    st.selectbox(
        "Preset",
        list(PRESETS),
        key="train_preset",
        on_change=_apply_preset,
        persist_state="session",
        help="default: the seed recipe (784-128-10, Adam, 5 epochs). best: the strongest shallow net we "
        f"know ({_BEST.hidden} hidden, one-cycle schedule, distorted training images, {_BEST.epochs} "
        f"epochs of batch {_BEST.batch_size}). draw: made for digits you draw ({_DRAW.hidden} hidden, "
        f"{_DRAW.epochs} epochs, training images distorted the way drawn digits differ from MNIST's: slant, "
        "width, bold or soft strokes, broken loops). With a time budget it fits the time you give it.",
    )
    with st.form("train_form", border=True):
        c = st.columns(3)
        c[0].number_input("Hidden units", 16, 2048, step=16, key="train_hidden", persist_state="session")
        c[1].slider("Epochs", 1, _max_epochs(), key="train_epochs", persist_state="session")
        c[2].selectbox("Batch size", BATCH_SIZES, key="train_batch", persist_state="session")
        c = st.columns(3)
        c[0].select_slider(
            "Learning rate", LEARNING_RATES, key="train_lr", format_func=lambda v: f"{v:g}", persist_state="session"
        )
        c[1].radio(
            "Optimizer",
            OPTIMIZERS,
            key="train_optimizer",
            horizontal=True,
            persist_state="session",
            help="adam, or sgd with Nesterov momentum 0.9",
        )
        c[2].number_input("Seed", 0, 2**31 - 1, step=1, key="train_seed", persist_state="session")
        with st.expander("Regularisation (used by the best and draw presets)"):
            c = st.columns(3)
            c[0].slider("Dropout", 0.0, 0.8, step=0.05, key="train_dropout", persist_state="session")
            c[1].selectbox("Learning-rate schedule", SCHEDULES, key="train_schedule", persist_state="session")
            c[2].checkbox("Augment training images", key="train_augment", persist_state="session")
        st.number_input(
            "Time budget in seconds (0: train for the epochs above)",
            0,
            3600,
            step=10,
            key="train_budget",
            persist_state="session",
            help="When set, the first steps measure how fast this machine trains this recipe, and the "
            "number of epochs is chosen so that training ends within about 10 % of the budget "
            "(the epochs above are then ignored; the run records what was chosen).",
        )
        st.checkbox(
            "If I close this page while it trains, keep what it has learned so far",
            key=session.KEEP_IF_CLOSED,
            persist_state="session",
            help="A job whose page stays closed for a few minutes stops by itself and frees its slot; "
            "its partial model is then saved as a 'stopped early' run only if this is ticked.",
        )
        start = st.form_submit_button(
            "Start training", type="primary", key="train_start", disabled=disabled, icon=":material/play_arrow:"
        )
    if not start:
        return None
    values = {name: st.session_state[key] for key, name in FIELDS.items()}
    values["lr"] = float(values["lr"])
    budget = st.session_state.get("train_budget") or 0
    values["budget_seconds"] = float(budget) if budget > 0 else None
    try:
        return PRESETS[st.session_state.get("train_preset", "default")].with_(**values)
    except ValueError as exc:
        st.error(f"Invalid settings: {exc}")
        return None


def panel(job: TrainingJob) -> None:
    """This session's job, drawn from one snapshot: live progress and curves; Stop while it runs;
    keep/discard after a stop; what happened when its page was closed."""
    snap = job.snapshot()
    if snap.running:
        st.button(
            "Stop",
            key="train_stop",
            on_click=job.stop,
            icon=":material/stop:",
            help="Ends training within one batch; then keep or discard the partial model.",
        )
        fate = "kept" if snap.keep_if_abandoned else "discarded"
        st.caption(
            f"If you close this page, training stops by itself after {job.abandon_after / 60:.0f} minutes "
            f"without it, and the partial model is {fate}."
        )
    components.live_progress(job, curves=True, key="train", units=True)
    if err := st.session_state.pop("ui_job_error", None):
        st.error(err)
    if snap.warning:
        st.warning(snap.warning)
    if snap.status == Status.FINISHED and snap.run_info is not None:
        st.success(
            f"Saved as `{snap.run_info.run_id}` ({snap.run_info.test_accuracy:.2%} on the test set) — "
            "it is now the active model."
        )
        st.page_link("app_pages/draw.py", label="Draw a digit with it", icon=":material/draw:")
    elif snap.status == Status.KEPT and snap.run_info is not None:
        why = "Its page was closed, so training stopped by itself. " if snap.abandoned else ""
        st.success(f"{why}Partial model kept as `{snap.run_info.run_id}`; it is now the active model.")
    elif snap.status == Status.DISCARDED and snap.abandoned:
        st.info("Its page was closed, so training stopped by itself and the partial model was discarded.")
    elif snap.status == Status.STOPPED:
        st.warning(f"Training stopped. The partial model scores {snap.test_accuracy:.2%} on the test set.")
        c = st.columns(2)
        c[0].button("Keep the partial model", key="train_keep", on_click=session.keep, args=(job,), type="primary")
        c[1].button("Discard it", key="train_discard", on_click=session.discard, args=(job,))
    elif snap.status == Status.FAILED:
        st.error(f"Training failed: {snap.error}")
