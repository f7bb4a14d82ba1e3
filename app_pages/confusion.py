"""Confusion matrix of the active model on the test set; click a cell to see its images."""

import streamlit as st

from ui import cache, components, confusion_view, session

st.title("Confusion matrix")
run_id = session.active_run_id()
if run_id is None:
    components.train_default_prompt("confusion")
    st.stop()
ev = cache.get_evaluation(run_id)
loaded = cache.get_model(run_id)
if ev is None or loaded is None:
    st.stop()
st.caption(
    f"Rows: the true digit; columns: what the model predicted, on the {len(ev.labels):,} test images "
    f"({ev.accuracy:.2%} right, {ev.errors} wrong). The diagonal (green) holds the right answers. "
    "Click a cell to see its images."
)
normalize = st.toggle(
    "Row-normalised %",
    key="cm_normalize",
    persist_state="session",
    help="Each row as a percentage of that digit's test images",
)
cell = confusion_view.current_cell()
confusion_view.matrix(ev, normalize, cell)
confusion_view.cell_images(run_id, cell)
st.subheader("Per-class precision and recall")
confusion_view.metrics_table(ev)
confusion_view.reliability(ev, loaded[1].calibration)
