"""What the Train page's live grid of hidden units costs training: seconds per epoch with and without it.

Each repeat trains the same recipe twice as a dashboard job does (ui.jobs: a niced child process that sends
its progress events through a pipe), once with live pictures of the watched units (the default, a picture
at most every ui.jobs.UNITS_EVERY seconds) and once without (train_kwargs units_every=None), in ABBA order.
Meanwhile a thread in this process does what an open Train page makes the server do every 0.5 s: take the
job's snapshot and build the training curves' figure, plus, with the live grid, the units' grid figure
(ui.figures.unit_grid_figure, as ui/units_view.py calls it), each serialised to JSON as Streamlit sends it.
The browser's own drawing is not counted: it runs on the user's machine.

Wall seconds per epoch come from the jobs' EpochEvents (the training loop and the test-set metrics, inside
the child); CPU seconds per epoch from the child's CPU clock, sent after each epoch (epochs after the first,
which also stages the data): on a machine busy with other work, wall seconds vary by tens of per cent from
run to run, CPU seconds far less. The page's CPU per poll is added, times the polls an epoch lasts. Each job
is ended after its last epoch (the calibration and "not a digit" fits that would follow are the same both
ways). Ratios are with / without, per pair, then the median over the pairs.

    python -m bench.live_units [--repeats 4] [--epochs 2] [--batch 16] [--niceness 10]
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
from ui.jobs import TRAIN, UNITS_EVERY, TrainingJob

POLL = 0.5  # seconds: the Train page's fragment (ui/components.py live_progress)


class _Processes:
    """The dashboard's executor (ui.background.process.LocalProcesses) with a chosen niceness."""

    def __init__(self, niceness: int) -> None:
        self.niceness = niceness

    def start(self, fn, args, *, name, threads, on_message, on_end) -> ChildProcess:  # type: ignore[no-untyped-def]
        kw = {"name": name, "threads": threads, "on_message": on_message, "on_end": on_end}
        return ChildProcess(fn, args, niceness=self.niceness, **kw).start()


def _timed_child(emit, stop, config, data, train_kwargs):  # type: ignore[no-untyped-def]
    """The dashboard job's function (ui.jobs._train_in_child), also sending this process's CPU clock at the
    start and after each epoch: CPU seconds hardly depend on what else the machine runs, wall seconds do."""
    from ui.jobs import _train_in_child

    def on_event(event):  # type: ignore[no-untyped-def]
        emit(event)
        if isinstance(event, EpochEvent):
            emit(("cpu", event.epoch, time.process_time()))

    emit(("cpu", 0, time.process_time()))
    return _train_in_child(on_event, stop, config, data, train_kwargs)


class _TimedJob(TrainingJob):
    """A TrainingJob (the same pipe, reader thread and bookkeeping) running _timed_child; keeps its CPU clocks."""

    def start(self) -> _TimedJob:
        self.cpu: dict[int, float] = {}
        return self._start(_timed_child, (self.config, self._data, self._train_kwargs), "bench-train")

    def _on_message(self, message) -> None:  # type: ignore[no-untyped-def]
        if isinstance(message, tuple):
            self.cpu[message[1]] = message[2]
        else:
            super()._on_message(message)


def _page(job: TrainingJob, live: bool, done: threading.Event, costs: list[float]) -> None:
    """Poll the job like an open Train page; each poll's CPU milliseconds (curves, and the units grid if live)."""
    units = watched_units(job.config.hidden)
    while not done.is_set():
        start = time.thread_time()
        snap = job.snapshot()
        if snap.events:
            training_curves(snap.events).to_json()
        if live and snap.units is not None and snap.units.units is not None:
            maps = snap.units.units.astype(np.float32).reshape(len(units), 28, 28)
            unit_grid_figure(maps, [f"#{j}" for j in units], [[int(j)] for j in units], cols=8).to_json()
        if snap.events:  # the polls before the first event draw nothing
            costs.append((time.thread_time() - start) * 1e3)
        done.wait(POLL)


