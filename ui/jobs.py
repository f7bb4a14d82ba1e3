"""Training jobs: a background thread per job, a server-wide registry keyed by session. No Streamlit here.

The thread never touches Streamlit: it appends events to its job under a lock and the page polls
`snapshot()`. One job per session at a time; at most `max_running` jobs run on the whole server.
"""

from __future__ import annotations

import hashlib
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from mnistcore.config import PRESETS, TrainConfig
from mnistcore.data import MnistData
from mnistcore.runs import RunInfo, RunStore
from mnistcore.train import BatchEvent, EpochEvent, TrainResult, train

MAX_RUNNING = 2
RUNNING, FINISHED, STOPPED, KEPT, DISCARDED, FAILED = "running", "finished", "stopped", "kept", "discarded", "failed"
DEFAULT_SECONDS_GUESS = 5.0  # the seed recipe took ~4 s on 2 CPU cores (torch 2.14), faster on a GPU


def browser_key(xsrf_cookie: str | None) -> str | None:
    """A stable, non-secret id for a browser from its Streamlit XSRF cookie, or None when unusable.

    The cookie ("2|mask|masked-token|timestamp", Tornado's format) is re-masked on every page load; the
    unmasked token is the same for the whole browser session. It is a secret, so only a hash is kept.
    """
    try:
        version, mask_hex, masked_hex, timestamp = (xsrf_cookie or "").split("|")
        mask, masked = bytes.fromhex(mask_hex), bytes.fromhex(masked_hex)
    except ValueError:
        return None
    if version != "2" or len(mask) != 4 or not masked:
        return None
    token = bytes(b ^ mask[i % 4] for i, b in enumerate(masked))
    return hashlib.sha256(token + timestamp.encode()).hexdigest()[:32]


class JobError(RuntimeError):
    """A job could not be started or acted on; the message is meant for the user."""


class JobLimitError(JobError):
    """The server already runs its maximum number of training jobs."""


class JobBusyError(JobError):
    """This session already has a running job."""


@dataclass(frozen=True)
class JobSnapshot:
    """A consistent copy of a job's state for one render."""

    job_id: str
    status: str
    config: TrainConfig
    events: tuple[BatchEvent | EpochEvent, ...]
    last_batch: BatchEvent | None
    epochs_done: int
    error: str | None
    run_info: RunInfo | None
    test_accuracy: float | None  # of the final (or stopped) model, once training ended
    seconds: float  # elapsed so far, or the training time once ended
    wall_started: float = field(default=0.0)

    @property
    def running(self) -> bool:
        return self.status == RUNNING

    @property
    def fraction(self) -> float:
        """Share of all batches done, 0..1."""
        if self.status == FINISHED or self.status == KEPT:
            return 1.0
        b = self.last_batch
        return min(1.0, b.step / b.total_steps) if b else 0.0

    @property
    def progress_text(self) -> str:
        """'Epoch 2/5 · batch 200/469 · 3 s left' (or what happened, once it ended)."""
        b = self.last_batch
        if self.status == RUNNING:
            if b is None:
                return f"Starting… (0/{self.config.epochs} epochs)"
            return (f"Epoch {b.epoch}/{b.epochs} · batch {b.batch}/{b.batches} · "
                    f"{_seconds(b.eta)} left")
        acc = f", test accuracy {self.test_accuracy:.2%}" if self.test_accuracy is not None else ""
        return {
            FINISHED: f"Finished {self.epochs_done} epochs in {_seconds(self.seconds)}{acc}",
            KEPT: f"Stopped after {self.epochs_done} full epochs; partial model kept{acc}",
            STOPPED: f"Stopped after {self.epochs_done} full epochs{acc}",
            DISCARDED: "Stopped; the partial model was discarded",
            FAILED: f"Failed: {self.error}",
        }.get(self.status, self.status)


def _seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"


