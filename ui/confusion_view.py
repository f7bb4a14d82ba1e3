"""Confusion page parts: the selected cell (kept in the URL), the clickable matrix, the cell's images and why."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from mnistcore.calibration import Reliability, reliability_pair
from mnistcore.evaluate import Evaluation, cell_indices
from ui import cache
from ui.explain_view import why_maps
from ui.figures import cell_from_selection, confusion_figure, parse_cell, reliability_figure, upscale

CHART = "cm"  # plotly chart key (its selection state)
LAST_CELL = "cm_cell"  # session copy of the cell, restored when coming back from another page
LAST_CLICK = "cm_last_click"  # the chart selection already acted on


def _set_cell(cell: tuple[int, int] | None) -> None:
    st.session_state[LAST_CELL] = cell
    if cell is None:
        for name in ("true", "pred"):
            st.query_params.pop(name, None)
    else:
        st.query_params["true"], st.query_params["pred"] = str(cell[0]), str(cell[1])


def current_cell() -> tuple[int, int] | None:
    """The cell to show: a new click on the matrix, else the URL's (?true=4&pred=9), else this session's last."""
    clicked = cell_from_selection(st.session_state.get(CHART))
    if clicked != st.session_state.get(LAST_CLICK):
        st.session_state[LAST_CLICK] = clicked
        if clicked is not None:  # (a click on the selected cell deselects it: keep showing that cell)
            _set_cell(clicked)
            return clicked
    if "true" in st.query_params or "pred" in st.query_params:
        cell = parse_cell(st.query_params.get("true"), st.query_params.get("pred"))
        if cell is None:
            st.warning("The link names no valid cell: true and pred must be digits 0–9.")
        st.session_state[LAST_CELL] = cell
        return cell
    cell = st.session_state.get(LAST_CELL)
    if cell is not None:
        _set_cell(cell)
    return cell


def matrix(ev: Evaluation, normalize: bool, cell: tuple[int, int] | None) -> None:
    fig = confusion_figure(ev.confusion, normalize=normalize, selected=cell)
    _, mid, _ = st.columns([1, 6, 1])
    with mid:
        st.plotly_chart(fig, key=CHART, on_select="rerun", selection_mode="points", config={"displayModeBar": False})


def cell_images(run_id: str, cell: tuple[int, int] | None) -> None:
    """Exactly the test images of the cell, most confident first, captioned with their probability."""
    if cell is None:
        st.info("Click a cell of the matrix to see its test images.")
        return
    true, pred = cell
    grid, count = cache.cell_grid(run_id, true, pred)
    kind = "correct" if true == pred else "misclassified"
    head, clear = st.columns([5, 1])
    with head, st.container(key="cm_cell_title"):
        st.subheader(f"True {true}, predicted {pred}: {count} {kind} image{'s' if count != 1 else ''}")
    clear.button("Clear selection", key="cm_clear", on_click=_set_cell, args=(None,))
    if count == 0:
        st.caption("No test image falls in this cell.")
        return
    st.caption(f"Most confident first; each caption is the probability the model gave to “{pred}”.")
    with st.container(key="cm_cell_images"):
        st.html(grid)
    _explain_one(run_id, true, pred)


def _explain_one(run_id: str, true: int, pred: int) -> None:
    """One image of the cell (picked from a list, the most confident first) with its why-this-not-that maps."""
    ev, loaded = cache.get_evaluation(run_id), cache.get_model(run_id)
    if ev is None or loaded is None:
        return
    idx = cell_indices(ev, true, pred)
    with st.container(key="cm_picked", border=True):
        index = st.selectbox(
            "Why did the model answer this? Pick an image",
            [int(i) for i in idx],
            key=f"cm_explain_{true}_{pred}",
            format_func=lambda i: f"test image #{i} ({ev.confidence[i]:.2f})",
        )
        left, right = st.columns([1, 3])
        image = cache.test_images()[index]
        left.image(upscale(image, 5), caption=f"#{index}: true {true}, predicted {pred}", output_format="PNG")
        with right:
            why_maps(loaded[0], image / np.float32(255), key="cm", other=true, other_label="true digit")


def metrics_table(ev: Evaluation) -> None:
    df = pd.DataFrame(
        {
            "digit": range(10),
            "precision": ev.precision,
            "recall": ev.recall,
            "F1": ev.f1,
            "test images": ev.support,
            "errors": ev.support - ev.confusion.diagonal(),
        }
    )
    pct = st.column_config.NumberColumn(format="percent")
    st.dataframe(
        df,
        hide_index=True,
        key="cm_metrics",
        width="content",
        column_config={"precision": pct, "recall": pct, "F1": pct},
    )


def _top_bin_sentence(r: Reliability) -> str:
    """The fullest confidence bin in words: where it said X, it was right Y of the time."""
    top = max((b for b in r.bins if b.count), key=lambda b: b.count)
    return (
        f"For the {top.count:,} test images where it said between {top.lower:.0%} and {top.upper:.0%} "
        f"({top.confidence:.1%} on average), it was right {top.accuracy:.1%} of the time."
    )


def reliability(ev: Evaluation, record: dict[str, Any] | None) -> None:
    """The reliability diagram of the probabilities shown (and, for a calibrated run, of the raw ones).

    record: the run's stored calibration (RunInfo.calibration); None for a run saved before calibration.
    """
    st.subheader("Can you trust how sure it says it is?")
    if ev.logits is None or not len(ev.labels):
        st.caption("No test images to measure it on.")
        return
    after, before = reliability_pair(ev.logits, ev.labels, ev.temperature)
    st.markdown(
        "When it says 90 %, it should be right about 9 times in 10. Each dot groups the test images by how "
        "sure the model said it was (across) and shows how often it was right (up): on the dotted line, "
        "what it says is what it gets; below it, it is more sure than right. " + _top_bin_sentence(after)
    )
    held = int(record.get("holdout", 0)) if record else 0
    if record is None:
        st.info(
            "This model was saved before calibration existed: its probabilities are the network's own "
            "(temperature 1), never checked against held-out images. Train a new model to get calibrated ones."
        )
    elif not held:
        st.info(f"This model was not calibrated: {record.get('note') or 'no images were held out of training'}.")
    _, mid, _ = st.columns([1, 6, 1])
    with mid:
        fig = reliability_figure(after, before if held else None)
        st.plotly_chart(fig, key="cm_reliability", config={"displayModeBar": False})
    if held:
        st.caption(
            f"Expected calibration error (the average gap between the dots and the line, weighted by how many "
            f"images each holds; 15 equal bins): {after.ece:.2%} as shown, {before.ece:.2%} before. Every "
            f"logit is divided by a temperature T = {ev.temperature:.2f} fitted on {held:,} training images "
            "held out of training (T above 1 makes it less sure, below 1 more); the answer never changes."
        )
