"""The experiment commands: rename, compare, export, sweep."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnistcore.cli.options import bad_option, command, config_from_args, err, load_data, train_options

if TYPE_CHECKING:
    from mnistcore.config import TrainConfig
    from mnistcore.data import MnistData
    from mnistcore.experiments import SweepEvent
    from mnistcore.runs import RunStore


def add_parsers(sub: Any) -> None:
    """Add the rename, compare, export and sweep subcommands to the CLI's subparsers."""
    rn = command(sub, "rename", cmd_rename, help="give a saved run a short name (an empty NAME clears it)")
    rn.add_argument("run", metavar="RUN", help="run id or 'latest'")
    rn.add_argument("name", metavar="NAME")
    c = command(
        sub, "compare", cmd_compare, help="compare two runs on the test set: which images B fixed and which it broke"
    )
    c.add_argument("run_a", metavar="RUN_A", help="run id or 'latest'")
    c.add_argument("run_b", metavar="RUN_B", help="run id or 'latest'")
    c.add_argument("--json", action="store_true")
    ex = command(sub, "export", cmd_export, help="write a run's weights, meta.json, confusion.csv and predictions.csv")
    ex.add_argument("--run", default="latest", help="run id or 'latest'")
    ex.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write into (created)")
    sw = command(sub, "sweep", cmd_sweep, help="train one run per value of a numeric option, one after another")
    sw.add_argument("--param", required=True, help="the option to sweep, e.g. hidden, lr, dropout, batch-size")
    sw.add_argument("--values", required=True, help="comma-separated values, e.g. 32,64,128")
    train_options(sw)
    sw.add_argument("--name", help="a prefix for the runs' names (each is named after its value)")
    sw.add_argument("--json", action="store_true", help="print one JSON object on stdout at the end")


def cmd_rename(args: argparse.Namespace) -> int:
    """`rename`: set or clear a saved run's name."""
    from mnistcore.runs import RunStore

    info = RunStore(args.runs_dir).rename(args.run, args.name)
    print(f"{info.run_id}: name {info.name!r}" if info.name else f"{info.run_id}: name cleared")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """`compare`: which test images run B fixed and broke against run A, recall per digit, settings diff."""
    from mnistcore.experiments import compare
    from mnistcore.runs import RunStore

    store = RunStore(args.runs_dir)
    store.info(args.run_a), store.info(args.run_b)  # a missing run fails before the data is loaded
    cmp = compare(args.run_a, args.run_b, load_data(args), store)
    if args.json:
        print(json.dumps(cmp.to_json()))
        return 0
    a, b = cmp.runs
    print(f"A {a}: test accuracy {cmp.accuracy[0]:.2%}\nB {b}: test accuracy {cmp.accuracy[1]:.2%}")
    change = cmp.fixed - cmp.broken
    print(
        f"B fixed {cmp.fixed} of A's mistakes and broke {cmp.broken} of its right answers: "
        f"{change:+d} images ({change / cmp.n_test * 100:+.2f} points)"
    )
    print("digit  recall A  recall B")
    for d in range(10):
        print(f"  {d}     {cmp.per_class_recall[0, d]:.3f}     {cmp.per_class_recall[1, d]:.3f}")
    if cmp.config_diff:
        print("settings that differ: " + ", ".join(f"{k} {va} -> {vb}" for k, (va, vb) in cmp.config_diff.items()))
    else:
        print("same settings")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """`export`: write a run's files into --out and print their paths."""
    from mnistcore.experiments import export
    from mnistcore.runs import RunStore

    store = RunStore(args.runs_dir)
    info = store.info(args.run)
    for path in export(info.run_id, load_data(args), args.out, store):
        print(path)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """`sweep`: train and save one run per value of one option, then print a table (or one JSON object)."""
    from mnistcore.experiments import sweep_configs
    from mnistcore.runs import RunStore
    from mnistcore.train import resolve_device

    field, values, base = _sweep_plan(args)
    try:
        resolve_device(base.device)
    except ValueError as exc:
        return err(str(exc))
    store = RunStore(args.runs_dir)
    # An unwritable or full runs dir fails now (RunError, exit 1), not after the first run.
    store.check_writable(max(sweep_configs(field, values, base), key=lambda c: c.hidden))
    data = load_data(args)
    stop, abort = threading.Event(), threading.Event()
    with _ctrl_c_stops(stop, abort):
        runs = _run_sweep(args, store, data, field, values, base, stop, abort)
    stopped = len(runs) < len(values)
    if args.json:
        print(json.dumps({"param": field, "values": values, "runs": runs, "stopped": stopped}))
        return 0
    print(f"{field:>14}  test accuracy  seconds  run")
    for run in runs:
        print(f"{run['value']:>14}  {run['test_accuracy']:>12.2%}  {run['train_seconds']:>7.1f}  {run['run_id']}")
    if stopped:
        print(f"stopped after {len(runs)} of {len(values)} runs")
    return 0


