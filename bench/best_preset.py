"""The "best" preset: test accuracy and training seconds (targets: >= 99.2 % in <= 60 s on CPU).

    python -m bench.best_preset [--seed 0] [--epochs N] [--threads N]
"""

from __future__ import annotations

import argparse

from bench import machine
from mnistcore.config import PRESETS
from mnistcore.data import default_data_dir, load_mnist, provision_mnist
from mnistcore.train import EpochEvent, Event, train

TARGET_ACCURACY = 0.992
TARGET_SECONDS = 60.0


def main(argv: list[str] | None = None) -> int:
    """Train the best preset once and print its accuracy, seconds and per-epoch progress."""
    p = argparse.ArgumentParser(prog="python -m bench.best_preset", description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=None, help="override the preset's seed")
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: torch's own; 1 is far less hurt by other processes' load)")
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    changes = {k: v for k, v in (("seed", args.seed), ("epochs", args.epochs)) if v is not None}
    config = PRESETS["best"].with_(device="cpu", **changes)
    data_dir = default_data_dir()
    provision_mnist(data_dir)
    data = load_mnist(data_dir)
    print(f"best_preset: {config.to_dict()}")
    print(f"  machine: {machine()}")
    line: list[str] = []

    def on_event(event: Event) -> None:
        if isinstance(event, EpochEvent):
            line.append(f"{event.test_accuracy:.2%}")
            if event.epoch % 10 == 0 or event.epoch == event.epochs:
                print(f"  epochs {event.epoch - len(line) + 1}-{event.epoch}: {' '.join(line)} "
                      f"({event.elapsed:.1f} s so far)", flush=True)
                line.clear()

    result = train(config, data, on_event=on_event)
    ok_acc, ok_time = result.test_accuracy >= TARGET_ACCURACY, result.train_seconds <= TARGET_SECONDS
    print(f"  result: test accuracy {result.test_accuracy:.2%} ({'met' if ok_acc else 'NOT met'}: >= 99.2 %) "
          f"in {result.train_seconds:.1f} s ({'met' if ok_time else 'NOT met'}: <= 60 s), "
          f"{result.train_seconds / max(len(result.history), 1):.2f} s/epoch")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
