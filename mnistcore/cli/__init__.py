"""Command line: python -m mnistcore data | train | evaluate | predict | explain | runs | rename | compare | export |
sweep | drawings | label-issues.

One module per command group (training, experiments, drawings, label_issues), each importing only
cli/options.py and the engine; this module puts them together. The engine is imported inside the commands, so
that `--help` stays quick and a test can replace an engine function (e.g. mnistcore.train.train).
"""

from __future__ import annotations

import argparse

from mnistcore.cli import drawings, experiments, label_issues, training
from mnistcore.cli.options import err


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser for all subcommands."""
    parser = argparse.ArgumentParser(prog="python -m mnistcore", description="MNIST Lab engine")
    sub = parser.add_subparsers(dest="command", required=True)
    train_parser, evaluate_parser = training.add_parsers(sub)
    experiments.add_parsers(sub)
    drawings.add_parsers(sub)
    label_issues.add_parser(sub)
    drawings.add_evaluate_options(evaluate_parser)
    drawings.add_train_options(train_parser)
    return parser


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
        return err(str(exc))
    except OSError as exc:  # a full disk, a permission, a file where a folder should be: one line, no traceback
        where = f" ({exc.filename})" if exc.filename else ""
        return err(f"{exc.strerror or exc}{where}")
