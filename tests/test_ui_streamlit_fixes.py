"""The page-freeze fix (ui/streamlit_fixes.py): a fragment rerun waits for a stopping ScriptRunner."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from streamlit.runtime.scriptrunner_utils.script_requests import ScriptRequestType

from ui import streamlit_fixes


def fake_session(loop, state):
    runner = SimpleNamespace(_requests=SimpleNamespace(_state=state))
    return SimpleNamespace(_event_loop=loop, _scriptrunner=runner)


def run(coro):
    """asyncio.run in a thread of its own: the main thread may already run a loop (Playwright's, in e2e)."""
    import threading

    errors = []

    def target():
        try:
            asyncio.run(coro)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(30)
    if errors:
        raise errors[0]


def test_fragment_rerun_waits_until_the_stopping_runner_is_gone():
    calls = []
    patched = streamlit_fixes.deferring(lambda self, cs: calls.append((self._scriptrunner, cs.fragment_id)))

    async def scenario():
        session = fake_session(asyncio.get_running_loop(), ScriptRequestType.STOP)
        patched(session, SimpleNamespace(fragment_id="frag"))
        await asyncio.sleep(0.05)
        assert calls == []  # deferred while the old runner's final events are pending
        session._scriptrunner = None  # Streamlit handled SHUTDOWN
        await asyncio.sleep(0.05)
        assert calls == [(None, "frag")]  # then it goes ahead, once

    run(scenario())


def test_full_reruns_and_running_scripts_are_not_delayed():
    calls = []
    patched = streamlit_fixes.deferring(lambda self, cs: calls.append(cs))

    async def scenario():
        loop = asyncio.get_running_loop()
        stopping = fake_session(loop, ScriptRequestType.STOP)
        patched(stopping, SimpleNamespace(fragment_id=""))  # a page switch: a full rerun
        patched(stopping, None)
        running = fake_session(loop, ScriptRequestType.CONTINUE)
        patched(running, SimpleNamespace(fragment_id="frag"))
        assert len(calls) == 3

    run(scenario())


def test_gives_up_waiting_after_a_bound(monkeypatch):
    monkeypatch.setattr(streamlit_fixes, "MAX_RETRIES", 3)
    monkeypatch.setattr(streamlit_fixes, "RETRY_SECONDS", 0.001)
    calls = []
    patched = streamlit_fixes.deferring(lambda self, cs: calls.append(cs))

    async def scenario():
        session = fake_session(asyncio.get_running_loop(), ScriptRequestType.STOP)
        patched(session, SimpleNamespace(fragment_id="frag"))
        await asyncio.sleep(0.1)
        assert len(calls) == 1

    run(scenario())


def test_install_patches_streamlit_once():
    from streamlit.runtime.app_session import AppSession

    before = AppSession.request_rerun
    try:
        assert streamlit_fixes.install()
        patched = AppSession.request_rerun
        assert getattr(patched, "mnist_lab_fix", False)
        assert streamlit_fixes.install()
        assert AppSession.request_rerun is patched  # not wrapped twice
    finally:
        AppSession.request_rerun = before


def rerun(page: str, fragment: str = "", poll: bool = False) -> SimpleNamespace:
    """A rerun request as AppSession.request_rerun receives it: full (no fragment), a user's, or a timed poll."""
    return SimpleNamespace(fragment_id=fragment, is_auto_rerun=poll, page_script_hash=page)


def while_stopping(*requests: SimpleNamespace) -> list[SimpleNamespace]:
    """Send `requests` while the session's runner is stopping, let it shut down: the ones that ran, in order."""
    calls = []
    patched = streamlit_fixes.deferring(lambda self, cs: calls.append(cs))

    async def scenario():
        session = fake_session(asyncio.get_running_loop(), ScriptRequestType.STOP)
        for request in requests:
            patched(session, request)
        session._scriptrunner = None  # Streamlit handled SHUTDOWN
        await asyncio.sleep(0.05)

    run(scenario())
    return calls


def test_a_deferred_poll_is_dropped_when_a_page_switch_came_after_it():
    """The blank-page freeze: a progress poll sent just before a page switch, deferred, must not run after the
    new page's full run (it carries the old page's script hash, and the browser would blank the page)."""
    poll, switch = rerun("train", "frag", poll=True), rerun("runs")
    # The poll is deferred (the runner is stopping); the page switch goes ahead at once (full reruns are
    # never deferred); the poll is then dropped, not run after the switch.
    assert while_stopping(poll, switch) == [switch]


def test_a_deferred_user_fragment_rerun_survives_a_full_rerun_of_the_same_page():
    stroke, full = rerun("draw", "canvas"), rerun("draw")
    assert while_stopping(stroke, full) == [full, stroke]  # same page, a user's action: it still runs
    # ...but a user's fragment rerun from a page the user has left is dropped.
    home = rerun("home")
    assert while_stopping(rerun("draw", "canvas"), home) == [home]


def test_a_deferred_poll_with_no_full_rerun_after_it_still_runs():
    poll = rerun("train", "frag", poll=True)
    assert while_stopping(poll) == [poll]
