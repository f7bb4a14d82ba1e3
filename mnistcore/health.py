"""What a server is doing, as data for its health page: page-run percentiles, disk per owner, process memory.

Pure functions over plain values and folders: the dashboard records the samples (ui/activity.py) and
formats the answers (app_pages/server.py).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mnistcore.fileio import read_bounded

NO_OWNER = "(no owner)"  # runs saved without sign-in (single-user mode, the CLI) or before it existed
_META_MAX = 4 << 20


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between ranks (numpy's default); None when empty."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    if not ordered:
        return None
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass(frozen=True)
class Timing:
    """Durations of the page runs in a window: how many, and their p50 / p95 / max in seconds."""

    count: int
    p50: float | None
    p95: float | None
    max: float | None


def timings(
    samples: Iterable[tuple[float, float, str]], now: float, window: float = 300.0
) -> tuple[Timing, dict[str, Timing]]:
    """Summarise (ended at, seconds, page) samples that ended in the last `window` seconds: all, and per page."""
    recent = [(secs, page) for ended, secs, page in samples if now - window <= ended <= now]
    by_page: dict[str, list[float]] = {}
    for secs, page in recent:
        by_page.setdefault(page, []).append(secs)

    def summary(values: list[float]) -> Timing:
        return Timing(len(values), percentile(values, 50), percentile(values, 95), max(values, default=None))

    return summary([s for s, _ in recent]), {page: summary(v) for page, v in sorted(by_page.items())}


def tree_bytes(path: str | os.PathLike) -> int:
    """Disk space a folder takes (allocated blocks where the platform says, else sizes), never through a link."""
    total = 0
    stack = [os.fspath(path)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:  # vanished meanwhile (deleted by another session or server) or unreadable
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            total += st.st_blocks * 512 if hasattr(st, "st_blocks") else st.st_size
            if stat.S_ISDIR(st.st_mode):
                stack.append(entry.path)
    return total


def run_owner(run_dir: str | os.PathLike) -> str:
    """Who a saved run belongs to: its meta.json "owner" when sign-in recorded one, else NO_OWNER.

    The owner is a person's email (or provider subject), whether stored as text or as the sign-in record
    {"iss", "sub", "email"}.
    """
    try:
        meta = json.loads(read_bounded(Path(run_dir) / "meta.json", _META_MAX))
    except (OSError, ValueError, RecursionError):
        return NO_OWNER
    owner = meta.get("owner") if isinstance(meta, dict) else None
    if isinstance(owner, dict):
        owner = owner.get("email") or owner.get("sub")
    return owner if isinstance(owner, str) and owner else NO_OWNER


def runs_disk_by_owner(runs_root: str | os.PathLike) -> dict[str, tuple[int, int]]:
    """{owner: (runs, bytes)} of the run folders in a runs dir (temp and trash folders are not runs)."""
    out: dict[str, tuple[int, int]] = {}
    try:
        entries = [
            e
            for e in os.scandir(os.fspath(runs_root))
            if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")
        ]
    except OSError:
        return out
    for entry in entries:
        owner = run_owner(entry.path)
        count, size = out.get(owner, (0, 0))
        out[owner] = (count + 1, size + tree_bytes(entry.path))
    return out


def drawings_disk_by_collection(drawings_root: str | os.PathLike) -> dict[str, tuple[int, int]]:
    """{collection: (drawings, bytes)} under a drawings root (one folder per collection, one per drawing)."""
    out: dict[str, tuple[int, int]] = {}
    try:
        collections = [e for e in os.scandir(os.fspath(drawings_root)) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return out
    for coll in collections:
        try:
            count = sum(e.is_dir(follow_symlinks=False) and not e.name.startswith(".") for e in os.scandir(coll.path))
        except OSError:
            continue
        out[coll.name] = (count, tree_bytes(coll.path))
    return out


def rss_bytes(pid: int) -> int | None:
    """Resident memory of a process (VmRSS in /proc/<pid>/status), or None: gone, or not Linux."""
    try:
        text = read_bounded(f"/proc/{int(pid)}/status", 64 << 10).decode(errors="replace")
    except (OSError, ValueError):
        return None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
    return None
