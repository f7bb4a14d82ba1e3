"""File safety in one place: atomic writes (temp file + fsync + rename) and bounded reads of regular files.

Every file the engine writes goes through `atomic_write`, so a reader (another page, the CLI, a crash
mid-write) sees the old file or the new one, never half of one. Every small file it reads back (metadata,
caches, uploaded images, zips) goes through `read_bounded`, which checks the descriptor it reads from:
a symlink, FIFO, device, directory or oversized file is refused without hanging or filling memory.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

TEMP_SUFFIX = ".tmp"
FILE_MODE = 0o644  # mkstemp makes 0600; these are ordinary data files, like their neighbours
_READ_CHUNK = 1 << 20
# Not following a final symlink, and not blocking: a FIFO opened for reading would otherwise wait for a writer.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


class NotRegularFileError(ValueError):
    """read_bounded refused a path that is not a regular file (a symlink, FIFO, device, socket or directory)."""

    def __init__(self, path: str | os.PathLike, what: str) -> None:
        super().__init__(f"{path} is not a regular file (it is {what})")
        self.path, self.what = Path(path), what


class FileTooLargeError(ValueError):
    """read_bounded refused a file larger than its cap; `size` is None when it grew past the cap while read."""

    def __init__(self, path: str | os.PathLike, size: int | None, limit: int) -> None:
        if size is None:
            message = f"{path} grew past the {limit:,} bytes allowed while it was read"
        else:
            message = f"{path} is {size:,} bytes, more than the {limit:,} allowed"
        super().__init__(message)
        self.path, self.size, self.limit = Path(path), size, limit


def temp_prefix(name: str) -> str:
    """The prefix of atomic_write's temp files for a file called `name` (they end in TEMP_SUFFIX)."""
    return f".{name}."


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Replace `path` with `data` all at once: temp file in the same folder, fsync, chmod 0644, os.replace.

    On any failure (including KeyboardInterrupt) the temp file is removed and `path` is left as it was.
    The folder must exist.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = None) -> None:
    """atomic_write of json.dumps(obj, indent=indent) as UTF-8."""
    atomic_write(path, json.dumps(obj, indent=indent).encode())


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable where the platform allows it (best effort: the write already succeeded)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a plain file"


def _open_for_reading(path: Path) -> int:
    """A descriptor for path, never through a final symlink; NotRegularFileError for links and sockets."""
    if not hasattr(os, "O_NOFOLLOW") and os.path.islink(path):  # best effort where O_NOFOLLOW is missing
        raise NotRegularFileError(path, "a symbolic link")
    try:
        return os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK) and os.path.islink(path):  # what O_NOFOLLOW says on a link
            raise NotRegularFileError(path, "a symbolic link") from None
        if exc.errno == errno.ENXIO:  # a socket (or a device without its driver)
            raise NotRegularFileError(path, "a socket or device") from None
        raise


def read_bounded(path: str | os.PathLike, max_bytes: int) -> bytes:
    """The bytes of the regular file at `path`, at most max_bytes of them.

    Checked on the open descriptor, so the check and the read are of the same file even if the path is
    swapped meanwhile; at most max_bytes + 1 bytes are read, so a file that grows is caught too.
    Raises NotRegularFileError, FileTooLargeError (both ValueError), or OSError (missing, no permission).
    """
    path = Path(path)
    fd = _open_for_reading(path)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFileError(path, _kind(st.st_mode))
        if st.st_size > max_bytes:
            raise FileTooLargeError(path, st.st_size, max_bytes)
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(fd, min(_READ_CHUNK, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > max_bytes:
        raise FileTooLargeError(path, None, max_bytes)
    return b"".join(chunks)
