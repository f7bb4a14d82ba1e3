"""Saved training runs: safetensors weights + JSON metadata in runs/<id>/, written atomically."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mnistcore.config import TrainConfig
from mnistcore.model import ShallowNet

WEIGHTS = "model.safetensors"
META = "meta.json"
FORMAT_VERSION = 1


class RunError(ValueError):
    """A run that does not exist or is not a valid saved run; nothing from it was executed."""


@dataclass(frozen=True)
class RunInfo:
    """A saved run's metadata (what meta.json holds) and where it lives."""

    run_id: str
    path: Path
    config: TrainConfig
    created: str  # ISO 8601, UTC
    test_accuracy: float
    train_seconds: float
    history: list[dict[str, Any]]
    stopped: bool  # saved from a run that was stopped early
    dataset: dict[str, str]  # md5 of each raw MNIST file it was trained on
    extra: dict[str, Any]

    @property
    def label(self) -> str:
        """A one-line human description."""
        part = " (stopped early)" if self.stopped else ""
        return f"{self.test_accuracy:.2%} · 784-{self.config.hidden}-10 · {self.created[:16].replace('T', ' ')}{part}"


def default_runs_dir() -> Path:
    """The runs directory: $MNIST_RUNS_DIR if set, else ./runs."""
    return Path(os.environ.get("MNIST_RUNS_DIR", "runs"))


def _number(value: Any) -> float:
    """A JSON number as float; strings and booleans are not numbers here."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _utc(created: str) -> datetime:
    """Parse an ISO 8601 timestamp, naive ones taken as UTC, for sorting."""
    dt = datetime.fromisoformat(created)
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _expected_shapes(hidden: int) -> dict[str, tuple[int, ...]]:
    return {"fc1.weight": (hidden, 784), "fc1.bias": (hidden,), "fc2.weight": (10, hidden), "fc2.bias": (10,)}


class RunStore:
    """List, save, load and delete runs in one directory."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else default_runs_dir()

    def save(self, model: ShallowNet, config: TrainConfig, *, test_accuracy: float, train_seconds: float,
             history: list[dict[str, Any]], dataset: dict[str, str], stopped: bool = False,
             extra: dict[str, Any] | None = None) -> RunInfo:
        """Save weights + metadata into a temp dir, then rename it into place (all or nothing)."""
        self.root.mkdir(parents=True, exist_ok=True)
        created = datetime.now(UTC)
        run_id = f"{created:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
        meta = {
            # Microseconds: runs saved within one second must still sort (and so pick "latest") correctly.
            "format": FORMAT_VERSION, "run_id": run_id, "created": created.isoformat(timespec="microseconds"),
            "config": config.to_dict(), "test_accuracy": test_accuracy, "train_seconds": train_seconds,
            "history": history, "stopped": stopped, "dataset": dataset, "extra": extra or {},
        }
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{run_id}-", dir=self.root))
        try:
            state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
            save_file(state, str(tmp / WEIGHTS))
            (tmp / META).write_text(json.dumps(meta, indent=2))
            for name in (WEIGHTS, META):
                with open(tmp / name, "rb") as f:
                    os.fsync(f.fileno())
            os.chmod(tmp, 0o755)
            os.rename(tmp, self.root / run_id)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self.info(run_id)

    def _dir(self, run_id: str) -> Path:
        if run_id == "latest":
            runs = self.list()
            if not runs:
                raise RunError(f"no saved runs in {self.root}; train one first (python -m mnistcore train)")
            return runs[0].path
        if not isinstance(run_id, str) or not run_id or any(c in run_id for c in "/\\\0") or run_id.startswith("."):
            raise RunError(f"{run_id!r} is not a run id")
        path = self.root / run_id
        if not path.is_dir():
            raise RunError(f"no run {run_id!r} in {self.root}")
        return path

    def info(self, run_id: str) -> RunInfo:
        """Read and validate a run's metadata (by id or 'latest')."""
        path = self._dir(run_id)
        try:
            meta = json.loads((path / META).read_text())
            if not isinstance(meta, dict):
                raise TypeError(f"expected a JSON object, got {type(meta).__name__}")
            if meta.get("format") != FORMAT_VERSION:
                raise ValueError(f"format {meta.get('format')!r}, this version reads format {FORMAT_VERSION}")
            for key, kind in (("config", dict), ("history", list), ("created", str)):
                if not isinstance(meta[key], kind):
                    raise TypeError(f"{key} must be a {kind.__name__}")
            if not all(isinstance(h, dict) for h in meta["history"]):
                raise TypeError("history must be a list of objects")
            datetime.fromisoformat(meta["created"])
            return RunInfo(
                run_id=path.name, path=path, config=TrainConfig.from_dict(meta["config"]),
                created=meta["created"], test_accuracy=_number(meta["test_accuracy"]),
                train_seconds=_number(meta["train_seconds"]), history=list(meta["history"]),
                stopped=bool(meta.get("stopped", False)), dataset=dict(meta.get("dataset", {})),
                extra=dict(meta.get("extra", {})),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RunError(f"{path} is not a valid run: bad or missing {META} ({exc})") from None

    def list(self) -> list[RunInfo]:
        """Valid runs, newest first; unreadable directories are skipped."""
        if not self.root.is_dir():
            return []
        runs = []
        for p in self.root.iterdir():
            if p.is_dir() and not p.name.startswith("."):
                try:
                    runs.append(self.info(p.name))
                except RunError:
                    continue
        # Parsed, not compared as text: older runs stored seconds only, newer ones microseconds.
        return sorted(runs, key=lambda r: (_utc(r.created), r.run_id), reverse=True)

    def load(self, run_id: str = "latest", device: str | torch.device = "cpu") -> tuple[ShallowNet, RunInfo]:
        """Load a run's model (eval mode) and info; refuse anything that is not exactly our format."""
        info = self.info(run_id)
        weights = info.path / WEIGHTS
        try:
            # safetensors holds raw tensors only: a pickle (or anything else) cannot execute here.
            state = load_file(str(weights))
        except (SafetensorError, OSError, ValueError) as exc:
            raise RunError(f"{weights} is not a valid safetensors weights file ({exc})") from None
        expected = _expected_shapes(info.config.hidden)
        got = {k: tuple(v.shape) for k, v in state.items()}
        if got != expected:
            raise RunError(f"{weights} holds tensors {got}, expected {expected} for hidden={info.config.hidden}")
        wrong = sorted(k for k, v in state.items() if v.dtype != torch.float32)
        if wrong:
            raise RunError(f"{weights} holds {', '.join(wrong)} as non-float32 tensors; runs are saved as float32")
        model = ShallowNet(info.config.hidden, info.config.dropout)
        model.load_state_dict(state)
        return model.to(device).eval(), info

    def delete(self, run_id: str) -> None:
        """Delete a run (by id); renamed away first so a half-deleted run is never listed."""
        path = self._dir(run_id)
        trash = self.root / f".del-{path.name}-{int(time.time() * 1000)}"
        os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)
