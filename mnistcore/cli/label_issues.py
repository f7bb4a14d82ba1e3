"""The label-issues command: training or test images whose label is probably wrong."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mnistcore.cli.options import bad_option, common, err, load_data


def add_parser(sub: Any) -> None:
    """Add the `label-issues` subcommand."""
    li = sub.add_parser("label-issues", help="training or test images whose label is probably wrong (cleanlab)")
    common(li)
    li.add_argument("--split", choices=("train", "test"), default="train")
    li.add_argument("--folds", type=int, default=None, help="k of the k-fold cross-validation (default 5)")
    li.add_argument("--seeds", type=int, default=None, help="nets averaged per fold (default 1)")
    li.add_argument("--refresh", action="store_true", help="recompute even when a cached result exists")
    li.add_argument("--top", type=int, default=30, help="rows shown without --json (default 30)")
    li.add_argument("--json", action="store_true", help="print the ranked JSON array on stdout")
    li.set_defaults(func=cmd_label_issues)


def cmd_label_issues(args: argparse.Namespace) -> int:
    """`label-issues`: rank the split's images by how likely their label is wrong (cached per recipe)."""
    from tqdm import tqdm

    from mnistcore.label_issues import LabelIssuesError, Recipe, default_cache_dir, label_issues

    try:
        changes = {k: v for k, v in (("folds", args.folds), ("seeds", args.seeds)) if v is not None}
        recipe = Recipe(**changes)
    except ValueError as exc:
        bad_option(args, str(exc))
    data = load_data(args)
    bar = tqdm(
        total=1000,
        file=sys.stderr,
        dynamic_ncols=True,
        leave=True,
        mininterval=0.5,
        bar_format="{l_bar}{bar}| {elapsed}<{remaining}",
    )

    def on_progress(p: Any) -> None:
        bar.set_description(p.message, refresh=False)
        bar.update(round(1000 * p.fraction) - bar.n)  # redraws at most every mininterval

    try:
        result = label_issues(
            data,
            args.split,
            recipe,
            cache_dir=default_cache_dir(args.data_dir),
            on_progress=on_progress,
            refresh=args.refresh,
        )
        if bar.n == 0:  # nothing was computed
            bar.set_description("shipped with MNIST Lab" if result.shipped else "read from the cache", refresh=False)
            bar.update(1000)
    except LabelIssuesError as exc:
        return err(str(exc))
    finally:
        bar.close()
    if args.json:
        print(json.dumps([i.to_json() for i in result.issues]))
        return 0
    where = " on the developers' machine, shipped with MNIST Lab" if result.shipped else ""
    print(
        f"{len(result.issues)} of {result.scored:,} {args.split} images flagged (out-of-sample accuracy "
        f"{result.accuracy:.2%}, {result.recipe['folds'] if args.split == 'train' else 'whole-train'} "
        f"folds, computed in {result.seconds:.0f} s{where}); most suspicious first:"
    )
    print("   index  given  suggested  score")
    for i in result.issues[: args.top]:
        print(f"  {i.index:>6}  {i.given:>5}  {i.suggested:>9}  {i.score:.4f}")
    return 0
