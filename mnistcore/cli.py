"""Command line: python -m mnistcore data | train | evaluate | predict | explain | runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mnistcore.config import OPTIMIZERS, PRESETS, TrainConfig

PREPARED_HELP = ("the images are 28x28 greyscale MNIST-style pictures (white ink on black), given to the "
                 "network as they are: no cropping, scaling or centring")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=None, help="MNIST data dir (default $MNIST_DATA_DIR or ./data)")
    p.add_argument("--runs-dir", type=Path, default=None, help="saved runs dir (default $MNIST_RUNS_DIR or ./runs)")


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
    t.add_argument("--preset", choices=sorted(PRESETS), default="default",
                   help="start from a preset (default: the seed recipe; best: the strongest shallow net)")
    t.add_argument("--epochs", type=int)
    t.add_argument("--hidden", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--optimizer", choices=OPTIMIZERS)
    t.add_argument("--seed", type=int)
    t.add_argument("--dropout", type=float)
    t.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="random affine/elastic/thickness distortions of training images")
    t.add_argument("--device", choices=("auto", "cpu", "cuda"))
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
    return parser


def _config(args: argparse.Namespace) -> TrainConfig:
    base = PRESETS[args.preset]
    changes = {name: getattr(args, name) for name in
               ("epochs", "hidden", "batch_size", "lr", "optimizer", "seed", "dropout", "augment", "device")
               if getattr(args, name) is not None}
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
    from mnistcore.runs import RunStore
    from mnistcore.train import BatchEvent, EpochEvent, resolve_device, train

    try:
        config = _config(args)
    except ValueError as exc:
        args.parser.error(str(exc))
    try:
        resolve_device(config.device)  # fail before provisioning and loading, not after
    except ValueError as exc:
        return _err(str(exc))
    provision_mnist(args.data_dir)
    data = load_mnist(args.data_dir)
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
        result = train(config, data, on_event=on_event)
    finally:
        bar.close()
    info = RunStore(args.runs_dir).save(
        result.model, config, test_accuracy=result.test_accuracy, train_seconds=result.train_seconds,
        history=result.history, dataset=data.checksums, stopped=result.stopped,
    )
    out = {"run_id": info.run_id, "path": str(info.path), "test_accuracy": result.test_accuracy,
           "train_seconds": round(result.train_seconds, 3), "epochs": len(result.history),
           "config": config.to_dict(), "history": result.history}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"saved run {info.run_id} in {info.path}: test accuracy {result.test_accuracy:.2%} "
              f"in {result.train_seconds:.1f} s")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
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
        print(json.dumps([{"run_id": r.run_id, "path": str(r.path), "test_accuracy": r.test_accuracy,
                           "hidden": r.config.hidden, "created": r.created, "stopped": r.stopped} for r in runs]))
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
