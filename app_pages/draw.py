"""Draw: a digit on the canvas (or an uploaded picture), what the active model thinks it is, and why."""

import streamlit as st

from ui import cache, components, draw_view, session, viewer
from ui.activity import ACTIVITY, FRAGMENT
from ui.draw_canvas import draw_canvas

st.title("Draw a digit")
run_id = session.active_run_id()
if run_id is None:
    components.train_default_prompt("draw")
    st.stop()
loaded = cache.get_model(run_id)
if loaded is None:
    st.stop()
model = loaded[0]
ood = cache.get_ood(run_id)  # the "not a digit" score; None for runs saved before it existed


@st.fragment
def canvas_and_prediction() -> None:
    """Only this part reruns on a stroke: the canvas sends its strokes, the answer is redrawn."""
    with ACTIVITY.timed("draw" + FRAGMENT, viewer.session_id(), viewer.signed_in_user()):  # a stroke's server time
        _canvas_and_prediction()


def _canvas_and_prediction() -> None:
    left, right = st.columns([1, 1.6], gap="large")
    with left:
        stroke = st.slider("Stroke width", 6, 40, 18, key="draw_stroke")
        with st.container(key="draw_canvas_box"):
            drawing = draw_canvas(stroke, key="draw_canvas")
        st.caption("Draw with the mouse (or a finger); the answer follows every stroke.")
    with right:
        prepared, picture = draw_view.from_strokes(drawing)
        draw_view.answer(model, prepared, key="draw", picture=picture, ood=ood)


draw_tab, upload_tab = st.tabs(["Draw", "Upload an image"])
with draw_tab:
    canvas_and_prediction()
with upload_tab:
    draw_view.upload(model, ood)
