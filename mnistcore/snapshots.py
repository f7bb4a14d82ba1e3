"""Pictures of some hidden units while a network trains: live during training, and one per epoch saved with the run.

Which units: the first WATCHED (16) by number, for every run. At initialisation every unit's weights are
drawn independently from the same distribution, so any fixed set is as fair a sample as another; picking
by importance (as Inside the network orders them) would need the finished model or a pass over the test
set at every event. A fixed set costs nothing, stays the same units for the whole run, and for the runs
that continue it, which extend the same replay.

What a run keeps (SNAPSHOTS, safetensors, written inside the run's temporary folder and renamed into
place with it): the watched units' 784 input weights as float16 after every epoch, plus epoch 0 (the
weights training started from): 16 x 784 x 2 = 25 088 bytes, plus a 4-byte epoch number, per epoch.
float16 keeps about 3 significant digits, far more than a picture on a colour scale shows. The test
accuracy of each epoch is already in meta.json's history.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load as load_bytes
from safetensors.numpy import save_file

from mnistcore.config import MAX_EPOCHS
from mnistcore.fileio import read_bounded

WATCHED = 16  # units watched per run (all of them for a narrower net)
SNAPSHOTS = "units.safetensors"
PIXELS = 784
FORMAT = "units-v1"
FLOAT16_MAX = 65504.0
_MAX_BYTES = (2 * MAX_EPOCHS + 1) * (WATCHED * PIXELS * 2 + 4) + (1 << 16)  # a resumed chain may pass 200 epochs


class SnapshotError(ValueError):
    """A snapshots file that is not exactly ours (damaged, foreign, inconsistent); nothing from it was used."""


def watched_units(hidden: int) -> np.ndarray:
    """The unit numbers watched in a net of `hidden` units: 0 .. min(WATCHED, hidden) - 1 (module docstring)."""
    return np.arange(min(WATCHED, hidden), dtype=np.int64)


@dataclass(frozen=True)
class UnitSnapshots:
    """The watched units' input weights after each epoch (epoch 0: before training)."""

    units: np.ndarray  # (K,) int64: unit numbers
    epochs: np.ndarray  # (E,) int64: consecutive epoch numbers, ascending
    weights: np.ndarray  # (E, K, 784) float16

    def at(self, epoch: int) -> np.ndarray:
        """The units' weights (K, 28, 28) as float32 after `epoch`; KeyError if that epoch was not kept."""
        where = np.flatnonzero(self.epochs == epoch)
        if not len(where):
            raise KeyError(f"no snapshot of epoch {epoch} (kept: {self.epochs[0]}..{self.epochs[-1]})")
        return self.weights[int(where[0])].astype(np.float32).reshape(-1, 28, 28)

    @property
    def bytes_per_epoch(self) -> int:
        """Bytes of tensor data one epoch adds to the file (weights + its epoch number)."""
        return int(self.weights[0].nbytes) + 4 if len(self.weights) else 0


def take(w1: torch.Tensor, units: np.ndarray) -> np.ndarray:
    """The units' rows of the first-layer weights (H, 784) as a float16 (K, 784) CPU array."""
    index = torch.as_tensor(units, device=w1.device)
    rows = w1.index_select(0, index).to("cpu", torch.float32)
    return rows.clamp_(-FLOAT16_MAX, FLOAT16_MAX).to(torch.float16).numpy()  # a huge weight stays finite


class Recorder:
    """Keeps one snapshot per epoch during training, and hands out live pictures at most every `every` seconds."""

    def __init__(self, hidden: int, start: UnitSnapshots | None, done: int, every: float | None = None) -> None:
        self.units = watched_units(hidden)
        self.every = every
        self._next_live = 0.0
        self._epochs: list[int] = []
        self._weights: list[np.ndarray] = []
        # A continued run extends its parent's replay when it ends where this run starts, with the same units.
        same = start is not None and np.array_equal(start.units, self.units) and len(start.epochs) > 0
        if start is not None and same and int(start.epochs[-1]) == done:
            self._epochs, self._weights = [int(e) for e in start.epochs], list(start.weights)

    def epoch(self, epoch: int, w1: torch.Tensor) -> None:
        """Record the weights after `epoch` (0 or a continued run's start: where training starts from)."""
        if self._epochs and self._epochs[-1] == epoch:
            return  # the parent's last snapshot is this run's start
        self._epochs.append(epoch)
        self._weights.append(take(w1, self.units))

    def live(self, w1: torch.Tensor) -> np.ndarray | None:
        """The units' weights now, if live pictures were asked for and `every` seconds have passed; else None."""
        if self.every is None:
            return None
        now = time.perf_counter()
        if now < self._next_live:
            return None
        self._next_live = now + self.every
        return take(w1, self.units)

    def result(self) -> UnitSnapshots:
        """What was recorded, ready to save."""
        weights = np.stack(self._weights) if self._weights else np.zeros((0, len(self.units), PIXELS), np.float16)
        return UnitSnapshots(self.units.copy(), np.asarray(self._epochs, dtype=np.int64), weights)


def save(directory: Path, snaps: UnitSnapshots) -> None:
    """Write the snapshots (raw tensors, never pickle) into directory/SNAPSHOTS."""
    tensors: dict[str, np.ndarray] = {
        "units": np.ascontiguousarray(snaps.units, dtype=np.int64),
        "epochs": np.ascontiguousarray(snaps.epochs, dtype=np.int32),
        "weights": np.ascontiguousarray(snaps.weights, dtype=np.float16),
    }
    save_file(tensors, str(directory / SNAPSHOTS), metadata={"format": FORMAT})


def load(directory: Path, hidden: int) -> UnitSnapshots | None:
    """A run's snapshots; None for a run saved without them; SnapshotError if the file is not exactly ours."""
    path = directory / SNAPSHOTS
    if not path.exists() and not path.is_symlink():
        return None
    try:
        raw = read_bounded(path, _MAX_BYTES)  # only a regular file, under a size cap
        t = load_bytes(raw)
    except (OSError, ValueError, SafetensorError) as exc:
        raise SnapshotError(f"{path}: not a valid snapshots file ({exc})") from None
    units, epochs, weights = t.get("units"), t.get("epochs"), t.get("weights")
    if sorted(t) != ["epochs", "units", "weights"] or units is None or epochs is None or weights is None:
        raise SnapshotError(f"{path} holds {sorted(t)}, expected epochs, units and weights")
    k = len(watched_units(hidden))
    if units.dtype != np.int64 or not np.array_equal(units, watched_units(hidden)):
        raise SnapshotError(f"{path}: units {units.tolist()[:20]} are not the {k} watched units of this run")
    e = len(epochs)
    if epochs.dtype != np.int32 or epochs.ndim != 1 or not e or not np.array_equal(np.diff(epochs), np.ones(e - 1)):
        raise SnapshotError(f"{path}: epochs must be consecutive whole numbers, got {epochs.tolist()[:20]}")
    if epochs[0] < 0 or weights.dtype != np.float16 or weights.shape != (e, k, PIXELS):
        raise SnapshotError(f"{path}: weights {weights.dtype} {weights.shape}, expected float16 ({e}, {k}, {PIXELS})")
    if not np.isfinite(weights).all():
        raise SnapshotError(f"{path} holds non-finite weights")
    return UnitSnapshots(units, epochs.astype(np.int64), weights)
