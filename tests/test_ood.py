"""The "not a digit" score: subspaces and threshold on tiny data, stored with a run, older runs, the CLI keys."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from mnistcore import ood
from mnistcore.config import TrainConfig
from mnistcore.data import MnistData
from mnistcore.model import ShallowNet
from mnistcore.normalize import normalize
from mnistcore.runs import META, RunStore, save_result
from mnistcore.train import train
from tests.test_cli import run_cli

TINY = TrainConfig(hidden=32, epochs=1, batch_size=32, lr=0.003, device="cpu")


def _bars(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Class 0: a vertical bar, class 1: a horizontal bar, each at a random place; uint8 (n, 28, 28)."""
    x = np.zeros((n, 28, 28), np.uint8)
    y = np.arange(n) % 2
    for i in range(n):
        k = int(rng.integers(8, 20))
        if y[i] == 0:
            x[i, 4:24, k - 1 : k + 2] = 255
        else:
            x[i, k - 1 : k + 2, 4:24] = 255
    return x, y


def test_class_subspaces_rebuild_their_class_and_not_a_new_shape() -> None:
    rng = np.random.default_rng(0)
    x, y = _bars(400, rng)
    means, bases, owners = ood.class_subspaces(x, y, k=12, centres=5)
    # 200 bars per seen class: 5 groups each; the 8 digits never seen keep one (zero) group each
    assert list(owners) == [0] * 5 + [1] * 5 + list(range(2, 10))
    assert means.shape == (18, 784) and bases.shape == (18, 784, 12)
    for g in range(10):  # orthonormal directions; a group of few distinct bars has fewer than 12 (the rest are 0)
        gram = bases[g].T @ bases[g]
        assert np.allclose(gram, np.diag(np.diag(gram)), atol=1e-4)
        assert all(min(abs(v), abs(v - 1)) < 1e-4 for v in np.diag(gram))
    seen, _ = _bars(20, np.random.default_rng(1))
    cross = np.zeros((1, 28, 28), np.float32)
    cross[0, 4:24, 13:16] = cross[0, 13:16, 4:24] = 1.0
    own = ood.residuals(means, bases, seen[::2].reshape(10, -1) / 255.0, np.zeros(10, int), owners)
    other = ood.residuals(means, bases, cross.reshape(1, -1), np.zeros(1, int), owners)
    # A vertical bar is (nearly) in the span of one group of vertical bars; a cross is not.
    assert (own**2).sum(1).max() < 0.2 * (other**2).sum()


def test_the_residual_is_the_one_from_the_nearest_group_of_the_class() -> None:
    rng = np.random.default_rng(2)
    means = rng.random((4, 784)).astype(np.float32)
    bases = np.linalg.qr(rng.normal(size=(4, 784, 3)))[0].astype(np.float32)
    owners = np.array([0, 0, 1, 1])
    px = (means[1] + 0.01 * rng.random(784)).astype(np.float32)[None]  # next to group 1, of digit 0
    r = ood.residuals(means, bases, px, np.array([0]), owners)[0]
    d = px[0] - means[1]
    assert np.allclose(r, d - bases[1] @ (bases[1].T @ d), atol=1e-5)
    far = ood.residuals(means, bases, px, np.array([1]), owners)[0]  # read as digit 1: only groups 2 and 3 count
    assert (far**2).sum() > 10 * (r**2).sum()


def test_a_class_of_identical_images_gets_one_group_not_a_crash() -> None:
    # k-means++ draws each next centre by distance: with every image on the first centre there is nothing to
    # draw from (a 0/0 probability), so the class keeps the groups it has.
    rng = np.random.default_rng(0)
    other = rng.integers(0, 256, (200, 28, 28), dtype=np.uint8)
    same = np.repeat(other[:1], 200, axis=0)
    images = np.concatenate([same, other])
    labels = np.array([3] * 200 + [5] * 200)
    means, bases, owners = ood.class_subspaces(images, labels, k=5, centres=4)
    assert (owners == 3).sum() == 1 and (owners == 5).sum() == 4
    assert np.allclose(means[owners == 3][0], same[0].reshape(-1) / 255.0)
    assert np.all(np.isfinite(bases))


