"""Why the network answers what it does, and what each hidden unit learned.

Attributions are integrated gradients (Sundararajan et al., 2017) from the blank image (all background,
after the same normalisation as every input) to the input, computed **exactly**. The net is
784 -> ReLU -> 10, so along the straight path x(t) = b + t (x - b) every hidden pre-activation
z_j(t) = z_j(b) + t dz_j is linear in t and its ReLU switches at most once, at t* = -z_j(b) / dz_j.
The gradient of logit k with respect to input i is sum_j W2[k, j] W1[j, i] [z_j(t) > 0], so its integral
over t in [0, 1] is sum_j W2[k, j] W1[j, i] frac_j, with frac_j the share of the path on which unit j is
on. Hence IG_i = (x_i - b_i) sum_j W2[k, j] W1[j, i] frac_j, with no step count, and the attributions of
class k add up to logit_k(x) - logit_k(b) exactly (up to float64 rounding).

Dropout only acts while training (PyTorch rescales at train time), so a saved model's weights are already
its eval-mode weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mnistcore.calibration import shown_probabilities
from mnistcore.model import ShallowNet
from mnistcore.normalize import normalize
from mnistcore.preprocess import ImageReadError, PreparedDigit, load_image

SIZE = 28
PIXELS = SIZE * SIZE


@dataclass(frozen=True)
class NetWeights:
    """A ShallowNet's weights as float64 arrays, plus what every explanation reuses (the blank's state)."""

    w1: np.ndarray  # (H, 784) input -> hidden
    b1: np.ndarray  # (H,)
    w2: np.ndarray  # (10, H) hidden -> logits
    b2: np.ndarray  # (10,)
    baseline: np.ndarray  # (784,) the blank image after normalisation
    z_baseline: np.ndarray  # (H,) hidden pre-activations of the blank image
    baseline_logits: np.ndarray  # (10,)
    temperature: float = 1.0  # the run's calibration temperature for drawn digits, for the probabilities shown

    @property
    def hidden(self) -> int:
        """Number of hidden units."""
        return len(self.b1)


def blank_input() -> np.ndarray:
    """The normalised blank image (every pixel background), shape (784,), float64."""
    return normalize(torch.zeros(1, SIZE, SIZE)).double().numpy()[0]


def net_weights(model: ShallowNet | NetWeights) -> NetWeights:
    """The model's weights in float64 on the CPU (copied; the model is not changed)."""
    if isinstance(model, NetWeights):
        return model
    with torch.no_grad():
        w1, b1 = (t.detach().to("cpu", torch.float64).numpy().copy() for t in (model.fc1.weight, model.fc1.bias))
        w2, b2 = (t.detach().to("cpu", torch.float64).numpy().copy() for t in (model.fc2.weight, model.fc2.bias))
    if w1.shape[1] != PIXELS or w2.shape[0] != 10:
        raise ValueError(f"expected a 784-H-10 network, got weights {w1.shape} and {w2.shape}")
    base = blank_input()
    zb = w1 @ base + b1
    out = NetWeights(w1, b1, w2, b2, base, zb, w2 @ np.maximum(zb, 0.0) + b2, float(model.temperature_drawn))
    for arr in (out.w1, out.b1, out.w2, out.b2, out.baseline, out.z_baseline, out.baseline_logits):
        arr.setflags(write=False)  # shared by caches: nobody may change them
    return out


def active_fraction(z_start: np.ndarray, z_end: np.ndarray) -> np.ndarray:
    """For linear z(t) = z_start + t (z_end - z_start), the share of t in [0, 1] on which z(t) > 0."""
    z_start = np.asarray(z_start, dtype=np.float64)
    dz = np.asarray(z_end, dtype=np.float64) - z_start
    with np.errstate(divide="ignore", invalid="ignore"):
        t_star = np.where(dz != 0, -z_start / np.where(dz != 0, dz, 1.0), 0.0)
    # Rising (dz > 0): on after t*; falling: on before t*; flat: on everywhere or nowhere.
    rising = np.clip(1.0 - t_star, 0.0, 1.0)
    falling = np.clip(t_star, 0.0, 1.0)
    flat = (z_start > 0).astype(np.float64)
    return np.where(dz > 0, rising, np.where(dz < 0, falling, flat))


def _normalised(pixels: np.ndarray) -> np.ndarray:
    """A (28, 28) image in [0, 1] (white ink on black) as the (784,) float64 model input."""
    arr = np.asarray(pixels)
    if arr.shape not in ((SIZE, SIZE), (PIXELS,)):
        raise ValueError(f"expected a 28x28 image, got shape {arr.shape}")
    return (
        normalize(torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).reshape(1, SIZE, SIZE))
        .double()
        .numpy()[0]
    )


