"""Inside the network: what each hidden unit learned (weights, votes, favourite test images), how some of them
formed epoch by epoch, and the digit templates."""

import streamlit as st

from ui import cache, components, explain_view, session, units_view

st.title("Inside the network")
run_id = session.active_run_id()
if run_id is None:
    components.train_default_prompt("network")
    st.stop()
loaded = cache.get_model(run_id)
if loaded is None:
    st.stop()
model, info = loaded
summaries = explain_view.get_summaries(run_id, model)
explain_view.intro(summaries)
unit = explain_view.unit_grid(run_id, summaries)
explain_view.unit_detail(summaries, unit, cache.test_images())
units_view.replay(run_id, info)
st.subheader("Each digit's template")
explain_view.templates(summaries)