def test_fit_threshold_is_the_quantile_of_held_out_prepared_digits(tiny_data: MnistData) -> None:
    model = ShallowNet(32).eval()
    x, y = tiny_data.train_images.numpy(), tiny_data.train_labels.numpy()
    fitted = ood.fit(model, x, y, quantile=0.9, calibration=100)
    cal, rest = ood.calibration_split(len(x), 100)
    assert len(cal) == 100 and len(set(cal) & set(rest)) == 0 and len(cal) + len(rest) == len(x)
    scores = fitted.scores(model, ood.prepared_mnist(x[cal]))
    assert fitted.threshold == pytest.approx(float(np.quantile(scores, 0.9)))
    assert fitted.calibration_images == len(scores) and (scores > fitted.threshold).mean() == pytest.approx(
        0.1, abs=0.02
    )
    one = ood.assess(model, fitted, ood.prepared_mnist(x[cal[:1]])[0])
    assert one.score == pytest.approx(float(scores[0]), rel=1e-5)
    assert one.not_a_digit == (one.score > fitted.threshold)
    assert one.residual.shape == (28, 28) and float((one.residual**2).sum()) == pytest.approx(one.score, rel=1e-4)


def test_calibration_digits_come_from_the_nets_holdout() -> None:
    cal, rest = ood.calibration_split(1000, calibration=100, held=300)
    assert len(cal) == 100 and len(set(cal)) == 100 and cal.min() >= 700  # only digits the net never trained on
    assert sorted([*cal, *rest]) == list(range(1000))
    cal_small, rest_small = ood.calibration_split(1000, calibration=100, held=40)
    assert sorted(cal_small) == list(range(960, 1000)) and len(rest_small) == 960
    cal_none, _ = ood.calibration_split(1000, calibration=100)
    assert cal_none.min() < 700  # no holdout: drawn from all


@pytest.fixture(scope="module")
def run_with_ood(tiny_data: MnistData, tmp_path_factory: pytest.TempPathFactory) -> tuple[RunStore, str]:
    store = RunStore(tmp_path_factory.mktemp("ood-runs"))
    result = train(TINY, tiny_data)
    assert isinstance(result.ood, ood.OodModel) and result.ood_seconds > 0
    assert result.ood.calibration == (ood.FROM_HELD if result.calibration["holdout"] else ood.FROM_TRAINED)
    info, why = save_result(store, result, dataset=tiny_data.checksums)
    assert why is None
    return store, info.run_id


def test_the_threshold_is_stored_with_the_run_and_reloaded(run_with_ood: tuple[RunStore, str]) -> None:
    store, run_id = run_with_ood
    info = store.info(run_id)
    meta = json.loads((info.path / META).read_text())
    assert meta["ood"] == info.ood and info.ood["method"] == ood.METHOD and info.ood["file"] == ood.FILE
    loaded = store.load_ood(info)
    assert loaded is not None and loaded.threshold == meta["ood"]["threshold"]
    assert loaded.bases.shape[1:] == (784, meta["ood"]["components"]) and loaded.owners is not None
    assert np.array_equal(loaded.owners, store.load_ood(info).owners) and set(loaded.owners) == set(range(10))
    assert len(loaded.means) <= 10 * meta["ood"]["centres"]


def test_the_stored_arrays_are_the_calibrated_ones(tiny_data: MnistData, tmp_path: Path) -> None:
    """FILE keeps float16 means and bases; the threshold was calibrated on exactly those values."""
    model = ShallowNet(32).eval()
    x, y = tiny_data.train_images.numpy(), tiny_data.train_labels.numpy()
    fitted = ood.fit(model, x, y, calibration=100, centres=3, k=4)
    ood.save(tmp_path, fitted)
    assert {t.dtype for name, t in load_file(str(tmp_path / ood.FILE)).items() if name != "owners"} == {torch.float16}
    assert (tmp_path / ood.FILE).stat().st_size <= ood.ood_file_size(3, 4)
    loaded = ood.load(tmp_path, fitted.record())
    assert loaded is not None and loaded.means.dtype == np.float32
    np.testing.assert_array_equal(loaded.means, fitted.means)
    np.testing.assert_array_equal(loaded.bases, fitted.bases)
    px = ood.prepared_mnist(x[ood.calibration_split(len(x), 100)[0]])
    np.testing.assert_array_equal(loaded.scores(model, px), fitted.scores(model, px))
    assert (fitted.scores(model, px) > fitted.threshold).mean() == pytest.approx(1 - ood.QUANTILE, abs=0.011)


