"""Background tasks for My drawings and Label issues (fine-tune, find label issues, train without them).

Like ui/jobs.py: a thread per task that never touches Streamlit, progress kept under a lock for the page
to poll, a stop Event, and a server-wide registry keyed by (browser, kind). Tasks count against the same
server-wide cap as training jobs, since both keep the CPU busy. No Streamlit here.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mnistcore.train import BatchEvent
from ui.jobs import REGISTRY as TRAINING_JOBS
from ui.jobs import JobBusyError, JobLimitError

RUNNING, FINISHED, STOPPED, FAILED = "running", "finished", "stopped", "failed"


@dataclass(frozen=True)
class TaskSnapshot:
    """A consistent copy of a task's state for one render."""

    task_id: str
    kind: str
    status: str
    fraction: float
    message: str
    result: Any
    error: str | None
    seconds: float

    @property
    def running(self) -> bool:
        return self.status == RUNNING


class Task:
    """Runs work(progress, stop) in a thread; work reports with progress(fraction, message) or train events."""

    def __init__(self, kind: str, work: Callable[[Task, threading.Event], Any]) -> None:
        self.task_id = uuid.uuid4().hex[:10]
        self.kind = kind
        self._work = work
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._status, self._fraction, self._message = RUNNING, 0.0, "Starting…"
        self._result: Any = None
        self._error: str | None = None
        self._started, self._ended = time.time(), None
        self._thread = threading.Thread(target=self._run, name=f"mnist-task-{kind}-{self.task_id}", daemon=True)
        # A task made of several trainings tells progress() which part of the bar the current one fills.
        self.span = (0.0, 1.0)

    def start(self) -> Task:
        self._thread.start()
        return self

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress from the worker thread (fraction 0..1 of the current span)."""
        lo, hi = self.span
        with self._lock:
            self._fraction = min(1.0, max(self._fraction, lo + (hi - lo) * fraction))
            if message is not None:
                self._message = message

    def on_train_event(self, event: Any) -> None:
        """A train() on_event callback: batch progress within the current span."""
        if isinstance(event, BatchEvent):
            self.progress(event.step / event.total_steps,
                          f"Epoch {event.epoch}/{event.epochs} · batch {event.batch}/{event.batches}")

    def _run(self) -> None:
        try:
            result = self._work(self, self._stop)
        except Exception as exc:
            with self._lock:
                self._status, self._error, self._ended = FAILED, f"{type(exc).__name__}: {exc}", time.time()
            return
        with self._lock:
            self._result, self._ended = result, time.time()
            self._status = STOPPED if self._stop.is_set() or result is None else FINISHED
            if self._status == FINISHED:
                self._fraction = 1.0

    def stop(self) -> None:
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        with self._lock:
            return self._status == RUNNING

    def snapshot(self) -> TaskSnapshot:
        with self._lock:
            return TaskSnapshot(task_id=self.task_id, kind=self.kind, status=self._status, fraction=self._fraction,
                                message=self._message, result=self._result, error=self._error,
                                seconds=(self._ended or time.time()) - self._started)


class TaskRegistry:
    """One current task per (browser, kind); running tasks and training jobs together stay under the cap."""

    def __init__(self, max_running: int | None = None) -> None:
        self._max = max_running
        self._lock = threading.Lock()
        self._tasks: dict[tuple[str, str], Task] = {}

    def get(self, session_id: str, kind: str) -> Task | None:
        with self._lock:
            return self._tasks.get((session_id, kind))

    def running_count(self) -> int:
        with self._lock:
            return sum(t.running for t in self._tasks.values())

    def start(self, session_id: str, kind: str, work: Callable[[Task, threading.Event], Any]) -> Task:
        """Start a task, or raise JobBusyError / JobLimitError with a message for the user."""
        limit = self._max if self._max is not None else TRAINING_JOBS.max_running
        with self._lock:
            mine = self._tasks.get((session_id, kind))
            if mine is not None and mine.running:
                raise JobBusyError("That is already running for you. Stop it or wait for it to finish.")
            busy = sum(t.running for t in self._tasks.values()) + TRAINING_JOBS.running_count()
            if busy >= limit:
                raise JobLimitError(f"The server is already running {busy} training jobs, its limit. "
                                    "Try again in a moment, when one of them has finished.")
            task = Task(kind, work)
            self._tasks[(session_id, kind)] = task
        return task.start()

    def forget(self, session_id: str, kind: str) -> None:
        """Drop a finished task (a running one is stopped first)."""
        with self._lock:
            task = self._tasks.pop((session_id, kind), None)
        if task is not None and task.running:
            task.stop()

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop every task and wait for the threads (tests, server shutdown)."""
        with self._lock:
            tasks = list(self._tasks.values())
            self._tasks.clear()
        for t in tasks:
            t.stop()
        for t in tasks:
            t.wait(timeout)


TASKS = TaskRegistry()