def _one(config, data, store: RunStore, live: bool, niceness: int) -> dict[str, float]:
    """Train once as a dashboard job; per epoch (from the second on, when there are several): wall and CPU
    seconds in the job, the page's CPU milliseconds per poll, and live pictures received per second."""
    slot = SlotRegistry().acquire(TRAIN, "bench", busy="busy")  # 1 thread a job, as on the server
    kwargs = {} if live else {"units_every": None}
    job = _TimedJob(slot, "bench", config, data, store, executor=_Processes(niceness), train_kwargs=kwargs)
    job.start()
    done, costs = threading.Event(), []
    page = threading.Thread(target=_page, args=(job, live, done, costs), daemon=True)
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
    epochs = [e for e in job.snapshot().events if isinstance(e, EpochEvent)]
    if len(epochs) != config.epochs or len(job.cpu) < config.epochs + 1:
        raise RuntimeError(f"the job ended after {len(epochs)} of {config.epochs} epochs: {job.snapshot().error}")
    first = 1 if config.epochs > 1 else 0  # the first epoch also stages the data
    cpu = [job.cpu[e.epoch] - job.cpu[e.epoch - 1] for e in epochs[first:]]
    wall = [e.epoch_seconds for e in epochs[first:]]
    return {
        "wall": statistics.mean(wall),
        "cpu": statistics.mean(cpu),
        "poll_ms": statistics.mean(costs) if costs else 0.0,
        "pictures": pictures / sum(e.epoch_seconds for e in epochs),
    }


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
    runs: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(tmp)
        for r in range(args.repeats):
            for live in (True, False) if r % 2 == 0 else (False, True):
                m = _one(config, data, store, live, args.niceness)
                runs[live].append(m)
                print(
                    f"repeat {r + 1} {'with' if live else 'without'} live grid: {m['wall']:.3f} s/epoch wall, "
                    f"{m['cpu']:.3f} s/epoch CPU in the job, {m['poll_ms']:.1f} ms CPU a poll",
                    flush=True,
                )
    for what, unit in (("wall", "wall"), ("cpu", "CPU in the job")):
        on, off = [m[what] for m in runs[True]], [m[what] for m in runs[False]]
        ratios = [a / b for a, b in zip(on, off, strict=True)]
        print(
            f"{unit}: with {statistics.median(on):.3f} s/epoch ({min(on):.3f}-{max(on):.3f}), without "
            f"{statistics.median(off):.3f} ({min(off):.3f}-{max(off):.3f}); ratio per pair: median "
            f"{statistics.median(ratios):.3f} ({', '.join(f'{x:.3f}' for x in ratios)})"
        )
    # The server's share: its CPU per poll times the polls in an epoch (the wall epoch on this machine).
    total = {}
    for live in (True, False):
        ms = statistics.median(m["poll_ms"] for m in runs[live])
        cpu = statistics.median(m["cpu"] for m in runs[live])
        wall = statistics.median(m["wall"] for m in runs[live])
        total[live] = cpu + ms / 1e3 * wall / POLL
        print(
            f"{'with' if live else 'without'} the live grid: page poll {ms:.1f} ms CPU; job + page "
            f"{total[live]:.3f} CPU s/epoch"
        )
    print(f"CPU seconds per epoch, job + page, with / without: {total[True] / total[False]:.3f}")
    pictures = statistics.median(m["pictures"] for m in runs[True])
    print(f"pictures received: {pictures:.1f} a second (one at most every {UNITS_EVERY} s)")
    job_us, recv_us, grid_ms = cpu_costs()
    per_second = (job_us + recv_us) / 1e3 / UNITS_EVERY + grid_ms / POLL  # ms of CPU a second of training
    print(
        f"CPU time: a picture costs the job {job_us:.0f} us and the server {recv_us:.0f} us to receive; a poll's "
        f"units grid {grid_ms:.1f} ms: at most {per_second:.1f} ms a second = {per_second / 10:.2f} % of one core"
    )
    print(f"# after: {machine()}")
    return 0


if __name__ == "__main__":
    # Through the module's own name: the job process finds _timed_child there (it never re-imports __main__).
    from bench import live_units

    raise SystemExit(live_units.main())
