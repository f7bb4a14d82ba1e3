"""Confidence you can trust: temperature scaling fitted on held-out training images, and how to measure it.

A network trained with cross-entropy is often over- (or under-) confident: when it says 99 % it may be right
less often than that. Temperature scaling (Guo et al., 2017) divides every logit by one number T fitted on
images the network never trained on, minimising their negative log-likelihood; T > 1 softens the
probabilities, T < 1 sharpens them, and the answer (the largest logit) never changes. Every probability
MNIST Lab shows goes through `shown_probabilities`, with the run's T.

Calibration is measured as the expected calibration error (ECE) over 15 equal-width confidence bins: the
images are grouped by the probability given to the answer (the top one), and ECE is the mean gap between
each group's confidence and its accuracy, weighted by its size.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from mnistcore.data import MnistData

N_BINS = 15
# Held out only when the rest still trains well: at most a sixth of the training set. A request larger than
# that is scaled to a twelfth (MNIST's 5000 of 60 000), if that is still enough images to fit T on.
MAX_SHARE = 1 / 6
SCALED_SHARE = 1 / 12
MIN_SCALED = 500
T_BOUNDS = (0.05, 20.0)  # a fitted temperature outside this means something is wrong with the data
METHOD = "temperature scaling: T minimising the held-out images' NLL (bounded 1-D search on log T)"
# Drawn and uploaded digits come from other hands than MNIST's, and one temperature cannot fit both: the
# one fitted on MNIST itself left the seed recipe 3.5-5.6 points more sure than right on scikit-learn's
# load_digits. Their temperature is fitted on the held-out images plus a distorted copy of some of them
# (the training distortions, mnistcore.augment, a stand-in for unfamiliar handwriting) making DRAWN_SHARE of
# that set. 0.2 was picked over 0, 1/3 and 1/2 on the first half of load_digits (its first ~21 writers) and
# measured on the second (bench/calibration.py); the reported set was never fitted on.
DRAWN_SHARE = 0.2
DRAWN_SEED = 20141  # the distorted copy's own random stream: the same for every run

ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, torch.Tensor)


def shown_probabilities(logits: ArrayOrTensor, temperature: float = 1.0) -> ArrayOrTensor:
    """The probabilities shown for logits (..., 10): softmax(logits / T), as a tensor or an array like the input.

    The one place logits become probabilities for the CLI and the dashboard (T is the run's temperature).
    """
    t = float(temperature)
    if not math.isfinite(t) or t <= 0:
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    if isinstance(logits, np.ndarray):
        z = logits.astype(np.float64) / t
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return (e / e.sum(axis=-1, keepdims=True)).astype(logits.dtype if logits.dtype.kind == "f" else np.float64)
    return torch.softmax(logits / t if t != 1.0 else logits, dim=-1)


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of the labels under softmax(logits / T), float64."""
    z = logits / temperature
    m = z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z - m).sum(axis=1)) + m[:, 0]
    return float(np.mean(lse - z[np.arange(len(labels)), labels]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the NLL of (logits (N, 10), labels (N,)); 1.0 for no images.

    The NLL is convex in 1/T, so a bounded scalar search on log T finds the optimum (to ~1e-5 in log T).
    """
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if not len(y):
        return 1.0
    lo, hi = (math.log(b) for b in T_BOUNDS)
    found = minimize_scalar(
        lambda s: _nll(z, y, math.exp(s)), bounds=(lo, hi), method="bounded", options={"xatol": 1e-5}
    )
    return float(math.exp(found.x))


@dataclass(frozen=True)
class ReliabilityBin:
    """One confidence bin: the mean top probability of its images, their accuracy, and how many."""

    lower: float
    upper: float
    confidence: float  # NaN for an empty bin
    accuracy: float  # NaN for an empty bin
    count: int


@dataclass(frozen=True)
class Reliability:
    """A reliability diagram's data and the expected calibration error it sums to."""

    bins: list[ReliabilityBin]  # all N_BINS, in order of confidence
    ece: float  # sum over bins of count/N * |accuracy - confidence|
    mean_confidence: float
    accuracy: float
    count: int

    def to_json(self) -> list[dict[str, Any]]:
        """The non-empty bins as {"confidence", "accuracy", "count"}, lowest confidence first."""
        return [{"confidence": b.confidence, "accuracy": b.accuracy, "count": b.count} for b in self.bins if b.count]


def reliability(probabilities: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> Reliability:
    """Confidence bins (lower, upper] of equal width over (0, 1] for probabilities (N, 10) and labels (N,)."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if p.ndim != 2 or len(p) != len(y):
        raise ValueError(f"expected probabilities (N, C) and labels (N,), got {p.shape} and {y.shape}")
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Bin i holds edges[i] < conf <= edges[i + 1] (a confidence of exactly 1 falls in the top bin).
    index = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    bins, ece = [], 0.0
    for i in range(n_bins):
        inside = index == i
        k = int(inside.sum())
        c = float(conf[inside].mean()) if k else math.nan
        a = float(correct[inside].mean()) if k else math.nan
        if k:
            ece += k / len(y) * abs(a - c)
        bins.append(ReliabilityBin(float(edges[i]), float(edges[i + 1]), c, a, k))
    return Reliability(
        bins=bins,
        ece=ece if len(y) else math.nan,
        mean_confidence=float(conf.mean()) if len(y) else math.nan,
        accuracy=float(correct.mean()) if len(y) else math.nan,
        count=len(y),
    )


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> float:
    """ECE over `n_bins` equal-width confidence bins (0..1, not a percentage)."""
    return reliability(probabilities, labels, n_bins).ece


@dataclass(frozen=True)
class Calibration:
    """What a run stores (meta.json "calibration"): its temperatures and how they were fitted."""

    temperature: float  # for MNIST-like images (the test set, the evaluation pages)
    holdout: int  # images it was fitted on (the last ones of the training set); 0: not fitted
    holdout_requested: int  # TrainConfig.holdout
    temperature_drawn: float = 1.0  # for drawn and uploaded digits (Draw, predict, explain, My drawings)
    drawn_distorted: int = 0  # distorted copies added to the held-out images to fit temperature_drawn
    method: str = METHOD
    nll: float | None = None  # on the held-out images, with the temperature
    nll_uncalibrated: float | None = None  # with T = 1
    ece: float | None = None
    ece_uncalibrated: float | None = None
    note: str | None = None  # why fewer images (or none) were held out than asked for

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready)."""
        return asdict(self)


def temperature_of(record: dict[str, Any] | None, drawn: bool = False) -> float:
    """A run's temperature (drawn: the one for drawn digits) from its stored record; 1.0 for a run without one."""
    if record is None:
        return 1.0
    return float(record.get("temperature_drawn", record["temperature"]) if drawn else record["temperature"])


def check_record(record: Any) -> dict[str, Any] | None:
    """A stored calibration record, checked (None stays None); ValueError if its temperature is unusable."""
    if record is None:
        return None
    if not isinstance(record, dict):
        raise ValueError(f"calibration must be an object, got {type(record).__name__}")
    for key in ("temperature", "temperature_drawn"):
        t = record.get(key, 1.0 if key == "temperature_drawn" else None)
        if isinstance(t, bool) or not isinstance(t, int | float) or not T_BOUNDS[0] <= t <= T_BOUNDS[1]:
            raise ValueError(f"calibration {key} must be a number in {list(T_BOUNDS)}, got {t!r}")
    return dict(record)


def holdout_size(requested: int, n_train: int) -> tuple[int, str | None]:
    """How many of `n_train` training images to hold out for `requested`, and why it differs (else None)."""
    if requested <= 0:
        return 0, "no validation split held out (holdout 0): temperature 1.0, the probabilities are uncalibrated"
    if requested <= n_train * MAX_SHARE:
        return requested, None
    scaled = int(n_train * SCALED_SHARE)
    if scaled >= MIN_SCALED:
        return scaled, (
            f"{requested} is more than a sixth of the {n_train} training images: held out {scaled} (a twelfth)"
        )
    return 0, (
        f"only {n_train} training images: too few to hold out a validation split (at least "
        f"{math.ceil(MIN_SCALED / SCALED_SHARE)} needed); trained on all of them, temperature 1.0"
    )


def split_holdout(data: MnistData, requested: int) -> tuple[MnistData, int, str | None]:
    """(the data without its last held-out training images, how many were held out, why not as asked).

    The held-out images are the last ones of the training split (views, nothing copied): the same for every
    seed and for a continued run, and drawings mixed in for fine-tuning are put first so they are never among them.
    """
    n = len(data.train_labels)
    k, note = holdout_size(requested, n)
    if not k:
        return data, 0, note
    kept = MnistData(
        train_images=data.train_images[: n - k],
        train_labels=data.train_labels[: n - k],
        test_images=data.test_images,
        test_labels=data.test_labels,
        checksums=data.checksums,
    )
    return kept, k, note


@torch.no_grad()
def model_logits(model: torch.nn.Module, images: torch.Tensor, chunk: int = 8192) -> np.ndarray:
    """The model's logits (N, 10) for uint8 images (N, 28, 28), float64 on the CPU, in eval mode."""
    from mnistcore.normalize import normalize

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        out = [model(normalize(images[i : i + chunk]).to(device)).double().cpu() for i in range(0, len(images), chunk)]
    finally:
        model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, 10))


def drawn_temperature(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: np.ndarray,
    logits: np.ndarray,
    share: float = DRAWN_SHARE,
) -> tuple[float, int]:
    """(drawn-digit temperature, copies used): fit on held-out uint8 images + distorted copies making `share`."""
    from mnistcore.augment import Augmenter

    held = len(labels)
    k = min(held, round(held * share / (1 - share))) if share < 1 else held
    if not k:
        return fit_temperature(logits, labels), 0
    distorted = model_logits(model, Augmenter(seed=DRAWN_SEED)(images[:k]))
    return fit_temperature(np.concatenate([logits, distorted]), np.concatenate([labels, labels[:k]])), k


def calibrate(model: torch.nn.Module, data: MnistData, held: int, requested: int, note: str | None) -> Calibration:
    """Fit the temperature on the last `held` training images of `data` (those held out of training)."""
    if not held:
        return Calibration(temperature=1.0, holdout=0, holdout_requested=requested, note=note)
    images, labels = data.train_images[-held:], data.train_labels[-held:].numpy()
    logits = model_logits(model, images)
    t = fit_temperature(logits, labels)
    t_drawn, k = drawn_temperature(model, images, labels, logits)
    return Calibration(
        temperature=t,
        holdout=held,
        holdout_requested=requested,
        temperature_drawn=t_drawn,
        drawn_distorted=k,
        nll=_nll(logits, labels, t),
        nll_uncalibrated=_nll(logits, labels, 1.0),
        ece=expected_calibration_error(shown_probabilities(logits, t), labels),
        ece_uncalibrated=expected_calibration_error(shown_probabilities(logits, 1.0), labels),
        note=note,
    )


def reliability_pair(logits: np.ndarray, labels: np.ndarray, temperature: float) -> tuple[Reliability, Reliability]:
    """(with the temperature, without it): the reliability of logits (N, 10) on labels (N,), as shown and raw."""
    return (
        reliability(shown_probabilities(logits, temperature), labels),
        reliability(shown_probabilities(logits, 1.0), labels),
    )


def evaluation_report(
    logits: np.ndarray, labels: np.ndarray, temperature: float, note: str | None = None
) -> dict[str, Any]:
    """`evaluate --json`'s "calibration": ECE and bins with the run's temperature, and the ECE without it."""
    after, before = reliability_pair(logits, labels, temperature)
    out: dict[str, Any] = {
        "ece": after.ece,
        "temperature": float(temperature),
        "bins": after.to_json(),
        "ece_uncalibrated": before.ece,
    }
    if note:
        out["note"] = note
    return out
