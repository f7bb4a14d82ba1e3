"""Runs: every saved run in one sortable table; rename, delete, download, and compare two to four of them."""

import streamlit as st

from ui import cache, runs_view

st.title("Runs")
st.caption(
    "Every saved run. Click a column header to sort; tick rows to rename, delete or download a run, "
    "and tick two to four to compare their learning curves, settings, per-digit recall and the test "
    "images one fixed and the other broke. The link in the address bar reopens this selection."
)
runs = cache.list_runs()
if not runs:
    st.info("No saved runs yet: train one on the Train page.")
    st.page_link("app_pages/train.py", label="Train a network", icon=":material/model_training:")
    st.stop()
runs = runs_view.scope(runs)  # with sign-in: mine or everyone's, and the best run per person
if not runs:
    st.info("You have no saved runs yet: train one on the Train page.")
    st.stop()
selected = runs_view.table(runs)
runs_view.actions(selected)
if len(selected) > runs_view.MAX_COMPARED:
    st.warning(f"{len(selected)} runs ticked: the first {runs_view.MAX_COMPARED} you ticked are compared.")
compared = selected[: runs_view.MAX_COMPARED]
if compared:
    st.subheader("Learning curves" if len(compared) > 1 else f"Learning curve of {runs_view.short_label(compared[0])}")
    runs_view.curves(compared)
if len(compared) >= 2:
    runs_view.compare(compared)
runs_view.downloads(compared)
