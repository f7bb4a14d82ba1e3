"""What a training job and a task share (`Work`), and each browser's current work of one kind (`Board`)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from ui.background.executor import Executor, Handle, Outcome
from ui.background.process import LOCAL
from ui.background.slots import Slot
from ui.background.status import Status


class Work:
    """One function run in the background under a slot: its status, times and stop request, under a lock.

    Subclasses say what a message means (`_on_message`) and what the outcome means (`_finish`); the slot is
    given back once `_finish` has recorded it, whatever happens.
    """

    def __init__(self, slot: Slot, executor: Executor = LOCAL) -> None:
        self.work_id = uuid.uuid4().hex[:10]
        self._slot, self._executor = slot, executor
        self._lock = threading.Lock()
        self._status = Status.RUNNING
        self._error: str | None = None
        self._stop_requested = False
        self._started, self._ended = time.time(), None
        self._handle: Handle | None = None

    def _start(self, fn: Callable[..., Any], args: tuple, name: str) -> Any:
        """Run fn(emit, stop, *args) through the executor; self (failed, saying why, when it could not start)."""
        try:
            self._handle = self._executor.start(
                fn,
                args,
                name=f"{name}-{self.work_id}",
                threads=self._slot.threads,
                on_message=self._on_message,
                on_end=self._on_end,
            )
        except Exception as exc:  # nothing runs: the page says why, and the slot must not stay taken
            self._on_end(Outcome(error=f"it could not start: {type(exc).__name__}: {exc}"))
        return self

    def _on_message(self, message: Any) -> None:
        """A message sent by the function (from the reader thread)."""

    def _finish(self, outcome: Outcome) -> None:
        """Record the outcome (set the status); called once, from the reader thread."""
        raise NotImplementedError

    def _on_end(self, outcome: Outcome) -> None:
        with self._lock:
            self._ended = time.time()
        try:
            self._finish(outcome)
        except Exception as exc:  # e.g. a result that cannot be read back: reported, and the slot still freed
            with self._lock:
                self._status, self._error = Status.FAILED, f"{type(exc).__name__}: {exc}"
        finally:
            self._slot.release()

    @property
    def owner(self) -> str:
        """The browser (or user) it runs for: the owner of its slot."""
        return self._slot.owner

    @property
    def pid(self) -> int | None:
        """Its process id while it has one (the local executor), else None."""
        pid = getattr(self._handle, "pid", None)
        return pid if isinstance(pid, int) else None

    @property
    def status(self) -> Status:
        with self._lock:
            return self._status

    @property
    def running(self) -> bool:
        return self.status == Status.RUNNING

    @property
    def ended(self) -> float | None:
        """When its process ended (wall clock), or None while it runs."""
        with self._lock:
            return self._ended

    @property
    def stop_requested(self) -> bool:
        with self._lock:
            return self._stop_requested

    def stop(self) -> None:
        """Ask the function to end (training stops within one batch)."""
        with self._lock:
            self._stop_requested = True
        if self._handle is not None:
            self._handle.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until it has ended and its outcome is recorded; True when it has."""
        if self._handle is None:
            return True
        try:
            self._handle.result(timeout)
        except TimeoutError:
            return False
        return True

    def kill(self) -> None:
        """End its process now (shutdown, after a stop request was not honoured in time)."""
        if self._handle is not None:
            self._handle.kill()


K = TypeVar("K", bound=Hashable)
W = TypeVar("W", bound=Work)


class Board(Generic[K, W]):
    """The current (or last) work under each key (a browser, or a browser and a kind); never another key's."""

    def __init__(self, max_age: float = 6 * 3600) -> None:
        self._max_age = max_age  # ended work older than this is forgotten (its browser is most likely gone)
        self._lock = threading.Lock()
        self._work: dict[K, W] = {}

    def get(self, key: K) -> W | None:
        with self._lock:
            return self._work.get(key)

    def put(self, key: K, work: W) -> None:
        """Make `work` the key's current work (replacing its last, ended one)."""
        now = time.time()
        with self._lock:
            self._work[key] = work
            for k, w in list(self._work.items()):
                ended = w.ended
                if ended is not None and now - ended > self._max_age:
                    del self._work[k]

    def forget(self, key: K) -> None:
        """Drop a key's work (a running one is stopped first)."""
        with self._lock:
            work = self._work.pop(key, None)
        if work is not None and work.running:
            work.stop()

    def values(self) -> list[W]:
        with self._lock:
            return list(self._work.values())

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop all the work, wait for it (killing any that does not end in time) and forget it all."""
        with self._lock:
            works = list(self._work.values())
            self._work.clear()
        for w in works:
            w.stop()
        for w in works:
            if not w.wait(timeout):
                w.kill()
                w.wait(5)
