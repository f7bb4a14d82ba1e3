"""Errors: every misclassified test image (or, on demand, the correct ones), filtered, sorted, paginated."""

import streamlit as st

from ui import cache, components, errors_view, session

st.title("Errors")
run_id = session.active_run_id()
if run_id is None:
    components.train_default_prompt("errors")
    st.stop()
ev = cache.get_evaluation(run_id)
if ev is None:
    st.stop()
st.caption(
    f"The active model gets {ev.errors} of the {len(ev.labels):,} test images wrong. "
    "Captions read “true → predicted (confidence)”."
)
idx = errors_view.filtered(ev)
if len(idx) == 0:
    st.info("No test image matches these filters.")
    st.stop()
images = cache.test_images()
pick = errors_view.grid(ev, images, idx)
errors_view.picked(ev, images, pick)
