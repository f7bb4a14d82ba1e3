"""Experiments over saved runs: compare two, export one, sweep a setting over several values.

Engine only (no Streamlit): functions return dataclasses and bytes; the CLI and the pages format them.
"""

from __future__ import annotations

import csv
import io
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from mnistcore.config import TrainConfig
from mnistcore.data import MnistData
from mnistcore.evaluate import Evaluation, evaluate
from mnistcore.fileio import atomic_write
from mnistcore.runs import META, NAME_MAX, WEIGHTS, RunInfo, RunStore
from mnistcore.train import Event, TrainResult, train

EXPORT_FILES = (WEIGHTS, META, "confusion.csv", "predictions.csv")
MAX_SWEEP_VALUES = 20

# Every numeric option of TrainConfig can be swept (annotations are strings under `from __future__`);
# report_every only changes how often progress is reported, not what is learnt.
SWEEPABLE: dict[str, type] = {
    f.name: int if f.type == "int" else float
    for f in fields(TrainConfig)
    if f.type in ("int", "float") and f.name != "report_every"
}


# -- compare ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """Run B against run A on the same test set; `fixed` - `broken` = (accuracy B - accuracy A) x n_test."""

    runs: tuple[str, str]
    accuracy: tuple[float, float]
    n_test: int
    fixed_indices: np.ndarray  # test images A gets wrong and B right, A's most confident mistakes first
    broken_indices: np.ndarray  # test images A gets right and B wrong, B's most confident mistakes first
    per_class_recall: np.ndarray  # (2, 10): row 0 is A, row 1 is B
    config_diff: dict[str, tuple[Any, Any]]  # the config fields that differ: name -> (A's, B's)

    @property
    def fixed(self) -> int:
        """Number of test images A gets wrong and B right."""
        return len(self.fixed_indices)

    @property
    def broken(self) -> int:
        """Number of test images A gets right and B wrong."""
        return len(self.broken_indices)

    def to_json(self) -> dict[str, Any]:
        """The `compare --json` object."""
        return {
            "runs": list(self.runs),
            "accuracy": list(self.accuracy),
            "fixed": self.fixed,
            "broken": self.broken,
            "per_class_recall": self.per_class_recall.tolist(),
            "config_diff": {k: list(v) for k, v in self.config_diff.items()},
        }


