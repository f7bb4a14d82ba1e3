"""Pictures of the watched hidden units: live on progress events, one per epoch saved with the run, old runs."""

from __future__ import annotations

import logging
import os
import threading

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from mnistcore.config import TrainConfig
from mnistcore.data import MnistData
from mnistcore.runs import RunError, RunStore, run_size_estimate, save_result
from mnistcore.snapshots import SNAPSHOTS, WATCHED, Recorder, watched_units
from mnistcore.train import BatchEvent, train

FAST = TrainConfig(hidden=32, epochs=3, batch_size=32, lr=3e-3, device="cpu", holdout=100)
BYTES_PER_EPOCH = WATCHED * 784 * 2 + 4  # float16 weights + an int32 epoch number


def _watched_rows(model: torch.nn.Module) -> np.ndarray:
    return model.fc1.weight.detach()[:WATCHED].to(torch.float16).numpy()


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs")


@pytest.fixture(scope="module")
def trained(tiny_data: MnistData):
    """One run, shared: tests read it and never change it."""
    return train(FAST, tiny_data)


def test_one_snapshot_per_epoch_plus_the_start(trained) -> None:
    s = trained.unit_snapshots
    assert s is not None
    assert s.units.tolist() == list(range(16)) and s.epochs.tolist() == [0, 1, 2, 3]
    assert s.weights.shape == (4, 16, 784) and s.weights.dtype == np.float16
    np.testing.assert_array_equal(s.weights[-1], _watched_rows(trained.model))  # the last is the final model
    assert not np.array_equal(s.weights[0], s.weights[1])  # training moved them
    assert s.at(2).shape == (16, 28, 28) and s.at(2).dtype == np.float32
    assert s.bytes_per_epoch == BYTES_PER_EPOCH
    with pytest.raises(KeyError):
        s.at(4)


def test_the_start_snapshot_is_the_initial_weights(tiny_data: MnistData) -> None:
    stop = threading.Event()
    stop.set()  # stopped before the first batch: the model is the initial one
    result = train(FAST, tiny_data, stop=stop)
    assert result.unit_snapshots is not None and result.unit_snapshots.epochs.tolist() == [0]
    np.testing.assert_array_equal(result.unit_snapshots.weights[0], _watched_rows(result.model))


def test_live_pictures_ride_on_progress_events_only_when_asked(tiny_data: MnistData) -> None:
    quiet: list = []
    train(FAST.with_(epochs=1), tiny_data, on_event=quiet.append)
    assert all(e.units is None for e in quiet if isinstance(e, BatchEvent))
    events: list = []
    result = train(FAST.with_(report_every=2), tiny_data, on_event=events.append, units_every=0.0)
    batches = [e for e in events if isinstance(e, BatchEvent)]
    assert all(e.units is not None and e.units.shape == (16, 784) for e in batches)
    # The last event comes after the last step: its picture is the final model's.
    np.testing.assert_array_equal(batches[-1].units, _watched_rows(result.model))
    assert batches[0] == batches[0]  # an event with a picture still compares (and hashes) as before
    hash(batches[0])


def test_live_pictures_are_throttled_in_time() -> None:
    rec = Recorder(32, None, 0, every=3600.0)
    w1 = torch.randn(32, 784)
    assert rec.live(w1) is not None  # the first one at once
    assert rec.live(w1) is None  # then not before an hour has passed
    assert Recorder(32, None, 0).live(w1) is None  # not asked for


def test_snapshots_are_saved_with_the_run_and_read_back(trained, tiny_data, store) -> None:
    info, why = save_result(store, trained, dataset=tiny_data.checksums)
    assert why is None
    path = info.path / SNAPSHOTS
    assert path.is_file()
    # 4 snapshots of 16 x 784 float16 + their epoch numbers + the 16 unit numbers, and a small JSON header.
    assert 4 * BYTES_PER_EPOCH + 16 * 8 < path.stat().st_size < 4 * BYTES_PER_EPOCH + 16 * 8 + 512
    loaded = store.load_snapshots(info)
    assert loaded is not None
    np.testing.assert_array_equal(loaded.weights, trained.unit_snapshots.weights)
    assert loaded.epochs.tolist() == [0, *[h["epoch"] for h in info.history]]
    assert run_size_estimate(FAST) >= 4 * BYTES_PER_EPOCH


