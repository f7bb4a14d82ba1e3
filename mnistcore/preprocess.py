"""Turn a drawing or photo of a digit into the 28x28 input MNIST's own way (LeCun et al.).

Ink is extracted (opaque dark background, transparent background with ink in alpha, or dark ink on
light paper), cropped to its bounding box, scaled so the longer side is 20 px with anti-aliasing,
padded to 28x28 and shifted so the centre of mass sits at the centre. One step MNIST did not need:
canvas strokes can be far thinner or thicker than MNIST's pen, so a stroke width far outside
MNIST's range is brought back into it before scaling.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from scipy import ndimage

from mnistcore.normalize import normalize

NOTHING_DRAWN = "Nothing drawn: draw a digit."
BOX = 20  # MNIST digits fill a 20x20 box inside the 28x28 image
SIZE = 28
CENTRE = 14.0  # mean centre of mass of MNIST training digits, in pixel-index coordinates
WORK = 80  # crop is resized so its longer side is this many px before stroke-width fixes (4x BOX)
INK_FLOOR = 0.12
CROP_T = 0.05
STROKE_MODE = "band"
WIDTH_METHOD = "edt"
UP = Image.BILINEAR
DOWN = Image.BILINEAR
STROKE_BAND = (2.3, 3.4)  # 2*area/perimeter of MNIST strokes at 20 px scale: middle ~60 % of digits
STROKE_TARGET = 2.8  # median MNIST stroke width at that scale


class ImageReadError(ValueError):
    """The input is not an image we can read."""


@dataclass(frozen=True)
class PreparedDigit:
    """The model input made from a drawing, or the reason there is none."""

    pixels: np.ndarray | None  # (28, 28) float32 in [0, 1], white ink on black: what the model sees
    message: str = ""  # why there is no input (e.g. nothing drawn); empty when pixels is set

    @property
    def empty(self) -> bool:
        """True when there is nothing to predict."""
        return self.pixels is None

    def tensor(self) -> torch.Tensor:
        """The normalised model input, shape (1, 784)."""
        if self.pixels is None:
            raise ValueError(self.message or NOTHING_DRAWN)
        return normalize(torch.from_numpy(self.pixels)[None])


def load_image(source: str | os.PathLike | bytes | Image.Image | np.ndarray) -> np.ndarray:
    """Read a path, bytes, PIL image or array into a uint8 array (H, W), (H, W, 3) or (H, W, 4)."""
    if isinstance(source, np.ndarray):
        arr = source
    else:
        try:
            if isinstance(source, Image.Image):
                img = source
            elif isinstance(source, bytes | bytearray):
                img = Image.open(io.BytesIO(source))
            else:
                img = Image.open(source)
            img.load()
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            raise ImageReadError(f"not a readable image: {exc}") from None
        if img.mode not in ("L", "RGB", "RGBA"):
            img = img.convert("RGBA" if "A" in img.getbands() or "transparency" in img.info else "RGB")
        arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)) or min(arr.shape[:2]) < 1:
        raise ImageReadError(f"expected a greyscale, RGB or RGBA image, got an array of shape {arr.shape}")
    if arr.dtype != np.uint8:
        a = arr.astype(np.float64)
        arr = np.clip(a * 255 if a.max() <= 1.0 else a, 0, 255).astype(np.uint8)
    return arr


def extract_ink(arr: np.ndarray) -> np.ndarray:
    """Ink intensity (H, W) in [0, 1], whatever the background: dark, transparent or light paper."""
    if arr.ndim == 3 and arr.shape[2] == 4 and arr[..., 3].min() < 250:
        return arr[..., 3].astype(np.float32) / 255.0  # transparent background: ink lives in alpha
    grey = arr[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32) if arr.ndim == 3 else arr.astype(np.float32)
    h, w = grey.shape
    band = max(1, min(h, w) // 25)
    border = np.concatenate([grey[:band].ravel(), grey[-band:].ravel(), grey[1:-1, :band].ravel(),
                             grey[1:-1, -band:].ravel()])
    bg = float(np.median(border))
    # Light paper with dark ink is inverted; either way ink is measured from the background level.
    ink = (bg - grey) / max(bg, 1.0) if bg > 127 else (grey - bg) / max(255.0 - bg, 1.0)
    if np.median(np.abs(border - bg)) < 1.0:
        return np.clip(ink, 0.0, 1.0)  # a clean digital canvas: keep every grey level of the pen's edge
    # Paper grain, shadows and JPEG noise sit in the bottom of the range.
    return np.clip((ink - INK_FLOOR) / (1 - INK_FLOOR), 0.0, 1.0)


def _clean(ink: np.ndarray) -> np.ndarray:
    """Drop specks: connected ink pieces holding under 3 % of all ink."""
    labels, n = ndimage.label(ink > 0.2)
    if n <= 1:
        return ink
    mass = ndimage.sum(ink, labels, index=np.arange(1, n + 1))
    keep = np.concatenate([[False], mass >= 0.03 * mass.sum()])
    return ink * keep[labels]


def _resize(img: np.ndarray, height: int, width: int, resample: int = Image.BILINEAR) -> np.ndarray:
    """Anti-aliased resize of a float image (Pillow's filters widen their support when shrinking)."""
    pil = Image.fromarray(np.ascontiguousarray(img, dtype=np.float32), mode="F")
    return np.asarray(pil.resize((max(1, width), max(1, height)), resample), dtype=np.float32)


def _crop(ink: np.ndarray, threshold: float) -> np.ndarray | None:
    rows = np.flatnonzero((ink > threshold).any(1))
    if len(rows) == 0:
        return None
    cols = np.flatnonzero((ink[rows[0]:rows[-1] + 1] > threshold).any(0))
    return ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width in px of an ink image (its ink > 0.5 mask), from the distance transform."""
    mask = ink > 0.5
    if WIDTH_METHOD == "perimeter":
        edge = mask.copy()
        inner = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
        edge[1:-1, 1:-1] &= ~inner
        return 2.0 * float(mask.sum()) / max(int(edge.sum()), 1)
    # Across a stroke of width w the distance to the edge runs evenly from 0 to w/2 and back, so
    # its mean is w/4; the transform measures to background pixel centres, half a pixel further.
    inside = ndimage.distance_transform_edt(np.pad(mask, 1))
    return 4.0 * max(float(inside[inside > 0].mean()) - 0.5, 0.25) if mask.any() else 0.0


def _offset(crop: np.ndarray, delta: float) -> np.ndarray:
    """Grow (delta > 0) or shrink every stroke edge by delta px, anti-aliased like a pen's edge."""
    pad = int(np.ceil(max(delta, 0.0))) + 2
    mask = np.pad(crop > 0.5, pad)
    # Signed distance to the ink's edge (> 0 inside): moving the 0.5 level set by delta is an exact
    # disk dilation or erosion, at two distance transforms' cost whatever the radius.
    inside = ndimage.distance_transform_edt(mask)
    outside = ndimage.distance_transform_edt(~mask)
    signed = np.where(mask, inside - 0.5, 0.5 - outside)
    return np.clip(signed + delta + 0.5, 0.0, 1.0).astype(np.float32)


def _normalise_stroke(crop: np.ndarray) -> np.ndarray:
    """Thicken or thin the strokes of a crop (longer side WORK px) into MNIST's range."""
    width = stroke_width(crop)
    side = max(crop.shape)
    scaled = width * BOX / side
    if STROKE_MODE == "off":
        return crop
    if STROKE_MODE == "band":
        if STROKE_BAND[0] <= scaled <= STROKE_BAND[1]:
            return crop
        target = min(max(scaled, STROKE_BAND[0]), STROKE_BAND[1])
    else:
        target = STROKE_TARGET
    # Offsetting the edges by delta grows the box by 2 delta too, so solve
    # (width + 2 delta) / (side + 2 delta) = target / BOX for delta.
    delta = (target * side / BOX - width) / (2 * (1 - target / BOX))
    delta = max(delta, -0.35 * width)  # never erode a stroke away
    if abs(delta) < 0.25:
        return crop
    return _offset(crop, delta)


def prepare_digit(source: str | os.PathLike | bytes | Image.Image | np.ndarray) -> PreparedDigit:
    """Make the 28x28 model input from a drawing or image of any size; 'nothing drawn' if empty."""
    ink = _clean(extract_ink(load_image(source)))
    crop = _crop(ink, CROP_T)
    h, w = ink.shape
    # Near-empty: too little ink, or a mark smaller than 6 % of the picture (a click, a speck).
    if crop is None or max(crop.shape) < 0.06 * min(h, w) or (crop > 0.2).sum() < 4:
        return PreparedDigit(None, NOTHING_DRAWN)
    f = WORK / max(crop.shape)
    crop = _resize(crop, max(1, round(crop.shape[0] * f)), max(1, round(crop.shape[1] * f)), UP if f > 1 else DOWN)
    crop = _crop(_normalise_stroke(crop), threshold=CROP_T)
    if crop is None:
        return PreparedDigit(None, NOTHING_DRAWN)
    f = BOX / max(crop.shape)
    small = np.clip(_resize(crop, max(1, round(crop.shape[0] * f)), max(1, round(crop.shape[1] * f)), DOWN), 0, 1)
    if small.sum() <= 0:
        return PreparedDigit(None, NOTHING_DRAWN)
    cy, cx = ndimage.center_of_mass(small)
    sh, sw = small.shape
    top = int(np.clip(round(CENTRE - cy), 0, SIZE - sh))
    left = int(np.clip(round(CENTRE - cx), 0, SIZE - sw))
    out = np.zeros((SIZE, SIZE), np.float32)
    out[top:top + sh, left:left + sw] = small
    return PreparedDigit(out / max(float(out.max()), 1e-6))
