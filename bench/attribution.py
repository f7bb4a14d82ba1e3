"""Attribution faithfulness and explanation speed.

Faithfulness: for test digits, blank (set to background) the 20 pixels with the highest attribution for
the predicted digit, and compare the drop of that digit's probability with blanking 20 random ink pixels
(averaged over several draws) and the 20 brightest ink pixels. Faithful maps point at the pixels the
answer depends on, so blanking them must hurt far more than blanking ink at random.

Speed: one explanation (forward + exact integrated gradients for the prediction and the runner-up) for
784-128-10 and 784-1024-10, and all hidden-unit summaries over the 10 000 test images for H = 1024.

    python -m bench.attribution [--run RUN] [--digits 500] [--pixels 20] [--draws 10]
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
import torch
from PIL import Image

from bench import machine, percentile
from mnistcore.config import TrainConfig
from mnistcore.data import default_data_dir, load_mnist, provision_mnist
from mnistcore.explain import explain, net_weights, unit_summaries
from mnistcore.model import ShallowNet
from mnistcore.normalize import normalize
from mnistcore.runs import RunStore
from mnistcore.train import train


def _probs(model: ShallowNet, images: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.probabilities(normalize(torch.from_numpy(images))).double().numpy()


def faithfulness(model: ShallowNet, images: np.ndarray, pixels: int, draws: int, seed: int = 0) -> dict[str, float]:
    """Mean drop of the predicted digit's probability when blanking top-attributed vs random/brightest ink."""
    rng = np.random.default_rng(seed)
    w = net_weights(model)
    x = images.astype(np.float32) / 255
    base = _probs(model, x)
    pred = base.argmax(1)
    top, bright, rand = [], [], []
    for i, img in enumerate(x):
        flat = img.ravel()
        attr = explain(w, img).attributions[int(pred[i])].ravel()
        ink = np.flatnonzero(flat > 0)
        top.append(_blanked(flat, np.argsort(-attr)[:pixels]))
        bright.append(_blanked(flat, ink[np.argsort(-flat[ink], kind="stable")][:pixels]))
        for _ in range(draws):
            rand.append(_blanked(flat, rng.choice(ink, size=min(pixels, len(ink)), replace=False)))
    n = len(x)
    rows = np.arange(n)
    q_top = _probs(model, np.stack(top).reshape(-1, 28, 28))
    q_bright = _probs(model, np.stack(bright).reshape(-1, 28, 28))
    q_rand = _probs(model, np.stack(rand).reshape(-1, 28, 28)).reshape(n, draws, 10)
    p0 = base[rows, pred]
    d_top, d_bright = p0 - q_top[rows, pred], p0 - q_bright[rows, pred]
    d_rand = (p0[:, None] - q_rand[rows, :, pred]).mean(1)
    return {
        "digits": n,
        "p_before": float(p0.mean()),
        "drop_top": float(d_top.mean()),
        "drop_random": float(d_rand.mean()),
        "drop_bright": float(d_bright.mean()),
        "median_top": float(np.median(d_top)),
        "median_random": float(np.median(d_rand)),
        "top_beats_random": float((d_top > d_rand).mean()),
        "flip_top": float((q_top.argmax(1) != pred).mean()),
        "flip_random": float((q_rand.argmax(2) != pred[:, None]).mean()),
        "flip_bright": float((q_bright.argmax(1) != pred).mean()),
    }


def _blanked(flat: np.ndarray, where: np.ndarray) -> np.ndarray:
    out = flat.copy()
    out[where] = 0.0
    return out


def explain_ms(model: ShallowNet, images: np.ndarray) -> tuple[list[float], list[float]]:
    """Milliseconds per explanation, and per Draw-page map (explanation + picture + PNG), one call each.

    Single calls, not best-of-n: on a shared machine the tail is what a user feels on every stroke.
    """
    from ui.figures import why_picture

    w = net_weights(model)
    x = images.astype(np.float32) / 255
    explain(w, x[0])
    alone, picture = [], []
    for img in x:
        start = time.perf_counter()
        ex = explain(w, img)
        mid = time.perf_counter()
        pic = why_picture(
            ex.pixels,
            [
                (f"Evidence for {ex.digit}\n(predicted)", ex.attributions[ex.digit]),
                (f"Evidence for {ex.runner_up}\n(runner-up)", ex.attributions[ex.runner_up]),
            ],
            factor=6,
        )
        Image.fromarray(pic).save(io.BytesIO(), format="PNG")  # what st.image does with it
        end = time.perf_counter()
        alone.append((mid - start) * 1e3)
        picture.append((end - start) * 1e3)
    return alone, picture


