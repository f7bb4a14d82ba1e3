"""Train: pick a recipe, start training in the background, watch it learn live, stop it."""

import streamlit as st

from ui import cache, session, sweep_view, train_form

st.title("Train a network")
st.caption(
    "784 inputs → hidden ReLU layer → 10 outputs. Training runs in the background: you can use the "
    "other pages meanwhile and come back here."
)
cache.get_data()
job = session.current_job()
busy = (job is not None and job.running) or sweep_view.busy()  # a sweep is busy between its runs too
config = train_form.form(disabled=busy)
if config is not None and session.start_job(config) is not None:
    st.rerun()
sweep_view.controls(disabled=busy)
if (chain := sweep_view.current()) is not None:
    sweep_view.panel(chain, job)
if job is not None:
    train_form.panel(job)
