"""A fix for the race in Streamlit 1.67 that froze pages when a live-progress fragment met a page switch.

The cause (read in streamlit/runtime/app_session.py, `request_rerun`): when a full run of the page has
just ended, its ScriptRunner is STOPPED but its last events (SCRIPT_STOPPED_WITH_SUCCESS, then
SHUTDOWN) still wait on the server's event loop. If a fragment's timed rerun (`run_every`, our
progress polls) arrives in that window, the stopped runner refuses it and AppSession at once creates
a new ScriptRunner for the fragment; the old runner's pending events then come from a "non-current
ScriptRunner" and are dropped, so the browser never gets that run's "script finished" message and
the page stays greyed out and unresponsive until a reload. A page switch is a full run, and a
busy server widens the window: hence freezes while training jobs ran.

The fix: a fragment rerun that would replace a runner which is stopping is put back on the event
loop until that runner's last events have been handled (a few ms), and then proceeds as usual.
Installed once per server process, and only when the internals it relies on are there.

Deferring reorders requests, so a deferred fragment rerun is dropped when a full rerun arrived after it
and it is either a timed poll (`run_every`: the next poll comes anyway) or from another page. Without
that, a progress poll sent just before a page switch ran after the new page's full run, with the old
page's script hash: the browser then took the old page for the current one and blanked the main area
(title gone, nothing greyed, script finished) until a reload. Found by tests/e2e/test_load.py: 1 in
~50 switches with two jobs training; the WebSocket trace is in bench/RESULTS.md.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

_LOG = logging.getLogger(__name__)
RETRY_SECONDS = 0.01
MAX_RETRIES = 300  # 3 s: after that the request proceeds as Streamlit would have handled it


def _stopping(session: Any) -> bool:
    """True while the session's ScriptRunner has stopped but its final events are not handled yet."""
    from streamlit.runtime.scriptrunner_utils.script_requests import ScriptRequestType

    runner = getattr(session, "_scriptrunner", None)
    requests = getattr(runner, "_requests", None)
    return requests is not None and getattr(requests, "_state", None) == ScriptRequestType.STOP


def _superseded(session: Any, client_state: Any, seen_full: int) -> bool:
    """True when a full rerun came after this deferred fragment rerun and makes it stale: a timed poll, or
    a fragment of another page than the one the full rerun shows."""
    full, page = getattr(session, "_mnist_full_reruns", (0, ""))
    if full == seen_full:
        return False
    return bool(getattr(client_state, "is_auto_rerun", False)) or getattr(client_state, "page_script_hash", "") != page


def deferring(original: Any) -> Any:
    """Wrap AppSession.request_rerun so that fragment reruns wait for a stopping runner to finish."""

    def request_rerun(self: Any, client_state: Any, _tries: int = 0, _seen_full: int | None = None) -> None:
        fragment = client_state is not None and bool(getattr(client_state, "fragment_id", ""))
        if not fragment:  # a full rerun (page switch, widget outside fragments): count it, note its page
            full, _ = getattr(self, "_mnist_full_reruns", (0, ""))
            self._mnist_full_reruns = (full + 1, getattr(client_state, "page_script_hash", "") or "")
        elif _seen_full is not None and _superseded(self, client_state, _seen_full):
            _LOG.debug("deferred fragment rerun dropped: a full rerun came after it")
            return None
        loop = getattr(self, "_event_loop", None)
        try:
            on_loop = loop is not None and asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop and fragment and _tries < MAX_RETRIES and _stopping(self):
            seen = getattr(self, "_mnist_full_reruns", (0, ""))[0] if _seen_full is None else _seen_full
            loop.call_later(RETRY_SECONDS, request_rerun, self, client_state, _tries + 1, seen)
            return None
        return original(self, client_state)

    request_rerun.mnist_lab_fix = True  # type: ignore[attr-defined]
    return request_rerun


def install() -> bool:
    """Patch streamlit's AppSession once; False (and a log line) when its internals are not as expected."""
    try:
        from streamlit.runtime.app_session import AppSession
        from streamlit.runtime.scriptrunner_utils.script_requests import ScriptRequestType
    except ImportError as exc:  # another Streamlit layout: run unpatched
        _LOG.warning("page-freeze fix not installed: %s", exc)
        return False
    if getattr(AppSession.request_rerun, "mnist_lab_fix", False):
        return True
    if not hasattr(ScriptRequestType, "STOP"):
        _LOG.warning("page-freeze fix not installed: ScriptRequestType.STOP is missing")
        return False
    AppSession.request_rerun = deferring(AppSession.request_rerun)
    return True