def test_a_run_with_the_first_version_of_the_score_still_loads(run_with_ood: tuple[RunStore, str], tmp_path) -> None:
    """Runs saved with one subspace per class ("class-pca-residual", no owners) load and score as before."""
    store, run_id = run_with_ood
    info = store.info(run_id)
    first = tmp_path / "first"
    first.mkdir()
    rng = np.random.default_rng(3)
    means = rng.random((10, 784)).astype(np.float32)
    bases = np.linalg.qr(rng.normal(size=(10, 784, 4)))[0].astype(np.float32)
    old = ood.OodModel(means, bases, 1.5, 0.985, 100)
    save_file({"means": torch.from_numpy(means), "bases": torch.from_numpy(bases)}, str(first / ood.FILE))  # float32
    record = old.record()
    assert record["method"] == "class-pca-residual" and "owners" not in old.tensors()
    loaded = ood.load(first, record)
    assert loaded is not None and loaded.owners is None and list(loaded.classes) == list(range(10))
    model, _ = store.load(run_id)
    px = rng.random((5, 28, 28)).astype(np.float32)
    pred = model(normalize(torch.from_numpy(px))).argmax(1).numpy()
    d = px.reshape(5, -1) - means[pred]
    r = np.stack([d[i] - bases[c] @ (bases[c].T @ d[i]) for i, c in enumerate(pred)])
    assert np.allclose(loaded.scores(model, px), (r**2).sum(1), rtol=1e-4)
    bad = {**record, "method": ood.METHOD, "centres": 1}  # a grouped record needs its owners
    with pytest.raises(ood.OodError):
        ood.load(first, bad)
    assert info.ood["method"] == ood.METHOD


def test_a_damaged_ood_file_is_ignored_not_fatal(run_with_ood: tuple[RunStore, str], tmp_path: Path) -> None:
    store, run_id = run_with_ood
    info = store.info(run_id)
    import shutil

    copy = tmp_path / run_id
    shutil.copytree(info.path, copy)
    (copy / ood.FILE).write_bytes(b"\x80\x04 not safetensors")
    damaged = RunStore(tmp_path)
    assert damaged.load_ood(damaged.info(run_id)) is None
    with pytest.raises(ood.OodError):
        ood.load(copy, info.ood)


def _letter_png(path: Path) -> Path:
    img = np.zeros((280, 280), np.uint8)
    img[40:240, 60:80] = 255  # an "H"
    img[40:240, 200:220] = 255
    img[130:150, 60:220] = 255
    Image.fromarray(img).save(path)
    return path


def test_predict_and_explain_json_carry_the_keys(run_with_ood: tuple[RunStore, str], tmp_path: Path) -> None:
    store, run_id = run_with_ood
    png = _letter_png(tmp_path / "h.png")
    for command in ("predict", "explain"):
        code, out, err = run_cli(command, "--runs-dir", store.root, "--run", run_id, png, "--json")
        assert code == 0, err
        line = json.loads(out)
        assert isinstance(line["not_a_digit"], bool) and isinstance(line["ood_score"], float)
        threshold = store.info(run_id).ood["threshold"]
        assert line["not_a_digit"] == (line["ood_score"] > threshold)


def test_a_run_saved_before_the_score_loads_and_says_null(run_with_ood: tuple[RunStore, str], tmp_path: Path) -> None:
    store, run_id = run_with_ood
    import shutil

    old = tmp_path / "runs" / run_id
    shutil.copytree(store.info(run_id).path, old)
    meta = json.loads((old / META).read_text())
    del meta["ood"]  # exactly what a run saved before this change holds
    (old / META).write_text(json.dumps(meta))
    (old / ood.FILE).unlink()
    runs = RunStore(tmp_path / "runs")
    assert runs.info(run_id).ood is None and runs.load_ood(runs.info(run_id)) is None
    code, out, err = run_cli("predict", "--runs-dir", runs.root, _letter_png(tmp_path / "h.png"), "--json")
    assert code == 0, err
    line = json.loads(out)
    assert line["not_a_digit"] is None and line["ood_score"] is None and line["digit"] in range(10)
