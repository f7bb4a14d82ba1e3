"""Plotly figure builders and image mosaics: pure functions of arrays, testable without Streamlit."""

from __future__ import annotations

import base64
import copy
import functools
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

from mnistcore.calibration import Reliability
from mnistcore.train import BatchEvent, EpochEvent

DIGITS = list(range(10))
CORRECT_COLOR = "#15803D"  # green: right answers (the diagonal, the predicted bar when it is right)
ERROR_COLOR = "#B91C1C"  # red: mistakes
NEUTRAL_COLOR = "#94A3B8"


# ---------------------------------------------------------------- confusion matrix


def confusion_values(cm: np.ndarray, normalize: bool = False) -> np.ndarray:
    """Counts, or each row as a percentage of that true digit's images (rows with no images give 0)."""
    cm = np.asarray(cm, dtype=np.float64)
    if not normalize:
        return cm
    rows = cm.sum(axis=1, keepdims=True)
    return np.divide(cm * 100.0, rows, out=np.zeros_like(cm), where=rows > 0)


def confusion_figure(cm: np.ndarray, normalize: bool = False, selected: tuple[int, int] | None = None) -> go.Figure:
    """Clickable confusion matrix: rows = true digit, columns = predicted.

    Two heatmaps (errors in reds scaled to the largest error, the diagonal in greens) so the diagonal
    reads distinctly and small error counts still show; an invisible square marker per cell on top
    carries customdata [true, pred, count, row %] for hover and click selection (a heatmap alone
    returns an empty selection on click).
    """
    cm = np.asarray(cm, dtype=np.int64)
    values = confusion_values(cm, normalize)
    pct = confusion_values(cm, True)
    eye = np.eye(10, dtype=bool)
    text = np.where(cm == 0, "", np.vectorize(lambda v: f"{v:.1f}" if normalize else f"{int(v)}")(values))
    off = np.where(eye, np.nan, values)
    diag = np.where(eye, values, np.nan)
    off_max = float(np.nanmax(off)) if np.isfinite(off).any() and np.nanmax(off) > 0 else 1.0
    diag_max = float(np.nanmax(diag)) if np.isfinite(diag).any() and np.nanmax(diag) > 0 else 1.0
    common = dict(
        x=DIGITS,
        y=DIGITS,
        hoverinfo="skip",
        showscale=False,
        xgap=1,
        ygap=1,
        texttemplate="%{text}",
        textfont=dict(size=13),
    )
    fig = go.Figure()
    fig.add_trace(
        go.Heatmap(
            z=off, text=text, zmin=0, zmax=off_max, name="errors", colorscale=[[0, "#FFF1F0"], [1, "#F87171"]], **common
        )
    )
    fig.add_trace(
        go.Heatmap(
            z=diag,
            text=text,
            zmin=0,
            zmax=diag_max,
            name="correct",
            colorscale=[[0, "#DCFCE7"], [1, CORRECT_COLOR]],
            **common,
        )
    )
    t, p = np.meshgrid(DIGITS, DIGITS, indexing="ij")
    custom = np.stack([t.ravel(), p.ravel(), cm.ravel(), np.round(pct.ravel(), 2)], axis=1)
    fig.add_trace(
        go.Scatter(
            x=p.ravel(),
            y=t.ravel(),
            mode="markers",
            name="cells",
            customdata=custom,
            showlegend=False,
            marker=dict(symbol="square", size=40, color="rgba(0,0,0,0)"),
            hovertemplate=(
                "True %{customdata[0]} → predicted %{customdata[1]}<br>"
                "%{customdata[2]} images (%{customdata[3]:.1f}% of the true %{customdata[0]}s)"
                "<extra></extra>"
            ),
        )
    )
    if selected is not None:
        true, pred = selected
        fig.add_shape(
            type="rect", x0=pred - 0.5, x1=pred + 0.5, y0=true - 0.5, y1=true + 0.5, line=dict(color="#1E1B4B", width=3)
        )
    axis = dict(tickmode="array", tickvals=DIGITS, showgrid=False, zeroline=False, fixedrange=True)
    fig.update_layout(
        height=560,
        margin=dict(l=60, r=20, t=20, b=60),
        plot_bgcolor="white",
        clickmode="event+select",
        dragmode=False,
        xaxis=dict(title="Predicted digit", range=[-0.5, 9.5], side="bottom", constrain="domain", **axis),
        yaxis=dict(title="True digit", range=[9.5, -0.5], scaleanchor="x", constrain="domain", **axis),
    )
    return fig


