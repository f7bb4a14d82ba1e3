"""Train: pick a recipe, start training in the background, watch it learn live, stop it."""

import streamlit as st

from ui import cache, session, train_form

st.title("Train a network")
st.caption("784 inputs → hidden ReLU layer → 10 outputs. Training runs in the background: you can use the "
           "other pages meanwhile and come back here.")
cache.get_data()
job = session.current_job()
config = train_form.form(disabled=job is not None and job.running)
if config is not None and session.start_job(config) is not None:
    st.rerun()
if job is not None:
    train_form.panel(job)
