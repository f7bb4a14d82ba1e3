"""What this server process has been doing, kept in memory: how long each page run took, and who ran it.

app.py times every full page run (`timed`); the health page (/server) reads the last five minutes. Both
are shared by all sessions of this process (never across replicas: each server measures its own) and
bounded, so a busy server's memory does not grow. Recording is a lock and an append: cheap enough for
every run.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

MAX_SAMPLES = 20_000  # page runs kept (at ~10 runs a second, more than the 5-minute window)
MAX_SESSIONS = 5_000  # sessions remembered; the oldest seen is dropped first
FRAGMENT = " (fragment)"  # suffix of a recorded name that is a fragment's rerun (Draw's canvas), not a page run


@dataclass(frozen=True)
class SessionSeen:
    """A session as its last page run saw it."""

    session_id: str
    user: str | None  # the signed-in user's email, None when nobody is signed in
    page: str
    last_run: float  # time.time() of that run's end


class Activity:
    """A bounded, thread-safe record of page runs (ended at, seconds, page) and of the sessions that ran them."""

    def __init__(self, max_samples: int = MAX_SAMPLES, max_sessions: int = MAX_SESSIONS) -> None:
        self._lock = threading.Lock()
        self._runs: deque[tuple[float, float, str]] = deque(maxlen=max_samples)
        self._sessions: dict[str, SessionSeen] = {}
        self._max_sessions = max_sessions

    def record(self, page: str, seconds: float, session_id: str | None = None, user: str | None = None) -> None:
        """One page run of `seconds` just ended (monotonic clock for the window, wall clock for people)."""
        with self._lock:
            self._runs.append((time.monotonic(), seconds, page))
        self.seen(page, session_id, user)

    def seen(self, page: str, session_id: str | None, user: str | None) -> None:
        """A session is running `page` now (also said at the start of a run: the health page counts its viewer)."""
        if session_id is None:
            return
        with self._lock:
            self._sessions.pop(session_id, None)  # re-inserted last: the dict stays ordered by last run
            self._sessions[session_id] = SessionSeen(session_id, user, page, time.time())
            while len(self._sessions) > self._max_sessions:
                del self._sessions[next(iter(self._sessions))]

    def samples(self) -> list[tuple[float, float, str]]:
        """(ended at, seconds, page) of the page runs kept, oldest first; `ended at` is time.monotonic()."""
        with self._lock:
            return list(self._runs)

    def sessions(self) -> list[SessionSeen]:
        """The sessions seen, most recent last."""
        with self._lock:
            return list(self._sessions.values())

    @contextlib.contextmanager
    def timed(
        self, page: str, session_id: str | None = None, user: str | None = None, start: float | None = None
    ) -> Iterator[None]:
        """Record how long the block took (since `start`, a perf_counter() reading, when given), also when it
        ends by st.stop() / st.rerun() (exceptions pass on)."""
        self.seen(page, session_id, user)
        start = time.perf_counter() if start is None else start
        try:
            yield
        finally:
            self.record(page, time.perf_counter() - start, session_id, user)


ACTIVITY = Activity()
