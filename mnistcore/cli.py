"""Command line: python -m mnistcore data | train | evaluate | predict | explain | runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mnistcore.config import OPTIMIZERS, PRECISIONS, PRESETS, TrainConfig

PREPARED_HELP = ("the images are 28x28 greyscale MNIST-style pictures (white ink on black), given to the "
                 "network as they are: no cropping, scaling or centring")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=None, help="MNIST data dir (default $MNIST_DATA_DIR or ./data)")
    p.add_argument("--runs-dir", type=Path, default=None, help="saved runs dir (default $MNIST_RUNS_DIR or ./runs)")


def _train_options(p: argparse.ArgumentParser) -> None:
    """The training options shared by `train` and `sweep`."""
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="start from a preset (default: the seed recipe; best: the strongest shallow net)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--hidden", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--seed", type=int)
    p.add_argument("--dropout", type=float)
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="random affine/elastic/thickness distortions of training images")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--precision", choices=PRECISIONS,
                   help="auto (default): bf16 only where measured clearly faster on this machine; or fp32, bf16")
    p.add_argument("--budget", type=float, metavar="SECONDS",
                   help="train for about this long: the epochs are chosen from the throughput measured in the "
                        "first steps (instead of --epochs)")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser for all subcommands."""
    parser = argparse.ArgumentParser(prog="python -m mnistcore", description="MNIST Lab engine")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("data", help="provision and verify MNIST; print source and checksums")
    _common(d)
    d.set_defaults(func=cmd_data)
    t = sub.add_parser("train", help="train a model and save it as a run")
    t.set_defaults(func=cmd_train)
    _common(t)
    _train_options(t)
    t.add_argument("--resume", metavar="RUN",
                   help="continue RUN (weights and optimizer state) for --epochs more epochs, as a new run; "
                        "options not given are RUN's")
    t.add_argument("--name", help="a short name for the run (renamable later: rename RUN NAME)")
    t.add_argument("--json", action="store_true", help="print one JSON object on stdout at the end")
    e = sub.add_parser("evaluate", help="accuracy and confusion matrix of a saved run")
    e.set_defaults(func=cmd_evaluate)
    _common(e)
    e.add_argument("--run", default="latest", help="run id or 'latest'")
    e.add_argument("--json", action="store_true")
    pr = sub.add_parser("predict", help="predict the digit in image files (PNG/JPEG)")
    pr.set_defaults(func=cmd_predict)
    _common(pr)
    pr.add_argument("--run", default="latest", help="run id or 'latest'")
    pr.add_argument("images", nargs="+", type=Path)
    pr.add_argument("--json", action="store_true", help="(default) one JSON line per image")
    pr.add_argument("--prepared", action="store_true", help=PREPARED_HELP)
    ex = sub.add_parser("explain", help="why: per-pixel evidence for the predicted digit and the runner-up")
    ex.set_defaults(func=cmd_explain)
    _common(ex)
    ex.add_argument("--run", default="latest", help="run id or 'latest'")
    ex.add_argument("images", nargs="+", type=Path)
    ex.add_argument("--json", action="store_true", help="(default) one JSON line per image")
    ex.add_argument("--prepared", action="store_true", help=PREPARED_HELP)
    r = sub.add_parser("runs", help="list saved runs")
    r.set_defaults(func=cmd_runs)
    _common(r)
    r.add_argument("--json", action="store_true")
    _experiment_parsers(sub)
    _drawings_parsers(sub, t, e)
    return parser


def _experiment_parsers(sub: Any) -> None:
    """rename, compare, export and sweep; their commands live in mnistcore/experiments_cli.py."""
    from mnistcore import experiments_cli

    experiments_cli.add_parsers(sub, _common, _train_options)


def _drawings_parsers(sub: Any, train_parser: argparse.ArgumentParser,
                      evaluate_parser: argparse.ArgumentParser) -> None:
    """drawings, label-issues, evaluate --drawings, train --with-drawings; commands in mnistcore/drawings_cli.py."""
    from mnistcore import drawings_cli

    drawings_cli.add_parsers(sub, _common)
    evaluate_parser.add_argument("--drawings", action="store_true",
                                 help="evaluate on your drawings store instead of the MNIST test set")
    train_parser.add_argument("--with-drawings", action="store_true",
                              help="mix your drawings into the training images (oversampled to ~10 %% of them)")
    for p in (train_parser, evaluate_parser):
        drawings_cli.drawings_options(p)


