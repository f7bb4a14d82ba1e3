"""Watching hidden units form in a real browser: the Train page's live grid changes while a job trains, and
Inside the network replays the finished run epoch by epoch."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.test_training import _open_train, _set_batch, _set_epochs

# The live grid's picture and caption, and the progress line, as the browser holds them.
UNITS_STATE = """() => {
    const plot = document.querySelector('.st-key-train_units .js-plotly-plot');
    const box = document.querySelector('.st-key-train_units');
    const text = document.querySelector('.st-key-train_progress');
    return {source: plot && plot.data ? plot.data[0].source : null,
            caption: box ? box.innerText : null,
            text: text ? text.innerText : null};
}"""
REPLAY_SOURCE = """() => {
    const plot = document.querySelector('.st-key-net_replay .js-plotly-plot');
    return plot && plot.data ? plot.data[0].source : null;
}"""


def _wait_units(page, condition_js: str, timeout: float = 90_000) -> dict:
    fn = f"() => {{ const s = ({UNITS_STATE})(); return ({condition_js}) ? s : null; }}"
    return page.wait_for_function(fn, timeout=timeout).json_value()


def test_the_units_grid_changes_while_a_job_trains_then_replays(scratch_server, page, shot):
    _open_train(page, scratch_server.url)
    _set_epochs(page, 2)
    _set_batch(page, 16)  # 2 x 3438 batches: several seconds of training to watch
    page.locator(".st-key-train_start button").click()

    running = "s.text && s.text.startsWith('Epoch')"
    first = _wait_units(page, f"s.source && {running}")
    assert re.search(r"16 of the 128 hidden units \(#0–#15\) at epoch [12]/2, batch \d+/3438", first["caption"])
    # Still while it runs, the browser shows another picture of the same units: they are forming.
    later = _wait_units(page, f"s.source && s.source !== {first['source']!r} && {running}")
    assert later["caption"] != first["caption"]  # a later batch
    page.locator(".st-key-train_units").scroll_into_view_if_needed()
    shot(page, "units-running")

    expect(page.get_by_text("it is now the active model")).to_be_visible(timeout=180_000)
    expect(page.locator(".st-key-train_units")).to_contain_text("Inside the network replays them")

    # The finished run is active: Inside the network replays its epochs 0..2.
    page.goto(f"{scratch_server.url}/network")
    replay = page.locator(".st-key-net_replay")
    expect(replay.locator(".js-plotly-plot")).to_be_visible(timeout=90_000)
    expect(replay).to_contain_text("Test accuracy after epoch 2")
    end = page.evaluate(REPLAY_SOURCE)
    slider = page.get_by_role("slider", name="Epoch")
    slider.focus()
    page.keyboard.press("Home")  # epoch 0: the random start
    expect(replay).to_contain_text("before training", timeout=30_000)
    page.wait_for_function(f"() => {{ const s = ({REPLAY_SOURCE})(); return s && s !== {end!r}; }}")
    replay.scroll_into_view_if_needed()
    shot(page, "replay-start")
