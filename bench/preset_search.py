"""Search recipes for a preset: final test accuracy of each candidate over several seeds, in parallel.

Accuracy depends on the recipe and the seed, not on the machine, so candidates can be screened where
training is fast (a GPU, or many cores) and only the chosen one timed on the slow machine
(bench.best_preset --avx2). Each candidate is "name:field=value,field=value" over the best preset.

    python -m bench.preset_search [--device cpu|cuda] [--jobs N] [--seeds 0,1,2] [--threads T]
                                  [--precision fp32]                                   [CANDIDATE ...]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import time
from typing import Any

from mnistcore.config import PRESETS, TrainConfig


def parse_candidate(text: str) -> tuple[str, dict[str, Any]]:
    """'name:hidden=800,epochs=40' -> ('name', {'hidden': 800, 'epochs': 40}); values parsed as JSON."""
    name, _, rest = text.partition(":")
    changes: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        changes[key] = json.loads(value)
    PRESETS["best"].with_(**changes)  # validates now, not in a worker
    return name, changes


def _one(job: tuple[str, dict[str, Any], int, str, int, str]) -> dict[str, Any]:
    import torch

    from mnistcore.data import default_data_dir, load_mnist
    from mnistcore.train import train

    name, changes, seed, device, threads, precision = job
    torch.set_num_threads(threads)
    config: TrainConfig = PRESETS["best"].with_(device=device, seed=seed, precision=precision, **changes)
    start = time.perf_counter()
    result = train(config, load_mnist(default_data_dir()))
    return {
        "name": name,
        "seed": seed,
        "changes": changes,
        "test_accuracy": result.test_accuracy,
        "curve": [round(h["test_accuracy"], 4) for h in result.history][-8:],
        "train_seconds": round(result.train_seconds, 2),
        "wall": round(time.perf_counter() - start, 2),
    }


def main(argv: list[str] | None = None) -> int:
    """Train every candidate with every seed; print one JSON line a run and a summary a candidate."""
    p = argparse.ArgumentParser(prog="python -m bench.preset_search", description=__doc__.splitlines()[0])
    p.add_argument("candidates", nargs="*", default=["best:"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--precision", default="fp32", help="fp32 (default: what the AVX2 reference runs), auto, bf16")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    jobs = [(*parse_candidate(c), s, args.device, args.threads, args.precision) for c in args.candidates for s in seeds]
    results: dict[str, list[float]] = {}
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        for r in pool.imap_unordered(_one, jobs):
            print(json.dumps(r), flush=True)
            results.setdefault(r["name"], []).append(r["test_accuracy"])
    for name, accs in results.items():
        print(
            f"{name}: min {min(accs):.2%} mean {statistics.mean(accs):.2%} over {len(accs)} seeds "
            f"({' '.join(f'{a:.2%}' for a in accs)})",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
