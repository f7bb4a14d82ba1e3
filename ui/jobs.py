"""Training jobs: each in its own (niced) process, a server-wide registry keyed by browser. No Streamlit here.

Why processes, not threads: a training loop at small batch sizes is mostly Python and holds the GIL, and
two of them in the server's process starved its event loop (health checks went from 4 ms to 257 ms
median, and page switches froze). A job now runs in a child process forked from a forkserver that has
torch and the engine already imported (a start costs ~40 ms once it is warm), at a lower CPU priority
and with a share of the cores, and sends its progress events back over a pipe. A reader thread in the
server appends them to the job under a lock and the pages poll `snapshot()`.

A job whose browser has not polled it for `abandon_after` seconds stops itself (the browser was closed),
keeps its partial model only if the user asked for that, and frees its slot. One job per browser at a
time; at most `max_running` jobs run on the whole server.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mnistcore.config import PRESETS, TrainConfig
from mnistcore.data import MnistData
from mnistcore.runs import RunError, RunInfo, RunStore, save_result
from mnistcore.train import BatchEvent, EpochEvent, TrainResult, train

MAX_RUNNING = 2
DEFAULT_SECONDS_GUESS = 5.0  # the seed recipe took ~4 s on 2 CPU cores (torch 2.14), faster on a GPU
ABANDON_AFTER = 180.0  # seconds without a poll from the job's browser before the job stops itself
JOB_NICENESS = 10  # jobs yield the CPU to the server (pages, drawing) when both want it


class JobStatus(StrEnum):
    """Where a job is in its life."""

    RUNNING = "running"
    FINISHED = "finished"  # trained to the end and saved
    STOPPED = "stopped"  # stopped by its user; the partial model awaits keep or discard
    KEEPING = "keeping"  # the partial model is being saved
    KEPT = "kept"
    DISCARDED = "discarded"
    FAILED = "failed"


RUNNING, FINISHED, STOPPED, KEEPING, KEPT, DISCARDED, FAILED = (
    JobStatus.RUNNING,
    JobStatus.FINISHED,
    JobStatus.STOPPED,
    JobStatus.KEEPING,
    JobStatus.KEPT,
    JobStatus.DISCARDED,
    JobStatus.FAILED,
)


def job_threads(max_running: int = MAX_RUNNING) -> int:
    """Intra-op threads per job: the cores this process may use, shared by the jobs that may run at once."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max_running)


_CONTEXT: Any = None
_CONTEXT_LOCK = threading.Lock()


def _context() -> Any:
    """The multiprocessing context for jobs: a forkserver with torch and the engine preloaded."""
    global _CONTEXT
    with _CONTEXT_LOCK:
        if _CONTEXT is None:
            # torch.multiprocessing: tensors (the dataset) travel through shared memory, not copied.
            import torch.multiprocessing as tmp

            ctx = tmp.get_context("forkserver")
            ctx.set_forkserver_preload(["torch", "mnistcore.train", "ui.jobs"])
            _CONTEXT = ctx
        return _CONTEXT


_SPAWN_LOCK = threading.Lock()


@contextlib.contextmanager
def _main_not_reimported() -> Any:
    """While a job process is started: tell multiprocessing not to re-import this process's __main__ in it.

    multiprocessing sends the parent's main module along so that the child can re-import it. In a Streamlit
    server, __main__ is the page script (app.py) while a page runs: every job process then ran the whole
    app in "bare mode" before training (loading MNIST, warnings, and, under load, 20+ s of delay). Our
    job functions live in importable modules, so the child needs only sys.path.
    """
    from multiprocessing import spawn

    original = spawn.get_preparation_data

    def without_main(name: str) -> dict[str, Any]:
        data = original(name)
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
        return data

    with _SPAWN_LOCK:
        spawn.get_preparation_data = without_main
        try:
            yield
        finally:
            spawn.get_preparation_data = original


def start_process(process: Any) -> None:
    """Start a job's (or task's) process without re-importing the server's __main__ in it."""
    with _main_not_reimported():
        process.start()


def warm_up() -> None:
    """Start the forkserver now (a few seconds: it imports torch), so the first job starts at once."""
    from multiprocessing import forkserver

    _context()
    with _main_not_reimported():
        forkserver.ensure_running()