def integrated_gradients(weights: NetWeights, x: np.ndarray, classes: list[int] | np.ndarray) -> np.ndarray:
    """Exact integrated gradients from the blank image to normalised input x (784,): (len(classes), 784)."""
    x = np.asarray(x, dtype=np.float64).reshape(PIXELS)
    z = _matvec(weights.w1, x) + weights.b1
    frac = active_fraction(weights.z_baseline, z)
    k = np.asarray(classes, dtype=np.int64)
    return _rows_times(weights.w2[k] * frac, weights.w1) * (x - weights.baseline)


# One explanation is a few small matrix-vector products. numpy's BLAS splits them over all cores, and on a
# busy machine (a Streamlit server, other jobs) waiting for the second thread cost 50-90 ms at p95 for
# H = 1024; einsum's own single-threaded loops take ~0.6 ms there and never wait.
def _matvec(m: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.einsum("ij,j->i", m, v)


def _rows_times(rows: np.ndarray, m: np.ndarray) -> np.ndarray:
    return np.einsum("kj,ji->ki", rows, m)


@dataclass(frozen=True)
class Explanation:
    """Why the network gave its answer for one 28x28 input."""

    pixels: np.ndarray  # (28, 28) float32 in [0, 1]: the input as the model saw it
    logits: np.ndarray  # (10,) float64
    probabilities: np.ndarray  # (10,) the probabilities shown (at the run's temperature for drawn digits)
    baseline_logits: np.ndarray  # (10,) logits of the blank image
    digit: int  # the predicted class
    runner_up: int  # the second most probable class
    hidden: np.ndarray  # (H,) hidden activations (after ReLU)
    attributions: dict[int, np.ndarray]  # class -> (28, 28); each sums to logit - baseline logit
    top_units: np.ndarray  # hidden units pushing the predicted class up most, strongest first
    top_contributions: np.ndarray  # their activation x output weight for the predicted class

    def evidence(self, k: int) -> np.ndarray:
        """The attribution map (28, 28) for class k (which must have been computed)."""
        return self.attributions[k]


def explain(
    model: ShallowNet | NetWeights, pixels: np.ndarray, classes: list[int] | None = None, top: int = 10
) -> Explanation:
    """Explain one input (28x28 in [0, 1]): attributions for the prediction, the runner-up and `classes`."""
    w = net_weights(model)
    x = _normalised(pixels)
    z = _matvec(w.w1, x) + w.b1
    h = np.maximum(z, 0.0)
    logits = _matvec(w.w2, h) + w.b2
    probs = shown_probabilities(logits, w.temperature)
    ranked = np.argsort(-logits, kind="stable")
    digit, runner_up = int(ranked[0]), int(ranked[1])
    ks = list(dict.fromkeys([digit, runner_up, *(int(c) for c in classes or [])]))  # unique, in order
    if any(not 0 <= k <= 9 for k in ks):
        raise ValueError(f"classes must be digits 0..9, got {classes}")
    frac = active_fraction(w.z_baseline, z)
    ig = _rows_times(w.w2[ks] * frac, w.w1) * (x - w.baseline)
    contrib = h * w.w2[digit]
    n = min(top, len(h))
    units = np.argpartition(-contrib, n - 1)[:n] if n < len(h) else np.arange(len(h))
    units = units[np.argsort(-contrib[units], kind="stable")]
    return Explanation(
        pixels=np.asarray(pixels, dtype=np.float32).reshape(SIZE, SIZE),
        logits=logits,
        probabilities=probs,
        baseline_logits=w.baseline_logits.copy(),
        digit=digit,
        runner_up=runner_up,
        hidden=h,
        attributions={k: ig[i].reshape(SIZE, SIZE) for i, k in enumerate(ks)},
        top_units=units,
        top_contributions=contrib[units],
    )


# ---------------------------------------------------------------- hidden units


@dataclass(frozen=True)
class UnitSummaries:
    """What every hidden unit learned and how much it matters, measured on a set of images."""

    weight_maps: np.ndarray  # (H, 28, 28) float32: each unit's input weights as an image
    output_weights: np.ndarray  # (10, H) float32: how each unit votes for each digit
    importance: np.ndarray  # (H,) mean |activation| x ||output weights||: how much it moves the logits
    order: np.ndarray  # (H,) unit indices, most important first
    active_share: np.ndarray  # (H,) share of the images on which the unit is on (0: a dead unit)
    top_images: np.ndarray  # (H, top) indices of the images that activate the unit most, strongest first
    top_activations: np.ndarray  # (H, top) their activations
    class_activation: np.ndarray | None  # (10, H) mean activation per true digit, when labels were given
    templates: np.ndarray  # (10, 28, 28) float32: W2 @ W1, the linear part of each digit's score

    @property
    def hidden(self) -> int:
        """Number of hidden units."""
        return len(self.importance)


@torch.no_grad()
def unit_summaries(
    model: ShallowNet, images: torch.Tensor, labels: torch.Tensor | None = None, top: int = 8, chunk: int = 2048
) -> UnitSummaries:
    """Summarise every hidden unit over uint8 images (N, 28, 28), e.g. the test set."""
    w1 = model.fc1.weight.detach().to("cpu", torch.float32)
    b1 = model.fc1.bias.detach().to("cpu", torch.float32)
    w2 = model.fc2.weight.detach().to("cpu", torch.float32)
    hidden = w1.shape[0]
    n = len(images)
    k = min(top, n)
    act_sum = torch.zeros(hidden, dtype=torch.float64)
    active = torch.zeros(hidden, dtype=torch.int64)
    best_v = torch.empty(0, hidden)
    best_i = torch.empty(0, hidden, dtype=torch.int64)
    by_class = torch.zeros(10, hidden, dtype=torch.float64) if labels is not None else None
    for start in range(0, n, chunk):
        acts = torch.relu(torch.addmm(b1, normalize(images[start : start + chunk]), w1.T))  # (c, H)
        act_sum += acts.sum(0, dtype=torch.float64)
        active += (acts > 0).sum(0)
        if by_class is not None and labels is not None:  # both or neither
            by_class.index_add_(0, labels[start : start + chunk].to(torch.int64), acts.double())
        # Running top-k per unit: the previous best rows plus this chunk's best rows.
        kk = min(k, len(acts))
        v, i = torch.topk(acts, kk, dim=0)
        cand_v = torch.cat([best_v, v])
        cand_i = torch.cat([best_i, i + start])
        sel = torch.topk(cand_v, min(k, len(cand_v)), dim=0).indices
        best_v, best_i = cand_v.gather(0, sel), cand_i.gather(0, sel)
    mean_act = (act_sum / max(n, 1)).numpy()
    importance = mean_act * np.linalg.norm(w2.double().numpy(), axis=0)
    class_act = None
    if by_class is not None and labels is not None:
        counts = torch.bincount(labels.to(torch.int64), minlength=10).double().clamp(min=1)
        class_act = (by_class / counts[:, None]).float().numpy()
    return UnitSummaries(
        weight_maps=w1.numpy().reshape(hidden, SIZE, SIZE).copy(),
        output_weights=w2.numpy().copy(),
        importance=importance,
        order=np.argsort(-importance, kind="stable"),
        active_share=(active.double() / max(n, 1)).numpy(),
        top_images=best_i.T.contiguous().numpy(),
        top_activations=best_v.T.contiguous().numpy(),
        class_activation=class_act,
        templates=(w2 @ w1).numpy().reshape(10, SIZE, SIZE),
    )


# ---------------------------------------------------------------- prepared 28x28 inputs


def read_prepared(path: str | Path) -> PreparedDigit:
    """A 28x28 greyscale MNIST-style image (white ink on black), taken as it is; ImageReadError otherwise."""
    arr = load_image(path)
    if arr.ndim != 2:
        kind = "RGBA" if arr.shape[2] == 4 else "RGB"
        raise ImageReadError(
            f"--prepared expects a 28x28 greyscale image; this is a {arr.shape[1]}x{arr.shape[0]} "
            f"{kind} image (convert it to greyscale, or drop --prepared to prepare it)"
        )
    if arr.shape != (SIZE, SIZE):
        raise ImageReadError(
            f"--prepared expects a 28x28 image; this is {arr.shape[1]}x{arr.shape[0]} "
            "(drop --prepared to crop, scale and centre it)"
        )
    if arr.max() == 0:
        raise ImageReadError("the image is all black: no ink to read")
    border = np.concatenate([arr[0], arr[-1], arr[1:-1, 0], arr[1:-1, -1]])
    if np.median(border) > 127:
        raise ImageReadError(
            "--prepared expects white ink on a black background (as MNIST); this image has a "
            "light background (invert it, or drop --prepared)"
        )
    return PreparedDigit(arr.astype(np.float32) / 255.0)
