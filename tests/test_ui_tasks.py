"""Background tasks (ui/tasks.py): plain Python, no Streamlit."""

from __future__ import annotations

import threading

import pytest

from ui.jobs import JobBusyError, JobLimitError
from ui.tasks import FAILED, FINISHED, STOPPED, TaskRegistry


@pytest.fixture
def registry():
    reg = TaskRegistry(max_running=2)
    yield reg
    reg.shutdown()


def _blocking(release: threading.Event):
    def work(task, stop):
        task.progress(0.5, "half way")
        while not release.wait(0.01):
            if stop.is_set():
                return None
        return 42
    return work


def test_a_task_reports_progress_and_its_result(registry: TaskRegistry) -> None:
    release = threading.Event()
    task = registry.start("s1", "k", _blocking(release))
    for _ in range(200):
        if task.snapshot().fraction == 0.5:
            break
        threading.Event().wait(0.01)
    snap = task.snapshot()
    assert snap.running and snap.fraction == 0.5 and snap.message == "half way"
    release.set()
    assert task.wait(5)
    snap = task.snapshot()
    assert snap.status == FINISHED and snap.result == 42 and snap.fraction == 1.0
    assert registry.get("s1", "k") is task and registry.get("s2", "k") is None


def test_stop_failure_busy_and_limit(registry: TaskRegistry) -> None:
    release = threading.Event()
    a = registry.start("s1", "k", _blocking(release))
    with pytest.raises(JobBusyError):
        registry.start("s1", "k", _blocking(release))
    b = registry.start("s1", "other", _blocking(release))  # another kind for the same browser is fine
    with pytest.raises(JobLimitError):
        registry.start("s2", "k", _blocking(release))  # the server-wide cap
    a.stop()
    assert a.wait(5) and a.snapshot().status == STOPPED
    release.set()
    assert b.wait(5)

    def boom(task, stop):
        raise ValueError("bad input")

    c = registry.start("s3", "k", boom)
    assert c.wait(5)
    snap = c.snapshot()
    assert snap.status == FAILED and "bad input" in snap.error


def test_progress_spans_and_train_events(registry: TaskRegistry) -> None:
    from mnistcore.train import BatchEvent

    def work(task, stop):
        task.span = (0.0, 0.5)
        task.on_train_event(BatchEvent(epoch=1, epochs=1, batch=5, batches=10, step=5, total_steps=10, loss=1.0,
                                       train_accuracy=0.5, elapsed=1.0, eta=1.0))
        task.span = (0.5, 1.0)
        task.progress(0.0)  # never goes backwards
        return task.snapshot().fraction, task.snapshot().message

    t = registry.start("s", "k", work)
    assert t.wait(5)
    fraction, message = t.snapshot().result
    assert fraction == 0.5 and message.startswith("Epoch 1/1 · batch 5/10")
