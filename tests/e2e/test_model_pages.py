"""The pages of a trained model in a real browser: confusion cells, the error gallery, drawing a digit.

The expected numbers come from mnistcore itself: the same saved run, evaluated on the same test set.
Timings are printed (run pytest with -s to see them) and only loosely bounded.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from mnistcore import RunStore, load_mnist
from mnistcore.evaluate import Evaluation, cell_indices, evaluate, select_predictions

NAV = '[data-testid="stSidebarNav"] a'
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


def test_clicking_a_confusion_cell_shows_exactly_its_images_and_a_shareable_link(
    server, page, new_page, evaluation, shot
):
    true, pred, count = _pick_cell(evaluation)
    page.goto(f"{server.url}/confusion")
    expect(page.get_by_text("Click a cell of the matrix to see its test images.")).to_be_visible(timeout=60_000)
    _click_cell(page, true, pred)
    _expect_cell(page, evaluation, true, pred, count)
    run_id = RunStore(server.runs_dir).list()[0].run_id  # the link names the model too (?run=)
    expect(page).to_have_url(f"{server.url}/confusion?run={run_id}&true={true}&pred={pred}")
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
    expect(page).to_have_url(f"{server.url}/confusion?run={run_id}")


def test_timings_in_the_browser(server, page, evaluation, shot):
    """Print how long the interactions take in a real browser (loose bounds only: the machine is shared)."""
    timings: dict[str, float] = {}

    # (Drawing timings: tests/e2e/test_draw.py and bench/load.py.)
    # Confusion page of an already evaluated model: first a full load (evaluates it), then timed visits.
    page.goto(f"{server.url}/confusion")
    expect(page.locator(".st-key-cm .nsewdrag")).to_be_visible(timeout=60_000)
    page.locator(NAV, has_text="Errors").click()
    expect(page.get_by_text("Showing 48 of")).to_be_visible(timeout=60_000)
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
    expect(caption).to_contain_text(
        f"Showing 48 of {len(errors):,} (page 1 of {-(-len(errors) // 48)})", timeout=60_000
    )
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
    page.wait_for_function(
        """first => {
        const plot = document.querySelector('.st-key-err_grid_box .js-plotly-plot');
        const cells = plot && plot.data && plot.data.find(t => t.customdata);
        return Boolean(cells) && cells.customdata.length > 0 && cells.customdata[0][0] === first;
    }""",
        arg=index,
    )
