"""My drawings: your own digits (saved from Draw or uploaded), how the active model reads them, fine-tuning on them."""

import streamlit as st

from ui import components, drawings_view, session

st.title("My drawings")
st.caption(
    "Digits you saved from **Draw** or uploaded here, kept on this server for this browser only. "
    "Use them to see whether the model reads *your* handwriting, and to teach it."
)
store = drawings_view.drawing_store()
drawings_view.upload(store)
images, labels, drawings = store.arrays()
if not drawings:
    st.info(
        "No drawings yet. On **Draw**, draw a digit and press *Save this drawing* (correct the label if the "
        "model got it wrong), or add pictures above."
    )
    drawings_view.export_import(store, 0)
    st.stop()
st.markdown(drawings_view.counts_text(store.counts()))
run_id = session.active_run_id()
predictions = None
if run_id is None:
    components.train_default_prompt("drawings")
else:
    predictions = drawings_view.model_on_drawings(store, run_id)
drawings_view.gallery(store, drawings, images, predictions)
if run_id is not None:
    drawings_view.fine_tune(store, run_id)
drawings_view.export_import(store, len(drawings))
