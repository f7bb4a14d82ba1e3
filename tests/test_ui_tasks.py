"""Background tasks (ui/tasks.py): each in its own process, plain Python, no Streamlit."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ui.background import JobBusyError, JobLimitError, SlotRegistry, Status
from ui.tasks import TaskRegistry

FINISHED, STOPPED, FAILED = Status.FINISHED, Status.STOPPED, Status.FAILED

# Task functions live at module level: they are sent to the task's process by reference.


def blocking(task, stop, release: str):
    """Half way, then wait until the file `release` exists (or a stop): 42, with the process's pid."""
    task.progress(0.5, "half way")
    while not Path(release).exists():
        if stop.is_set():
            return None
        time.sleep(0.01)
    return 42, os.getpid()


def boom(task, stop):
    raise ValueError("bad input")


def spans(task, stop):
    from mnistcore.train import BatchEvent

    task.span = (0.0, 0.5)
    task.on_train_event(
        BatchEvent(
            epoch=1,
            epochs=1,
            batch=5,
            batches=10,
            step=5,
            total_steps=10,
            loss=1.0,
            train_accuracy=0.5,
            elapsed=1.0,
            eta=1.0,
        )
    )
    task.span = (0.5, 1.0)
    task.progress(0.0)  # never goes backwards
    return task.snapshot().fraction, task.snapshot().message


@pytest.fixture
def registry():
    reg = TaskRegistry(SlotRegistry(max_running=2))
    yield reg
    reg.shutdown()


def wait_for(predicate, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError("condition not reached in time")


def test_a_task_reports_progress_and_its_result_from_its_own_process(registry: TaskRegistry, tmp_path) -> None:
    release = tmp_path / "go"
    task = registry.start("s1", "k", blocking, str(release))
    wait_for(lambda: task.snapshot().fraction == 0.5)
    snap = task.snapshot()
    assert snap.running and snap.message == "half way"
    release.touch()
    assert task.wait(30)
    snap = task.snapshot()
    assert snap.status == FINISHED and snap.result[0] == 42 and snap.fraction == 1.0
    assert snap.result[1] != os.getpid()  # it ran in a child process, not in the server
    assert registry.get("s1", "k") is task and registry.get("s2", "k") is None


def test_stop_failure_busy_and_limit(registry: TaskRegistry, tmp_path) -> None:
    release = tmp_path / "go"
    a = registry.start("s1", "k", blocking, str(release))
    with pytest.raises(JobBusyError):
        registry.start("s1", "k", blocking, str(release))
    b = registry.start("s1", "other", blocking, str(release))  # another kind for the same browser is fine
    with pytest.raises(JobLimitError):
        registry.start("s2", "k", blocking, str(release))  # the server-wide cap
    a.stop()
    assert a.wait(30) and a.snapshot().status == STOPPED
    release.touch()
    assert b.wait(30)

    c = registry.start("s3", "k", boom)
    assert c.wait(30)
    snap = c.snapshot()
    assert snap.status == FAILED and "bad input" in snap.error


def test_progress_spans_and_train_events(registry: TaskRegistry) -> None:
    t = registry.start("s", "k", spans)
    assert t.wait(30)
    fraction, message = t.snapshot().result
    assert fraction == 0.5 and message.startswith("Epoch 1/1 · batch 5/10")
    assert t.snapshot().fraction == 1.0
