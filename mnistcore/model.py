"""The shallow network: 784 -> H -> 10."""

from __future__ import annotations

import torch
from torch import nn

from mnistcore.calibration import shown_probabilities


def param_count(hidden: int) -> int:
    """Number of parameters of a 784-hidden-10 net (the length of each flat optimizer state tensor)."""
    return hidden * 784 + hidden + 10 * hidden + 10


class ShallowNet(nn.Module):
    """Linear(784, H) -> ReLU -> (Dropout) -> Linear(H, 10); returns logits."""

    def __init__(self, hidden: int = 128, dropout: float = 0.0) -> None:
        super().__init__()
        self.hidden = hidden
        self.fc1 = nn.Linear(784, hidden)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, 10)
        # The run's calibration temperature (mnistcore.calibration), set by training and by RunStore.load.
        # A plain attribute, not a buffer: the weights file stays exactly the four tensors it always held.
        self.temperature = 1.0  # for MNIST-like images
        self.temperature_drawn = 1.0  # for drawn and uploaded digits (other hands than MNIST's)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, 10) for normalised inputs (N, 784) or (N, 1, 28, 28)."""
        return self.fc2(self.drop(torch.relu(self.fc1(x.reshape(x.shape[0], -1)))))

    @torch.no_grad()
    def logits(self, x: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
        """Logits (N, 10), computed in eval mode and in chunks."""
        was_training = self.training
        self.eval()
        try:
            if len(x) == 0:  # torch.cat of no chunks would fail
                return torch.empty(0, 10, device=x.device)
            return torch.cat([self(x[i : i + chunk]) for i in range(0, len(x), chunk)])
        finally:
            self.train(was_training)

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor, chunk: int = 8192, drawn: bool = False) -> torch.Tensor:
        """The probabilities shown (N, 10): softmax of the logits at the run's temperature, in eval mode.

        drawn: the inputs are drawn or uploaded digits, which have a temperature of their own.
        """
        return shown_probabilities(self.logits(x, chunk), self.temperature_for(drawn))

    def temperature_for(self, drawn: bool) -> float:
        """The calibration temperature for MNIST-like images, or (drawn) for drawn and uploaded digits."""
        return self.temperature_drawn if drawn else self.temperature
