"""Background tasks for My drawings and Label issues (fine-tune, find label issues, train without them).

A task is a Work (ui/background/) like a training job: its own niced child process, a slot under the same
server-wide cap as training jobs and sweep steps, since all of them keep the CPU busy. The task's function
(module-level, so it can be sent to the child) is called as fn(task, stop, *args) in the child, where
`task` reports progress back, and its return value (plain data: no tensors) comes back as the outcome.
A server-wide registry keys tasks by (browser, kind): one task of each kind per browser. No Streamlit here.
"""

from __future__ import annotations

import atexit
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from mnistcore.train import BatchEvent
from ui.background import LOCAL, SLOTS, Board, Executor, Outcome, Slot, SlotRegistry, Status, Work

BUSY = "That is already running for you. Stop it or wait for it to finish."


class Reporter:
    """What a task's function gets as `task`: progress(fraction, message), on_train_event(event), span."""

    def __init__(self, send: Callable[[Any], None]) -> None:
        self._send = send
        # A task made of several trainings tells progress() which part of the bar the current one fills.
        self.span = (0.0, 1.0)
        self._fraction, self._message = 0.0, "Starting…"

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress (fraction 0..1 of the current span); it never goes backwards."""
        lo, hi = self.span
        self._fraction = min(1.0, max(self._fraction, lo + (hi - lo) * fraction))
        if message is not None:
            self._message = message
        self._send((self._fraction, self._message))

    def on_train_event(self, event: Any) -> None:
        """A train() on_event callback: batch progress within the current span."""
        if isinstance(event, BatchEvent):
            self.progress(
                event.step / event.total_steps,
                f"Epoch {event.epoch}/{event.epochs} · batch {event.batch}/{event.batches}",
            )

    def snapshot(self) -> SimpleNamespace:
        """The progress reported so far (as the server will see it)."""
        return SimpleNamespace(fraction=self._fraction, message=self._message)


def _run_task(emit: Callable[[Any], None], stop: Any, fn: Callable[..., Any], *args: Any) -> Any:
    """The task's function in its child process: fn(task, stop, *args) with a Reporter as `task`."""
    return fn(Reporter(emit), stop, *args)


@dataclass(frozen=True)
class TaskSnapshot:
    """A consistent copy of a task's state for one render."""

    task_id: str
    kind: str
    status: Status
    fraction: float
    message: str
    result: Any
    error: str | None
    seconds: float

    @property
    def running(self) -> bool:
        return self.status == Status.RUNNING


class Task(Work):
    """Runs fn(task, stop, *args) in a child process; the page polls snapshot()."""

    def __init__(
        self, slot: Slot, kind: str, fn: Callable[..., Any], args: tuple = (), executor: Executor = LOCAL
    ) -> None:
        super().__init__(slot, executor)
        self.kind = kind
        self._fn, self._args = fn, tuple(args)
        self._fraction, self._message = 0.0, "Starting…"
        self._result: Any = None

    @property
    def task_id(self) -> str:
        return self.work_id

    def start(self) -> Task:
        return self._start(_run_task, (self._fn, *self._args), f"mnist-task-{self.kind}")

    def _on_message(self, message: tuple[float, str]) -> None:
        fraction, text = message
        with self._lock:
            self._fraction, self._message = max(self._fraction, fraction), text

    def _finish(self, outcome: Outcome) -> None:
        with self._lock:
            if not outcome.ok:
                self._status, self._error = Status.FAILED, outcome.error
                return
            self._result = outcome.value
            # A task that was asked to stop returns None (or what it had): either way, nothing to show.
            self._status = Status.STOPPED if self._stop_requested or outcome.value is None else Status.FINISHED
            if self._status == Status.FINISHED:
                self._fraction = 1.0

    def snapshot(self) -> TaskSnapshot:
        with self._lock:
            return TaskSnapshot(
                task_id=self.task_id,
                kind=self.kind,
                status=self._status,
                fraction=self._fraction,
                message=self._message,
                result=self._result,
                error=self._error,
                seconds=(self._ended or time.time()) - self._started,
            )


class TaskRegistry:
    """One current task per (browser, kind); each running one holds a slot of `slots` (the server-wide cap)."""

    def __init__(self, slots: SlotRegistry = SLOTS, executor: Executor = LOCAL) -> None:
        self.slots, self._executor = slots, executor
        self._board: Board[tuple[str, str], Task] = Board()

    def get(self, session_id: str, kind: str) -> Task | None:
        return self._board.get((session_id, kind))

    def start(self, session_id: str, kind: str, fn: Callable[..., Any], *args: Any) -> Task:
        """Start fn(task, stop, *args) in a child process, or raise JobBusyError / JobLimitError for the user.

        fn must be a module-level function and args picklable (tensors travel through shared memory).
        """
        slot = self.slots.acquire(f"task:{kind}", session_id, busy=BUSY)
        task = Task(slot, kind, fn, args, self._executor)
        self._board.put((session_id, kind), task)
        return task.start()

    def tasks(self) -> list[Task]:
        """Every browser's current (or last) task of each kind, for the health page."""
        return self._board.values()

    def forget(self, session_id: str, kind: str) -> None:
        """Drop a finished task (a running one is stopped first)."""
        self._board.forget((session_id, kind))

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop every task and wait for them (tests, server shutdown)."""
        self._board.shutdown(timeout)


TASKS = TaskRegistry()
atexit.register(TASKS.shutdown, 10.0)
