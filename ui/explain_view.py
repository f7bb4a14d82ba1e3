"""Explanation parts: the "why this, not that" maps (Draw, Errors, Confusion) and the Inside-the-network page."""

from __future__ import annotations

import threading
import weakref

import numpy as np
import streamlit as st

from mnistcore.data import MnistData
from mnistcore.explain import Explanation, NetWeights, UnitSummaries, explain, net_weights, unit_summaries
from mnistcore.model import ShallowNet
from ui import cache
from ui.figures import (
    digit_bars,
    diverging_rgb,
    pick_from_selection,
    templates_picture,
    unit_grid_figure,
    upscale_rgb,
    why_picture,
)
from ui.gallery import html_grid

PER_PAGE = 48  # units per page of the grid
COLS = 12
GRID = "net_grid"  # plotly chart key (its selection state)
PICKED = "net_unit"  # session: (run id, unit) last picked
LAST_CLICK = "net_last_click"  # the grid selection already acted on
UNIT_INPUT = "net_unit_input"

# float64 copies of the weights, one per loaded model: the shared models in ui.cache are never mutated,
# and a weak key lets a model evicted from that cache take its copy with it.
_WEIGHTS: weakref.WeakKeyDictionary[ShallowNet, NetWeights] = weakref.WeakKeyDictionary()
_WEIGHTS_LOCK = threading.Lock()


def weights_for(model: ShallowNet) -> NetWeights:
    """The model's explanation weights, converted once per model (~10-20 ms for a wide net)."""
    with _WEIGHTS_LOCK:
        w = _WEIGHTS.get(model)
    if w is None:
        w = net_weights(model)
        with _WEIGHTS_LOCK:
            _WEIGHTS[model] = w
    return w


def why_maps(
    model: ShallowNet,
    pixels: np.ndarray,
    key: str,
    other: int | None = None,
    other_label: str = "runner-up",
    factor: int = 6,
) -> Explanation:
    """'Evidence for D' and 'evidence for R' over the 28x28 input (pixels in [0, 1]), as one picture.

    D is the predicted digit; R is `other` when given (e.g. the true digit) and differs from D, else the
    runner-up. One composited RGB image (no chart), so it is cheap enough to redraw on every stroke; each
    28x28 map is drawn `factor` times larger (two maps: 56 * factor + 14 px wide). Returns the explanation.
    """
    ex = explain(weights_for(model), pixels, classes=[other] if other is not None else None)
    second = other if other is not None and other != ex.digit else ex.runner_up
    label = other_label if other is not None and other != ex.digit else "runner-up"
    picture = why_picture(
        ex.pixels,
        [
            (f"Evidence for {ex.digit}\n(predicted)", ex.attributions[ex.digit]),
            (f"Evidence for {second}\n({label})", ex.attributions[second]),
        ],
        factor=factor,
    )
    with st.container(key=f"{key}_why", width=picture.shape[1]):  # the caption wraps under the picture
        st.image(
            picture,
            caption=f"Why {ex.digit} and not {second}: red ink pushed the digit's score up, blue "
            "ink pushed it down (compared with a blank image). The stronger the colour, "
            "the bigger the push.",
            output_format="PNG",
            width=picture.shape[1],
        )
    return ex


# ---------------------------------------------------------------- Inside the network


@st.cache_resource(max_entries=4, show_spinner="Summarising every hidden unit on the 10 000 test images…")
def _summaries(root: str, run_id: str, data_path: str, _model: ShallowNet, _data: MnistData) -> UnitSummaries:
    """Keyed by run (ids are unique and runs never change); the model and data come from ui.cache."""
    s = unit_summaries(_model, _data.test_images, _data.test_labels)
    for arr in (
        s.weight_maps,
        s.output_weights,
        s.importance,
        s.order,
        s.active_share,
        s.top_images,
        s.top_activations,
        s.templates,
    ):
        arr.setflags(write=False)
    return s


def get_summaries(run_id: str, model: ShallowNet) -> UnitSummaries:
    """The run's hidden-unit summaries over the test set: cached per run, shared, read-only."""
    data = cache.get_data()
    return _summaries(cache.runs_dir(), run_id, cache.data_dir(), model, data)


def intro(s: UnitSummaries) -> None:
    dead = int((s.active_share == 0).sum())
    st.markdown(
        f"The network has **{s.hidden} hidden units**. Each one looks at the whole 28×28 image through its own "
        "weights, shown below as a small picture: ink on **red** pixels switches the unit on, ink on **blue** "
        "pixels holds it off. Each unit then votes for or against every digit with its 10 output weights. "
        "Units come in order of how much they moved the answers on the 10 000 test images; click one to see "
        "what it votes for and which test images excite it most."
        + (f" {dead} unit{'s' if dead != 1 else ''} never switch{'es' if dead == 1 else ''} on at all." if dead else "")
    )


