"""Draw page parts: turn what the browser sent (strokes or an upload) into the model's input, and the answer."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import streamlit as st
from PIL import Image

from mnistcore.drawings import MAX_IMAGE_BYTES
from mnistcore.model import ShallowNet
from mnistcore.ood import FROM_HELD, OodModel, assess
from mnistcore.predict import predict_prepared
from mnistcore.preprocess import NOTHING_DRAWN, ImageReadError, PreparedDigit, decode_upload, prepare_digit
from mnistcore.strokes import rasterize
from ui.drawings_view import save_drawing_box
from ui.explain_view import why_maps
from ui.figures import answer_html, diverging_rgb, upscale_rgb

UPLOAD_MB = MAX_IMAGE_BYTES >> 20  # an upload on Draw may be saved as a drawing: the store's own limit
UPLOAD_CACHE = "draw_upload_decoded"  # session_state key: (sha256 of the upload, decoded array or error)


def from_strokes(drawing: dict | None) -> tuple[PreparedDigit | None, np.ndarray | None]:
    """The model input made from the canvas's strokes, and the 280x280 picture they make (None before any)."""
    strokes = (drawing or {}).get("strokes") if isinstance(drawing, dict) else None
    if not strokes:
        return None, None
    try:
        picture = rasterize(strokes)
    except ValueError as exc:
        return PreparedDigit(None, f"That drawing could not be read ({exc}); press Clear and draw again."), None
    return prepare_digit(picture), picture


def answer(
    model: ShallowNet,
    prepared: PreparedDigit | None,
    key: str,
    picture: np.ndarray | bytes | None,
    ood: OodModel | None = None,
) -> None:
    """The prediction (or 'not a digit', with what it would have said), why, and 'Save this drawing'."""
    if prepared is None or prepared.empty:
        with st.container(key=f"{key}_empty"):
            st.info("Draw a digit" if prepared is None or prepared.message == NOTHING_DRAWN else prepared.message)
        return
    probs = predict_prepared(model, prepared)
    if ood is not None:
        not_a_digit(model, ood, prepared.pixels, int(np.argmax(probs)), float(np.max(probs)), key)
    with st.container(key=f"{key}_answer"):
        st.html(answer_html(probs, prepared.pixels))
    why_maps(model, prepared.pixels, key=key, factor=5)
    if picture is not None:
        save_drawing_box(
            _png(picture) if isinstance(picture, np.ndarray) else picture,
            prepared,
            int(np.argmax(probs)),
            key=f"{key}_save",
        )


def not_a_digit(model: ShallowNet, ood: OodModel, pixels: np.ndarray, digit: int, sure: float, key: str) -> None:
    """When the drawing is unlike every MNIST digit: say so in plain words, and show which ink is unlike."""
    result = assess(model, ood, pixels)
    if not result.not_a_digit:
        return
    # Squared residual, signed: each pixel's share of the score (they add up to it), red for ink where
    # real digits have none, blue for ink real digits have there and the drawing lacks.
    share = np.sign(result.residual) * result.residual**2
    with st.container(key=f"{key}_not_a_digit", border=True):
        left, right = st.columns([2.2, 1])
        left.warning(
            f"**This does not look like any digit the network was trained on.** It would have answered "
            f"**{digit}** ({sure:.0%} sure), but the drawing is further from every real {digit} in MNIST than "
            f"{ood.quantile:.1%} of {_calibrated_on(ood)} are. The network only knows the ten digits, so it "
            f"answers with one even for a letter or a symbol."
        )
        right.image(
            upscale_rgb(diverging_rgb(share), 5),
            caption=f"Unlike a real {digit}: red ink is where real {digit}s have none, blue where they "
            "have ink and the drawing has not.",
            output_format="PNG",
        )


def _calibrated_on(ood: OodModel) -> str:
    """The digits the threshold was set on, in a learner's words."""
    return "MNIST digits it never trained on" if ood.calibration == FROM_HELD else "MNIST's own digits"


def _png(picture: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(picture).save(buf, format="PNG", optimize=False, compress_level=1)
    return buf.getvalue()


def decoded_upload(data: bytes) -> np.ndarray:
    """Decode an upload once per browser (reruns reuse it); raises ImageReadError for what is not a picture."""
    digest = hashlib.sha256(data).hexdigest()
    cached = st.session_state.get(UPLOAD_CACHE)
    if cached is None or cached[0] != digest:
        try:
            cached = (digest, decode_upload(data))
        except ImageReadError as exc:
            cached = (digest, exc)
        st.session_state[UPLOAD_CACHE] = cached
    if isinstance(cached[1], ImageReadError):
        raise cached[1]
    return cached[1]


def upload(model: ShallowNet, ood: OodModel | None = None) -> None:
    """An uploaded photo or scan of one digit: decoded once, then answered like a drawing."""
    up = st.file_uploader(
        "A photo or scan of one digit (PNG or JPEG)",
        type=["png", "jpg", "jpeg"],
        key="draw_upload",
        max_upload_size=UPLOAD_MB,
    )
    if up is None:
        return
    data = up.getvalue()
    try:
        arr = decoded_upload(data)
    except ImageReadError as exc:
        st.error(f"Could not use “{up.name}”: {exc}. Upload a PNG or JPEG picture of one digit.")
        return
    answer(model, prepare_digit(arr), key="upload", picture=data, ood=ood)
