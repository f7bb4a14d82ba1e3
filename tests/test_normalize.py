"""Input normalisation: the exact formula, and one definition that every consumer goes through."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import mnistcore
from mnistcore.evaluate import evaluate
from mnistcore.model import ShallowNet
from mnistcore.normalize import MEAN, STD, normalize
from mnistcore.preprocess import PreparedDigit

PACKAGE = Path(mnistcore.__file__).parent
# The package re-exports the function under the module's name, so reach the module itself.
normalize_mod = importlib.import_module("mnistcore.normalize")


def test_constants_are_mnists_train_statistics() -> None:
    # The well-known torchvision values (checked against the real data in the slow tests).
    assert (MEAN, STD) == (0.1307, 0.3081)


def test_uint8_formula_and_shape() -> None:
    images = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = normalize(images)
    assert out.shape == (5, 784) and out.dtype == torch.float32
    expected = ((images.numpy().astype(np.float64) / 255.0 - MEAN) / STD).reshape(5, 784)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6, atol=1e-6)
    assert out[0, 0].item() == pytest.approx(((images[0, 0, 0].item() / 255) - 0.1307) / 0.3081, abs=1e-6)


def test_black_and_white_pixels() -> None:
    images = torch.tensor([[[0] * 28] * 28, [[255] * 28] * 28], dtype=torch.uint8)
    out = normalize(images)
    assert torch.allclose(out[0], torch.full((784,), -MEAN / STD))
    assert torch.allclose(out[1], torch.full((784,), (1 - MEAN) / STD))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_float_input_is_taken_as_0_to_1(dtype: torch.dtype) -> None:
    images = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    out = normalize(images.to(dtype) / 255.0)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, normalize(images), rtol=1e-6, atol=1e-6)


def test_standardises_data_with_those_statistics() -> None:
    # Pixels drawn with mean MEAN and std STD (in [0, 1]) come out with mean ~0 and std ~1.
    gen = torch.Generator().manual_seed(2)
    pixels = (MEAN + STD * torch.randn(2000, 28, 28, generator=gen, dtype=torch.float64)).float()
    out = normalize(pixels)
    assert abs(out.mean().item()) < 0.01
    assert abs(out.std().item() - 1) < 0.01


def test_constants_are_defined_only_in_normalize() -> None:
    literals = re.compile(r"0\.1307|0\.3081|0\.13066|0\.30810")
    offenders = [p.name for p in PACKAGE.glob("*.py") if p.name != "normalize.py" and literals.search(p.read_text())]
    assert offenders == [], f"normalisation constants duplicated in {offenders}; import mnistcore.normalize instead"


def test_consumers_go_through_the_one_definition(monkeypatch: pytest.MonkeyPatch) -> None:
    # Change the constants in their one home: evaluation and drawn digits must follow.
    monkeypatch.setattr(normalize_mod, "MEAN", 0.5)
    monkeypatch.setattr(normalize_mod, "STD", 0.25)
    torch.manual_seed(0)
    model = ShallowNet(16).eval()
    images = torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    expected = torch.softmax(model(((images.float() / 255 - 0.5) / 0.25).reshape(4, 784)), 1)
    np.testing.assert_allclose(
        evaluate(model, images, torch.zeros(4, dtype=torch.long)).probabilities,
        expected.detach().numpy(),
        rtol=1e-5,
        atol=1e-6,
    )
    pixels = np.linspace(0, 1, 784, dtype=np.float32).reshape(28, 28)
    np.testing.assert_allclose(
        PreparedDigit(pixels).tensor().numpy(), ((pixels - 0.5) / 0.25).reshape(1, 784), rtol=1e-6, atol=1e-6
    )
