"""fileio: atomic writes keep the old file on any failure and leave no temp; bounded reads refuse what is not ours."""

from __future__ import annotations

import json
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from mnistcore import fileio
from mnistcore.fileio import FileTooLargeError, NotRegularFileError, atomic_write, atomic_write_json, read_bounded


@pytest.fixture(autouse=True)
def _no_hang() -> Iterator[None]:
    signal.alarm(20)  # a FIFO opened or read the ordinary way would block forever: fail instead
    yield
    signal.alarm(0)


def test_atomic_write_replaces_and_leaves_only_the_file(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]
    assert target.stat().st_mode & 0o777 == fileio.FILE_MODE


def test_atomic_write_json_writes_what_json_dumps_does(tmp_path: Path) -> None:
    obj = {"a": [1, 2], "b": "é"}
    atomic_write_json(tmp_path / "x.json", obj, indent=2)
    assert (tmp_path / "x.json").read_text() == json.dumps(obj, indent=2)


@pytest.mark.parametrize("step", ["write", "fsync", "chmod", "replace", "interrupt"])
def test_a_failure_mid_write_keeps_the_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    target = tmp_path / "f"
    atomic_write(target, b"old contents")
    error: BaseException = KeyboardInterrupt() if step == "interrupt" else OSError("disk full")
    seen: list[bytes] = []

    def fail(*args: object, **kwargs: object) -> None:
        # The temp file exists (and may hold part of the new bytes) when the failure hits.
        seen.extend(p.name.encode() for p in tmp_path.iterdir() if p.name != "f")
        raise error

    if step == "write":
        real_fdopen = os.fdopen

        def fdopen(fd: int, mode: str) -> object:
            f = real_fdopen(fd, mode)
            real_write = f.write

            def half_write(data: bytes) -> int:
                real_write(data[:3])
                f.flush()
                fail()
                return 0

            f.write = half_write  # type: ignore[method-assign]
            return f

        monkeypatch.setattr(fileio.os, "fdopen", fdopen)
    else:
        name = {"fsync": "fsync", "chmod": "chmod", "replace": "replace", "interrupt": "replace"}[step]
        monkeypatch.setattr(fileio.os, name, fail)
    with pytest.raises(type(error)):
        atomic_write(target, b"new contents")
    monkeypatch.undo()
    assert seen, "the failure should hit while the temp file exists"
    assert target.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_atomic_write_into_a_missing_folder_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "no" / "f", b"x")
    assert not any(tmp_path.iterdir())


def test_read_bounded_reads_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    assert read_bounded(path, 100) == b"x" * 100
    (tmp_path / "empty").write_bytes(b"")
    assert read_bounded(tmp_path / "empty", 0) == b""


def test_read_bounded_refuses_an_oversized_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 101)
    with pytest.raises(FileTooLargeError, match="101 bytes, more than the 100 allowed") as info:
        read_bounded(path, 100)
    assert info.value.size == 101 and info.value.limit == 100


def test_read_bounded_refuses_a_symlink_even_to_a_good_file(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.write_bytes(b"fine")
    link = tmp_path / "link"
    link.symlink_to(good)
    with pytest.raises(NotRegularFileError, match="symbolic link"):
        read_bounded(link, 100)
    dev_zero = tmp_path / "zero"
    dev_zero.symlink_to("/dev/zero")
    with pytest.raises(NotRegularFileError):
        read_bounded(dev_zero, 100)


def test_read_bounded_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(NotRegularFileError, match="a pipe"):
        read_bounded(fifo, 100)


def test_read_bounded_refuses_a_directory_and_a_device(tmp_path: Path) -> None:
    with pytest.raises(NotRegularFileError, match="a directory"):
        read_bounded(tmp_path, 100)
    with pytest.raises(NotRegularFileError, match="a device"):
        read_bounded("/dev/zero", 100)


def test_read_bounded_refuses_a_socket(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))
        with pytest.raises(NotRegularFileError):
            read_bounded(path, 100)


def test_read_bounded_passes_on_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_bounded(tmp_path / "missing", 100)


def test_read_bounded_catches_a_file_that_grows_while_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 50)  # within the cap when its size is checked
    real_read = os.read
    reads: list[int] = []

    def read_while_growing(fd: int, n: int) -> bytes:
        if not reads:
            with open(path, "ab") as f:  # another writer appends after the fstat
                f.write(b"y" * 200)
        reads.append(n)
        return real_read(fd, n)

    monkeypatch.setattr(fileio.os, "read", read_while_growing)
    with pytest.raises(FileTooLargeError, match="grew past the 100 bytes") as info:
        read_bounded(path, 100)
    assert info.value.size is None
    assert sum(reads) <= 101  # never more than the cap + 1 bytes
