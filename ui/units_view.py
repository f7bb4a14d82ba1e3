"""Watching hidden units form: the live grid on Train, and the epoch-by-epoch replay on Inside the network.

The pictures are Inside the network's own (ui.figures.unit_grid_figure): each unit's 784 input weights on
its own blue-white-red scale. The units are the run's watched ones (mnistcore/snapshots.py says which, and why).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from mnistcore.runs import RunInfo
from mnistcore.snapshots import watched_units
from ui import cache
from ui.figures import unit_grid_figure
from ui.jobs import JobSnapshot

COLS = 8
REPLAY = "net_replay_epoch"  # session: the epoch the replay shows
_CHART = {"displayModeBar": False, "staticPlot": True}  # pictures only: nothing to click, zoom or pan


def _grid(weights: np.ndarray, units: np.ndarray) -> go.Figure:
    """The units' weights ((K, 784) or (K, 28, 28)) as Inside the network draws them, captioned by unit number."""
    maps = np.asarray(weights, dtype=np.float32).reshape(len(units), 28, 28)
    return unit_grid_figure(maps, [f"#{j}" for j in units], [[int(j)] for j in units], cols=COLS)


def _which(units: np.ndarray, hidden: int) -> str:
    span = f"#{units[0]}–#{units[-1]}" if len(units) > 1 else f"#{units[0]}"
    return f"{len(units)} of the {hidden} hidden units ({span})"


def live_grid(snap: JobSnapshot, key: str) -> None:
    """The watched units' latest pictures from a running (or just ended) job, in container `{key}_units`."""
    with st.container(key=f"{key}_units"):
        event = snap.units
        st.markdown("**Hidden units forming**")
        if event is None or event.units is None:
            st.caption("The hidden units' pictures appear with the first progress report.")
            return
        units = watched_units(snap.config.hidden)
        when = f"epoch {event.epoch}/{event.epochs}, batch {event.batch}/{event.batches}"
        after = "" if snap.running else " Inside the network replays them epoch by epoch."
        st.caption(
            f"The input weights of {_which(units, snap.config.hidden)} at {when}: ink on red pixels "
            f"switches a unit on, ink on blue ones holds it off; each picture has its own colour scale.{after}"
        )
        st.plotly_chart(_grid(event.units, units), key=f"{key}_units_grid", width="content", config=_CHART)


def _accuracy(info: RunInfo, epoch: int) -> float | None:
    """The test accuracy after `epoch` from the run's history (None for epoch 0 or an epoch not recorded)."""
    return next((float(h["test_accuracy"]) for h in info.history if h.get("epoch") == epoch), None)


def replay(run_id: str, info: RunInfo) -> None:
    """An epoch slider replaying the watched units' pictures and the test accuracy, from the run's snapshots."""
    st.subheader("How the units formed")
    snaps, damaged = cache.get_snapshots(run_id)
    with st.container(key="net_replay"):
        if snaps is None:
            if damaged:
                st.warning(f"There is no replay for this run: its snapshots cannot be read ({damaged}).")
            else:
                st.info(
                    "There is no replay for this run: it was saved before MNIST Lab kept a picture of its "
                    "hidden units after every epoch. Runs trained from now on have one."
                )
            return
        first, last = int(snaps.epochs[0]), int(snaps.epochs[-1])
        if first == last:
            epoch = last
            st.caption(f"This run kept one snapshot only (epoch {last}): there is nothing to replay.")
        else:
            value = st.session_state.get(REPLAY)
            if not isinstance(value, int) or not first <= value <= last:
                st.session_state[REPLAY] = last  # a new run, or one with fewer epochs: its end
            epoch = st.slider("Epoch", first, last, key=REPLAY, help="0 is the random start, before any training.")
        units = watched_units(info.config.hidden)
        acc, before = _accuracy(info, epoch), _accuracy(info, epoch - 1)
        c = st.columns([1, 3])
        if epoch == 0:
            c[0].metric("Test accuracy before training", "—", help="Measured after each epoch, not before the first.")
        elif acc is None:
            c[0].metric(f"Test accuracy after epoch {epoch}", "—", help="Not in this run's history.")
        else:
            delta = f"{(acc - before) * 100:+.2f} points" if before is not None else None
            c[0].metric(f"Test accuracy after epoch {epoch}", f"{acc:.2%}", delta=delta)
        c[1].caption(
            f"The input weights of {_which(units, info.config.hidden)}, the ones watched while it trained, "
            f"{'before training' if epoch == 0 else f'after epoch {epoch}'}. Move the slider to see them "
            f"form: {len(snaps.epochs)} snapshots of {snaps.bytes_per_epoch:,} bytes each."
        )
        st.plotly_chart(_grid(snaps.at(epoch), units), key="net_replay_grid", width="content", config=_CHART)
