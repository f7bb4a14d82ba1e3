"""Two real `streamlit run` servers sharing one runs dir and one drawings dir, as replicas behind a proxy.

A run saved through one shows on the other's next page run; a rename or a delete through one is seen by
the other (its cached model is not served as if the run still existed). Each server's health page
(/server) counts only its own sessions.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from bench.appserver import AppServer
from mnistcore import RunStore

SIDEBAR_RUNS = '[data-testid="stSidebar"] [role="radiogroup"] label'


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, trained_runs_dir: Path, data_dir: Path) -> Iterator[tuple]:
    """Servers A and B on one runs dir (a copy of the trained one) and one drawings dir."""
    shared = tmp_path_factory.mktemp("shared")
    runs = shared / "runs"
    shutil.copytree(trained_runs_dir, runs)
    env = {"MNIST_DRAWINGS_DIR": str(shared / "drawings")}
    logs = tmp_path_factory.mktemp("replica-logs")
    a = AppServer(runs, data_dir, logs / "a.log", env)
    try:
        b = AppServer(runs, data_dir, logs / "b.log", env)
    except Exception:
        a.stop()
        raise
    try:
        yield a, b, runs
    finally:
        a.stop()
        b.stop()


def _runs_on(page, url: str, count: int) -> None:
    page.goto(f"{url}/runs")
    expect(page.locator(SIDEBAR_RUNS)).to_have_count(count, timeout=60_000)


def _seen_within(page, check, changed_at: float) -> float:
    """Reload the other server's page once (its next page run) and `check` it; seconds since the change.

    Only one reload: no cache on that server may hold the old state past its first page run after the change
    (the issue asks for 5 s; the time printed includes loading the page on this shared machine).
    """
    page.reload()
    check(page)
    return time.monotonic() - changed_at


def test_save_rename_delete_on_one_replica_show_on_the_other(replicas, page, new_page, shot):
    a_srv, b_srv, runs = replicas
    a, b = page, new_page()
    _runs_on(b, b_srv.url, 1)
    _runs_on(a, a_srv.url, 1)

    # Saved through A: a one-epoch training on A's Train page.
    a.goto(f"{a_srv.url}/train")
    expect(a.locator(".st-key-train_start button")).to_be_enabled(timeout=60_000)
    slider = a.locator(".st-key-train_epochs input[type=range]")
    slider.focus()
    a.keyboard.press("Home")  # 1 epoch
    expect(slider).to_have_value("1")
    a.locator(".st-key-train_start button").click()
    expect(a.get_by_text("it is now the active model")).to_be_visible(timeout=180_000)
    saved_at = time.monotonic()
    (new,) = [r for r in RunStore(runs).list() if r.extra.get("source") == "dashboard"]
    seconds = _seen_within(b, lambda p: expect(p.locator(SIDEBAR_RUNS)).to_have_count(2, timeout=60_000), saved_at)
    print(f"saved on A, listed on B after {seconds:.1f} s (page reloads included)")
    shot(b, "b-sees-a-run")

    # Renamed through A, on its Runs page: B's sidebar shows the new name.
    a.goto(f"{a_srv.url}/runs?compare={new.run_id}")
    name_box = a.locator(f".st-key-runs_name_{new.run_id} input")
    name_box.fill("named on A")
    name_box.press("Enter")
    a.locator(".st-key-runs_rename button").click()
    expect(a.locator(SIDEBAR_RUNS).filter(has_text="named on A")).to_have_count(1, timeout=30_000)
    renamed_at = time.monotonic()
    seconds = _seen_within(
        b,
        lambda p: expect(p.locator(SIDEBAR_RUNS).filter(has_text="named on A")).to_have_count(1, timeout=60_000),
        renamed_at,
    )
    print(f"renamed on A, shown on B after {seconds:.1f} s")

    # B makes the new run its active model and draws with it (cached on B); then A deletes it.
    b.goto(f"{b_srv.url}/network?run={new.run_id}")
    expect(b.get_by_role("heading", name="Inside the network")).to_be_visible(timeout=60_000)
    a.goto(f"{a_srv.url}/runs?compare={new.run_id}")
    a.locator(".st-key-runs_delete button").click()
    a.locator(".st-key-runs_delete_confirm button").click()
    expect(a.locator(SIDEBAR_RUNS)).to_have_count(1, timeout=30_000)
    deleted_at = time.monotonic()
    assert not (runs / new.run_id).exists()

    def gone_on_b(p) -> None:
        # (reloaded at /network?run=<deleted id>, B says the link's run has been deleted)
        said = re.compile(r"does not exist on this server: it has been deleted|was deleted, in another window")
        expect(p.get_by_text(said).first).to_be_visible(timeout=60_000)
        expect(p.locator(SIDEBAR_RUNS)).to_have_count(1)

    seconds = _seen_within(b, gone_on_b, deleted_at)
    print(f"deleted on A, gone on B after {seconds:.1f} s")
    shot(b, "b-after-a-deleted")
    assert sorted(p.name for p in runs.iterdir()) == sorted(r.run_id for r in RunStore(runs).list())

    # Each replica's health page counts its own sessions only (one browser context on each).
    b.goto(f"{b_srv.url}/server")
    expect(b.get_by_text(re.compile(r"^1 active sessions"))).to_be_visible(timeout=60_000)
    expect(b.get_by_text(re.compile(r"All pages: \d+ page runs, p50 [\d,]+ ms"))).to_be_visible()
    shot(b, "server-page")