def _worker(
    config: TrainConfig,
    data: MnistData,
    conn: Any,
    stop: Any,
    threads: int,
    niceness: int,
    train_kwargs: dict[str, Any],
) -> None:
    """The job process: train, send every event and then the result (or the error) to the server."""
    import torch

    with contextlib.suppress(OSError):
        os.nice(niceness)
    torch.set_num_threads(threads)
    try:
        result = train(config, data, on_event=lambda ev: conn.send(("event", ev)), stop=stop, **train_kwargs)
        conn.send(("result", _to_wire(result)))
    except BaseException as exc:  # reported to the page; the process ends either way
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def _to_wire(result: TrainResult) -> TrainResult:
    """The result with every tensor as a numpy array: a tensor would be sent as a shared-memory handle that
    the server fetches from this process, which is gone by then."""
    import dataclasses

    import torch

    def plain(value: Any) -> Any:
        if isinstance(value, torch.nn.Module):
            return {k: v.detach().cpu().numpy() for k, v in value.state_dict().items()}
        if isinstance(value, torch.Tensor):
            return value.detach().cpu().numpy()
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return dataclasses.replace(result, **{f.name: plain(getattr(result, f.name)) for f in dataclasses.fields(result)})


def _from_wire(result: TrainResult) -> TrainResult:
    """Undo _to_wire: tensors back, the model rebuilt (eval mode, CPU)."""
    import dataclasses

    import numpy as np
    import torch

    from mnistcore.model import ShallowNet

    def tensors(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            return torch.from_numpy(value)
        if isinstance(value, dict):
            return {k: tensors(v) for k, v in value.items()}
        return value

    model = ShallowNet(result.config.hidden, result.config.dropout)
    model.load_state_dict(tensors(result.model))
    changes = {f.name: tensors(getattr(result, f.name)) for f in dataclasses.fields(result) if f.name != "model"}
    return dataclasses.replace(result, model=model.eval(), **changes)


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
    status: JobStatus
    config: TrainConfig
    events: tuple[BatchEvent | EpochEvent, ...]
    last_batch: BatchEvent | None
    epochs_done: int
    error: str | None
    run_info: RunInfo | None
    test_accuracy: float | None  # of the final (or stopped) model, once training ended
    seconds: float  # elapsed so far, or the training time once ended
    wall_started: float = field(default=0.0)
    abandoned: bool = False  # stopped by itself because its browser went away
    keep_if_abandoned: bool = False
    warning: str | None = None  # something the user must know about the saved run (where it went)

    @property
    def running(self) -> bool:
        return self.status == RUNNING

    @property
    def fraction(self) -> float:
        """Share of all batches done, 0..1."""
        if self.status in (FINISHED, KEPT) and not self.run_info_stopped:
            return 1.0
        b = self.last_batch
        return min(1.0, b.step / b.total_steps) if b else 0.0

    @property
    def run_info_stopped(self) -> bool:
        return self.run_info is not None and self.run_info.stopped

    @property
    def progress_text(self) -> str:
        """'Epoch 2/5 · batch 200/469 · 3 s left' (or what happened, once it ended)."""
        b = self.last_batch
        if self.status == RUNNING:
            if b is None:
                return f"Starting… (0/{self.config.epochs} epochs)"
            return f"Epoch {b.epoch}/{b.epochs} · batch {b.batch}/{b.batches} · {_seconds(b.eta)} left"
        acc = f", test accuracy {self.test_accuracy:.2%}" if self.test_accuracy is not None else ""
        why = "Stopped by itself (its page was closed)" if self.abandoned else "Stopped"
        return {
            FINISHED: f"Finished {self.epochs_done} epochs in {_seconds(self.seconds)}{acc}",
            KEEPING: "Saving the partial model…",
            KEPT: f"{why} after {self.epochs_done} full epochs; partial model kept{acc}",
            STOPPED: f"Stopped after {self.epochs_done} full epochs{acc}",
            DISCARDED: f"{why}; the partial model was discarded",
            FAILED: f"Failed: {self.error}",
        }.get(self.status, str(self.status))


def _seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"


class TrainingJob:
    """One training run in a child process: events under a lock, a stop request, a final status.

    `clock` (monotonic seconds) is injectable so that the abandonment rule is tested without sleeping.
    """

    def __init__(
        self,
        session_id: str,
        config: TrainConfig,
        data: MnistData,
        store: RunStore,
        on_finish: Callable[[TrainingJob, TrainResult], None] | None = None,
        *,
        keep_if_abandoned: bool = False,
        abandon_after: float = ABANDON_AFTER,
        clock: Callable[[], float] = time.monotonic,
        threads: int | None = None,
        extra: dict[str, Any] | None = None,
        train_kwargs: dict[str, Any] | None = None,
        name: str | None = None,
        parent: str | None = None,
    ) -> None:
        self._on_finish = on_finish
        self.job_id = uuid.uuid4().hex[:10]
        self.session_id = session_id
        self.config = config
        self.keep_if_abandoned = keep_if_abandoned
        self.abandon_after = abandon_after
        self._clock = clock
        self._threads = threads or job_threads()
        self._extra = dict(extra or {})
        self._name, self._parent = name, parent  # the saved run's name and the run it continues
        self._warning: str | None = None  # e.g. saved in a temp dir because the runs dir failed
        self._train_kwargs = dict(train_kwargs or {})
        self._data = data
        self._store = store
        self._lock = threading.Lock()
        self._events: list[BatchEvent | EpochEvent] = []
        self._status = RUNNING
        self._error: str | None = None
        self._result: TrainResult | None = None
        self._run_info: RunInfo | None = None
        self._abandoned = False
        self._last_seen = clock()
        self._started = time.time()
        self._ended: float | None = None
        self._process: Any = None
        self._stop: Any = threading.Event()  # replaced by a process-shared event at start()
        self._reader = threading.Thread(target=self._read, name=f"mnist-job-{self.job_id}", daemon=True)

    # -- server side of the pipe ----------------------------------------------------------------
    def start(self) -> TrainingJob:
        """Start the job: its thread starts the training process (not the page's rerun: while the forkserver
        is still importing torch that takes seconds) and then reads its events."""
        self._stop = _context().Event()
        self._reader.start()
        return self

    def _launch(self) -> None:
        ctx = _context()
        self._conn, child_conn = ctx.Pipe(duplex=False)
        self._process = ctx.Process(
            target=_worker,
            name=f"mnist-train-{self.job_id}",
            daemon=True,
            args=(self.config, self._data, child_conn, self._stop, self._threads, JOB_NICENESS, self._train_kwargs),
        )
        start_process(self._process)
        child_conn.close()  # only the child writes; our copy closed, EOF arrives when the child ends

    def _read(self) -> None:
        result: TrainResult | None = None
        error: str | None = None
        try:
            self._launch()
        except Exception as exc:
            self._finish(None, f"the training process could not start: {type(exc).__name__}: {exc}")
            return
        try:
            while True:
                try:
                    kind, payload = self._conn.recv()
                except (EOFError, OSError):
                    break
                if kind == "event":
                    with self._lock:
                        self._events.append(payload)
                    self._check_abandoned()
                elif kind == "result":
                    result = _from_wire(payload)
                elif kind == "error":
                    error = payload
        finally:
            self._conn.close()
            self._process.join(10)
        if result is None and error is None:
            error = f"the training process ended unexpectedly (exit code {self._process.exitcode})"
        self._finish(result, error)

    def _check_abandoned(self) -> None:
        """Stop the job when its browser has not polled it for `abandon_after` seconds."""
        with self._lock:
            gone = self._clock() - self._last_seen > self.abandon_after
            if gone and not self._abandoned:
                self._abandoned = True
        if gone:
            self._stop.set()

    def _finish(self, result: TrainResult | None, error: str | None) -> None:
        info: RunInfo | None = None
        if result is not None and (not result.stopped or (self._abandoned and self.keep_if_abandoned)):
            try:
                info = self._save(result, stopped=result.stopped)
            except RunError as exc:
                error = f"trained to {result.test_accuracy:.2%} but not saved: {exc}"
        with self._lock:
            self._ended = time.time()
            if error is not None:
                self._status, self._error, self._result = FAILED, error, result
            elif not result.stopped:
                self._status, self._result, self._run_info = FINISHED, result, info
            elif self._abandoned:
                self._status, self._run_info = (KEPT, info) if info is not None else (DISCARDED, None)
                self._result = result if info is not None else None
            else:
                self._status, self._result = STOPPED, result
        if self._on_finish is not None and result is not None and error is None and not result.stopped:
            self._on_finish(self, result)

    def _save(self, result: TrainResult, stopped: bool) -> RunInfo:
        """Save the run (with what a later "continue" needs); if the runs dir fails, in a temp dir, and say so."""
        extra = {"steps_done": result.steps_done, **self._extra}
        if self._abandoned:
            extra["abandoned"] = True
        info, why = save_result(
            self._store,
            result,
            dataset=self._data.checksums,
            source="dashboard",
            name=self._name,
            parent=self._parent,
            stopped=stopped,
            extra=extra,
        )
        if why is not None:
            with self._lock:
                self._warning = f"{why}; it was saved in {info.path} instead: copy that folder into the runs folder"
        return info

    # -- page side ------------------------------------------------------------------------------
    @property
    def status(self) -> JobStatus:
        with self._lock:
            return self._status

    @property
    def running(self) -> bool:
        return self.status == RUNNING

    def touch(self) -> None:
        """The job's browser is still there (called on every page run and progress poll)."""
        with self._lock:
            self._last_seen = self._clock()

    def stop(self) -> None:
        """Ask the process to end; training stops within one batch."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has ended and its outcome is recorded; True when it has."""
        if self._reader.is_alive() or self._reader.ident is not None:
            self._reader.join(timeout)
        return not self._reader.is_alive()

    def kill(self) -> None:
        """End the process now (shutdown, after a stop request was not honoured in time)."""
        self._stop.set()
        if self._process is not None and self._process.is_alive():
            self._process.kill()

    def keep(self) -> RunInfo:
        """Save the partial model of a stopped job (marked 'stopped early'); only once, even if clicked twice."""
        with self._lock:
            if self._status != STOPPED or self._result is None:
                raise JobError("only a stopped job's partial model can be kept (it may have been kept already)")
            self._status, result = KEEPING, self._result  # claims it: a second keep or a discard now fails
        try:
            info = self._save(result, stopped=True)
        except RunError as exc:
            with self._lock:
                self._status = STOPPED
            raise JobError(f"the partial model could not be saved: {exc}") from None
        with self._lock:
            self._run_info, self._status = info, KEPT
        return info

    def discard(self) -> None:
        """Drop a stopped job's partial model."""
        with self._lock:
            if self._status != STOPPED:
                raise JobError("only a stopped job's partial model can be discarded (it may have been kept)")
            self._result, self._status = None, DISCARDED

    def snapshot(self) -> JobSnapshot:
        """A consistent copy of the job's state; also counts as a sign that its browser is there."""
        with self._lock:
            self._last_seen = self._clock()
            events = tuple(self._events)
            status, result = self._status, self._result
            acc = None
            if result is not None:
                acc = result.test_accuracy
            elif self._run_info is not None:
                acc = self._run_info.test_accuracy
            seconds = result.train_seconds if result is not None else ((self._ended or time.time()) - self._started)
            return JobSnapshot(
                job_id=self.job_id,
                status=status,
                config=self.config,
                events=events,
                last_batch=next((e for e in reversed(events) if isinstance(e, BatchEvent)), None),
                epochs_done=sum(isinstance(e, EpochEvent) for e in events),
                error=self._error,
                run_info=self._run_info,
                test_accuracy=acc,
                seconds=seconds,
                wall_started=self._started,
                abandoned=self._abandoned,
                keep_if_abandoned=self.keep_if_abandoned,
                warning=self._warning,
            )


class JobRegistry:
    """Jobs keyed by browser (one current job each), with a server-wide cap on running jobs."""

    def __init__(self, max_running: int = MAX_RUNNING) -> None:
        self.max_running = max_running
        self._lock = threading.Lock()
        self._jobs: dict[str, TrainingJob] = {}
        self._default_seconds: list[float] = []

    def get(self, session_id: str) -> TrainingJob | None:
        """This browser's current (or last) job; never another browser's."""
        with self._lock:
            return self._jobs.get(session_id)

    def running_count(self) -> int:
        with self._lock:
            return sum(job.running for job in self._jobs.values())

    def start(
        self, session_id: str, config: TrainConfig, data: MnistData, store: RunStore, **job_options: Any
    ) -> TrainingJob:
        """Start a job for this browser, or raise JobBusyError / JobLimitError with a message for the user.

        job_options go to TrainingJob (keep_if_abandoned, extra, train_kwargs, name, parent, clock, abandon_after).
        """
        try:
            store.check_writable(config)  # a full or unwritable runs dir is said now, not after training
        except RunError as exc:
            raise JobError(f"Training cannot start: {exc}.") from None
        with self._lock:
            mine = self._jobs.get(session_id)
            if mine is not None and mine.running:
                raise JobBusyError("You already have a training job running. Stop it or wait for it to finish.")
            running = sum(job.running for job in self._jobs.values())
            if running >= self.max_running:
                raise JobLimitError(
                    f"The server is already running {running} training jobs, its limit. "
                    f"Try again in a moment, when one of them has finished."
                )
            job = TrainingJob(
                session_id,
                config,
                data,
                store,
                on_finish=self._finished,
                threads=job_threads(self.max_running),
                **job_options,
            )
            self._jobs[session_id] = job
            self._prune()
        return job.start()

    def forget(self, session_id: str) -> None:
        """Drop a browser's job (a running one is stopped first)."""
        with self._lock:
            job = self._jobs.pop(session_id, None)
        if job is not None and job.running:
            job.stop()

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop every job, wait for them (killing any that does not end in time) and forget them all."""
        with self._lock:
            jobs = list(self._jobs.values())
            self._jobs.clear()
        for job in jobs:
            job.stop()
        for job in jobs:
            if not job.wait(timeout):
                job.kill()
                job.wait(5)

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
# A server that stops (Ctrl-C, SIGTERM) stops its jobs first instead of leaving them to the interpreter's exit.
atexit.register(REGISTRY.shutdown, 10.0)