def cell_from_selection(selection: Any) -> tuple[int, int] | None:
    """(true, pred) of the first clicked cell in a plotly selection, or None when nothing is selected.

    Accepts the event Streamlit returns (or its `selection` mapping, or the list of points); customdata
    comes back as a dict keyed "0", "1", ... rather than a list.
    """
    if selection is None:
        return None
    if not isinstance(selection, list | tuple):
        sel = selection.get("selection", selection) if hasattr(selection, "get") else selection
        points = sel.get("points", []) if hasattr(sel, "get") else []
    else:
        points = selection
    for point in points or []:
        custom = point.get("customdata") if hasattr(point, "get") else None
        if custom is None:
            continue
        seq = [custom[str(i)] for i in range(len(custom))] if isinstance(custom, dict) else list(custom)
        if len(seq) >= 2:
            true, pred = int(seq[0]), int(seq[1])
            if 0 <= true <= 9 and 0 <= pred <= 9:
                return true, pred
    return None


def parse_cell(true: Any, pred: Any) -> tuple[int, int] | None:
    """A (true, pred) cell from query-string values, or None unless both are digits 0..9."""
    try:
        t, p = int(str(true)), int(str(pred))
    except (TypeError, ValueError):
        return None
    return (t, p) if 0 <= t <= 9 and 0 <= p <= 9 else None


def pick_from_selection(selection: Any) -> int | None:
    """The test-image index (customdata[0]) of the first clicked tile of an image-grid figure."""
    points = []
    if selection is not None:
        sel = selection.get("selection", selection) if hasattr(selection, "get") else {}
        points = sel.get("points", []) if hasattr(sel, "get") else []
    for point in points:
        custom = point.get("customdata") if hasattr(point, "get") else None
        if custom is None:
            continue
        first = custom["0"] if isinstance(custom, dict) else (custom[0] if len(custom) else None)
        if first is not None:
            return int(first)
    return None


# ---------------------------------------------------------------- training curves


def _split_events(events: Sequence[BatchEvent | EpochEvent]) -> tuple[list[BatchEvent], list[EpochEvent]]:
    batches = [e for e in events if isinstance(e, BatchEvent)]
    epochs = [e for e in events if isinstance(e, EpochEvent)]
    return batches, epochs


