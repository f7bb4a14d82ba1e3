"""MNIST's own mistakes: images whose given label is probably wrong, found by confident learning (cleanlab).

Confident learning needs, for every image, class probabilities from a model that never saw that image.
For the training split they come from k-fold cross-validation: the split is cut into k stratified folds,
a shallow net (mnistcore.train.train, seconds a fold) is trained on the other k-1 folds and scores the
held-out one, so every image is scored exactly once, out of fold. The test split is scored by nets
trained on the whole training split. `cleanlab.filter.find_label_issues` then flags the images whose
given label the probabilities contradict more than the estimated noise rates allow, ranked by
self-confidence (the probability of the given label: lowest first).

Results are cached as JSON in <cache dir>/label-issues-<split>-<key>.json, the key a hash of the
data's checksums, the recipe and the cleanlab version, and written atomically. The results for the
standard MNIST files and the default recipe ship with the code (mnistcore/shipped/, same names), so a
fresh clone answers at once; anything else is computed, and the first net trained is timed to say
how long the rest will take on the machine at hand.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mnistcore.config import TrainConfig
from mnistcore.data import MnistData, default_data_dir
from mnistcore.fileio import FileTooLargeError, NotRegularFileError, atomic_write_json, read_bounded
from mnistcore.model import ShallowNet
from mnistcore.train import BatchEvent, train

SPLITS = ("train", "test")
CACHE_VERSION = 1
MAX_CACHE_BYTES = 64 * 1024 * 1024
SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
# One shallow net per fold, close to the `best` preset but shorter (784-1024-10, 12 one-cycle epochs, half the
# images distorted each epoch): ~98.7 % out of fold. Measured on MNIST train (see README): it flags ~50
# images, against 130 for an ensemble of two plain 784-512-10 nets (98.0 %), whose extra flags were mostly
# clean but unusual digits (crossed sevens, serifed ones) that a stronger model is sure about. Precision
# is chosen like any training run's (auto: bf16 only where measured faster; on an AVX2-only CPU bf16 is
# emulated and took ~4x longer than the whole fp32 computation).
DEFAULT_CONFIG = TrainConfig(
    hidden=1024,
    epochs=12,
    batch_size=512,
    lr=2e-3,
    schedule="onecycle",
    augment=True,
    augment_share=0.5,
    report_every=20,
    holdout=0,  # out-of-fold probabilities need no calibration split: every image of a fold trains its net
)
ESTIMATE_AFTER = 0.1  # share of the first net trained before the time left is estimated from it


class LabelIssuesError(RuntimeError):
    """A label-issues computation or cache that cannot be used; the message says why."""


class Stopped(LabelIssuesError):
    """The computation was stopped on request; nothing was cached."""


# TrainConfig fields added after results were cached and shipped, at the value that trains exactly as before.
AS_BEFORE: dict[str, Any] = {"holdout": 0, "augment_style": "mnist"}


@dataclass(frozen=True)
class Recipe:
    """How the out-of-fold probabilities are made."""

    folds: int = 5
    seeds: int = 1  # nets averaged per fold (an ensemble when > 1)
    seed: int = 0  # seeds the fold split and the nets
    config: TrainConfig = field(default_factory=lambda: DEFAULT_CONFIG)

    def __post_init__(self) -> None:
        if isinstance(self.folds, bool) or not isinstance(self.folds, int) or not 2 <= self.folds <= 20:
            raise ValueError("folds must be an integer between 2 and 20")
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or not 1 <= self.seeds <= 10:
            raise ValueError("seeds must be an integer between 1 and 10")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready, the cache key's input). Left out: the device and the report interval, which
        do not change what is found, and unset (None) settings, so that a TrainConfig field added later with
        a None default leaves existing caches valid; likewise fields added later at the value that trains as
        before they existed (AS_BEFORE)."""
        d = asdict(self)
        d["config"] = {
            k: v
            for k, v in self.config.to_dict().items()
            if k not in ("device", "report_every") and v is not None and not (k in AS_BEFORE and v == AS_BEFORE[k])
        }
        return d


@dataclass(frozen=True)
class Progress:
    """How far a computation is: nets trained so far, and the current net's share done."""

    net: int  # 1-based index of the net being trained
    nets: int
    fraction: float  # 0..1 over all nets
    message: str
    seconds_left: float | None = None  # estimated from the time the first net took here; None: not yet known


