"""The dashboard's training-job registry (ui/jobs.py): plain Python, no Streamlit, tiny synthetic data."""

from __future__ import annotations

import re
import time

import pytest
import torch

from mnistcore.config import PRESETS, TrainConfig
from mnistcore.data import MnistData
from mnistcore.runs import RunStore
from mnistcore.train import BatchEvent, EpochEvent
from ui.background import JobBusyError, JobError, JobLimitError, SlotRegistry, Status
from ui.jobs import ONE_CLICK_PRESET, JobRegistry, is_one_click_recipe

RUNNING, FINISHED, STOPPED, KEPT, DISCARDED, FAILED = (
    Status.RUNNING,
    Status.FINISHED,
    Status.STOPPED,
    Status.KEPT,
    Status.DISCARDED,
    Status.FAILED,
)

TINY = TrainConfig(hidden=16, epochs=2, batch_size=64, device="cpu", report_every=2)
# Long enough to still be running when the test acts on it (each epoch is ~10 tiny batches).
LONG = TrainConfig(hidden=16, epochs=200, batch_size=8, device="cpu", report_every=1)


def tiny_data(n_train: int = 600, n_test: int = 200, seed: int = 0) -> MnistData:
    g = torch.Generator().manual_seed(seed)
    return MnistData(
        train_images=torch.randint(0, 256, (n_train, 28, 28), dtype=torch.uint8, generator=g),
        train_labels=torch.randint(0, 10, (n_train,), generator=g),
        test_images=torch.randint(0, 256, (n_test, 28, 28), dtype=torch.uint8, generator=g),
        test_labels=torch.randint(0, 10, (n_test,), generator=g),
        checksums={"synthetic": "0" * 32},
    )


@pytest.fixture
def data() -> MnistData:
    return tiny_data()


@pytest.fixture
def registry():
    reg = JobRegistry(SlotRegistry(max_running=2))
    yield reg
    reg.shutdown()


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs")


