"""The pages of a trained model in a real browser: confusion cells, the error gallery, drawing a digit.

The expected numbers come from mnistcore itself: the same saved run, evaluated on the same test set.
Timings are printed (run pytest with -s to see them) and only loosely bounded.
"""

from __future__ import annotations

import io
import itertools
import re
import time
from pathlib import Path
from urllib.parse import urljoin

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from mnistcore import RunStore, load_mnist
from mnistcore.evaluate import Evaluation, cell_indices, evaluate, select_predictions

NAV = '[data-testid="stSidebarNav"] a'
CANVAS = ".st-key-draw_canvas_box canvas.upper-canvas"
ONE_DIGIT = re.compile(r"^\d$")
SLOW = 10.0  # s: a loose sanity bound for an interaction, on a shared 2-core machine


@pytest.fixture(scope="module")
def evaluation(server, data_dir: Path) -> Evaluation:
    """The server's only saved model, evaluated on the test set by mnistcore (what the pages should show)."""
    runs = RunStore(server.runs_dir).list()
    assert len(runs) == 1, [r.run_id for r in runs]
    model, _ = RunStore(server.runs_dir).load(runs[0].run_id)
    data = load_mnist(data_dir)
    return evaluate(model, data.test_images, data.test_labels)


def _pick_cell(ev: Evaluation) -> tuple[int, int, int]:
    """An off-diagonal cell with 3-30 images (the fullest such one): (true, pred, count)."""
    cm = ev.confusion
    cells = [(int(cm[t, p]), t, p) for t in range(10) for p in range(10) if t != p and 3 <= cm[t, p] <= 30]
    assert cells, cm
    count, true, pred = max(cells)
    return true, pred, count


def _click_cell(page, true: int, pred: int) -> None:
    area = page.locator(".st-key-cm .nsewdrag")
    expect(area).to_be_visible(timeout=60_000)
    box = area.bounding_box()
    page.mouse.click(box["x"] + (pred + 0.5) * box["width"] / 10, box["y"] + (true + 0.5) * box["height"] / 10)


def _expect_cell(page, ev: Evaluation, true: int, pred: int, count: int) -> None:
    title = page.locator(".st-key-cm_cell_title")
    expect(title).to_have_text(f"True {true}, predicted {pred}: {count} misclassified images", timeout=60_000)
    figures = page.locator(".st-key-cm_cell_images .mnist-grid figure")
    expect(figures).to_have_count(count)
    expect(page.locator(".st-key-cm_cell_images .mnist-grid")).to_have_attribute("data-count", str(count))
    shown = [int(i) for i in figures.evaluate_all("els => els.map(e => e.dataset.index)")]
    assert shown == [int(i) for i in cell_indices(ev, true, pred)]  # exactly that cell, most confident first


def test_clicking_a_confusion_cell_shows_exactly_its_images_and_a_shareable_link(server, page, new_page, evaluation,
                                                                                 shot):
    true, pred, count = _pick_cell(evaluation)
    page.goto(f"{server.url}/confusion")
    expect(page.get_by_text("Click a cell of the matrix to see its test images.")).to_be_visible(timeout=60_000)
    _click_cell(page, true, pred)
    _expect_cell(page, evaluation, true, pred, count)
    expect(page).to_have_url(f"{server.url}/confusion?true={true}&pred={pred}")
    shot(page, "cell")

    # The link opens the same cell for another user.
    link = page.url
    other = new_page()
    other.goto(link)
    _expect_cell(other, evaluation, true, pred, count)
    shot(other, "link")

    # Clearing the selection drops the cell and the link's parameters.
    page.locator(".st-key-cm_clear button").click()
    expect(page.locator(".st-key-cm_cell_title")).to_have_count(0)
    expect(page).to_have_url(f"{server.url}/confusion")


