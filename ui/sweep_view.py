"""Train page parts for experiments: continue the active model, sweep one setting, and the sweep's live panel."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from mnistcore.config import PRESETS, TrainConfig
from mnistcore.experiments import MAX_SWEEP_VALUES, SWEEPABLE, parse_values
from mnistcore.runs import RunError, RunInfo
from mnistcore.train import EpochEvent
from ui import auth, cache, session
from ui.background import JobError, Status
from ui.figures import sweep_figure
from ui.jobs import TrainingJob
from ui.runs_view import recipe
from ui.sweep_job import CHAINS, Chain, ChainSnapshot

# The settings offered for a sweep, with a label and a starting list of values.
SWEEP_CHOICES: dict[str, tuple[str, str]] = {
    "hidden": ("Hidden units", "32,64,128,256"),
    "lr": ("Learning rate", "0.0005,0.001,0.002,0.005"),
    "epochs": ("Epochs", "1,3,5"),
    "batch_size": ("Batch size", "32,128,512"),
    "dropout": ("Dropout", "0,0.2,0.4"),
    "weight_decay": ("Weight decay", "0,0.0001,0.001"),
    "seed": ("Seed", "0,1,2"),
    "augment_share": ("Share of distorted images (with augment)", "0.25,0.5,1"),
}
assert set(SWEEP_CHOICES) <= set(SWEEPABLE)
STATUS_TEXT = {
    Status.FINISHED: "done",
    Status.RUNNING: "training…",
    Status.STOPPED: "stopped",
    Status.FAILED: "failed",
    Status.SKIPPED: "not run",
    Status.WAITING: "waiting",
}


def current() -> Chain | None:
    """This browser's current (or last) sweep or continued run."""
    return CHAINS.get(session.session_id())


def busy() -> bool:
    """True while this browser's sweep (or continued run) is going on, between its runs too."""
    chain = current()
    return chain is not None and chain.running


ACTIVE = "active"  # sweep base: the active model's settings (else a preset's name)


def _recipe(info: RunInfo | None) -> tuple[TrainConfig, str]:
    """The chosen base recipe, and the key of its 'Epochs per run' field.

    One field per base (and per active model), so that a new base brings its own epochs without the server
    overwriting a field the user may be typing in at that moment.
    """
    choice = st.session_state.get("sweep_base", ACTIVE)
    if choice == ACTIVE and info is not None:
        return info.config, f"sweep_epochs_{info.run_id}"
    choice = choice if choice in PRESETS else "default"
    return PRESETS[choice], f"sweep_epochs_{choice}"


def _base_config(info: RunInfo | None) -> TrainConfig:
    """The settings every run of the sweep shares: the chosen base recipe with the chosen epochs per run."""
    base, key = _recipe(info)
    if st.session_state.get("sweep_param") != "epochs" and key in st.session_state:
        base = base.with_(epochs=int(st.session_state[key]))
    return base.with_(report_every=session.UI_REPORT_EVERY)


def _values_key(param: str) -> str:
    return f"sweep_values_{param}"  # one field per setting, for the same reason as the epochs fields


def _start_sweep(info: RunInfo | None) -> None:
    param = st.session_state["sweep_param"]
    try:
        values = parse_values(param, st.session_state.get(_values_key(param), ""))
        base = _base_config(info)
        CHAINS.start_sweep(session.session_id(), param, values, base, cache.get_data(), cache.store())
    except (ValueError, JobError) as exc:
        st.session_state["sweep_error"] = str(exc)


def _start_resume(run_id: str) -> None:
    try:
        CHAINS.start_resume(
            session.session_id(),
            run_id,
            int(st.session_state["resume_epochs"]),
            cache.get_data(),
            cache.store(),
            report_every=session.UI_REPORT_EVERY,
        )
    except (ValueError, JobError, RunError) as exc:
        st.session_state["sweep_error"] = str(exc)


def controls(disabled: bool) -> None:
    """'Continue this run' and 'Sweep one setting', side by side."""
    if err := st.session_state.pop("sweep_error", None):
        st.error(err)
    left, right = st.columns(2)
    run_id = session.active_run_id()
    info = next((r for r in cache.list_runs() if r.run_id == run_id), None)
    with left.expander("Continue the active model", icon=":material/resume:"):
        if info is None:
            st.caption("There is no saved model yet.")
        elif not auth.may_change(info.owner):
            st.caption(
                f"The active model is {info.owner.display if info.owner else 'not yours'}'s: only its owner "
                "(or an instructor) can continue it. Make one of yours active to continue it."
            )
        else:
            st.caption(
                f"Train **{info.label}** for more epochs, from its weights and (when it was saved with "
                "it) its optimizer state, with its own settings. It is saved as a new run; the original "
                "stays as it is."
            )
            st.number_input("More epochs", 1, 50, 3, key="resume_epochs", persist_state="session")
            st.button(
                "Continue this run",
                key="resume_start",
                on_click=_start_resume,
                args=(info.run_id,),
                disabled=disabled,
                icon=":material/fast_forward:",
            )
    with right.expander("Sweep one setting", icon=":material/tune:"):
        bases = ([ACTIVE] if info is not None else []) + list(PRESETS)
        if st.session_state.get("sweep_base") not in bases:
            st.session_state["sweep_base"] = bases[0]
        st.session_state.setdefault("sweep_param", "hidden")
        c = st.columns([1.3, 1])
        c[0].selectbox(
            "Start from",
            bases,
            key="sweep_base",
            format_func=lambda b: "the active model's settings" if b == ACTIVE else f"the {b} preset",
        )
        recipe_base, epochs_key = _recipe(info)
        c[1].number_input(
            "Epochs per run",
            1,
            200,
            value=recipe_base.epochs,
            key=epochs_key,
            disabled=st.session_state["sweep_param"] == "epochs",
        )
        c = st.columns([1, 1.3])
        c[0].selectbox("Setting", list(SWEEP_CHOICES), key="sweep_param", format_func=lambda p: SWEEP_CHOICES[p][0])
        param = st.session_state["sweep_param"]
        c[1].text_input(
            "Values", SWEEP_CHOICES[param][1], key=_values_key(param), help=f"Comma-separated, up to {MAX_SWEEP_VALUES}"
        )
        base = _base_config(info)
        st.caption(
            f"One run per value, one after another in the background, each saved and named after its "
            f"value. The rest: 784-{base.hidden}-10 · {recipe(base)} · {base.epochs} "
            f"epoch{'s' if base.epochs != 1 else ''}."
        )
        st.button(
            "Start sweep",
            key="sweep_start",
            on_click=_start_sweep,
            args=(info,),
            disabled=disabled,
            icon=":material/play_arrow:",
        )


