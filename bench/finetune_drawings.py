"""Does fine-tuning on someone's handwriting help on more of it, without hurting MNIST?

A non-MNIST handwriting set that ships with scikit-learn: `load_digits` (1797 digits by 43 writers, UCI
optdigits, 8x8 pixels of 0..16). Each digit is rendered up to a 280x280 canvas the way a drawing arrives
(smoothly upscaled to a random size 120-240 px, random position, white ink on black) and pushed through
prepare_digit, exactly as the Draw page and `drawings add` do. The set is cut in two halves by position
(the file keeps each writer's digits together, so the halves share few writers): fine-tune on the first,
measure on the second.

For each seed: a base net (the seed recipe, 784-128-10, 5 epochs of MNIST) is continued for one more
epoch two ways, with the same settings and the same random streams (train(init=...), as `train --resume`):
  control    one more epoch of MNIST alone
  fine-tuned one more epoch of MNIST + the first half mixed in (mix_drawings: ~10 % of the images)
and each is measured on the second half and on the MNIST test set.

    python -m bench.finetune_drawings               # 3 seeds
    python -m bench.finetune_drawings --seeds 1     # quicker
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch
from PIL import Image

from mnistcore.config import TrainConfig
from mnistcore.data import MnistData, default_data_dir, load_mnist
from mnistcore.drawings import DRAWINGS_SHARE, mix_drawings
from mnistcore.evaluate import evaluate
from mnistcore.preprocess import prepare_digit
from mnistcore.train import TrainResult, TrainState, train

BASE = TrainConfig(device="cpu")  # the seed recipe: 784-128-10, Adam 1e-3, batch 128, 5 epochs


def render(digit8: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An 8x8 optdigits image (0..16) as a 280x280 canvas drawing: white ink on black, random size and place."""
    size = int(rng.integers(120, 241))
    ink = Image.fromarray((digit8.astype(np.float32) * (255 / 16)).astype(np.float32), mode="F")
    big = np.asarray(ink.resize((size, size), Image.BICUBIC), dtype=np.float32)
    canvas = np.zeros((280, 280), np.float32)
    y, x = (int(v) for v in rng.integers(0, 280 - size + 1, size=2))
    canvas[y : y + size, x : x + size] = big
    return np.clip(canvas, 0, 255).astype(np.uint8)


