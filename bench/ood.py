"""'That is not a digit': how often the run's OOD score flags letters, MNIST digits and other people's digits.

The default recipe (`train --seed 0`) is trained here, which fits its OOD record as every run does
(mnistcore/ood.py). Three sets of 280x280 canvases, each pushed through prepare_digit like the Draw page:
  letters   bench/shapes.py: 21 letters and symbols that resemble no digit, by six hands (pen widths,
            sizes, slant, wobble), as canvas strokes through mnistcore.strokes.rasterize
  MNIST     MNIST test digits redrawn as canvases (bench/redraw.py, its default drawn style)
  sklearn   scikit-learn's load_digits (43 writers outside MNIST) rendered as canvases
            (bench/finetune_drawings.py)
Targets: flag >= 70 % of letters, <= 2 % of the MNIST canvases, <= 5 % of load_digits; score + answer
<= 5 ms p95 per image. The chosen score is compared with two others, each calibrated the same way (the
same quantile of the same held-out, prepared MNIST training digits): the net's max logit, and the
Mahalanobis distance of the hidden layer to the nearest class mean (shared covariance).

The groups, directions and quantile were picked with bench/ood_tune.py on generation seed 1 with four
hands, the default recipe's own holdout digits redrawn, and load_digits rendered with seed 0; any other
--seed draws other letters, adds two hands never looked at ("small", "sloppy"), redraws other MNIST test
digits and renders load_digits afresh (seed 4 was the first run of the shipped version).

    ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 \\
        flock /tmp/mnist-timing.lock python -m bench.ood          # as measured for bench/OOD_RESULTS.md
    python -m bench.ood --quick                                    # fewer images
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
import torch

from bench import machine, percentile
from bench.finetune_drawings import prepared_digits
from bench.redraw import RedrawStyle, redraw
from bench.shapes import HANDS, TUNING_HANDS, drawings
from mnistcore import ood
from mnistcore.config import PRESETS, TrainConfig
from mnistcore.data import MnistData, default_data_dir, load_mnist
from mnistcore.model import ShallowNet
from mnistcore.normalize import normalize
from mnistcore.predict import predict_prepared
from mnistcore.preprocess import prepare_digit

TARGETS = {"letters": (">=", 0.70), "MNIST": ("<=", 0.02), "sklearn": ("<=", 0.05)}
Score = Callable[[np.ndarray], np.ndarray]


def _prepare(canvases: list[np.ndarray]) -> np.ndarray:
    out = [p.pixels for p in (prepare_digit(c) for c in canvases) if p.pixels is not None]
    return np.stack(out)


def canvas_sets(data: MnistData, seed: int, per_shape: int, digits: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{set name: (prepared pixels (N, 28, 28), a tag per image)}; tags: shape for letters, else the label."""
    hands = tuple(HANDS) if seed != 1 else TUNING_HANDS
    shapes, tags = [], []
    for shape, _hand, canvas in drawings(seed, per_shape, hands):
        shapes.append(canvas)
        tags.append(shape)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(data.test_labels), digits, replace=False)
    test = data.test_images.numpy()
    mnist = _prepare([redraw(test[i], rng, RedrawStyle()).image for i in idx])
    sk, sk_labels = prepared_digits(max(seed - 1, 0))  # seed 1 (tuning) rendered them with 0
    return {
        "letters": (_prepare(shapes), np.array(tags)),
        "MNIST": (mnist, data.test_labels.numpy()[idx]),
        "sklearn": (sk.astype(np.float32) / 255.0, sk_labels),
    }


@torch.no_grad()
def _hidden_logits(model: ShallowNet, pixels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    x = normalize(torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)))
    h = torch.relu(model.fc1(x))
    return h, model.fc2(h)


def alternatives(model: ShallowNet, data: MnistData, fit_idx: np.ndarray) -> dict[str, Score]:
    """The scores compared with the chosen one: negated max logit, hidden-layer Mahalanobis distance."""
    h, _ = _hidden_logits(model, data.train_images.numpy()[fit_idx].astype(np.float32) / 255.0)
    y = data.train_labels.numpy()[fit_idx]
    mu = torch.stack([h[torch.from_numpy(y == c)].mean(0) for c in range(10)]).double()
    centred = h.double() - mu[torch.from_numpy(y)]
    cov = centred.T @ centred / len(centred)
    precision = torch.linalg.inv(cov + 1e-3 * torch.eye(len(cov), dtype=cov.dtype) * cov.diagonal().mean())

    def max_logit(px: np.ndarray) -> np.ndarray:
        return -_hidden_logits(model, px)[1].max(1).values.numpy()

    def mahalanobis(px: np.ndarray) -> np.ndarray:
        hid = _hidden_logits(model, px)[0].double()
        d = torch.stack([((hid - mu[c]) @ precision * (hid - mu[c])).sum(1) for c in range(10)], 1)
        return d.min(1).values.numpy()

    return {"max logit": max_logit, "hidden Mahalanobis": mahalanobis}


