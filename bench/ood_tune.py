"""How the "not a digit" score's groups and directions were picked, on sets bench/ood.py never reports.

Tuning sets, none of them reported anywhere:
  letters   bench/shapes.py's letters and symbols, generation seed 1, the four tuning hands
  redrawn   the 3000 MNIST training digits of the default recipe's holdout (never trained on) that do not
            calibrate the threshold, redrawn as canvases (bench/redraw.py), left out of the fit
  sklearn   load_digits rendered with seed 0
The subspaces are fitted on the 55 000 images the default recipe's model (seed 0) trained on; the threshold
is calibrated on 2000 digits of its holdout, as the engine does. Each variant GROUPSxDIRECTIONSxPER_CLASSxSEED prints
the letters flagged at the engine's calibration (QUANTILE of the prepared held-out digits) and at the
threshold that flags 2 % of the redrawn digits (how well the score separates, whatever its calibration).

    python -m bench.ood_tune 10x10x4000x0 32x6x5400x0 32x6x5400x1   # as run for bench/OOD_RESULTS.md
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bench import machine
from bench.finetune_drawings import prepared_digits
from bench.ood import _prepare
from bench.redraw import RedrawStyle, redraw
from bench.shapes import TUNING_HANDS, drawings
from mnistcore import ood
from mnistcore.config import TrainConfig
from mnistcore.data import default_data_dir, load_mnist
from mnistcore.train import train

QUANTILES = (0.98, 0.985, 0.9875, 0.99, 0.9925, 0.995)
WEAK = ("?", "H", "T", "Y", "+", "V", "C", "P")  # the shapes the earlier versions flagged least


def _variant(text: str) -> tuple[int, int, int, int]:
    groups, k, per_class, seed = (int(v) for v in text.split("x"))
    return groups, k, per_class, seed


def main(argv: list[str] | None = None) -> int:
    """Train the default recipe, build the tuning sets, print each variant's flagged shares."""
    p = argparse.ArgumentParser(prog="python -m bench.ood_tune", description=__doc__.splitlines()[0])
    p.add_argument("variants", nargs="*", type=_variant, default=[(ood.CENTRES, ood.COMPONENTS, ood.PER_CLASS, 0)])
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    data = load_mnist(default_data_dir())
    result = train(TrainConfig(device="cpu", seed=0), data)
    model, held = result.model.eval(), result.calibration["holdout"]
    x, y = data.train_images.numpy(), data.train_labels.numpy()
    cal, rest = ood.calibration_split(len(x), held=held)  # as the engine calibrates: from the net's holdout
    rng = np.random.default_rng(11)
    # The stand-in for MNIST test digits: the rest of the holdout, as new to the net as test digits are.
    redrawn_idx = np.setdiff1d(np.arange(len(x) - held, len(x)), cal)
    fit_idx = np.setdiff1d(rest, redrawn_idx)
    shapes = list(drawings(1, 40, TUNING_HANDS))
    letters, tags = _prepare([c for _, _, c in shapes]), np.array([s for s, _, _ in shapes])
    sets = {
        "letters": letters,
        "redrawn": _prepare([redraw(x[i], rng, RedrawStyle()).image for i in redrawn_idx]),
        "calibration": ood.prepared_mnist(x[cal]),
        "sklearn": prepared_digits(0)[0].astype(np.float32) / 255.0,
    }
    print(f"not a digit, tuning (bench.ood_tune): {machine()}; {', '.join(f'{k} {len(v)}' for k, v in sets.items())}")
    for groups, k, per_class, seed in args.variants:
        ood._SPLIT_SEED = 20261204 + seed  # the k-means seeding (the calibration split was drawn above)
        start = time.perf_counter()
        means, bases, owners = ood.class_subspaces(x[fit_idx], y[fit_idx], k, per_class, groups)
        means, bases = ood._as_stored(means), ood._as_stored(bases)
        seconds = time.perf_counter() - start
        s = {name: ood.scores(model, means, bases, px, owners) for name, px in sets.items()}
        at_q = np.quantile(s["calibration"], ood.QUANTILE)
        at_2 = np.quantile(s["redrawn"], 0.98)
        weak = " ".join(f"{w} {(s['letters'][tags == w] > at_q).mean():.0%}" for w in WEAK)
        at = {name: {t: float((v > t).mean()) for t in (at_q, at_2)} for name, v in s.items()}
        print(
            f"{groups}x{k} per class {per_class} k-means seed {seed} (fit {seconds:.1f} s): at the {ood.QUANTILE:.1%} "
            f"quantile letters {at['letters'][at_q]:.1%}, redrawn {at['redrawn'][at_q]:.1%}, sklearn "
            f"{at['sklearn'][at_q]:.1%}; at 2 % of redrawn: letters {at['letters'][at_2]:.1%}, sklearn "
            f"{at['sklearn'][at_2]:.1%}; {weak}",
            flush=True,
        )
        for q in QUANTILES:
            t = np.quantile(s["calibration"], q)
            rates = ", ".join(f"{name} {(v > t).mean():.1%}" for name, v in s.items() if name != "calibration")
            print(f"    at the {q:.2%} quantile: {rates}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
