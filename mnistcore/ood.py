"""'That is not a digit': an out-of-distribution score for a trained net, calibrated on MNIST itself.

The score is how badly the input is rebuilt from the MNIST training digits of the class the network
predicts. Each digit class is split (k-means) into CENTRES groups of similar training images (7s with and
without a bar, open and closed 4s, ...), and each group keeps its mean image and its top COMPONENTS
principal directions; the score is the squared distance from the input to the nearest of its predicted
class's group subspaces. A letter read as "4" is far from every kind of real 4; a real 4 drawn in another
hand is close to one. The per-pixel squared residual adds up to the score, so it is also the map of which
part of a drawing is unlike MNIST. (Runs saved with the first version, one subspace per class of 20
directions, "class-pca-residual", still load and score as they were fitted.)

The threshold is a quantile (QUANTILE) of the scores of MNIST training digits the network never trained on
(its calibration holdout; any training digits for a run without one) pushed through prepare_digit, as a
drawing is: so it is calibrated on MNIST alone, in the form the Draw page produces.
bench/ood.py compares this score with the net's max-logit and a Mahalanobis distance in the hidden layer,
on letters and symbols, redrawn MNIST test digits and scikit-learn's load_digits (bench/OOD_RESULTS.md).
"""

from __future__ import annotations

import math
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mnistcore.model import ShallowNet
from mnistcore.normalize import normalize

METHOD = "class-mixture-pca-residual"
METHODS = (METHOD, "class-pca-residual")  # the first version: one subspace per class (CENTRES = 1), still loaded
FILE = "ood.safetensors"
# k-means groups per class, each with its own subspace, and the principal directions kept per group: picked on
# tuning sets never reported (bench/ood_tune.py; 10 x 10 was the second version, OOD_RESULTS.md)
CENTRES = 32
COMPONENTS = 6
KMEANS_ITERATIONS = 20
QUANTILE = 0.99  # share of prepared held-out digits scored below the threshold (picked by bench/ood_tune.py)
CALIBRATION_IMAGES = 2000  # held out of the fit; each goes through prepare_digit (~0.65 ms)
PER_CLASS = 5400  # fit images per class at most: about all of them (32 groups need ~150 images each)
FROM_HELD = "MNIST training digits the network never trained on (its holdout), prepared like a drawing"
FROM_TRAINED = "held-out MNIST training digits, prepared like a drawing"  # not held out of the net's training
_CHUNK = 256  # images scored at once per class: bounds the (images x groups x 784) working array to ~26 MB
_SPLIT_SEED = 20261204  # which training images are held out for calibration: fixed, apart from the run's seed


class OodError(ValueError):
    """A stored OOD record that is not exactly ours (wrong shapes, non-finite values); nothing was executed."""


@dataclass(frozen=True)
class OodModel:
    """Per-group mean images and principal directions, the class of each group, and the calibrated threshold."""

    means: np.ndarray  # (G, 784) float32, pixels in [0, 1]: G = 10 x groups per class
    bases: np.ndarray  # (G, 784, k) float32, orthonormal columns
    threshold: float
    quantile: float
    calibration_images: int
    owners: np.ndarray | None = None  # (G,) the digit each group belongs to; None: group c is digit c (G = 10)
    calibration: str = FROM_TRAINED  # which digits set the threshold

    @property
    def classes(self) -> np.ndarray:
        """(G,) the digit of each group."""
        return np.arange(len(self.means)) if self.owners is None else self.owners

    def record(self, fit_seconds: float = 0.0) -> dict[str, Any]:
        """What meta.json keeps under "ood" (the arrays live in FILE)."""
        return {
            "method": METHOD if self.owners is not None else METHODS[1],
            "file": FILE,
            "centres": int(np.bincount(self.classes, minlength=10).max()),  # groups per class, at most
            "components": int(self.bases.shape[2]),
            "threshold": self.threshold,
            "quantile": self.quantile,
            "calibration_images": self.calibration_images,
            "calibration": self.calibration,
            "fit_seconds": round(fit_seconds, 3),
        }

    def tensors(self) -> dict[str, torch.Tensor]:
        """The arrays, as FILE holds them (means and bases in float16: half the bytes, the same scores)."""
        pairs = (("means", self.means), ("bases", self.bases))
        out = {name: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float16)) for name, a in pairs}
        if self.owners is not None:
            out["owners"] = torch.from_numpy(np.ascontiguousarray(self.owners, dtype=np.int64))
        return out

    def scores(self, model: ShallowNet, pixels: np.ndarray) -> np.ndarray:
        """OOD scores (N,) of images (N, 28, 28) in [0, 1] (see `scores`)."""
        return scores(model, self.means, self.bases, pixels, self.owners)