def prepared_digits(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """All 1797 sklearn digits rendered and prepared: uint8 (N, 28, 28) and labels (N,)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    out = np.zeros((len(digits.images), 28, 28), np.uint8)
    for i, img in enumerate(digits.images):
        p = prepare_digit(render(img, rng))
        if not p.empty:
            out[i] = np.round(p.pixels * 255).astype(np.uint8)
    return out, digits.target.astype(np.int64)


def _accuracy(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    return evaluate(model, torch.from_numpy(x), torch.from_numpy(y)).accuracy


def _continue(result: TrainResult, config: TrainConfig, data: MnistData, epochs: int) -> TrainResult:
    init = TrainState(
        model=result.model,
        optimizer=config.optimizer,
        optimizer_state=result.optimizer_state,
        rng_state=result.rng_state,
        seed=config.seed,
        history=result.history,
        train_seconds=result.train_seconds,
    )
    return train(config.with_(epochs=epochs), data, init=init)


def run_seed(
    seed: int, data: MnistData, x: np.ndarray, y: np.ndarray, half: int, epochs: int, share: float
) -> dict[str, float]:
    """Base, control and fine-tuned accuracies (held-out half, MNIST test) for one seed."""
    config = BASE.with_(seed=seed)
    base = train(config, data)
    mixed, info = mix_drawings(data, x[:half], y[:half], share=share)
    control = _continue(base, config, data, epochs)
    start = time.perf_counter()
    tuned = _continue(base, config, mixed, epochs)
    seconds = time.perf_counter() - start
    xs, ys = x[half:], y[half:]
    return {
        "base_heldout": _accuracy(base.model, xs, ys),
        "control_heldout": _accuracy(control.model, xs, ys),
        "tuned_heldout": _accuracy(tuned.model, xs, ys),
        "tuned_trainhalf": _accuracy(tuned.model, x[:half], y[:half]),
        "base_trainhalf": _accuracy(base.model, x[:half], y[:half]),
        "base_mnist": base.test_accuracy,
        "control_mnist": control.test_accuracy,
        "tuned_mnist": tuned.test_accuracy,
        "repeats": info["repeats"],
        "tune_seconds": seconds,
    }


def _mean(rows: list[dict[str, float]], key: str) -> float:
    return statistics.fmean(r[key] for r in rows)


def _spread(rows: list[dict[str, float]], key: str) -> str:
    vals = [r[key] for r in rows]
    return f"{min(vals):.2%}–{max(vals):.2%}" if len(vals) > 1 else ""


def main(argv: list[str] | None = None) -> int:
    """Print base / control / fine-tuned accuracy on held-out sklearn digits and on MNIST test."""
    p = argparse.ArgumentParser(prog="python -m bench.finetune_drawings", description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=1, help="epochs of fine-tuning (default 1)")
    p.add_argument("--share", type=float, default=DRAWINGS_SHARE, help="share of drawings in the mix")
    args = p.parse_args(argv)
    start = time.perf_counter()
    data = load_mnist(default_data_dir())
    x, y = prepared_digits()
    half = len(y) // 2
    print(
        f"fine-tune on drawings: sklearn load_digits rendered to canvases -> prepare_digit; "
        f"{half} to fine-tune on, {len(y) - half} held out; {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    rows = []
    for seed in range(args.seeds):
        r = run_seed(seed, data, x, y, half, args.epochs, args.share)
        rows.append(r)
        print(
            f"  seed {seed}: held-out {r['base_heldout']:.2%} -> control {r['control_heldout']:.2%}, "
            f"fine-tuned {r['tuned_heldout']:.2%} | MNIST test {r['base_mnist']:.2%} -> "
            f"control {r['control_mnist']:.2%}, fine-tuned {r['tuned_mnist']:.2%} "
            f"({r['repeats']}x each drawing, {r['tune_seconds']:.1f} s)"
        )
    print(f"mean of {len(rows)} seed(s), base = seed recipe (784-128-10, 5 epochs), +{args.epochs} epoch(s):")
    print("                    held-out half    MNIST test")
    for name in ("base", "control", "tuned"):
        label = {"base": "base", "control": "+MNIST only", "tuned": "+MNIST+drawings"}[name]
        print(
            f"  {label:<16}  {_mean(rows, name + '_heldout'):>7.2%} {_spread(rows, name + '_heldout'):>15}  "
            f"{_mean(rows, name + '_mnist'):>7.2%} {_spread(rows, name + '_mnist')}"
        )
    gain = _mean(rows, "tuned_heldout") - _mean(rows, "base_heldout")
    drift = _mean(rows, "tuned_mnist") - _mean(rows, "base_mnist")
    print(
        f"fine-tuning: held-out {gain * 100:+.2f} points (vs control "
        f"{(_mean(rows, 'tuned_heldout') - _mean(rows, 'control_heldout')) * 100:+.2f}); "
        f"MNIST test {drift * 100:+.2f} points (limit ±0.5); fine-tuned half itself "
        f"{_mean(rows, 'base_trainhalf'):.2%} -> {_mean(rows, 'tuned_trainhalf'):.2%}"
    )
    ok = gain > 0 and all(abs(r["tuned_mnist"] - r["base_mnist"]) <= 0.005 for r in rows)
    print(
        f"{'PASS' if ok else 'FAIL'}: held-out accuracy up, MNIST test within 0.5 point for every seed "
        f"({time.perf_counter() - start:.0f} s)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
