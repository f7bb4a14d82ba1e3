"""Benchmark the drawn-digit path: MNIST test digits redrawn as 280x280 canvases, then prepare_digit + model.

Prints the model's plain test accuracy next to its accuracy on the same digits redrawn (random size,
position, pen width, black or transparent canvas), on held-out variation families the train-time
augmentation never produces, with and without augmentation, and the per-image latency.

    python -m bench.drawn_digits            # full run (a few minutes on 2 busy cores)
    python -m bench.drawn_digits --quick    # smaller sets, no long-training comparison
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import torch

from mnistcore.config import TrainConfig
from mnistcore.data import MnistData, default_data_dir, load_mnist
from mnistcore.model import ShallowNet
from mnistcore.normalize import normalize
from mnistcore.predict import predict_prepared
from mnistcore.preprocess import prepare_digit
from mnistcore.redraw import RedrawStyle, redraw
from mnistcore.train import train

# The drawn set: what a canvas user produces. Held-out families lie outside both this and the
# train-time augmentation (rotation <= 12 deg, isotropic scale, shear <= 0.15).
DRAWN = RedrawStyle()
HELD_OUT: dict[str, RedrawStyle] = {
    "rotated 15-25 deg": RedrawStyle(rotation=(15, 25)),
    "narrow (width x0.55-0.7)": RedrawStyle(aspect=(0.55, 0.7)),
    "wide (width x1.4-1.8)": RedrawStyle(aspect=(1.4, 1.8)),
    "hairline pen (1-2.5 % of height)": RedrawStyle(pen=(0.01, 0.025)),
    "marker pen (22-28 % of height)": RedrawStyle(pen=(0.22, 0.28)),
    "dark ink on paper (RGB)": RedrawStyle(backgrounds=("paper",)),
}


@dataclass
class PreparedSet:
    """Redrawn digits after prepare_digit: model inputs, labels and how many came back empty."""

    name: str
    pixels: np.ndarray  # (N, 28, 28) float32; zeros where prepare_digit found nothing
    labels: np.ndarray
    indices: np.ndarray  # which test digits
    empty: int
    seconds: float


def prepare_set(name: str, data: MnistData, indices: np.ndarray, style: RedrawStyle, seed: int) -> PreparedSet:
    """Redraw the chosen test digits in a style and push each canvas through prepare_digit."""
    rng = np.random.default_rng(seed)
    images = data.test_images.numpy()
    out = np.zeros((len(indices), 28, 28), np.float32)
    empty = 0
    start = time.perf_counter()
    for k, i in enumerate(indices):
        prepared = prepare_digit(redraw(images[i], rng, style).image)
        if prepared.pixels is None:
            empty += 1  # counted as wrong: the user would see "nothing drawn"
        else:
            out[k] = prepared.pixels
    return PreparedSet(name, out, data.test_labels.numpy()[indices], indices, empty, time.perf_counter() - start)


def mnist_through_prepare(data: MnistData, indices: np.ndarray) -> PreparedSet:
    """The original 28x28 test digits pushed through prepare_digit (the pipeline's own loss)."""
    images = data.test_images.numpy()
    out = np.zeros((len(indices), 28, 28), np.float32)
    empty = 0
    start = time.perf_counter()
    for k, i in enumerate(indices):
        prepared = prepare_digit(images[i])
        if prepared.pixels is None:
            empty += 1
        else:
            out[k] = prepared.pixels
    name = "MNIST 28x28 through prepare_digit"
    return PreparedSet(name, out, data.test_labels.numpy()[indices], indices, empty, time.perf_counter() - start)


@torch.no_grad()
def accuracy(model: ShallowNet, pixels: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> float:
    """Top-1 accuracy of a model on images (uint8 or float [0, 1])."""
    x = torch.as_tensor(pixels)
    pred = model.probabilities(normalize(x)).argmax(1).numpy()
    return float((pred == np.asarray(labels)).mean())


def latency(model: ShallowNet, data: MnistData, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-image seconds of prepare_digit alone and of prepare_digit + forward, on n black canvases."""
    rng = np.random.default_rng(seed)
    images = data.test_images.numpy()
    canvases = [redraw(images[i], rng, RedrawStyle(backgrounds=("black",))).image for i in range(n)]
    prep, full = [], []
    torch.set_grad_enabled(False)
    for c in canvases[:20]:  # warm-up: first calls pay for imports and allocator growth
        predict_prepared(model, prepare_digit(c))
    for c in canvases:
        t0 = time.perf_counter()
        digit = prepare_digit(c)
        t1 = time.perf_counter()
        predict_prepared(model, digit)
        t2 = time.perf_counter()
        prep.append(t1 - t0)
        full.append(t2 - t0)
    torch.set_grad_enabled(True)
    return np.array(prep), np.array(full)


def timed_train(config: TrainConfig, data: MnistData) -> tuple[ShallowNet, float, float]:
    """Train; return the eval-mode model, its test accuracy and the training seconds."""
    result = train(config, data)
    return result.model.eval(), result.test_accuracy, result.train_seconds


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None, help="MNIST data dir (default $MNIST_DATA_DIR or ./data)")
    ap.add_argument("--quick", action="store_true", help="600 drawn digits, 300 per held-out family, 5 epochs only")
    ap.add_argument("-n", type=int, default=None, help="drawn digits (default 3000; 600 with --quick)")
    ap.add_argument("--held-out-n", type=int, default=None, help="digits per held-out family (default 1000)")
    ap.add_argument("--epochs", type=int, nargs="+", default=None,
                    help="epoch counts to compare plain vs augmented at (default 5 15; 5 with --quick)")
    ap.add_argument("--latency-n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    n = args.n or (600 if args.quick else 3000)
    held_n = args.held_out_n or (300 if args.quick else 1000)
    epoch_list = args.epochs or ([5] if args.quick else [5, 15])
    torch.set_num_threads(max(1, torch.get_num_threads()))

    data = load_mnist(args.data_dir or default_data_dir())
    rng = np.random.default_rng(args.seed)
    indices = rng.choice(len(data.test_labels), size=n, replace=False)
    held_idx = rng.choice(len(data.test_labels), size=held_n, replace=False)

    print(f"drawn-digit benchmark: {n} redrawn MNIST test digits, {held_n} per held-out family, seed {args.seed}")
    print("(timings are wall-clock on this machine; noisy if other work shares the CPU)\n")
    sets = [mnist_through_prepare(data, indices), prepare_set("drawn (black/transparent)", data, indices, DRAWN,
                                                              args.seed + 1)]
    sets += [prepare_set(name, data, held_idx, style, args.seed + 2 + k) for k, (name, style) in
             enumerate(HELD_OUT.items())]
    for s in sets:
        print(f"prepared {s.name:<34} {len(s.labels):5d} images, {s.empty} empty, "
              f"{1000 * s.seconds / len(s.labels):.1f} ms/image incl. redrawing")

    models: list[tuple[str, ShallowNet, float, float]] = []
    for epochs in epoch_list:
        for augment in (False, True):
            config = TrainConfig(device="cpu", epochs=epochs, augment=augment)
            model, test_acc, seconds = timed_train(config, data)
            models.append((f"{epochs} ep {'augmented' if augment else 'plain'}", model, test_acc, seconds))

    test_x, test_y = data.test_images, data.test_labels.numpy()
    header = f"{'model':<18}{'train s':>8}{'test 10k':>10}{'test same':>10}"
    header += "".join(f"{s.name[:24]:>26}" for s in sets)
    print("\naccuracy (%), 'test same' = the plain 28x28 test images of the drawn set's digits")
    print(header)
    for name, model, test_acc, seconds in models:
        same = accuracy(model, test_x[indices], test_y[indices])
        row = f"{name:<18}{seconds:8.1f}{100 * test_acc:10.2f}{100 * same:10.2f}"
        row += "".join(f"{100 * accuracy(model, s.pixels, s.labels):26.2f}" for s in sets)
        print(row)

    plain_model = models[0][1]
    same = accuracy(plain_model, test_x[indices], test_y[indices])
    drawn = accuracy(plain_model, sets[1].pixels, sets[1].labels)
    gap = 100 * (same - drawn)
    print(f"\nplain {epoch_list[0]}-epoch model: test {100 * same:.2f} % vs drawn {100 * drawn:.2f} % on the same "
          f"{n} digits: gap {gap:+.2f} points ({'within' if gap <= 0.5 else 'OUTSIDE'} the 0.5-point target)")

    prep, full = latency(plain_model, data, args.latency_n, args.seed + 99)
    print(f"latency over {args.latency_n} black 280x280 canvases: prepare_digit p50 {1000 * np.median(prep):.2f} ms "
          f"p95 {1000 * np.percentile(prep, 95):.2f} ms; prepare + forward p50 {1000 * np.median(full):.2f} ms "
          f"p95 {1000 * np.percentile(full, 95):.2f} ms")


if __name__ == "__main__":
    main()
