"""A new user on a server with no saved model: one button trains the model made for drawing, which becomes active."""

from __future__ import annotations

import re
import time

from playwright.sync_api import expect

from mnistcore import RunStore
from mnistcore.config import PRESETS

DRAW = PRESETS["draw"]  # Home's one-click model (the CLI's default stays the seed recipe)

NAV = '[data-testid="stSidebarNav"] a'


def test_a_new_user_trains_the_draw_model_from_home(empty_server, page, shot):
    assert RunStore(empty_server.runs_dir).list() == []
    page.goto(empty_server.url)
    button = page.get_by_role("button", name=re.compile(r"^.*Train a model for drawing \(~\d+ s\)$"))
    expect(button).to_be_visible(timeout=60_000)
    expect(page.locator(".st-key-model_card")).to_have_count(0)
    expect(page.get_by_text("No saved models yet")).to_be_visible()
    shot(page, "no-model")

    t0 = time.perf_counter()
    button.click()
    progress = page.locator(".st-key-home_default_progress")
    expect(progress).to_be_visible()
    expect(progress).to_contain_text(re.compile(rf"Starting…|Epoch \d+/{DRAW.epochs}"))
    expect(button).to_have_count(0)
    shot(page, "training")

    card = page.locator(".st-key-model_card")
    expect(card).to_be_visible(timeout=300_000)  # the draw preset, on a busy 2-core machine
    seconds = time.perf_counter() - t0
    print(f"\nTrain a model for drawing: click -> active model card in {seconds:.1f} s (shared 2-core machine)")
    expect(card).to_contain_text(f"784-{DRAW.hidden}-10")
    expect(card).to_contain_text(f"{DRAW.epochs}/{DRAW.epochs} epochs")
    expect(card).to_contain_text("augmented")
    expect(progress).to_have_count(0)
    shot(page, "trained")

    runs = RunStore(empty_server.runs_dir).list()
    assert len(runs) == 1 and runs[0].config.augment_style == "draw" and not runs[0].stopped
    assert runs[0].config.with_(device=DRAW.device, precision=DRAW.precision, report_every=DRAW.report_every) == DRAW
    expect(card).to_contain_text(runs[0].run_id)
    expect(card).to_contain_text(f"{runs[0].test_accuracy:.2%}")
    sidebar = page.locator('[data-testid="stSidebar"] [role="radiogroup"]')
    expect(sidebar).to_contain_text(f"{runs[0].test_accuracy:.2%}")
    expect(sidebar.locator("input[type=radio]")).to_have_count(1)
    expect(sidebar.locator("input[type=radio]")).to_be_checked()

    # The other pages use it right away.
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Draw", exact=True).click()
    expect(page.locator(".st-key-draw_canvas_box canvas.mnl-surface")).to_be_visible(timeout=60_000)
    expect(page.get_by_role("button", name=re.compile("Train a model for drawing"))).to_have_count(0)
