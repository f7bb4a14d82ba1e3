"""Shared fixtures: tiny learnable IDX datasets written by the tests, and the real MNIST data dir."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mnistcore.data import MnistData, load_mnist, provision_mnist, raw_dir
from mnistcore.idx import write_idx

REPO = Path(__file__).resolve().parent.parent

# Ten blob centres on a ring around the image centre: each digit class is a bright blob in its own place.
_ANGLES = np.linspace(0, 2 * np.pi, 10, endpoint=False)
_CENTRES = np.stack([14 + 8 * np.sin(_ANGLES), 14 + 8 * np.cos(_ANGLES)], axis=1)

TINY_TRAIN = 600
TINY_TEST = 200


def synthetic_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n uint8 images (n,28,28) and balanced labels (n,): a jittered Gaussian blob per class, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
    yy, xx = np.mgrid[0:28, 0:28].astype(np.float64)
    centres = _CENTRES[labels] + rng.normal(0, 1.5, size=(n, 2))  # jitter makes neighbours overlap a little
    d2 = (yy[None] - centres[:, 0, None, None]) ** 2 + (xx[None] - centres[:, 1, None, None]) ** 2
    amplitude = rng.uniform(150, 255, size=(n, 1, 1))
    images = amplitude * np.exp(-d2 / (2 * 2.5**2)) + rng.uniform(0, 60, size=(n, 28, 28))
    return np.clip(images, 0, 255).astype(np.uint8), labels


def write_dataset(data_dir: Path, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]) -> Path:
    """Write the four raw IDX files under data_dir/MNIST/raw, named as torchvision names them."""
    rdir = raw_dir(data_dir)
    for split, (images, labels) in (("train", train), ("t10k", test)):
        write_idx(rdir / f"{split}-images-idx3-ubyte", images, "images")
        write_idx(rdir / f"{split}-labels-idx1-ubyte", labels, "labels")
    return data_dir


@pytest.fixture(scope="session")
def tiny_arrays() -> dict[str, np.ndarray]:
    """The tiny dataset's arrays: 600 train / 200 test synthetic digits (different seeds per split)."""
    train_images, train_labels = synthetic_digits(TINY_TRAIN, seed=1)
    test_images, test_labels = synthetic_digits(TINY_TEST, seed=2)
    return {
        "train_images": train_images,
        "train_labels": train_labels,
        "test_images": test_images,
        "test_labels": test_labels,
    }


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory: pytest.TempPathFactory, tiny_arrays: dict[str, np.ndarray]) -> Path:
    """A shared data dir holding the tiny IDX dataset; read-only by convention (copy it to modify)."""
    a = tiny_arrays
    return write_dataset(
        tmp_path_factory.mktemp("tiny") / "data",
        (a["train_images"], a["train_labels"]),
        (a["test_images"], a["test_labels"]),
    )


@pytest.fixture
def tiny_copy(tiny_data_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny data dir that a test may damage."""
    dest = tmp_path / "data"
    shutil.copytree(tiny_data_dir, dest)
    return dest


@pytest.fixture(scope="session")
def tiny_data(tiny_data_dir: Path) -> MnistData:
    """The tiny dataset loaded the way the app loads MNIST."""
    return load_mnist(tiny_data_dir)


@pytest.fixture
def make_dataset() -> Callable[..., Path]:
    """Write a dataset into a given data dir: make_dataset(data_dir, train=(x, y), test=(x, y))."""
    return write_dataset


@pytest.fixture
def digits() -> Callable[[int, int], tuple[np.ndarray, np.ndarray]]:
    """The synthetic digit generator: digits(n, seed) -> (uint8 images, uint8 labels)."""
    return synthetic_digits


@pytest.fixture(scope="session")
def mnist_data_dir() -> Path:
    """The real MNIST data dir ($MNIST_DATA_DIR, else the repo's data/), provisioned and verified."""
    data_dir = Path(os.environ.get("MNIST_DATA_DIR") or REPO / "data")
    provision_mnist(data_dir)  # raises DataError with the fix when MNIST cannot be provisioned
    return data_dir


@pytest.fixture(scope="session")
def mnist_data(mnist_data_dir: Path) -> MnistData:
    """The real MNIST, loaded once per session."""
    return load_mnist(mnist_data_dir)
