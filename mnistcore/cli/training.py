"""The training commands: data, train, evaluate, predict, explain, runs."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnistcore.cli.options import bad_option, command, common, config_from_args, err, load_data, train_options

if TYPE_CHECKING:
    from tqdm import tqdm

    from mnistcore.config import TrainConfig
    from mnistcore.preprocess import PreparedDigit
    from mnistcore.runs import RunInfo, RunStore
    from mnistcore.train import TrainResult, TrainState

PREPARED_HELP = (
    "the images are 28x28 greyscale MNIST-style pictures (white ink on black), given to the "
    "network as they are: no cropping, scaling or centring"
)


def add_parsers(sub: Any) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """Add data, train, evaluate, predict, explain and runs; returns the train and evaluate parsers."""
    d = sub.add_parser("data", help="provision and verify MNIST; print source and checksums")
    common(d)
    d.set_defaults(func=cmd_data)
    t = command(sub, "train", cmd_train, help="train a model and save it as a run")
    train_options(t)
    t.add_argument(
        "--resume",
        metavar="RUN",
        help="continue RUN (weights and optimizer state) for --epochs more epochs, as a new run; "
        "options not given are RUN's",
    )
    t.add_argument("--name", help="a short name for the run (renamable later: rename RUN NAME)")
    t.add_argument("--json", action="store_true", help="print one JSON object on stdout at the end")
    e = command(sub, "evaluate", cmd_evaluate, help="accuracy and confusion matrix of a saved run")
    e.add_argument("--run", default="latest", help="run id or 'latest'")
    e.add_argument("--json", action="store_true")
    images = (
        ("predict", cmd_predict, "predict the digit in image files (PNG/JPEG)"),
        ("explain", cmd_explain, "why: per-pixel evidence for the predicted digit and the runner-up"),
    )
    for name, func, what in images:
        p = command(sub, name, func, help=what)
        p.add_argument("--run", default="latest", help="run id or 'latest'")
        p.add_argument("images", nargs="+", type=Path)
        p.add_argument("--json", action="store_true", help="(default) one JSON line per image")
        p.add_argument("--prepared", action="store_true", help=PREPARED_HELP)
    r = command(sub, "runs", cmd_runs, help="list saved runs")
    r.add_argument("--json", action="store_true")
    return t, e


def cmd_data(args: argparse.Namespace) -> int:
    """`data`: provision and verify MNIST, print where it came from and its checksums."""
    from mnistcore.data import provision_mnist

    report = provision_mnist(args.data_dir)
    print(f"source: {report.source}\nraw dir: {report.raw_dir}")
    for name, md5 in report.checksums.items():
        print(f"  {md5}  {name}  ok")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """`train`: train a model (or continue one) and save it as a run."""
    from mnistcore.runs import RunStore, save_result
    from mnistcore.train import resolve_device, train

    store = RunStore(args.runs_dir)
    config, resumed = _train_config(args, store)
    init, parent = resumed if resumed is not None else (None, None)
    try:
        resolve_device(config.device)  # fail before provisioning and loading, not after
    except ValueError as exc:
        return err(str(exc))
    store.check_writable(config)  # an unwritable or full runs dir fails now, not after training
    data = load_data(args)
    drawings: dict[str, Any] = {}
    if args.with_drawings:
        from mnistcore.drawings import DrawingError

        try:
            # Wired in by cli/drawings.py (see build_parser), so this group does not import that one.
            data, drawings = args.mix_drawings(args, data)
        except DrawingError as exc:
            return err(str(exc))
    bar, on_event = _progress_bar()
    try:
        result = train(config, data, on_event=on_event, init=init)
    finally:
        bar.close()
    info, unsaved = save_result(
        store,
        result,
        dataset=data.checksums,
        name=args.name,
        parent=parent.run_id if parent is not None else None,
        extra={"drawings": drawings} if drawings else None,
    )
    _report_trained(args, result, info, drawings)
    if unsaved:  # the model is safe, but not where it was asked to be: say so, and fail the command
        return err(f"{unsaved}; the run was saved in {info.path} instead: move that folder into your runs dir")
    return 0


def _train_config(args: argparse.Namespace, store: RunStore) -> tuple[TrainConfig, tuple[TrainState, RunInfo] | None]:
    """The config to train and, with --resume, the state and run it continues; exits 2 on a bad option."""
    from mnistcore.runs import RunError, validate_name

    try:
        validate_name(args.name)
        if args.resume is not None and args.preset is not None:
            raise ValueError("--preset cannot be combined with --resume (the run's own settings are the base)")
    except (RunError, ValueError) as exc:
        bad_option(args, str(exc))
    if args.resume is None:
        try:
            return config_from_args(args), None
        except ValueError as exc:
            bad_option(args, str(exc))
    init, parent = store.load_state(args.resume)  # a missing or damaged run ends here (exit 1)
    try:
        config = config_from_args(args, parent.config)
        if config.hidden != parent.config.hidden:
            raise ValueError(f"--hidden cannot change when resuming: {parent.run_id} is 784-{parent.config.hidden}-10")
    except ValueError as exc:
        bad_option(args, str(exc))
    if init.optimizer != config.optimizer:
        why = (
            "was saved without optimizer state"
            if init.optimizer is None
            else f"used {init.optimizer}, this run uses {config.optimizer}"
        )
        print(f"note: {parent.run_id} {why}: the optimizer starts afresh", file=sys.stderr)
    return config, (init, parent)


def _progress_bar() -> tuple[tqdm, Callable[[Any], None]]:
    """A progress bar on stderr and the training-event callback that drives it."""
    from tqdm import tqdm

    from mnistcore.train import BatchEvent, EpochEvent

    bar = tqdm(total=None, unit="batch", file=sys.stderr, dynamic_ncols=True, leave=True)

    def on_event(ev: Any) -> None:
        if isinstance(ev, BatchEvent):
            bar.total = ev.total_steps
            bar.n = ev.step
            bar.set_description(f"epoch {ev.epoch}/{ev.epochs}")
            bar.set_postfix(loss=f"{ev.loss:.3f}", acc=f"{ev.train_accuracy:.3f}")
            bar.refresh()
        elif isinstance(ev, EpochEvent):
            # tqdm.write defaults to stdout, which belongs to the --json object.
            bar.write(
                f"epoch {ev.epoch}/{ev.epochs}: test accuracy {ev.test_accuracy:.4f}, "
                f"loss {ev.test_loss:.4f} ({ev.epoch_seconds:.2f} s)",
                file=sys.stderr,
            )

    return bar, on_event


def _report_trained(args: argparse.Namespace, result: TrainResult, info: RunInfo, drawings: dict[str, Any]) -> None:
    """Print the saved run: one JSON object with --json, else one line."""
    budget = result.budget.to_dict() if result.budget is not None else None
    out = {
        "run_id": info.run_id,
        "path": str(info.path),
        "test_accuracy": result.test_accuracy,
        "train_seconds": round(result.total_seconds, 3),
        "epochs": len(result.history),
        "config": result.config.to_dict(),
        "history": result.history,
        **({"drawings": drawings} if drawings else {}),
        "name": info.name,
        "parent": info.parent,
        "precision": result.config.precision,
        "budget": budget,
        "calibration": result.calibration,
    }
    if args.json:
        print(json.dumps(out))
        return
    how = f"{result.config.precision}" + (
        f", {result.config.epochs} epochs for a {budget['seconds']:g} s budget" if budget else ""
    )
    print(
        f"saved run {info.run_id} in {info.path}: test accuracy {result.test_accuracy:.2%} "
        f"in {result.train_seconds:.1f} s ({how})" + (f" (continues {info.parent})" if info.parent else "")
    )


def cmd_evaluate(args: argparse.Namespace) -> int:
    """`evaluate`: a saved run's accuracy, confusion matrix, precision and recall on the MNIST test set."""
    if args.drawings:
        return args.evaluate_drawings(args)  # wired in by cli/drawings.py (see build_parser)
    from mnistcore.calibration import evaluation_report
    from mnistcore.evaluate import evaluate
    from mnistcore.runs import RunStore

    model, info = RunStore(args.runs_dir).load(args.run)
    data = load_data(args)
    ev = evaluate(model, data.test_images, data.test_labels)
    assert ev.logits is not None
    note = None if info.calibration is not None else "saved before calibration: temperature 1.0 (uncalibrated)"
    calibration = evaluation_report(ev.logits, ev.labels, ev.temperature, note or (info.calibration or {}).get("note"))
    if args.json:
        print(
            json.dumps(
                {
                    "run_id": info.run_id,
                    "accuracy": ev.accuracy,
                    "errors": ev.errors,
                    "confusion_matrix": ev.confusion.tolist(),
                    "precision": ev.precision.tolist(),
                    "recall": ev.recall.tolist(),
                    "calibration": calibration,
                }
            )
        )
        return 0
    print(f"run {info.run_id}: test accuracy {ev.accuracy:.2%} ({ev.errors} errors of {len(ev.labels)})")
    print("confusion matrix (rows = true digit, columns = predicted):")
    print("      " + " ".join(f"{c:>5}" for c in range(10)))
    for t, row in enumerate(ev.confusion):
        print(f"  {t:>2}  " + " ".join(f"{v:>5}" for v in row))
    print("digit  precision  recall")
    for c in range(10):
        print(f"  {c}     {ev.precision[c]:.3f}    {ev.recall[c]:.3f}")
    why = f"; {calibration['note']}" if "note" in calibration else ""
    print(
        f"calibration: temperature {ev.temperature:.3f}, expected calibration error {calibration['ece']:.2%} "
        f"({calibration['ece_uncalibrated']:.2%} without it){why}"
    )
    return 0


