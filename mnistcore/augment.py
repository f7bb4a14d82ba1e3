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
BLUR_LEVELS = 6  # distinct blur strengths (see _soften)
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
    # Width stretch factor range (log-uniform), applied before the rotation: people draw digits narrower
    # or wider than MNIST's writers; (1, 1) leaves the shape's proportions alone.
    aspect: tuple[float, float] = (1.0, 1.0)
    # Share of images with a short piece of stroke rubbed out (a disc of gap_radius px around a random
    # ink pixel): an open 0, 6, 8 or 9, a 4 whose top is open, a broken stroke. 0 = never.
    gap_p: float = 0.0
    gap_radius: float = 1.5
    # Share of images softened by a Gaussian blur of sigma drawn from blur_sigma (px): a soft or low-resolution
    # pen, as in a small drawing scaled up. 0 = never.
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.5, 1.2)
    # Rescale each distorted image so its brightest pixel is 1, as prepare_digit does with a drawing (a
    # thinned or blurred MNIST digit otherwise turns grey, which no prepared drawing is).
    peak_one: bool = False
    # Ways of writing some digits that MNIST's (mostly American) writers rarely used, added as a pen stroke
    # to images of that digit: the share of 1s given a flag at the top, of 1s given a base, and of 7s given
    # a bar across. 0 = never (and then the labels are not needed).
    one_flag_p: float = 0.0
    one_base_p: float = 0.0
    seven_bar_p: float = 0.0


