"""IDX reader/writer: round trips, header layout, validation errors that name the file and the fix."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest

from mnistcore import idx
from mnistcore.idx import IdxError, idx_bytes, read_idx, read_idx_header, write_idx

FIX = "python -m mnistcore data"


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


def _labels(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 10, size=n, dtype=np.uint8)


@pytest.mark.parametrize("n", [0, 1, 37])
def test_round_trip_images_and_labels(tmp_path: Path, n: int) -> None:
    images, labels = _images(n), _labels(n)
    write_idx(tmp_path / "img", images, "images")
    write_idx(tmp_path / "lab", labels, "labels")
    got_images, got_labels = read_idx(tmp_path / "img", "images"), read_idx(tmp_path / "lab", "labels")
    assert got_images.dtype == np.uint8 and got_images.shape == (n, 28, 28)
    assert got_labels.dtype == np.uint8 and got_labels.shape == (n,)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    assert read_idx_header(tmp_path / "img", "images") == (n, 28, 28)
    assert read_idx_header(tmp_path / "lab", "labels") == (n,)


def test_read_returns_a_writable_copy(tmp_path: Path) -> None:
    write_idx(tmp_path / "lab", _labels(5), "labels")
    arr = read_idx(tmp_path / "lab", "labels")
    arr[0] = 9  # a view on the read-only bytes buffer would raise here
    assert arr.flags.writeable


def test_header_layout_is_big_endian_idx() -> None:
    images, labels = _images(3), _labels(3)
    assert idx_bytes(images, "images")[:16] == struct.pack(">IIII", 0x00000803, 3, 28, 28)
    assert idx_bytes(labels, "labels")[:8] == struct.pack(">II", 0x00000801, 3)
    assert idx_bytes(images, "images")[16:] == images.tobytes()
    assert len(idx_bytes(labels, "labels")) == 8 + 3


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "lab"
    write_idx(target, _labels(4, seed=1), "labels")
    write_idx(target, _labels(6, seed=2), "labels")  # overwrite in place
    np.testing.assert_array_equal(read_idx(target, "labels"), _labels(6, seed=2))
    assert sorted(p.name for p in target.parent.iterdir()) == ["lab"]
    assert target.stat().st_mode & 0o777 == 0o644


def _assert_names_file_and_fix(exc: IdxError, path: Path) -> None:
    message = str(exc)
    assert str(path) in message
    assert FIX in message
    # No numpy/OS traceback chained behind it: raised directly, or "from None".
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope"
    with pytest.raises(IdxError, match="does not exist") as info:
        read_idx(path, "labels")
    _assert_names_file_and_fix(info.value, path)


def test_directory_is_an_idx_error_not_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(IdxError, match="cannot be read") as info:
        read_idx(tmp_path, "images")
    _assert_names_file_and_fix(info.value, tmp_path)


def test_truncated_payload(tmp_path: Path) -> None:
    path = tmp_path / "img"
    path.write_bytes(idx_bytes(_images(3), "images")[:-100])
    with pytest.raises(IdxError, match="truncated") as info:
        read_idx(path, "images")
    _assert_names_file_and_fix(info.value, path)
    with pytest.raises(IdxError, match="truncated"):
        read_idx_header(path, "images")


def test_shorter_than_header(tmp_path: Path) -> None:
    path = tmp_path / "lab"
    path.write_bytes(b"\x00\x00\x08")
    with pytest.raises(IdxError, match="shorter than its header") as info:
        read_idx(path, "labels")
    _assert_names_file_and_fix(info.value, path)


def test_longer_than_header_says(tmp_path: Path) -> None:
    path = tmp_path / "lab"
    path.write_bytes(idx_bytes(_labels(5), "labels") + b"\x01")
    with pytest.raises(IdxError, match="longer than its header says") as info:
        read_idx(path, "labels")
    _assert_names_file_and_fix(info.value, path)


def test_header_count_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "lab"
    data = bytearray(idx_bytes(_labels(5), "labels"))
    data[4:8] = struct.pack(">I", 6)  # header claims 6 labels, 5 follow
    path.write_bytes(bytes(data))
    with pytest.raises(IdxError, match=r"header says \(6,\)") as info:
        read_idx(path, "labels")
    _assert_names_file_and_fix(info.value, path)


def test_wrong_magic(tmp_path: Path) -> None:
    path = tmp_path / "lab"
    write_idx(path, _labels(10), "labels")
    with pytest.raises(IdxError, match="magic number 0x00000801, expected 0x00000803") as info:
        read_idx(path, "images")
    _assert_names_file_and_fix(info.value, path)


def test_images_must_be_28x28(tmp_path: Path) -> None:
    path = tmp_path / "img"
    path.write_bytes(struct.pack(">IIII", 0x00000803, 2, 32, 32) + bytes(2 * 32 * 32))
    with pytest.raises(IdxError, match="32x32, expected 28x28") as info:
        read_idx(path, "images")
    _assert_names_file_and_fix(info.value, path)


def test_labels_must_be_digits(tmp_path: Path) -> None:
    path = tmp_path / "lab"
    path.write_bytes(struct.pack(">II", 0x00000801, 3) + bytes([1, 12, 3]))
    with pytest.raises(IdxError, match="label 12") as info:
        read_idx(path, "labels")
    _assert_names_file_and_fix(info.value, path)


def test_idx_error_is_a_value_error() -> None:
    assert issubclass(IdxError, ValueError)


def test_unknown_kind_is_refused(tmp_path: Path) -> None:
    write_idx(tmp_path / "lab", _labels(2), "labels")
    with pytest.raises(ValueError, match="kind"):
        read_idx(tmp_path / "lab", "label")
    with pytest.raises(ValueError, match="kind"):
        idx_bytes(_labels(2), "pixels")


@pytest.mark.parametrize(
    ("array", "kind", "match"),
    [
        (np.zeros((2, 28, 28), np.uint8), "labels", "labels must have shape"),
        (np.zeros(4, np.uint8), "images", "images must have shape"),
        (np.zeros((2, 27, 28), np.uint8), "images", "images must have shape"),
        (np.array([0, 256]), "labels", "0..255"),
        (np.array([-1, 3]), "labels", "0..255"),
    ],
)
def test_writer_refuses_what_it_could_not_read_back(array: np.ndarray, kind: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        idx_bytes(array, kind)


def test_writer_accepts_in_range_wider_ints(tmp_path: Path) -> None:
    write_idx(tmp_path / "lab", np.array([0, 9, 4], dtype=np.int64), "labels")
    np.testing.assert_array_equal(read_idx(tmp_path / "lab", "labels"), [0, 9, 4])


def test_read_header_does_not_need_the_payload(tmp_path: Path) -> None:
    # A sparse-looking file: header of a 60 000-image file, but only 16 bytes on disk.
    path = tmp_path / "img"
    path.write_bytes(struct.pack(">IIII", 0x00000803, 60000, 28, 28))
    with pytest.raises(IdxError, match="truncated: 16 bytes"):
        read_idx_header(path, "images")
    os.truncate(path, 16 + 60000 * 784)  # now the right size: the header check passes without reading it all
    assert read_idx_header(path, "images") == (60000, 28, 28)


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_pipes_and_devices_are_refused_without_blocking(tmp_path: Path, kind: str) -> None:
    import signal

    path = tmp_path / "train-labels-idx1-ubyte"
    if kind == "fifo":
        os.mkfifo(path)  # a plain open() would wait for a writer forever
    else:
        path.symlink_to("/dev/zero")  # a plain read() would never end
    signal.alarm(20)
    try:
        for reader in (read_idx, read_idx_header):
            with pytest.raises(IdxError, match="not a regular file") as info:
                reader(path, "labels")
            _assert_names_file_and_fix(info.value, path)
        with pytest.raises(IdxError, match="not a regular file"):
            idx.read_head(path, 8)
    finally:
        signal.alarm(0)


def test_header_is_checked_before_the_payload_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x"
    path.write_bytes(idx_bytes(_labels(50), "labels") + b"\0" * 10_000)  # longer than its header says
    reads: list[int] = []
    real_read = os.read
    monkeypatch.setattr(idx.os, "read", lambda fd, n: reads.append(n) or real_read(fd, n))
    with pytest.raises(IdxError, match="longer than its header says"):
        read_idx(path, "labels")
    assert sum(reads) <= 16  # only the header was read
