"""Saved training runs: safetensors weights + JSON metadata in runs/<id>/, written atomically."""

from __future__ import annotations

import builtins
import contextlib
import errno
import json
import logging
import os
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

try:
    import fcntl
except ImportError:  # not on POSIX: one server process per runs dir there
    fcntl = None  # type: ignore[assignment]
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from mnistcore.calibration import check_record, temperature_of
from mnistcore.config import TrainConfig
from mnistcore.fileio import TEMP_SUFFIX, atomic_write_json, read_bounded, temp_prefix
from mnistcore.model import ShallowNet, param_count
from mnistcore.ood import OodError, OodModel, ood_file_size
from mnistcore.ood import load as load_ood_file
from mnistcore.ood import save as save_ood
from mnistcore.owners import Actor, NotAllowedError, Owner, QuotaError, check_change
from mnistcore.snapshots import WATCHED, SnapshotError, UnitSnapshots
from mnistcore.snapshots import load as load_snapshots_file
from mnistcore.snapshots import save as save_snapshots
from mnistcore.train import OPTIMIZER_STATE_KEYS, PARAM_LAYOUT, RNG_STREAMS, TrainResult, TrainState

WEIGHTS = "model.safetensors"
META = "meta.json"
OPTIMIZER = "optimizer.safetensors"  # optimizer state + random streams, to continue a run exactly
FORMAT_VERSION = 1
NAME_MAX = 40  # characters in a user-given run name
META_MAX_BYTES = 4 << 20  # ours are ~100 KB even at 200 epochs; larger is not ours (or /dev/zero)
STALE_SECONDS = 30 * 60  # .tmp-*/.del-* folders untouched this long are leftovers of killed saves/deletes
ID_TRIES = 5  # fresh run ids tried when another process took the same one (same second, same 24 random bits)
_log = logging.getLogger(__name__)
_skips_logged: set[tuple[str, str]] = set()  # (path, reason) already logged: list() runs on every page view
_last_cleanup: dict[str, float] = {}  # runs dir -> when list() last cleaned it up


class RunError(ValueError):
    """A run that does not exist or is not a valid saved run; nothing from it was executed."""


class RunNotAllowedError(RunError, NotAllowedError):
    """Renaming, deleting or continuing someone else's run (mnistcore/owners.py); nothing was changed."""


class RunQuotaError(RunError, QuotaError):
    """The person already owns as many saved runs as they may; nothing was trained or written."""


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
    name: str | None = None  # a short user-given name (ids never change; names can)
    parent: str | None = None  # the run this one continued (train --resume), which may since be deleted
    # Its calibration (mnistcore.calibration.Calibration as a dict: "temperature", ...); None for runs saved
    # before calibration existed, which load with temperature 1.0.
    calibration: dict[str, Any] | None = None
    ood: dict[str, Any] | None = None  # the "not a digit" score's record (mnistcore/ood.py); None for older runs
    owner: Owner | None = None  # who trained it on a server with sign-in; None from the CLI or single-user mode

    @property
    def label(self) -> str:
        """A one-line human description."""
        part = " (stopped early)" if self.stopped else ""
        named = f"{self.name} · " if self.name else ""
        when = self.created[:16].replace("T", " ")
        return f"{named}{self.test_accuracy:.2%} · 784-{self.config.hidden}-10 · {when}{part}"


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


def validate_name(name: Any) -> str | None:
    """A run name as stored: stripped, 1..NAME_MAX printable characters; None or blank means no name."""
    if name is None:
        return None
    if not isinstance(name, str):
        raise RunError(f"a run name must be text, got {type(name).__name__}")
    name = name.strip()
    if not name:
        return None
    if len(name) > NAME_MAX:
        raise RunError(f"a run name has at most {NAME_MAX} characters, got {len(name)}")
    if not name.isprintable():
        raise RunError("a run name cannot hold control characters or line breaks")
    return name


def _is_run_id(value: Any) -> bool:
    """Could `value` name a run directory (no path separators, not hidden)?"""
    return (
        isinstance(value, str)
        and 0 < len(value) <= 200
        and value.isprintable()
        and not any(c in value for c in "/\\")
        and not value.startswith(".")
    )


