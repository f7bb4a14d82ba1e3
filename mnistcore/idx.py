"""Read and write IDX files (the MNIST raw format), validating everything that is read."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np

from mnistcore.fileio import atomic_write

# Magic numbers of the two kinds of MNIST file: 0x00000801 labels, 0x00000803 images (ubyte).
LABEL_MAGIC = 2049
IMAGE_MAGIC = 2051


class IdxError(ValueError):
    """An IDX file that is missing, truncated, or not the kind of file it should be."""


def _fix(path: Path) -> str:
    return f"Delete {path} and provision the data again (python -m mnistcore data)."


KINDS = ("images", "labels")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def _header_dims(path: Path, head: bytes, size: int, kind: str) -> tuple[int, ...]:
    """Validate magic, dims and the file size against the header; return the dims."""
    expected_magic = IMAGE_MAGIC if kind == "images" else LABEL_MAGIC
    ndim = 3 if kind == "images" else 1
    header = 4 + 4 * ndim
    if size < header:
        raise IdxError(f"{path} is truncated: {size} bytes, shorter than its header. {_fix(path)}")
    magic = int.from_bytes(head[0:4], "big")
    if magic != expected_magic:
        raise IdxError(
            f"{path} has magic number {magic:#010x}, expected {expected_magic:#010x} for an IDX "
            f"{kind} file: it is not an MNIST {kind} file. {_fix(path)}"
        )
    dims = tuple(int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if kind == "images" and dims[1:] != (28, 28):
        raise IdxError(f"{path} holds images of {dims[1]}x{dims[2]}, expected 28x28. {_fix(path)}")
    expected_len = header + int(np.prod(dims))
    if size != expected_len:
        state = "truncated" if size < expected_len else "longer than its header says"
        raise IdxError(
            f"{path} is {state}: {size} bytes, its header says {dims} items = {expected_len} bytes. {_fix(path)}"
        )
    return dims


def _open_regular(path: Path) -> tuple[int, int]:
    """(fd, size) of a regular file opened for reading; IdxError for anything else.

    Opened without blocking and checked on the descriptor: a FIFO would hang a plain open or read,
    and a device such as /dev/zero would never end.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise IdxError(f"{path} does not exist. Provision the data: python -m mnistcore data") from None
    except OSError as exc:  # a directory, no permission, an I/O error: still a data problem, not a traceback
        raise IdxError(f"{path} cannot be read ({exc.strerror or exc}). {_fix(path)}") from None
    try:
        st = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        raise IdxError(f"{path} cannot be read ({exc.strerror or exc}). {_fix(path)}") from None
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file (a pipe, device or socket)"
        raise IdxError(f"{path} cannot be read: it is {what}. {_fix(path)}")
    return fd, st.st_size


def _read_fd(path: Path, fd: int, n: int) -> bytes:
    """Up to n bytes from fd (fewer only at the end of the file)."""
    chunks, got = [], 0
    try:
        while got < n:
            chunk = os.read(fd, min(n - got, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    except OSError as exc:
        raise IdxError(f"{path} cannot be read ({exc.strerror or exc}). {_fix(path)}") from None
    return b"".join(chunks)


def read_head(path: str | os.PathLike, n: int) -> bytes:
    """The first n bytes of a regular file (IdxError for anything else, e.g. a FIFO or a device)."""
    path = Path(path)
    fd, _ = _open_regular(path)
    try:
        return _read_fd(path, fd, n)
    finally:
        os.close(fd)


def read_idx_header(path: str | os.PathLike, kind: str) -> tuple[int, ...]:
    """Validate an IDX file's header and size without reading its payload; return its dims."""
    _check_kind(kind)
    path = Path(path)
    fd, size = _open_regular(path)
    try:
        return _header_dims(path, _read_fd(path, fd, 16), size, kind)
    finally:
        os.close(fd)


def read_idx(path: str | os.PathLike, kind: str) -> np.ndarray:
    """Read an IDX ubyte file of `kind` 'images' (N,28,28) or 'labels' (N,), validating header and size."""
    _check_kind(kind)
    path = Path(path)
    fd, size = _open_regular(path)
    try:
        # The header is checked against the file's size before the payload is read: a file whose
        # header and size disagree is never read whole.
        dims = _header_dims(path, _read_fd(path, fd, 16), size, kind)
        header = 16 if kind == "images" else 8
        os.lseek(fd, 0, os.SEEK_SET)
        raw = _read_fd(path, fd, header + int(np.prod(dims)))
    finally:
        os.close(fd)
    if len(raw) != size:  # changed while being read
        raise IdxError(f"{path} changed while it was read. {_fix(path)}")
    data = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)
    if kind == "labels" and data.size and int(data.max()) > 9:
        raise IdxError(f"{path} holds label {int(data.max())}; MNIST labels are 0..9. {_fix(path)}")
    return data.copy()


def idx_bytes(array: np.ndarray, kind: str) -> bytes:
    """Encode a uint8 array (N,28,28) or (N,) as IDX bytes."""
    _check_kind(kind)
    arr = np.asarray(array)
    if kind == "images" and (arr.ndim != 3 or arr.shape[1:] != (28, 28)):
        raise ValueError(f"images must have shape (N, 28, 28), got {arr.shape}")
    if kind == "labels" and arr.ndim != 1:
        raise ValueError(f"labels must have shape (N,), got {arr.shape}")
    # A silent uint8 cast would wrap 256 to 0 and -1 to 255: refuse instead of writing wrong data.
    if arr.dtype != np.uint8 and arr.size and (arr.min() < 0 or arr.max() > 255):
        raise ValueError("IDX ubyte values must be in 0..255")
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    magic = IMAGE_MAGIC if kind == "images" else LABEL_MAGIC
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.tobytes()


def write_idx(path: str | os.PathLike, array: np.ndarray, kind: str) -> None:
    """Write an IDX ubyte file atomically (creating its folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, idx_bytes(array, kind))
