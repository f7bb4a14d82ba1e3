"""Training jobs: each a Work (ui/background/) under the server-wide cap, keyed by browser. No Streamlit here.

A job trains in a child process (ui/background/process.py says why) and sends its progress events back;
they are appended to the job under a lock and the pages poll `snapshot()`. A job whose browser has not
polled it for `abandon_after` seconds stops itself (the browser was closed), keeps its partial model only
if the user asked for that, and frees its slot. One job per browser at a time; jobs, tasks and sweep steps
together hold at most `SLOTS.max_running` slots on the whole server (ui/background/slots.py).
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mnistcore.config import PRESETS, TrainConfig
from mnistcore.data import MnistData
from mnistcore.runs import RunError, RunInfo, RunStore, save_result
from mnistcore.train import BatchEvent, EpochEvent, TrainResult, train
from ui.background import (
    LOCAL,
    SLOTS,
    Board,
    Executor,
    JobError,
    Outcome,
    Slot,
    SlotRegistry,
    Status,
    Work,
)

TRAIN = "train"  # the slot kind of training jobs (sweep steps and continued runs are training jobs too)
# The preset Home's one-click button trains for a new user: the one made for drawn digits. The CLI's default
# stays the seed recipe ("default"), so seed comparisons keep their meaning.
ONE_CLICK_PRESET = "draw"
DEFAULT_SECONDS_GUESS = 15.0  # the draw preset: ~15-22 s estimated on the 2-core AVX2 reference, less on faster CPUs
ABANDON_AFTER = 180.0  # seconds without a poll from the job's browser before the job stops itself
BUSY = "You already have a training job running. Stop it or wait for it to finish."
# Seconds between live pictures of the watched hidden units (BatchEvent.units): the Train page polls every
# 0.5 s, so each poll finds a fresh one; progress events come far more often (tens a second at batch 16).
UNITS_EVERY = 0.25


def _train_in_child(
    emit: Callable[[Any], None], stop: Any, config: TrainConfig, data: MnistData, train_kwargs: dict[str, Any]
) -> TrainResult:
    """The job's function in its child process: train, every event sent as a message (live unit pictures on)."""
    kwargs = {"units_every": UNITS_EVERY, **train_kwargs}
    return _to_wire(train(config, data, on_event=emit, stop=stop, **kwargs))


def _to_wire(result: TrainResult) -> TrainResult:
    """The result with every tensor as a numpy array: a tensor would be sent as a shared-memory handle that
    the server fetches from this process, which is gone by then."""
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


@dataclass(frozen=True)
class JobSnapshot:
    """A consistent copy of a job's state for one render."""

    job_id: str
    status: Status
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
    units: BatchEvent | None = None  # the latest progress event that carried the watched units' weights

    @property
    def running(self) -> bool:
        return self.status == Status.RUNNING

    @property
    def fraction(self) -> float:
        """Share of all batches done, 0..1."""
        if self.status in (Status.FINISHED, Status.KEPT) and not self.run_info_stopped:
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
        if self.status == Status.RUNNING:
            if b is None:
                return f"Starting… (0/{self.config.epochs} epochs)"
            return f"Epoch {b.epoch}/{b.epochs} · batch {b.batch}/{b.batches} · {_seconds(b.eta)} left"
        acc = f", test accuracy {self.test_accuracy:.2%}" if self.test_accuracy is not None else ""
        why = "Stopped by itself (its page was closed)" if self.abandoned else "Stopped"
        return {
            Status.FINISHED: f"Finished {self.epochs_done} epochs in {_seconds(self.seconds)}{acc}",
            Status.KEEPING: "Saving the partial model…",
            Status.KEPT: f"{why} after {self.epochs_done} full epochs; partial model kept{acc}",
            Status.STOPPED: f"Stopped after {self.epochs_done} full epochs{acc}",
            Status.DISCARDED: f"{why}; the partial model was discarded",
            Status.FAILED: f"Failed: {self.error}",
        }.get(self.status, str(self.status))


