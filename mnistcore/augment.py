"""Train-time distortions of MNIST digits, batched as tensor ops and deterministic for a seed.

Each image gets a random affine map (rotation, scale, shear, translation) composed with an elastic
distortion (Simard et al. 2003: a random displacement field smoothed by a Gaussian), applied in one
`grid_sample`, and a random share of images gets thicker or thinner strokes (grey dilation or
erosion, blended by a random amount so the change is not always a whole pixel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

SIZE = 28
_COORDS = (torch.arange(SIZE, dtype=torch.float32) * 2 + 1) / SIZE - 1  # pixel centres, align_corners=False


@dataclass(frozen=True)
class AugmentParams:
    """How strong each distortion is (defaults tuned for 28x28 MNIST digits)."""

    rotation: float = 12.0  # max |rotation| in degrees
    scale: tuple[float, float] = (0.85, 1.15)  # digit size factor range (log-uniform)
    shear: float = 0.15  # max |horizontal shear| (x += shear * y)
    translate: float = 2.0  # max |shift| in px along each axis
    elastic_alpha: float = 34.0  # Simard et al.'s alpha for a U(-1, 1) field smoothed with sigma
    # Simard's sigma 4 px wiggles strokes (~1.4 px rms); on the 784-128-10 net that cost ~0.3 points of
    # test accuracy and ~0.6 on redrawn digits. At 8 px the field bends whole strokes (~0.7 px rms) and
    # matched or beat no elastic distortion on every held-out family (bench/DRAWN_RESULTS.md).
    elastic_sigma: float = 8.0  # px; smaller gives wigglier strokes
    elastic_p: float = 1.0  # share of images given an elastic distortion
    thickness_p: float = 0.4  # share of images whose stroke width is changed
    thicken_share: float = 0.5  # of those, the share thickened (the rest are thinned)


def _basis(params: AugmentParams) -> torch.Tensor:
    """(28, m) matrix B with grid = B @ coeffs @ B.T per image and coordinate.

    The first columns are Gaussian bumps on a lattice reaching past the border: white noise on that
    lattice convolved with a Gaussian is Simard's smoothed field, evaluated exactly at every pixel
    (a lattice step no larger than sigma keeps it statistically the same as smoothing per pixel).
    The last two columns, 1 and x, let the same product carry the affine map, so one pair of small
    matrix products builds the whole sampling grid.
    """
    sigma = params.elastic_sigma
    spacing = max(sigma, 2.0)  # a wider lattice would leave ripples between the bumps
    half = math.ceil((SIZE / 2 + sigma) / spacing)
    centres = (SIZE - 1) / 2 + spacing * torch.arange(-half, half + 1, dtype=torch.float32)
    pix = torch.arange(SIZE, dtype=torch.float32)
    bumps = torch.exp(-0.5 * ((pix[:, None] - centres[None, :]) / sigma) ** 2)
    # Unit rows give the same displacement spread at every pixel; the factor matches the spread of
    # U(-1, 1) noise smoothed per pixel and scaled by alpha (std 1/sqrt(3) * alpha / (2 sqrt(pi) sigma)),
    # converted to grid_sample's [-1, 1] units.
    gain = math.sqrt(max(params.elastic_alpha, 0.0) / (2 * math.sqrt(math.pi) * sigma) * 2 / SIZE)
    bumps = bumps / bumps.norm(dim=1, keepdim=True) * gain
    return torch.cat([bumps, torch.ones(SIZE, 1), _COORDS[:, None]], 1)


class Augmenter:
    """Callable: uint8 (B, 28, 28) or float [0, 1] images -> distorted float [0, 1] (B, 28, 28)."""

    def __init__(self, seed: int = 0, params: AugmentParams | None = None, chunk: int = 8192) -> None:
        self.params = params or AugmentParams()
        self.chunk = chunk  # bounds memory when called on a whole epoch
        self.generator = torch.Generator().manual_seed(seed)
        self._basis = _basis(self.params)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Distort a batch; random draws come from this augmenter's own generator."""
        if images.ndim != 3 or tuple(images.shape[1:]) != (SIZE, SIZE):
            raise ValueError(f"expected images of shape (B, 28, 28), got {tuple(images.shape)}")
        b = images.shape[0]
        # All random numbers are drawn up front on the CPU generator, so results depend only on the
        # seed and the call sequence, never on the chunk size or the device.
        coeffs = self._coefficients(b)
        thick = self._thickness(b)
        dev = images.device
        basis = self._basis.to(dev)
        out = torch.empty(images.shape, dtype=torch.float32, device=dev)
        for i in range(0, b, self.chunk):
            j = min(b, i + self.chunk)
            x = images[i:j].to(torch.float32)
            if images.dtype == torch.uint8:
                x = x / 255.0
            x = _stroke(x, thick[i:j].to(dev))
            out[i:j] = F.grid_sample(
                x.unsqueeze(1),
                _grid(basis, coeffs[i:j].to(dev)),
                mode="bilinear",
                padding_mode="zeros",
                align_corners=False,
            )[:, 0]
        return out.clamp_(0.0, 1.0)

    def _uniform(self, n: int, low: float, high: float) -> torch.Tensor:
        return torch.rand(n, generator=self.generator) * (high - low) + low

    def _coefficients(self, b: int) -> torch.Tensor:
        """Per image and coordinate (x, y), the (m, m) coefficients of the grid in the basis."""
        m = self._basis.shape[1]
        n = m - 2
        coeffs = torch.zeros(b, 2, m, m)
        noise = coeffs[:, :, :n, :n]
        noise.uniform_(-1.0, 1.0, generator=self.generator)
        elastic = torch.rand(b, generator=self.generator) < self.params.elastic_p
        if not bool(elastic.all()):
            noise.mul_(elastic.view(b, 1, 1, 1))
        theta = self._affine(b)
        # grid_c(y, x) = theta_c0 * x + theta_c1 * y + theta_c2, written in the (1, coordinate) columns.
        coeffs[:, :, n, n + 1] = theta[:, :, 0]
        coeffs[:, :, n + 1, n] = theta[:, :, 1]
        coeffs[:, :, n, n] = theta[:, :, 2]
        return coeffs

    def _affine(self, b: int) -> torch.Tensor:
        """Per-image (2, 3) maps from output to input normalised coordinates."""
        p = self.params
        angle = self._uniform(b, -p.rotation, p.rotation) * (math.pi / 180)
        scale = torch.exp(self._uniform(b, math.log(p.scale[0]), math.log(p.scale[1])))
        shear = self._uniform(b, -p.shear, p.shear)
        shift = self._uniform(2 * b, -p.translate, p.translate).reshape(b, 2) * (2.0 / SIZE)
        cos, sin = torch.cos(angle), torch.sin(angle)
        # The digit moves by M = scale * R @ Shear plus shift; grid_sample needs the inverse map.
        m = (
            torch.stack(
                [
                    torch.stack([cos, cos * shear - sin], 1),
                    torch.stack([sin, sin * shear + cos], 1),
                ],
                1,
            )
            * scale[:, None, None]
        )
        det = m[:, 0, 0] * m[:, 1, 1] - m[:, 0, 1] * m[:, 1, 0]
        inv = (
            torch.stack(
                [
                    torch.stack([m[:, 1, 1], -m[:, 0, 1]], 1),
                    torch.stack([-m[:, 1, 0], m[:, 0, 0]], 1),
                ],
                1,
            )
            / det[:, None, None]
        )
        return torch.cat([inv, -(inv @ shift.unsqueeze(2))], 2)

    def _thickness(self, b: int) -> torch.Tensor:
        """Per-image stroke change in [-1, 1]: >0 thickens, <0 thins, 0 leaves as is."""
        p = self.params
        chosen = torch.rand(b, generator=self.generator) < p.thickness_p
        sign = torch.where(torch.rand(b, generator=self.generator) < p.thicken_share, 1.0, -1.0)
        return torch.where(chosen, sign * self._uniform(b, 0.3, 1.0), torch.zeros(b))