def _read_digit(path: Path, prepared: bool) -> PreparedDigit | str:
    """The model input made from the image at `path`, or why there is none (unreadable, nothing drawn)."""
    from mnistcore.explain import read_prepared
    from mnistcore.preprocess import ImageReadError, prepare_digit

    try:
        digit = read_prepared(path) if prepared else prepare_digit(path)
    except ImageReadError as exc:
        return str(exc)
    return digit.message if digit.empty else digit


def _ood_fields(model: Any, ood: Any, digit: PreparedDigit) -> dict[str, Any]:
    """ "not_a_digit" and "ood_score" for one image; both null for a run saved without an OOD record."""
    if ood is None or digit.pixels is None:
        return {"not_a_digit": None, "ood_score": None}
    from mnistcore.ood import assess

    result = assess(model, ood, digit.pixels)
    return {"not_a_digit": result.not_a_digit, "ood_score": round(result.score, 6)}


def cmd_predict(args: argparse.Namespace) -> int:
    """`predict`: one JSON line per image, its digit and ten probabilities (or its error); 1 if any failed."""
    from mnistcore.predict import predict_prepared
    from mnistcore.runs import RunStore

    store = RunStore(args.runs_dir)
    model, info = store.load(args.run)
    ood = store.load_ood(info)
    failures = 0
    for path in args.images:
        digit = _read_digit(path, args.prepared)
        if isinstance(digit, str):
            print(json.dumps({"path": str(path), "error": digit}))
            failures += 1
            continue
        probs = predict_prepared(model, digit)
        print(
            json.dumps(
                {
                    "path": str(path),
                    "digit": int(probs.argmax()),
                    "probabilities": [round(float(p), 6) for p in probs],
                    **_ood_fields(model, ood, digit),
                }
            )
        )
    return 1 if failures else 0


