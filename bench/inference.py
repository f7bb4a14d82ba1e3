"""Inference speed: test-set throughput and the latency of one drawn digit (preprocess + forward).

A drawn digit is made the way the Draw page gets one: a 280x280 RGBA canvas image, white ink with
anti-aliased edges on a transparent background (here an MNIST test digit scaled up 10x).

    python -m bench.inference [--images 200] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image

from bench import machine, percentile
from mnistcore.config import TrainConfig
from mnistcore.data import default_data_dir, load_mnist, provision_mnist
from mnistcore.evaluate import evaluate
from mnistcore.normalize import normalize
from mnistcore.predict import predict_prepared
from mnistcore.preprocess import prepare_digit
from mnistcore.train import train

TARGET_P95_MS = 5.0


def canvas_image(digit: np.ndarray, size: int = 280) -> np.ndarray:
    """A canvas-like RGBA (size, size, 4) uint8 image of a 28x28 uint8 digit: ink in alpha, white RGB."""
    alpha = np.asarray(Image.fromarray(digit).resize((size, size), Image.BILINEAR))
    out = np.zeros((size, size, 4), np.uint8)
    out[..., :3] = 255
    out[..., 3] = alpha
    return out


def best_rate(fn: object, items: int, min_seconds: float = 1.0) -> float:
    """Items per second of fn(), best of repeated calls over at least min_seconds."""
    fn()  # type: ignore[operator]  # warm-up
    best, spent = float("inf"), 0.0
    while spent < min_seconds:
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        took = time.perf_counter() - start
        spent += took
        best = min(best, took)
    return items / best


def main(argv: list[str] | None = None) -> int:
    """Print test-set throughput and drawn-digit latency percentiles."""
    p = argparse.ArgumentParser(prog="python -m bench.inference", description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=200, help="drawn digits timed (default 200)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's own; 1 is immune to other processes' load)",
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data_dir = default_data_dir()
    provision_mnist(data_dir)
    data = load_mnist(data_dir)
    model = train(TrainConfig(epochs=1, device="cpu"), data).model  # weights barely matter to speed
    print("inference: 784-128-10, CPU")
    print(f"  machine: {machine()}")

    x = normalize(data.test_images)
    n = len(x)
    with torch.no_grad():
        fwd = best_rate(lambda: model.probabilities(x), n)
        one = x[:1]
        single = best_rate(lambda: model(one), 1, min_seconds=0.3)
    full = best_rate(lambda: evaluate(model, data.test_images, data.test_labels), n)
    print(f"  test-set forward (probabilities of {n} images): {fwd:,.0f} images/s ({n / fwd * 1e3:.1f} ms)")
    print(f"  evaluate() incl. normalising and sklearn metrics: {full:,.0f} images/s ({n / full * 1e3:.1f} ms)")
    print(f"  forward of 1 image: {1e6 / single:.0f} us")

    canvases = [canvas_image(data.test_images[i].numpy()) for i in range(args.images)]
    for c in canvases[:10]:
        predict_prepared(model, prepare_digit(c))
    prep_ms, total_ms, correct = [], [], 0
    for i, c in enumerate(canvases):
        start = time.perf_counter()
        digit = prepare_digit(c)
        mid = time.perf_counter()
        probs = predict_prepared(model, digit)
        end = time.perf_counter()
        prep_ms.append((mid - start) * 1e3)
        total_ms.append((end - start) * 1e3)
        correct += int(probs.argmax() == int(data.test_labels[i]))
    p95 = percentile(total_ms, 95)
    print(
        f"  drawn digit (280x280 RGBA canvas, prepare_digit + forward), {len(canvases)} images: "
        f"p50 {percentile(total_ms, 50):.2f} ms, p95 {p95:.2f} ms, max {max(total_ms):.2f} ms "
        f"(prepare_digit alone p50 {percentile(prep_ms, 50):.2f} ms); target p95 <= {TARGET_P95_MS} ms: "
        f"{'met' if p95 <= TARGET_P95_MS else 'NOT met'}"
    )
    print(f"  (sanity: {correct}/{len(canvases)} of the canvas digits predicted right by a 1-epoch model)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