def test_a_run_saved_before_snapshots_loads_and_has_none(trained, tiny_data, store) -> None:
    old = store.save(
        trained.model,
        trained.config,
        test_accuracy=trained.test_accuracy,
        train_seconds=1.0,
        history=trained.history,
        dataset=tiny_data.checksums,
    )
    assert not (old.path / SNAPSHOTS).exists()
    model, info = store.load(old.run_id)
    assert store.load_snapshots(info) is None
    # Continuing it starts a replay at its last epoch (the weights the new run starts from).
    init, _ = store.load_state(old.run_id)
    assert init.unit_snapshots is None
    more = train(FAST.with_(epochs=1), tiny_data, init=init)
    assert more.unit_snapshots is not None and more.unit_snapshots.epochs.tolist() == [3, 4]
    np.testing.assert_array_equal(more.unit_snapshots.weights[0], _watched_rows(model))


def test_a_continued_run_extends_its_parents_replay(trained, tiny_data, store) -> None:
    parent, _ = save_result(store, trained, dataset=tiny_data.checksums)
    init, _ = store.load_state(parent.run_id)
    more = train(FAST.with_(epochs=2), tiny_data, init=init)
    child, _ = save_result(store, more, dataset=tiny_data.checksums, parent=parent.run_id)
    s = store.load_snapshots(child)
    assert s is not None and s.epochs.tolist() == [0, 1, 2, 3, 4, 5]
    np.testing.assert_array_equal(s.weights[:4], trained.unit_snapshots.weights)
    np.testing.assert_array_equal(s.weights[-1], _watched_rows(more.model))


def _write(path, **tensors) -> None:
    base = {
        "units": np.arange(16, dtype=np.int64),
        "epochs": np.arange(3, dtype=np.int32),
        "weights": np.zeros((3, 16, 784), np.float16),
    }
    save_file({**base, **tensors}, str(path))


@pytest.mark.parametrize(
    ("tensors", "why"),
    [
        ({"weights": np.zeros((3, 16, 784), np.float32)}, "expected float16"),
        ({"units": np.arange(1, 17, dtype=np.int64)}, "watched units"),
        ({"epochs": np.array([0, 2, 3], np.int32)}, "consecutive"),
        ({"weights": np.full((3, 16, 784), np.inf, np.float16)}, "non-finite"),
        ({"extra": np.zeros(1, np.float32)}, "expected epochs, units and weights"),
    ],
)
def test_a_foreign_or_damaged_snapshots_file_is_refused(trained, tiny_data, store, tensors, why, caplog) -> None:
    info, _ = save_result(store, trained, dataset=tiny_data.checksums)
    _write(info.path / SNAPSHOTS, **tensors)
    with pytest.raises(RunError, match=why):
        store.load_snapshots(info)
    # The run itself still loads and can be continued: its replay then starts afresh.
    store.load(info.run_id)
    with caplog.at_level(logging.WARNING):
        init, _ = store.load_state(info.run_id)
    assert init.unit_snapshots is None and "snapshots are not continued" in caplog.text


def test_not_a_snapshots_file_at_all(trained, tiny_data, store) -> None:
    info, _ = save_result(store, trained, dataset=tiny_data.checksums)
    path = info.path / SNAPSHOTS
    path.write_bytes(b"\x80\x04pickle? no")
    with pytest.raises(RunError, match="not a valid snapshots file"):
        store.load_snapshots(info)
    path.unlink()
    os.symlink("/dev/zero", path)  # not a regular file: never read
    with pytest.raises(RunError, match="not a valid snapshots file"):
        store.load_snapshots(info)


def test_huge_weights_stay_finite_in_float16() -> None:
    rec = Recorder(16, None, 0)
    w1 = torch.zeros(16, 784)
    w1[0, 0] = 1e6
    rec.epoch(0, w1)
    s = rec.result()
    assert np.isfinite(s.weights).all() and float(s.weights[0, 0, 0]) == 65504.0


def test_watched_units() -> None:
    assert watched_units(128).tolist() == list(range(16)) and watched_units(16).tolist() == list(range(16))
    assert watched_units(8).tolist() == list(range(8))  # a narrower net than the config allows: all of it
