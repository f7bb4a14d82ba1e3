"""Dashboard sweeps and continued runs (ui/sweep_job.py): chains of ordinary training jobs, tiny synthetic data.

A step that trained to its end is Status.FINISHED (the sweep's table shows it as "done")."""

from __future__ import annotations

import time

import pytest
import torch

from mnistcore.config import TrainConfig
from mnistcore.data import MnistData
from mnistcore.runs import RunStore
from mnistcore.train import EpochEvent, train
from ui.background import JobBusyError, SlotRegistry, Status
from ui.jobs import JobRegistry
from ui.sweep_job import ChainRegistry

TINY = TrainConfig(hidden=16, epochs=2, batch_size=64, device="cpu", report_every=2)
LONG = TrainConfig(hidden=16, epochs=200, batch_size=8, device="cpu", report_every=1)


def _data() -> MnistData:
    g = torch.Generator().manual_seed(0)
    return MnistData(
        train_images=torch.randint(0, 256, (600, 28, 28), dtype=torch.uint8, generator=g),
        train_labels=torch.randint(0, 10, (600,), generator=g),
        test_images=torch.randint(0, 256, (200, 28, 28), dtype=torch.uint8, generator=g),
        test_labels=torch.randint(0, 10, (200,), generator=g),
        checksums={"synthetic": "0" * 32},
    )


@pytest.fixture
def data() -> MnistData:
    return _data()


@pytest.fixture
def jobs():
    reg = JobRegistry(SlotRegistry(max_running=2))
    yield reg
    reg.shutdown()


@pytest.fixture
def chains(jobs):
    reg = ChainRegistry(jobs)
    yield reg
    reg.shutdown()


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs")


def wait_for(predicate, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def test_a_sweep_trains_one_named_run_per_value(chains, data, store):
    chain = chains.start_sweep("s1", "hidden", [16, 24], TINY, data, store)
    assert chain.wait(120)
    snap = chain.snapshot()
    assert not snap.running and snap.message == "Done" and snap.done == 2
    assert [(s.value, s.status, s.name) for s in snap.steps] == [
        (16, Status.FINISHED, "hidden=16"),
        (24, Status.FINISHED, "hidden=24"),
    ]
    runs = {r.run_id: r for r in store.list()}
    assert set(runs) == {s.run_id for s in snap.steps}
    for s in snap.steps:
        info = runs[s.run_id]
        assert info.name == s.name and info.config.hidden == s.value and info.test_accuracy == s.test_accuracy
        assert info.extra["sweep"] == {"param": "hidden", "value": s.value, "values": [16, 24]}
    assert chains.get("s1") is chain and chains.get("s2") is None


def test_stop_after_the_current_run(chains, jobs, data, store):
    chain = chains.start_sweep("s1", "seed", [1, 2, 3], LONG.with_(epochs=3), data, store)
    wait_for(lambda: jobs.get("s1") is not None and jobs.get("s1").snapshot().events)
    chain.stop_after_current()
    assert chain.wait(120)
    snap = chain.snapshot()
    assert [s.status for s in snap.steps] == [Status.FINISHED, Status.SKIPPED, Status.SKIPPED]
    assert len(store.list()) == 1 and store.list()[0].run_id == snap.steps[0].run_id
    assert len(store.list()[0].history) == 3  # the run in progress still finished all its epochs
    assert snap.message == "Stopped after the run in progress"


def test_stop_now_leaves_the_partial_run_to_keep_or_discard(chains, jobs, data, store):
    chain = chains.start_sweep("s1", "seed", [1, 2], LONG, data, store)
    wait_for(lambda: jobs.get("s1") is not None and jobs.get("s1").snapshot().events)
    chain.stop_now()
    assert chain.wait(60)
    snap = chain.snapshot()
    assert [s.status for s in snap.steps] == [Status.STOPPED, Status.SKIPPED]
    job = jobs.get("s1")
    assert job.status == Status.STOPPED and store.list() == []  # the single-run rule: nothing saved unless kept
    info = job.keep()
    assert info.stopped and [r.run_id for r in store.list()] == [info.run_id]


def test_continue_a_run(chains, jobs, data, store):
    first = train(TINY.with_(epochs=1), data)
    parent = store.save(
        first.model,
        first.config,
        test_accuracy=first.test_accuracy,
        train_seconds=first.train_seconds,
        history=first.history,
        dataset=data.checksums,
        optimizer_state=first.optimizer_state,
        rng_state=first.rng_state,
        name="start",
    )
    chain = chains.start_resume("s1", parent.run_id, 2, data, store, report_every=1)
    assert chain.wait(120)
    snap = chain.snapshot()
    assert snap.steps[0].status == Status.FINISHED and snap.parent == parent.run_id
    child = store.info(snap.steps[0].run_id)
    assert child.parent == parent.run_id and child.name is None
    assert [h["epoch"] for h in child.history] == [1, 2, 3] and child.history[0] == parent.history[0]
    job = jobs.get("s1")
    assert job.status == Status.FINISHED
    epochs = [e.epoch for e in job.snapshot().events if isinstance(e, EpochEvent)]
    assert epochs == [2, 3]  # the live progress counts on from the parent's epochs
    # Same as continuing in this process: the job's process got the parent's weights and optimizer state.
    init, _ = store.load_state(parent.run_id)
    here = train(TINY, data, init=init)
    assert here.test_accuracy == child.test_accuracy


def test_one_chain_or_job_at_a_time_per_browser(chains, jobs, data, store):
    jobs.start("s1", LONG, data, store)
    with pytest.raises(JobBusyError):
        chains.start_sweep("s1", "hidden", [16, 24], TINY, data, store)
    chain = chains.start_sweep("s2", "seed", [1, 2], LONG, data, store)
    with pytest.raises(JobBusyError, match="sweep"):
        chains.start_sweep("s2", "hidden", [16], TINY, data, store)
    chain.stop_now()
    assert chain.wait(60)


def test_bad_values_are_refused_before_anything_starts(chains, jobs, data, store):
    with pytest.raises(ValueError, match="hidden=8"):
        chains.start_sweep("s1", "hidden", [16, 8], TINY, data, store)
    with pytest.raises(ValueError, match="cannot sweep"):
        chains.start_sweep("s1", "optimizer", [1], TINY, data, store)
    assert chains.get("s1") is None and jobs.get("s1") is None


def test_a_step_waits_for_a_free_slot(data, store):
    jobs = JobRegistry(SlotRegistry(max_running=1))
    chains = ChainRegistry(jobs)
    try:
        other = jobs.start("other", LONG, data, store)
        chain = chains.start_sweep("s1", "hidden", [16], TINY, data, store)
        wait_for(lambda: "free training slot" in chain.snapshot().message)
        other.stop()
        assert chain.wait(120)
        assert chain.snapshot().steps[0].status == Status.FINISHED
    finally:
        chains.shutdown()
        jobs.shutdown()


def test_a_failing_step_ends_the_chain(chains, data, store):
    chain = chains.start_sweep(
        "s1", "hidden", [16, 24], TINY.with_(device="cuda" if not torch.cuda.is_available() else "cpu"), data, store
    )
    assert chain.wait(120)
    snap = chain.snapshot()
    if torch.cuda.is_available():
        assert snap.done == 2
    else:
        assert [s.status for s in snap.steps] == [Status.FAILED, Status.SKIPPED] and "CUDA" in snap.steps[0].error
