"""Handwritten letters and symbols that resemble no digit, drawn as canvas strokes by several "hands".

Each shape is a list of pen paths in a unit box (x right, y down). A hand draws one: it picks a size,
aspect, slant and rotation, places the shape anywhere on the 280x280 canvas, adds a slow wobble and
per-point jitter to every path, and sends it as the Draw canvas does ({"w": pen width, "p": [x0, y0, ...]},
a point every few pixels). mnistcore.strokes.rasterize turns the strokes into the picture the Draw page
gets, so these look like real canvas drawings. Used by bench/ood.py (the not-a-digit benchmark) and, for the
ten digits written several ways (DIGITS), by bench/draw_preset.py.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from mnistcore.strokes import SIZE, rasterize

Path = list[tuple[float, float]]


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, n: int = 24) -> Path:
    """Points on an ellipse from angle `start` to `end` (degrees, counter-clockwise on screen, y down)."""
    ts = np.radians(np.linspace(start, end, n))
    return [(cx + rx * math.cos(t), cy - ry * math.sin(t)) for t in ts]


# Letters and symbols that a digit classifier has no right to read as a digit. Not here on purpose:
# O, I, L, S, Z, B, G, Q, b, g, q (each is drawn like some digit).
SHAPES: dict[str, list[Path]] = {
    "A": [[(0.1, 1.0), (0.5, 0.0), (0.9, 1.0)], [(0.28, 0.6), (0.72, 0.6)]],
    "C": [_arc(0.55, 0.5, 0.45, 0.5, 50, 310)],
    "E": [[(0.85, 0.0), (0.15, 0.0), (0.15, 1.0), (0.85, 1.0)], [(0.15, 0.5), (0.7, 0.5)]],
    "F": [[(0.85, 0.0), (0.2, 0.0), (0.2, 1.0)], [(0.2, 0.5), (0.7, 0.5)]],
    "H": [[(0.15, 0.0), (0.15, 1.0)], [(0.85, 0.0), (0.85, 1.0)], [(0.15, 0.5), (0.85, 0.5)]],
    "K": [[(0.2, 0.0), (0.2, 1.0)], [(0.8, 0.0), (0.2, 0.58)], [(0.38, 0.45), (0.85, 1.0)]],
    "M": [[(0.08, 1.0), (0.15, 0.0), (0.5, 0.65), (0.85, 0.0), (0.92, 1.0)]],
    "N": [[(0.15, 1.0), (0.15, 0.0), (0.85, 1.0), (0.85, 0.0)]],
    "P": [[(0.2, 1.0), (0.2, 0.0), (0.55, 0.0), *_arc(0.55, 0.27, 0.3, 0.27, 90, -90, 14), (0.2, 0.54)]],
    "R": [
        [(0.2, 1.0), (0.2, 0.0), (0.55, 0.0), *_arc(0.55, 0.25, 0.28, 0.25, 90, -90, 14), (0.2, 0.5)],
        [(0.45, 0.5), (0.85, 1.0)],
    ],
    "T": [[(0.05, 0.0), (0.95, 0.0)], [(0.5, 0.0), (0.5, 1.0)]],
    "V": [[(0.1, 0.0), (0.5, 1.0), (0.9, 0.0)]],
    "W": [[(0.0, 0.0), (0.25, 1.0), (0.5, 0.35), (0.75, 1.0), (1.0, 0.0)]],
    "X": [[(0.1, 0.0), (0.9, 1.0)], [(0.9, 0.0), (0.1, 1.0)]],
    "Y": [[(0.1, 0.0), (0.5, 0.5), (0.9, 0.0)], [(0.5, 0.5), (0.5, 1.0)]],
    "#": [
        [(0.38, 0.0), (0.3, 1.0)],
        [(0.72, 0.0), (0.64, 1.0)],
        [(0.05, 0.33), (0.97, 0.33)],
        [(0.03, 0.67), (0.95, 0.67)],
    ],
    "+": [[(0.5, 0.0), (0.5, 1.0)], [(0.0, 0.5), (1.0, 0.5)]],
    "*": [[(0.5, 0.0), (0.5, 1.0)], [(0.07, 0.25), (0.93, 0.75)], [(0.93, 0.25), (0.07, 0.75)]],
    "=": [[(0.05, 0.3), (0.95, 0.3)], [(0.05, 0.7), (0.95, 0.7)]],
    "?": [[*_arc(0.5, 0.27, 0.32, 0.27, 160, -60, 18), (0.5, 0.72)], [(0.5, 0.93), (0.5, 1.0)]],
    "@": [
        [
            *_arc(0.52, 0.52, 0.17, 0.2, 0, 360, 20),
            (0.69, 0.52),
            (0.7, 0.68),
            (0.8, 0.72),
            (0.92, 0.6),
            *_arc(0.5, 0.5, 0.45, 0.5, 10, 330, 30),
        ]
    ],
}


# The ten digits as people write them, several ways each (closed and open 4, 7 with and without a bar,
# 1 with a flag or a base, 8 in one stroke or as two loops, 9 with a straight or a curved tail...): used by
# bench/draw_preset.py to measure how the network reads digits drawn on the canvas, by the hands below.
DIGITS: dict[int, list[list[Path]]] = {
    0: [[_arc(0.5, 0.5, 0.42, 0.5, 95, 455, 30)], [_arc(0.5, 0.5, 0.38, 0.5, 110, 440, 28)]],
    1: [
        [[(0.5, 0.0), (0.5, 1.0)]],
        [[(0.25, 0.22), (0.55, 0.0), (0.55, 1.0)]],
        [[(0.25, 0.22), (0.55, 0.0), (0.55, 1.0)], [(0.25, 1.0), (0.85, 1.0)]],
    ],
    2: [
        [[*_arc(0.5, 0.3, 0.38, 0.3, 160, -30, 16), (0.1, 1.0), (0.9, 1.0)]],
        [[*_arc(0.5, 0.28, 0.4, 0.28, 170, -10, 16), (0.5, 0.62), (0.1, 1.0), (0.95, 0.98)]],
    ],
    3: [
        [[*_arc(0.5, 0.26, 0.36, 0.26, 150, -90, 16), *_arc(0.5, 0.74, 0.4, 0.26, 90, -150, 16)]],
        [[(0.15, 0.0), (0.85, 0.0), (0.45, 0.4), *_arc(0.5, 0.7, 0.4, 0.3, 110, -150, 16)]],
    ],
    4: [
        [[(0.68, 1.0), (0.68, 0.0), (0.05, 0.7), (0.95, 0.7)]],
        [[(0.2, 0.0), (0.12, 0.6), (0.92, 0.6)], [(0.68, 0.2), (0.68, 1.0)]],
    ],
    5: [
        [[(0.85, 0.0), (0.25, 0.0), (0.2, 0.45), *_arc(0.5, 0.68, 0.38, 0.32, 140, -150, 16)]],
        [[(0.25, 0.0), (0.2, 0.45), *_arc(0.5, 0.68, 0.38, 0.32, 140, -150, 16)], [(0.25, 0.0), (0.85, 0.0)]],
    ],
    6: [
        [[*_arc(0.85, 0.7, 0.73, 0.7, 100, 180, 8), *_arc(0.5, 0.7, 0.38, 0.3, 180, 540, 24)]],
        [[(0.7, 0.0), (0.2, 0.55), *_arc(0.5, 0.72, 0.35, 0.28, 160, 520, 24)]],
    ],
    7: [[[(0.1, 0.0), (0.9, 0.0), (0.35, 1.0)]], [[(0.1, 0.0), (0.9, 0.0), (0.35, 1.0)], [(0.3, 0.5), (0.85, 0.5)]]],
    8: [
        [_arc(0.5, 0.25, 0.3, 0.25, 0, 360, 20), _arc(0.5, 0.74, 0.38, 0.26, 0, 360, 20)],
        [
            [
                *_arc(0.5, 0.25, 0.32, 0.25, 30, 270, 14),
                *_arc(0.5, 0.75, 0.38, 0.25, 90, -270, 22),
                *_arc(0.5, 0.25, 0.32, 0.25, -90, 30, 8),
            ]
        ],
    ],
    9: [
        [[*_arc(0.45, 0.28, 0.35, 0.28, 0, 360, 22), (0.8, 0.28), (0.75, 1.0)]],
        [[*_arc(0.45, 0.28, 0.35, 0.28, 0, 360, 22), (0.8, 0.3), (0.72, 0.88), (0.5, 1.0), (0.25, 0.92)]],
    ],
}


@dataclass(frozen=True)
class Hand:
    """How one writer draws: ranges each sample draws from."""

    pen: tuple[float, float]  # pen width in canvas px (the Draw page's slider: 6-40, default 18)
    size: tuple[float, float]  # canvas px of the shape's longer side
    slant: float  # max |horizontal shear|
    rotation: float  # max |rotation| in degrees
    wobble: float  # slow wobble of each path, as a share of the size
    jitter: float  # per-point jitter in px


HANDS: dict[str, Hand] = {
    "neat": Hand(pen=(14, 22), size=(150, 230), slant=0.1, rotation=4, wobble=0.01, jitter=0.5),
    "quick": Hand(pen=(12, 20), size=(130, 240), slant=0.3, rotation=10, wobble=0.03, jitter=1.5),
    "marker": Hand(pen=(26, 40), size=(170, 250), slant=0.15, rotation=6, wobble=0.02, jitter=1.0),
    "fine": Hand(pen=(6, 10), size=(120, 220), slant=0.15, rotation=8, wobble=0.02, jitter=0.8),
    # Held out of any tuning: small, shaky drawings off in a corner, and large sloppy ones.
    "small": Hand(pen=(10, 18), size=(80, 130), slant=0.2, rotation=12, wobble=0.04, jitter=1.2),
    "sloppy": Hand(pen=(14, 30), size=(160, 260), slant=0.35, rotation=15, wobble=0.06, jitter=2.5),
}
TUNING_HANDS = ("neat", "quick", "marker", "fine")


def _densify(path: np.ndarray, step: float) -> np.ndarray:
    """Points every ~`step` px along a polyline (what a browser's pointer events give)."""
    out = [path[0]]
    for a, b in itertools.pairwise(path):
        n = max(1, math.ceil(float(np.hypot(*(b - a))) / step))
        out.extend(a + (b - a) * (k / n) for k in range(1, n + 1))
    return np.array(out)


def draw_shape(paths: list[Path], hand: Hand, rng: np.random.Generator) -> list[dict]:
    """One drawing of a shape by a hand: canvas strokes [{"w": width, "p": [x0, y0, ...]}, ...]."""
    size = float(rng.uniform(*hand.size))
    aspect = float(np.exp(rng.uniform(-0.25, 0.25)))
    shear = float(rng.uniform(-hand.slant, hand.slant))
    angle = math.radians(float(rng.uniform(-hand.rotation, hand.rotation)))
    c, s = math.cos(angle), math.sin(angle)
    linear = np.array([[c, -s], [s, c]]) @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag([aspect, 1.0])
    pen = float(rng.uniform(*hand.pen))
    placed = []
    for path in paths:
        pts = _densify(np.array(path, dtype=np.float64) - 0.5, 4.0 / size) * size
        t = np.linspace(0, 1, len(pts))
        for axis in range(2):  # a slow wobble: two random sines along the path
            f, ph = rng.uniform(0.5, 2.0, 2), rng.uniform(0, 2 * math.pi, 2)
            wave = np.sin(2 * math.pi * f[0] * t + ph[0]) + np.sin(np.pi * f[1] * t + ph[1])
            pts[:, axis] += hand.wobble * size * wave / 2
        pts = pts @ linear.T + rng.normal(0, hand.jitter, pts.shape)
        placed.append(pts)
    allpts = np.concatenate(placed)
    lo, hi = allpts.min(0) - pen / 2, allpts.max(0) + pen / 2
    span = hi - lo
    if span.max() > SIZE - 4:  # a large shape with a thick pen: shrink it onto the canvas
        k = (SIZE - 4) / span.max()
        placed, lo, span = [p * k for p in placed], lo * k, span * k
    offset = np.array([rng.uniform(2, SIZE - 2 - span[i]) for i in range(2)]) - lo
    return [{"w": pen, "p": [round(float(v), 1) for v in (p + offset).ravel()]} for p in placed]


def drawings(seed: int, per_shape: int, hands: tuple[str, ...] | None = None) -> Iterator[tuple[str, str, np.ndarray]]:
    """(shape, hand, 280x280 uint8 canvas) for every shape, `per_shape` times, hands in turn."""
    rng = np.random.default_rng(seed)
    names = hands or tuple(HANDS)
    for shape, paths in SHAPES.items():
        for k in range(per_shape):
            hand = names[k % len(names)]
            yield shape, hand, rasterize(draw_shape(paths, HANDS[hand], rng))


def digit_drawings(
    seed: int, per_digit: int, hands: tuple[str, ...] | None = None
) -> Iterator[tuple[int, str, np.ndarray]]:
    """(digit, hand, 280x280 uint8 canvas): each digit `per_digit` times, its ways of writing and the hands in turn."""
    rng = np.random.default_rng(seed)
    names = hands or tuple(HANDS)
    for digit, variants in DIGITS.items():
        for k in range(per_digit):
            hand = names[k % len(names)]
            yield digit, hand, rasterize(draw_shape(variants[(k // len(names)) % len(variants)], HANDS[hand], rng))