def _parent(value: Any) -> str | None:
    """The stored parent run id, checked: it ends up in links and in lookups in this directory."""
    if value is not None and not _is_run_id(value):
        raise ValueError(f"parent {value!r} is not a run id")
    return value


def _write_optimizer(
    path: Path, config: TrainConfig, state: dict[str, torch.Tensor], rng: dict[str, torch.Tensor]
) -> None:
    """Write optimizer state + random-stream states as one safetensors file (raw tensors, never pickle)."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    tensors |= {f"rng.{k}": v.detach().to("cpu", torch.uint8).contiguous() for k, v in rng.items()}
    save_file(tensors, str(path), metadata={"optimizer": config.optimizer, "layout": ",".join(PARAM_LAYOUT)})


def read_optimizer_file(
    path: Path, optimizer: str, hidden: int
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(optimizer state, random-stream states) from an optimizer file; RunError unless it is exactly our format."""
    n = param_count(hidden)
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file")
        # Checked before reading: the file is read whole, and ours is never much bigger than its tensors.
        if st.st_size > 3 * 4 * n + (1 << 20):
            raise ValueError(f"{st.st_size} bytes, too large for a 784-{hidden}-10 net")
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:  # RuntimeError: see RunStore.load
        raise RunError(f"{path} is not a valid optimizer state file ({exc})") from None

    def bad(why: str) -> RunError:
        return RunError(f"{path} is not a valid optimizer state file: {why}")

    if metadata.get("optimizer") != optimizer:
        raise bad(f"it holds {metadata.get('optimizer')!r} state, the run used {optimizer!r}")
    if metadata.get("layout") != ",".join(PARAM_LAYOUT):
        raise bad(f"parameter layout {metadata.get('layout')!r}, expected {','.join(PARAM_LAYOUT)!r}")
    rng = {k.removeprefix("rng."): v for k, v in tensors.items() if k.startswith("rng.")}
    state = {k: v for k, v in tensors.items() if not k.startswith("rng.")}
    expected = OPTIMIZER_STATE_KEYS[optimizer]
    if sorted(state) != sorted(expected) or not set(rng) <= set(RNG_STREAMS):
        raise bad(f"tensors {sorted(tensors)}, expected {list(expected)} and rng.{{{','.join(RNG_STREAMS)}}}")
    for key, t in state.items():
        if t.dtype != torch.float32:
            raise bad(f"{key} is {t.dtype}, expected float32")
        if not bool(torch.isfinite(t).all()):
            raise bad(f"{key} holds non-finite values")
        if key == "step":
            if t.numel() != 1 or t.item() < 0 or t.item() != int(t.item()):
                raise bad(f"step must be one whole number >= 0, got {t.tolist()}")
        elif tuple(t.shape) != (n,):
            raise bad(f"{key} has shape {tuple(t.shape)}, expected ({n},) for hidden={hidden}")
        elif key == "exp_avg_sq" and bool((t < 0).any()):
            raise bad("exp_avg_sq holds negative values")
    for key, t in rng.items():
        if t.dtype != torch.uint8 or t.dim() != 1 or not 0 < t.numel() <= 65536:
            raise bad(f"rng.{key} must be a 1-D uint8 generator state")
    return state, rng


def _why(exc: OSError) -> str:
    """An OSError as a short reason: 'No space left on device', with the file when there is one."""
    reason = exc.strerror or str(exc)
    return f"{reason}: {exc.filename}" if exc.filename else reason


def run_size_estimate(config: TrainConfig) -> int:
    """Bytes a saved run of this config takes: weights, optimizer state, unit snapshots, metadata (an upper bound)."""
    n = param_count(config.hidden)
    snapshots = (config.epochs + 1) * (min(WATCHED, config.hidden) * 784 * 2 + 4)
    return 4 * n * (1 + len(OPTIMIZER_STATE_KEYS[config.optimizer])) + snapshots + ood_file_size() + (1 << 20)