def _draw(page, points: list[tuple[float, float]]) -> None:
    """One mouse stroke through points given as fractions of the canvas (0..1)."""
    box = page.locator(CANVAS).bounding_box()
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for (x0, y0), (x1, y1) in itertools.pairwise(xy):
        page.mouse.move(x1, y1, steps=max(2, int(max(abs(x1 - x0), abs(y1 - y0)) / 8)))


def _expect_prediction_shown(page) -> None:
    """The whole prediction is on screen: the digit, the probability bars and the loaded 28x28 preview."""
    expect(page.locator(".st-key-draw_digit")).to_have_text(ONE_DIGIT)
    expect(page.locator(".st-key-draw_bars .js-plotly-plot")).to_be_visible()
    page.wait_for_function("""() => {
        const img = document.querySelector("[data-testid='stImage'] img");
        return Boolean(img) && img.complete && img.naturalWidth > 0;
    }""")


def _preview(page) -> tuple[str, np.ndarray]:
    """The 28x28 model-input preview: its src and its pixels (as the server sent them)."""
    img = page.locator("[data-testid='stImage'] img")
    expect(img).to_have_count(1)
    src = img.get_attribute("src")
    body = page.request.get(urljoin(page.url, src)).body()
    return src, np.asarray(Image.open(io.BytesIO(body)).convert("L"))


def _open_draw(page, url: str) -> None:
    page.goto(f"{url}/draw")
    expect(page.locator(CANVAS)).to_be_visible(timeout=60_000)
    expect(page.locator(".st-key-draw_empty")).to_contain_text("Draw a digit")