def main(argv: list[str] | None = None) -> int:
    """Print faithfulness figures, explanation latency and the H = 1024 unit-summary time."""
    p = argparse.ArgumentParser(prog="python -m bench.attribution", description=__doc__.splitlines()[0])
    p.add_argument("--run", default=None, help="a saved run to measure (default: train the seed recipe, seed 0)")
    p.add_argument("--digits", type=int, default=500, help="test digits for faithfulness (default 500)")
    p.add_argument("--pixels", type=int, default=20, help="pixels blanked per digit (default 20)")
    p.add_argument("--draws", type=int, default=10, help="random draws per digit (default 10)")
    args = p.parse_args(argv)
    data_dir = default_data_dir()
    provision_mnist(data_dir)
    data = load_mnist(data_dir)
    if args.run:
        model, info = RunStore().load(args.run)
        label = f"run {info.run_id} (784-{info.config.hidden}-10, {info.test_accuracy:.2%})"
    else:
        result = train(TrainConfig(device="cpu"), data)
        model, label = result.model, f"seed recipe 784-128-10, 5 epochs, seed 0 ({result.test_accuracy:.2%})"
    print(f"attribution: {label}")
    print(f"  machine: {machine()}")
    sample = np.random.default_rng(0).choice(len(data.test_images), size=args.digits, replace=False)
    images = data.test_images.numpy()[np.sort(sample)]
    f = faithfulness(model, images, args.pixels, args.draws)
    k = args.pixels
    print(
        f"  faithfulness on {f['digits']} random test digits (predicted digit's probability, mean "
        f"{f['p_before']:.3f} before):"
    )
    print(
        f"    blank the {k} top-attributed pixels: probability drops by {f['drop_top']:.3f} on average "
        f"(median {f['median_top']:.3f}); the prediction changes on {f['flip_top']:.1%}"
    )
    print(
        f"    blank {k} random ink pixels ({args.draws} draws each): drops by {f['drop_random']:.3f} "
        f"(median {f['median_random']:.3f}); changes on {f['flip_random']:.1%}"
    )
    print(f"    blank the {k} brightest ink pixels: drops by {f['drop_bright']:.3f}; changes on {f['flip_bright']:.1%}")
    ratio = f["drop_top"] / max(f["drop_random"], 1e-12)
    print(f"    top-attributed vs random: {ratio:.0f}x the drop; larger on {f['top_beats_random']:.1%} of digits")

    for hidden in (128, 1024):
        net = model if hidden == model.hidden else train(TrainConfig(hidden=hidden, epochs=1, device="cpu"), data).model
        start = time.perf_counter()
        net_weights(net)
        convert = (time.perf_counter() - start) * 1e3
        ms, pic = explain_ms(net, data.test_images.numpy()[:500])
        print(
            f"  one explanation, 784-{hidden}-10 (prediction + runner-up maps, {len(ms)} digits): "
            f"p50 {percentile(ms, 50):.2f} ms, p95 {percentile(ms, 95):.2f} ms, max {max(ms):.2f} ms "
            f"(weights to float64 once per model: {convert:.1f} ms)"
        )
        print(
            f"    with the Draw-page picture (why_picture + PNG encoding): p50 {percentile(pic, 50):.2f} ms, "
            f"p95 {percentile(pic, 95):.2f} ms"
        )
        if hidden == 1024:
            times = []
            for _ in range(3):
                start = time.perf_counter()
                s = unit_summaries(net, data.test_images, data.test_labels)
                times.append(time.perf_counter() - start)
            print(
                f"  unit summaries, H=1024 over {len(data.test_images):,} test images: first {times[0]:.2f} s, "
                f"best of 3 {min(times):.2f} s ({int((s.active_share == 0).sum())} dead units)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
