"""Experiments benchmark: what resume, compare, export and a sweep cost on real MNIST (prints; asserts nothing).

    python -m bench.experiments            # ~1 min on 2 CPU cores

Prints: the optimizer-state file's size per width, load_state() time, whether 1 + 2 epochs equals 3
straight (weights bit for bit), compare() and export's CSV times and sizes, and a 3-value sweep's run times.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from mnistcore.config import TrainConfig
from mnistcore.data import default_data_dir, load_mnist, provision_mnist
from mnistcore.evaluate import evaluate
from mnistcore.experiments import compare_evaluations, confusion_csv, predictions_csv, sweep
from mnistcore.runs import OPTIMIZER, RunStore
from mnistcore.train import train


def _save(store: RunStore, result, data):
    return store.save(
        result.model,
        result.config,
        test_accuracy=result.test_accuracy,
        train_seconds=result.total_seconds,
        history=result.history,
        dataset=data.checksums,
        optimizer_state=result.optimizer_state,
        rng_state=result.rng_state,
    )


def main() -> None:
    """Run the measurements and print them."""
    provision_mnist(default_data_dir())
    data = load_mnist(default_data_dir())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp))
        config = TrainConfig(epochs=3, device="cpu", precision="fp32")
        t = time.perf_counter()
        straight = train(config, data)
        t_straight = time.perf_counter() - t
        first = _save(store, train(config.with_(epochs=1), data), data)
        t = time.perf_counter()
        init, _ = store.load_state(first.run_id)
        t_load = time.perf_counter() - t
        resumed = train(config.with_(epochs=2), data, init=init)
        same = all(
            torch.equal(a, b)
            for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True)
        )
        size = (first.path / OPTIMIZER).stat().st_size
        print(
            f"resume: load_state {t_load * 1000:.0f} ms; optimizer.safetensors {size / 1e6:.2f} MB (784-128-10, "
            f"Adam); 1+2 epochs == 3 straight: {same} ({resumed.test_accuracy:.4f} vs "
            f"{straight.test_accuracy:.4f}; 3 straight took {t_straight:.1f} s)"
        )
        wide = TrainConfig(hidden=1024, epochs=1, device="cpu", precision="fp32", batch_size=512)
        info = _save(store, train(wide, data), data)
        print(f"optimizer.safetensors for 784-1024-10: {(info.path / OPTIMIZER).stat().st_size / 1e6:.2f} MB")

        t = time.perf_counter()
        ev_a = evaluate(store.load(first.run_id)[0], data.test_images, data.test_labels)
        ev_b = evaluate(resumed.model, data.test_images, data.test_labels)
        t_eval = time.perf_counter() - t
        t = time.perf_counter()
        cmp = compare_evaluations(first, ev_a, first, ev_b)
        t_cmp = time.perf_counter() - t
        print(
            f"compare: two evaluations {t_eval * 1000:.0f} ms, comparison {t_cmp * 1000:.1f} ms "
            f"(fixed {cmp.fixed}, broken {cmp.broken})"
        )
        t = time.perf_counter()
        pred = predictions_csv(ev_b)
        t_pred = time.perf_counter() - t
        t = time.perf_counter()
        conf = confusion_csv(ev_b)
        t_conf = time.perf_counter() - t
        print(
            f"export: predictions.csv {t_pred * 1000:.0f} ms, {len(pred) / 1e6:.2f} MB; confusion.csv "
            f"{t_conf * 1000:.1f} ms, {len(conf)} bytes"
        )

        times = []
        for step in sweep("hidden", [32, 64, 128], TrainConfig(epochs=1, device="cpu"), data):
            times.append(f"hidden={step.value}: {step.result.train_seconds:.1f} s, {step.result.test_accuracy:.2%}")
        print("sweep (1 epoch each): " + "; ".join(times))


if __name__ == "__main__":
    main()
