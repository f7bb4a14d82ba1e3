"""The instructor's health page (/server) under AppTest: who sees it, and what it shows."""

from __future__ import annotations

import re
import time

from mnistcore.data import load_mnist
from mnistcore.owners import Owner
from mnistcore.runs import RunStore
from tests.app.conftest import SMALL
from ui import server_view, viewer
from ui.jobs import REGISTRY

SERVER = "app_pages/server.py"
AUTH = {
    "auth": {
        "redirect_uri": "http://127.0.0.1:1/oauth2callback",
        "cookie_secret": "x" * 32,
        "client_id": "c",
        "client_secret": "s",
        "server_metadata_url": "http://127.0.0.1:1/.well-known/openid-configuration",
    }
}


def opens_server_page(at) -> bool:
    """Open /server; False when the navigation does not list it (AppTest refuses to switch to it)."""
    try:
        at.switch_page(SERVER).run()
    except ValueError as exc:
        assert "Could not find a navigation page" in str(exc)
        return False
    assert not at.exception, at.exception
    return any(t.value == "Server" for t in at.title)


def text(at) -> str:
    parts = [e.value for kind in ("title", "subheader", "caption", "markdown", "error") for e in at.get(kind)]
    return "\n".join(str(p) for p in parts)


def test_single_user_mode_shows_the_page_with_disk_and_page_times(make_app, runs_copy, monkeypatch):
    monkeypatch.setattr(viewer, "is_active_session", lambda sid: True)  # AppTest has no websocket runtime
    at = make_app(runs_copy).run()
    assert opens_server_page(at)
    shown = text(at)
    assert "1 active sessions · 0 signed-in users" in shown
    assert "0 running · 0 queued" in shown
    assert re.search(r"\*\*Runs\*\*: [\d.,]+ MB", shown)
    m = re.search(r"All pages: (\d+) page runs, p50 ([\d,]+) ms, p95 ([\d,]+) ms", shown)
    assert m and int(m.group(1)) >= 1, shown  # the first run (home) was timed; this one is not over yet
    tables = at.get("table")
    assert any("home" in str(t.proto) for t in tables)  # the per-page table names the page timed
    assert any("(no owner)" in str(t.proto) for t in tables)  # the one run, saved without sign-in


def test_with_sign_in_only_instructors_see_it(make_app, runs_copy):
    secrets = {**AUTH, "mnist_lab": {"instructors": ["teacher@example.com", "other@example.com"]}}
    iss = "http://127.0.0.1:1/"
    at = make_app(runs_copy)
    at.secrets.update(secrets)
    at.user = {"is_logged_in": True, "iss": iss, "sub": "s1", "email": "student@example.com"}
    at.run()
    assert not opens_server_page(at)
    at = make_app(runs_copy)
    at.secrets.update(secrets)
    at.user = {"is_logged_in": True, "iss": iss, "sub": "t1", "email": "Teacher@example.com"}
    at.run()
    assert opens_server_page(at) and "signed-in users" in text(at)


def test_an_open_server_hides_it(make_app, runs_copy, monkeypatch):
    monkeypatch.setenv("MNIST_LAB_OPEN", "1")
    at = make_app(runs_copy).run()
    assert not opens_server_page(at)


def test_a_running_job_shows_with_owner_progress_and_memory(make_app, runs_copy, app_data_dir):
    job = REGISTRY.start(
        "someonesbrowser", SMALL.with_(epochs=50, batch_size=16), load_mnist(app_data_dir), RunStore(runs_copy)
    )
    deadline = time.monotonic() + 90
    while job.pid is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job.pid is not None
    at = make_app(runs_copy).run()
    at.switch_page(SERVER).run()
    assert not at.exception, at.exception
    assert "1 running · 0 queued" in text(at)
    frame = at.dataframe[0].value
    row = frame.iloc[0]
    assert (row["work"], row["owner"], int(row["pid"])) == ("training", "someonesbrowser", job.pid)
    assert 0 <= row["progress"] <= 1 and ("Epoch" in row["status"] or "Starting" in row["status"])
    assert row["memory"].endswith(" MB") and float(row["memory"].split()[0].replace(",", "")) > 10
    job.stop()


def test_a_signed_in_persons_key_is_shown_as_their_email(make_app, runs_copy):
    at = make_app(runs_copy)
    at.secrets.update({**AUTH, "mnist_lab": {"instructors": ["t@example.com"]}})
    at.user = {"is_logged_in": True, "iss": "http://127.0.0.1:1/", "sub": "t1", "email": "t@example.com"}
    at.run()  # the teacher's own page run is what teaches this server their email
    key = Owner("http://127.0.0.1:1/", "t1", "t@example.com").key
    assert server_view._who(key) == "t@example.com"
    assert server_view._who("cd" * 16) == "cdcdcdcd"  # a browser never signed in: shortened
