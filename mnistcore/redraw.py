"""Redraw MNIST digits as canvas drawings: the benchmark and test input for the drawn-digit path.

A 28x28 digit is upsampled to a crisp high-resolution shape, its strokes made thicker or thinner by
a signed-distance offset (anti-aliased like a canvas pen), optionally stretched or rotated, placed
anywhere on a 280x280 canvas and composited as white ink on opaque black, as ink in the alpha channel
of a transparent canvas, or as dark ink on light paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

CANVAS = 280
BACKGROUNDS = ("black", "transparent", "paper")


@dataclass(frozen=True)
class RedrawStyle:
    """Ranges the random redrawing draws from (all sizes in canvas px)."""

    size: tuple[float, float] = (120, 260)  # longer side of the digit on the canvas
    pen: tuple[float, float] = (8, 36)  # stroke width after redrawing
    aspect: tuple[float, float] = (1.0, 1.0)  # width stretch factor (log-uniform); 1 keeps the shape
    rotation: tuple[float, float] = (0.0, 0.0)  # |angle| in degrees, either direction
    backgrounds: tuple[str, ...] = ("black", "transparent")


@dataclass(frozen=True)
class Redrawn:
    """One redrawn canvas and how it was drawn."""

    image: np.ndarray  # (280, 280, 4) RGBA, or (280, 280, 3) RGB for paper, uint8
    size: float
    pen: float
    aspect: float
    angle: float
    background: str


def _stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width, 2 * area / perimeter of a boolean mask."""
    perimeter = (mask & ~ndimage.binary_erosion(mask)).sum()
    return 2.0 * mask.sum() / max(int(perimeter), 1)


def digit_shape(digit: np.ndarray, size: float, aspect: float = 1.0, angle: float = 0.0) -> np.ndarray:
    """The digit's ink as a crisp boolean mask whose longer side is about `size` px."""
    d = digit.astype(np.float32) / 255.0
    ys, xs = np.nonzero(d > 0.05)
    if len(ys) == 0:
        raise ValueError("the digit has no ink")
    crop = np.pad(d[ys.min():ys.max() + 1, xs.min():xs.max() + 1], 2)
    if angle:
        crop = ndimage.rotate(crop, angle, order=1, reshape=True)
    h, w = crop.shape
    f = size / (max(h, w) - 4)  # the 2 px pad each side is not part of the digit
    big = Image.fromarray(crop, mode="F").resize((max(1, round(w * f * aspect)), max(1, round(h * f))),
                                                 Image.BICUBIC)
    # Half of MNIST's peak grey is where its anti-aliased pen edge lies.
    return np.asarray(big) > 0.5 * float(crop.max())


def stroke_ink(mask: np.ndarray, pen: float) -> tuple[np.ndarray, float]:
    """Anti-aliased ink (float [0, 1]) with strokes moved to about `pen` px wide; also the width used."""
    width = _stroke_width(mask)
    # Never thin by more than 70 % of the half-width, or strokes break apart.
    delta = max((pen - width) / 2, -0.35 * width)
    pad = int(max(delta, 0)) + 3
    m = np.pad(mask, pad)
    inside = ndimage.distance_transform_edt(m)
    outside = ndimage.distance_transform_edt(~m)
    signed = np.where(m, inside - 0.5, 0.5 - outside)  # distance to the edge, > 0 inside
    ink = np.clip(signed + delta + 0.5, 0.0, 1.0).astype(np.float32)
    return ink, width + 2 * delta


def composite(ink: np.ndarray, top: int, left: int, background: str) -> np.ndarray:
    """Place ink on a 280x280 canvas: 'black' RGBA opaque, 'transparent' RGBA, or 'paper' RGB."""
    canvas = np.zeros((CANVAS, CANVAS), np.float32)
    h, w = ink.shape
    canvas[top:top + h, left:left + w] = ink
    v = np.round(canvas * 255).astype(np.uint8)
    if background == "black":
        return np.dstack([v, v, v, np.full_like(v, 255)])
    if background == "transparent":
        # A canvas exporter gives the pen colour everywhere the stroke touched and coverage in alpha.
        return np.dstack([np.full_like(v, 255), np.full_like(v, 255), np.full_like(v, 255), v])
    if background == "paper":
        paper = np.round(235 - canvas * 200).astype(np.uint8)  # grey-blue ink on off-white paper
        return np.dstack([paper, paper, np.minimum(paper.astype(np.int16) + 10, 255).astype(np.uint8)])
    raise ValueError(f"background must be one of {BACKGROUNDS}")


def redraw(digit: np.ndarray, rng: np.random.Generator, style: RedrawStyle | None = None) -> Redrawn:
    """Redraw one 28x28 uint8 MNIST digit as a random 280x280 canvas drawing."""
    s = style or RedrawStyle()
    size = float(rng.uniform(*s.size))
    pen = float(rng.uniform(*s.pen))
    aspect = float(np.exp(rng.uniform(np.log(s.aspect[0]), np.log(s.aspect[1]))))
    angle = float(rng.uniform(*s.rotation) * rng.choice([-1, 1]))
    background = str(rng.choice(s.backgrounds))
    ink, used = stroke_ink(digit_shape(digit, size, aspect, angle), pen)
    ys, xs = np.nonzero(ink > 0)
    ink = ink[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    if max(ink.shape) > CANVAS - 4:  # a thick pen on a large digit: shrink to fit the canvas
        f = (CANVAS - 4) / max(ink.shape)
        ink = np.asarray(Image.fromarray(ink, mode="F").resize(
            (max(1, round(ink.shape[1] * f)), max(1, round(ink.shape[0] * f))), Image.BILINEAR))
    h, w = ink.shape
    top = int(rng.integers(0, CANVAS - h + 1))
    left = int(rng.integers(0, CANVAS - w + 1))
    return Redrawn(composite(ink, top, left, background), size, used, aspect, angle, background)
