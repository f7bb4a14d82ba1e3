"""The background layer (ui/background/): one cap for training jobs, tasks and sweep steps; the executor.

Plain Python, no Streamlit. The cross-kind tests use real child processes with tiny synthetic data (as the
jobs' and tasks' own tests do); the slot registry and a second, thread-based executor need no process.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
import torch

from mnistcore.config import TrainConfig
from mnistcore.data import MnistData
from mnistcore.runs import RunStore
from ui.background import JobBusyError, JobLimitError, Outcome, SlotRegistry, Status
from ui.jobs import JobRegistry
from ui.sweep_job import ChainRegistry
from ui.tasks import TaskRegistry

TINY = TrainConfig(hidden=16, epochs=2, batch_size=64, device="cpu", report_every=2)
LONG = TrainConfig(hidden=16, epochs=200, batch_size=8, device="cpu", report_every=1)
LIMIT = "already running 2 training jobs, its limit"


# Task functions live at module level: they are sent to the task's process by reference.
def held(task, stop, release: str):
    """Hold a slot until the file `release` exists (or a stop): 'released', or None when stopped."""
    task.progress(0.5, "holding")
    while not Path(release).exists():
        if stop.is_set():
            return None
        time.sleep(0.01)
    return "released"


def crash(task, stop):
    os._exit(3)  # the process dies without an answer


def boom(task, stop):
    raise ValueError("bad input")


def tiny_data() -> MnistData:
    g = torch.Generator().manual_seed(0)
    return MnistData(
        train_images=torch.randint(0, 256, (600, 28, 28), dtype=torch.uint8, generator=g),
        train_labels=torch.randint(0, 10, (600,), generator=g),
        test_images=torch.randint(0, 256, (200, 28, 28), dtype=torch.uint8, generator=g),
        test_labels=torch.randint(0, 10, (200,), generator=g),
        checksums={"synthetic": "0" * 32},
    )


def wait_for(predicate, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


@pytest.fixture
def slots() -> SlotRegistry:
    return SlotRegistry(max_running=2)


@pytest.fixture
def jobs(slots):
    reg = JobRegistry(slots)
    yield reg
    reg.shutdown()


@pytest.fixture
def tasks(slots):
    reg = TaskRegistry(slots)
    yield reg
    reg.shutdown()


@pytest.fixture
def data() -> MnistData:
    return tiny_data()


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs")


# -- the slot registry alone ----------------------------------------------------------------------


def test_the_cap_refuses_with_a_message_and_a_release_frees_a_slot(slots):
    a = slots.acquire("train", "alice", busy="busy")
    slots.acquire("task:finetune", "bob", busy="busy")
    assert slots.running() == 2 and slots.running("train") == 1 and slots.holds("train", "alice")
    with pytest.raises(JobLimitError, match=LIMIT):
        slots.acquire("train", "carol", busy="busy")
    a.release()
    a.release()  # twice is harmless: it frees one slot, not two
    assert slots.running() == 1 and not slots.holds("train", "alice")
    slots.acquire("train", "carol", busy="busy")
    with pytest.raises(JobLimitError):
        slots.acquire("train", "dave", busy="busy")


def test_one_slot_per_kind_and_browser(slots):
    slots.acquire("train", "alice", busy="You already have a training job running.")
    with pytest.raises(JobBusyError, match="already have a training job"):
        slots.acquire("train", "alice", busy="You already have a training job running.")
    slots.acquire("task:finetune", "alice", busy="busy")  # another kind of work for the same browser is fine


def test_a_waiting_request_gets_the_next_free_slot(slots):
    first = slots.acquire("train", "a", busy="busy")
    slots.acquire("train", "b", busy="busy")
    said: list[str] = []
    got: list[object] = []
    waiter = threading.Thread(
        target=lambda: got.append(
            slots.acquire("train", "c", busy="busy", wait=30, on_wait=lambda: said.append("waiting"))
        )
    )
    waiter.start()
    wait_for(lambda: said == ["waiting"], timeout=5)
    time.sleep(0.3)
    assert got == [] and said == ["waiting"]  # still waiting, told once
    t = time.monotonic()
    first.release()
    waiter.join(5)
    assert got and got[0].owner == "c" and time.monotonic() - t < 1.0  # woken by the release, not a poll


def test_a_wait_ends_when_cancelled_or_out_of_time(slots):
    for owner in ("a", "b"):
        slots.acquire("train", owner, busy="busy")
    t = time.monotonic()
    with pytest.raises(JobLimitError):
        slots.acquire("train", "c", busy="busy", wait=0.2)
    assert 0.2 <= time.monotonic() - t < 2
    cancel = threading.Event()
    threading.Timer(0.1, cancel.set).start()
    t = time.monotonic()
    with pytest.raises(JobLimitError):
        slots.acquire("train", "c", busy="busy", wait=60, cancelled=cancel.is_set)
    assert time.monotonic() - t < 2


def test_the_cores_are_shared_by_the_slots():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert SlotRegistry(max_running=2).threads == max(1, cores // 2)
    assert SlotRegistry(max_running=10_000).threads == 1


# -- one cap for every kind of work (real processes) ----------------------------------------------


def test_two_running_tasks_refuse_a_training_job(slots, tasks, jobs, data, store, tmp_path):
    release = tmp_path / "go"
    a = tasks.start("alice", "finetune", held, str(release))
    b = tasks.start("bob", "label_issues", held, str(release))
    with pytest.raises(JobLimitError, match=LIMIT):
        jobs.start("carol", TINY, data, store)
    assert jobs.get("carol") is None and slots.running() == 2 and store.list() == []
    release.touch()
    assert a.wait(30) and b.wait(30) and a.snapshot().status == Status.FINISHED
    assert slots.running() == 0
    job = jobs.start("carol", TINY, data, store)  # the tasks' slots are free again
    assert job.wait(60) and job.status == Status.FINISHED


def test_two_running_jobs_refuse_a_task(slots, tasks, jobs, data, store, tmp_path):
    a = jobs.start("alice", LONG, data, store)
    jobs.start("bob", LONG, data, store)
    with pytest.raises(JobLimitError, match=LIMIT):
        tasks.start("carol", "finetune", held, str(tmp_path / "go"))
    assert tasks.get("carol", "finetune") is None
    a.stop()
    assert a.wait(10) and a.status == Status.STOPPED
    (tmp_path / "go").touch()
    task = tasks.start("carol", "finetune", held, str(tmp_path / "go"))  # a's slot is free again
    assert task.wait(30) and task.snapshot().result == "released"


def test_a_sweep_step_waits_for_a_slot_held_by_a_task(data, store, tmp_path):
    slots = SlotRegistry(max_running=1)
    jobs, tasks = JobRegistry(slots), TaskRegistry(slots)
    chains = ChainRegistry(jobs)
    release = tmp_path / "go"
    try:
        task = tasks.start("other", "label_issues", held, str(release))
        chain = chains.start_sweep("s1", "hidden", [16], TINY, data, store)
        wait_for(lambda: "free training slot" in chain.snapshot().message)
        assert chain.snapshot().steps[0].status == Status.WAITING and jobs.get("s1") is None
        release.touch()
        assert task.wait(30)
        assert chain.wait(120)
        snap = chain.snapshot()
        assert snap.steps[0].status == Status.FINISHED and snap.message == "Done"
        assert [r.run_id for r in store.list()] == [snap.steps[0].run_id]
    finally:
        chains.shutdown()
        jobs.shutdown()
        tasks.shutdown()


def test_a_sweep_stopped_while_waiting_for_a_slot_skips_its_step(data, store, tmp_path):
    slots = SlotRegistry(max_running=1)
    jobs, tasks = JobRegistry(slots), TaskRegistry(slots)
    chains = ChainRegistry(jobs)
    try:
        tasks.start("other", "finetune", held, str(tmp_path / "never"))
        chain = chains.start_sweep("s1", "hidden", [16, 24], TINY, data, store)
        wait_for(lambda: "free training slot" in chain.snapshot().message)
        chain.stop_now()
        assert chain.wait(10)
        snap = chain.snapshot()
        assert [s.status for s in snap.steps] == [Status.SKIPPED, Status.SKIPPED]
        assert snap.message == "Stopped before the next run could start" and store.list() == []
    finally:
        chains.shutdown()
        jobs.shutdown()
        tasks.shutdown()


def test_a_process_that_dies_fails_its_work_and_frees_its_slot(slots, tasks):
    task = tasks.start("s1", "k", crash)
    assert task.wait(30)
    snap = task.snapshot()
    assert snap.status == Status.FAILED and "ended unexpectedly (exit code 3)" in snap.error
    assert slots.running() == 0


# -- a second executor: the layer's interface, without processes ----------------------------------


class ThreadHandle:
    """A Handle that runs the function in a thread of this process."""

    def __init__(self, fn, args, on_message, on_end) -> None:
        self._stop, self._done = threading.Event(), threading.Event()
        self._outcome: Outcome | None = None
        self._fn, self._args, self._on_message, self._on_end = fn, args, on_message, on_end
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            outcome = Outcome(value=self._fn(self._on_message, self._stop, *self._args))
        except Exception as exc:
            outcome = Outcome(error=f"{type(exc).__name__}: {exc}")
        try:
            self._on_end(outcome)
        finally:
            self._outcome = outcome
            self._done.set()

    def poll(self) -> Outcome | None:
        return self._outcome if self._done.is_set() else None

    def result(self, timeout: float | None = None) -> Outcome:
        if not self._done.wait(timeout):
            raise TimeoutError
        return self._outcome

    def stop(self) -> None:
        self._stop.set()

    def kill(self) -> None:
        self._stop.set()


class ThreadExecutor:
    def __init__(self) -> None:
        self.started: list[str] = []

    def start(self, fn, args, *, name, threads, on_message, on_end) -> ThreadHandle:
        self.started.append(name)
        return ThreadHandle(fn, args, on_message, on_end)


class BrokenExecutor:
    def start(self, fn, args, **kwargs):
        raise OSError("no workers")


def test_tasks_run_through_any_executor(slots, tmp_path):
    executor = ThreadExecutor()
    tasks = TaskRegistry(slots, executor)
    release = tmp_path / "go"
    task = tasks.start("s1", "k", held, str(release))
    wait_for(lambda: task.snapshot().message == "holding", timeout=5)
    assert task.running and slots.running() == 1 and executor.started[0].startswith("mnist-task-k-")
    release.touch()
    assert task.wait(5) and task.snapshot().result == "released" and task.snapshot().fraction == 1.0
    failed = tasks.start("s1", "k", boom)
    assert failed.wait(5) and failed.snapshot().error == "ValueError: bad input"
    assert slots.running() == 0


def test_work_that_cannot_start_says_why_and_takes_no_slot(slots):
    task = TaskRegistry(slots, BrokenExecutor()).start("s1", "k", held, "unused")
    snap = task.snapshot()
    assert snap.status == Status.FAILED and "could not start: OSError: no workers" in snap.error
    assert slots.running() == 0 and task.wait(0)
