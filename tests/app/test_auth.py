"""Sign-in under AppTest (AppTest.user stands in for st.user): the signed-out Home, who may change which run,
mine/everyone on the Runs page, the maximum session age, and the refusal to serve off loopback without sign-in.

The sign-in itself (st.login against a real OIDC provider, in Chromium) is tests/e2e/test_auth.py.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from mnistcore.owners import Owner
from mnistcore.runs import META, RunStore
from ui import auth

ISS = "http://127.0.0.1:9/"
ALICE = Owner(ISS, "alice-sub", "alice@example.edu")
BOB = Owner(ISS, "bob-sub", "bob@example.edu")
SECRETS = {
    "auth": {
        "redirect_uri": "http://127.0.0.1:8501/oauth2callback",
        "cookie_secret": "not-a-real-secret-only-for-tests",
        "client_id": "x",
        "client_secret": "y",
        "server_metadata_url": f"{ISS}.well-known/openid-configuration",
    },
    "mnist_lab": {"instructors": ["T@example.edu"]},
}


def signed_in(owner: Owner, **claims) -> dict:
    return {"is_logged_in": True, "iss": owner.issuer, "sub": owner.subject, "email": owner.email, **claims}


@pytest.fixture
def alices_run(runs_copy: Path) -> tuple[Path, str]:
    """The small run, owned by Alice."""
    info = RunStore(runs_copy).list()[0]
    meta = json.loads((info.path / META).read_text())
    (info.path / META).write_text(json.dumps({**meta, "owner": ALICE.record()}))
    return runs_copy, info.run_id


def app_as(make_app, runs: Path, user: dict):
    at = make_app(runs)
    at.secrets = SECRETS
    at.user = user
    return at


def buttons(at) -> set[str]:
    return {b.key for b in at.button if b.key}


def test_signed_out_visitor_sees_home_with_sign_in_only(make_app, alices_run):
    runs, _ = alices_run
    at = app_as(make_app, runs, {"is_logged_in": False}).run()
    assert not at.exception
    assert buttons(at) == {"auth_login"}
    assert at.title[0].value == "MNIST Lab"
    assert not at.sidebar.radio and not at.text_input and not at.dataframe


def test_owner_sees_who_is_signed_in_and_may_delete(make_app, alices_run):
    runs, _ = alices_run
    at = app_as(make_app, runs, signed_in(ALICE)).run()
    assert not at.exception
    assert "alice@example.edu" in at.sidebar.markdown[0].value
    assert {"auth_logout", "sidebar_delete_confirm"} <= buttons(at)


def test_another_user_cannot_delete_rename_or_continue(make_app, alices_run):
    runs, run_id = alices_run
    before = (RunStore(runs).info(run_id).path / META).read_bytes()
    at = app_as(make_app, runs, signed_in(BOB)).run()
    assert not at.exception
    assert "sidebar_delete_confirm" not in buttons(at)
    assert "Trained by alice@example.edu" in " ".join(c.value for c in at.sidebar.caption)
    at.query_params["compare"] = run_id
    at.switch_page("app_pages/runs.py")
    at.run()
    assert {"runs_rename", "runs_delete_confirm"}.isdisjoint(buttons(at)) and "runs_activate" in buttons(at)
    assert list(at.dataframe[-1].value["trained by"]) == ["alice@example.edu"]
    assert "only its owner" in " ".join(c.value for c in at.caption)
    at.switch_page("app_pages/train.py")
    at.run()
    assert "resume_start" not in buttons(at)
    # The buttons are gone; the store the pages use refuses too (tests/test_owners.py). Nothing changed:
    assert (RunStore(runs).info(run_id).path / META).read_bytes() == before


def test_instructor_may_delete_anyones_run(make_app, alices_run):
    runs, _ = alices_run
    teacher = Owner(ISS, "t-sub", "t@example.edu")
    at = app_as(make_app, runs, signed_in(teacher)).run()
    assert "instructor" in at.sidebar.markdown[0].value
    at.button(key="sidebar_delete_confirm").click().run()
    assert not at.exception and RunStore(runs).list() == []


def test_runs_page_mine_and_everyone(make_app, alices_run):
    runs, run_id = alices_run
    at = app_as(make_app, runs, signed_in(BOB))
    at.run()
    at.switch_page("app_pages/runs.py")
    at.run()
    assert list(at.dataframe[-1].value["run id"]) == [run_id]
    best = at.dataframe[0].value
    assert list(best["person"]) == ["alice@example.edu"] and list(best["runs"]) == [1]
    at.segmented_control(key="runs_scope").set_value("Mine").run()
    assert not at.exception
    assert "You have no saved runs yet" in at.info[0].value


def test_session_older_than_the_maximum_is_signed_out(make_app, alices_run, monkeypatch):
    runs, _ = alices_run
    monkeypatch.setenv("MNIST_LAB_SESSION_MAX_AGE_HOURS", "1")
    fresh = app_as(make_app, runs, signed_in(ALICE, iat=int(time.time()) - 1800)).run()
    assert "auth_logout" in buttons(fresh)
    stale = app_as(make_app, runs, signed_in(ALICE, iat=int(time.time()) - 7200)).run()
    assert not stale.exception
    assert buttons(stale) == {"auth_login"}  # st.logout() ran: the signed-out Home


def test_session_expired_rule():
    now = 1_000_000.0
    assert not auth.session_expired({"iat": now - 59}, 60, now, first_seen=0)
    assert auth.session_expired({"iat": now - 61}, 60, now, first_seen=now)
    assert auth.session_expired({}, 60, now, first_seen=now - 61)  # no iat: from when this tab first saw it
    assert not auth.session_expired({"iat": True}, 60, now, first_seen=now)


def test_off_loopback_without_sign_in_refuses(make_app, alices_run, monkeypatch):
    runs, _ = alices_run
    monkeypatch.delenv(auth.OPEN_ENV, raising=False)
    at = make_app(runs)
    import streamlit as st

    monkeypatch.setattr(st, "get_option", lambda name: "0.0.0.0" if name == "server.address" else None)
    at.run()
    assert not at.exception
    assert "will not serve on 0.0.0.0 without sign-in" in at.error[0].value and not buttons(at)
    monkeypatch.setenv(auth.OPEN_ENV, "1")
    at.run()
    assert "open to anyone" in at.warning[0].value and "auth_login" not in buttons(at)


def test_address_rules_and_serve_check(monkeypatch, capsys):
    from ui import serve_check

    monkeypatch.delenv(auth.OPEN_ENV, raising=False)
    for address in ("127.0.0.1", "127.0.1.1", "::1", "[::1]", "localhost"):
        assert auth.is_loopback(address) and auth.exposure_problem(address) is None
    for address in ("0.0.0.0", "::", "192.168.1.5", "", None, "example.org"):
        assert not auth.is_loopback(address) and auth.exposure_problem(address)
    assert serve_check.main(["0.0.0.0"]) == 2 and "MNIST_LAB_OPEN=1" in capsys.readouterr().err
    assert serve_check.main(["127.0.0.1"]) == 0
    monkeypatch.setenv(auth.OPEN_ENV, "1")
    assert serve_check.main(["0.0.0.0"]) == 0


def test_settings_from_secrets_and_environment(monkeypatch):
    monkeypatch.setattr(auth, "_section", lambda name: {"max_runs_per_user": 7, "instructors": [" A@x.org "]})
    monkeypatch.setenv("MNIST_LAB_MAX_DRAWINGS", "30")
    monkeypatch.setenv("MNIST_LAB_SESSION_MAX_AGE_HOURS", "nonsense")
    conf = auth.settings()
    assert (conf.max_runs, conf.max_drawings, conf.instructors) == (7, 30, ("a@x.org",))
    assert conf.session_max_age == 12 * 3600


def test_active_model_follows_the_person_to_another_browser(make_app, alices_run):
    runs, first = alices_run
    second = "20990101-000000-abcdef"  # a copy of the run under a newer id: the default active model
    shutil.copytree(Path(runs) / first, Path(runs) / second)
    one = app_as(make_app, runs, signed_in(ALICE))
    one.query_params["run"] = first  # Alice picks the older run in her first browser
    one.run()
    assert one.sidebar.radio(key="sidebar_model").value == first
    other_browser = app_as(make_app, runs, signed_in(ALICE)).run()
    assert not other_browser.exception
    assert other_browser.sidebar.radio(key="sidebar_model").value == first
    bob = app_as(make_app, runs, signed_in(BOB)).run()  # someone else: the newest, as always
    assert bob.session_state["ui_active_run"] == second


def test_full_run_quota_refuses_training_and_links_the_runs_page(make_app, alices_run, monkeypatch):
    runs, _ = alices_run
    monkeypatch.setenv("MNIST_LAB_MAX_RUNS", "1")
    at = app_as(make_app, runs, signed_in(ALICE))
    at.run()
    at.switch_page("app_pages/train.py")
    at.run()
    at.button(key="train_start").click().run()
    assert not at.exception
    assert "Training cannot start: you have 1 saved runs" in at.error[0].value
    assert any("Runs page" in link.label for link in at.get("page_link"))
    assert len(RunStore(runs).list()) == 1
