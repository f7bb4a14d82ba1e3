"""`python -m bench` (`make bench`): every benchmark in turn; --quick takes a few minutes.

Not in this list (each runs alone, minutes long): `python -m bench.load` (several browsers against a real
server), `python -m bench.label_issues` (k-fold nets over MNIST), `python -m bench.experiments`,
`python -m bench.live_units` (training jobs with and without the Train page's live grid of hidden units).
"""

from __future__ import annotations

import argparse
import time

from bench import (
    attribution,
    best_preset,
    calibration,
    draw_preset,
    drawn_digits,
    finetune_drawings,
    inference,
    memory,
    ood,
    train_speed,
)


def main(argv: list[str] | None = None) -> int:
    """Run every benchmark below in turn (memory first, the draw preset last); 1 if any missed its target."""
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one repeat of train_speed, no best preset")
    p.add_argument("--repeats", type=int, default=3, help="train_speed repeats (default 3)")
    args = p.parse_args(argv)
    start = time.perf_counter()
    # Memory first: a child's peak RSS on Linux counts the parent's size at fork time, and the
    # parent grows while the other benchmarks run (1475 MiB measured that way against 1012 MiB alone).
    status = memory.main([])
    print()
    status |= train_speed.main(["--quick"] if args.quick else ["--repeats", str(args.repeats)])
    print()
    if not args.quick:
        status |= best_preset.main([])
        print()
        status |= best_preset.main(["--budget", "60"])
        print()
    status |= inference.main([])
    print()
    status |= drawn_digits.main(["--quick"] if args.quick else []) or 0
    print()
    status |= attribution.main(["--digits", "100"] if args.quick else []) or 0
    print()
    status |= finetune_drawings.main(["--seeds", "1"] if args.quick else []) or 0
    print()
    status |= calibration.main([])
    print()
    status |= ood.main(["--quick"] if args.quick else [])
    print()
    status |= draw_preset.main(["--per-digit", "30"] if args.quick else [])
    print()
    print(f"\nbench: done in {time.perf_counter() - start:.0f} s")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