# Named sets of distortions (TrainConfig.augment_style). "mnist" is the original set, tuned on MNIST's own
# test digits. "draw" mimics what changes when a person draws on a canvas, once prepare_digit has fixed the
# size, position and stroke width: a stronger slant and rotation, narrower or wider digits, bolder strokes,
# bent strokes and open loops (picked on the first half of load_digits' writers: bench/draw_preset.py).
STYLES: dict[str, AugmentParams] = {
    "mnist": AugmentParams(),
    "draw": AugmentParams(
        rotation=15.0,
        shear=0.3,
        aspect=(0.7, 1.3),
        thickness_p=0.6,
        thicken_share=1.0,
        gap_p=0.15,
        blur_p=0.3,
        peak_one=True,
        one_flag_p=0.5,
        one_base_p=0.15,
        seven_bar_p=0.25,
    ),
}


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

    @property
    def needs_labels(self) -> bool:
        """True when some distortion depends on the digit (the caller must pass the labels)."""
        p = self.params
        return p.one_flag_p > 0 or p.one_base_p > 0 or p.seven_bar_p > 0

    def __call__(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Distort a batch (labels (B,): only for the digit-specific strokes); draws come from our own generator."""
        if images.ndim != 3 or tuple(images.shape[1:]) != (SIZE, SIZE):
            raise ValueError(f"expected images of shape (B, 28, 28), got {tuple(images.shape)}")
        if self.needs_labels and (labels is None or labels.shape != images.shape[:1]):
            raise ValueError("these distortions add strokes to some digits: pass one label per image")
        b = images.shape[0]
        # All random numbers are drawn up front on the CPU generator, so results depend only on the
        # seed and the call sequence, never on the chunk size or the device.
        coeffs = self._coefficients(b)
        thick = self._thickness(b)
        gaps = self._gaps(b)
        blur = self._blur(b)
        strokes = self._extra_strokes(b, labels) if self.needs_labels and labels is not None else None
        dev = images.device
        basis = self._basis.to(dev)
        out = torch.empty(images.shape, dtype=torch.float32, device=dev)
        for i in range(0, b, self.chunk):
            j = min(b, i + self.chunk)
            x = images[i:j].to(torch.float32)
            if images.dtype == torch.uint8:
                x = x / 255.0
            if strokes is not None:
                x = _add_strokes(x, strokes[i:j].to(dev))
            x = _stroke(x, thick[i:j].to(dev))
            if gaps is not None:
                x = _rub_out(x, gaps[i:j].to(dev), self.params.gap_radius)
            if blur is not None:
                x = _soften(x, blur[i:j].to(dev))
            out[i:j] = F.grid_sample(
                x.unsqueeze(1),
                _grid(basis, coeffs[i:j].to(dev)),
                mode="bilinear",
                padding_mode="zeros",
                align_corners=False,
            )[:, 0]
        if self.params.peak_one:
            out /= out.amax((1, 2), keepdim=True).clamp_(min=1e-3)
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
        # The digit moves by M = scale * R @ Shear @ diag(aspect, 1) plus shift; grid_sample needs the inverse.
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
        if p.aspect != (1.0, 1.0):  # drawn only when used: the "mnist" style's random stream stays as it was
            aspect = torch.exp(self._uniform(b, math.log(p.aspect[0]), math.log(p.aspect[1])))
            m[:, :, 0] *= aspect[:, None]
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

    def _gaps(self, b: int) -> torch.Tensor | None:
        """Per image, where in its ink a piece is rubbed out (a share in [0, 1)), or -1 for none; None if unused."""
        if self.params.gap_p <= 0:
            return None  # no draws: the "mnist" style's random stream stays as it was
        chosen = torch.rand(b, generator=self.generator) < self.params.gap_p
        where = torch.rand(b, generator=self.generator)
        return torch.where(chosen, where, torch.full((b,), -1.0))

    def _extra_strokes(self, b: int, labels: torch.Tensor) -> torch.Tensor:
        """Per image, (kind, length, angle, width) of a stroke to add; kind 0 = none, 1 = flag, 2 = base, 3 = bar.

        The draws are made for every image whatever its label, so they depend only on the seed and the call
        sequence.
        """
        p = self.params
        u = torch.rand(b, generator=self.generator)
        length = self._uniform(b, 0.0, 1.0)
        angle = self._uniform(b, 15.0, 50.0) * (math.pi / 180)
        width = self._uniform(b, 1.6, 2.6)
        lab = labels.cpu()
        flag = (lab == 1) & (u < p.one_flag_p)
        base = (lab == 1) & (u >= p.one_flag_p) & (u < p.one_flag_p + p.one_base_p)
        bar = (lab == 7) & (u < p.seven_bar_p)
        kind = flag * 1.0 + base * 2.0 + bar * 3.0
        return torch.stack([kind, length, angle, width], 1)

    def _blur(self, b: int) -> torch.Tensor | None:
        """Per image, the blur's sigma in px (0 = none); None if unused."""
        p = self.params
        if p.blur_p <= 0:
            return None  # no draws: the "mnist" style's random stream stays as it was
        chosen = torch.rand(b, generator=self.generator) < p.blur_p
        # One of BLUR_LEVELS sigmas evenly spread over the range: images sharing one are blurred together.
        level = torch.randint(BLUR_LEVELS, (b,), generator=self.generator) / (BLUR_LEVELS - 1)
        sigma = p.blur_sigma[0] + (p.blur_sigma[1] - p.blur_sigma[0]) * level
        return torch.where(chosen, sigma, torch.zeros(b))

    def _thickness(self, b: int) -> torch.Tensor:
        """Per-image stroke change in [-1, 1]: >0 thickens, <0 thins, 0 leaves as is."""
        p = self.params
        chosen = torch.rand(b, generator=self.generator) < p.thickness_p
        sign = torch.where(torch.rand(b, generator=self.generator) < p.thicken_share, 1.0, -1.0)
        return torch.where(chosen, sign * self._uniform(b, 0.3, 1.0), torch.zeros(b))


def _rub_out(x: torch.Tensor, gaps: torch.Tensor, radius: float) -> torch.Tensor:
    """Erase a disc of `radius` px (soft edge) from each image whose gaps[k] >= 0, centred on an ink pixel.

    gaps[k] in [0, 1) picks the pixel by inverse CDF over the ink (> 0.5) pixels, so the draw is made up
    front and the centre depends only on it and the image; images without such ink are left alone.
    """
    chosen = torch.nonzero(gaps >= 0).flatten()
    if not len(chosen):
        return x
    sub = x[chosen]
    weights = (sub.reshape(len(chosen), -1) > 0.5).to(torch.float32)
    total = weights.sum(1)
    cdf = weights.cumsum(1)
    target = (gaps[chosen] * total).unsqueeze(1)
    idx = torch.searchsorted(cdf, target, right=True).squeeze(1).clamp_(max=SIZE * SIZE - 1)
    pix = torch.arange(SIZE, dtype=torch.float32, device=x.device)
    cy, cx = (idx // SIZE).to(torch.float32), (idx % SIZE).to(torch.float32)
    dist = ((pix[None, :, None] - cy[:, None, None]) ** 2 + (pix[None, None, :] - cx[:, None, None]) ** 2).sqrt()
    keep = (dist - radius + 0.5).clamp_(0.0, 1.0)
    keep = torch.where((total > 0).view(-1, 1, 1), keep, torch.ones_like(keep))
    return x.index_copy(0, chosen, sub * keep)


def _segment(p0: torch.Tensor, p1: torch.Tensor, width: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Anti-aliased pen strokes (B, 28, 28) from p0 to p1 ((B, 2) as (row, col)), `width` px wide."""
    pix = torch.arange(SIZE, dtype=torch.float32, device=device)
    py, px = pix.view(1, SIZE, 1), pix.view(1, 1, SIZE)
    d = (p1 - p0).view(-1, 2, 1, 1)
    a = p0.view(-1, 2, 1, 1)
    t = (((py - a[:, 0]) * d[:, 0] + (px - a[:, 1]) * d[:, 1]) / (d**2).sum(1).clamp(min=1e-6)).clamp(0.0, 1.0)
    dist = ((py - a[:, 0] - t * d[:, 0]) ** 2 + (px - a[:, 1] - t * d[:, 1]) ** 2).sqrt()
    return (width.view(-1, 1, 1) / 2 + 0.5 - dist).clamp(0.0, 1.0)


def _add_strokes(x: torch.Tensor, strokes: torch.Tensor) -> torch.Tensor:
    """Draw the chosen extra strokes (see Augmenter._extra_strokes) onto their images, in the digit's own frame.

    A flag runs from the top of a 1's ink down to the left, a base across its foot, a bar across a 7's
    stem halfway down; where each sits is read from the image's ink (> 0.5).
    """
    chosen = torch.nonzero(strokes[:, 0] > 0).flatten()
    if not len(chosen):
        return x
    sub, kind, length, angle, width = x[chosen], *strokes[chosen].unbind(1)
    ink = sub > 0.5
    rows, cols = ink.any(2), ink.any(1)
    pix = torch.arange(SIZE, dtype=torch.float32, device=x.device)
    top = torch.where(rows, pix, torch.full_like(pix, SIZE)).amin(1)
    bottom = torch.where(rows, pix, torch.full_like(pix, -1.0)).amax(1)
    # Each stroke starts on the ink: the mean ink column of its row (the top, the foot, or halfway down).
    row = torch.where(kind == 1, top, torch.where(kind == 2, bottom, (top + bottom) / 2)).clamp(0, SIZE - 1)
    at = ink[torch.arange(len(chosen), device=x.device), row.long()].to(torch.float32)
    col = (at * pix).sum(1) / at.sum(1).clamp(min=1)
    height = (bottom - top).clamp(min=1)
    start = torch.stack([row, col], 1)
    # Flag: 20-35 % of the digit's height, down and to the left; base and bar: 12-22 % to each side.
    flag_len = height * (0.2 + 0.15 * length)
    half = height * (0.12 + 0.1 * length)
    flag_end = start + torch.stack([flag_len * torch.sin(angle), -flag_len * torch.cos(angle)], 1)
    left, right = start - torch.stack([0 * half, half], 1), start + torch.stack([0 * half, half], 1)
    p0 = torch.where((kind == 1).view(-1, 1), start, left)
    p1 = torch.where((kind == 1).view(-1, 1), flag_end, right)
    added = torch.maximum(sub, _segment(p0, p1, width, x.device))
    valid = (cols.any(1)).view(-1, 1, 1)  # a blank image stays blank
    return x.index_copy(0, chosen, torch.where(valid, added, sub))


def _soften(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Gaussian blur of each (28, 28) image by its own sigma (px; 0 leaves it as is), as G @ x @ G.T.

    Images sharing a sigma are blurred together by two plain matrix products (a batched product of
    28x28 matrices per image costs ~10x more); the sigmas come from a few levels (Augmenter._blur).
    """
    pix = torch.arange(SIZE, dtype=torch.float32, device=x.device)
    d2 = (pix[:, None] - pix[None, :]) ** 2
    out = x
    for level in torch.unique(sigma[sigma > 0]).tolist():
        idx = torch.nonzero(sigma == level).flatten()
        g = torch.exp(-0.5 * d2 / level**2)
        g = g / g.sum(1, keepdim=True)
        sub = x[idx] @ g.T  # rows blurred along x
        sub = (sub.transpose(1, 2) @ g.T).transpose(1, 2)  # then along y
        out = out.index_copy(0, idx, sub)
    return out


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