def _seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"


class TrainingJob(Work):
    """One training run in a child process: its events, a stop request, a final status, keep or discard.

    `clock` (monotonic seconds) is injectable so that the abandonment rule is tested without sleeping.
    """

    def __init__(
        self,
        slot: Slot,
        session_id: str,
        config: TrainConfig,
        data: MnistData,
        store: RunStore,
        on_finish: Callable[[TrainingJob, TrainResult], None] | None = None,
        *,
        keep_if_abandoned: bool = False,
        abandon_after: float = ABANDON_AFTER,
        clock: Callable[[], float] = time.monotonic,
        extra: dict[str, Any] | None = None,
        train_kwargs: dict[str, Any] | None = None,
        name: str | None = None,
        parent: str | None = None,
        executor: Executor = LOCAL,
    ) -> None:
        super().__init__(slot, executor)
        self._on_finish = on_finish
        self.session_id = session_id
        self.config = config
        self.keep_if_abandoned = keep_if_abandoned
        self.abandon_after = abandon_after
        self._clock = clock
        self._extra = dict(extra or {})
        self._name, self._parent = name, parent  # the saved run's name and the run it continues
        self._warning: str | None = None  # e.g. saved in a temp dir because the runs dir failed
        self._train_kwargs = dict(train_kwargs or {})
        self._data = data
        self._store = store
        self._events: list[BatchEvent | EpochEvent] = []
        self._units: BatchEvent | None = None  # only the latest picture is kept: the events list stays small
        self._result: TrainResult | None = None
        self._run_info: RunInfo | None = None
        self._abandoned = False
        self._last_seen = clock()

    @property
    def job_id(self) -> str:
        return self.work_id

    def start(self) -> TrainingJob:
        """Start training in the job's process."""
        return self._start(_train_in_child, (self.config, self._data, self._train_kwargs), "mnist-train")

    # -- the reader thread ----------------------------------------------------------------------
    def _on_message(self, event: BatchEvent | EpochEvent) -> None:
        with self._lock:
            if isinstance(event, BatchEvent) and event.units is not None:
                self._units, event = event, dataclasses.replace(event, units=None)
            self._events.append(event)
        self._check_abandoned()

    def _check_abandoned(self) -> None:
        """Stop the job when its browser has not polled it for `abandon_after` seconds."""
        with self._lock:
            gone = self._clock() - self._last_seen > self.abandon_after
            if gone and not self._abandoned:
                self._abandoned = True
        if gone:
            self.stop()

    def _finish(self, outcome: Outcome) -> None:
        result = _from_wire(outcome.value) if outcome.ok else None
        error, info = outcome.error, None
        if result is not None and (not result.stopped or (self._abandoned and self.keep_if_abandoned)):
            try:
                info = self._save(result, stopped=result.stopped)
            except RunError as exc:
                error = f"trained to {result.test_accuracy:.2%} but not saved: {exc}"
        with self._lock:
            if error is not None:
                self._status, self._error, self._result = Status.FAILED, error, result
            elif not result.stopped:
                self._status, self._result, self._run_info = Status.FINISHED, result, info
            elif self._abandoned:
                self._status, self._run_info = (Status.KEPT, info) if info is not None else (Status.DISCARDED, None)
                self._result = result if info is not None else None
            else:
                self._status, self._result = Status.STOPPED, result
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
    def touch(self) -> None:
        """The job's browser is still there (called on every page run and progress poll)."""
        with self._lock:
            self._last_seen = self._clock()

    def keep(self) -> RunInfo:
        """Save the partial model of a stopped job (marked 'stopped early'); only once, even if clicked twice."""
        with self._lock:
            if self._status != Status.STOPPED or self._result is None:
                raise JobError("only a stopped job's partial model can be kept (it may have been kept already)")
            self._status, result = Status.KEEPING, self._result  # claims it: a second keep or a discard now fails
        try:
            info = self._save(result, stopped=True)
        except RunError as exc:
            with self._lock:
                self._status = Status.STOPPED
            raise JobError(f"the partial model could not be saved: {exc}") from None
        with self._lock:
            self._run_info, self._status = info, Status.KEPT
        return info

    def discard(self) -> None:
        """Drop a stopped job's partial model."""
        with self._lock:
            if self._status != Status.STOPPED:
                raise JobError("only a stopped job's partial model can be discarded (it may have been kept)")
            self._result, self._status = None, Status.DISCARDED

    def snapshot(self, touch: bool = True) -> JobSnapshot:
        """A consistent copy of the job's state; also counts as a sign that its browser is there (unless not `touch`:
        the health page looks without keeping an abandoned job alive)."""
        with self._lock:
            if touch:
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
                units=self._units,
            )


