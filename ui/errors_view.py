"""Errors page parts: the filters, one page of the image grid (clickable), the picked image's probabilities and why."""

from __future__ import annotations

import numpy as np
import streamlit as st

from mnistcore.evaluate import Evaluation, select_predictions
from ui import cache, session
from ui.explain_view import why_maps
from ui.figures import image_grid_figure, pick_from_selection, probability_bars, upscale

PER_PAGE = 48
ANY = "any"
SORTS = ("Most confident first", "Least confident first")


def _first_page() -> None:
    st.session_state["err_page"] = 1


def filtered(ev: Evaluation) -> np.ndarray:
    """Draw the filters; the matching test indices in display order."""
    c = st.columns([1, 1, 1.3, 1.5, 2.2])
    options = [ANY, *range(10)]
    # Bound to the URL (?err_true=4&err_pred=9…): a copied link reopens the same filtered view.
    kw = dict(persist_state="session", on_change=_first_page, bind="query-params")
    true = c[0].selectbox("True digit", options, key="err_true", **kw)
    pred = c[1].selectbox("Predicted digit", options, key="err_pred", **kw)
    min_conf = c[2].slider("Minimum confidence", 0.0, 1.0, 0.0, 0.05, key="err_min_conf", **kw)
    sort = c[3].radio("Order", SORTS, key="err_sort", **kw)
    correct = c[4].toggle("Browse correct predictions instead", key="err_correct", **kw)
    return select_predictions(
        ev,
        correct=correct,
        true=None if true == ANY else true,
        pred=None if pred == ANY else pred,
        min_confidence=min_conf,
        most_confident_first=sort == SORTS[0],
    )


def grid(ev: Evaluation, images: np.ndarray, idx: np.ndarray) -> int | None:
    """One page of the matching images as a clickable grid; the picked test index (on this page) or None."""
    pages = max(1, -(-len(idx) // PER_PAGE))
    if st.session_state.get("err_page", 1) > pages:
        st.session_state["err_page"] = 1
    page = st.pagination(pages, key="err_page", bind="query-params") if pages > 1 else 1
    shown = idx[(page - 1) * PER_PAGE : page * PER_PAGE]
    conf = ev.confidence[shown]
    t, p = ev.labels[shown], ev.predictions[shown]
    captions = [f"{a} → {b} ({c:.2f})" for a, b, c in zip(t, p, conf, strict=True)]
    hover = [
        f"test image #{i}: true {a}, predicted {b} ({c:.1%})" for i, a, b, c in zip(shown, t, p, conf, strict=True)
    ]
    custom = [[int(i), int(a), int(b)] for i, a, b in zip(shown, t, p, strict=True)]
    st.caption(
        f"Showing {len(shown)} of {len(idx):,} (page {page} of {pages}). Click an image to see its "
        "ten class probabilities."
    )
    pick = pick_from_selection(st.session_state.get("err_grid"))  # the click that caused this rerun
    where = np.flatnonzero(shown == pick)
    fig = image_grid_figure(
        images[shown], captions, custom, cols=8, hover=hover, highlight=int(where[0]) if len(where) else None
    )
    with st.container(key="err_grid_box"):
        st.plotly_chart(
            fig,
            key="err_grid",
            on_select="rerun",
            selection_mode="points",
            width="content",
            config={"displayModeBar": False},
        )
    return pick if len(where) else None


def picked(ev: Evaluation, images: np.ndarray, index: int | None) -> None:
    if index is None:
        return
    true, pred = int(ev.labels[index]), int(ev.predictions[index])
    with st.container(key="err_picked", border=True):
        st.markdown(f"**Test image #{index}** — true **{true}**, predicted **{pred}** ({ev.confidence[index]:.1%})")
        left, mid, right = st.columns([1, 1.7, 2.5])
        left.image(upscale(images[index], 6))
        with mid:
            st.plotly_chart(
                probability_bars(ev.probabilities[index], true=true), key="err_probs", config={"displayModeBar": False}
            )
        loaded = cache.get_model(run_id) if (run_id := session.active_run_id()) else None
        if loaded is not None:
            with right:
                why_maps(loaded[0], images[index] / np.float32(255), key="err", other=true, other_label="true digit")
