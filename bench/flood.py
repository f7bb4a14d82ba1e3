"""`python -m bench.flood`: N signed-in users each press Start every second for a while; what happens?

Driven at the job registry the Train page calls (ui/jobs.py JobRegistry.start, with each user's RunStore
acting for them, as ui/session.start_job does), not through browsers: ten Chromium instances would take
the two cores this runs on. Jobs are real (the default recipe, each in its own process under the server's
cap). Meanwhile a probe thread in this "server" process answers one drawn digit every 100 ms (prepare +
forward, as Draw does) and its latency is compared with the same probe before the flood. Prints refusals by
reason, the most jobs running at once, runs saved per user, start() latency and the probe's latency.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _probe(stop: threading.Event, out: list[float], model) -> None:
    """Answer one drawn digit every 100 ms, as Draw does, recording each answer's latency."""
    from mnistcore.predict import predict_prepared
    from mnistcore.preprocess import prepare_digit

    canvas = np.zeros((280, 280, 4), np.uint8)
    canvas[60:220, 130:150] = 255  # a "1"
    predict_prepared(model, prepare_digit(canvas))  # warm-up, not measured
    while not stop.is_set():
        t = time.perf_counter()
        predict_prepared(model, prepare_digit(canvas))
        out.append(time.perf_counter() - t)
        stop.wait(0.1)


def main(argv: list[str] | None = None) -> int:
    """Run the flood and print what happened."""
    p = argparse.ArgumentParser(prog="python -m bench.flood", description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=10)
    p.add_argument("--seconds", type=float, default=60.0, help="how long each user keeps pressing Start")
    p.add_argument("--max-runs", type=int, default=50, help="each user's run quota")
    args = p.parse_args(argv)

    import torch

    from mnistcore.config import PRESETS
    from mnistcore.data import default_data_dir, load_mnist
    from mnistcore.model import ShallowNet
    from mnistcore.owners import Actor, Owner
    from mnistcore.runs import RunStore
    from ui.background import JobError
    from ui.jobs import REGISTRY

    torch.set_num_threads(1)
    data = load_mnist(default_data_dir())
    runs_dir = Path(tempfile.mkdtemp(prefix="flood-runs-"))
    users = [Owner("https://idp.example", f"user{i}", f"user{i}@example.edu") for i in range(args.users)]
    stores = {u.key: RunStore(runs_dir, actor=Actor(u, max_runs=args.max_runs)) for u in users}
    model = ShallowNet(128).eval()

    before: list[float] = []
    stop_probe = threading.Event()
    probe = threading.Thread(target=_probe, args=(stop_probe, before, model), daemon=True)
    probe.start()
    time.sleep(10)
    stop_probe.set()
    probe.join()

    during: list[float] = []
    stop_probe = threading.Event()
    probe = threading.Thread(target=_probe, args=(stop_probe, during, model), daemon=True)
    probe.start()
    outcomes: collections.Counter[str] = collections.Counter()
    start_latency: list[float] = []
    running_max = 0
    lock = threading.Lock()

    def press(user: Owner) -> None:
        nonlocal running_max
        t_end = time.monotonic() + args.seconds
        while time.monotonic() < t_end:
            t = time.perf_counter()
            try:
                REGISTRY.start(user.key, PRESETS["default"], data, stores[user.key], keep_if_abandoned=False)
                why = "started"
            except JobError as exc:
                text = str(exc)
                why = (
                    "refused: own job running"
                    if "already have" in text
                    else "refused: server cap"
                    if "limit" in text
                    else "refused: quota"
                    if "saved runs" in text
                    else f"refused: {text[:60]}"
                )
            with lock:
                start_latency.append(time.perf_counter() - t)
                outcomes[why] += 1
                running_max = max(running_max, REGISTRY.slots.running())
            for job in [REGISTRY.get(user.key)]:
                if job is not None:
                    job.touch()  # the user's page is open: the job is not abandoned
            time.sleep(max(0.0, 1.0 - (time.perf_counter() - t)))

    t0 = time.monotonic()
    threads = [threading.Thread(target=press, args=(u,)) for u in users]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    flood_seconds = time.monotonic() - t0
    REGISTRY.shutdown(60)
    stop_probe.set()
    probe.join()

    per_user = [len(stores[u.key].owned_by(u)) for u in users]
    finished = sum(1 for u in users for r in stores[u.key].owned_by(u))
    print(f"{args.users} users pressing Start every second for {args.seconds:g} s ({flood_seconds:.0f} s wall)")
    for why, n in sorted(outcomes.items()):
        print(f"  {why:28s} {n}")
    print(f"  most jobs running at once: {running_max} (cap {REGISTRY.slots.max_running})")
    took = sorted(r.train_seconds for u in users for r in stores[u.key].owned_by(u))
    print(f"  runs saved: {finished} in all; per user min {min(per_user)}, max {max(per_user)}; trained in {took} s")
    print(
        f"  start() latency: p50 {statistics.median(start_latency) * 1e3:.1f} ms, "
        f"p95 {_percentile(start_latency, 95) * 1e3:.1f} ms, max {max(start_latency) * 1e3:.1f} ms"
    )
    for name, lat in (("before the flood", before), ("during the flood", during)):
        print(
            f"  drawn-digit answer {name}: p50 {statistics.median(lat) * 1e3:.1f} ms, "
            f"p95 {_percentile(lat, 95) * 1e3:.1f} ms, max {max(lat) * 1e3:.1f} ms ({len(lat)} answers)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
