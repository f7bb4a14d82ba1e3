"""Background tasks for My drawings and Label issues (fine-tune, find label issues, train without them).

Like training jobs (ui/jobs.py), each task runs in its own niced child process forked from the jobs'
forkserver, so that its training loops never compete with the server for the GIL: the task's function
(module-level, so it can be sent to the child) is called as fn(task, stop, *args) in the child, where
`task` reports progress back over a pipe, and its return value (plain data: no tensors) comes back the
same way. A server-wide registry keys tasks by (browser, kind); tasks count against the same cap as
training jobs, since both keep the CPU busy. No Streamlit here.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from mnistcore.train import BatchEvent
from ui.jobs import JOB_NICENESS, JobBusyError, JobLimitError, _context, job_threads, start_process
from ui.jobs import REGISTRY as TRAINING_JOBS

RUNNING, FINISHED, STOPPED, FAILED = "running", "finished", "stopped", "failed"


class Reporter:
    """What a task's function gets as `task`: progress(fraction, message), on_train_event(event), span."""

    def __init__(self, send: Callable[[tuple], None]) -> None:
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
        self._send(("progress", self._fraction, self._message))

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


def _task_worker(fn: Callable[..., Any], args: tuple, conn: Any, stop: Any, threads: int, niceness: int) -> None:
    """The task process: run fn(task, stop, *args) and send its progress, then its result or error."""
    import torch

    with contextlib.suppress(OSError):
        os.nice(niceness)
    torch.set_num_threads(threads)
    try:
        result = fn(Reporter(conn.send), stop, *args)
        conn.send(("result", result))
    except BaseException as exc:  # reported to the page; the process ends either way
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


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
    """Runs fn(task, stop, *args) in a child process; the page polls snapshot()."""

    def __init__(self, kind: str, fn: Callable[..., Any], args: tuple = (), threads: int | None = None) -> None:
        self.task_id = uuid.uuid4().hex[:10]
        self.kind = kind
        self._fn, self._args = fn, tuple(args)
        self._threads = threads or job_threads()
        self._lock = threading.Lock()
        self._stop: Any = threading.Event()  # replaced by a process-shared event at start()
        self._status, self._fraction, self._message = RUNNING, 0.0, "Starting…"
        self._result: Any = None
        self._error: str | None = None
        self._started, self._ended = time.time(), None
        self._process: Any = None
        self._reader = threading.Thread(target=self._read, name=f"mnist-task-{kind}-{self.task_id}", daemon=True)

    def start(self) -> Task:
        """Start the task: its thread starts the process (see TrainingJob.start) and reads its messages."""
        self._stop = _context().Event()
        self._reader.start()
        return self

    def _launch(self) -> None:
        ctx = _context()
        self._conn, child = ctx.Pipe(duplex=False)
        self._process = ctx.Process(
            target=_task_worker,
            name=f"mnist-task-{self.kind}-{self.task_id}",
            daemon=True,
            args=(self._fn, self._args, child, self._stop, self._threads, JOB_NICENESS),
        )
        start_process(self._process)
        child.close()

    def _read(self) -> None:
        result, error, got_result = None, None, False
        try:
            self._launch()
        except Exception as exc:
            with self._lock:
                self._status, self._error, self._ended = FAILED, f"could not start: {exc}", time.time()
            return
        try:
            while True:
                try:
                    message = self._conn.recv()
                except (EOFError, OSError):
                    break
                if message[0] == "progress":
                    with self._lock:
                        self._fraction, self._message = max(self._fraction, message[1]), message[2]
                elif message[0] == "result":
                    result, got_result = message[1], True
                elif message[0] == "error":
                    error = message[1]
        finally:
            self._conn.close()
            self._process.join(10)
        if not got_result and error is None:
            error = f"the task's process ended unexpectedly (exit code {self._process.exitcode})"
        with self._lock:
            self._ended = time.time()
            if error is not None:
                self._status, self._error = FAILED, error
                return
            self._result = result
            self._status = STOPPED if self._stop.is_set() or result is None else FINISHED
            if self._status == FINISHED:
                self._fraction = 1.0

    def stop(self) -> None:
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the task has ended and its outcome is recorded; True when it has."""
        if self._reader.ident is not None:
            self._reader.join(timeout)
        return not self._reader.is_alive()

    def kill(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.kill()

    @property
    def running(self) -> bool:
        with self._lock:
            return self._status == RUNNING

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

    def start(self, session_id: str, kind: str, fn: Callable[..., Any], *args: Any) -> Task:
        """Start fn(task, stop, *args) in a child process, or raise JobBusyError / JobLimitError for the user.

        fn must be a module-level function and args picklable (tensors travel through shared memory).
        """
        limit = self._max if self._max is not None else TRAINING_JOBS.max_running
        with self._lock:
            mine = self._tasks.get((session_id, kind))
            if mine is not None and mine.running:
                raise JobBusyError("That is already running for you. Stop it or wait for it to finish.")
            busy = sum(t.running for t in self._tasks.values()) + TRAINING_JOBS.running_count()
            if busy >= limit:
                raise JobLimitError(
                    f"The server is already running {busy} training jobs, its limit. "
                    "Try again in a moment, when one of them has finished."
                )
            task = Task(kind, fn, args, threads=job_threads(limit))
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
            if not t.wait(timeout):
                t.kill()
                t.wait(5)


TASKS = TaskRegistry()
atexit.register(TASKS.shutdown, 10.0)
