"""'That is not a digit': an out-of-distribution score for a trained net, calibrated on MNIST itself.

The score is how badly the input is rebuilt from the MNIST training digits of the class the network
predicts: each digit class keeps its mean image and its top COMPONENTS principal directions (from MNIST
training images), and the score is the squared distance from the input to that class's subspace. A
letter read as "4" is far from every real 4; a real 4 drawn in another hand is close. The per-pixel
squared residual adds up to the score, so it is also the map of which part of a drawing is unlike MNIST.

The threshold is a quantile (QUANTILE) of the scores of held-out MNIST training digits pushed through
prepare_digit, as a drawing is: so it is calibrated on MNIST alone, in the form the Draw page produces.
bench/ood.py compares this score with the net's max-logit and a Mahalanobis distance in the hidden layer,
on letters and symbols, redrawn MNIST test digits and scikit-learn's load_digits (bench/OOD_RESULTS.md).
"""

from __future__ import annotations

import math
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mnistcore.model import ShallowNet
from mnistcore.normalize import normalize

METHOD = "class-pca-residual"
FILE = "ood.safetensors"
COMPONENTS = 20  # principal directions kept per class (10 and 35 measured alike; see bench/OOD_RESULTS.md)
QUANTILE = 0.985  # share of prepared MNIST training digits scored below the threshold
CALIBRATION_IMAGES = 2000  # held out of the fit; each goes through prepare_digit (~0.65 ms)
PER_CLASS = 4000  # fit images per class at most (more changes the directions little, costs more)
_SPLIT_SEED = 20261204  # which training images are held out for calibration: fixed, apart from the run's seed


class OodError(ValueError):
    """A stored OOD record that is not exactly ours (wrong shapes, non-finite values); nothing was executed."""


@dataclass(frozen=True)
class OodModel:
    """Per-class mean images and principal directions, and the calibrated threshold."""

    means: np.ndarray  # (10, 784) float32, pixels in [0, 1]
    bases: np.ndarray  # (10, 784, k) float32, orthonormal columns
    threshold: float
    quantile: float
    calibration_images: int

    def record(self, fit_seconds: float = 0.0) -> dict[str, Any]:
        """What meta.json keeps under "ood" (the arrays live in FILE)."""
        return {
            "method": METHOD,
            "file": FILE,
            "components": int(self.bases.shape[2]),
            "threshold": self.threshold,
            "quantile": self.quantile,
            "calibration_images": self.calibration_images,
            "calibration": "held-out MNIST training digits, prepared like a drawing",
            "fit_seconds": round(fit_seconds, 3),
        }

    def tensors(self) -> dict[str, torch.Tensor]:
        """The arrays, as FILE holds them."""
        return {"means": torch.from_numpy(self.means), "bases": torch.from_numpy(self.bases)}


@dataclass(frozen=True)
class OodResult:
    """One image's score, whether it is flagged, and where its residual lies."""

    score: float
    not_a_digit: bool
    threshold: float
    residual: np.ndarray  # (28, 28) signed: + ink where the class's digits have less, - ink missing


def class_subspaces(
    images: np.ndarray, labels: np.ndarray, k: int = COMPONENTS, per_class: int = PER_CLASS
) -> tuple[np.ndarray, np.ndarray]:
    """(means (10, 784), bases (10, 784, k)) of each class's images (N, 28, 28) uint8 or [0, 1] floats."""
    x = torch.as_tensor(np.asarray(images)).reshape(len(images), -1).to(torch.float32)
    if x.numel() and float(x.max()) > 1.0:
        x = x / 255.0
    y = torch.as_tensor(np.asarray(labels))
    means = np.zeros((10, 784), np.float32)
    bases = np.zeros((10, 784, k), np.float32)
    for c in range(10):
        xc = x[y == c][:per_class]
        if len(xc) == 0:
            continue  # a class never seen: its subspace is the zero image (everything is far from it)
        m = xc.mean(0)
        d = (xc - m).double()
        # Eigenvectors of the 784x784 covariance: cheaper than an SVD of thousands of images.
        _, vecs = torch.linalg.eigh(d.T @ d)
        means[c], bases[c] = m.numpy(), vecs[:, -k:].float().numpy()
    return means, bases


def residuals(means: np.ndarray, bases: np.ndarray, pixels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Signed residuals (N, 784) of images (N, 784) in [0, 1] from their classes' subspaces."""
    out = np.empty_like(pixels, dtype=np.float32)
    for c in np.unique(classes):
        rows = classes == c
        d = pixels[rows].astype(np.float32) - means[c]
        out[rows] = d - (d @ bases[c]) @ bases[c].T
    return out


@torch.no_grad()
def _predicted(model: ShallowNet, pixels: np.ndarray) -> np.ndarray:
    x = normalize(torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)).reshape(-1, 28, 28))
    return model(x.to(next(model.parameters()).device)).argmax(1).cpu().numpy()


