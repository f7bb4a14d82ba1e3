"""Stroke paths (what the Draw canvas sends) drawn into a picture: pure computation, no UI.

A drawing is a list of strokes, each {"w": pen width, "p": [x0, y0, x1, y1, ...]} in canvas pixels.
`rasterize` draws them white on black with a round pen, as the browser does, into the SIZE x SIZE
picture that prepare_digit then turns into the model's 28x28 input. The payload comes from a browser,
so everything about it is bounded and checked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

SIZE = 280  # canvas pixels (10x the 28x28 input)
MAX_STROKES = 200  # a drawing with more is refused as not a digit (and keeps the payload bounded)
MAX_POINTS = 20_000


def _points(raw: Any) -> np.ndarray:
    values = np.asarray(raw, dtype=np.float64)
    if values.ndim != 1 or len(values) < 2 or len(values) % 2 or not np.isfinite(values).all():
        raise ValueError("a stroke needs pairs of finite coordinates")
    return values.reshape(-1, 2)


def rasterize(strokes: Sequence[Any], size: int = SIZE) -> np.ndarray:
    """Draw stroke paths ([{"w": width, "p": [x0, y0, x1, y1, ...]}, ...]) white on black: (size, size) uint8.

    Raises ValueError for anything that is not such a list (the payload comes from a browser).
    """
    if not isinstance(strokes, list | tuple) or len(strokes) > MAX_STROKES:
        raise ValueError(f"expected a list of at most {MAX_STROKES} strokes")
    img = Image.new("L", (size, size), 0)
    pen = ImageDraw.Draw(img)
    total = 0
    for stroke in strokes:
        if not isinstance(stroke, dict):
            raise ValueError("each stroke must be an object with a width and points")
        width = float(stroke.get("w", 0))
        if not (math.isfinite(width) and 1 <= width <= size):
            raise ValueError("stroke width out of range")
        pts = _points(stroke.get("p"))
        total += len(pts)
        if total > MAX_POINTS:
            raise ValueError(f"more than {MAX_POINTS} points")
        r = width / 2
        # Round caps and joins, as the browser draws them: a disc at every point, lines between.
        flat = [(float(x), float(y)) for x, y in pts]
        if len(flat) > 1:
            pen.line(flat, fill=255, width=max(1, round(width)))
        for x, y in flat:
            pen.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return np.asarray(img)
