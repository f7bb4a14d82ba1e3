"""`python -m bench` (`make bench`): every benchmark in turn; --quick takes a minute or two."""

from __future__ import annotations

import argparse
import time

from bench import best_preset, inference, memory, train_speed


def main(argv: list[str] | None = None) -> int:
    """Run train_speed, best_preset, inference and memory; print each one's figures."""
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one repeat of train_speed, no best preset")
    p.add_argument("--repeats", type=int, default=3, help="train_speed repeats (default 3)")
    args = p.parse_args(argv)
    start = time.perf_counter()
    status = train_speed.main(["--quick"] if args.quick else ["--repeats", str(args.repeats)])
    print()
    if not args.quick:
        status |= best_preset.main([])
        print()
    status |= inference.main([])
    print()
    status |= memory.main([])
    print(f"\nbench: done in {time.perf_counter() - start:.0f} s")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