def _grid(basis: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """Sampling grids (B, 28, 28, 2) = basis @ coeffs @ basis.T, laid out for grid_sample."""
    b, _, m, _ = coeffs.shape
    half = (coeffs @ basis.T).permute(0, 2, 3, 1).reshape(b, m, 2 * SIZE)  # (b, i, x*2 + c)
    return (basis @ half).view(b, SIZE, SIZE, 2)


def _dilate(x: torch.Tensor) -> torch.Tensor:
    """3x3 grey dilation of (B, H, W), as two 1-D maxima (cheaper than max_pool2d on CPU)."""
    p = F.pad(x, (1, 1, 1, 1))
    h = torch.maximum(torch.maximum(p[..., :-2], p[..., 1:-1]), p[..., 2:])
    return torch.maximum(torch.maximum(h[..., :-2, :], h[..., 1:-1, :]), h[..., 2:, :])


def _erode(x: torch.Tensor) -> torch.Tensor:
    """2x2 grey erosion of (B, H, W): a 3x3 one would wipe out MNIST's thinner strokes."""
    p = F.pad(x, (0, 1, 0, 1), value=1.0)
    h = torch.minimum(p[..., :-1], p[..., 1:])
    return torch.minimum(h[..., :-1, :], h[..., 1:, :])


def _stroke(x: torch.Tensor, thick: torch.Tensor) -> torch.Tensor:
    """Blend the chosen images toward their dilation (thick > 0) or erosion (thick < 0)."""
    for sign, op in ((1, _dilate), (-1, _erode)):
        idx = torch.nonzero(thick * sign > 0).flatten()
        if len(idx):
            sub = x[idx]
            t = (thick[idx] * sign).view(-1, 1, 1)
            x = x.index_copy(0, idx, sub + t * (op(sub) - sub))
    return x