def wait_for(predicate, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError("condition not reached in time")


def test_tiny_job_finishes_saves_the_run_and_reports_progress(registry, data, store):
    job = registry.start("s1", TINY, data, store)
    assert job.wait(60)
    snap = job.snapshot()
    assert snap.status == FINISHED and not snap.running
    assert snap.fraction == 1.0
    assert snap.epochs_done == 2
    assert any(isinstance(e, BatchEvent) for e in snap.events)
    assert [e.epoch for e in snap.events if isinstance(e, EpochEvent)] == [1, 2]
    assert snap.last_batch is not None and snap.last_batch.step == snap.last_batch.total_steps
    runs = store.list()
    assert [r.run_id for r in runs] == [snap.run_info.run_id]
    assert runs[0].dataset == data.checksums and not runs[0].stopped
    assert runs[0].config == TINY.with_(precision=runs[0].config.precision)  # what ran: "auto" resolved
    assert runs[0].config.precision in ("fp32", "bf16") and "precision" in runs[0].extra
    assert snap.test_accuracy == pytest.approx(runs[0].test_accuracy)
    assert "Finished 2 epochs" in snap.progress_text


def test_progress_text_while_running(registry, data, store):
    job = registry.start("s1", LONG, data, store)
    wait_for(lambda: job.snapshot().last_batch is not None)
    snap = job.snapshot()
    assert snap.status == RUNNING and 0 < snap.fraction < 1
    # The job keeps training while we look, so any epoch may be under way by now.
    assert re.fullmatch(r"Epoch \d+/200 · batch \d+/\d+ · .+ left", snap.progress_text), snap.progress_text


def test_stop_ends_the_job_quickly_and_the_partial_model_can_be_kept(registry, data, store):
    job = registry.start("s1", LONG, data, store)
    wait_for(lambda: job.snapshot().last_batch is not None)
    job.stop()
    t = time.monotonic()
    assert job.wait(10)
    assert time.monotonic() - t < 5
    snap = job.snapshot()
    assert snap.status == STOPPED
    assert snap.test_accuracy is not None
    assert store.list() == []  # nothing saved until the user decides
    info = job.keep()
    assert info.stopped and job.status == KEPT
    assert [r.run_id for r in store.list()] == [info.run_id]
    with pytest.raises(JobError):
        job.keep()


def test_a_stopped_job_can_be_discarded(registry, data, store):
    job = registry.start("s1", LONG, data, store)
    wait_for(lambda: job.snapshot().last_batch is not None)
    job.stop()
    assert job.wait(10)
    job.discard()
    assert job.status == DISCARDED
    assert store.list() == []
    with pytest.raises(JobError):
        job.keep()


def test_one_running_job_per_session(registry, data, store):
    registry.start("s1", LONG, data, store)
    with pytest.raises(JobBusyError, match="already have a training job"):
        registry.start("s1", TINY, data, store)


def test_an_unwritable_runs_dir_refuses_the_job_before_it_trains(registry, data, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(JobError, match="Training cannot start: cannot save runs in"):
        registry.start("s1", TINY, data, RunStore(tmp_path / "file" / "runs"))
    assert registry.get("s1") is None  # nothing started, no slot taken


def test_server_wide_cap_of_two_running_jobs(registry, data, store):
    a = registry.start("a", LONG, data, store)
    registry.start("b", LONG, data, store)
    assert registry.slots.running() == 2
    with pytest.raises(JobLimitError, match="limit"):
        registry.start("c", TINY, data, store)
    a.stop()
    assert a.wait(10)
    c = registry.start("c", TINY, data, store)  # a slot is free again
    assert c.wait(60) and c.status == FINISHED


def test_sessions_never_see_each_others_jobs(registry, data, store):
    job = registry.start("alice", TINY, data, store)
    assert registry.get("alice") is job
    assert registry.get("bob") is None
    job.wait(60)
    bob = registry.start("bob", TINY, data, store)
    assert registry.get("alice") is job and registry.get("bob") is bob
    bob.wait(60)


def test_a_new_job_replaces_the_sessions_finished_one(registry, data, store):
    first = registry.start("s1", TINY, data, store)
    first.wait(60)
    second = registry.start("s1", TINY, data, store)
    assert registry.get("s1") is second
    second.wait(60)


def test_a_failing_job_reports_its_error(registry, store):
    good = tiny_data()
    bad = MnistData(
        good.train_images, good.train_labels + 10, good.test_images, good.test_labels, good.checksums
    )  # labels 10..19: the loss cannot be computed
    job = registry.start("s1", TINY, bad, store)
    assert job.wait(30)
    snap = job.snapshot()
    assert snap.status == FAILED and snap.error
    assert snap.progress_text.startswith("Failed: ")
    assert registry.slots.running() == 0


def test_default_seconds_estimate(registry, data, store):
    assert registry.default_seconds() == 15  # nothing measured yet: the documented guess
    assert registry.default_seconds(saved=[2.6, 3.4, 9.0]) == 3
    # Home's one-click model is the draw preset; the CLI's default (the seed recipe) is not it.
    assert ONE_CLICK_PRESET == "draw"
    assert is_one_click_recipe(PRESETS["draw"].with_(device="cpu", report_every=10))
    assert not is_one_click_recipe(PRESETS["draw"].with_(hidden=64))
    assert not is_one_click_recipe(PRESETS["default"])


def test_forget_stops_a_running_job(registry, data, store):
    job = registry.start("s1", LONG, data, store)
    registry.forget("s1")
    assert registry.get("s1") is None
    assert job.wait(10)


def test_browser_key_is_stable_across_page_loads_and_private_to_a_browser():
    from ui.jobs import browser_key

    # Two page loads of one browser (cookie re-masked) and one load of another, as Streamlit 1.67 set them.
    load1 = "2|27866780|65cd692799f801891f721e423b42e3b5|1795789655"
    load2 = "2|b9062854|fb4d26f307784e5d81f25196a5c2ac61|1795789655"
    other = "2|74908410|90c59394d31084003dd1a8a8602422df|1795789660"
    assert browser_key(load1) == browser_key(load2)
    assert browser_key(load1) != browser_key(other)
    assert "424b0ea7" not in browser_key(load1)  # the secret token itself is never the key
    for bad in (None, "", "garbage", "1|00|11|2", "2|zz|11|2", "2|00112233||5"):
        assert browser_key(bad) is None


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("keep_if_abandoned", [False, True])
def test_a_job_whose_browser_went_away_stops_itself_and_frees_its_slot(registry, data, store, keep_if_abandoned):
    clock = FakeClock()
    job = registry.start("gone", LONG, data, store, clock=clock, abandon_after=180, keep_if_abandoned=keep_if_abandoned)
    wait_for(lambda: job.snapshot().last_batch is not None)
    clock.now += 179  # polls stop, but not for long enough yet
    time.sleep(0.2)  # a few more events arrive (each one checks the clock)
    assert job.running
    clock.now += 2  # 181 s since the last poll
    assert job.wait(10), "the job did not stop itself"
    snap = job.snapshot()
    assert snap.abandoned
    assert registry.slots.running() == 0  # its slot is free for others
    if keep_if_abandoned:
        assert snap.status == KEPT and snap.run_info is not None and snap.run_info.stopped
        assert [r.run_id for r in store.list()] == [snap.run_info.run_id]
        assert store.info(snap.run_info.run_id).extra["abandoned"] is True
        assert "page was closed" in snap.progress_text
    else:
        assert snap.status == DISCARDED and store.list() == []


def test_polls_keep_a_job_alive(registry, data, store):
    clock = FakeClock()
    job = registry.start("here", LONG, data, store, clock=clock, abandon_after=180)
    wait_for(lambda: job.snapshot().last_batch is not None)
    for _ in range(5):  # ten minutes of fake time, polled every 100 s
        clock.now += 100
        job.touch()
        time.sleep(0.05)
    assert job.running and not job.snapshot().abandoned


def test_keep_is_atomic_two_tabs_save_one_run(registry, data, store):
    import threading

    job = registry.start("s1", LONG, data, store)
    wait_for(lambda: job.snapshot().last_batch is not None)
    job.stop()
    assert job.wait(10)
    outcomes: list[object] = []
    barrier = threading.Barrier(3)

    def act(fn) -> None:
        barrier.wait()
        try:
            outcomes.append(fn())
        except JobError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=act, args=(f,)) for f in (job.keep, job.keep, job.discard)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [o for o in outcomes if isinstance(o, JobError)]
    assert len(errors) == 2, outcomes  # exactly one of keep / keep / discard wins
    assert len(store.list()) == (1 if job.status == KEPT else 0)
    assert job.status in (KEPT, DISCARDED)


def test_jobs_run_in_their_own_process(registry, data, store):
    import os

    job = registry.start("s1", LONG, data, store)
    wait_for(lambda: job.snapshot().last_batch is not None)
    assert job._handle.pid != os.getpid() and job._handle.alive
    registry.shutdown(timeout=10)
    assert not job._handle.alive


def test_statuses_are_one_enum_shared_with_tasks_and_sweeps():
    from ui.sweep_job import Step

    assert RUNNING is Status.RUNNING and RUNNING == "running"
    assert {s.value for s in Status} >= {
        "running",
        "finished",
        "stopped",
        "kept",
        "discarded",
        "failed",
        "waiting",
        "skipped",
    }
    assert Step(value=1, config=TINY).status is Status.WAITING


def test_a_process_that_exits_with_a_job_running_stops_it_cleanly(tmp_path):
    """The server's exit (atexit) stops its jobs: no 'terminate called…', no job process left behind."""
    import subprocess
    import sys
    from pathlib import Path

    script = f"""
import sys, time
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
from test_ui_jobs import LONG, tiny_data
from mnistcore.runs import RunStore
from ui.jobs import REGISTRY
job = REGISTRY.start("s", LONG, tiny_data(), RunStore({str(tmp_path / "runs")!r}))
while job.snapshot().last_batch is None:
    time.sleep(0.05)
print(job._handle.pid, flush=True)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "terminate called" not in done.stderr
    pid = int(done.stdout.split()[-1])
    stat = Path(f"/proc/{pid}/stat")
    wait_for(lambda: not stat.exists() or stat.read_text().split()[2] == "Z", timeout=10)


def test_a_dashboard_run_can_be_continued_exactly(registry, data, store):
    """The job saves the optimizer and random states with the run, under its name and parent."""
    job = registry.start("s1", TINY, data, store, name="first try", parent=None)
    assert job.wait(60) and job.status == FINISHED
    info = job.snapshot().run_info
    state, saved = store.load_state(info.run_id)
    assert saved.name == "first try"
    assert state.optimizer == "adam" and state.optimizer_state and state.rng_state
    assert saved.train_seconds > 0


def test_a_job_keeps_only_the_latest_picture_of_its_units_and_saves_their_snapshots(registry, data, store):
    job = registry.start("s1", TINY, data, store)
    assert job.wait(60)
    snap = job.snapshot()
    assert snap.units is not None and snap.units.units is not None and snap.units.units.shape == (16, 784)
    # The events list (kept for the curves) holds no pictures: only the latest one is kept, apart from it.
    assert all(e.units is None for e in snap.events if isinstance(e, BatchEvent))
    assert any(e.step == snap.units.step for e in snap.events if isinstance(e, BatchEvent))
    saved = store.load_snapshots(snap.run_info)
    assert saved is not None and saved.epochs.tolist() == [0, 1, 2]