def _config(args: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    base = base if base is not None else PRESETS[args.preset or "default"]
    changes = {name: getattr(args, name) for name in
               ("epochs", "hidden", "batch_size", "lr", "optimizer", "seed", "dropout", "augment", "device",
                "precision")
               if getattr(args, name) is not None}
    if args.budget is not None and args.epochs is not None:
        raise ValueError("--budget and --epochs exclude each other: a budget chooses the number of epochs")
    # A budget is never inherited (from a resumed run's config): it applies to this command only. Nor is
    # a resumed run's precision: it was resolved on the machine that trained it.
    changes["budget_seconds"] = args.budget
    if "precision" not in changes and base is not PRESETS[args.preset or "default"]:
        changes["precision"] = "auto"
    return base.with_(**changes)


def _err(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def cmd_data(args: argparse.Namespace) -> int:
    from mnistcore.data import provision_mnist

    report = provision_mnist(args.data_dir)
    print(f"source: {report.source}\nraw dir: {report.raw_dir}")
    for name, md5 in report.checksums.items():
        print(f"  {md5}  {name}  ok")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from mnistcore.data import load_mnist, provision_mnist
    from mnistcore.runs import RunError, RunStore, save_result, validate_name
    from mnistcore.train import BatchEvent, EpochEvent, resolve_device, train

    store = RunStore(args.runs_dir)
    init = parent = None
    try:
        validate_name(args.name)
        if args.resume is not None and args.preset is not None:
            raise ValueError("--preset cannot be combined with --resume (the run's own settings are the base)")
    except (RunError, ValueError) as exc:
        args.parser.error(str(exc))
    if args.resume is not None:
        init, parent = store.load_state(args.resume)  # a missing or damaged run ends here (exit 1)
    try:
        config = _config(args, parent.config if parent is not None else None)
        if parent is not None and config.hidden != parent.config.hidden:
            raise ValueError(f"--hidden cannot change when resuming: {parent.run_id} is 784-{parent.config.hidden}-10")
    except ValueError as exc:
        args.parser.error(str(exc))
    if parent is not None and init.optimizer != config.optimizer:
        why = ("was saved without optimizer state" if init.optimizer is None
               else f"used {init.optimizer}, this run uses {config.optimizer}")
        print(f"note: {parent.run_id} {why}: the optimizer starts afresh", file=sys.stderr)
    try:
        resolve_device(config.device)  # fail before provisioning and loading, not after
    except ValueError as exc:
        return _err(str(exc))
    store.check_writable(config)  # an unwritable or full runs dir fails now, not after training
    provision_mnist(args.data_dir)
    data = load_mnist(args.data_dir)
    drawings: dict[str, Any] = {}
    if args.with_drawings:
        from mnistcore.drawings import DrawingError
        from mnistcore.drawings_cli import mix_for_training

        try:
            data, drawings = mix_for_training(args, data)
        except DrawingError as exc:
            return _err(str(exc))
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
            bar.write(f"epoch {ev.epoch}/{ev.epochs}: test accuracy {ev.test_accuracy:.4f}, "
                      f"loss {ev.test_loss:.4f} ({ev.epoch_seconds:.2f} s)", file=sys.stderr)

    try:
        result = train(config, data, on_event=on_event, init=init)
    finally:
        bar.close()
    info, unsaved = save_result(store, result, dataset=data.checksums, name=args.name,
                                parent=parent.run_id if parent is not None else None,
                                extra={"drawings": drawings} if drawings else None)
    budget = result.budget.to_dict() if result.budget is not None else None
    out = {"run_id": info.run_id, "path": str(info.path), "test_accuracy": result.test_accuracy,
           "train_seconds": round(result.total_seconds, 3), "epochs": len(result.history),
           "config": result.config.to_dict(), "history": result.history,
           **({"drawings": drawings} if drawings else {}), "name": info.name, "parent": info.parent,
           "precision": result.config.precision, "budget": budget}
    if args.json:
        print(json.dumps(out))
    else:
        how = f"{result.config.precision}" + (f", {result.config.epochs} epochs for a {budget['seconds']:g} s budget"
                                              if budget else "")
        print(f"saved run {info.run_id} in {info.path}: test accuracy {result.test_accuracy:.2%} "
              f"in {result.train_seconds:.1f} s ({how})" + (f" (continues {info.parent})" if info.parent else ""))
    if unsaved:  # the model is safe, but not where it was asked to be: say so, and fail the command
        return _err(f"{unsaved}; the run was saved in {info.path} instead: move that folder into your runs dir")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.drawings:
        from mnistcore.drawings_cli import evaluate_drawings

        return evaluate_drawings(args)
    from mnistcore.data import load_mnist, provision_mnist
    from mnistcore.evaluate import evaluate
    from mnistcore.runs import RunStore

    model, info = RunStore(args.runs_dir).load(args.run)
    provision_mnist(args.data_dir)
    data = load_mnist(args.data_dir)
    ev = evaluate(model, data.test_images, data.test_labels)
    if args.json:
        print(json.dumps({"run_id": info.run_id, "accuracy": ev.accuracy, "errors": ev.errors,
                          "confusion_matrix": ev.confusion.tolist(), "precision": ev.precision.tolist(),
                          "recall": ev.recall.tolist()}))
        return 0
    print(f"run {info.run_id}: test accuracy {ev.accuracy:.2%} ({ev.errors} errors of {len(ev.labels)})")
    print("confusion matrix (rows = true digit, columns = predicted):")
    print("      " + " ".join(f"{c:>5}" for c in range(10)))
    for t, row in enumerate(ev.confusion):
        print(f"  {t:>2}  " + " ".join(f"{v:>5}" for v in row))
    print("digit  precision  recall")
    for c in range(10):
        print(f"  {c}     {ev.precision[c]:.3f}    {ev.recall[c]:.3f}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from mnistcore.explain import read_prepared
    from mnistcore.predict import predict_prepared
    from mnistcore.preprocess import ImageReadError, prepare_digit
    from mnistcore.runs import RunStore

    model, _ = RunStore(args.runs_dir).load(args.run)
    failures = 0
    for path in args.images:
        try:
            digit = read_prepared(path) if args.prepared else prepare_digit(path)
        except ImageReadError as exc:
            print(json.dumps({"path": str(path), "error": str(exc)}))
            failures += 1
            continue
        if digit.empty:
            print(json.dumps({"path": str(path), "error": digit.message}))
            failures += 1
            continue
        probs = predict_prepared(model, digit)
        print(json.dumps({"path": str(path), "digit": int(probs.argmax()),
                          "probabilities": [round(float(p), 6) for p in probs]}))
    return 1 if failures else 0


def cmd_explain(args: argparse.Namespace) -> int:
    from mnistcore.explain import explain, net_weights, read_prepared
    from mnistcore.preprocess import ImageReadError, prepare_digit
    from mnistcore.runs import RunStore

    model, _ = RunStore(args.runs_dir).load(args.run)
    weights = net_weights(model)
    failures = 0
    for path in args.images:
        try:
            digit = read_prepared(path) if args.prepared else prepare_digit(path)
        except ImageReadError as exc:
            digit = None
            error = str(exc)
        else:
            error = digit.message
        if digit is None or digit.empty:
            print(json.dumps({"path": str(path), "error": error}))
            failures += 1
            continue
        ex = explain(weights, digit.pixels)
        # Unrounded: the attributions of a class must still add up to its logit minus its baseline logit.
        print(json.dumps({"path": str(path), "digit": ex.digit, "runner_up": ex.runner_up,
                          "probabilities": [round(float(p), 6) for p in ex.probabilities],
                          "logits": ex.logits.tolist(), "baseline_logits": ex.baseline_logits.tolist(),
                          "attributions": {str(k): a.tolist() for k, a in ex.attributions.items()}}))
    return 1 if failures else 0


def cmd_runs(args: argparse.Namespace) -> int:
    from mnistcore.runs import RunStore

    runs = RunStore(args.runs_dir).list()
    if args.json:
        print(json.dumps([{"run_id": r.run_id, "name": r.name, "parent": r.parent, "path": str(r.path),
                           "test_accuracy": r.test_accuracy, "train_seconds": r.train_seconds,
                           "hidden": r.config.hidden, "created": r.created, "stopped": r.stopped,
                           "epochs": len(r.history), "config": r.config.to_dict()} for r in runs]))
        return 0
    if not runs:
        print("no saved runs; train one: python -m mnistcore train")
    for r in runs:
        print(f"{r.run_id}  {r.label}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 a failure explained on stderr, 2 bad arguments)."""
    from mnistcore.data import DataError
    from mnistcore.runs import RunError

    parser = build_parser()
    args = parser.parse_args(argv)
    args.parser = parser  # for parser.error() on option values only the command can check
    try:
        return args.func(args)
    except (DataError, RunError) as exc:
        return _err(str(exc))
    except OSError as exc:  # a full disk, a permission, a file where a folder should be: one line, no traceback
        where = f" ({exc.filename})" if exc.filename else ""
        return _err(f"{exc.strerror or exc}{where}")
