"""Exact integrated gradients, per-input explanations, hidden-unit summaries, --prepared and `explain` CLI."""

from __future__ import annotations

import contextlib
import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mnistcore.cli import main
from mnistcore.config import TrainConfig
from mnistcore.data import MnistData
from mnistcore.explain import (
    active_fraction,
    blank_input,
    explain,
    integrated_gradients,
    net_weights,
    read_prepared,
    unit_summaries,
)
from mnistcore.model import ShallowNet
from mnistcore.normalize import normalize
from mnistcore.preprocess import ImageReadError
from mnistcore.runs import RunStore
from mnistcore.train import train

TINY = dict(epochs=2, hidden=32, batch_size=32, lr=0.003, device="cpu")


def riemann_ig(model: ShallowNet, pixels: np.ndarray, k: int, steps: int = 20000) -> np.ndarray:
    """Integrated gradients of logit k by autograd on a midpoint Riemann sum, in float64: (784,)."""
    net = ShallowNet(model.hidden).double()
    net.load_state_dict({name: t.double() for name, t in model.state_dict().items()})
    net.eval()
    x = normalize(torch.from_numpy(np.asarray(pixels, np.float32))[None]).double()[0]
    b = torch.from_numpy(blank_input())
    total = torch.zeros(784, dtype=torch.float64)
    for start in range(0, steps, 5000):
        t = (torch.arange(start, min(start + 5000, steps), dtype=torch.float64) + 0.5) / steps
        path = (b + t[:, None] * (x - b)).requires_grad_(True)
        net(path)[:, k].sum().backward()
        total += path.grad.sum(0)
    return ((x - b) * total / steps).numpy()


def random_net(hidden: int, seed: int) -> ShallowNet:
    """A random net whose biases make many hidden units switch on or off along the path from the blank."""
    torch.manual_seed(seed)
    model = ShallowNet(hidden).eval()
    with torch.no_grad():
        model.fc1.bias.normal_(0, 2.0)
        model.fc2.weight.normal_(0, 1.0)
    return model


def switching_units(model: ShallowNet, pixels: np.ndarray) -> int:
    """How many hidden units change sign strictly inside the path (the case a closed form must get right)."""
    w = net_weights(model)
    z1 = w.w1 @ normalize(torch.from_numpy(pixels)[None]).double().numpy()[0] + w.b1
    frac = active_fraction(w.z_baseline, z1)
    return int(((frac > 0) & (frac < 1)).sum())


