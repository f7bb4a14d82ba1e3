"""What the command groups share: the common flags, the training options, the config they make, the one
error line, and loading MNIST.

Imports stay light at module level: `python -m mnistcore --help` should not wait for the engine's heavy parts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from mnistcore.config import OPTIMIZERS, PRECISIONS, PRESETS, TrainConfig

if TYPE_CHECKING:
    from mnistcore.data import MnistData


def common(p: argparse.ArgumentParser) -> None:
    """--data-dir and --runs-dir, which every command takes."""
    p.add_argument("--data-dir", type=Path, default=None, help="MNIST data dir (default $MNIST_DATA_DIR or ./data)")
    p.add_argument("--runs-dir", type=Path, default=None, help="saved runs dir (default $MNIST_RUNS_DIR or ./runs)")


def command(sub: Any, name: str, func: Callable[[argparse.Namespace], int], **kwargs: Any) -> argparse.ArgumentParser:
    """A subcommand that runs `func` and takes the common options; kwargs go to add_parser (help=...)."""
    p = sub.add_parser(name, **kwargs)
    p.set_defaults(func=func)
    common(p)
    return p


def train_options(p: argparse.ArgumentParser) -> None:
    """The training options shared by `train` and `sweep`."""
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="start from a preset (default: the seed recipe; best: the strongest shallow net; draw: made for "
        "digits drawn on a canvas, Home's one-click model)",
    )
    p.add_argument("--epochs", type=int)
    p.add_argument("--hidden", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--seed", type=int)
    p.add_argument("--dropout", type=float)
    p.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="random affine/elastic/thickness distortions of training images",
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="auto (default): bf16 only where measured clearly faster on this machine; or fp32, bf16",
    )
    p.add_argument(
        "--holdout",
        type=int,
        metavar="N",
        help="training images held out (the last N) to calibrate the probabilities shown; 0: none (default 5000)",
    )
    p.add_argument(
        "--budget",
        type=float,
        metavar="SECONDS",
        help="train for about this long: the epochs are chosen from the throughput measured in the "
        "first steps (instead of --epochs)",
    )


def config_from_args(args: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    """The TrainConfig of the training options given, over `base` (a resumed run's) or the preset.

    Raises ValueError (a message for the user) on values the config refuses.
    """
    base = base if base is not None else PRESETS[args.preset or "default"]
    changes = {
        name: getattr(args, name)
        for name in (
            "epochs",
            "hidden",
            "batch_size",
            "lr",
            "optimizer",
            "seed",
            "dropout",
            "augment",
            "device",
            "precision",
            "holdout",
        )
        if getattr(args, name) is not None
    }
    if args.budget is not None and args.epochs is not None:
        raise ValueError("--budget and --epochs exclude each other: a budget chooses the number of epochs")
    # A budget is never inherited (from a resumed run's config): it applies to this command only. Nor is
    # a resumed run's precision: it was resolved on the machine that trained it.
    changes["budget_seconds"] = args.budget
    if "precision" not in changes and base is not PRESETS[args.preset or "default"]:
        changes["precision"] = "auto"
    return base.with_(**changes)


def err(message: str) -> int:
    """Print `error: message` on stderr; returns 1, the exit status of a failure explained there."""
    print(f"error: {message}", file=sys.stderr)
    return 1


def bad_option(args: argparse.Namespace, message: str) -> NoReturn:
    """Exit 2 with the usage line and `message`, for option values only the command can check."""
    parser: argparse.ArgumentParser = args.parser  # set by main()
    parser.error(message)


def load_data(args: argparse.Namespace) -> MnistData:
    """MNIST from --data-dir, provisioned (fetched and verified) first if needed."""
    from mnistcore.data import load_mnist, provision_mnist

    provision_mnist(args.data_dir)
    return load_mnist(args.data_dir)
