"""AppTest: Inside the network replays the watched units epoch by epoch; runs without snapshots say so."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mnistcore.runs import RunStore
from mnistcore.snapshots import SNAPSHOTS, UnitSnapshots, watched_units
from tests.app.conftest import SMALL
from tests.app.test_network import PAGE, open_page

ACCURACY = [0.81, 0.9, 0.925]  # epochs 1..3 of the made-up history


def _replay_source(at) -> str:
    """The replay grid's picture, as the figure sent to the browser holds it."""
    chart = next(c for c in at.get("plotly_chart") if c.key == "net_replay_grid")
    return json.loads(chart.proto.spec)["data"][0]["source"]


@pytest.fixture
def replay_runs(small_run, tmp_path):
    """A runs dir whose newest run has four snapshots (epochs 0..3), each a different picture."""
    runs = tmp_path / "runs"
    shutil.copytree(small_run[0], runs)
    store = RunStore(runs)
    model, _ = store.load(small_run[1].run_id)
    rng = np.random.default_rng(0)
    snaps = UnitSnapshots(watched_units(32), np.arange(4), rng.standard_normal((4, 16, 784)).astype(np.float16))
    history = [{"epoch": e, "test_accuracy": a, "test_loss": 1.0 - a} for e, a in enumerate(ACCURACY, 1)]
    info = store.save(
        model,
        SMALL.with_(epochs=3),
        test_accuracy=ACCURACY[-1],
        train_seconds=1.0,
        history=history,
        dataset={},
        unit_snapshots=snaps,
    )
    return runs, info


@pytest.mark.slow
def test_the_epoch_slider_replays_the_units_and_the_accuracy(make_app, replay_runs):
    runs, _ = replay_runs
    at = open_page(make_app(runs), PAGE)
    assert not at.exception
    assert "How the units formed" in [s.value for s in at.subheader]
    slider = at.slider(key="net_replay_epoch")
    assert (slider.min, slider.max, slider.value) == (0, 3, 3)  # opens on the last epoch
    assert at.metric[0].label == "Test accuracy after epoch 3" and at.metric[0].value == "92.50%"
    last = _replay_source(at)

    slider.set_value(1).run()
    assert not at.exception
    assert at.metric[0].label == "Test accuracy after epoch 1" and at.metric[0].value == "81.00%"
    first = _replay_source(at)
    assert first != last  # another epoch, another picture

    at.slider(key="net_replay_epoch").set_value(2).run()
    assert at.metric[0].value == "90.00%" and "+9.00 points" in str(at.metric[0].proto.delta)

    at.slider(key="net_replay_epoch").set_value(0).run()  # the random start: no accuracy measured yet
    assert at.metric[0].label == "Test accuracy before training" and at.metric[0].value == "—"
    assert any("before training" in c.value for c in at.caption)
    assert _replay_source(at) not in (first, last)


@pytest.mark.slow
def test_a_run_saved_before_snapshots_says_there_is_no_replay(make_app, small_run):
    at = open_page(make_app(small_run[0]), PAGE)  # saved without snapshots, as every run before them
    assert not at.exception
    assert any("no replay for this run" in i.value for i in at.info)
    assert not [c for c in at.get("plotly_chart") if c.key == "net_replay_grid"]
    assert "Each digit's template" in [s.value for s in at.subheader]  # the rest of the page is there


@pytest.mark.slow
def test_a_damaged_snapshots_file_is_said_never_a_crash(make_app, replay_runs):
    runs, info = replay_runs
    (info.path / SNAPSHOTS).write_bytes(b"not safetensors")
    at = open_page(make_app(runs), PAGE)
    assert not at.exception
    assert any("no replay for this run" in w.value and "cannot be read" in w.value for w in at.warning)
    assert not [c for c in at.get("plotly_chart") if c.key == "net_replay_grid"]