@pytest.fixture(scope="module")
def tiny_run(tiny_data: MnistData, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A run trained on the tiny data, saved: (runs dir, run id)."""
    runs = tmp_path_factory.mktemp("explain-runs")
    config = TrainConfig(**TINY)
    result = train(config, tiny_data)
    info = RunStore(runs).save(
        result.model,
        config,
        test_accuracy=result.test_accuracy,
        train_seconds=result.train_seconds,
        history=result.history,
        dataset={},
    )
    return runs, info.run_id


# ---------------------------------------------------------------- the closed form


def test_active_fraction_by_hand() -> None:
    z0 = np.array([-1.0, 1.0, 2.0, -2.0, 0.5, -0.5, 0.0, 0.0, -1.0, 3.0])
    z1 = np.array([1.0, -1.0, 3.0, -1.0, 0.5, -0.5, 4.0, -4.0, 0.0, 0.0])
    # off->on at t=.5, on->off at t=.5, always on, always off, flat on, flat off, on from 0, off from 0,
    # reaches 0 only at t=1, reaches 0 only at t=1 from above
    expected = [0.5, 0.5, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    np.testing.assert_allclose(active_fraction(z0, z1), expected, atol=1e-15)
    # a quarter of the way: z = -1 + 4t is positive for t > 1/4
    assert active_fraction(np.array([-1.0]), np.array([3.0]))[0] == pytest.approx(0.75)


@pytest.mark.parametrize(("hidden", "seed"), [(16, 0), (128, 1), (2048, 2)])
def test_completeness_on_random_weights(hidden: int, seed: int) -> None:
    model = random_net(hidden, seed)
    rng = np.random.default_rng(seed)
    for _ in range(5):
        pixels = (rng.random((28, 28)) * (rng.random((28, 28)) < 0.3)).astype(np.float32)
        ex = explain(model, pixels, classes=list(range(10)))
        assert sorted(ex.attributions) == list(range(10))
        for k, attr in ex.attributions.items():
            target = ex.logits[k] - ex.baseline_logits[k]
            assert attr.sum() == pytest.approx(target, rel=1e-4, abs=1e-9)
            assert attr.dtype == np.float64 and attr.shape == (28, 28)


@pytest.mark.parametrize(("hidden", "seed"), [(16, 3), (64, 4)])
def test_matches_riemann_ig_on_random_weights(hidden: int, seed: int) -> None:
    model = random_net(hidden, seed)
    pixels = (np.random.default_rng(seed).random((28, 28)) > 0.7).astype(np.float32)
    assert switching_units(model, pixels) >= 3  # otherwise the test would not exercise the switch points
    ex = explain(model, pixels)
    for k in (ex.digit, ex.runner_up):
        reference = riemann_ig(model, pixels, k)
        exact = ex.attributions[k].ravel()
        scale = np.abs(exact).max()
        # A midpoint sum is off by at most half a step's worth of each switching unit's gradient.
        assert np.abs(exact - reference).max() <= 1e-3 * scale
        assert not np.allclose(exact, 0)


def test_many_steps_converge_on_the_closed_form() -> None:
    model = random_net(32, 5)
    pixels = (np.random.default_rng(5).random((28, 28)) > 0.6).astype(np.float32)
    exact = integrated_gradients(
        net_weights(model), normalize(torch.from_numpy(pixels)[None]).double()[0].numpy(), [0]
    )[0]
    errors = [np.abs(riemann_ig(model, pixels, 0, steps) - exact).max() for steps in (10, 100, 10000)]
    assert errors[0] > errors[1] > errors[2]


def test_trained_run_completeness_and_riemann(tiny_run: tuple[Path, str], tiny_data: MnistData) -> None:
    runs, run_id = tiny_run
    model, _ = RunStore(runs).load(run_id)
    images = tiny_data.test_images[:8].numpy().astype(np.float32) / 255
    with torch.no_grad():
        torch_logits = model(normalize(torch.from_numpy(images))).double().numpy()
    for i, pixels in enumerate(images):
        ex = explain(model, pixels)
        np.testing.assert_allclose(ex.logits, torch_logits[i], rtol=1e-4, atol=1e-4)
        assert ex.digit == int(torch_logits[i].argmax())
        for k, attr in ex.attributions.items():
            assert attr.sum() == pytest.approx(ex.logits[k] - ex.baseline_logits[k], rel=1e-4, abs=1e-9)
    pixels = images[0]
    ex = explain(model, pixels)
    reference = riemann_ig(model, pixels, ex.digit)
    assert np.abs(ex.attributions[ex.digit].ravel() - reference).max() <= 1e-3 * np.abs(reference).max()


def test_dropout_model_uses_eval_weights(tiny_data: MnistData) -> None:
    model = train(TrainConfig(**TINY, dropout=0.5), tiny_data).model
    model.train()  # even if a caller left it in training mode, explanations are of the eval-mode net
    pixels = tiny_data.test_images[0].numpy().astype(np.float32) / 255
    ex = explain(model, pixels)
    with torch.no_grad():
        logits = model.eval()(normalize(torch.from_numpy(pixels)[None]))[0].double().numpy()
    np.testing.assert_allclose(ex.logits, logits, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- one explanation


def test_explanation_fields() -> None:
    model = random_net(40, 6)
    w = net_weights(model)
    pixels = (np.random.default_rng(6).random((28, 28)) > 0.5).astype(np.float32)
    ex = explain(w, pixels, classes=[9, 9], top=5)
    order = np.argsort(-ex.logits)
    assert (ex.digit, ex.runner_up) == (order[0], order[1])
    assert list(ex.attributions)[:2] == [ex.digit, ex.runner_up] and 9 in ex.attributions
    assert ex.probabilities.sum() == pytest.approx(1) and int(ex.probabilities.argmax()) == ex.digit
    x = normalize(torch.from_numpy(pixels)[None]).double().numpy()[0]
    np.testing.assert_allclose(ex.hidden, np.maximum(w.w1 @ x + w.b1, 0))
    contrib = ex.hidden * w.w2[ex.digit]
    assert list(ex.top_units) == list(np.argsort(-contrib)[:5])
    np.testing.assert_allclose(ex.top_contributions, np.sort(contrib)[::-1][:5])
    np.testing.assert_array_equal(ex.pixels, pixels)
    np.testing.assert_array_equal(ex.evidence(ex.digit), ex.attributions[ex.digit])


def test_blank_input_has_no_evidence_and_background_pixels_get_none() -> None:
    model = random_net(32, 7)
    ex = explain(model, np.zeros((28, 28), np.float32))
    np.testing.assert_allclose(ex.logits, ex.baseline_logits, atol=1e-12)
    assert all(np.all(a == 0) for a in ex.attributions.values())
    pixels = np.zeros((28, 28), np.float32)
    pixels[5:20, 10:14] = 1.0
    ex = explain(model, pixels)
    off = pixels == 0
    assert np.all(ex.attributions[ex.digit][off] == 0) and np.any(ex.attributions[ex.digit][~off] != 0)


def test_bad_inputs_are_refused() -> None:
    model = random_net(16, 8)
    with pytest.raises(ValueError, match="28x28"):
        explain(model, np.zeros((27, 28)))
    with pytest.raises(ValueError, match=r"digits 0\.\.9"):
        explain(model, np.zeros((28, 28)), classes=[10])


def test_explanation_is_fast() -> None:
    w = net_weights(random_net(1024, 9))
    pixels = np.random.default_rng(9).random((28, 28)).astype(np.float32)
    explain(w, pixels)
    start = time.perf_counter()
    for _ in range(20):
        explain(w, pixels)
    assert (time.perf_counter() - start) / 20 < 0.05  # loose: bench/attribution.py measures it (~1 ms)


# ---------------------------------------------------------------- hidden units


def test_unit_summaries_match_brute_force(tiny_data: MnistData) -> None:
    model = random_net(24, 10)
    images, labels = tiny_data.test_images, tiny_data.test_labels
    s = unit_summaries(model, images, labels, top=5, chunk=64)  # several chunks: the running top-k must merge
    w1, b1 = model.fc1.weight.detach(), model.fc1.bias.detach()
    w2 = model.fc2.weight.detach()
    acts = torch.relu(normalize(images) @ w1.T + b1).numpy()
    assert s.hidden == 24 and s.weight_maps.shape == (24, 28, 28) and s.output_weights.shape == (10, 24)
    np.testing.assert_array_equal(s.weight_maps.reshape(24, 784), w1.numpy())
    np.testing.assert_array_equal(s.output_weights, w2.numpy())
    np.testing.assert_allclose(s.importance, acts.mean(0) * np.linalg.norm(w2.numpy(), axis=0), rtol=1e-5)
    assert list(s.order) == list(np.argsort(-s.importance, kind="stable"))
    np.testing.assert_allclose(s.active_share, (acts > 0).mean(0))
    for j in range(24):
        np.testing.assert_allclose(s.top_activations[j], np.sort(acts[:, j])[::-1][:5], rtol=1e-5)
        np.testing.assert_allclose(acts[s.top_images[j], j], s.top_activations[j], rtol=1e-5)
    y = labels.numpy()
    for d in range(10):
        np.testing.assert_allclose(s.class_activation[d], acts[y == d].mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(s.templates.reshape(10, 784), (w2 @ w1).numpy(), rtol=1e-5, atol=1e-6)


def test_unit_summaries_small_sets_and_no_labels(tiny_data: MnistData) -> None:
    s = unit_summaries(random_net(16, 11), tiny_data.test_images[:3], top=8)
    assert s.top_images.shape == (16, 3) and s.class_activation is None
    assert set(s.top_images.ravel()) <= {0, 1, 2}


# ---------------------------------------------------------------- --prepared images


def _save(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    Image.fromarray(arr, mode=mode).save(path)
    return path


def test_read_prepared(tmp_path: Path, tiny_arrays: dict[str, np.ndarray]) -> None:
    digit = tiny_arrays["test_images"][0]
    d = read_prepared(_save(tmp_path / "ok.png", digit))
    np.testing.assert_array_equal(d.pixels, digit.astype(np.float32) / 255)  # as is: no rescaling to peak 1
    cases = {
        "big.png": (np.zeros((280, 280), np.uint8) + np.eye(280, dtype=np.uint8) * 255, "280x280"),
        "rgb.png": (np.stack([digit] * 3, axis=-1), "greyscale"),
        "black.png": (np.zeros((28, 28), np.uint8), "all black"),
        "paper.png": (255 - digit, "light background"),
    }
    for name, (arr, message) in cases.items():
        with pytest.raises(ImageReadError, match=message):
            read_prepared(_save(tmp_path / name, arr))
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ImageReadError):
        read_prepared(tmp_path / "text.png")


# ---------------------------------------------------------------- CLI contract


def run_cli(*args: str | Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def test_explain_cli_contract(tiny_run: tuple[Path, str], tmp_path: Path, tiny_arrays: dict[str, np.ndarray]) -> None:
    runs, run_id = tiny_run
    big = np.kron(tiny_arrays["test_images"][1], np.ones((8, 8), np.uint8))  # a 224x224 drawing to prepare
    good = _save(tmp_path / "digit.png", big)
    bad = tmp_path / "bad.png"
    bad.write_text("no")
    blank = _save(tmp_path / "blank.png", np.zeros((100, 100), np.uint8))
    code, out, err = run_cli("explain", "--runs-dir", runs, "--run", run_id, good, bad, blank, "--json")
    assert code == 1, err
    lines = [json.loads(s) for s in out.strip().splitlines()]
    assert len(lines) == 3
    ok = lines[0]
    assert set(ok) == {
        "path",
        "digit",
        "runner_up",
        "probabilities",
        "logits",
        "baseline_logits",
        "attributions",
        "not_a_digit",
        "ood_score",
    }
    assert ok["path"] == str(good) and ok["digit"] != ok["runner_up"]
    assert len(ok["probabilities"]) == len(ok["logits"]) == len(ok["baseline_logits"]) == 10
    assert ok["digit"] == int(np.argmax(ok["logits"])) == int(np.argmax(ok["probabilities"]))
    assert ok["runner_up"] == int(np.argsort(ok["logits"])[-2])
    assert set(ok["attributions"]) == {str(ok["digit"]), str(ok["runner_up"])}
    for k, attr in ok["attributions"].items():
        arr = np.array(attr)
        assert arr.shape == (28, 28)
        assert arr.sum() == pytest.approx(ok["logits"][int(k)] - ok["baseline_logits"][int(k)], rel=1e-4)
    assert set(lines[1]) == {"path", "error"} and lines[1]["path"] == str(bad)
    assert set(lines[2]) == {"path", "error"} and lines[2]["error"].startswith("Nothing drawn")
    code, out, _ = run_cli("explain", "--runs-dir", runs, good)  # 'latest', --json is the default
    assert code == 0 and json.loads(out)["attributions"] == ok["attributions"]


@pytest.mark.parametrize("command", ["predict", "explain"])
def test_prepared_flag(
    command: str, tiny_run: tuple[Path, str], tmp_path: Path, tiny_arrays: dict[str, np.ndarray]
) -> None:
    runs, run_id = tiny_run
    digit = tiny_arrays["test_images"][3]
    good = _save(tmp_path / "ok.png", digit)
    big = _save(tmp_path / "big.png", np.kron(digit, np.ones((4, 4), np.uint8)))
    rgb = _save(tmp_path / "rgb.png", np.stack([digit] * 3, axis=-1))
    code, out, _ = run_cli(command, "--prepared", "--runs-dir", runs, "--run", run_id, good, big, rgb)
    assert code == 1
    lines = [json.loads(s) for s in out.strip().splitlines()]
    assert [line["path"] for line in lines] == [str(good), str(big), str(rgb)]
    assert "28x28" in lines[1]["error"] and "greyscale" in lines[2]["error"]
    assert all(set(line) == {"path", "error"} for line in lines[1:])
    model, _ = RunStore(runs).load(run_id)
    expected = model.probabilities(normalize(torch.from_numpy(digit)[None]))[0].numpy()
    np.testing.assert_allclose(lines[0]["probabilities"], expected, atol=1e-5)  # exactly these pixels
    # Without --prepared the same 28x28 picture is cropped, scaled and centred first: another input.
    code, out, _ = run_cli(command, "--runs-dir", runs, "--run", run_id, good)
    assert code == 0
    assert not np.allclose(json.loads(out)["probabilities"], expected, atol=1e-5)
