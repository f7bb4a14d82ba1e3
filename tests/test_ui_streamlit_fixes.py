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
