"""The reliability diagram on the Confusion matrix page: a calibrated run, and a run saved before calibration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mnistcore.calibration import reliability_pair
from mnistcore.data import load_mnist
from mnistcore.evaluate import Evaluation, evaluate
from mnistcore.runs import RunStore, save_result
from mnistcore.train import train
from tests.app.conftest import SMALL
from tests.app.test_network import plotly_array
from tests.app.test_pages import markdown_text, open_page


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory: pytest.TempPathFactory, app_data_dir: Path) -> tuple[Path, dict, Evaluation]:
    """A runs dir with one small model saved as every trainer saves it (calibration record included)."""
    data = load_mnist(app_data_dir)
    result = train(SMALL, data)  # SMALL keeps the default holdout: 5000 training images fit its temperature
    runs = tmp_path_factory.mktemp("calibrated") / "runs"
    info, why = save_result(RunStore(runs), result, dataset=data.checksums)
    assert why is None and info.calibration is not None
    model, _ = RunStore(runs).load(info.run_id)
    ev = evaluate(model, data.test_images, data.test_labels)
    return runs, info.calibration, ev


def _figure(at) -> dict:
    chart = next(c for c in at.get("plotly_chart") if c.key == "cm_reliability")
    return json.loads(chart.proto.spec)


def test_the_calibrated_run_shows_its_reliability_after_and_before(make_app, calibrated_run) -> None:
    runs, record, ev = calibrated_run
    at = open_page(make_app(runs), "app_pages/confusion.py")
    assert not at.exception
    text = markdown_text(at)
    assert "When it says 90 %, it should be right about 9 times in 10" in text
    assert not any("before calibration existed" in i.value for i in at.info)
    after, before = reliability_pair(ev.logits, ev.labels, record["temperature"])
    data = _figure(at)["data"]
    assert [t["name"] for t in data[1:]] == [
        f"before calibration (ECE {before.ece:.2%})",
        f"shown, calibrated (ECE {after.ece:.2%})",
    ]
    full = [b for b in after.bins if b.count]
    assert np.allclose(plotly_array(data[2]["y"]), [b.accuracy for b in full])
    top = max(full, key=lambda b: b.count)
    assert f"For the {top.count:,} test images where it said between" in text
    caption = " ".join(c.value for c in at.caption)
    assert f"T = {record['temperature']:.2f}" in caption and f"{record['holdout']:,} training images" in caption


def test_a_run_saved_before_calibration_says_so_and_shows_one_curve(make_app, small_run) -> None:
    runs, info = small_run
    assert info.calibration is None  # saved without a calibration record, as runs were before it existed
    at = open_page(make_app(runs), "app_pages/confusion.py")
    assert not at.exception
    assert any("saved before calibration existed" in i.value for i in at.info)
    data = _figure(at)["data"]
    assert len(data) == 2 and "uncalibrated" in data[1]["name"]