class JobRegistry:
    """Each browser's current (or last) training job; a new one takes a slot of `slots` (the server-wide cap)."""

    def __init__(self, slots: SlotRegistry = SLOTS, executor: Executor = LOCAL) -> None:
        self.slots, self._executor = slots, executor
        self._board: Board[str, TrainingJob] = Board()
        self._lock = threading.Lock()
        self._default_seconds: list[float] = []

    def get(self, session_id: str) -> TrainingJob | None:
        """This browser's current (or last) job; never another browser's."""
        return self._board.get(session_id)

    def start(
        self,
        session_id: str,
        config: TrainConfig,
        data: MnistData,
        store: RunStore,
        *,
        slot_wait: float = 0.0,
        cancelled: Callable[[], bool] | None = None,
        on_wait: Callable[[], None] | None = None,
        **job_options: Any,
    ) -> TrainingJob:
        """Start a job for this browser, or raise JobBusyError / JobLimitError with a message for the user.

        At the cap it waits up to `slot_wait` seconds for a slot first (see SlotRegistry.acquire for
        `cancelled` and `on_wait`). job_options go to TrainingJob (keep_if_abandoned, extra, train_kwargs,
        name, parent, clock, abandon_after).
        """
        try:
            store.check_writable(config)  # a full or unwritable runs dir is said now, not after training
        except RunError as exc:
            raise JobError(f"Training cannot start: {exc}.") from None
        slot = self.slots.acquire(TRAIN, session_id, busy=BUSY, wait=slot_wait, cancelled=cancelled, on_wait=on_wait)
        job = TrainingJob(
            slot, session_id, config, data, store, on_finish=self._finished, executor=self._executor, **job_options
        )
        self._board.put(session_id, job)
        return job.start()

    def jobs(self) -> list[TrainingJob]:
        """Every browser's current (or last) job, for the health page."""
        return self._board.values()

    def forget(self, session_id: str) -> None:
        """Drop a browser's job (a running one is stopped first)."""
        self._board.forget(session_id)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop every job, wait for them (killing any that does not end in time) and forget them all."""
        self._board.shutdown(timeout)

    def _finished(self, job: TrainingJob, result: TrainResult) -> None:
        """Remember how long the one-click model took here, for the label of Home's button ('~N s')."""
        if is_one_click_recipe(job.config):
            with self._lock:
                self._default_seconds = [*self._default_seconds[-9:], float(result.train_seconds)]

    def default_seconds(self, saved: list[float] | None = None) -> int:
        """Estimated seconds for the one-click model: measured on this server when known, else a guess."""
        with self._lock:
            measured = list(self._default_seconds)
        samples = measured or list(saved or [])
        est = statistics.median(samples) if samples else DEFAULT_SECONDS_GUESS
        return max(1, round(est))


def is_one_click_recipe(config: TrainConfig) -> bool:
    """True when a config is the one-click model's preset (the device and the progress-report interval aside)."""
    base = PRESETS[ONE_CLICK_PRESET]
    return config.with_(device=base.device, report_every=base.report_every) == base


REGISTRY = JobRegistry()
# A server that stops (Ctrl-C, SIGTERM) stops its jobs first instead of leaving them to the interpreter's exit.
atexit.register(REGISTRY.shutdown, 10.0)