def training_curves(events: Sequence[BatchEvent | EpochEvent], max_points: int = 400) -> go.Figure:
    """Loss (left) and accuracy (right) against epochs: training values as they stream, test per epoch.

    At most `max_points` training points (evenly thinned, the last one kept): redrawn every half second
    while a job runs, the figure's cost must not grow with the length of the training.
    """
    batches, epochs = _split_events(events)
    if len(batches) > max_points:
        stride = -(-len(batches) // max_points)
        batches = [*batches[:-1:stride], batches[-1]]
    total = batches[-1].epochs if batches else (epochs[-1].epochs if epochs else 1)
    layout, traces = _curves_template(max(total, 1))
    bx = [e.epoch - 1 + e.batch / e.batches for e in batches]
    ex = [e.epoch for e in epochs]
    xy = [
        (bx, [e.loss for e in batches]),
        (ex, [e.test_loss for e in epochs]),
        (bx, [e.train_accuracy for e in batches]),
        (ex, [e.test_accuracy for e in epochs]),
    ]
    # The template was built (and validated) through plotly's API once; filling in plain lists of floats
    # needs no validation, which costs ~15 ms a figure here, on every live poll of every user's Train page.
    data = [{**trace, "x": x, "y": y} for trace, (x, y) in zip(traces, xy, strict=True)]
    return go.Figure(data=data, layout=copy.deepcopy(layout), _validate=False)


@functools.lru_cache(maxsize=64)
def _curves_template(total_epochs: int) -> tuple[dict[str, Any], tuple[dict[str, Any], ...]]:
    """The training curves' layout and four empty traces for a run of `total_epochs`, as validated dicts."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"), horizontal_spacing=0.12)
    for name, col, color, dash, mode in (
        ("train loss", 1, "#6366F1", None, "lines"),
        ("test loss", 1, "#F59E0B", None, "lines+markers"),
        ("train accuracy", 2, "#6366F1", "dot", "lines"),
        ("test accuracy", 2, "#F59E0B", None, "lines+markers"),
    ):
        fig.add_trace(
            go.Scatter(
                x=[], y=[], mode=mode, name=name, line=dict(color=color, dash=dash), legendgroup=name.split()[0]
            ),
            row=1,
            col=col,
        )
    fig.update_xaxes(title_text="epoch", range=[0, total_epochs])
    fig.update_yaxes(tickformat=".0%", row=1, col=2)
    fig.update_layout(
        height=340, margin=dict(l=50, r=20, t=40, b=40), uirevision="curves", legend=dict(orientation="h", y=-0.25)
    )
    spec = fig.to_dict()
    return spec["layout"], tuple(spec["data"])


# ---------------------------------------------------------------- bars


def probability_bars(probs: np.ndarray, true: int | None = None, height: int = 260) -> go.Figure:
    """The ten class probabilities as bars; the predicted digit highlighted (red when it is wrong)."""
    probs = np.asarray(probs, dtype=np.float64).reshape(10)
    pred = int(probs.argmax())
    color = ERROR_COLOR if true is not None and true != pred else CORRECT_COLOR
    colors = [color if d == pred else NEUTRAL_COLOR for d in DIGITS]
    fig = go.Figure(
        go.Bar(
            x=DIGITS,
            y=probs,
            marker_color=colors,
            text=[f"{p:.0%}" if p >= 0.005 else "" for p in probs],
            textposition="outside",
            hovertemplate="digit %{x}: %{y:.2%}<extra></extra>",
        )
    )
    fig.update_layout(
        height=height,
        margin=dict(l=40, r=10, t=20, b=40),
        yaxis=dict(range=[0, 1.12], tickformat=".0%", title="probability"),
        xaxis=dict(tickmode="array", tickvals=DIGITS, title="digit", fixedrange=True),
        bargap=0.25,
    )
    return fig


# ---------------------------------------------------------------- reliability diagram

CALIBRATED_COLOR = "#1D4ED8"


def _reliability_trace(r: Reliability, name: str, color: str, dash: str) -> go.Scatter:
    """One curve: a marker per non-empty bin at (mean confidence, accuracy), its size growing with its count."""
    full = [b for b in r.bins if b.count]
    counts = np.array([b.count for b in full], dtype=np.float64)
    return go.Scatter(
        x=[b.confidence for b in full],
        y=[b.accuracy for b in full],
        name=name,
        mode="lines+markers",
        line=dict(color=color, dash=dash, width=2),
        marker=dict(color=color, size=6 + 4 * np.log10(np.maximum(counts, 1)), line=dict(width=0)),
        customdata=np.stack([counts, [b.lower for b in full], [b.upper for b in full]], axis=1) if full else None,
        hovertemplate=(
            "said %{customdata[1]:.0%}–%{customdata[2]:.0%} (mean %{x:.1%}): right %{y:.1%} "
            "of %{customdata[0]:,.0f} images<extra>" + name + "</extra>"
        ),
    )


def reliability_figure(after: Reliability, before: Reliability | None = None, height: int = 380) -> go.Figure:
    """Reliability diagram: accuracy against confidence per bin, as shown (after) and without the temperature.

    A perfectly calibrated model sits on the diagonal; points below it are over-confident. The bins are
    mnistcore.calibration's (15 equal-width bins), so the figure is exactly what `evaluate --json` reports.
    """
    diagonal = go.Scatter(
        x=[0, 1],
        y=[0, 1],
        name="says what it gets",
        mode="lines",
        line=dict(color=NEUTRAL_COLOR, dash="dot", width=1),
        hoverinfo="skip",
    )
    traces = [diagonal]
    if before is not None:
        traces.append(_reliability_trace(before, f"before calibration (ECE {before.ece:.2%})", ERROR_COLOR, "dash"))
    label = "shown, calibrated" if before is not None else "shown (uncalibrated)"
    traces.append(_reliability_trace(after, f"{label} (ECE {after.ece:.2%})", CALIBRATED_COLOR, "solid"))
    fig = go.Figure(traces)
    fig.update_layout(
        height=height,
        margin=dict(l=50, r=10, t=20, b=45),
        xaxis=dict(range=[0, 1.02], tickformat=".0%", title="how sure the model said it was", dtick=0.1),
        yaxis=dict(range=[0, 1.02], tickformat=".0%", title="how often it was right", dtick=0.1),
        legend=dict(x=0.02, y=0.98, bgcolor="rgba(255,255,255,0.8)"),
    )
    return fig


def class_counts_figure(train_counts: np.ndarray, test_counts: np.ndarray) -> go.Figure:
    """Images per digit in each split, as grouped bars."""
    fig = go.Figure(
        [
            go.Bar(x=DIGITS, y=np.asarray(train_counts).tolist(), name="train (60 000)", marker_color="#6366F1"),
            go.Bar(x=DIGITS, y=np.asarray(test_counts).tolist(), name="test (10 000)", marker_color="#F59E0B"),
        ]
    )
    fig.update_layout(
        barmode="group",
        height=300,
        margin=dict(l=40, r=10, t=20, b=40),
        xaxis=dict(tickmode="array", tickvals=DIGITS, title="digit"),
        yaxis=dict(title="images"),
        legend=dict(orientation="h", y=1.12),
    )
    return fig


# ---------------------------------------------------------------- image mosaics


def mosaic(images: np.ndarray, cols: int, pad: int = 2, pad_bottom: int | None = None, fill: int = 255) -> np.ndarray:
    """Tile uint8 images (N, h, w) into one (rows*(h+pad+pad_bottom), cols*(w+2*pad)) uint8 picture."""
    images = np.asarray(images)
    n, h, w = images.shape
    rows = max(1, -(-n // cols))
    pad_bottom = pad if pad_bottom is None else pad_bottom
    th, tw = h + pad + pad_bottom, w + 2 * pad
    out = np.full((rows * th, cols * tw), fill, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        out[r * th + pad : r * th + pad + h, c * tw + pad : c * tw + pad + w] = images[i]
    return out


def png_data_uri(pixels: np.ndarray) -> str:
    """A uint8 greyscale array as a data: URI of a PNG."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8), mode="L").save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def upscale(pixels: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling (crisp pixels, no browser blur)."""
    return np.kron(np.asarray(pixels), np.ones((factor, factor), dtype=np.asarray(pixels).dtype))


def image_grid_figure(
    images: np.ndarray,
    captions: Sequence[str],
    customdata: Sequence[Sequence[Any]],
    cols: int = 8,
    hover: Sequence[str] | None = None,
    highlight: int | None = None,
) -> go.Figure:
    """A clickable grid of 28x28 images with a caption under each.

    One composed picture (go.Image, a single PNG) plus an invisible square marker on each tile carrying
    `customdata` (the first item should identify the image) for hover and click selection; the tile at
    position `highlight` gets an outline.
    """
    images = np.asarray(images, dtype=np.uint8)
    n = len(images)
    pad, cap = 3, 13  # px around each tile, px under it for the caption (in image pixels)
    tw, th = 28 + 2 * pad, 28 + pad + cap
    rows = max(1, -(-n // cols))
    pic = mosaic(images, cols, pad=pad, pad_bottom=cap) if n else np.full((th, cols * tw), 255, np.uint8)
    idx = np.arange(n)
    cx = (idx % cols) * tw + tw / 2 - 0.5
    cy = (idx // cols) * th + pad + 14 - 0.5
    scale = 2.4  # screen px per image pixel
    fig = go.Figure()
    fig.add_trace(go.Image(source=png_data_uri(pic), x0=0, y0=0, dx=1, dy=1, hoverinfo="skip"))
    fig.add_trace(
        go.Scatter(
            x=cx,
            y=cy + 14 + cap / 2 + 0.5,
            mode="text",
            text=list(captions),
            hoverinfo="skip",
            showlegend=False,
            textfont=dict(size=11, color="#111827"),
            unselected=dict(textfont=dict(color="#111827")),
        )
    )
    fig.add_trace(
        go.Scatter(
            x=cx,
            y=cy,
            mode="markers",
            showlegend=False,
            customdata=[list(c) for c in customdata],
            marker=dict(symbol="square", size=28 * scale * 0.95, color="rgba(0,0,0,0)"),
            text=list(hover) if hover is not None else list(captions),
            hovertemplate="%{text}<extra></extra>",
        )
    )
    if highlight is not None and 0 <= highlight < n:
        x, y = (highlight % cols) * tw, (highlight // cols) * th
        fig.add_shape(
            type="rect", x0=x + 0.5, x1=x + tw - 1.5, y0=y + 0.5, y1=y + th - 1.5, line=dict(color="#4F46E5", width=3)
        )
    width, height = cols * tw * scale, rows * th * scale
    fig.update_layout(
        width=int(width),
        height=int(height),
        margin=dict(l=0, r=0, t=0, b=0),
        plot_bgcolor="white",
        clickmode="event+select",
        dragmode=False,
        xaxis=dict(visible=False, range=[-0.5, cols * tw - 0.5], fixedrange=True),
        yaxis=dict(visible=False, range=[rows * th - 0.5, -0.5], fixedrange=True, scaleanchor="x"),
    )
    return fig


# ---------------------------------------------------------------- attributions and hidden units

POSITIVE_RGB = (200, 30, 45)  # red: evidence for a digit, an excitatory weight
NEGATIVE_RGB = (20, 100, 190)  # blue: evidence against, an inhibitory weight


def diverging_rgb(values: np.ndarray, limit: float | None = None) -> np.ndarray:
    """Values as RGB uint8 (..., 3) on a blue-white-red scale centred on zero, saturating at +-limit.

    `limit` defaults to the largest |value|; an all-zero input (or limit 0) is all white.
    """
    v = np.asarray(values, dtype=np.float64)
    lim = float(np.abs(v).max(initial=0.0)) if limit is None else float(limit)
    t = np.clip(v / lim, -1.0, 1.0) if lim > 0 else np.zeros_like(v)
    white = np.full(3, 255.0)
    colour = np.where(t[..., None] >= 0, np.array(POSITIVE_RGB, np.float64), np.array(NEGATIVE_RGB, np.float64))
    return np.rint(white + (colour - white) * np.abs(t)[..., None]).astype(np.uint8)


def evidence_overlay(pixels: np.ndarray, attribution: np.ndarray, limit: float, factor: int = 8) -> np.ndarray:
    """The input (grey ink on white) with its attribution on top: red pushes the class up, blue down.

    Colour opacity is |attribution| / limit (linear: the colour's strength is the push's size), so ink
    with little evidence stays grey. Returns RGB uint8 (28 * factor, 28 * factor, 3), nearest-neighbour upscaled.
    """
    ink = np.clip(np.asarray(pixels, dtype=np.float64), 0.0, 1.0)
    base = np.repeat((255.0 - 110.0 * ink)[..., None], 3, axis=-1)  # ink as mid grey on white
    a = np.asarray(attribution, dtype=np.float64)
    alpha = np.clip(np.abs(a) / limit, 0.0, 1.0)[..., None] if limit > 0 else np.zeros((*a.shape, 1))
    colour = np.where(a[..., None] >= 0, np.array(POSITIVE_RGB, np.float64), np.array(NEGATIVE_RGB, np.float64))
    out = np.rint(base * (1 - alpha) + colour * alpha).astype(np.uint8)
    return upscale_rgb(out, factor)


def upscale_rgb(rgb: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling of an (h, w, 3) image."""
    return np.repeat(np.repeat(np.asarray(rgb), factor, axis=0), factor, axis=1)


@functools.lru_cache(maxsize=8)
def _font(size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def labelled_row(
    panels: Sequence[np.ndarray], titles: Sequence[str], gap: int = 14, title_px: int = 22, font_px: int = 15
) -> np.ndarray:
    """RGB panels (each (h, w, 3), same height) side by side on white, a title above each: one RGB image.

    Titles may hold several lines ("\n"); each line takes `title_px - 4` px and is centred over its panel.
    """
    from PIL import ImageDraw

    lines = max(t.count("\n") + 1 for t in titles)
    line_px = title_px - 4
    title_px = line_px * lines + 4
    h = max(p.shape[0] for p in panels)
    width = sum(p.shape[1] for p in panels) + gap * (len(panels) - 1)
    out = np.full((title_px + h, width, 3), 255, np.uint8)
    x, starts = 0, []
    for p in panels:
        out[title_px : title_px + p.shape[0], x : x + p.shape[1]] = p
        starts.append(x)
        x += p.shape[1] + gap
    img = Image.fromarray(out)
    draw = ImageDraw.Draw(img)
    font = _font(font_px)
    for x0, p, title in zip(starts, panels, titles, strict=True):
        for i, line in enumerate(title.split("\n")):
            tw = draw.textlength(line, font=font)
            draw.text((x0 + max(0.0, (p.shape[1] - tw) / 2), 2 + i * line_px), line, fill=(17, 24, 39), font=font)
    return np.asarray(img)


@functools.lru_cache(maxsize=8)
def scale_legend(width: int, height: int = 12, low: str = "against", high: str = "for") -> np.ndarray:
    """A blue-white-red colour bar with its two ends named, as read-only RGB uint8 (height + 18, width, 3)."""
    from PIL import ImageDraw

    bar = diverging_rgb(np.tile(np.linspace(-1, 1, width), (height, 1)), 1.0)
    out = np.full((height + 18, width, 3), 255, np.uint8)
    out[:height] = bar
    img = Image.fromarray(out)
    draw = ImageDraw.Draw(img)
    font = _font(12)
    draw.text((0, height + 2), low, fill=(55, 65, 81), font=font)
    draw.text((width - draw.textlength(high, font=font), height + 2), high, fill=(55, 65, 81), font=font)
    out = np.asarray(img)
    out.setflags(write=False)  # cached: shared by every caller
    return out


def why_picture(pixels: np.ndarray, maps: Sequence[tuple[str, np.ndarray]], factor: int = 8) -> np.ndarray:
    """Evidence maps over one input, side by side under their titles, on one shared colour scale."""
    limit = max((float(np.abs(a).max(initial=0.0)) for _, a in maps), default=0.0)
    panels = [evidence_overlay(pixels, a, limit, factor) for _, a in maps]
    row = labelled_row(panels, [t for t, _ in maps])
    legend = scale_legend(min(row.shape[1], 200))
    out = np.full((row.shape[0] + 8 + legend.shape[0], row.shape[1], 3), 255, np.uint8)
    out[: row.shape[0]] = row
    x0 = (row.shape[1] - legend.shape[1]) // 2
    out[row.shape[0] + 8 :, x0 : x0 + legend.shape[1]] = legend
    return out


def rgb_png_data_uri(rgb: np.ndarray) -> str:
    """An RGB uint8 array (h, w, 3) as a data: URI of a PNG."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), mode="RGB").save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def unit_grid_figure(
    maps: np.ndarray,
    captions: Sequence[str],
    customdata: Sequence[Sequence[Any]],
    cols: int = 12,
    highlight: int | None = None,
) -> go.Figure:
    """A clickable grid of 28x28 weight maps, each on its own blue-white-red scale centred on zero.

    Like image_grid_figure: one composed picture plus an invisible square marker per tile carrying
    `customdata` (the first item identifies the unit) for hover and click selection.
    """
    maps = np.asarray(maps, dtype=np.float64)
    n = len(maps)
    limits = np.abs(maps.reshape(n, -1)).max(axis=1, initial=0.0) if n else np.zeros(0)
    tiles = (
        np.stack([diverging_rgb(m, lim) for m, lim in zip(maps, limits, strict=True)])
        if n
        else np.full((0, 28, 28, 3), 255, np.uint8)
    )
    pad, cap = 3, 13
    tw, th = 28 + 2 * pad, 28 + pad + cap
    rows = max(1, -(-n // cols))
    pic = (
        np.stack([mosaic(tiles[..., c], cols, pad=pad, pad_bottom=cap) for c in range(3)], axis=-1)
        if n
        else np.full((th, cols * tw, 3), 255, np.uint8)
    )
    idx = np.arange(n)
    cx = (idx % cols) * tw + tw / 2 - 0.5
    cy = (idx // cols) * th + pad + 14 - 0.5
    scale = 2.4
    # Plain dicts, not validated (as in training_curves): the Train page redraws a grid of units twice a
    # second while a job runs, and plotly's validation took most of the ~18 ms a figure cost.
    data: list[dict[str, Any]] = [
        {"type": "image", "source": rgb_png_data_uri(pic), "x0": 0, "y0": 0, "dx": 1, "dy": 1, "hoverinfo": "skip"},
        {
            "type": "scatter",
            "x": cx.tolist(),
            "y": (cy + 14 + cap / 2 + 0.5).tolist(),
            "mode": "text",
            "text": list(captions),
            "hoverinfo": "skip",
            "showlegend": False,
            "textfont": {"size": 11, "color": "#111827"},
            "unselected": {"textfont": {"color": "#111827"}},
        },
        {
            "type": "scatter",
            "x": cx.tolist(),
            "y": cy.tolist(),
            "mode": "markers",
            "showlegend": False,
            "customdata": [list(c) for c in customdata],
            "marker": {"symbol": "square", "size": 28 * scale * 0.95, "color": "rgba(0,0,0,0)"},
            "text": list(captions),
            "hovertemplate": "unit %{customdata[0]}<extra></extra>",
        },
    ]
    shapes = []
    if highlight is not None and 0 <= highlight < n:
        x, y = (highlight % cols) * tw, (highlight // cols) * th
        box = {"x0": x + 0.5, "x1": x + tw - 1.5, "y0": y + 0.5, "y1": y + th - 1.5}
        shapes.append({"type": "rect", **box, "line": {"color": "#111827", "width": 3}})
    layout = {
        "width": int(cols * tw * scale),
        "height": int(rows * th * scale),
        "margin": {"l": 0, "r": 0, "t": 0, "b": 0},
        "plot_bgcolor": "white",
        "clickmode": "event+select",
        "dragmode": False,
        "shapes": shapes,
        "xaxis": {"visible": False, "range": [-0.5, cols * tw - 0.5], "fixedrange": True},
        "yaxis": {"visible": False, "range": [rows * th - 0.5, -0.5], "fixedrange": True, "scaleanchor": "x"},
    }
    return go.Figure(data=data, layout=layout, _validate=False)


def digit_bars(values: np.ndarray, y_title: str, signed: bool = True, height: int = 240) -> go.Figure:
    """Ten values, one per digit, as bars: red above zero and blue below (signed), else neutral."""
    v = np.asarray(values, dtype=np.float64).reshape(10)
    rgb = [f"rgb{POSITIVE_RGB}" if x >= 0 else f"rgb{NEGATIVE_RGB}" for x in v] if signed else [NEUTRAL_COLOR] * 10
    fig = go.Figure(go.Bar(x=DIGITS, y=v, marker_color=rgb, hovertemplate="digit %{x}: %{y:.3f}<extra></extra>"))
    fig.update_layout(
        height=height,
        margin=dict(l=50, r=10, t=10, b=40),
        bargap=0.25,
        xaxis=dict(tickmode="array", tickvals=DIGITS, title="digit", fixedrange=True),
        yaxis=dict(title=y_title, zeroline=True, zerolinecolor="#6B7280", fixedrange=True),
    )
    return fig


def templates_picture(templates: np.ndarray, factor: int = 3) -> np.ndarray:
    """The ten class templates (10, 28, 28) in a row, titled by digit, on one shared blue-white-red scale."""
    t = np.asarray(templates, dtype=np.float64)
    limit = float(np.abs(t).max(initial=0.0))
    return labelled_row([upscale_rgb(diverging_rgb(m, limit), factor) for m in t], [str(d) for d in DIGITS], gap=8)


# ---------------------------------------------------------------- comparing runs, sweeps

RUN_COLORS = ("#2563EB", "#EA580C", "#16A34A", "#9333EA", "#DB2777", "#0891B2")  # one per compared run
CURVE_X = {"epoch": "epoch", "seconds": "training time (s)"}


def _curve_x(history: Sequence[dict[str, Any]], x: str) -> list[float]:
    if x == "epoch":
        return [h.get("epoch", i + 1) for i, h in enumerate(history)]
    return [h.get("elapsed", float("nan")) for h in history]


def run_curves(runs: Sequence[tuple[str, Sequence[dict[str, Any]]]], x: str = "epoch") -> go.Figure:
    """Test accuracy (left) and test loss (right) of several runs overlaid, per epoch or per second of training.

    `runs` holds (label, history) pairs; a history is a run's list of epoch records (epoch, elapsed,
    test_accuracy, test_loss). Each run keeps its colour in both panels.
    """
    if x not in CURVE_X:
        raise ValueError(f"x must be one of {sorted(CURVE_X)}, got {x!r}")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Test accuracy", "Test loss"), horizontal_spacing=0.1)
    for i, (label, history) in enumerate(runs):
        color = RUN_COLORS[i % len(RUN_COLORS)]
        xs = _curve_x(history, x)
        for col, key in ((1, "test_accuracy"), (2, "test_loss")):
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=[h.get(key) for h in history],
                    mode="lines+markers",
                    name=label,
                    legendgroup=label,
                    showlegend=col == 1,
                    line=dict(color=color),
                    marker=dict(size=5),
                    hovertemplate=(
                        f"{label}<br>{CURVE_X[x]} %{{x}}<br>{key.replace('_', ' ')} %{{y:.4f}}<extra></extra>"
                    ),
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(title_text=CURVE_X[x])
    fig.update_yaxes(tickformat=".1%", row=1, col=1)
    fig.update_layout(height=360, margin=dict(l=55, r=20, t=40, b=40), legend=dict(orientation="h", y=-0.22))
    return fig


def recall_bars(labels: Sequence[str], recalls: np.ndarray) -> go.Figure:
    """Per-class recall of several runs side by side: one group of bars per digit, one colour per run."""
    r = np.asarray(recalls, dtype=np.float64)
    if r.ndim != 2 or r.shape[1] != 10 or r.shape[0] != len(labels):
        raise ValueError(f"recalls must be ({len(labels)}, 10), got {r.shape}")
    fig = go.Figure()
    for i, (label, row) in enumerate(zip(labels, r, strict=True)):
        fig.add_trace(
            go.Bar(
                x=DIGITS,
                y=row,
                name=label,
                marker_color=RUN_COLORS[i % len(RUN_COLORS)],
                hovertemplate=f"{label}<br>digit %{{x}}: recall %{{y:.2%}}<extra></extra>",
            )
        )
    low = float(np.nanmin(r)) if r.size else 0.0
    fig.update_layout(
        barmode="group",
        height=300,
        margin=dict(l=55, r=20, t=10, b=40),
        bargap=0.2,
        legend=dict(orientation="h", y=-0.25),
        xaxis=dict(tickmode="array", tickvals=DIGITS, title="digit", fixedrange=True),
        yaxis=dict(title="recall", tickformat=".0%", range=[max(0.0, low - 0.05), 1.0], fixedrange=True),
    )
    return fig


def sweep_figure(
    param: str, values: Sequence[float], accuracies: Sequence[float | None], running: int | None = None
) -> go.Figure:
    """Test accuracy against the swept value: finished runs as points on a line, the running one hollow.

    `accuracies[i]` is None for a run with no finished epoch yet; for the running run (index `running`) it is
    its latest epoch's accuracy. A log axis is used when the values span 20x or more.
    """
    done = [(v, a) for i, (v, a) in enumerate(zip(values, accuracies, strict=True)) if a is not None and i != running]
    fig = go.Figure(
        go.Scatter(
            x=[v for v, _ in done],
            y=[a for _, a in done],
            mode="lines+markers",
            name="test accuracy",
            line=dict(color=RUN_COLORS[0]),
            marker=dict(size=9),
            hovertemplate=f"{param} = %{{x}}<br>test accuracy %{{y:.2%}}<extra></extra>",
        )
    )
    if running is not None and 0 <= running < len(values) and accuracies[running] is not None:
        fig.add_trace(
            go.Scatter(
                x=[values[running]],
                y=[accuracies[running]],
                mode="markers",
                name="training…",
                marker=dict(size=11, symbol="circle-open", color=RUN_COLORS[1], line=dict(width=2)),
                hovertemplate=f"{param} = %{{x}}: %{{y:.2%}} so far (training…)<extra></extra>",
            )
        )
    positive = [float(v) for v in values if float(v) > 0]
    log = len(positive) == len(values) > 1 and max(positive) / min(positive) >= 20
    known = [float(a) for a in accuracies if a is not None]
    # Plotly pads a lone point's axis out to 0-150%: give it a range a point either side instead.
    y_range = [min(known) - 0.01, min(1.0, max(known) + 0.01)] if known and max(known) - min(known) < 0.005 else None
    fig.update_layout(
        height=320,
        margin=dict(l=55, r=20, t=10, b=45),
        showlegend=False,
        xaxis=dict(title=param, type="log" if log else "linear", tickvals=list(values) if len(values) <= 12 else None),
        yaxis=dict(title="test accuracy", tickformat=".1%", range=y_range),
    )
    return fig


# ---------------------------------------------------------------- the Draw page's answer, as plain HTML


def answer_html(probs: np.ndarray, seen: np.ndarray, factor: int = 5) -> str:
    """The predicted digit (large), how sure, the 28x28 input the model saw and the ten probabilities as bars.

    Plain HTML with the picture inline: redrawn after every stroke, one small element costs the browser
    far less than a chart and an image fetched separately.
    """
    probs = np.asarray(probs, dtype=np.float64).reshape(10)
    pred = int(probs.argmax())
    rows = []
    for d in DIGITS:
        p = float(probs[d])
        color = CORRECT_COLOR if d == pred else NEUTRAL_COLOR
        rows.append(
            f'<div class="mnl-bar" data-digit="{d}"><span class="mnl-d">{d}</span>'
            f'<span class="mnl-track"><span style="width:{p * 100:.1f}%;background:{color}"></span></span>'
            f'<span class="mnl-p">{p:.0%}</span></div>'
        )
    seen_uri = png_data_uri(upscale((np.clip(seen, 0, 1) * 255).astype(np.uint8), factor))
    side = 28 * factor
    return (
        "<style>.mnl-answer{display:flex;gap:28px;align-items:flex-start;flex-wrap:wrap}"
        ".mnl-digit{font-size:96px;font-weight:700;line-height:1}.mnl-sure{color:#6B7280;font-size:14px}"
        ".mnl-seen{image-rendering:pixelated;border-radius:6px;margin-top:8px}"
        ".mnl-cap{color:#6B7280;font-size:13px}.mnl-bars{min-width:240px;flex:1}"
        ".mnl-bar{display:flex;align-items:center;gap:8px;height:22px;font-size:14px}"
        ".mnl-d{width:12px;text-align:right;font-weight:600}.mnl-p{width:40px;color:#374151}"
        ".mnl-track{flex:1;height:14px;background:#F3F4F6;border-radius:4px;overflow:hidden}"
        ".mnl-track span{display:block;height:100%}</style>"
        f'<div class="mnl-answer" data-prediction="{pred}">'
        f'<div><div class="mnl-digit" data-testid="draw-digit">{pred}</div>'
        f'<div class="mnl-sure">{probs[pred]:.1%} sure</div>'
        f'<img class="mnl-seen" src="{seen_uri}" width="{side}" height="{side}" alt="the 28x28 input">'
        '<div class="mnl-cap">What the model saw (28×28)</div></div>'
        f'<div class="mnl-bars">{"".join(rows)}</div></div>'
    )
