"""Evaluation of a model on a labelled set: predictions, confusion matrix, per-class metrics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from mnistcore.calibration import shown_probabilities
from mnistcore.model import ShallowNet
from mnistcore.normalize import normalize


@dataclass(frozen=True)
class Evaluation:
    """Everything the dashboard shows about a model on the test set, as arrays."""

    labels: np.ndarray  # (N,) true digit
    predictions: np.ndarray  # (N,) predicted digit
    probabilities: np.ndarray  # (N, 10) the probabilities shown: softmax at the run's temperature, float32
    confusion: np.ndarray  # (10, 10) counts, rows = true, columns = predicted
    accuracy: float
    precision: np.ndarray  # (10,) per predicted class
    recall: np.ndarray  # (10,) per true class
    support: np.ndarray  # (10,) number of images of each true class
    f1: np.ndarray  # (10,) harmonic mean of precision and recall per class (0 where both are 0)
    logits: np.ndarray | None = None  # (N, 10) float32, before any temperature
    temperature: float = 1.0  # the model's calibration temperature the probabilities were made with

    @property
    def confidence(self) -> np.ndarray:
        """Probability the model gave to its own prediction, (N,)."""
        return self.probabilities[np.arange(len(self.predictions)), self.predictions]

    @property
    def errors(self) -> int:
        """Number of misclassified images."""
        return int((self.labels != self.predictions).sum())


def evaluate(model: ShallowNet, images: torch.Tensor, labels: torch.Tensor, drawn: bool = False) -> Evaluation:
    """Run the model on uint8 images (N,28,28) and compare with labels (N,); drawn: they are drawn digits."""
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    device = next(model.parameters()).device
    logits = model.logits(normalize(images).to(device)).float().cpu()
    temperature = model.temperature_for(drawn)
    probs = shown_probabilities(logits, temperature).numpy()
    y = labels.cpu().numpy().astype(np.int64)
    pred = probs.argmax(1).astype(np.int64)
    classes = list(range(10))
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, labels=classes, zero_division=0)
    return Evaluation(
        labels=y,
        predictions=pred,
        probabilities=probs,
        confusion=confusion_matrix(y, pred, labels=classes),
        accuracy=float((y == pred).mean()) if len(y) else float("nan"),
        precision=precision,
        recall=recall,
        support=support,
        f1=f1,
        logits=logits.numpy(),
        temperature=float(temperature),
    )


def cell_indices(ev: Evaluation, true: int, pred: int) -> np.ndarray:
    """Indices of the images with this true and predicted digit, most confident first."""
    idx = np.flatnonzero((ev.labels == true) & (ev.predictions == pred))
    return idx[np.argsort(-ev.confidence[idx], kind="stable")]


def select_predictions(
    ev: Evaluation,
    correct: bool = False,
    true: int | None = None,
    pred: int | None = None,
    min_confidence: float = 0.0,
    most_confident_first: bool = True,
) -> np.ndarray:
    """Indices of errors (or correct predictions) matching the filters, sorted by confidence."""
    mask = (ev.labels == ev.predictions) if correct else (ev.labels != ev.predictions)
    if true is not None:
        mask &= ev.labels == true
    if pred is not None:
        mask &= ev.predictions == pred
    conf = ev.confidence
    mask &= conf >= min_confidence
    idx = np.flatnonzero(mask)
    order = np.argsort(-conf[idx] if most_confident_first else conf[idx], kind="stable")
    return idx[order]