def cmd_explain(args: argparse.Namespace) -> int:
    """`explain`: one JSON line per image with per-pixel evidence for each digit (or its error); 1 if any failed."""
    from mnistcore.explain import explain, net_weights
    from mnistcore.runs import RunStore

    store = RunStore(args.runs_dir)
    model, info = store.load(args.run)
    ood = store.load_ood(info)
    weights = net_weights(model)
    failures = 0
    for path in args.images:
        digit = _read_digit(path, args.prepared)
        if isinstance(digit, str):
            print(json.dumps({"path": str(path), "error": digit}))
            failures += 1
            continue
        assert digit.pixels is not None  # _read_digit returns only digits that are not empty
        ex = explain(weights, digit.pixels)
        # Unrounded: the attributions of a class must still add up to its logit minus its baseline logit.
        print(
            json.dumps(
                {
                    "path": str(path),
                    "digit": ex.digit,
                    "runner_up": ex.runner_up,
                    "probabilities": [round(float(p), 6) for p in ex.probabilities],
                    "logits": ex.logits.tolist(),
                    "baseline_logits": ex.baseline_logits.tolist(),
                    "attributions": {str(k): a.tolist() for k, a in ex.attributions.items()},
                    **_ood_fields(model, ood, digit),
                }
            )
        )
    return 1 if failures else 0


def cmd_runs(args: argparse.Namespace) -> int:
    """`runs`: list the saved runs (a JSON array with --json)."""
    from mnistcore.runs import RunStore

    runs = RunStore(args.runs_dir).list()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "run_id": r.run_id,
                        "name": r.name,
                        "parent": r.parent,
                        "path": str(r.path),
                        "test_accuracy": r.test_accuracy,
                        "train_seconds": r.train_seconds,
                        "hidden": r.config.hidden,
                        "created": r.created,
                        "stopped": r.stopped,
                        "epochs": len(r.history),
                        "config": r.config.to_dict(),
                        "owner": r.owner.display if r.owner is not None else None,
                    }
                    for r in runs
                ]
            )
        )
        return 0
    if not runs:
        print("no saved runs; train one: python -m mnistcore train")
    for r in runs:
        print(f"{r.run_id}  {r.label}" + (f"  [{r.owner.display}]" if r.owner is not None else ""))
    return 0
