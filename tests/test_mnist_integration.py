"""The real MNIST: official checksums, the normalisation constants, and the accuracy the recipes promise."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnistcore.config import PRESETS, TrainConfig
from mnistcore.data import RAW_FILES, MnistData, raw_dir, verify_raw
from mnistcore.evaluate import evaluate
from mnistcore.normalize import MEAN, STD, normalize
from mnistcore.runs import RunStore
from mnistcore.train import train

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
# Published md5 of the uncompressed original train-images-idx3-ubyte (LeCun, Cortes & Burges).
TRAIN_IMAGES_MD5 = "6bbc9ace898e44ae57da46a324031adb"


def _cli(*args: str | Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mnistcore", *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_data_verifies_against_official_md5s(mnist_data_dir: Path) -> None:
    sums = verify_raw(mnist_data_dir)
    assert sums == {name: md5 for name, _, md5 in RAW_FILES.values()}
    path = raw_dir(mnist_data_dir) / "train-images-idx3-ubyte"
    assert path.stat().st_size == 47_040_016
    assert hashlib.md5(path.read_bytes()).hexdigest() == TRAIN_IMAGES_MD5 == sums[path.name]


def test_loaded_data(mnist_data: MnistData) -> None:
    assert tuple(mnist_data.train_images.shape) == (60000, 28, 28)
    assert tuple(mnist_data.test_images.shape) == (10000, 28, 28)
    # MNIST's well-known class sizes: labels decoded and paired with the right split.
    assert mnist_data.class_counts("train").tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert mnist_data.class_counts("test").tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_normalisation_constants_are_the_train_statistics(mnist_data: MnistData) -> None:
    pixels = mnist_data.train_images.double() / 255
    assert pixels.mean().item() == pytest.approx(MEAN, abs=1e-4)
    assert pixels.std().item() == pytest.approx(STD, abs=1e-4)
    x = normalize(mnist_data.train_images).double()
    assert abs(x.mean().item()) < 1e-3
    assert x.std().item() == pytest.approx(1.0, abs=1e-3)


def test_one_epoch_reaches_95_percent(mnist_data: MnistData) -> None:
    result = train(TrainConfig(epochs=1, device="cpu"), mnist_data)
    assert result.test_accuracy >= 0.95
    ev = evaluate(result.model, mnist_data.test_images, mnist_data.test_labels)
    # Training measures its test accuracy in its own precision; evaluate() runs in fp32. In bf16 (chosen
    # by "auto" where it is faster) a handful of borderline images can fall the other way.
    tolerance = 1e-4 if result.config.precision == "fp32" else 1e-3
    assert ev.accuracy == pytest.approx(result.test_accuracy, abs=tolerance)


def test_seed_recipe_through_the_cli(mnist_data_dir: Path, mnist_data: MnistData, tmp_path: Path) -> None:
    # The seed recipe as a user runs it: `python -m mnistcore train --json` with the default preset.
    proc = _cli("train", "--json", "--data-dir", mnist_data_dir, "--runs-dir", tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    config = TrainConfig.from_dict(out["config"])
    assert config.precision in ("fp32", "bf16")  # "auto" is resolved at run time and recorded as what ran
    assert config.with_(precision="auto") == PRESETS["default"]  # 784-128-10, Adam 1e-3, batch 128, 5 epochs
    assert out["epochs"] == 5 == len(out["history"])
    assert out["test_accuracy"] >= 0.973
    assert out["train_seconds"] > 0 and Path(out["path"]) == tmp_path / out["run_id"]

    model, info = RunStore(tmp_path).load(out["run_id"])
    assert info.dataset == {name: md5 for name, _, md5 in RAW_FILES.values()}  # trained on verified MNIST
    reference = evaluate(model, mnist_data.test_images, mnist_data.test_labels)
    assert reference.accuracy == pytest.approx(out["test_accuracy"], abs=1e-4 if config.precision == "fp32" else 1e-3)

    proc = _cli("evaluate", "--json", "--run", out["run_id"], "--data-dir", mnist_data_dir, "--runs-dir", tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ev = json.loads(proc.stdout)
    assert ev["run_id"] == out["run_id"]
    assert ev["accuracy"] == pytest.approx(out["test_accuracy"], abs=1e-4)
    confusion = np.array(ev["confusion_matrix"])
    assert confusion.sum() == 10000 and ev["errors"] == 10000 - np.trace(confusion)
    np.testing.assert_array_equal(confusion, reference.confusion)
