"""The one definition of MNIST input normalisation, shared by training, evaluation and drawing."""

from __future__ import annotations

import torch

# Mean and std of the MNIST training pixels scaled to [0, 1] (the usual torchvision values).
MEAN = 0.1307
STD = 0.3081


def normalize(images: torch.Tensor) -> torch.Tensor:
    """Map a batch of images (uint8 0..255, or float 0..1), shape (N, 28, 28), to (N, 784) float32."""
    x = images.to(torch.float32)
    if images.dtype == torch.uint8:
        x = x / 255.0
    return ((x - MEAN) / STD).reshape(x.shape[0], -1)
