"""Sweeps and "continue this run" on the dashboard: chains of training jobs run one after another. No Streamlit.

Each step of a chain is an ordinary job of the training-job registry (ui/jobs.py): its own process, a slot
under the server-wide cap (ui/background/slots.py; at the cap a step waits for one), one running job per
browser, Stop within a batch with keep/discard, abandonment when the browser goes away. A chain is a thread
in the server that starts step i+1 when step i has finished, names the saved run (sweeps) or records its
parent (continued runs), and ends early when its user asks for "stop after this run", stops the running
step, or the step fails. A chain holds no slot between its steps.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from mnistcore.config import TrainConfig
from mnistcore.data import MnistData
from mnistcore.experiments import run_name, sweep_configs, sweep_param
from mnistcore.runs import RunStore
from ui.background import JobBusyError, JobLimitError, Status
from ui.jobs import BUSY, REGISTRY, JobRegistry

SLOT_WAIT = 600.0  # seconds a step waits for a free slot (others' jobs and tasks) before giving up


@dataclass(frozen=True)
class Step:
    """One training of a chain and what became of it."""

    value: Any  # the swept value (or None for a continued run)
    config: TrainConfig
    name: str | None = None
    status: Status = Status.WAITING
    job_id: str | None = None
    run_id: str | None = None
    test_accuracy: float | None = None
    seconds: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class ChainSnapshot:
    """A consistent copy of a chain's state for one render."""

    chain_id: str
    kind: str  # "sweep" or "resume"
    param: str | None
    steps: tuple[Step, ...]
    running: bool
    stop_requested: bool
    message: str
    parent: str | None = None
    started: float = field(default=0.0)

    @property
    def current(self) -> int | None:
        """Index of the step training now, if any."""
        return next((i for i, s in enumerate(self.steps) if s.status == Status.RUNNING), None)

    @property
    def done(self) -> int:
        return sum(s.status == Status.FINISHED for s in self.steps)


class Chain:
    """Train `steps` one after another through `registry`, each as this browser's job."""

    def __init__(
        self,
        session_id: str,
        kind: str,
        steps: Sequence[Step],
        data: MnistData,
        store: RunStore,
        registry: JobRegistry = REGISTRY,
        param: str | None = None,
        parent: str | None = None,
        train_kwargs: dict[str, Any] | None = None,
        slot_wait: float = SLOT_WAIT,
    ) -> None:
        self.chain_id = uuid.uuid4().hex[:10]
        self.session_id, self.kind, self.param, self.parent = session_id, kind, param, parent
        self._steps = list(steps)
        self._data, self._store, self._registry = data, store, registry
        self._train_kwargs = dict(train_kwargs or {})
        self._slot_wait = slot_wait
        self._lock = threading.Lock()
        self._stop_after = threading.Event()
        self._running = True
        self._message = "Starting…"
        self._started = time.time()
        self._thread = threading.Thread(target=self._run, name=f"mnist-chain-{self.chain_id}", daemon=True)

    # -- the chain's thread ---------------------------------------------------------------------
    def start(self) -> Chain:
        self._thread.start()
        return self

    def _set(self, i: int, **changes: Any) -> None:
        with self._lock:
            self._steps[i] = replace(self._steps[i], **changes)

    def _say(self, message: str) -> None:
        with self._lock:
            self._message = message

    def _run(self) -> None:
        try:
            for i in range(len(self._steps)):
                if self._stop_after.is_set():
                    self._say("Stopped after the run in progress")
                    break
                if not self._run_step(i):  # it says why
                    break
            else:
                self._say("Done")
        except Exception as exc:  # reported on the page; the chain ends
            self._say(f"Failed: {type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._steps = [
                    replace(s, status=Status.SKIPPED) if s.status == Status.WAITING else s for s in self._steps
                ]
                self._running = False

    def _start_job(self, i: int) -> Any:
        """Start step i as this browser's job, waiting (up to slot_wait) while the server is at its cap."""
        step = self._steps[i]
        extra: dict[str, Any] = {"chain": {"kind": self.kind, "id": self.chain_id, "index": i}}
        if self.kind == "sweep":
            extra["sweep"] = {"param": self.param, "value": step.value, "values": [s.value for s in self._steps]}
        if self.parent is not None:
            extra["continues"] = self.parent
        limit = self._registry.slots.max_running
        return self._registry.start(
            self.session_id,
            step.config,
            self._data,
            self._store,
            extra=extra,
            train_kwargs=self._train_kwargs,
            name=step.name,
            parent=self.parent,
            slot_wait=self._slot_wait,
            cancelled=self._stop_after.is_set,
            on_wait=lambda: self._say(
                f"Waiting for a free training slot (the server runs at most {limit} trainings and tasks at once)…"
            ),
        )

    def _run_step(self, i: int) -> bool:
        """Train step i to its end; True when the chain may go on."""
        label = f"{self.param}={self._steps[i].value}" if self.kind == "sweep" else "the continued run"
        try:
            job = self._start_job(i)
        except (JobBusyError, JobLimitError) as exc:
            if self._stop_after.is_set():  # its user stopped the chain while the step waited: it never ran
                self._say("Stopped before the next run could start")
                return False
            self._set(i, status=Status.FAILED, error=str(exc))
            self._say(f"Could not start {label}: {exc}")
            return False
        self._set(i, status=Status.RUNNING, job_id=job.job_id)
        self._say(f"Training {label} ({i + 1} of {len(self._steps)})")
        job.wait()
        snap = job.snapshot()
        if snap.status != Status.FINISHED or snap.run_info is None:
            # Stopped by its user (keep/discard is then theirs, on the job's panel), abandoned, or failed.
            failed = snap.error is not None
            self._set(
                i,
                status=Status.FAILED if failed else Status.STOPPED,
                error=snap.error,
                test_accuracy=snap.test_accuracy,
                run_id=snap.run_info.run_id if snap.run_info is not None else None,
            )
            self._say(f"Failed: {snap.error}" if failed else f"Stopped during {label}")
            return False
        run_id = snap.run_info.run_id  # saved by the job with the step's name and the chain's parent
        self._set(i, status=Status.FINISHED, run_id=run_id, test_accuracy=snap.test_accuracy, seconds=snap.seconds)
        return True

    # -- page side ------------------------------------------------------------------------------
    def stop_after_current(self) -> None:
        """End the chain cleanly: the step in progress finishes and is saved, no further step starts."""
        self._stop_after.set()
        self._say("Stopping after the run in progress…")

    def stop_now(self) -> None:
        """End the chain and the step in progress now (within a batch; its partial model awaits keep/discard)."""
        self._stop_after.set()
        job = self._registry.get(self.session_id)
        if job is not None and job.running and job.job_id in {s.job_id for s in self._steps}:
            job.stop()

    @property
    def running(self) -> bool:
        with self._lock:
            return self._running

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def snapshot(self) -> ChainSnapshot:
        with self._lock:
            return ChainSnapshot(
                chain_id=self.chain_id,
                kind=self.kind,
                param=self.param,
                steps=tuple(self._steps),
                running=self._running,
                stop_requested=self._stop_after.is_set(),
                message=self._message,
                parent=self.parent,
                started=self._started,
            )


