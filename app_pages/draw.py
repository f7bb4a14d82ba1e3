"""Draw: a digit on the canvas (or an uploaded picture) and what the active model thinks it is."""

import streamlit as st
from streamlit_drawable_canvas import st_canvas  # only importable under a running Streamlit

from mnistcore.preprocess import ImageReadError, prepare_digit
from ui import cache, components, session

st.title("Draw a digit")
run_id = session.active_run_id()
if run_id is None:
    components.train_default_prompt("draw")
    st.stop()
loaded = cache.get_model(run_id)
if loaded is None:
    st.stop()
model = loaded[0]
COUNTER = "draw_canvas_n"


def _clear() -> None:
    st.session_state[COUNTER] = st.session_state.get(COUNTER, 0) + 1


@st.fragment
def canvas_and_prediction() -> None:
    left, right = st.columns([1, 1.6], gap="large")
    with left:
        stroke = st.slider("Stroke width", 6, 40, 18, key="draw_stroke")
        with st.container(key="draw_canvas_box"):
            result = st_canvas(stroke_width=stroke, stroke_color="#FFFFFF", background_color="#000000",
                               fill_color="rgba(0,0,0,0)", height=280, width=280, drawing_mode="freedraw",
                               update_streamlit=True, return_image_data=True,
                               key=f"draw_canvas_{st.session_state.get(COUNTER, 0)}")
        st.button("Clear", key="draw_clear", on_click=_clear, icon=":material/ink_eraser:")
    with right:
        image = result.image_data if result is not None else None
        components.prediction(model, None if image is None else prepare_digit(image), key="draw")


draw_tab, upload_tab = st.tabs(["Draw", "Upload an image"])
with draw_tab:
    canvas_and_prediction()
with upload_tab:
    upload = st.file_uploader("A photo or scan of one digit (PNG or JPEG)", type=["png", "jpg", "jpeg"],
                              key="draw_upload")
    if upload is not None:
        try:
            prepared = prepare_digit(upload.getvalue())
        except ImageReadError:
            st.error(f"Could not read “{upload.name}” as an image. Upload a PNG or JPEG picture of one digit.")
        else:
            components.prediction(model, prepared, key="upload")