def _rows(snap: ChainSnapshot, live: float | None) -> pd.DataFrame:
    return pd.DataFrame(
        {
            snap.param or "value": [s.value for s in snap.steps],
            "status": [STATUS_TEXT.get(s.status, s.status) for s in snap.steps],
            "test accuracy": [(live if s.status == Status.RUNNING else s.test_accuracy) for s in snap.steps],
            "time (s)": [s.seconds for s in snap.steps],
            "run": [s.name or "" for s in snap.steps],
        }
    )


def panel(chain: Chain, page_job: TrainingJob | None) -> None:
    """The sweep's live table and chart (test accuracy against the swept value), Stop after this run / now.

    `page_job` is the job whose panel this page run shows: when the chain moves on to a new job, the page
    reruns to show that one's instead.
    """
    was_running = chain.running
    shown = page_job.job_id if page_job is not None else None

    @st.fragment(run_every=1.0 if was_running else None)
    def _live() -> None:
        snap = chain.snapshot()
        # A new step's job appears on the page (its live curves, Stop, keep/discard) only with a full rerun.
        step_job = snap.steps[snap.current].job_id if snap.current is not None else None
        if step_job is not None and step_job != shown:
            st.rerun()
        if snap.kind == "resume":
            _resume_summary(snap)
        else:
            _sweep_panel(chain, snap)
        if was_running and not snap.running:
            session.activate_finished_job()
            st.rerun()

    _live()


def _sweep_panel(chain: Chain, snap: ChainSnapshot) -> None:
    job = session.current_job()
    live = None
    if snap.current is not None and job is not None and job.job_id == snap.steps[snap.current].job_id:
        epochs = [e for e in job.snapshot().events if isinstance(e, EpochEvent)]
        live = epochs[-1].test_accuracy if epochs else None
    with st.container(key="sweep_panel", border=True):
        head = st.columns([3, 1.2, 1], vertical_alignment="center")
        head[0].markdown(f"**Sweep of {snap.param}** · {snap.done} of {len(snap.steps)} runs done · {snap.message}")
        if snap.running:
            head[1].button(
                "Stop after this run",
                key="sweep_stop_after",
                disabled=snap.stop_requested,
                on_click=chain.stop_after_current,
                icon=":material/skip_next:",
                help="The run in progress finishes and is saved; no further run starts.",
            )
            head[2].button(
                "Stop now",
                key="sweep_stop_now",
                on_click=chain.stop_now,
                icon=":material/stop:",
                help="Ends the run in progress within a batch (then keep or discard it, below).",
            )
        left, right = st.columns([1.1, 1])
        pct = st.column_config.NumberColumn(format="percent")
        left.dataframe(
            _rows(snap, live),
            hide_index=True,
            key="sweep_table",
            placeholder="–",
            column_config={"test accuracy": pct, "time (s)": st.column_config.NumberColumn(format="%.1f")},
        )
        accs = [
            live if s.status == Status.RUNNING else (s.test_accuracy if s.status == Status.FINISHED else None)
            for s in snap.steps
        ]
        with right:
            st.plotly_chart(
                sweep_figure(snap.param or "value", [s.value for s in snap.steps], accs, snap.current),
                key="sweep_chart",
                config={"displayModeBar": False},
            )
        done = [s.run_id for s in snap.steps if s.status == Status.FINISHED and s.run_id]
        if not snap.running and len(done) >= 2:
            st.page_link(
                "app_pages/runs.py",
                label="Compare them on the Runs page",
                icon=":material/table_chart:",
                query_params={"compare": ",".join(done[:4])},
            )


def _resume_summary(snap: ChainSnapshot) -> None:
    step = snap.steps[0]
    if snap.running:
        st.info(f"Continuing run `{snap.parent}` for {step.config.epochs} more epochs — progress below.")
    elif step.status == Status.FINISHED:
        st.success(
            f"Saved as `{step.run_id}`, continuing `{snap.parent}` "
            f"({step.test_accuracy:.2%} on the test set). It is now the active model."
        )
    elif step.status == Status.FAILED:
        st.error(snap.message)
