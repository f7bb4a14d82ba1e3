"""Predicting drawn digits: preprocessing + forward, one image at a time."""

from __future__ import annotations

import numpy as np
import torch

from mnistcore.model import ShallowNet
from mnistcore.preprocess import PreparedDigit


@torch.no_grad()
def predict_prepared(model: ShallowNet, digit: PreparedDigit) -> np.ndarray:
    """The ten class probabilities shown for a prepared (non-empty) digit: calibrated for drawn digits."""
    x = digit.tensor().to(next(model.parameters()).device)
    return model.probabilities(x, drawn=True)[0].float().cpu().numpy()