def _sweep_plan(args: argparse.Namespace) -> tuple[str, list[int | float], TrainConfig]:
    """The swept option, its values and the base config, all checked before anything trains; exits 2 if bad."""
    from mnistcore.experiments import parse_values, sweep_configs, sweep_param
    from mnistcore.runs import RunError, validate_name

    try:
        field = sweep_param(args.param)
        if getattr(args, field, None) is not None:
            raise ValueError(f"--{field.replace('_', '-')} is the swept option: give its values with --values")
        values = parse_values(field, args.values)
        base = config_from_args(args)
        sweep_configs(field, values, base)  # every value checked before anything trains
        validate_name(args.name)
    except (ValueError, RunError) as exc:
        bad_option(args, str(exc))
    return field, values, base


@contextlib.contextmanager
def _ctrl_c_stops(stop: threading.Event, abort: threading.Event) -> Iterator[None]:
    """Within: Ctrl-C once sets `stop` (end after this run), twice `abort` (end it now)."""

    def on_sigint(signum: int, frame: Any) -> None:
        if stop.is_set():
            abort.set()
            print("\nstopping now; the unfinished run is not saved", file=sys.stderr)
        else:
            stop.set()
            print("\nstopping after this run (Ctrl-C again to stop it now)", file=sys.stderr)

    # Signal handlers can only be installed from the main thread (not, say, from a test's worker thread).
    previous = (
        signal.signal(signal.SIGINT, on_sigint) if threading.current_thread() is threading.main_thread() else None
    )
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _print_epoch(ev: SweepEvent) -> None:
    """Each finished epoch of the run in progress, on stderr."""
    from mnistcore.train import EpochEvent

    if isinstance(ev.event, EpochEvent):
        e = ev.event
        print(
            f"  epoch {e.epoch}/{e.epochs}: test accuracy {e.test_accuracy:.4f}, loss {e.test_loss:.4f} "
            f"({e.epoch_seconds:.2f} s)",
            file=sys.stderr,
        )


def _run_sweep(
    args: argparse.Namespace,
    store: RunStore,
    data: MnistData,
    field: str,
    values: list[int | float],
    base: TrainConfig,
    stop: threading.Event,
    abort: threading.Event,
) -> list[dict[str, Any]]:
    """Train and save the runs one after another, with progress on stderr; the saved runs' JSON objects."""
    from mnistcore.experiments import run_name, sweep
    from mnistcore.runs import save_result

    runs: list[dict[str, Any]] = []
    print(f"sweep {field} over {values}: {len(values)} runs", file=sys.stderr)
    print(f"run 1/{len(values)}: {field}={values[0]}", file=sys.stderr)
    for step in sweep(field, values, base, data, on_event=_print_epoch, stop=stop, abort=abort):
        r = step.result
        if r.stopped:
            break
        info, unsaved = save_result(
            store,
            r,
            dataset=data.checksums,
            name=run_name(field, step.value, args.name),
            extra={"sweep": {"param": field, "values": values, "index": step.index}},
        )
        if unsaved is not None:
            print(f"warning: {unsaved}; saved in {info.path} instead", file=sys.stderr)
        runs.append(
            {
                "value": step.value,
                "run_id": info.run_id,
                "name": info.name,
                "path": str(info.path),
                "test_accuracy": r.test_accuracy,
                "train_seconds": round(r.train_seconds, 3),
                "epochs": len(r.history),
                "stopped": False,
                "config": r.config.to_dict(),
                "history": r.history,
            }
        )
        print(
            f"  saved {info.run_id} ({info.name}): test accuracy {r.test_accuracy:.2%} in {r.train_seconds:.1f} s",
            file=sys.stderr,
        )
        if step.index + 1 < len(values) and not stop.is_set():
            print(f"run {step.index + 2}/{len(values)}: {field}={values[step.index + 1]}", file=sys.stderr)
    return runs
