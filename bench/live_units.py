"""What the Train page's live grid of hidden units costs training: seconds per epoch with and without it.

Each repeat trains the same recipe twice as a dashboard job does (ui.jobs: a niced child process that sends
its progress events through a pipe), once with live pictures of the watched units (the default, a picture
at most every ui.jobs.UNITS_EVERY seconds) and once without (train_kwargs units_every=None), in ABBA order.
Meanwhile a thread in this process does what an open Train page makes the server do every 0.5 s: take the
job's snapshot and build the training curves' figure, plus, with the live grid, the units' grid figure
(ui.figures.unit_grid_figure, as ui/units_view.py calls it), each serialised to JSON as Streamlit sends it.
The browser's own drawing is not counted: it runs on the user's machine.

Seconds per epoch come from the jobs' EpochEvents (the training loop and the test-set metrics, inside the
child); each job is ended after its last epoch (the calibration and "not a digit" fits that would follow
are the same both ways). The ratio is with / without, per pair, then the median over the pairs.

    python -m bench.live_units [--repeats 4] [--epochs 2] [--batch 16]
"""

from __future__ import annotations

import argparse
import dataclasses
import pickle
import statistics
import tempfile
import threading
import time

import numpy as np

from bench import machine
from mnistcore.config import PRESETS
from mnistcore.data import default_data_dir, load_mnist, provision_mnist
from mnistcore.runs import RunStore
from mnistcore.snapshots import Recorder, watched_units
from mnistcore.train import BatchEvent, EpochEvent
from ui.background import SlotRegistry
from ui.background.process import NICENESS, ChildProcess
from ui.figures import training_curves, unit_grid_figure
from ui.jobs import UNITS_EVERY, JobRegistry, TrainingJob

POLL = 0.5  # seconds: the Train page's fragment (ui/components.py live_progress)


class _Processes:
    """The dashboard's executor (ui.background.process.LocalProcesses) with a chosen niceness."""

    def __init__(self, niceness: int) -> None:
        self.niceness = niceness

    def start(self, fn, args, *, name, threads, on_message, on_end) -> ChildProcess:  # type: ignore[no-untyped-def]
        kw = {"name": name, "threads": threads, "on_message": on_message, "on_end": on_end}
        return ChildProcess(fn, args, niceness=self.niceness, **kw).start()


def _page(job: TrainingJob, live: bool, done: threading.Event, render_ms: list[float]) -> None:
    """Poll the job like an open Train page; the milliseconds each units grid took to build and serialise."""
    units = watched_units(job.config.hidden)
    while not done.is_set():
        snap = job.snapshot()
        if snap.events:
            training_curves(snap.events).to_json()
        if live and snap.units is not None and snap.units.units is not None:
            start = time.perf_counter()
            maps = snap.units.units.astype(np.float32).reshape(len(units), 28, 28)
            unit_grid_figure(maps, [f"#{j}" for j in units], [[int(j)] for j in units], cols=8).to_json()
            render_ms.append((time.perf_counter() - start) * 1e3)
        done.wait(POLL)


def _one(config, data, store: RunStore, live: bool, render_ms: list[float], niceness: int) -> tuple[float, int]:
    """Train once as a dashboard job: (mean seconds per epoch, live pictures received)."""
    registry = JobRegistry(SlotRegistry(), executor=_Processes(niceness))  # 1 thread a job, as on the server
    kwargs = {} if live else {"train_kwargs": {"units_every": None}}
    job = registry.start("bench", config, data, store, **kwargs)
    done = threading.Event()
    page = threading.Thread(target=_page, args=(job, live, done, render_ms), daemon=True)
    page.start()
    pictures, last = 0, None
    while job.running:  # count the pictures the job received (it keeps only the latest)
        snap = job.snapshot()
        if snap.units is not None and snap.units.step != last:
            pictures, last = pictures + 1, snap.units.step
        if snap.epochs_done == config.epochs:
            # Measured: the calibration and "not a digit" fits that follow take long and are the same both ways.
            job.kill()
        time.sleep(0.05)
    job.wait(60)
    done.set()
    page.join()
    events = job.snapshot().events
    registry.shutdown()
    seconds = [e.epoch_seconds for e in events if isinstance(e, EpochEvent)]
    if len(seconds) != config.epochs:
        raise RuntimeError(f"the job ended after {len(seconds)} of {config.epochs} epochs: {job.snapshot().error}")
    return statistics.mean(seconds), pictures


