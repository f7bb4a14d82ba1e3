"""Sign-in end to end: Streamlit's st.login against a real OpenID Connect provider (oidc-provider-mock, started
here on 127.0.0.1), in headless Chromium; two people in two browser contexts; nothing of Streamlit is mocked.

- a signed-out visitor sees Home with the sign-in button and nothing that writes;
- signed in, the sidebar says who, with a sign-out; the owner may delete their run, another person may
  not (no button, and the run is still on disk), and the Runs page shows who trained what;
- the active model follows a person to another browser; sign-out signs that tab out;
- a sign-in older than the configured maximum age is signed out.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from bench import oidc
from bench.appserver import AppServer
from bench.oidc import Provider, app_args
from mnistcore.owners import Owner
from mnistcore.runs import META, RunStore

USERS = {
    "alice": {"sub": "alice", "email": "alice@example.edu", "name": "Alice"},
    "bob": {"sub": "bob", "email": "bob@example.edu", "name": "Bob"},
}
DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    p = Provider(tmp_path_factory.mktemp("oidc") / "provider.log", USERS.values())
    try:
        yield p
    finally:
        p.stop()


def _server(tmp_path_factory, runs: Path, data_dir: Path, provider: Provider, **env: str) -> AppServer:
    folder = tmp_path_factory.mktemp("auth-app")
    port, args = app_args(folder, provider)
    return AppServer(runs, data_dir, folder / "streamlit.log", port=port, args=args, env=env)


@pytest.fixture(scope="module")
def alices_run(tmp_path_factory, trained_runs_dir: Path, provider: Provider) -> tuple[Path, str]:
    """A runs dir whose one run belongs to alice (as the provider identifies her)."""
    runs = tmp_path_factory.mktemp("runs-auth") / "runs"
    shutil.copytree(trained_runs_dir, runs)
    info = RunStore(runs).list()[0]
    meta = json.loads((info.path / META).read_text())
    alice = Owner(provider.issuer, "alice", "alice@example.edu")
    (info.path / META).write_text(json.dumps({**meta, "owner": alice.record()}))
    return runs, info.run_id


@pytest.fixture(scope="module")
def app(tmp_path_factory, alices_run, data_dir: Path, provider: Provider) -> Iterator[AppServer]:
    server = _server(tmp_path_factory, alices_run[0], data_dir, provider)
    try:
        yield server
    finally:
        server.stop()


def sign_in(page: Page, app: AppServer, who: str) -> None:
    oidc.sign_in(page, app.url, who, USERS[who]["email"])


def test_signed_out_visitor_sees_only_home_and_sign_in(app: AppServer, page: Page, shot) -> None:
    page.goto(app.url)
    expect(page.locator(".st-key-auth_login button")).to_be_visible()
    expect(page.get_by_role("heading", name="MNIST Lab")).to_be_visible()
    assert page.locator("[data-testid=stMain] button").count() == 1  # the sign-in button; nothing that writes
    assert page.locator("[data-testid=stSidebar]").count() == 0 and page.locator("input, textarea").count() == 0
    shot(page, "signed-out")


def test_owner_and_other_person(app: AppServer, alices_run, page: Page, new_page, shot) -> None:
    runs, run_id = alices_run
    sign_in(page, app, "alice")
    sidebar = page.locator("[data-testid=stSidebar]")
    shot(page, "alice-signed-in")
    expect(sidebar.get_by_role("button", name="Sign out")).to_be_visible()
    expect(sidebar.locator(".st-key-sidebar_delete")).to_be_visible()  # her own run: Delete is there
    page.screenshot(path=str(DOCS / "sign-in-sidebar.png"), clip={"x": 0, "y": 0, "width": 320, "height": 760})

    bob = new_page()
    sign_in(bob, app, "bob")
    bob_sidebar = bob.locator("[data-testid=stSidebar]")
    expect(bob_sidebar).to_contain_text("Trained by alice@example.edu")
    expect(bob_sidebar.locator(".st-key-sidebar_delete")).to_have_count(0)
    bob.goto(f"{app.url}/runs?compare={run_id}")
    expect(bob.get_by_text("only its owner (or an instructor) can rename, delete or continue it")).to_be_visible()
    expect(bob.locator(".st-key-runs_delete")).to_have_count(0)
    expect(bob.locator(".st-key-runs_rename")).to_have_count(0)
    bob.get_by_text("Best run per person").click()
    best = bob.locator("[data-testid=stExpander]").filter(has_text="Best run per person")
    expect(best.locator("[data-testid=stDataFrame]")).to_be_visible()
    bob.wait_for_timeout(1500)  # the grid draws on a canvas: let it paint before the screenshot
    bob.screenshot(path=str(DOCS / "runs-class-board.png"), full_page=True)
    assert RunStore(runs).info(run_id).owner is not None  # still there, still hers

    # Alice's choices follow her to another browser; signing out signs that tab out.
    other = new_page()
    sign_in(other, app, "alice")
    expect(other.locator(".st-key-sidebar_delete")).to_be_visible()
    other.locator("[data-testid=stSidebar]").get_by_role("button", name="Sign out").click()
    other.wait_for_url(lambda url: not url.startswith(app.url), timeout=30_000)  # the provider's end-session page
    other.goto(app.url)  # the provider's logout page, or straight back: either way the cookie is gone
    expect(other.locator(".st-key-auth_login button")).to_be_visible()
    expect(page.locator(".st-key-auth_user")).to_contain_text("alice@example.edu")  # her first tab: still in
    shot(bob, "bob-runs")


def test_sign_in_older_than_the_maximum_age_is_signed_out(
    tmp_path_factory, alices_run, data_dir: Path, provider: Provider, page: Page
) -> None:
    server = _server(tmp_path_factory, alices_run[0], data_dir, provider, MNIST_LAB_SESSION_MAX_AGE_HOURS="0.005")
    try:
        sign_in(page, server, "alice")  # 0.005 h = 18 s
        time.sleep(20)
        page.reload()  # too old now: st.logout() sends the browser to the provider's end-session page
        page.wait_for_url(lambda url: not url.startswith(server.url), timeout=30_000)
        page.goto(server.url)
        expect(page.locator(".st-key-auth_login button")).to_be_visible(timeout=30_000)
        expect(page.locator(".st-key-auth_user")).to_have_count(0)
    finally:
        server.stop()