def _expected_shapes(hidden: int) -> dict[str, tuple[int, ...]]:
    return {"fc1.weight": (hidden, 784), "fc1.bias": (hidden,), "fc2.weight": (10, hidden), "fc2.bias": (10,)}


class RunStore:
    """List, save, load and delete runs in one directory, acting for `actor` (mnistcore/owners.py).

    With an actor (a server with sign-in), saves are owned by the actor's person, check_writable()
    enforces their run quota, and rename/delete/load_state (continue) refuse another person's run with
    RunNotAllowedError. Without one (the command line, single-user dashboard) nothing is owned or refused.
    """

    def __init__(self, root: str | os.PathLike | None = None, actor: Actor | None = None) -> None:
        self.root = Path(root) if root is not None else default_runs_dir()
        self.actor = actor

    def _authorize(self, info: RunInfo, action: str) -> None:
        """Raise RunNotAllowedError unless this store's actor may `action` the run."""
        try:
            check_change(
                self.actor, info.owner, action, f"run {info.run_id}" + (f" ({info.name})" if info.name else "")
            )
        except NotAllowedError as exc:
            raise RunNotAllowedError(str(exc)) from None

    def owned_by(self, owner: Owner) -> builtins.list[RunInfo]:
        """The runs `owner` trained, newest first."""
        return [r for r in self.list() if owner.same_person(r.owner)]

    def check_quota(self, adding: int = 1) -> None:
        """Raise RunQuotaError when the actor's person may not own `adding` more runs (with what to do)."""
        actor = self.actor
        if actor is None or actor.owner is None or actor.max_runs is None:
            return
        have = len(self.owned_by(actor.owner))
        if have + adding > actor.max_runs:
            raise RunQuotaError(
                f"you have {have} saved runs, the most one person may keep on this server is {actor.max_runs}: "
                "delete some of yours on the Runs page first (nothing was trained or changed)"
            )

    def save(
        self,
        model: ShallowNet,
        config: TrainConfig,
        *,
        test_accuracy: float,
        train_seconds: float,
        history: list[dict[str, Any]],
        dataset: dict[str, str],
        stopped: bool = False,
        extra: dict[str, Any] | None = None,
        name: str | None = None,
        parent: str | None = None,
        optimizer_state: dict[str, torch.Tensor] | None = None,
        rng_state: dict[str, torch.Tensor] | None = None,
        calibration: dict[str, Any] | None = None,
        ood: OodModel | None = None,
        ood_seconds: float = 0.0,
        unit_snapshots: UnitSnapshots | None = None,
    ) -> RunInfo:
        """Save weights + metadata (+ optimizer state) into a temp dir, then rename it into place (all or nothing)."""
        name = validate_name(name)
        if parent is not None and not _is_run_id(parent):
            raise RunError(f"{parent!r} is not a run id")
        bad = sorted(k for k, v in model.state_dict().items() if not bool(torch.isfinite(v).all()))
        if bad:  # it could never be loaded (load refuses them): say so now, not on every later page view
            raise RunError(
                f"not saved: the weights ({', '.join(bad)}) hold NaN or infinity, so training diverged; "
                f"try a lower learning rate"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        self.cleanup_stale()
        created = datetime.now(UTC)
        run_id = f"{created:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
        meta = {
            # Microseconds: runs saved within one second must still sort (and so pick "latest") correctly.
            "format": FORMAT_VERSION,
            "run_id": run_id,
            "created": created.isoformat(timespec="microseconds"),
            "config": config.to_dict(),
            "test_accuracy": test_accuracy,
            "train_seconds": train_seconds,
            "history": history,
            "stopped": stopped,
            "dataset": dataset,
            "extra": extra or {},
            "name": name,
            "parent": parent,
            "calibration": check_record(calibration),
            "ood": ood.record(ood_seconds) if ood is not None else None,
            "owner": self.actor.owner.record() if self.actor is not None and self.actor.owner is not None else None,
        }
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{run_id}-", dir=self.root))
        try:
            state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
            save_file(state, str(tmp / WEIGHTS))
            (tmp / META).write_text(json.dumps(meta, indent=2))
            if optimizer_state:
                _write_optimizer(tmp / OPTIMIZER, config, optimizer_state, rng_state or {})
            if ood is not None:
                save_ood(tmp, ood)
            if unit_snapshots is not None and len(unit_snapshots.epochs):
                save_snapshots(tmp, unit_snapshots)
            for file in tmp.iterdir():
                with open(file, "rb") as f:
                    os.fsync(f.fileno())
            os.chmod(tmp, 0o755)
            run_id = self._publish(tmp, meta)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self.info(run_id)

    def _publish(self, tmp: Path, meta: dict[str, Any]) -> str:
        """Rename a complete temp run dir into place under its id, or a fresh id if another save took that one.

        os.rename never replaces a run: onto an existing (never empty) run folder it fails with ENOTEMPTY or
        EEXIST, and this save then takes a new id (two servers sharing one runs dir can save in the same second).
        """
        for _ in range(ID_TRIES):
            try:
                os.rename(tmp, self.root / meta["run_id"])
                return str(meta["run_id"])
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
            meta["run_id"] = f"{meta['run_id'].rsplit('-', 1)[0]}-{secrets.token_hex(3)}"
            atomic_write_json(tmp / META, meta, indent=2)
        raise RunError(f"could not find a free run id in {self.root} after {ID_TRIES} tries")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold an exclusive lock on the runs dir (flock on the folder itself: no lock file to list or clean).

        Renames and deletes take it, so that processes sharing the dir (several servers, the CLI) never
        rewrite a run's metadata while another deletes that run, nor lose one rename to another.
        """
        if fcntl is None:
            yield
            return
        fd = os.open(self.root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

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
            # Only a regular file under a size cap; deep nesting raises RecursionError inside json.
            meta = json.loads(read_bounded(path / META, META_MAX_BYTES))
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
            # Runs saved before the validation split existed trained on every training image.
            config = {"holdout": 0, **meta["config"]}
            return RunInfo(
                run_id=path.name,
                path=path,
                config=TrainConfig.from_dict(config),
                created=meta["created"],
                test_accuracy=_number(meta["test_accuracy"]),
                train_seconds=_number(meta["train_seconds"]),
                history=list(meta["history"]),
                stopped=bool(meta.get("stopped", False)),
                dataset=dict(meta.get("dataset", {})),
                extra=dict(meta.get("extra", {})),
                name=validate_name(meta.get("name")),
                parent=_parent(meta.get("parent")),
                calibration=check_record(meta.get("calibration")),
                ood=meta.get("ood") if isinstance(meta.get("ood"), dict) else None,
                owner=Owner.from_record(meta.get("owner")),
            )
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
            if isinstance(exc, FileNotFoundError) and not path.is_dir():  # deleted by another process meanwhile
                raise RunError(
                    f"no run {path.name!r} in {self.root}: it was deleted elsewhere meanwhile (another tab, "
                    f"session or process)"
                ) from None
            why = "nested too deeply" if isinstance(exc, RecursionError) else exc
            raise RunError(f"{path} is not a valid run: bad or missing {META} ({why})") from None

    def list(self) -> list[RunInfo]:
        """Valid runs, newest first; unreadable directories are skipped."""
        if not self.root.is_dir():
            return []
        if time.time() - _last_cleanup.get(str(self.root), 0.0) > STALE_SECONDS / 3:
            _last_cleanup[str(self.root)] = time.time()
            self.cleanup_stale()
        runs = []
        for p in self.root.iterdir():
            if p.is_dir() and not p.name.startswith("."):
                try:
                    runs.append(self.info(p.name))
                except RunError as exc:
                    if not p.is_dir():  # deleted meanwhile (another session or process): not a bad run
                        continue
                    # One bad run must not hide the others; its reason is logged once, not on every view.
                    if (str(p), str(exc)) not in _skips_logged:
                        _skips_logged.add((str(p), str(exc)))
                        _log.warning("skipping run %s: %s", p.name, exc)
                    continue
        # Parsed, not compared as text: older runs stored seconds only, newer ones microseconds.
        return sorted(runs, key=lambda r: (_utc(r.created), r.run_id), reverse=True)

    def load(self, run_id: str = "latest", device: str | torch.device = "cpu") -> tuple[ShallowNet, RunInfo]:
        """Load a run's model (eval mode) and info; refuse anything that is not exactly our format."""
        info = self.info(run_id)
        weights = info.path / WEIGHTS
        try:
            st = weights.stat()
            if not stat.S_ISREG(st.st_mode):
                raise ValueError("not a regular file")
            if st.st_size > 4 * param_count(info.config.hidden) + (1 << 20):  # tensors + a generous header
                raise ValueError(f"{st.st_size} bytes, too large for a 784-{info.config.hidden}-10 net")
            # safetensors holds raw tensors only: a pickle (or anything else) cannot execute here.
            state = load_file(str(weights))
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            # RuntimeError: torch maps the file after safetensors checked it; deleted in between, it says so
            if not info.path.is_dir():
                raise RunError(f"no run {info.run_id!r} in {self.root}: it was deleted elsewhere meanwhile") from None
            raise RunError(f"{weights} is not a valid safetensors weights file ({exc})") from None
        expected = _expected_shapes(info.config.hidden)
        got = {k: tuple(v.shape) for k, v in state.items()}
        if got != expected:
            raise RunError(f"{weights} holds tensors {got}, expected {expected} for hidden={info.config.hidden}")
        wrong = sorted(k for k, v in state.items() if v.dtype != torch.float32)
        if wrong:
            raise RunError(f"{weights} holds {', '.join(wrong)} as non-float32 tensors; runs are saved as float32")
        bad = sorted(k for k, v in state.items() if not bool(torch.isfinite(v).all()))
        if bad:  # it would predict NaN for every image
            raise RunError(
                f"{weights} holds NaN or infinite values in {', '.join(bad)}: the run is damaged "
                f"(or diverged) and cannot predict; delete it"
            )
        model = ShallowNet(info.config.hidden, info.config.dropout)
        model.load_state_dict(state)
        model.temperature = temperature_of(info.calibration)
        model.temperature_drawn = temperature_of(info.calibration, drawn=True)
        return model.to(device).eval(), info

    def load_ood(self, info: RunInfo) -> OodModel | None:
        """The run's "not a digit" model, or None: saved before it existed, or its file is damaged (logged)."""
        try:
            return load_ood_file(info.path, info.ood)
        except OodError as exc:
            _log.warning("run %s: ignoring its OOD record: %s", info.run_id, exc)
            return None

    def load_snapshots(self, info: RunInfo) -> UnitSnapshots | None:
        """The run's per-epoch pictures of its watched units; None for a run saved without them; RunError if damaged."""
        try:
            return load_snapshots_file(info.path, info.config.hidden)
        except SnapshotError as exc:
            raise RunError(str(exc)) from None

    def delete(self, run_id: str) -> None:
        """Delete a run (by id); renamed away first so a half-deleted run is never listed.

        A run already deleted elsewhere (another tab, session or process) raises RunError saying so.
        """
        gone = RunError(
            f"no run {run_id!r} in {self.root}: it was already deleted elsewhere (another tab, session or process)"
        )
        if _is_run_id(run_id) and run_id != "latest" and not (self.root / run_id).is_dir():
            raise gone
        path = self._dir(run_id)
        if self.actor is not None:  # a run whose meta.json cannot be read is an instructor's to delete
            try:
                info = self.info(path.name)
            except RunError:
                info = None
            if info is not None:
                self._authorize(info, "delete")
            elif not self.actor.instructor:
                raise RunNotAllowedError(f"Only an instructor can delete {path.name}, which is not a valid run.")
        trash = self.root / f".del-{path.name}-{int(time.time() * 1000)}-{secrets.token_hex(2)}"
        try:
            with self._locked():
                os.rename(path, trash)
        except FileNotFoundError:  # lost the race to another delete
            raise gone from None
        except OSError as exc:
            raise RunError(f"cannot delete run {path.name}: {_why(exc)}") from None
        shutil.rmtree(trash, ignore_errors=True)
        self.cleanup_stale()

    def cleanup_stale(self, older_than: float = STALE_SECONDS) -> builtins.list[str]:
        """Remove leftovers of killed saves (.tmp-*) and deletes (.del-*) untouched for `older_than` seconds.

        Only folders directly in the runs dir with our own prefixes, never through a symlink; a save in
        progress touches its .tmp- folder within seconds, so it is never taken. Returns the names removed.
        """
        removed: list[str] = []
        now = time.time()
        try:
            entries = list(os.scandir(self.root))
        except OSError:
            return removed
        for entry in entries:
            if _is_run_id(entry.name):
                removed += self._cleanup_meta_temps(entry, now - older_than)
                continue
            if not entry.name.startswith((".tmp-", ".del-")):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    continue
                newest = max([st.st_mtime] + [e.stat(follow_symlinks=False).st_mtime for e in os.scandir(entry.path)])
            except OSError:
                continue  # vanished meanwhile (its owner finished) or unreadable: leave it
            if now - newest < older_than:
                continue
            shutil.rmtree(entry.path, ignore_errors=True)
            if not os.path.lexists(entry.path):
                removed.append(entry.name)
                _log.info("removed stale %s from %s", entry.name, self.root)
        return removed

    def check_writable(self, config: TrainConfig | None = None) -> None:
        """Raise RunError now, before any training, if a run cannot be saved here (and why).

        Catches a runs dir that is a file or cannot be created, no permission, a read-only file system,
        and (with `config`) too little free space for a run of that size.
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".probe-", dir=self.root)
            os.close(fd)
            os.unlink(probe)
            free = shutil.disk_usage(self.root).free
        except OSError as exc:
            raise RunError(f"cannot save runs in {self.root}: {_why(exc)}") from None
        self.check_quota()
        need = run_size_estimate(config) if config is not None else 0
        if config is not None and free < need:  # need is 0 without a config
            raise RunError(
                f"cannot save runs in {self.root}: {free / 1e6:.1f} MB free, a run of "
                f"784-{config.hidden}-10 needs about {need / 1e6:.1f} MB"
            )

    def rename(self, run_id: str, name: str | None) -> RunInfo:
        """Give a run a name (None or blank clears it); meta.json is rewritten atomically, nothing else changes."""
        name = validate_name(name)
        self._must_exist(run_id)  # before the owner check, which would only say "no run"
        self._authorize(self.info(run_id), "rename")
        return self._update_meta(run_id, {"name": name})

    def _must_exist(self, run_id: str) -> None:
        """RunError saying the run was deleted elsewhere when a valid run id has no folder (any more)."""
        if _is_run_id(run_id) and run_id != "latest" and not (self.root / run_id).is_dir():
            raise RunError(
                f"no run {run_id!r} in {self.root}: it does not exist or was deleted elsewhere (another tab, "
                f"session or process)"
            )

    @staticmethod
    def _cleanup_meta_temps(run_dir: os.DirEntry, before: float) -> builtins.list[str]:
        """Remove a run's meta.json temp files (a rename or relink killed before its rename) older than `before`."""
        removed: builtins.list[str] = []
        try:
            if not run_dir.is_dir(follow_symlinks=False):
                return removed
            for entry in os.scandir(run_dir.path):
                # ".meta-" is what rewrites of meta.json were called before fileio named its temp files
                temp = entry.name.startswith((temp_prefix(META), ".meta-")) and entry.name.endswith(TEMP_SUFFIX)
                if temp and entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < before:
                    os.unlink(entry.path)
                    removed.append(f"{run_dir.name}/{entry.name}")
        except OSError:
            pass  # unreadable or vanished meanwhile: leave it
        return removed

    def _update_meta(self, run_id: str, changes: dict[str, Any]) -> RunInfo:
        """Rewrite some top-level fields of a valid run's meta.json atomically (temp file + rename)."""
        self._must_exist(run_id)
        info = self.info(run_id)  # refuses a run whose meta.json is not ours before touching it
        path = info.path / META
        try:
            with self._locked():  # read-modify-write: no other process renames or deletes it meanwhile
                if not info.path.is_dir():
                    raise RunError(
                        f"no run {info.run_id!r} in {self.root}: it was deleted elsewhere (another tab, session "
                        f"or process)"
                    )
                meta = json.loads(read_bounded(path, META_MAX_BYTES))
                meta.update(changes)
                atomic_write_json(path, meta, indent=2)
        except (OSError, ValueError) as exc:
            if isinstance(exc, RunError):
                raise
            raise RunError(f"cannot update {info.run_id}: {exc}") from None
        return self.info(info.run_id)

    def read_optimizer(self, run_id: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]] | None:
        """A run's saved optimizer and random-stream states, or None for a run saved without them."""
        info = self.info(run_id)
        path = info.path / OPTIMIZER
        if not path.exists() and not path.is_symlink():
            return None
        return read_optimizer_file(path, info.config.optimizer, info.config.hidden)

    def load_state(self, run_id: str) -> tuple[TrainState, RunInfo]:
        """Everything needed to continue a run: train(config, data, init=state); refuses damaged files.

        Continuing is the owner's (or an instructor's): another person's run raises RunNotAllowedError.
        """
        self._authorize(self.info(run_id), "continue")
        model, info = self.load(run_id)
        saved = self.read_optimizer(info.run_id)
        state, rng = saved if saved is not None else ({}, {})
        try:
            snapshots = self.load_snapshots(info)
        except RunError as exc:  # the replay starts afresh; the weights and optimizer state are what matter
            _log.warning("run %s: its snapshots are not continued: %s", info.run_id, exc)
            snapshots = None
        return TrainState(
            model=model,
            optimizer=info.config.optimizer if saved else None,
            optimizer_state=state,
            rng_state=rng,
            seed=info.config.seed,
            history=info.history,
            train_seconds=info.train_seconds,
            unit_snapshots=snapshots,
        ), info


