"""Home: what MNIST Lab is, the active model, the dataset."""

import streamlit as st

from ui import cache, components, figures, session

st.title("MNIST Lab")
st.markdown(
    "MNIST Lab trains a small neural network — 784 pixels in, one hidden layer, 10 digits out — on the "
    "70 000 handwritten digits of MNIST, right here on this machine. "
    "You can watch it learn live, then see which digits it confuses and why, by clicking cells of its "
    "confusion matrix and browsing its mistakes. "
    "Finally, draw a digit yourself and see what the network thinks it is."
)

data = cache.get_data()
run_id = session.active_run_id()
st.subheader("Active model")
if run_id is None:
    components.train_default_prompt("home")
elif (loaded := cache.get_model(run_id)) is not None:
    components.model_card(loaded[1])
    cols = st.columns(4)
    cols[0].page_link("app_pages/draw.py", label="Draw a digit", icon=":material/draw:")
    cols[1].page_link("app_pages/confusion.py", label="Confusion matrix", icon=":material/grid_on:")
    cols[2].page_link("app_pages/errors.py", label="Browse its errors", icon=":material/error:")
    cols[3].page_link("app_pages/train.py", label="Train another", icon=":material/model_training:")

st.subheader("The dataset")
left, right = st.columns([1, 1])
with left:
    st.markdown(
        f"**{len(data.train_labels):,}** training and **{len(data.test_labels):,}** test images, "
        "28×28 greyscale. Images per digit:"
    )
    st.plotly_chart(
        figures.class_counts_figure(data.class_counts("train"), data.class_counts("test")),
        key="home_counts",
        config={"displayModeBar": False},
    )
with right:
    st.markdown("The first twelve training images of each digit:")
    st.image(cache.sample_grid(), width="content")
