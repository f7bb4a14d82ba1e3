"""Calibration: ECE and reliability bins, the fitted temperature, the held-out split, storage, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.calibration import calibration_curve

from mnistcore.calibration import (
    evaluation_report,
    expected_calibration_error,
    fit_temperature,
    holdout_size,
    reliability,
    shown_probabilities,
    split_holdout,
)
from mnistcore.cli import main
from mnistcore.config import MAX_HOLDOUT, TrainConfig
from mnistcore.data import MnistData
from mnistcore.drawings import mix_drawings
from mnistcore.explain import explain, net_weights
from mnistcore.label_issues import DEFAULT_CONFIG, Recipe
from mnistcore.runs import RunStore, save_result
from mnistcore.train import train

QUICK = dict(hidden=32, epochs=2, batch_size=32, lr=3e-3, device="cpu")


def run_cli(*args: str | Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- ECE and bins


def test_ece_of_a_hand_computed_case() -> None:
    # Top probabilities 0.9, 0.9, 0.6, 0.6, 0.3 (bins 14, 14, 9, 9, 4 of 15); the first, third and fifth right.
    probs = np.array(
        [
            [0.9, 0.1, 0.0, 0.0],
            [0.1, 0.9, 0.0, 0.0],
            [0.6, 0.4, 0.0, 0.0],
            [0.4, 0.6, 0.0, 0.0],
            [0.3, 0.25, 0.25, 0.2],
        ]
    )
    labels = np.array([0, 0, 0, 0, 0])
    r = reliability(probs, labels)
    filled = [(b.count, b.confidence, b.accuracy) for b in r.bins if b.count]
    assert filled == [(1, pytest.approx(0.3), 1.0), (2, pytest.approx(0.6), 0.5), (2, pytest.approx(0.9), 0.5)]
    # (1 * |1 - 0.3| + 2 * |0.5 - 0.6| + 2 * |0.5 - 0.9|) / 5
    assert r.ece == pytest.approx((0.7 + 0.2 + 0.8) / 5)
    assert len(r.bins) == 15 and r.bins[0].lower == 0.0 and r.bins[-1].upper == 1.0
    assert [b["count"] for b in r.to_json()] == [1, 2, 2]


def test_bins_and_ece_match_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(5000, 10))
    labels = rng.integers(0, 10, 5000)
    labels[:3000] = logits[:3000].argmax(1)  # a mostly right, over-confident-looking model
    probs = shown_probabilities(logits)
    conf, correct = probs.max(1), (probs.argmax(1) == labels)
    # scikit-learn's uniform bins on (confidence, correct): the same edges, the same side of each edge.
    acc_ref, conf_ref = calibration_curve(correct, conf, n_bins=15, strategy="uniform")
    r = reliability(probs, labels)
    filled = [b for b in r.bins if b.count]
    np.testing.assert_allclose([b.accuracy for b in filled], acc_ref)
    np.testing.assert_allclose([b.confidence for b in filled], conf_ref)
    counts = np.array([b.count for b in filled])
    assert counts.sum() == 5000
    assert r.ece == pytest.approx(float(np.sum(counts / 5000 * np.abs(acc_ref - conf_ref))))
    assert expected_calibration_error(probs, labels) == r.ece
    # A confidence exactly on an edge goes to the bin below it, as in scikit-learn (and Guo et al.).
    edge = np.array([[2 / 3, 1 / 3]])
    assert [b.count for b in reliability(edge, np.array([0])).bins].index(1) == 9


def test_shown_probabilities_array_and_tensor_agree() -> None:
    z = np.array([[2.0, 0.5, -1.0, 0.0, 0, 0, 0, 0, 0, 3.0]])
    for t in (1.0, 0.5, 2.5):
        p_np = shown_probabilities(z, t)
        p_t = shown_probabilities(torch.from_numpy(z), t).numpy()
        np.testing.assert_allclose(p_np, p_t, rtol=1e-12)
        np.testing.assert_allclose(p_np, np.exp(z / t) / np.exp(z / t).sum(), rtol=1e-12)
        assert p_np.argmax() == z.argmax()  # a temperature never changes the answer
    with pytest.raises(ValueError, match="temperature"):
        shown_probabilities(z, 0.0)


@pytest.mark.parametrize("true_t", [0.7, 1.0, 2.0])
def test_fit_temperature_recovers_the_one_that_made_the_labels(true_t: float) -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 4, size=(20000, 10))
    p = shown_probabilities(logits, true_t)
    labels = np.array([rng.choice(10, p=row) for row in p])
    assert fit_temperature(logits, labels) == pytest.approx(true_t, rel=0.05)
    assert fit_temperature(np.zeros((0, 10)), np.zeros(0, np.int64)) == 1.0


# ---------------------------------------------------------------- the held-out split


def test_holdout_size_rules() -> None:
    assert holdout_size(5000, 60000) == (5000, None)
    n, note = holdout_size(5000, 12000)  # more than a sixth: a twelfth instead, said so
    assert n == 1000 and note is not None and "twelfth" in note
    n, note = holdout_size(5000, 600)  # too small to hold anything out: none, said so
    assert n == 0 and note is not None and "too few" in note
    n, note = holdout_size(0, 60000)
    assert n == 0 and note is not None and "holdout 0" in note
    assert holdout_size(100, 600) == (100, None)


@pytest.mark.parametrize("bad", [-1, MAX_HOLDOUT + 1, 1.5, True, "10"])
def test_config_refuses_bad_holdouts(bad: object) -> None:
    with pytest.raises(ValueError, match="holdout"):
        TrainConfig(holdout=bad)  # type: ignore[arg-type]


def test_split_holds_out_the_last_training_images_and_never_the_drawings(tiny_data: MnistData) -> None:
    kept, held, note = split_holdout(tiny_data, 100)
    assert held == 100 and note is None and len(kept.train_labels) == 500
    assert torch.equal(kept.train_images, tiny_data.train_images[:500])
    assert kept.test_images is tiny_data.test_images
    drawings = np.full((2, 28, 28), 200, np.uint8)
    mixed, _ = mix_drawings(tiny_data, drawings, np.array([1, 2]))
    _, held, _ = split_holdout(mixed, 100)
    assert torch.equal(mixed.train_images[-held:], tiny_data.train_images[-held:])  # MNIST's own images


def test_label_issues_recipe_key_is_unchanged_by_the_holdout_field() -> None:
    assert DEFAULT_CONFIG.holdout == 0  # out-of-fold nets train on their whole fold
    assert "holdout" not in Recipe().to_dict()["config"]  # so the shipped results' key still matches


# ---------------------------------------------------------------- training, storage, old runs


@pytest.fixture(scope="module")
def calibrated(tiny_data: MnistData, tmp_path_factory: pytest.TempPathFactory) -> tuple[RunStore, str, object]:
    """A run trained with 100 of the 600 tiny training images held out, saved."""
    result = train(TrainConfig(**QUICK, holdout=100), tiny_data)
    store = RunStore(tmp_path_factory.mktemp("calib-runs"))
    info, _ = save_result(store, result, dataset=tiny_data.checksums)
    return store, info.run_id, result


def test_training_holds_out_and_fits_both_temperatures(calibrated: tuple, tiny_data: MnistData) -> None:
    _, _, result = calibrated
    c = result.calibration
    assert c["holdout"] == 100 and c["holdout_requested"] == 100 and c["note"] is None
    assert result.steps_done == 2 * math.ceil(500 / 32)  # trained on the other 500 only
    assert 0.05 <= c["temperature"] <= 20 and 0.05 <= c["temperature_drawn"] <= 20
    assert c["drawn_distorted"] == 25  # a fifth of the set it is fitted on: 100 clean + 25 distorted
    assert c["nll"] <= c["nll_uncalibrated"] + 1e-9  # the fitted temperature is at least as good as 1
    assert result.model.temperature == c["temperature"]
    assert result.model.temperature_drawn == c["temperature_drawn"]


def test_temperature_is_stored_and_reloaded(calibrated: tuple) -> None:
    store, run_id, result = calibrated
    meta = json.loads((store.root / run_id / "meta.json").read_text())
    assert meta["calibration"]["temperature"] == result.calibration["temperature"]
    model, info = store.load(run_id)
    assert info.calibration == result.calibration and info.config.holdout == 100
    assert model.temperature == result.model.temperature
    assert model.temperature_drawn == result.model.temperature_drawn


def test_a_run_saved_before_calibration_loads_uncalibrated(calibrated: tuple, tmp_path: Path) -> None:
    store, run_id, _ = calibrated
    old = RunStore(tmp_path / "runs")
    (old.root / run_id).mkdir(parents=True)
    for f in ("model.safetensors", "meta.json"):
        (old.root / run_id / f).write_bytes((store.root / run_id / f).read_bytes())
    meta = json.loads((old.root / run_id / "meta.json").read_text())
    del meta["calibration"], meta["config"]["holdout"]  # as written before this change
    (old.root / run_id / "meta.json").write_text(json.dumps(meta))
    model, info = old.load(run_id)
    assert info.calibration is None and info.config.holdout == 0  # it trained on every image
    assert model.temperature == 1.0 == model.temperature_drawn
    x = torch.zeros(1, 784)
    torch.testing.assert_close(model.probabilities(x), torch.softmax(model(x), 1))


def test_a_damaged_temperature_is_refused(calibrated: tuple, tmp_path: Path) -> None:
    store, run_id, _ = calibrated
    meta_path = store.root / run_id / "meta.json"
    good = meta_path.read_text()
    try:
        meta = json.loads(good)
        meta["calibration"]["temperature"] = 0.0
        meta_path.write_text(json.dumps(meta))
        with pytest.raises(ValueError, match="temperature"):
            store.info(run_id)
    finally:
        meta_path.write_text(good)


def test_every_shown_probability_uses_the_runs_temperature(calibrated: tuple, tiny_data: MnistData) -> None:
    from mnistcore.evaluate import evaluate
    from mnistcore.predict import predict_prepared
    from mnistcore.preprocess import prepare_digit

    store, run_id, _ = calibrated
    model, _ = store.load(run_id)
    model.temperature, model.temperature_drawn = 1.7, 0.6  # far apart, so any mix-up shows
    ev = evaluate(model, tiny_data.test_images, tiny_data.test_labels)
    np.testing.assert_allclose(ev.probabilities, shown_probabilities(ev.logits, 1.7), rtol=1e-5, atol=1e-7)
    assert ev.temperature == 1.7
    canvas = np.zeros((280, 280), np.uint8)
    canvas[60:220, 130:150] = 255
    digit = prepare_digit(canvas)
    logits = model(digit.tensor()).detach().double().numpy()[0]
    np.testing.assert_allclose(predict_prepared(model, digit), shown_probabilities(logits, 0.6), rtol=1e-5)
    ex = explain(net_weights(model), digit.pixels)
    np.testing.assert_allclose(ex.probabilities, shown_probabilities(ex.logits, 0.6), rtol=1e-9)


# ---------------------------------------------------------------- the command line


def test_evaluate_json_reports_calibration_and_predict_is_calibrated(
    tiny_data_dir: Path, tiny_data: MnistData, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    args = ["--epochs", "2", "--hidden", "32", "--batch-size", "32", "--lr", "0.003", "--device", "cpu"]
    code, out, err = run_cli(
        "train", "--data-dir", tiny_data_dir, "--runs-dir", runs, *args, "--holdout", "100", "--json", capsys=capsys
    )
    assert code == 0, err
    trained = json.loads(out)
    assert trained["calibration"]["holdout"] == 100 and trained["config"]["holdout"] == 100
    code, out, err = run_cli("evaluate", "--runs-dir", runs, "--data-dir", tiny_data_dir, "--json", capsys=capsys)
    assert code == 0, err
    c = json.loads(out)["calibration"]
    assert {"ece", "temperature", "bins", "ece_uncalibrated"} <= set(c)
    assert c["temperature"] == trained["calibration"]["temperature"]
    assert all(set(b) == {"confidence", "accuracy", "count"} for b in c["bins"])
    assert sum(b["count"] for b in c["bins"]) == 200
    model, _ = RunStore(runs).load(trained["run_id"])
    x = (tiny_data.test_images.float() / 255 - 0.1307) / 0.3081  # MNIST's normalisation, written out
    expected = evaluation_report(
        model(x.reshape(-1, 784)).detach().numpy(), tiny_data.test_labels.numpy(), c["temperature"]
    )
    assert c["ece"] == pytest.approx(expected["ece"], abs=1e-6)
    assert c["ece_uncalibrated"] == pytest.approx(expected["ece_uncalibrated"], abs=1e-6)

    # predict shows softmax(logits / T) with the run's temperature for drawn digits, not plain softmax.
    assert model.temperature_drawn == trained["calibration"]["temperature_drawn"]
    canvas = np.zeros((280, 280), np.uint8)
    canvas[60:220, 130:150] = 255
    Image.fromarray(canvas).save(tmp_path / "one.png")
    code, out, err = run_cli("predict", "--runs-dir", runs, tmp_path / "one.png", capsys=capsys)
    assert code == 0, err
    shown = np.array(json.loads(out)["probabilities"])
    from mnistcore.preprocess import prepare_digit

    logits = model(prepare_digit(canvas).tensor()).detach().double().numpy()[0]
    np.testing.assert_allclose(shown, shown_probabilities(logits, model.temperature_drawn), atol=2e-6)
    if abs(model.temperature_drawn - 1) > 0.05:
        assert np.abs(shown - shown_probabilities(logits, 1.0)).max() > 1e-4
