"""Stroke paths (mnistcore/strokes.py, what the Draw canvas sends) rasterised, hostile payloads refused."""

from __future__ import annotations

import numpy as np
import pytest

from mnistcore.strokes import MAX_POINTS, SIZE, rasterize


def test_no_strokes_is_a_black_canvas():
    img = rasterize([])
    assert img.shape == (SIZE, SIZE) and img.dtype == np.uint8 and img.max() == 0


def test_a_horizontal_stroke_has_its_width_and_round_ends():
    img = rasterize([{"w": 20, "p": [100, 140, 180, 140]}])
    column = img[:, 140] > 0
    assert 19 <= column.sum() <= 22  # the pen's width across the line
    row = img[140] > 0
    assert row[90:191].all() and not row[:88].any() and not row[193:].any()  # caps reach w/2 beyond the ends
    assert img[140, 100 - 9] == 255 and img[140 - 9, 100 - 9] == 0  # round, not square, cap


def test_a_single_click_is_a_dot():
    img = rasterize([{"w": 10, "p": [50, 60]}])
    ys, xs = np.nonzero(img)
    assert abs(ys.mean() - 60) < 1 and abs(xs.mean() - 50) < 1 and 60 <= len(ys) <= 100


def test_matches_what_prepare_digit_needs():
    from mnistcore.preprocess import prepare_digit

    digit = prepare_digit(rasterize([{"w": 18, "p": [140, 40, 140, 240]}]))
    assert not digit.empty and digit.pixels.shape == (28, 28)


@pytest.mark.parametrize(
    "payload",
    [
        "not a list",
        [1, 2],
        [{"w": 18}],
        [{"w": 18, "p": [1, 2, 3]}],
        [{"w": 18, "p": [1, float("nan")]}],
        [{"w": 0, "p": [1, 2]}],
        [{"w": 1e9, "p": [1, 2]}],
        [{"w": 18, "p": [[1, 2]]}],
        [{"w": 18, "p": [1, 2]}] * 201,
        [{"w": 5, "p": [1.0, 2.0] * (MAX_POINTS + 1)}],
    ],
)
def test_hostile_payloads_are_refused(payload):
    with pytest.raises(ValueError):
        rasterize(payload)