class TrainingJob:
    """One training run in a background thread: events under a lock, a stop Event, a final status."""

    def __init__(self, session_id: str, config: TrainConfig, data: MnistData, store: RunStore,
                 on_finish: Callable[[TrainingJob, TrainResult], None] | None = None) -> None:
        self._on_finish = on_finish
        self.job_id = uuid.uuid4().hex[:10]
        self.session_id = session_id
        self.config = config
        self._data = data
        self._store = store
        self._lock = threading.Lock()
        self._events: list[BatchEvent | EpochEvent] = []
        self._stop = threading.Event()
        self._status = RUNNING
        self._error: str | None = None
        self._result: TrainResult | None = None
        self._run_info: RunInfo | None = None
        self._started = time.time()
        self._ended: float | None = None
        self._thread = threading.Thread(target=self._run, name=f"mnist-train-{self.job_id}", daemon=True)

    # -- thread side -------------------------------------------------------------------------
    def start(self) -> TrainingJob:
        self._thread.start()
        return self

    def _on_event(self, event: BatchEvent | EpochEvent) -> None:
        with self._lock:
            self._events.append(event)

    def _run(self) -> None:
        try:
            result = train(self.config, self._data, on_event=self._on_event, stop=self._stop)
            info = None if result.stopped else self._save(result, stopped=False)
        except Exception as exc:
            with self._lock:
                self._status, self._error, self._ended = FAILED, f"{type(exc).__name__}: {exc}", time.time()
            return
        with self._lock:
            self._result, self._run_info, self._ended = result, info, time.time()
            self._status = STOPPED if result.stopped else FINISHED
        if self._on_finish is not None and not result.stopped:
            self._on_finish(self, result)

    def _save(self, result: TrainResult, stopped: bool) -> RunInfo:
        return self._store.save(
            result.model, self.config, test_accuracy=result.test_accuracy, train_seconds=result.train_seconds,
            history=result.history, dataset=self._data.checksums, stopped=stopped,
            extra={"source": "dashboard", "steps_done": result.steps_done},
        )

    # -- page side ---------------------------------------------------------------------------
    @property
    def status(self) -> str:
        with self._lock:
            return self._status

    @property
    def running(self) -> bool:
        return self.status == RUNNING

    def stop(self) -> None:
        """Ask the thread to end; training stops within one batch."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the thread ends (tests, shutdown); True when it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def keep(self) -> RunInfo:
        """Save the partial model of a stopped job (marked 'stopped early')."""
        with self._lock:
            if self._status != STOPPED or self._result is None:
                raise JobError("only a stopped job's partial model can be kept")
            result = self._result
        info = self._save(result, stopped=True)
        with self._lock:
            self._run_info, self._status = info, KEPT
        return info

    def discard(self) -> None:
        """Drop a stopped job's partial model."""
        with self._lock:
            if self._status != STOPPED:
                raise JobError("only a stopped job's partial model can be discarded")
            self._result, self._status = None, DISCARDED

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            events = tuple(self._events)
            status, result = self._status, self._result
            acc = None
            if result is not None:
                acc = result.test_accuracy
            elif self._run_info is not None:
                acc = self._run_info.test_accuracy
            seconds = result.train_seconds if result is not None else (
                (self._ended or time.time()) - self._started)
            return JobSnapshot(
                job_id=self.job_id, status=status, config=self.config, events=events,
                last_batch=next((e for e in reversed(events) if isinstance(e, BatchEvent)), None),
                epochs_done=sum(isinstance(e, EpochEvent) for e in events), error=self._error,
                run_info=self._run_info, test_accuracy=acc, seconds=seconds, wall_started=self._started,
            )


class JobRegistry:
    """Jobs keyed by session id (one current job per session), with a server-wide cap on running jobs."""

    def __init__(self, max_running: int = MAX_RUNNING) -> None:
        self.max_running = max_running
        self._lock = threading.Lock()
        self._jobs: dict[str, TrainingJob] = {}
        self._default_seconds: list[float] = []

    def get(self, session_id: str) -> TrainingJob | None:
        """This session's current (or last) job; never another session's."""
        with self._lock:
            return self._jobs.get(session_id)

    def running_count(self) -> int:
        with self._lock:
            return sum(job.running for job in self._jobs.values())

    def start(self, session_id: str, config: TrainConfig, data: MnistData, store: RunStore) -> TrainingJob:
        """Start a job for this session, or raise JobBusyError / JobLimitError with a message for the user."""
        with self._lock:
            mine = self._jobs.get(session_id)
            if mine is not None and mine.running:
                raise JobBusyError("You already have a training job running. Stop it or wait for it to finish.")
            running = sum(job.running for job in self._jobs.values())
            if running >= self.max_running:
                raise JobLimitError(
                    f"The server is already running {running} training jobs, its limit. "
                    f"Try again in a moment, when one of them has finished.")
            job = TrainingJob(session_id, config, data, store, on_finish=self._finished)
            self._jobs[session_id] = job
            self._prune()
        return job.start()

    def forget(self, session_id: str) -> None:
        """Drop a session's finished job (a running one is stopped first)."""
        with self._lock:
            job = self._jobs.pop(session_id, None)
        if job is not None and job.running:
            job.stop()

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop every job, wait for the threads and forget them all (tests, server shutdown)."""
        with self._lock:
            jobs = list(self._jobs.values())
            self._jobs.clear()
        for job in jobs:
            job.stop()
        for job in jobs:
            job.wait(timeout)

    def _finished(self, job: TrainingJob, result: TrainResult) -> None:
        """Remember how long the default recipe took here, for the 'Train the default model (~N s)' label."""
        if is_default_recipe(job.config):
            with self._lock:
                self._default_seconds = [*self._default_seconds[-9:], float(result.train_seconds)]

    def default_seconds(self, saved: list[float] | None = None) -> int:
        """Estimated seconds for the default recipe: measured on this server when known, else a guess."""
        with self._lock:
            measured = list(self._default_seconds)
        samples = measured or list(saved or [])
        est = statistics.median(samples) if samples else DEFAULT_SECONDS_GUESS
        return max(1, round(est))

    def _prune(self, max_age: float = 6 * 3600) -> None:
        """Forget jobs that ended long ago (their sessions are most likely gone). Caller holds the lock."""
        now = time.time()
        for sid, job in list(self._jobs.items()):
            ended = job._ended
            if not job.running and ended is not None and now - ended > max_age:
                del self._jobs[sid]


def is_default_recipe(config: TrainConfig) -> bool:
    """True when a config is the default preset (the device and the progress-report interval aside)."""
    base = PRESETS["default"]
    return config.with_(device=base.device, report_every=base.report_every) == base


REGISTRY = JobRegistry()