def latency(model: ShallowNet, record: ood.OodModel, pixels: np.ndarray) -> tuple[float, float]:
    """(p50, p95) ms of the answer plus the OOD score, one prepared image at a time, as the Draw page does."""
    from mnistcore.preprocess import PreparedDigit

    times = []
    for px in pixels:
        digit = PreparedDigit(px)
        start = time.perf_counter()
        predict_prepared(model, digit)
        ood.assess(model, record, px)
        times.append((time.perf_counter() - start) * 1000)
    times = times[20:]  # warm-up
    return percentile(times, 50), percentile(times, 95)


def _verdict(name: str, rate: float) -> str:
    op, limit = TARGETS[name]
    ok = rate >= limit if op == ">=" else rate <= limit
    gap = "" if ok else f", missed by {abs(rate - limit) * 100:.1f} points"
    return f"{'MET' if ok else 'MISSED'} (target {op} {limit:.0%}{gap})"


def main(argv: list[str] | None = None) -> int:
    """Train the default recipe, then print flagged shares per set and score, per shape, and the latency."""
    p = argparse.ArgumentParser(prog="python -m bench.ood", description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=2, help="generation seed (1 is the tuning seed; default 2)")
    p.add_argument("--quick", action="store_true", help="10 drawings per shape, 500 MNIST canvases")
    p.add_argument("--preset", choices=sorted(PRESETS), help="train this preset instead (e.g. draw: Home's model)")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    start = time.perf_counter()
    data = load_mnist(default_data_dir())
    from mnistcore.train import train

    config = PRESETS[args.preset] if args.preset else TrainConfig()
    result = train(config.with_(device="cpu", seed=0), data)
    model, record = result.model, result.ood
    print(f"not a digit (bench.ood, seed {args.seed}): {machine()}")
    isa = os.environ.get("ATEN_CPU_CAPABILITY", "default")
    print(
        f"{args.preset or 'default'} recipe, seed 0: MNIST test {result.test_accuracy:.2%}; OOD record fitted in "
        f"{result.ood_seconds:.2f} s ({ood.METHOD}, {len(record.means)} groups of {record.bases.shape[2]} "
        f"components, threshold "
        f"{record.threshold:.2f} = {record.quantile:.1%} quantile of {record.calibration_images} "
        f"{record.calibration}); kernels: ATEN_CPU_CAPABILITY={isa}"
    )
    sets = canvas_sets(data, args.seed, 10 if args.quick else 40, 500 if args.quick else 3000)
    cal_idx, fit_idx = ood.calibration_split(len(data.train_labels), held=result.calibration["holdout"])
    calibration = ood.prepared_mnist(data.train_images.numpy()[cal_idx])
    chosen: Score = lambda px: record.scores(model, px)  # noqa: E731
    methods = {f"{ood.METHOD} (chosen)": chosen, **alternatives(model, data, fit_idx)}
    print(f"\nshare flagged as not a digit ({', '.join(f'{k}: {len(v[0])}' for k, v in sets.items())} images)")
    print(f"  {'score':<34}" + "".join(f"{k:>10}" for k in sets))
    rates: dict[str, float] = {}
    for name, fn in methods.items():
        threshold = np.quantile(fn(calibration), record.quantile)
        row = {k: float((fn(px) > threshold).mean()) for k, (px, _) in sets.items()}
        rates = rates or row
        print(f"  {name:<34}" + "".join(f"{v:>10.1%}" for v in row.values()))
    letters, tags = sets["letters"]
    flagged = chosen(letters) > record.threshold
    print(
        "\nletters and symbols flagged (chosen score): "
        + ", ".join(f"{s} {flagged[tags == s].mean():.0%}" for s in dict.fromkeys(tags.tolist()))
    )
    sk, _ = sets["sklearn"]
    half = len(sk) // 2
    sk_flag = chosen(sk) > record.threshold
    halves = f"{sk_flag[:half].mean():.1%} / {sk_flag[half:].mean():.1%}"
    print(f"load_digits flagged by half (file order, few writers shared): {halves}")
    p50, p95 = latency(model, record, sets["MNIST"][0][:300])
    print("\ntargets (chosen score):")
    for name in TARGETS:
        print(f"  {name:<8} flagged {rates[name]:6.1%}  {_verdict(name, rates[name])}")
    ok_time = p95 <= 5.0
    verdict = "MET" if ok_time else f"MISSED by {p95 - 5.0:.2f} ms"
    print(f"  latency  answer + score p50 {p50:.2f} ms, p95 {p95:.2f} ms  {verdict} (target <= 5 ms p95)")
    print(f"bench.ood: {time.perf_counter() - start:.0f} s")
    met = all(_verdict(n, rates[n]).startswith("MET") for n in TARGETS) and ok_time
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