def config_diff(a: TrainConfig, b: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """The fields of two configs that differ, in declaration order: name -> (a's value, b's value)."""
    da, db = a.to_dict(), b.to_dict()
    return {k: (da[k], db[k]) for k in da if da[k] != db[k]}


def compare_evaluations(info_a: RunInfo, ev_a: Evaluation, info_b: RunInfo, ev_b: Evaluation) -> Comparison:
    """Compare two runs from their evaluations on the same labelled test set."""
    if len(ev_a.labels) != len(ev_b.labels) or not np.array_equal(ev_a.labels, ev_b.labels):
        raise ValueError("the two evaluations are not of the same test set")
    right_a, right_b = ev_a.labels == ev_a.predictions, ev_b.labels == ev_b.predictions
    fixed = np.flatnonzero(~right_a & right_b)
    broken = np.flatnonzero(right_a & ~right_b)
    fixed = fixed[np.argsort(-ev_a.confidence[fixed], kind="stable")]
    broken = broken[np.argsort(-ev_b.confidence[broken], kind="stable")]
    return Comparison(
        runs=(info_a.run_id, info_b.run_id),
        accuracy=(ev_a.accuracy, ev_b.accuracy),
        n_test=len(ev_a.labels),
        fixed_indices=fixed,
        broken_indices=broken,
        per_class_recall=np.stack([ev_a.recall, ev_b.recall]).astype(np.float64),
        config_diff=config_diff(info_a.config, info_b.config),
    )


def compare(run_a: str, run_b: str, data: MnistData, store: RunStore | None = None) -> Comparison:
    """Load two saved runs (ids or 'latest'), evaluate both on data's test set and compare them."""
    store = store if store is not None else RunStore()
    model_a, info_a = store.load(run_a)
    model_b, info_b = store.load(run_b)
    return compare_evaluations(
        info_a,
        evaluate(model_a, data.test_images, data.test_labels),
        info_b,
        evaluate(model_b, data.test_images, data.test_labels),
    )


# -- export -----------------------------------------------------------------------------------------------


def confusion_csv(ev: Evaluation) -> bytes:
    """The confusion matrix as CSV: a header row and a header column of digits (rows true, columns predicted)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["true/predicted", *range(10)])
    for digit, row in enumerate(ev.confusion):
        w.writerow([digit, *(int(v) for v in row)])
    return out.getvalue().encode()


def predictions_csv(ev: Evaluation) -> bytes:
    """One row per test image: index,label,predicted,confidence,p0..p9 (probabilities round-trip float32)."""
    out = io.StringIO()
    out.write(",".join(["index", "label", "predicted", "confidence", *(f"p{d}" for d in range(10))]) + "\n")
    conf = ev.confidence
    for i in range(len(ev.labels)):
        # %.9g reads back as exactly the same float32, so the file agrees with the evaluation bit for bit.
        probs = ",".join(f"{p:.9g}" for p in ev.probabilities[i].tolist())
        out.write(f"{i},{int(ev.labels[i])},{int(ev.predictions[i])},{float(conf[i]):.9g},{probs}\n")
    return out.getvalue().encode()


def export_files(info: RunInfo, ev: Evaluation) -> dict[str, bytes]:
    """The export of a run as {file name: contents}: its weights and meta.json as saved, and two CSVs."""
    return {
        WEIGHTS: (info.path / WEIGHTS).read_bytes(),
        META: (info.path / META).read_bytes(),
        "confusion.csv": confusion_csv(ev),
        "predictions.csv": predictions_csv(ev),
    }


def export(run: str, data: MnistData, out_dir: str | os.PathLike, store: RunStore | None = None) -> list[Path]:
    """Write a run's EXPORT_FILES into out_dir (created if needed), each atomically; returns their paths."""
    store = store if store is not None else RunStore()
    model, info = store.load(run)  # validates the weights before they are copied anywhere
    files = export_files(info, evaluate(model, data.test_images, data.test_labels))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in files.items():
        atomic_write(out / name, content)
        written.append(out / name)
    return written


# -- sweep ------------------------------------------------------------------------------------------------


def sweep_param(name: str) -> str:
    """The TrainConfig field for a sweep parameter name ('batch-size' or 'batch_size'); ValueError if none."""
    field = name.strip().replace("-", "_")
    if field not in SWEEPABLE:
        raise ValueError(f"cannot sweep {name!r}: choose one of {', '.join(sorted(SWEEPABLE))}")
    return field


def parse_values(param: str, text: str) -> list[int | float]:
    """'32,64,128' -> [32, 64, 128], typed for the parameter; ValueError for anything else."""
    kind = SWEEPABLE[sweep_param(param)]
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise ValueError(f"--values needs comma-separated numbers, got {text!r}")
    values: list[int | float] = []
    for p in parts:
        try:
            values.append(kind(p))
        except ValueError:
            raise ValueError(f"{param} takes {'whole numbers' if kind is int else 'numbers'}; got {p!r}") from None
    return values


def sweep_configs(param: str, values: Sequence[int | float], base: TrainConfig) -> list[TrainConfig]:
    """One config per value (base with `param` set to it), all checked before anything trains."""
    field = sweep_param(param)
    if not 1 <= len(values) <= MAX_SWEEP_VALUES:
        raise ValueError(f"a sweep takes 1 to {MAX_SWEEP_VALUES} values, got {len(values)}")
    configs = []
    for v in values:
        try:
            configs.append(base.with_(**{field: v}))
        except ValueError as exc:
            raise ValueError(f"{field}={v}: {exc}") from None
    return configs


@dataclass(frozen=True)
class SweepEvent:
    """A training event of the sweep's run number `index` (0-based) of `total`."""

    index: int
    total: int
    value: int | float
    event: Event


@dataclass(frozen=True)
class SweepStep:
    """One finished (or stopped) run of a sweep; the caller saves it."""

    index: int
    value: int | float
    config: TrainConfig
    result: TrainResult


def sweep(
    param: str,
    values: Sequence[int | float],
    base_config: TrainConfig,
    data: MnistData,
    on_event: Callable[[SweepEvent], None] | None = None,
    stop: threading.Event | None = None,
    abort: threading.Event | None = None,
) -> Iterator[SweepStep]:
    """Train one run per value, in order, yielding each as it ends.

    `stop` ends the sweep cleanly once the current run has finished (no further run starts); `abort`
    also ends the current run within a batch (its step is then marked stopped, the sweep ends after it).
    """
    field = sweep_param(param)
    configs = sweep_configs(field, values, base_config)
    for i, (value, config) in enumerate(zip(values, configs, strict=True)):
        if (stop is not None and stop.is_set()) or (abort is not None and abort.is_set()):
            return

        def forward(event: Event, i: int = i, value: int | float = value) -> None:
            if on_event is not None:
                on_event(SweepEvent(index=i, total=len(configs), value=value, event=event))

        result = train(config, data, on_event=forward, stop=abort)
        yield SweepStep(index=i, value=value, config=config, result=result)
        if result.stopped:
            return


def run_name(param: str, value: int | float, prefix: str | None = None) -> str:
    """The name a sweep gives its run for `value`, e.g. 'hidden=64', after `prefix` (shortened to fit) if given."""
    base = f"{sweep_param(param)}={value:g}" if isinstance(value, float) else f"{sweep_param(param)}={value}"
    room = NAME_MAX - len(base) - 1
    return f"{prefix.strip()[:room].rstrip()} {base}" if prefix and prefix.strip() and room > 0 else base[:NAME_MAX]
