"""Redraw MNIST digits as canvas drawings: the benchmark and test input for the drawn-digit path.

A 28x28 digit becomes a crisp high-resolution shape (optionally stretched or rotated), which is either
traced along its centre line with a round pen of the chosen width ("pen": Zhang-Suen thinning, then
anti-aliased line segments, as a canvas stroke looks) or has its outline moved out or in to that
width ("outline": a signed-distance offset, which keeps MNIST's varying stroke width). The ink is then
placed anywhere on a 280x280 canvas as white on opaque black, as ink in the alpha channel of a
transparent canvas, or as dark ink on light paper.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

CANVAS = 280
BACKGROUNDS = ("black", "transparent", "paper")


@dataclass(frozen=True)
class RedrawStyle:
    """Ranges the random redrawing draws from."""

    size: tuple[float, float] = (120, 260)  # canvas px spanned by the digit's longer side
    # Pen width as a share of that side: 0.03 is a hairline, 0.2 about MNIST's 85th-percentile width
    # (wider pens start to fill the loops of 6, 8 and 9: the benchmark's held-out "marker" family).
    pen: tuple[float, float] = (0.03, 0.2)
    aspect: tuple[float, float] = (1.0, 1.0)  # width stretch factor (log-uniform); 1 keeps the shape
    rotation: tuple[float, float] = (0.0, 0.0)  # |angle| in degrees, either direction
    backgrounds: tuple[str, ...] = ("black", "transparent")
    methods: tuple[str, ...] = ("pen", "outline")  # trace the centre line with a round pen, or offset the outline


@dataclass(frozen=True)
class Redrawn:
    """One redrawn canvas and how it was drawn."""

    image: np.ndarray  # (280, 280, 4) RGBA, or (280, 280, 3) RGB for paper, uint8
    size: float
    pen: float  # stroke width in canvas px
    aspect: float
    angle: float
    background: str
    method: str


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
    crop = np.pad(d[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1], 2)
    if angle:
        crop = ndimage.rotate(crop, angle, order=1, reshape=True)
    h, w = crop.shape
    f = size / (max(h, w) - 4)  # the 2 px pad each side is not part of the digit
    big = Image.fromarray(crop, mode="F").resize((max(1, round(w * f * aspect)), max(1, round(h * f))), Image.BICUBIC)
    # Half of MNIST's peak grey is where its anti-aliased pen edge lies.
    return np.asarray(big) > 0.5 * float(crop.max())


def stroke_ink(mask: np.ndarray, pen: float) -> tuple[np.ndarray, float]:
    """Anti-aliased ink (float [0, 1]) with strokes moved to about `pen` px wide; also the width used."""
    width = _stroke_width(mask)
    # Offsetting an outline thins every stroke by the same amount, so MNIST's thinner strokes would
    # vanish first; thin by at most 40 % (the centre-line pen draws thinner digits faithfully).
    delta = max((pen - width) / 2, -0.2 * width)
    pad = int(max(delta, 0)) + 3
    m = np.pad(mask, pad)
    inside = ndimage.distance_transform_edt(m)
    outside = ndimage.distance_transform_edt(~m)
    signed = np.where(m, inside - 0.5, 0.5 - outside)  # distance to the edge, > 0 inside
    ink = np.clip(signed + delta + 0.5, 0.0, 1.0).astype(np.float32)
    return ink, width + 2 * delta


def thin(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning: the one-pixel-wide centre line of a boolean mask."""
    img = np.pad(mask, 1).astype(np.uint8)
    core = img[1:-1, 1:-1]  # a view: clearing it clears img
    changed = True
    while changed:
        changed = False
        for step in (0, 1):
            p2, p3, p4, p5 = img[:-2, 1:-1], img[:-2, 2:], img[1:-1, 2:], img[2:, 2:]
            p6, p7, p8, p9 = img[2:, 1:-1], img[2:, :-2], img[1:-1, :-2], img[:-2, :-2]
            ring = [p2, p3, p4, p5, p6, p7, p8, p9, p2]
            neighbours = sum(q.astype(np.int16) for q in ring[:-1])
            transitions = sum(((a == 0) & (b == 1)).astype(np.int16) for a, b in itertools.pairwise(ring))
            # The two sub-steps peel south-east and north-west edges in turn, keeping the line centred.
            first, second = (p2 & p4 & p6, p4 & p6 & p8) if step == 0 else (p2 & p4 & p8, p2 & p6 & p8)
            side = (first == 0) & (second == 0)
            remove = (core == 1) & (neighbours >= 2) & (neighbours <= 6) & (transitions == 1) & side
            if remove.any():
                core[remove] = 0
                changed = True
    return core.astype(bool)