def test_drawing_a_one_predicts_it_and_shows_the_28x28_input_then_clear_resets(server, page, shot):
    _open_draw(page, server.url)
    expect(page.locator(".st-key-draw_digit")).to_have_count(0)

    _draw(page, [(0.5, 0.15), (0.5, 0.85)])  # a '1': one vertical stroke
    page.mouse.up()
    digit = page.locator(".st-key-draw_digit")
    expect(digit).to_have_text("1", timeout=30_000)
    _expect_prediction_shown(page)
    expect(page.get_by_text("What the model saw (28×28)")).to_be_visible()
    expect(page.locator(".st-key-draw_empty")).to_have_count(0)
    _, pixels = _preview(page)
    assert pixels.shape[0] == pixels.shape[1] and pixels.shape[0] % 28 == 0, pixels.shape
    small = pixels[:: pixels.shape[0] // 28, :: pixels.shape[1] // 28]  # back to the 28x28 the model saw
    rows, cols = np.nonzero(small > 128)
    assert len(rows) >= 10, "the preview shows no ink"
    assert np.ptp(rows) > 3 * max(1, np.ptp(cols)), "the preview's ink is not a vertical bar"
    assert small[:3].max() < 50 and small[:, :3].max() < 50, "MNIST-style inputs keep an empty border"
    shot(page, "one")

    page.locator(".st-key-draw_clear button").click()
    expect(page.locator(".st-key-draw_empty")).to_contain_text("Draw a digit")
    expect(page.locator(".st-key-draw_digit")).to_have_count(0)
    expect(page.locator(".st-key-draw_bars")).to_have_count(0)
    expect(page.locator("[data-testid='stImage'] img")).to_have_count(0)
    expect(page.locator(CANVAS)).to_be_visible()
    shot(page, "cleared")

    # The fresh canvas works: a '7' (top bar, then the diagonal down-left) gives a prediction again.
    _draw(page, [(0.25, 0.2), (0.75, 0.2), (0.4, 0.85)])
    page.mouse.up()
    expect(digit).to_have_text("7", timeout=30_000)
    _expect_prediction_shown(page)
    shot(page, "seven")


def test_timings_in_the_browser(server, page, evaluation, shot):
    """Print how long the interactions take in a real browser (loose bounds only: the machine is shared)."""
    timings: dict[str, float] = {}

    # Drawing: mouse-up -> the first prediction, then a second stroke -> the updated prediction.
    _open_draw(page, server.url)
    _draw(page, [(0.5, 0.15), (0.5, 0.85)])
    t0 = time.perf_counter()
    page.mouse.up()
    expect(page.locator(".st-key-draw_digit")).to_have_text("1", timeout=30_000)
    _expect_prediction_shown(page)
    timings["stroke mouse-up -> first prediction"] = time.perf_counter() - t0
    src, _ = _preview(page)
    _draw(page, [(0.3, 0.15), (0.7, 0.15)])
    t0 = time.perf_counter()
    page.mouse.up()
    expect(page.locator("[data-testid='stImage'] img")).not_to_have_attribute("src", src, timeout=30_000)
    expect(page.locator(".st-key-draw_digit")).to_have_text(ONE_DIGIT)
    _expect_prediction_shown(page)
    timings["stroke mouse-up -> updated prediction"] = time.perf_counter() - t0
    shot(page, "draw")

    # Confusion page of an already evaluated model: first a full load (evaluates it), then timed visits.
    page.goto(f"{server.url}/confusion")
    expect(page.locator(".st-key-cm .nsewdrag")).to_be_visible(timeout=60_000)
    page.locator(NAV, has_text="Draw").click()
    expect(page.locator(CANVAS)).to_be_visible()
    t0 = time.perf_counter()
    page.locator(NAV, has_text="Confusion matrix").click()
    expect(page.locator(".st-key-cm .nsewdrag")).to_be_visible()
    expect(page.get_by_text("Click a cell of the matrix to see its test images.")).to_be_visible()
    timings["confusion page ready (sidebar link, evaluated model)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    page.goto(f"{server.url}/confusion")
    expect(page.locator(".st-key-cm .nsewdrag")).to_be_visible()
    expect(page.get_by_text("Click a cell of the matrix to see its test images.")).to_be_visible()
    timings["confusion page ready (full page load, evaluated model)"] = time.perf_counter() - t0

    # Errors gallery: page 1 -> page 2, until the grid shows page 2's images.
    errors = select_predictions(evaluation, correct=False)
    page.locator(NAV, has_text="Errors").click()
    caption = page.get_by_text("Showing 48 of")
    expect(caption).to_contain_text(f"Showing 48 of {len(errors):,} (page 1 of {-(-len(errors) // 48)})",
                                    timeout=60_000)
    _wait_grid_starts_with(page, int(errors[0]))
    assert _grid_indices(page) == [int(i) for i in errors[:48]]
    t0 = time.perf_counter()
    page.locator(".st-key-err_page button:text-is('2')").click()
    expect(caption).to_contain_text("(page 2 of")
    _wait_grid_starts_with(page, int(errors[48]))
    timings["errors gallery page change"] = time.perf_counter() - t0
    assert _grid_indices(page) == [int(i) for i in errors[48:96]]
    shot(page, "errors-page-2")

    print("\nBrowser timings (shared 2-core machine, headless Chromium):")
    for name, seconds in timings.items():
        print(f"  {name}: {seconds:.2f} s")
    for name, seconds in timings.items():
        assert seconds < SLOW, f"{name} took {seconds:.1f} s"


def _grid_indices(page) -> list[int]:
    """The test-image indices on the Errors grid now shown, in order (the tiles' customdata)."""
    return page.evaluate("""() => {
        const plot = document.querySelector('.st-key-err_grid_box .js-plotly-plot');
        return plot.data.find(t => t.customdata).customdata.map(c => c[0]);
    }""")


def _wait_grid_starts_with(page, index: int) -> None:
    """Wait until the Errors grid drawn in the browser starts with this test image."""
    page.wait_for_function("""first => {
        const plot = document.querySelector('.st-key-err_grid_box .js-plotly-plot');
        const cells = plot && plot.data && plot.data.find(t => t.customdata);
        return Boolean(cells) && cells.customdata.length > 0 && cells.customdata[0][0] === first;
    }""", arg=index)