@dataclass(frozen=True)
class LabelIssue:
    """One flagged image: its index in the split, the given and the suggested label, and its score."""

    index: int
    given: int
    suggested: int
    score: float  # self-confidence: the out-of-fold probability of the given label (low = suspicious)
    probabilities: tuple[float, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "given": self.given, "suggested": self.suggested, "score": self.score}


@dataclass(frozen=True)
class LabelIssues:
    """A finished computation: the flagged images ranked (most suspicious first) and how they were found."""

    split: str
    issues: list[LabelIssue]
    recipe: dict[str, Any]
    checksums: dict[str, str]
    scored: int  # images scored
    accuracy: float  # of the out-of-fold (or held-out) predictions against the given labels
    seconds: float
    created: str
    cleanlab_version: str
    precision: str | None = None  # what the nets trained in ("fp32"/"bf16"), None in older results
    shipped: bool = False  # read from the results that ship with the code (not written to any cache)

    def to_dict(self) -> dict[str, Any]:
        """The cache file's content."""
        return {
            "version": CACHE_VERSION,
            "split": self.split,
            "recipe": self.recipe,
            "checksums": self.checksums,
            "scored": self.scored,
            "accuracy": self.accuracy,
            "seconds": self.seconds,
            "created": self.created,
            "cleanlab_version": self.cleanlab_version,
            "precision": self.precision,
            "issues": [{**i.to_json(), "probabilities": list(i.probabilities)} for i in self.issues],
        }

    @classmethod
    def from_dict(cls, d: Any) -> LabelIssues:
        """Validate and read a cache file's content."""
        try:
            if not isinstance(d, dict) or d.get("version") != CACHE_VERSION:
                raise ValueError(f"version {d.get('version') if isinstance(d, dict) else None!r}")
            if d["split"] not in SPLITS:
                raise ValueError(f"split {d['split']!r}")
            issues = []
            for item in d["issues"]:
                probs = tuple(float(p) for p in item.get("probabilities", ()))
                issue = LabelIssue(
                    index=_int(item["index"]),
                    given=_int(item["given"]),
                    suggested=_int(item["suggested"]),
                    score=float(item["score"]),
                    probabilities=probs,
                )
                if not (
                    0 <= issue.given <= 9 and 0 <= issue.suggested <= 9 and issue.index >= 0 and len(probs) in (0, 10)
                ):
                    raise ValueError(f"bad issue {item!r}")
                issues.append(issue)
            return cls(
                split=d["split"],
                issues=issues,
                recipe=dict(d["recipe"]),
                checksums=dict(d["checksums"]),
                scored=_int(d["scored"]),
                accuracy=float(d["accuracy"]),
                seconds=float(d["seconds"]),
                created=str(d["created"]),
                cleanlab_version=str(d["cleanlab_version"]),
                precision=_precision(d.get("precision")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise LabelIssuesError(f"not a valid label-issues result ({exc})") from None

    def flagged_indices(self) -> np.ndarray:
        """The flagged indices, in rank order."""
        return np.asarray([i.index for i in self.issues], dtype=np.int64)


def _precision(value: Any) -> str | None:
    if value is not None and value not in ("fp32", "bf16"):
        raise ValueError(f"precision {value!r}")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    """Split indices 0..N-1 into `folds` disjoint held-out sets, each with about the same class mix."""
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels)
    if len(labels) < folds:
        raise LabelIssuesError(f"{len(labels)} images cannot be split into {folds} folds")
    # StratifiedKFold wants every class at least `folds` times; rarer classes are only warned about.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed % 2**32)
        return [held for _, held in splitter.split(np.zeros(len(labels)), labels)]


def _subset(
    images: torch.Tensor,
    labels: torch.Tensor,
    held_images: torch.Tensor,
    held_labels: torch.Tensor,
    checksums: dict[str, str],
) -> MnistData:
    """An MnistData that trains on one part and measures on another (train() reports its test metrics)."""
    return MnistData(
        train_images=images, train_labels=labels, test_images=held_images, test_labels=held_labels, checksums=checksums
    )


def _probabilities(model: ShallowNet, images: torch.Tensor) -> np.ndarray:
    from mnistcore.normalize import normalize

    device = next(model.parameters()).device
    with torch.no_grad():
        return model.probabilities(normalize(images).to(device)).float().cpu().numpy().astype(np.float64)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


class _Ticker:
    """Turns each net's batch events into overall Progress, with the time left measured here once the first
    net is under way."""

    def __init__(
        self, nets: int, on_progress: Callable[[Progress], None] | None, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.nets, self.net, self.on_progress, self.clock = nets, 0, on_progress, clock
        self.started: float | None = None

    def start_net(self, message: str) -> None:
        if self.started is None:
            self.started = self.clock()
        self.net += 1
        self.message = message
        self._emit(0.0)

    def seconds_left(self, fraction: float) -> float | None:
        """Time left at this overall fraction, from how long the work so far took; None before the first net
        is ESTIMATE_AFTER done (its start includes one-time costs that would inflate the estimate)."""
        if self.started is None or fraction <= 0 or fraction * self.nets < ESTIMATE_AFTER:
            return None
        return (self.clock() - self.started) * (1 - fraction) / fraction

    def _emit(self, within: float) -> None:
        if self.on_progress is not None:
            fraction = min(1.0, (self.net - 1 + within) / self.nets)
            left = self.seconds_left(fraction)
            message = self.message if left is None else f"{self.message}: about {_duration(left)} left on this machine"
            self.on_progress(
                Progress(net=self.net, nets=self.nets, fraction=fraction, message=message, seconds_left=left)
            )

    def on_event(self, event: Any) -> None:
        if isinstance(event, BatchEvent):
            self._emit(event.step / event.total_steps)

    def done(self) -> None:
        if self.on_progress is not None:
            self.on_progress(Progress(net=self.nets, nets=self.nets, fraction=1.0, message="done", seconds_left=0.0))


def _train_net(config: TrainConfig, data: MnistData, ticker: _Ticker, stop: threading.Event | None) -> Any:
    result = train(config, data, on_event=ticker.on_event, stop=stop)
    if result.stopped:
        raise Stopped("stopped on request")
    return result.model


def out_of_fold_probabilities(
    images: torch.Tensor,
    labels: torch.Tensor,
    recipe: Recipe,
    on_progress: Callable[[Progress], None] | None = None,
    stop: threading.Event | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """(N, 10) probabilities, each row from nets that never trained on that image; and the folds used."""
    y = labels.numpy()
    folds = stratified_folds(y, recipe.folds, recipe.seed)
    probs = np.full((len(y), 10), np.nan)
    ticker = _Ticker(recipe.folds * recipe.seeds, on_progress)
    for k, held in enumerate(folds):
        keep = np.ones(len(y), dtype=bool)
        keep[held] = False
        train_idx = torch.from_numpy(np.flatnonzero(keep))
        held_t = torch.from_numpy(held)
        data = _subset(images[train_idx], labels[train_idx], images[held_t], labels[held_t], {})
        acc = np.zeros((len(held), 10))
        for s in range(recipe.seeds):
            ticker.start_net(f"fold {k + 1}/{recipe.folds}, net {s + 1}/{recipe.seeds}")
            model = _train_net(recipe.config.with_(seed=recipe.seed + 1000 * k + s), data, ticker, stop)
            acc += _probabilities(model, images[held_t])
        probs[held] = acc / recipe.seeds
    ticker.done()
    if np.isnan(probs).any():  # a fold split that missed an image would leave it unscored
        raise LabelIssuesError("some images were not scored out of fold")
    return probs, folds


def held_out_probabilities(
    data: MnistData,
    recipe: Recipe,
    on_progress: Callable[[Progress], None] | None = None,
    stop: threading.Event | None = None,
) -> np.ndarray:
    """(N_test, 10) probabilities of the test images from nets trained on the whole training split."""
    ticker = _Ticker(recipe.seeds, on_progress)
    probs = np.zeros((len(data.test_labels), 10))
    for s in range(recipe.seeds):
        ticker.start_net(f"net {s + 1}/{recipe.seeds} on the whole training split")
        probs += _probabilities(
            _train_net(recipe.config.with_(seed=recipe.seed + s), data, ticker, stop), data.test_images
        )
    ticker.done()
    return probs / recipe.seeds


def rank_issues(labels: np.ndarray, probs: np.ndarray) -> list[LabelIssue]:
    """cleanlab's label issues for these given labels and out-of-sample probabilities, most suspicious first."""
    from cleanlab.filter import find_label_issues

    labels = np.asarray(labels, dtype=np.int64)
    # n_jobs=1: cleanlab would otherwise fork worker processes, unwelcome inside a Streamlit server.
    ranked = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence", n_jobs=1)
    return [
        LabelIssue(
            index=int(i),
            given=int(labels[i]),
            suggested=int(np.argmax(probs[i])),
            score=round(float(probs[i, labels[i]]), 6),
            probabilities=tuple(round(float(p), 5) for p in probs[i]),
        )
        for i in ranked
    ]


def find_issues(
    data: MnistData,
    split: str = "train",
    recipe: Recipe | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    stop: threading.Event | None = None,
) -> LabelIssues:
    """Score a split's images out of sample and let cleanlab flag the likely label errors (not cached)."""
    import cleanlab

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    recipe = recipe or Recipe()
    start = time.perf_counter()
    if split == "train":
        labels = data.train_labels
        probs, _ = out_of_fold_probabilities(data.train_images, labels, recipe, on_progress, stop)
    else:
        labels = data.test_labels
        probs = held_out_probabilities(data, recipe, on_progress, stop)
    y = labels.numpy()
    return LabelIssues(
        split=split,
        issues=rank_issues(y, probs),
        recipe=recipe.to_dict(),
        checksums=dict(data.checksums),
        scored=len(y),
        accuracy=float((probs.argmax(1) == y).mean()),
        seconds=round(time.perf_counter() - start, 2),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        cleanlab_version=cleanlab.__version__,
        precision=_resolved_precision(recipe.config),
    )


def _resolved_precision(config: TrainConfig) -> str:
    """What the recipe's nets train in here: train() resolves "auto" the same way (and caches the choice)."""
    from mnistcore.hardware import choose_precision
    from mnistcore.train import resolve_device

    return choose_precision(config.precision, resolve_device(config.device), config.hidden, config.batch_size).precision


def default_cache_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Where results are cached: $MNIST_CACHE_DIR if set, else <data dir>/cache."""
    env = os.environ.get("MNIST_CACHE_DIR")
    if env:
        return Path(env)
    return (Path(data_dir) if data_dir is not None else default_data_dir()) / "cache"


def cache_key(checksums: dict[str, str], split: str, recipe: Recipe) -> str:
    """A short hash of what decides the result: the data, the split, the recipe and cleanlab's version."""
    from importlib.metadata import version

    blob = json.dumps(
        {
            "checksums": checksums,
            "split": split,
            "recipe": recipe.to_dict(),
            "cleanlab": version("cleanlab"),
            "version": CACHE_VERSION,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_path(cache_dir: str | os.PathLike, checksums: dict[str, str], split: str, recipe: Recipe) -> Path:
    """The cache file for this data, split and recipe."""
    return Path(cache_dir) / f"label-issues-{split}-{cache_key(checksums, split, recipe)}.json"


def load_cached(path: str | os.PathLike) -> LabelIssues | None:
    """A cached result, or None when there is none; a damaged cache raises LabelIssuesError."""
    path = Path(path)
    try:
        raw = read_bounded(path, MAX_CACHE_BYTES)
    except FileNotFoundError:
        return None
    except (NotRegularFileError, FileTooLargeError):
        raise LabelIssuesError(f"{path} is not a regular cache file of at most {MAX_CACHE_BYTES} bytes") from None
    except OSError as exc:
        raise LabelIssuesError(f"{path} is not valid JSON ({exc})") from None
    try:
        d = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise LabelIssuesError(f"{path} is not valid JSON ({exc})") from None
    return LabelIssues.from_dict(d)


def save_cached(path: str | os.PathLike, result: LabelIssues) -> None:
    """Write a result atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, result.to_dict())


def shipped_path(checksums: dict[str, str], split: str, recipe: Recipe) -> Path:
    """Where the result that ships with the code for this data, split and recipe would be."""
    return cache_path(SHIPPED_DIR, checksums, split, recipe)


def find_cached(
    data: MnistData, split: str, recipe: Recipe | None = None, cache_dir: str | os.PathLike | None = None
) -> LabelIssues | None:
    """A result computed before for this data and recipe (the cache dir first, then the shipped ones), or None.

    A damaged cache file counts as none (it is recomputed and replaced)."""
    recipe = recipe or Recipe()
    cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
    for path, shipped in (
        (cache_path(cache_dir, data.checksums, split, recipe), False),
        (shipped_path(data.checksums, split, recipe), True),
    ):
        try:
            found = load_cached(path)
        except LabelIssuesError:
            found = None
        if found is not None and found.checksums == dict(data.checksums) and found.split == split:
            return replace(found, shipped=shipped)
    return None


def label_issues(
    data: MnistData,
    split: str = "train",
    recipe: Recipe | None = None,
    cache_dir: str | os.PathLike | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    stop: threading.Event | None = None,
    refresh: bool = False,
) -> LabelIssues:
    """The label issues of a split: computed before (cache, or shipped for standard MNIST), else computed now."""
    recipe = recipe or Recipe()
    cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
    if not refresh:
        found = find_cached(data, split, recipe, cache_dir)
        if found is not None:
            return found
    result = find_issues(data, split, recipe, on_progress, stop)
    save_cached(cache_path(cache_dir, data.checksums, split, recipe), result)
    return result


def without_indices(data: MnistData, indices: np.ndarray) -> MnistData:
    """MNIST with the given training images left out (the test split unchanged)."""
    keep = np.ones(len(data.train_labels), dtype=bool)
    idx = np.asarray(indices, dtype=np.int64)
    if len(idx) and (idx.min() < 0 or idx.max() >= len(keep)):
        raise ValueError("an index to leave out is outside the training split")
    keep[idx] = False
    kept = torch.from_numpy(np.flatnonzero(keep))
    removed = hashlib.md5(np.sort(idx).tobytes()).hexdigest()
    return MnistData(
        train_images=data.train_images[kept],
        train_labels=data.train_labels[kept],
        test_images=data.test_images,
        test_labels=data.test_labels,
        checksums={**data.checksums, "removed_train_indices": removed},
    )


@dataclass(frozen=True)
class CleanedComparison:
    """The same recipe trained with and without the flagged training images, on the MNIST test set."""

    removed: int
    run: Any  # RunInfo of the run trained without them
    baseline: Any  # RunInfo of the run trained on everything (the active run, or one trained for the comparison)
    accuracy_with: float
    accuracy_without: float
    fixed: int  # test images the baseline gets wrong and the cleaned run right
    broken: int  # the reverse
    unsaved: str | None = None  # why a run is in a temp dir instead of the runs dir (None: saved there)


def _reusable_baseline(info: Any, checksums: dict[str, str]) -> bool:
    """Whether a saved run is a from-scratch, complete run of its recipe on exactly this MNIST."""
    return (
        info.parent is None
        and not info.stopped
        and info.dataset == checksums
        and not info.extra.get("drawings")
        and not info.extra.get("removed_flagged")
    )


def train_without_flagged(
    runs: Any,
    run_id: str,
    data: MnistData,
    flagged: np.ndarray,
    on_event: Callable[[Any], None] | None = None,
    stop: threading.Event | None = None,
    report_every: int = 10,
    source: str | None = None,
) -> CleanedComparison | None:
    """Train run_id's recipe (same seed) without the flagged training images; compare with it on the test set.

    The run itself is the baseline when it is a complete from-scratch run on this MNIST; otherwise (a
    resumed or fine-tuned run) the baseline is trained here too, so the two differ only in the images
    left out. The cleaned run is saved. None when stopped (nothing saved).
    """
    from mnistcore.evaluate import evaluate
    from mnistcore.runs import save_result

    unsaved: str | None = None
    base_info = runs.info(run_id)
    config = base_info.config.with_(report_every=report_every)
    runs.check_writable(config)  # fail before training, not after
    if _reusable_baseline(base_info, data.checksums):
        baseline_model, baseline = runs.load(run_id)[0], base_info
    else:
        result = train(config, data, on_event=on_event, stop=stop)
        if result.stopped:
            return None
        baseline, unsaved = save_result(
            runs, result, dataset=data.checksums, source=source, name="baseline for label issues"
        )
        baseline_model = result.model
    cleaned = without_indices(data, flagged)
    result = train(config, cleaned, on_event=on_event, stop=stop)
    if result.stopped:
        return None
    saved, unsaved_run = save_result(
        runs,
        result,
        dataset=cleaned.checksums,
        source=source,
        name=f"without {len(flagged)} flagged images",
        extra={"removed_flagged": len(flagged), "baseline": baseline.run_id},
    )
    ev_with = evaluate(baseline_model, data.test_images, data.test_labels)
    ev_without = evaluate(result.model, data.test_images, data.test_labels)
    right_with, right_without = ev_with.predictions == ev_with.labels, ev_without.predictions == ev_without.labels
    return CleanedComparison(
        removed=len(flagged),
        run=saved,
        baseline=baseline,
        accuracy_with=ev_with.accuracy,
        accuracy_without=ev_without.accuracy,
        fixed=int((~right_with & right_without).sum()),
        broken=int((right_with & ~right_without).sum()),
        unsaved=unsaved_run or unsaved,
    )
