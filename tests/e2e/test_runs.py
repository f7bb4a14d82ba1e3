"""Experiments in a real browser: compare two runs on the Runs page, sweep two values, open a ?run= link elsewhere."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from bench.appserver import AppServer
from mnistcore import RunStore, TrainConfig, load_mnist, train
from mnistcore.evaluate import evaluate, select_predictions
from tests.e2e.actions import choose

CURVES = """() => {
    const plot = document.querySelector('.st-key-runs_curves .js-plotly-plot');
    return plot && plot.data ? plot.data.map(t => t.name + ':' + (t.x || []).length) : null;
}"""
ROW_HEIGHT = 35  # px: st.dataframe's header and rows (glide data grid defaults)


@pytest.fixture(scope="module")
def family_dir(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """Two runs on real MNIST: 'parent' (1 epoch) and 'child' (continues it for 1 more epoch)."""
    runs = tmp_path_factory.mktemp("runs-family")
    store, data = RunStore(runs), load_mnist(data_dir)
    config = TrainConfig(hidden=64, epochs=1)
    first = train(config, data)
    parent = store.save(
        first.model,
        config,
        test_accuracy=first.test_accuracy,
        train_seconds=first.train_seconds,
        history=first.history,
        dataset=data.checksums,
        name="parent",
        optimizer_state=first.optimizer_state,
        rng_state=first.rng_state,
    )
    init, _ = store.load_state(parent.run_id)
    second = train(config, data, init=init)
    store.save(
        second.model,
        config,
        test_accuracy=second.test_accuracy,
        train_seconds=second.total_seconds,
        history=second.history,
        dataset=data.checksums,
        name="child",
        parent=parent.run_id,
        optimizer_state=second.optimizer_state,
        rng_state=second.rng_state,
    )
    return runs


@pytest.fixture(scope="module")
def family_server(tmp_path_factory: pytest.TempPathFactory, family_dir: Path, data_dir: Path) -> Iterator[AppServer]:
    """A server on a private copy of the two runs (the sweep test adds runs to it)."""
    runs = tmp_path_factory.mktemp("runs-family-copy") / "runs"
    shutil.copytree(family_dir, runs)
    server = AppServer(runs, data_dir, tmp_path_factory.mktemp("log") / "streamlit.log")
    try:
        yield server
    finally:
        server.stop()


def _tick_row(page, row: int) -> None:
    """Tick the selection box of a row of the runs table (a canvas: clicked by position)."""
    grid = page.locator("[class*='st-key-runs_table_'] [data-testid='stDataFrame']")
    expect(grid).to_be_visible(timeout=60_000)
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 16, box["y"] + ROW_HEIGHT * (row + 1) + ROW_HEIGHT / 2)


def test_select_two_runs_and_their_curves_are_shown(family_server, page, shot):
    store = RunStore(family_server.runs_dir)
    child, parent = [r.run_id for r in store.list() if r.name in ("child", "parent")]  # newest first
    page.goto(f"{family_server.url}/runs")
    expect(page.get_by_text("Tick runs in the table")).to_be_visible(timeout=60_000)
    rows = [r.run_id for r in store.list()]
    _tick_row(page, rows.index(parent))
    expect(page.locator(".st-key-runs_curves .js-plotly-plot")).to_be_visible(timeout=60_000)
    _tick_row(page, rows.index(child))
    # Both runs' curves: accuracy and loss per run; the child's history holds 2 epochs, the parent's 1.
    state = page.wait_for_function(
        f"() => {{ const s = ({CURVES})(); return s && s.length === 4 ? s : null; }}", timeout=60_000
    ).json_value()
    assert sorted(state) == ["child:2", "child:2", "parent:1", "parent:1"], state
    expect(page).to_have_url(re.compile(rf"[?&]compare={parent}(%2C|,){child}"))
    expect(page.locator(".st-key-runs_fixed .mnist-grid")).to_be_visible()
    expect(page.get_by_text("Settings that differ")).to_be_visible()
    # Per second: the same runs, x in training seconds.
    page.locator(".st-key-runs_curve_x").get_by_text("training time (s)").click()
    page.wait_for_function(
        "() => { const p = document.querySelector('.st-key-runs_curves .js-plotly-plot');"
        " return p && p.layout.xaxis.title.text.includes('training time'); }",
        timeout=60_000,
    )
    shot(page, "runs-compared")


def test_a_sweep_of_two_values(family_server, page, shot):
    before = {r.run_id for r in RunStore(family_server.runs_dir).list()}
    page.goto(f"{family_server.url}/train")
    expect(page.locator(".st-key-train_start button")).to_be_enabled(timeout=60_000)
    page.get_by_text("Sweep one setting").click()
    base = page.get_by_role("combobox", name="Start from")
    expect(base).to_be_visible()
    choose(page, base, "the default preset")  # (the expander may still be opening)
    expect(base).to_have_value("the default preset")
    epochs = page.locator(".st-key-sweep_epochs_default input")  # appears once the server took the base
    epochs.fill("1")
    epochs.press("Enter")
    expect(epochs).to_have_value("1")
    values = page.locator(".st-key-sweep_values_hidden input")
    values.fill("16,32")
    values.press("Enter")
    expect(page.get_by_text("· 1 epoch.")).to_be_visible()
    page.locator(".st-key-sweep_start button").click()
    panel = page.locator(".st-key-sweep_panel")
    expect(panel).to_be_visible(timeout=60_000)
    expect(page.locator(".st-key-train_start button")).to_be_disabled()
    expect(panel.get_by_text("2 of 2 runs done")).to_be_visible(timeout=240_000)
    # The chart is drawn a moment after the table (and twice for a moment while the fragment redraws).
    points = page.wait_for_function(
        "() => { const p = document.querySelectorAll('.st-key-sweep_panel .js-plotly-plot');"
        " return p.length === 1 && p[0].data && p[0].data[0].x.length === 2 ? Array.from(p[0].data[0].x) : null; }",
        timeout=30_000,
    ).json_value()
    assert points == [16, 32], points
    panel.scroll_into_view_if_needed()
    shot(page, "sweep-done")
    new = [r for r in RunStore(family_server.runs_dir).list() if r.run_id not in before]
    assert sorted((r.name, r.config.hidden, len(r.history)) for r in new) == [
        ("hidden=16", 16, 1),
        ("hidden=32", 32, 1),
    ]
    expect(page.locator(".st-key-train_start button")).to_be_enabled()


def test_a_run_link_opens_the_same_view_in_another_browser(family_server, data_dir, page, new_page, shot):
    store = RunStore(family_server.runs_dir)
    parent = next(r for r in store.list() if r.name == "parent")
    page.goto(f"{family_server.url}/errors")
    expect(page.get_by_text("Captions read")).to_be_visible(timeout=60_000)
    page.locator('[data-testid="stSidebar"]').get_by_text(re.compile(r"^parent · ")).click()
    expect(page).to_have_url(re.compile(rf"[?&]run={parent.run_id}"), timeout=30_000)
    choose(page, page.locator(".st-key-err_true"), "7")
    expect(page).to_have_url(re.compile(r"[?&]err_true=7"), timeout=30_000)
    # What the filtered view shows, from mnistcore: the parent's errors on true 7s.
    model, _ = store.load(parent.run_id)
    data = load_mnist(data_dir)
    n = len(select_predictions(evaluate(model, data.test_images, data.test_labels), true=7))
    shown = re.compile(rf"^Showing {min(n, 48)} of {n} ")
    showing = re.compile(r"^Showing \d+ of [\d,]+")
    # (while the page reruns, the old caption can stand beside the new one for a moment)
    expect(page.get_by_text(shown)).to_be_visible(timeout=60_000)
    expect(page.get_by_text(showing)).to_have_count(1)
    link = page.url

    other = new_page()  # another browser context: another user, who has never picked a model
    other.goto(link)
    expect(other.get_by_text(shown)).to_be_visible(timeout=60_000)
    expect(other.get_by_text(showing)).to_have_count(1)
    checked = other.locator('[data-testid="stSidebar"] [role="radiogroup"] label:has(input:checked)')
    expect(checked).to_contain_text("parent · ", timeout=30_000)
    expect(other.get_by_role("combobox", name="True digit")).to_have_value("7")
    shot(other, "linked-errors")

    # A link to a run deleted since: said so, and the active model offered instead.
    gone = new_page()
    gone.goto(f"{family_server.url}/confusion?run=20200101-000000-dead00&true=4&pred=9")
    expect(gone.get_by_text("which does not exist on this server")).to_be_visible(timeout=60_000)
    shot(gone, "deleted-link")
    gone.locator(".st-key-missing_run_active button").click()
    expect(gone.locator(".st-key-cm_cell_title")).to_be_visible(timeout=60_000)
    expect(gone).to_have_url(re.compile(r"[?&]run=\d{8}-\d{6}-[0-9a-f]{6}"))