def scores(model: ShallowNet, means: np.ndarray, bases: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """OOD scores (N,) of images (N, 28, 28) in [0, 1]: squared residual from the predicted class's subspace."""
    flat = pixels.reshape(len(pixels), -1).astype(np.float32)
    if len(flat) == 0:
        return np.zeros(0, np.float32)
    r = residuals(means, bases, flat, _predicted(model, flat))
    return (r * r).sum(1)


def prepared_mnist(images: np.ndarray) -> np.ndarray:
    """MNIST digits (N, 28, 28) pushed through prepare_digit, as a drawing would be (empty ones dropped)."""
    from mnistcore.preprocess import prepare_digit

    out = [p.pixels for p in (prepare_digit(im) for im in images) if p.pixels is not None]
    return np.stack(out) if out else np.zeros((0, 28, 28), np.float32)


def calibration_split(n: int, calibration: int = CALIBRATION_IMAGES) -> tuple[np.ndarray, np.ndarray]:
    """(calibration indices, fit indices) of n training images: a fixed random split; tiny sets fit on half."""
    order = np.random.default_rng(_SPLIT_SEED).permutation(n)
    n_cal = min(calibration, n // 2)
    return order[:n_cal], order[n_cal:]


def fit(
    model: ShallowNet,
    images: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    *,
    k: int = COMPONENTS,
    quantile: float = QUANTILE,
    calibration: int = CALIBRATION_IMAGES,
) -> OodModel:
    """Fit the class subspaces on training images and calibrate the threshold on held-out ones, prepared."""
    x = np.asarray(images)
    y = np.asarray(labels)
    cal, rest = calibration_split(len(x), calibration)
    means, bases = class_subspaces(x[rest], y[rest], k)
    cal_scores = scores(model.eval(), means, bases, prepared_mnist(x[cal]))
    # No calibration image survived (a degenerate data set): a threshold nothing reaches, kept finite for JSON.
    threshold = float(np.quantile(cal_scores, quantile)) if len(cal_scores) else float(np.finfo(np.float32).max)
    return OodModel(means, bases, threshold, quantile, len(cal_scores))


def fit_record(model: ShallowNet, images: torch.Tensor, labels: torch.Tensor) -> tuple[dict[str, Any], OodModel]:
    """fit() timed: (meta.json record, model) as a training run stores them."""
    start = time.perf_counter()
    ood = fit(model, images, labels)
    return ood.record(time.perf_counter() - start), ood


def assess(model: ShallowNet, ood: OodModel, pixels: np.ndarray) -> OodResult:
    """Score one prepared 28x28 image (pixels in [0, 1]) against the calibrated threshold."""
    flat = pixels.reshape(1, 784).astype(np.float32)
    r = residuals(ood.means, ood.bases, flat, _predicted(model, flat))[0]
    score = float((r * r).sum())
    return OodResult(score, score > ood.threshold, ood.threshold, r.reshape(28, 28))


def save(directory: Path, ood: OodModel) -> None:
    """Write the arrays (raw tensors, never pickle) into directory/FILE."""
    save_file(ood.tensors(), str(directory / FILE))


def load(directory: Path, record: Any) -> OodModel | None:
    """The OOD model of a run from its meta.json record and FILE; None without a record; OodError if damaged."""
    if record is None:
        return None
    if not isinstance(record, dict) or record.get("method") != METHOD:
        raise OodError(f"unknown OOD record {record!r:.80}")
    path = directory / FILE
    try:
        k = int(record["components"])
        threshold = float(record["threshold"])
        if not 1 <= k <= 784 or math.isnan(threshold):
            raise ValueError(f"components {k}, threshold {threshold}")
        st = path.stat()
        if not stat.S_ISREG(st.st_mode) or st.st_size > 4 * 10 * 784 * (k + 1) + (1 << 16):
            raise ValueError("not a regular file of the expected size")
        t = load_file(str(path))
    except (KeyError, TypeError, ValueError, OSError, SafetensorError, RuntimeError) as exc:  # see RunStore.load
        raise OodError(f"{path}: not a valid OOD record ({exc})") from None
    shapes = {name: tuple(v.shape) for name, v in t.items()}
    if shapes != {"means": (10, 784), "bases": (10, 784, k)} or any(v.dtype != torch.float32 for v in t.values()):
        raise OodError(f"{path} holds {shapes}, expected means (10, 784) and bases (10, 784, {k}) float32")
    if not all(bool(torch.isfinite(v).all()) for v in t.values()):
        raise OodError(f"{path} holds non-finite values")
    return OodModel(
        t["means"].numpy(),
        t["bases"].numpy(),
        threshold,
        float(record.get("quantile", QUANTILE)),
        int(record.get("calibration_images", 0)),
    )
