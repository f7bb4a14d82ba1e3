"""Figure builders and image helpers of the dashboard (ui/figures.py, ui/gallery.py): pure, no Streamlit."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from mnistcore.calibration import reliability, reliability_pair
from mnistcore.train import BatchEvent, EpochEvent
from ui.figures import (
    CORRECT_COLOR,
    ERROR_COLOR,
    NEGATIVE_RGB,
    POSITIVE_RGB,
    cell_from_selection,
    class_counts_figure,
    confusion_figure,
    confusion_values,
    digit_bars,
    diverging_rgb,
    evidence_overlay,
    image_grid_figure,
    labelled_row,
    mosaic,
    parse_cell,
    pick_from_selection,
    png_data_uri,
    probability_bars,
    reliability_figure,
    rgb_png_data_uri,
    scale_legend,
    templates_picture,
    training_curves,
    unit_grid_figure,
    upscale,
    upscale_rgb,
    why_picture,
)
from ui.gallery import GRID_CLASS, html_grid


@pytest.fixture
def cm() -> np.ndarray:
    rng = np.random.default_rng(0)
    m = rng.integers(0, 20, size=(10, 10))
    m[np.diag_indices(10)] = rng.integers(900, 1100, size=10)
    m[3, 7] = 0
    return m


def scatter_of(fig):
    return next(t for t in fig.data if t.type == "scatter")


def test_confusion_figure_has_a_clickable_overlay_with_customdata_per_cell(cm):
    fig = confusion_figure(cm)
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert len(heatmaps) == 2
    assert all(h.hoverinfo == "skip" for h in heatmaps)  # hover and clicks come from the overlay
    sc = scatter_of(fig)
    assert sc.hoverinfo != "skip" and sc.mode == "markers" and sc.marker.symbol == "square"
    assert sc.marker.color == "rgba(0,0,0,0)"
    assert len(sc.customdata) == 100
    for x, y, (true, pred, count, _pct) in zip(sc.x, sc.y, sc.customdata, strict=True):
        assert (x, y) == (pred, true)  # columns are predictions, rows true digits
        assert count == cm[int(true), int(pred)]
    assert "True %{customdata[0]}" in sc.hovertemplate and "%{customdata[2]}" in sc.hovertemplate


def test_confusion_figure_axes_are_fixed_and_rows_read_top_down(cm):
    fig = confusion_figure(cm)
    assert tuple(fig.layout.xaxis.range) == (-0.5, 9.5)
    assert tuple(fig.layout.yaxis.range) == (9.5, -0.5)
    assert list(fig.layout.xaxis.tickvals) == list(range(10))
    assert fig.layout.xaxis.title.text == "Predicted digit" and fig.layout.yaxis.title.text == "True digit"


def test_confusion_figure_diagonal_is_its_own_trace_in_its_own_colour(cm):
    off, diag = (t for t in confusion_figure(cm).data if t.type == "heatmap")
    off_z, diag_z = np.array(off.z, dtype=float), np.array(diag.z, dtype=float)
    eye = np.eye(10, dtype=bool)
    assert np.isnan(off_z[eye]).all() and np.isnan(diag_z[~eye]).all()
    assert (diag_z[eye] == cm[eye]).all() and (off_z[~eye] == cm[~eye]).all()
    assert diag.colorscale[-1][1] == CORRECT_COLOR
    assert off.colorscale[-1][1] != diag.colorscale[-1][1]
    # zero cells stay blank, counts are printed
    assert np.array(off.text)[3, 7] == "" and np.array(diag.text)[0, 0] == str(cm[0, 0])


def test_confusion_values_row_normalised(cm):
    pct = confusion_values(cm, normalize=True)
    assert np.allclose(pct.sum(axis=1), 100)
    assert np.allclose(confusion_values(np.zeros((10, 10)), normalize=True), 0)  # empty rows give 0, not nan
    fig = confusion_figure(cm, normalize=True)
    assert np.array(fig.data[1].text)[0, 0] == f"{pct[0, 0]:.1f}"
    assert [row[2] for row in scatter_of(fig).customdata] == cm.ravel().tolist()  # hover keeps counts


def test_selected_cell_is_outlined(cm):
    assert not confusion_figure(cm).layout.shapes
    shape = confusion_figure(cm, selected=(4, 9)).layout.shapes[0]
    assert (shape.x0, shape.x1, shape.y0, shape.y1) == (8.5, 9.5, 3.5, 4.5)


@pytest.mark.parametrize(
    "selection, expected",
    [
        ({"selection": {"points": [{"curve_number": 2, "customdata": {"0": 9, "1": 2, "2": 5}}]}}, (9, 2)),
        ({"points": [{"customdata": [4, 9, 12, 1.2]}]}, (4, 9)),
        ([{"customdata": {"0": 0, "1": 0, "2": 971}}], (0, 0)),
        ({"selection": {"points": []}}, None),  # a click on the selected cell deselects it
        ({"selection": {"points": [{"x": 1, "y": 2}]}}, None),  # a point without customdata
        ({"selection": {"points": [{"customdata": {"0": 11, "1": 2}}]}}, None),
        (None, None),
    ],
)
def test_cell_from_selection(selection, expected):
    assert cell_from_selection(selection) == expected


@pytest.mark.parametrize(
    "true, pred, expected",
    [
        ("4", "9", (4, 9)),
        (0, 0, (0, 0)),
        ("10", "1", None),
        ("a", "1", None),
        (None, "2", None),
        ("-1", "3", None),
    ],
)
def test_parse_cell(true, pred, expected):
    assert parse_cell(true, pred) == expected


def test_pick_from_selection():
    assert pick_from_selection({"selection": {"points": [{"customdata": {"0": 1234, "1": 4}}]}}) == 1234
    assert pick_from_selection({"selection": {"points": [{"customdata": [77, 1, 2]}]}}) == 77
    assert pick_from_selection({"selection": {"points": []}}) is None
    assert pick_from_selection(None) is None


def events(epochs: int = 2, batches: int = 4):
    out = []
    step = 0
    for e in range(1, epochs + 1):
        for b in range(1, batches + 1):
            step += 1
            out.append(
                BatchEvent(
                    epoch=e,
                    epochs=epochs,
                    batch=b,
                    batches=batches,
                    step=step,
                    total_steps=epochs * batches,
                    loss=1.0 / step,
                    train_accuracy=0.5 + step / 20,
                    elapsed=step * 0.1,
                    eta=0.1 * (epochs * batches - step),
                )
            )
        out.append(
            EpochEvent(
                epoch=e,
                epochs=epochs,
                train_loss=0.5 / e,
                train_accuracy=0.8,
                test_loss=0.6 / e,
                test_accuracy=0.85 + e / 100,
                epoch_seconds=0.4,
                elapsed=0.4 * e,
            )
        )
    return out


def test_training_curves():
    fig = training_curves(events())
    names = [t.name for t in fig.data]
    assert names == ["train loss", "test loss", "train accuracy", "test accuracy"]
    train_loss, test_loss, _, test_acc = fig.data
    assert len(train_loss.x) == 8 and train_loss.x[-1] == pytest.approx(2.0)
    assert list(test_loss.x) == [1, 2] and list(test_acc.y) == pytest.approx([0.86, 0.87])
    assert tuple(fig.layout.xaxis.range) == (0, 2)


def test_training_curves_are_valid_plotly():
    # Built without plotly's (slow) validation from a validated template: validating it now changes nothing.
    fig = training_curves(events())
    assert go.Figure(fig.to_dict()).to_dict() == fig.to_dict()


def test_training_curves_empty():
    fig = training_curves([])
    assert all(len(t.x) == 0 for t in fig.data)


def test_probability_bars_highlight_the_prediction():
    probs = np.full(10, 0.02)
    probs[7] = 0.82
    fig = probability_bars(probs)
    colors = list(fig.data[0].marker.color)
    assert colors[7] == CORRECT_COLOR and len(set(colors[:7] + colors[8:])) == 1
    assert list(fig.data[0].x) == list(range(10))
    assert list(probability_bars(probs, true=1).data[0].marker.color)[7] == ERROR_COLOR
    assert list(probability_bars(probs, true=7).data[0].marker.color)[7] == CORRECT_COLOR


def test_class_counts_figure():
    fig = class_counts_figure(np.arange(10) + 100, np.arange(10))
    assert [list(t.y) for t in fig.data] == [list(range(100, 110)), list(range(10))]


def test_mosaic_and_upscale():
    imgs = np.stack([np.full((28, 28), i, np.uint8) for i in range(5)])
    m = mosaic(imgs, cols=3, pad=2)
    assert m.shape == (2 * 32, 3 * 32)
    assert m[2, 2] == 0 and m[2, 32 + 2] == 1 and m[32 + 2, 32 + 2] == 4 and m[0, 0] == 255
    assert upscale(np.array([[1, 2]], np.uint8), 3).shape == (3, 6)


def test_png_data_uri_round_trips():
    pixels = (np.arange(28 * 28) % 256).astype(np.uint8).reshape(28, 28)
    uri = png_data_uri(pixels)
    assert uri.startswith("data:image/png;base64,")
    back = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
    assert (back == pixels).all()


def test_image_grid_figure():
    imgs = np.zeros((10, 28, 28), np.uint8)
    custom = [[100 + i, i % 10, 3] for i in range(10)]
    fig = image_grid_figure(imgs, [f"c{i}" for i in range(10)], custom, cols=4, highlight=5)
    image, text, markers = fig.data
    assert image.type == "image" and image.source.startswith("data:image/png;base64,")
    assert list(text.text) == [f"c{i}" for i in range(10)] and text.hoverinfo == "skip"
    assert [list(c) for c in markers.customdata] == custom and markers.hoverinfo != "skip"
    assert len(fig.layout.shapes) == 1
    empty = image_grid_figure(imgs[:0], [], [], cols=4)  # an empty page still draws
    assert len(empty.data[2].x) == 0


def test_html_grid_has_one_figure_per_image_in_order():
    imgs = np.zeros((37, 28, 28), np.uint8)
    caps = [f"0.{i:02d}" for i in range(37)]
    html = html_grid(imgs, caps, indices=range(500, 537))
    assert html.count("<figure") == 37 and f'class="{GRID_CLASS}"' in html and 'data-count="37"' in html
    assert re.findall(r'data-index="(\d+)"', html) == [str(i) for i in range(500, 537)]
    assert "<figcaption>0.00</figcaption>" in html
    assert "&lt;b&gt;" in html_grid(imgs[:1], ["<b>"])  # captions are escaped


# ---------------------------------------------------------------- attributions and hidden units


def _decode_rgb(uri: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))


def test_diverging_rgb_is_centred_on_zero():
    v = np.array([[-2.0, -1.0, 0.0, 1.0, 2.0, 0.5]])
    rgb = diverging_rgb(v, limit=1.0)
    assert rgb.shape == (1, 6, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == tuple(rgb[0, 1]) == NEGATIVE_RGB  # saturates at -limit
    assert tuple(rgb[0, 2]) == (255, 255, 255)
    assert tuple(rgb[0, 3]) == tuple(rgb[0, 4]) == POSITIVE_RGB
    assert tuple(rgb[0, 5]) == tuple(np.rint((255 + np.array(POSITIVE_RGB)) / 2).astype(int))
    np.testing.assert_array_equal(diverging_rgb(v)[0, 4], POSITIVE_RGB)  # default limit: the largest |value|
    assert (diverging_rgb(np.zeros((3, 3))) == 255).all()


def test_evidence_overlay():
    pixels = np.zeros((28, 28))
    pixels[10:12, 5:20] = 1.0
    attr = np.zeros((28, 28))
    attr[10, 5], attr[11, 5] = 2.0, -2.0
    out = evidence_overlay(pixels, attr, limit=2.0, factor=3)
    assert out.shape == (84, 84, 3)
    np.testing.assert_array_equal(out[30:33, 15:18], np.broadcast_to(POSITIVE_RGB, (3, 3, 3)))
    np.testing.assert_array_equal(out[33, 15], NEGATIVE_RGB)
    np.testing.assert_array_equal(out[30, 30], [145, 145, 145])  # ink with no evidence: grey
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])  # background: white
    weak = evidence_overlay(pixels, attr / 4, limit=2.0, factor=1)[10, 5]
    # a quarter of the limit: a quarter of the way from the grey ink to full red
    np.testing.assert_array_equal(weak, np.rint(0.75 * 145 + 0.25 * np.array(POSITIVE_RGB)))


def test_why_picture_shares_one_scale():
    pixels = np.zeros((28, 28))
    pixels[14, 14] = 1.0
    strong, weak = np.zeros((28, 28)), np.zeros((28, 28))
    strong[14, 14], weak[14, 14] = 4.0, 1.0
    pic = why_picture(pixels, [("Evidence for 9", strong), ("Evidence for 4", weak)], factor=2)
    assert pic.ndim == 3 and pic.shape[2] == 3 and pic.shape[1] == 2 * 56 + 14
    row = labelled_row(
        [evidence_overlay(pixels, strong, 4.0, 2), evidence_overlay(pixels, weak, 4.0, 2)],
        ["Evidence for 9", "Evidence for 4"],
    )
    np.testing.assert_array_equal(pic[: row.shape[0]], row)
    np.testing.assert_array_equal(pic[22 + 28, 28], POSITIVE_RGB)  # the strong map saturates...
    assert not np.array_equal(pic[22 + 28, 56 + 14 + 28], POSITIVE_RGB)  # ...the weak one, on its scale, does not
    assert (pic[:22] < 200).any()  # titles are drawn
    two_lines = why_picture(pixels, [("Evidence for 9\n(predicted)", strong), ("b", weak)], factor=2)
    assert two_lines.shape[0] == pic.shape[0] + 18 and (two_lines[22:40] < 200).any()


def test_labelled_row_and_legend():
    a = np.zeros((5, 4, 3), np.uint8)
    b = np.full((5, 6, 3), 100, np.uint8)
    row = labelled_row([a, b], ["a", "b"], gap=2, title_px=20)
    assert row.shape == (25, 12, 3)
    np.testing.assert_array_equal(row[20:, :4], a)
    np.testing.assert_array_equal(row[20:, 6:], b)
    assert (row[20:, 4:6] == 255).all()
    legend = scale_legend(100)
    assert legend.shape == (30, 100, 3) and not legend.flags.writeable
    np.testing.assert_array_equal(legend[0, 0], NEGATIVE_RGB)
    np.testing.assert_array_equal(legend[0, -1], POSITIVE_RGB)


def test_rgb_upscale_and_data_uri_round_trip():
    rgb = np.random.default_rng(0).integers(0, 256, (3, 4, 3), dtype=np.uint8)
    big = upscale_rgb(rgb, 2)
    assert big.shape == (6, 8, 3)
    np.testing.assert_array_equal(big[::2, ::2], rgb)
    np.testing.assert_array_equal(_decode_rgb(rgb_png_data_uri(rgb)), rgb)


def test_unit_grid_figure():
    maps = np.zeros((5, 28, 28))
    for i in range(5):
        maps[i, i, i] = i + 1.0
        maps[i, 27, 27] = -(i + 1.0) / 2
    fig = unit_grid_figure(
        maps, [f"#{j}" for j in (7, 3, 9, 1, 0)], [[7, 1], [3, 2], [9, 3], [1, 4], [0, 5]], cols=3, highlight=4
    )
    image, text, markers = fig.data
    assert [list(c) for c in markers.customdata] == [[7, 1], [3, 2], [9, 3], [1, 4], [0, 5]]
    assert list(text.text) == ["#7", "#3", "#9", "#1", "#0"]
    pic = _decode_rgb(image.source)
    tw, th = 34, 44
    assert pic.shape == (2 * th, 3 * tw, 3)
    for i in range(5):  # each tile on its own scale: its largest weight is full red, its most negative half blue
        r, c = divmod(i, 3)
        np.testing.assert_array_equal(pic[r * th + 3 + i, c * tw + 3 + i], POSITIVE_RGB)
        half_blue = np.rint(255 + (np.array(NEGATIVE_RGB) - 255) * 0.5)
        np.testing.assert_array_equal(pic[r * th + 3 + 27, c * tw + 3 + 27], half_blue)
    (shape,) = fig.layout.shapes
    assert (shape.x0, shape.y0) == (1 * tw + 0.5, 1 * th + 0.5)  # tile 4: row 1, column 1
    assert fig.layout.clickmode == "event+select"


def test_digit_bars_and_templates():
    fig = digit_bars(np.array([1.0, -1, 0, 2, -3, 0, 0, 0, 0, 0.5]), "weight")
    colors = list(fig.data[0].marker.color)
    assert colors[0] == f"rgb{POSITIVE_RGB}" and colors[1] == f"rgb{NEGATIVE_RGB}"
    assert len(set(digit_bars(np.arange(10.0), "mean", signed=False).data[0].marker.color)) == 1
    t = np.zeros((10, 28, 28))
    t[3, 0, 0] = 2.0
    t[5, 0, 0] = 1.0
    pic = templates_picture(t, factor=1)
    assert pic.shape == (22 + 28, 10 * 28 + 9 * 8, 3)
    np.testing.assert_array_equal(pic[22, 3 * 36], POSITIVE_RGB)  # one shared scale: 3's weight is the largest
    assert not np.array_equal(pic[22, 5 * 36], POSITIVE_RGB)


# ---------------------------------------------------------------- comparing runs, sweeps (issue 8)

from ui.figures import RUN_COLORS, recall_bars, run_curves, sweep_figure  # noqa: E402


def _history(accs, seconds_per_epoch=2.0, start=0):
    return [
        {"epoch": start + i + 1, "elapsed": seconds_per_epoch * (start + i + 1), "test_accuracy": a, "test_loss": 1 - a}
        for i, a in enumerate(accs)
    ]


def test_run_curves_per_epoch_and_per_second():
    runs = [("A", _history([0.9, 0.95])), ("B", _history([0.92, 0.96, 0.97], seconds_per_epoch=5.0))]
    fig = run_curves(runs, x="epoch")
    assert len(fig.data) == 4  # accuracy and loss per run
    acc = [t for t in fig.data if t.xaxis == "x"]
    loss = [t for t in fig.data if t.xaxis == "x2"]
    assert [t.name for t in acc] == ["A", "B"] and [list(t.x) for t in acc] == [[1, 2], [1, 2, 3]]
    assert list(acc[1].y) == [0.92, 0.96, 0.97] and list(loss[0].y) == pytest.approx([0.1, 0.05])
    assert acc[0].line.color == loss[0].line.color == RUN_COLORS[0] != acc[1].line.color
    assert [t.showlegend for t in fig.data] == [True, False, True, False]  # one legend entry per run
    secs = run_curves(runs, x="seconds")
    assert list(secs.data[2].x) == [5.0, 10.0, 15.0] and "training time" in secs.layout.xaxis.title.text
    with pytest.raises(ValueError):
        run_curves(runs, x="batches")
    assert len(run_curves([], x="epoch").data) == 0


def test_run_curves_of_a_continued_run_run_on():
    resumed = _history([0.9]) + _history([0.93, 0.95], start=1)
    fig = run_curves([("child", resumed)])
    assert list(fig.data[0].x) == [1, 2, 3] and list(run_curves([("c", resumed)], "seconds").data[0].x) == [2, 4, 6]


def test_recall_bars():
    r = np.array([np.linspace(0.9, 0.99, 10), np.linspace(0.95, 0.999, 10)])
    fig = recall_bars(["A", "B"], r)
    assert fig.layout.barmode == "group" and [t.name for t in fig.data] == ["A", "B"]
    assert list(fig.data[1].y) == pytest.approx(list(r[1])) and list(fig.data[0].x) == list(range(10))
    assert fig.layout.yaxis.range[0] == pytest.approx(0.85)
    with pytest.raises(ValueError):
        recall_bars(["A"], r)


def test_sweep_figure():
    fig = sweep_figure("hidden", [32, 64, 128], [0.95, 0.96, None])
    assert len(fig.data) == 1 and list(fig.data[0].x) == [32, 64] and fig.layout.xaxis.type == "linear"
    live = sweep_figure("hidden", [32, 64, 128], [0.95, 0.96, 0.9], running=2)
    assert list(live.data[0].x) == [32, 64] and list(live.data[1].x) == [128] and list(live.data[1].y) == [0.9]
    assert live.data[1].marker.symbol == "circle-open"
    assert sweep_figure("lr", [1e-4, 1e-3, 1e-2], [0.9, 0.95, 0.93]).layout.xaxis.type == "log"
    assert sweep_figure("dropout", [0.0, 0.2], [0.9, 0.91]).layout.xaxis.type == "linear"  # 0 cannot go on a log axis
    lone = sweep_figure("hidden", [32, 64], [0.95, None])
    assert lone.layout.yaxis.range == pytest.approx((0.94, 0.96))  # not plotly's 0-150 % for a lone point
    assert sweep_figure("hidden", [32, 64], [0.9, 0.95]).layout.yaxis.range is None


def test_reliability_figure_plots_the_engine_bins_after_and_before() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 2000)
    logits = rng.normal(size=(2000, 10)) * 3
    logits[np.arange(2000), labels] += rng.normal(2.0, 2.0, 2000)  # right more often than chance, not always
    after, before = reliability_pair(logits, labels, 1.7)
    fig = reliability_figure(after, before)
    diagonal, raw, shown = fig.data
    assert list(diagonal.x) == [0, 1] and list(diagonal.y) == [0, 1]
    for trace, r in ((raw, before), (shown, after)):
        full = [b for b in r.bins if b.count]
        assert np.allclose(trace.x, [b.confidence for b in full]) and np.allclose(trace.y, [b.accuracy for b in full])
        assert [int(c[0]) for c in trace.customdata] == [b.count for b in full]
        assert sum(int(c[0]) for c in trace.customdata) == 2000
    assert f"{before.ece:.2%}" in raw.name and f"{after.ece:.2%}" in shown.name
    assert after.ece != before.ece  # the temperature changed the confidences, so the two curves differ
    assert fig.layout.xaxis.tickformat == ".0%" and tuple(fig.layout.yaxis.range) == (0, 1.02)


def test_reliability_figure_for_an_uncalibrated_run_has_one_curve() -> None:
    probs = np.array([[0.95] + [0.05 / 9] * 9, [0.55] + [0.45 / 9] * 9])
    fig = reliability_figure(reliability(probs, np.array([0, 3])))
    assert len(fig.data) == 2 and "uncalibrated" in fig.data[1].name
    assert list(fig.data[1].y) == [0.0, 1.0]  # the 0.55 bin was wrong, the 0.95 one right
