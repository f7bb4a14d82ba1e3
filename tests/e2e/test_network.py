"""Inside the network in a real browser: the unit grid, picking a unit; the why maps on the Errors page.

The expected units come from mnistcore itself: the server's saved run summarised on the same test set.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from mnistcore import RunStore, load_mnist
from mnistcore.evaluate import evaluate, select_predictions
from mnistcore.explain import UnitSummaries, unit_summaries

GRID = ".st-key-net_grid_box"
DETAIL = ".st-key-net_unit_detail"
COLS, TILE_W, TILE_H = 12, 34, 44  # ui.explain_view.COLS and unit_grid_figure's tile size (image px)
ERR_COLS = 8  # ui.errors_view: image_grid_figure(cols=8), same tile size


@pytest.fixture(scope="module")
def model_and_data(server, data_dir: Path):
    runs = RunStore(server.runs_dir).list()
    assert len(runs) == 1, [r.run_id for r in runs]
    model, _ = RunStore(server.runs_dir).load(runs[0].run_id)
    return model, load_mnist(data_dir)


@pytest.fixture(scope="module")
def summaries(model_and_data) -> UnitSummaries:
    model, data = model_and_data
    return unit_summaries(model, data.test_images, data.test_labels)


def _grid_units(page) -> list[int]:
    return page.evaluate("""() => {
        const plot = document.querySelector('.st-key-net_grid_box .js-plotly-plot');
        return plot.data.find(t => t.customdata).customdata.map(c => c[0]);
    }""")


def _click_tile(page, box_selector: str, i: int, cols: int, count: int) -> None:
    """Click tile i of a clickable image grid (image_grid_figure / unit_grid_figure layout)."""
    area = page.locator(f"{box_selector} .nsewdrag")
    expect(area).to_be_visible(timeout=60_000)
    box = area.bounding_box()
    rows = -(-count // cols)
    r, c = divmod(i, cols)
    page.mouse.click(
        box["x"] + (c + 0.5) * box["width"] / cols, box["y"] + (r * TILE_H + 3 + 14) * box["height"] / (rows * TILE_H)
    )


def test_network_page_shows_the_unit_grid_and_picking_a_unit_shows_its_detail(server, page, summaries, shot):
    page.goto(f"{server.url}/network")
    expect(page.locator(f"{GRID} .nsewdrag")).to_be_visible(timeout=90_000)
    expect(page.get_by_text(f"The network has {summaries.hidden} hidden units")).to_be_visible()
    order = [int(j) for j in summaries.order]
    assert _grid_units(page) == order[:48]  # most important first, paginated
    detail = page.locator(DETAIL)
    expect(detail.locator("h3")).to_have_text(f"Unit #{order[0]}")
    expect(detail.locator(".mnist-grid figure")).to_have_count(8)
    expect(page.locator(".st-key-net_templates img")).to_be_visible()
    shot(page, "network")

    _click_tile(page, GRID, 13, COLS, 48)
    expect(detail.locator("h3")).to_have_text(f"Unit #{order[13]}", timeout=30_000)
    expect(page.locator(".st-key-net_unit_input input")).to_have_value(str(order[13]))
    top = [int(i) for i in summaries.top_images[order[13]]]
    figures = detail.locator(".mnist-grid figure")
    expect(figures.first).to_have_attribute("data-index", str(top[0]))  # the rerun's grid, not the last one
    expect(figures).to_have_count(8)
    assert [int(i) for i in figures.evaluate_all("els => els.map(e => e.dataset.index)")] == top
    bars = detail.locator(".st-key-net_out_weights .js-plotly-plot")
    expect(bars).to_have_count(1)  # while Streamlit swaps the chart, the old one may linger a moment
    expect(bars).to_be_visible()
    shot(page, "unit-picked")

    unit_box = page.locator(".st-key-net_unit_input input")
    unit_box.fill(str(order[-1]))
    unit_box.press("Enter")
    expect(detail.locator("h3")).to_have_text(f"Unit #{order[-1]}", timeout=30_000)


def test_errors_picked_image_shows_why_maps(server, page, model_and_data, shot):
    model, data = model_and_data
    ev = evaluate(model, data.test_images, data.test_labels)
    errors = select_predictions(ev)
    first = int(errors[0])
    page.goto(f"{server.url}/errors")
    _click_tile(page, ".st-key-err_grid_box", 0, ERR_COLS, min(48, len(errors)))
    picked = page.locator(".st-key-err_picked")
    expect(picked).to_contain_text(f"Test image #{first}", timeout=30_000)
    img = page.locator(".st-key-err_why img")
    expect(img).to_be_visible()
    page.wait_for_function("""() => {
        const img = document.querySelector('.st-key-err_why img');
        return Boolean(img) && img.complete && img.naturalWidth > 300;
    }""")
    true, pred = int(ev.labels[first]), int(ev.predictions[first])
    expect(page.locator(".st-key-err_why")).to_contain_text(f"Why {pred} and not {true}")
    shot(page, "errors-why")