def pen_ink(skeleton: np.ndarray, scale: float, pen: float, supersample: int = 2) -> np.ndarray:
    """Anti-aliased ink of a round pen of width `pen` traced along a skeleton scaled by `scale`."""
    pts = np.argwhere(skeleton)
    h, w = skeleton.shape
    ss = supersample
    margin = pen / 2 + 2
    out_h, out_w = int(np.ceil(h * scale + 2 * margin)), int(np.ceil(w * scale + 2 * margin))
    img = Image.new("L", (out_w * ss, out_h * ss), 0)
    draw = ImageDraw.Draw(img)
    r = pen * ss / 2

    def at(p: np.ndarray) -> tuple[float, float]:
        return ((p[1] + 0.5) * scale + margin) * ss, ((p[0] + 0.5) * scale + margin) * ss

    for p in pts:
        x, y = at(p)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    # Joining 8-neighbours (each pair once) closes the gaps between the scaled-up centre-line pixels.
    for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):
        a = skeleton[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
        b = skeleton[max(0, dy) :, max(0, dx) :][: a.shape[0], : a.shape[1]]
        for y, x in np.argwhere(a & b):
            p0 = np.array([y + max(0, -dy), x + max(0, -dx)])
            draw.line([at(p0), at(p0 + np.array([dy, dx]))], fill=255, width=max(1, round(2 * r)))
    small = img.resize((out_w, out_h), Image.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def composite(ink: np.ndarray, top: int, left: int, background: str) -> np.ndarray:
    """Place ink on a 280x280 canvas: 'black' RGBA opaque, 'transparent' RGBA, or 'paper' RGB."""
    canvas = np.zeros((CANVAS, CANVAS), np.float32)
    h, w = ink.shape
    canvas[top : top + h, left : left + w] = ink
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
    pen = max(2.0, float(rng.uniform(*s.pen)) * size)
    aspect = float(np.exp(rng.uniform(np.log(s.aspect[0]), np.log(s.aspect[1]))))
    angle = float(rng.uniform(*s.rotation) * rng.choice([-1, 1]))
    background = str(rng.choice(s.backgrounds))
    method = str(rng.choice(s.methods))
    if method == "pen":
        # Trace the centre line at 3x MNIST resolution (smooth enough, cheap to thin), then draw it.
        shape = digit_shape(digit, 60.0, aspect, angle)
        ink, used = pen_ink(thin(shape), size / max(shape.shape), pen), pen
    else:
        ink, used = stroke_ink(digit_shape(digit, size, aspect, angle), pen)
    ys, xs = np.nonzero(ink > 0)
    ink = ink[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    if max(ink.shape) > CANVAS - 4:  # a thick pen on a large digit: shrink to fit the canvas
        f = (CANVAS - 4) / max(ink.shape)
        ink = np.asarray(
            Image.fromarray(ink, mode="F").resize(
                (max(1, round(ink.shape[1] * f)), max(1, round(ink.shape[0] * f))), Image.BILINEAR
            )
        )
    h, w = ink.shape
    top = int(rng.integers(0, CANVAS - h + 1))
    left = int(rng.integers(0, CANVAS - w + 1))
    return Redrawn(composite(ink, top, left, background), size, used, aspect, angle, background, method)