def save_or_fallback(
    store: RunStore, model: ShallowNet, config: TrainConfig, **kwargs: Any
) -> tuple[RunInfo, str | None]:
    """store.save(...); if the runs dir fails (full disk, permissions), the same run in a new temp dir.

    A finished model is never lost silently: returns (info, None), or (info of the copy in the temp dir,
    why the runs dir failed). Raises RunError only when both fail, saying so.
    """
    try:
        return store.save(model, config, **kwargs), None
    except OSError as exc:
        why = f"could not save the run in {store.root} ({_why(exc)})"
    try:
        fallback = RunStore(tempfile.mkdtemp(prefix="mnist-lab-unsaved-"), actor=store.actor)
        return fallback.save(model, config, **kwargs), why
    except OSError as exc:
        raise RunError(f"{why}, nor in a temporary folder ({_why(exc)}): the trained model is lost") from None


def save_result(
    store: RunStore,
    result: TrainResult,
    *,
    dataset: dict[str, str],
    source: str | None = None,
    name: str | None = None,
    parent: str | None = None,
    stopped: bool | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[RunInfo, str | None]:
    """Save a finished training result with what ran, the one way every caller saves: (info, why unsaved).

    result.config is what ran (precision resolved on this machine, epochs chosen by a budget) and
    run_record() says how; a continued run's seconds include its parent's (the cost of reaching the
    model); the optimizer and random-stream states let a later run continue it. `source` says who
    trained it ("cli", "dashboard", ...). Like save_or_fallback: a failing runs dir falls back to a temp
    dir, and `why` (else None) says so.
    """
    record = {**({"source": source} if source is not None else {}), **result.run_record(), **(extra or {})}
    return save_or_fallback(
        store,
        result.model,
        result.config,
        test_accuracy=result.test_accuracy,
        train_seconds=result.total_seconds,
        history=result.history,
        dataset=dataset,
        stopped=result.stopped if stopped is None else stopped,
        extra=record,
        name=name,
        parent=parent,
        optimizer_state=result.optimizer_state,
        rng_state=result.rng_state,
        calibration=result.calibration,
        ood=result.ood,
        ood_seconds=result.ood_seconds,
        unit_snapshots=result.unit_snapshots,
    )
