"""Label issues: MNIST images whose given label is probably wrong, found by confident learning (cleanlab)."""

import streamlit as st

from ui import cache, label_issues_view, session

st.title("Label issues")
st.caption(
    "MNIST was labelled by people, and a few dozen of its labels are wrong. These images are the ones "
    "whose label the networks' out-of-sample predictions contradict most."
)
data = cache.get_data()
split = st.segmented_control(
    "Split",
    ["train", "test"],
    default="train",
    key="li_split",
    format_func=lambda s: {"train": "Training set (60 000)", "test": "Test set (10 000)"}[s],
)
split = split or "train"
result = label_issues_view.cached(split, data)
if result is None:
    label_issues_view.find_prompt(split, data)
    st.stop()
label_issues_view.summary(result)
images = (data.train_images if split == "train" else data.test_images).numpy()
label_issues_view.flagged_grid(result, images)
if split == "train":
    label_issues_view.train_without(result, session.active_run_id(), data)