class ChainRegistry:
    """One chain per browser (its current or last), kept beside the training-job registry."""

    def __init__(self, registry: JobRegistry = REGISTRY) -> None:
        self.registry = registry
        self._lock = threading.Lock()
        self._chains: dict[str, Chain] = {}

    def get(self, session_id: str) -> Chain | None:
        with self._lock:
            return self._chains.get(session_id)

    def _start(self, chain: Chain) -> Chain:
        with self._lock:
            mine = self._chains.get(chain.session_id)
            if mine is not None and mine.running:
                raise JobBusyError("Your sweep is still running. Stop it or wait for it to finish.")
            job = self.registry.get(chain.session_id)
            if job is not None and job.running:
                raise JobBusyError(BUSY)
            self._chains[chain.session_id] = chain
        return chain.start()

    def start_sweep(
        self,
        session_id: str,
        param: str,
        values: Sequence[int | float],
        base: TrainConfig,
        data: MnistData,
        store: RunStore,
        name_prefix: str | None = None,
    ) -> Chain:
        """Train one run per value of `param` (validated up front: ValueError), named e.g. 'hidden=64'."""
        field_name = sweep_param(param)
        configs = sweep_configs(field_name, values, base)
        steps = [
            Step(value=v, config=c, name=run_name(field_name, v, name_prefix))
            for v, c in zip(values, configs, strict=True)
        ]
        return self._start(Chain(session_id, "sweep", steps, data, store, self.registry, param=field_name))

    def start_resume(
        self,
        session_id: str,
        run_id: str,
        epochs: int,
        data: MnistData,
        store: RunStore,
        report_every: int | None = None,
    ) -> Chain:
        """Continue a saved run (weights, optimizer state) for `epochs` more epochs, as a new run; RunError if not."""
        init, info = store.load_state(run_id)
        config = info.config.with_(epochs=epochs)
        if report_every is not None:
            config = config.with_(report_every=report_every)
        steps = [Step(value=None, config=config, name=None)]
        return self._start(
            Chain(
                session_id, "resume", steps, data, store, self.registry, parent=info.run_id, train_kwargs={"init": init}
            )
        )

    def chains(self) -> list[Chain]:
        """Every browser's current (or last) chain, for the health page."""
        with self._lock:
            return list(self._chains.values())

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop every chain after its current step and wait for them (tests, server shutdown)."""
        with self._lock:
            chains = list(self._chains.values())
            self._chains.clear()
        for chain in chains:
            chain.stop_now()
        for chain in chains:
            chain.wait(timeout)


CHAINS = ChainRegistry()