def cpu_costs(hidden: int = 128, n: int = 2000) -> tuple[float, float, float]:
    """CPU time (robust to a busy machine) of one live picture: taken and pickled in the job (us), unpickled
    by the server (us); and of one poll's units grid built and serialised on the server (ms)."""
    import torch

    w1 = torch.randn(hidden, 784)
    rec = Recorder(hidden, None, 0, every=0.0)
    bare = BatchEvent(1, 1, 1, 1, 1, 1, 0.0, 0.0, 0.0, 0.0)
    start = time.process_time()
    for _ in range(n):
        wire = pickle.dumps(dataclasses.replace(bare, units=rec.live(w1)))
    job_us = (time.process_time() - start) / n * 1e6
    start = time.process_time()
    for _ in range(n):
        event = pickle.loads(wire)
    recv_us = (time.process_time() - start) / n * 1e6
    units = watched_units(hidden)
    maps = event.units.astype(np.float32).reshape(len(units), 28, 28)
    start = time.process_time()
    for _ in range(50):
        unit_grid_figure(maps, [f"#{j}" for j in units], [[int(j)] for j in units], cols=8).to_json()
    return job_us, recv_us, (time.process_time() - start) / 50 * 1e3


def main(argv: list[str] | None = None) -> int:
    """Alternate jobs with and without the live grid; print seconds per epoch both ways and the ratio."""
    p = argparse.ArgumentParser(prog="python -m bench.live_units", description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=4, help="pairs of jobs (default 4)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=16, help="batch size (default 16: the most progress events)")
    p.add_argument(
        "--niceness",
        type=int,
        default=NICENESS,
        help=f"of the job processes, added to this one's (default {NICENESS}, as the dashboard's; on a machine "
        "busy with other work a niced job barely runs)",
    )
    args = p.parse_args(argv)
    data_dir = default_data_dir()
    provision_mnist(data_dir)
    data = load_mnist(data_dir)
    config = PRESETS["default"].with_(epochs=args.epochs, batch_size=args.batch)
    print(
        f"# live units grid: default recipe, batch {args.batch}, {args.epochs} epoch(s), "
        f"{args.repeats} ABBA pairs, job niceness +{args.niceness}"
    )
    print(f"# before: {machine()}")
    sample = BatchEvent(1, 1, 1, 1, 1, 1, 0.0, 0.0, 0.0, 0.0, np.zeros((16, 784), np.float16))
    bare = BatchEvent(1, 1, 1, 1, 1, 1, 0.0, 0.0, 0.0, 0.0)
    sizes = len(pickle.dumps(bare)), len(pickle.dumps(sample))
    print(f"progress event through the pipe: {sizes[0]} bytes, {sizes[1]} with a picture")
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(tmp)
        on, off, ratios, pictures, render_ms = [], [], [], [], []
        for r in range(args.repeats):
            pair = {}
            for live in (True, False) if r % 2 == 0 else (False, True):
                pair[live], n = _one(config, data, store, live, render_ms if live else [], args.niceness)
                if live:
                    pictures.append(n / (pair[live] * args.epochs))
                print(f"repeat {r + 1} {'with' if live else 'without'} live grid: {pair[live]:.3f} s/epoch", flush=True)
            on.append(pair[True])
            off.append(pair[False])
            ratios.append(pair[True] / pair[False])
    print(f"with the live grid:    median {statistics.median(on):.3f} s/epoch ({min(on):.3f}-{max(on):.3f})")
    print(f"without the live grid: median {statistics.median(off):.3f} s/epoch ({min(off):.3f}-{max(off):.3f})")
    print(
        f"ratio with / without, per pair: median {statistics.median(ratios):.3f} "
        f"({', '.join(f'{x:.3f}' for x in ratios)})"
    )
    print(
        f"pictures received: {statistics.median(pictures):.1f} a second (one at most every {UNITS_EVERY} s); "
        f"units grid built + serialised on the server: median {statistics.median(render_ms):.1f} ms "
        f"over {len(render_ms)} polls"
    )
    job_us, recv_us, grid_ms = cpu_costs()
    per_second = (job_us + recv_us) / 1e3 / UNITS_EVERY + grid_ms / POLL  # ms of CPU a second of training
    print(
        f"CPU time: a picture costs the job {job_us:.0f} us and the server {recv_us:.0f} us to receive; a poll's "
        f"units grid {grid_ms:.1f} ms: at most {per_second:.1f} ms a second = {per_second / 10:.2f} % of one core"
    )
    print(f"# after: {machine()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