@dataclass(frozen=True)
class OodResult:
    """One image's score, whether it is flagged, and where its residual lies."""

    score: float
    not_a_digit: bool
    threshold: float
    residual: np.ndarray  # (28, 28) signed: + ink where the class's digits have less, - ink missing


def _subspace(x: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean (784,), top-k principal directions (784, k), orthonormal) of images x (n, 784)."""
    m = x.mean(0)
    d = (x - m).double()
    if len(d) >= d.shape[1]:  # eigenvectors of the 784x784 covariance: cheaper than an SVD of thousands of images
        return m.numpy(), torch.linalg.eigh(d.T @ d)[1][:, -k:].float().numpy()
    # Fewer images than pixels (a k-means group): the same directions from the smaller n x n Gram matrix.
    w, u = torch.linalg.eigh(d @ d.T)
    w, u = w[-k:], u[:, -k:]
    v = d.T @ u / w.clamp(min=1e-12).sqrt()
    v[:, w <= 1e-9 * max(float(w.max()), 1e-12)] = 0.0  # fewer than k directions with any spread: no more
    return m.numpy(), v.float().numpy()


def _kmeans(x: torch.Tensor, groups: int, iterations: int = KMEANS_ITERATIONS) -> torch.Tensor:
    """Group labels (n,) of images x (n, 784) by k-means: k-means++ seeding from a fixed generator, then Lloyd."""
    g = torch.Generator().manual_seed(_SPLIT_SEED)
    centres = x[torch.randint(len(x), (1,), generator=g)]
    xx = x.square().sum(1)

    def to(c: torch.Tensor) -> torch.Tensor:  # squared distances of every image to c, as one matrix-vector product
        return (xx - 2 * (x @ c) + c.square().sum()).clamp(min=0)

    d = to(centres[0])  # squared distance to the nearest centre so far, kept up to date
    for _ in range(groups - 1):  # k-means++: each next centre drawn in proportion to its squared distance
        if not float(d.sum()) > 0:  # every image already sits on a centre (e.g. all alike): no more groups
            break
        new = x[torch.multinomial(d / d.sum(), 1, generator=g)]
        centres = torch.cat([centres, new])
        d = torch.minimum(d, to(new[0]))
    groups = len(centres)
    found = torch.zeros(len(x), dtype=torch.int64)
    for _ in range(iterations):
        # Nearest centre by |c|^2 - 2 x.c (|x|^2 is the same for every centre): one matrix product, ~10x
        # faster than cdist, which made k-means most of the fit's time.
        found = (centres.square().sum(1) - 2 * x @ centres.T).argmin(1)
        sums = torch.zeros_like(centres).index_add_(0, found, x)
        counts = torch.bincount(found, minlength=groups).clamp(min=1).unsqueeze(1).to(x.dtype)
        centres = sums / counts
    return found


def class_subspaces(
    images: np.ndarray, labels: np.ndarray, k: int = COMPONENTS, per_class: int = PER_CLASS, centres: int = CENTRES
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(means (G, 784), bases (G, 784, k), owners (G,)): `centres` k-means groups per class of images (N, 28, 28).

    Images are uint8 or [0, 1] floats. A class never seen keeps one group: the zero image (everything is far).
    """
    x = torch.as_tensor(np.asarray(images)).reshape(len(images), -1).to(torch.float32)
    if x.numel() and float(x.max()) > 1.0:
        x = x / 255.0
    y = torch.as_tensor(np.asarray(labels))
    means: list[np.ndarray] = []
    bases: list[np.ndarray] = []
    owners: list[int] = []
    for c in range(10):
        xc = x[y == c][:per_class]
        groups = min(centres, len(xc) // max(2 * k, 1))
        if groups <= 1:
            parts = [xc] if len(xc) else []
        else:
            found = _kmeans(xc, groups)
            parts = [xc[found == g] for g in range(groups) if int((found == g).sum()) > k]
        fitted = [_subspace(part, k) for part in parts] or [(np.zeros(784, np.float32), np.zeros((784, k), np.float32))]
        means += [m for m, _ in fitted]
        bases += [b for _, b in fitted]
        owners += [c] * len(fitted)
    return np.stack(means), np.stack(bases), np.array(owners, np.int64)


def residuals(
    means: np.ndarray, bases: np.ndarray, pixels: np.ndarray, classes: np.ndarray, owners: np.ndarray | None = None
) -> np.ndarray:
    """Signed residuals (N, 784) of images (N, 784) in [0, 1] from the nearest subspace of their classes.

    owners: the digit of each subspace (None: subspace c is digit c's only one).
    """
    owners = np.arange(len(means)) if owners is None else owners
    out = np.empty_like(pixels, dtype=np.float32)
    for c in np.unique(classes):
        groups = np.flatnonzero(owners == c)
        for rows in np.array_split(np.flatnonzero(classes == c), -(-int((classes == c).sum()) // _CHUNK)):
            d = pixels[rows].astype(np.float32)[:, None, :] - means[groups][None]  # (n, G, 784)
            proj = np.einsum("ngp,gpk->ngk", d, bases[groups])
            # Squared distance to each group's subspace, all at once (the columns are orthonormal); the
            # residual itself is then built for the nearest group only.
            nearest = ((d * d).sum(2) - (proj * proj).sum(2)).argmin(1)
            at = np.arange(len(rows))
            b = bases[groups[nearest]]  # (n, 784, k)
            out[rows] = d[at, nearest] - np.einsum("npk,nk->np", b, proj[at, nearest])
    return out


@torch.no_grad()
def _predicted(model: ShallowNet, pixels: np.ndarray) -> np.ndarray:
    x = normalize(torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)).reshape(-1, 28, 28))
    return model(x.to(next(model.parameters()).device)).argmax(1).cpu().numpy()


def scores(
    model: ShallowNet, means: np.ndarray, bases: np.ndarray, pixels: np.ndarray, owners: np.ndarray | None = None
) -> np.ndarray:
    """OOD scores (N,) of images (N, 28, 28) in [0, 1]: squared residual from the predicted class's nearest subspace."""
    flat = pixels.reshape(len(pixels), -1).astype(np.float32)
    if len(flat) == 0:
        return np.zeros(0, np.float32)
    r = residuals(means, bases, flat, _predicted(model, flat), owners)
    return (r * r).sum(1)


def prepared_mnist(images: np.ndarray) -> np.ndarray:
    """MNIST digits (N, 28, 28) pushed through prepare_digit, as a drawing would be (empty ones dropped)."""
    from mnistcore.preprocess import prepare_digit

    out = [p.pixels for p in (prepare_digit(im) for im in images) if p.pixels is not None]
    return np.stack(out) if out else np.zeros((0, 28, 28), np.float32)


def calibration_split(n: int, calibration: int = CALIBRATION_IMAGES, held: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(calibration indices, fit indices) of n training images, a fixed random choice.

    held: how many of the last images the network never trained on (its calibration holdout). Calibration
    digits are drawn from those, so that the threshold sees digits as new to the network as a drawing is
    (digits it trained on score lower, which set the threshold too low). Without any: a random split of
    all; tiny sets fit on half.
    """
    rng = np.random.default_rng(_SPLIT_SEED)
    if held > 0:
        cal = (n - held + rng.permutation(held))[: min(calibration, held)]
        return cal, np.setdiff1d(np.arange(n), cal)
    order = rng.permutation(n)
    n_cal = min(calibration, n // 2)
    return order[:n_cal], order[n_cal:]


def _as_stored(a: np.ndarray) -> np.ndarray:
    """a rounded to float16 as FILE stores it, back in float32 for computing."""
    return a.astype(np.float16).astype(np.float32)


def fit(
    model: ShallowNet,
    images: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    *,
    held: int = 0,
    k: int = COMPONENTS,
    centres: int = CENTRES,
    quantile: float = QUANTILE,
    calibration: int = CALIBRATION_IMAGES,
) -> OodModel:
    """Fit the class subspaces on training images and calibrate the threshold on held-out ones, prepared.

    held: the last `held` images were never trained on (calibration_split draws the calibration digits there).
    """
    x = np.asarray(images)
    y = np.asarray(labels)
    cal, rest = calibration_split(len(x), calibration, held)
    means, bases, owners = class_subspaces(x[rest], y[rest], k, centres=centres)
    means, bases = _as_stored(means), _as_stored(bases)  # calibrated exactly as it will be loaded
    cal_scores = scores(model.eval(), means, bases, prepared_mnist(x[cal]), owners)
    # No calibration image survived (a degenerate data set): a threshold nothing reaches, kept finite for JSON.
    threshold = float(np.quantile(cal_scores, quantile)) if len(cal_scores) else float(np.finfo(np.float32).max)
    source = FROM_HELD if held > 0 else FROM_TRAINED
    return OodModel(means, bases, threshold, quantile, len(cal_scores), owners, source)


def assess(model: ShallowNet, ood: OodModel, pixels: np.ndarray) -> OodResult:
    """Score one prepared 28x28 image (pixels in [0, 1]) against the calibrated threshold."""
    flat = pixels.reshape(1, 784).astype(np.float32)
    r = residuals(ood.means, ood.bases, flat, _predicted(model, flat), ood.owners)[0]
    score = float((r * r).sum())
    return OodResult(score, score > ood.threshold, ood.threshold, r.reshape(28, 28))


def ood_file_size(centres: int = CENTRES, k: int = COMPONENTS) -> int:
    """Bytes of FILE for a fit with these settings, at most (float16 means and bases, int64 owners)."""
    return 10 * centres * (2 * 784 * (k + 1) + 8) + (1 << 12)


def save(directory: Path, ood: OodModel) -> None:
    """Write the arrays (raw tensors, never pickle) into directory/FILE."""
    save_file(ood.tensors(), str(directory / FILE))


MAX_CENTRES = 64  # a stored record with more groups per class is refused (it is not one of ours)


def load(directory: Path, record: Any) -> OodModel | None:
    """The OOD model of a run from its meta.json record and FILE; None without a record; OodError if damaged."""
    if record is None:
        return None
    if not isinstance(record, dict) or record.get("method") not in METHODS:
        raise OodError(f"unknown OOD record {record!r:.80}")
    grouped = record["method"] == METHOD
    path = directory / FILE
    try:
        k = int(record["components"])
        centres = int(record["centres"]) if grouped else 1
        threshold = float(record["threshold"])
        if not 1 <= k <= 784 or not 1 <= centres <= MAX_CENTRES or math.isnan(threshold):
            raise ValueError(f"components {k}, centres {centres}, threshold {threshold}")
        st = path.stat()
        if not stat.S_ISREG(st.st_mode) or st.st_size > 4 * 10 * centres * (784 * (k + 1) + 2) + (1 << 16):
            raise ValueError("not a regular file of the expected size")
        t = load_file(str(path))
    except (KeyError, TypeError, ValueError, OSError, SafetensorError, RuntimeError) as exc:  # see RunStore.load
        raise OodError(f"{path}: not a valid OOD record ({exc})") from None
    _check_arrays(path, t, k, centres, grouped)
    return OodModel(
        t["means"].float().numpy(),
        t["bases"].float().numpy(),
        threshold,
        float(record.get("quantile", QUANTILE)),
        int(record.get("calibration_images", 0)),
        t["owners"].numpy() if grouped else None,
        str(record.get("calibration", FROM_TRAINED))[:200],
    )


def _check_arrays(path: Path, t: dict[str, torch.Tensor], k: int, centres: int, grouped: bool) -> None:
    """OodError unless FILE's arrays have our shapes, dtypes and finite values, and every digit has a group."""
    g = len(t["means"]) if "means" in t else 0
    want = {"means": (g, 784), "bases": (g, 784, k), **({"owners": (g,)} if grouped else {})}
    shapes = {name: tuple(v.shape) for name, v in t.items()}
    floats = [t[n] for n in ("means", "bases") if n in t]
    if shapes != want or not (10 <= g <= 10 * centres) or (not grouped and g != 10):
        raise OodError(f"{path} holds {shapes}, expected {want} with 10 to {10 * centres} groups")
    # float16 since the third version; runs saved before stored float32
    if any(v.dtype not in (torch.float16, torch.float32) for v in floats) or (
        grouped and t["owners"].dtype != torch.int64
    ):
        raise OodError(f"{path}: means and bases must be float16 or float32, owners int64")
    if not all(bool(torch.isfinite(v).all()) for v in floats):
        raise OodError(f"{path} holds non-finite values")
    if grouped and sorted(set(t["owners"].tolist())) != list(range(10)):
        raise OodError(f"{path}: every digit 0-9 needs at least one group, and no other owner")
