"""Training in the browser: the curves grow while a job runs, and a job belongs to its own session only."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.actions import choose

NAV = '[data-testid="stSidebarNav"] a'

# The curves figure as the browser holds it: points per trace (train loss, test loss, train acc, test acc),
# how far along (in epochs) the training-loss trace reaches, and the progress line drawn in the same fragment
# run. The count of training points is not monotone: past 400 they are thinned (ui.figures.training_curves).
CURVES_STATE = """() => {
    const plot = document.querySelector('.st-key-train_curves .js-plotly-plot');
    const text = document.querySelector('.st-key-train_progress');
    const x = plot && plot.data ? (plot.data[0].x || []) : [];
    return {points: plot && plot.data ? plot.data.map(t => (t.x || []).length) : null,
            reach: x.length ? x[x.length - 1] : 0, text: text ? text.innerText : null};
}"""


def _curves(page) -> dict:
    return page.evaluate(CURVES_STATE)


def _wait_curves(page, condition_js: str, timeout: float = 90_000) -> dict:
    """Wait until the curves state satisfies a JS condition on `s` (the CURVES_STATE dict), return that state."""
    fn = f"() => {{ const s = ({CURVES_STATE})(); return ({condition_js}) ? s : null; }}"
    return page.wait_for_function(fn, timeout=timeout).json_value()


def _open_train(page, url: str) -> None:
    page.goto(f"{url}/train")
    expect(page.locator(".st-key-train_start button")).to_be_enabled(timeout=60_000)


def _set_epochs(page, value: int) -> None:
    slider = page.locator(".st-key-train_epochs input[type=range]")
    slider.focus()
    page.keyboard.press("Home")  # the minimum: 1
    for _ in range(value - 1):
        page.keyboard.press("ArrowRight")
    expect(slider).to_have_value(str(value))


def _set_batch(page, size: int) -> None:
    choose(page, page.locator(".st-key-train_batch"), str(size))
    expect(page.get_by_role("combobox", name="Batch size")).to_have_value(str(size))


def test_curves_grow_while_a_training_runs(scratch_server, page, shot):
    _open_train(page, scratch_server.url)
    _set_epochs(page, 2)
    _set_batch(page, 16)  # 2 x 3438 batches (55 000 trained, 5 000 held out): long enough to watch
    page.locator(".st-key-train_start button").click()

    expect(page.locator(".st-key-train_progress")).to_be_visible()
    expect(page.get_by_test_id("stButton").get_by_role("button", name="Stop").first).to_be_visible()
    expect(page.locator(".st-key-train_start button")).to_be_disabled()

    # A first drawing of the curves while it runs.
    first = _wait_curves(page, "s.points && s.points[0] > 0 && s.text.startsWith('Epoch')")
    # The default recipe holds 5 000 training images out for calibration: ceil(55 000 / 16) batches.
    assert re.search(r"Epoch [12]/2 · batch \d+/3438", first["text"]), first["text"]
    shot(page, "running")

    # Later, still while it runs, the browser's training curve reaches further, at a later step.
    later = _wait_curves(page, f"s.points && s.reach > {first['reach']} && s.text.startsWith('Epoch')")
    step = [
        int(m.group(1)) * 3438 + int(m.group(2))
        for m in (re.search(r"Epoch (\d+)/2 · batch (\d+)/", s["text"]) for s in (first, later))
    ]
    assert step[1] > step[0], (first, later)

    expect(page.get_by_text("it is now the active model")).to_be_visible(timeout=120_000)
    # The figure is redrawn a moment after the message: wait for the finished curves, running to epoch 2's end.
    final = _wait_curves(page, "s.points && s.reach === 2 && s.text.startsWith('Finished 2 epochs')", 30_000)
    assert final["points"][1] == 2 and final["points"][3] == 2, final  # one test-set point per epoch
    expect(page.locator(".st-key-train_start button")).to_be_enabled()
    shot(page, "finished")


def test_a_second_session_does_not_see_the_first_sessions_job(scratch_server, page, new_page, shot):
    a = page
    _open_train(a, scratch_server.url)
    _set_epochs(a, 20)
    _set_batch(a, 16)  # 20 x 3438 batches: minutes of work, so the job surely still runs while B looks
    a.locator(".st-key-train_start button").click()
    expect(a.get_by_test_id("stButton").get_by_role("button", name="Stop").first).to_be_visible()
    expect(a.locator(".st-key-train_progress")).to_contain_text(re.compile(r"Epoch \d+/20 · batch"), timeout=60_000)

    b = new_page()
    _open_train(b, scratch_server.url)
    expect(b.get_by_role("heading", name="Train a network")).to_be_visible()
    expect(b.locator(".st-key-train_progress")).to_have_count(0)
    expect(b.locator(".st-key-train_curves")).to_have_count(0)
    expect(b.get_by_test_id("stButton").get_by_role("button", name="Stop").first).to_have_count(0)
    expect(b.locator(".st-key-train_epochs input[type=range]")).to_have_value("5")  # B's own default form
    shot(b, "other-session")
    # B's other pages show no background job either.
    b.locator(NAV, has_text="Home").click()
    expect(b.locator(".st-key-model_card")).to_be_visible(timeout=60_000)
    expect(b.get_by_text("Training in the background")).to_have_count(0)

    # A's job was running all along, and a reload of A's page (a new Streamlit session in the same browser)
    # finds it again; stop it and throw the partial model away.
    expect(a.locator(".st-key-train_progress")).to_contain_text(re.compile(r"Epoch \d+/20 · batch"))
    a.reload()
    expect(a.locator(".st-key-train_progress")).to_contain_text(re.compile(r"Epoch \d+/20 · batch"), timeout=60_000)
    expect(a.get_by_test_id("stButton").get_by_role("button", name="Stop").first).to_be_visible()
    a.get_by_test_id("stButton").get_by_role("button", name="Stop").first.click()
    expect(a.locator(".st-key-train_discard button")).to_be_visible(timeout=60_000)
    expect(a.locator(".st-key-train_keep button")).to_be_visible()
    shot(a, "stopped")
    a.locator(".st-key-train_discard button").click()
    expect(a.locator(".st-key-train_progress")).to_contain_text("discarded")
    expect(a.locator(".st-key-train_start button")).to_be_enabled()
