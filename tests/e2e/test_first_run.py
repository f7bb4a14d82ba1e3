"""A new user on a server with no saved model: one button trains the default model, which becomes active."""

from __future__ import annotations

import re
import time

from playwright.sync_api import expect

from mnistcore import RunStore

NAV = '[data-testid="stSidebarNav"] a'


def test_a_new_user_trains_the_default_model_from_home(empty_server, page, shot):
    assert RunStore(empty_server.runs_dir).list() == []
    page.goto(empty_server.url)
    button = page.get_by_role("button", name=re.compile(r"^.*Train the default model \(~\d+ s\)$"))
    expect(button).to_be_visible(timeout=60_000)
    expect(page.locator(".st-key-model_card")).to_have_count(0)
    expect(page.get_by_text("No saved models yet")).to_be_visible()
    shot(page, "no-model")

    t0 = time.perf_counter()
    button.click()
    progress = page.locator(".st-key-home_default_progress")
    expect(progress).to_be_visible()
    expect(progress).to_contain_text(re.compile(r"Starting…|Epoch \d/5"))
    expect(button).to_have_count(0)
    shot(page, "training")

    card = page.locator(".st-key-model_card")
    expect(card).to_be_visible(timeout=150_000)  # 5 epochs of the seed recipe, on a busy 2-core machine
    seconds = time.perf_counter() - t0
    print(f"\nTrain the default model: click -> active model card in {seconds:.1f} s (shared 2-core machine)")
    expect(card).to_contain_text("784-128-10")
    expect(card).to_contain_text("5/5 epochs")
    expect(progress).to_have_count(0)
    shot(page, "trained")

    runs = RunStore(empty_server.runs_dir).list()
    assert len(runs) == 1 and runs[0].config.epochs == 5 and not runs[0].stopped
    expect(card).to_contain_text(runs[0].run_id)
    expect(card).to_contain_text(f"{runs[0].test_accuracy:.2%}")
    sidebar = page.locator('[data-testid="stSidebar"] [role="radiogroup"]')
    expect(sidebar).to_contain_text(f"{runs[0].test_accuracy:.2%}")
    expect(sidebar.locator("input[type=radio]")).to_have_count(1)
    expect(sidebar.locator("input[type=radio]")).to_be_checked()

    # The other pages use it right away.
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Draw", exact=True).click()
    expect(page.locator(".st-key-draw_canvas_box canvas.mnl-surface")).to_be_visible(timeout=60_000)
    expect(page.get_by_role("button", name=re.compile("Train the default model"))).to_have_count(0)