def _picked(run_id: str, s: UnitSummaries) -> int:
    """The unit to show: a new click on the grid, else this session's last pick for this run, else the top unit."""
    clicked = pick_from_selection(st.session_state.get(GRID))
    if clicked != st.session_state.get(LAST_CLICK):
        st.session_state[LAST_CLICK] = clicked
        if clicked is not None and 0 <= clicked < s.hidden:
            st.session_state[PICKED] = (run_id, clicked)
    picked = st.session_state.get(PICKED)
    if not picked or picked[0] != run_id or not 0 <= picked[1] < s.hidden:
        picked = (run_id, int(s.order[0]))
        st.session_state[PICKED] = picked
    return int(picked[1])


def _typed(run_id: str) -> None:
    st.session_state[PICKED] = (run_id, int(st.session_state[UNIT_INPUT]))


def unit_grid(run_id: str, s: UnitSummaries) -> int:
    """One page of weight maps in importance order (clickable) and a unit-number box; the picked unit."""
    unit = _picked(run_id, s)
    rank = {int(j): r for r, j in enumerate(s.order)}
    pages = max(1, -(-s.hidden // PER_PAGE))
    head, box = st.columns([4, 1])
    with box:
        st.session_state[UNIT_INPUT] = unit  # the box follows clicks on the grid
        st.number_input("Unit number", 0, s.hidden - 1, step=1, key=UNIT_INPUT, on_change=_typed, args=(run_id,))
    with head:
        st.caption(
            f"All {s.hidden} units, most important first, {PER_PAGE} a page. Each picture has its own "
            "colour scale (white is a zero weight); the caption is the unit's number."
        )
        page = st.pagination(pages, key="net_page") if pages > 1 else 1
    shown = s.order[(page - 1) * PER_PAGE : page * PER_PAGE]
    where = np.flatnonzero(shown == unit)
    fig = unit_grid_figure(
        s.weight_maps[shown],
        [f"#{j}" for j in shown],
        [[int(j), rank[int(j)] + 1] for j in shown],
        cols=COLS,
        highlight=int(where[0]) if len(where) else None,
    )
    with st.container(key="net_grid_box"):
        st.plotly_chart(
            fig, key=GRID, on_select="rerun", selection_mode="points", width="content", config={"displayModeBar": False}
        )
    return unit


def unit_detail(s: UnitSummaries, unit: int, images: np.ndarray) -> None:
    """The picked unit: its weights large, its output weights, what turns it on, its top test images."""
    rank = int(np.flatnonzero(s.order == unit)[0]) + 1
    with st.container(key="net_unit_detail", border=True):
        st.subheader(f"Unit #{unit}")
        st.caption(
            f"Importance rank {rank} of {s.hidden} · on for {s.active_share[unit]:.0%} of the test images"
            + (
                " — a dead unit: it never switches on, so it never changes an answer"
                if s.active_share[unit] == 0
                else ""
            )
        )
        c = st.columns([1, 1.3, 1.3])
        w = s.weight_maps[unit]
        c[0].image(
            upscale_rgb(diverging_rgb(w), 8),
            caption=f"Input weights (red +, blue −; ±{float(np.abs(w).max()):.2f})",
            output_format="PNG",
        )
        with c[1]:
            st.markdown("**Votes for each digit** (output weights)")
            st.plotly_chart(
                digit_bars(s.output_weights[:, unit], "output weight"),
                key="net_out_weights",
                config={"displayModeBar": False},
            )
        with c[2]:
            st.markdown("**How strongly each digit switches it on** (mean activation)")
            if s.class_activation is not None:
                st.plotly_chart(
                    digit_bars(s.class_activation[:, unit], "mean activation", signed=False),
                    key="net_class_act",
                    config={"displayModeBar": False},
                )
        top = s.top_images[unit]
        st.markdown("**The test images that excite it most** (caption: activation)")
        with st.container(key="net_top_images"):
            st.html(html_grid(images[top], [f"{a:.2f}" for a in s.top_activations[unit]], top))


def templates(s: UnitSummaries) -> None:
    st.caption(
        "Multiplying the two weight layers (W2·W1) gives one template per digit: the straight-line part of "
        "each digit's score, ignoring the switching of the hidden units. Ink on red raises the score, ink "
        "on blue lowers it. The real network is more than this, but the templates show the gist."
    )
    with st.container(key="net_templates"):
        st.image(templates_picture(s.templates, factor=4), output_format="PNG")
