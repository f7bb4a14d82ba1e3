"""Train-time augmentation: shapes, determinism, and that each distortion does what it says."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from mnistcore.augment import STYLES, Augmenter, AugmentParams
from mnistcore.config import AUGMENT_STYLES

NONE = AugmentParams(rotation=0, scale=(1, 1), shear=0, translate=0, elastic_alpha=0, thickness_p=0)


def strokes(n: int = 16, seed: int = 0) -> torch.Tensor:
    """n uint8 28x28 images of a random thick L-, T- or box-shaped stroke figure inside the 20x20 box."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 28, 28), np.uint8)
    for k in range(n):
        top, left = rng.integers(5, 9, size=2)
        h, w = rng.integers(12, 17, size=2)
        out[k, top : top + h, left : left + 3] = 255  # vertical bar
        out[k, top + h - 3 : top + h, left : left + w] = 255  # foot
        if k % 2:
            out[k, top : top + 3, left : left + w] = 255  # top bar
    return torch.from_numpy(out)


def centre_of_mass(x: torch.Tensor) -> np.ndarray:
    return np.array([ndimage.center_of_mass(im) for im in x.numpy()])


def bbox_side(im: np.ndarray, threshold: float = 0.3) -> int:
    ys, xs = np.nonzero(im > threshold)
    return int(max(np.ptp(ys), np.ptp(xs)) + 1)


def test_shape_dtype_range_and_inputs() -> None:
    x = strokes()
    out = Augmenter(seed=0)(x)
    assert out.shape == (16, 28, 28) and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert float(out.max()) > 0.9  # strokes survive, not blurred to grey
    # uint8 and float [0, 1] inputs mean the same images
    a = Augmenter(seed=3)(x)
    b = Augmenter(seed=3)(x.float() / 255)
    assert torch.allclose(a, b, atol=1e-5)
    assert Augmenter(seed=0)(x[:0]).shape == (0, 28, 28)


def test_rejects_wrong_shapes() -> None:
    with pytest.raises(ValueError, match="28, 28"):
        Augmenter()(torch.zeros(4, 784, dtype=torch.uint8))
    with pytest.raises(ValueError):
        Augmenter()(torch.zeros(4, 1, 28, 28))


def test_deterministic_for_a_seed_and_independent_of_chunking() -> None:
    x = strokes(40)
    a = Augmenter(seed=7)(x)
    assert torch.equal(a, Augmenter(seed=7)(x))
    assert torch.equal(a, Augmenter(seed=7, chunk=6)(x))  # chunk size only bounds memory
    assert not torch.equal(a, Augmenter(seed=8)(x))
    aug = Augmenter(seed=7)
    first, second = aug(x), aug(x)
    assert not torch.equal(first, second)  # a new draw every call, i.e. every batch or epoch


def test_no_distortion_is_the_identity() -> None:
    x = strokes()
    out = Augmenter(seed=0, params=NONE)(x)
    assert torch.allclose(out, x.float() / 255, atol=1e-5)


def test_default_distortions_change_images_but_keep_them_recognisable() -> None:
    x = strokes(64)
    ref = x.float() / 255
    out = Augmenter(seed=1)(x)
    diff = (out - ref).abs().mean((1, 2))
    assert (diff > 0.01).float().mean() > 0.9  # nearly every image is changed
    # Translation is <= 2 px per axis; rotation, scale and shear about the image centre move an
    # off-centre figure a little more, the elastic field ~1.4 px on average.
    shift = np.abs(centre_of_mass(out) - centre_of_mass(ref))
    assert shift.max() < 6 and np.median(shift) < 2
    # Ink grows at most by scale 1.15^2 times a 3x3 dilation of 3-px strokes (5/3), and shrinks by
    # at most 0.85^2 times a 2x2 erosion (2/3).
    mass = out.sum((1, 2)) / ref.sum((1, 2))
    assert float(mass.min()) > 0.4 and float(mass.max()) < 2.5


def test_scale_grows_and_shrinks_the_digit() -> None:
    x = strokes()
    big = Augmenter(0, AugmentParams(**{**NONE.__dict__, "scale": (1.15, 1.15)}))(x).numpy()
    small = Augmenter(0, AugmentParams(**{**NONE.__dict__, "scale": (0.85, 0.85)}))(x).numpy()
    ref = (x.float() / 255).numpy()
    for b, s, r in zip(big, small, ref, strict=True):
        assert bbox_side(b) > bbox_side(r) > bbox_side(s)
    ratio = big.sum((1, 2)) / ref.sum((1, 2))
    assert np.allclose(ratio, 1.15**2, rtol=0.12)  # area grows with the square of the scale


def test_rotation_turns_a_bar_by_at_most_the_limit() -> None:
    bar = torch.zeros(1, 28, 28, dtype=torch.uint8)
    bar[0, 4:24, 13:15] = 255  # vertical bar through the centre
    params = AugmentParams(**{**NONE.__dict__, "rotation": 12.0})
    angles = []
    for seed in range(30):
        im = Augmenter(seed, params)(bar)[0].numpy()
        ys, xs = np.nonzero(im > 0.5)
        slope = np.polyfit(ys, xs, 1)[0]  # dx/dy of the bar's axis
        angles.append(np.degrees(np.arctan(slope)))
    angles = np.abs(angles)
    assert angles.max() <= 12.5 and angles.max() > 6  # within the limit, and it really turns


def test_translation_moves_the_centre_by_up_to_two_pixels() -> None:
    x = strokes(64)
    params = AugmentParams(**{**NONE.__dict__, "translate": 2.0})
    shift = centre_of_mass(Augmenter(0, params)(x)) - centre_of_mass(x.float())
    assert np.abs(shift).max() <= 2.1
    assert np.abs(shift).max() > 1.5 and (np.abs(shift) < 0.5).mean() < 0.5


def test_elastic_distortion_is_smooth_and_local() -> None:
    x = strokes(64)
    ref = x.float() / 255
    params = AugmentParams(**{**NONE.__dict__, "elastic_alpha": 34.0, "elastic_sigma": 4.0})
    out = Augmenter(2, params)(x)
    corr = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(out.numpy(), ref.numpy(), strict=True)]
    # Strokes move by ~1-2 px (Simard's alpha 34, sigma 4): clearly changed, still the same figure.
    assert 0.4 < np.median(corr) < 0.97
    assert np.abs(centre_of_mass(out) - centre_of_mass(ref)).max() < 2.5
    # A smooth field keeps a straight bar one connected piece (white noise would shred it).
    bar = torch.zeros(8, 28, 28, dtype=torch.uint8)
    bar[:, 5:23, 12:15] = 255
    for im in Augmenter(3, params)(bar).numpy():
        assert ndimage.label(im > 0.3)[1] == 1


def test_thickness_thickens_or_thins() -> None:
    x = strokes(32)
    ref_mass = (x.float() / 255).sum((1, 2))
    thick = AugmentParams(**{**NONE.__dict__, "thickness_p": 1.0, "thicken_share": 1.0})
    thin = AugmentParams(**{**NONE.__dict__, "thickness_p": 1.0, "thicken_share": 0.0})
    assert bool((Augmenter(0, thick)(x).sum((1, 2)) > 1.1 * ref_mass).all())
    thinned = Augmenter(0, thin)(x)
    assert bool((thinned.sum((1, 2)) < 0.9 * ref_mass).all())
    assert bool((thinned.amax((1, 2)) > 0.99).all())  # 3-px strokes thinned, not erased
    some = AugmentParams(**{**NONE.__dict__, "thickness_p": 0.4})
    changed = (Augmenter(0, some)(x) - x.float() / 255).abs().amax((1, 2)) > 1e-6
    assert 0 < int(changed.sum()) < len(x)  # only a share of the images


# ------------------------------------------------------------------ the "draw" style's distortions


def one(n: int = 8) -> torch.Tensor:
    """n plain 1s: a vertical 3-px bar, 18 px tall."""
    x = torch.zeros(n, 28, 28, dtype=torch.uint8)
    x[:, 5:23, 13:16] = 255
    return x


def only(**changes: object) -> AugmentParams:
    return AugmentParams(**{**NONE.__dict__, **changes})


def test_mnist_style_is_the_original_and_its_draws_are_unchanged_by_the_new_fields() -> None:
    assert STYLES["mnist"] == AugmentParams()
    assert set(STYLES) == set(AUGMENT_STYLES)
    # The new distortions draw no random numbers when off: a run of the "mnist" style reproduces.
    x = strokes(20)
    explicit = AugmentParams(aspect=(1.0, 1.0), gap_p=0.0, blur_p=0.0, one_flag_p=0.0, seven_bar_p=0.0)
    assert torch.equal(Augmenter(5)(x), Augmenter(5, explicit)(x))


def test_aspect_stretches_the_width_only() -> None:
    x = strokes(16)
    wide = Augmenter(0, only(aspect=(1.3, 1.3)))(x).numpy()
    narrow = Augmenter(0, only(aspect=(0.7, 0.7)))(x).numpy()
    ref = (x.float() / 255).numpy()

    def extent(im: np.ndarray, axis: int) -> int:
        idx = np.nonzero((im > 0.3).any(axis))[0]
        return int(idx[-1] - idx[0] + 1)

    for w, n, r in zip(wide, narrow, ref, strict=True):
        assert extent(w, 0) > extent(r, 0) > extent(n, 0)  # columns spanned
        assert abs(extent(w, 1) - extent(r, 1)) <= 1 and abs(extent(n, 1) - extent(r, 1)) <= 1  # rows


def test_gaps_blur_then_peak_is_one() -> None:
    x = strokes(32)
    ref = x.float() / 255
    gapped = Augmenter(0, only(gap_p=1.0, gap_radius=1.5))(x)
    lost = ref.sum((1, 2)) - gapped.sum((1, 2))
    assert bool((lost > 3).all()) and bool((lost < 15).all())  # a disc of ~7 px of ink, never the digit
    blurred = Augmenter(0, only(blur_p=1.0, blur_sigma=(1.0, 1.0)))(x)
    assert torch.allclose(blurred.sum((1, 2)), ref.sum((1, 2)), rtol=0.02)  # ink spread, not lost
    assert bool((blurred.amax((1, 2)) < 0.95).all())
    lifted = Augmenter(0, only(blur_p=1.0, blur_sigma=(1.0, 1.0), peak_one=True))(x)
    assert torch.allclose(lifted.amax((1, 2)), torch.ones(32))  # as prepare_digit scales a drawing
    none = Augmenter(0, only(blur_p=1.0, blur_sigma=(1.0, 1.0)))(torch.zeros(2, 28, 28, dtype=torch.uint8))
    assert float(none.abs().max()) == 0.0
    half = Augmenter(0, only(blur_p=0.5))(x)
    changed = (half - ref).abs().amax((1, 2)) > 1e-6
    assert 0 < int(changed.sum()) < len(x)  # only a share of the images


def test_flags_and_bases_go_on_ones_and_bars_on_sevens_only() -> None:
    x = one(8)
    labels = torch.full((8,), 1)
    flagged = Augmenter(0, only(one_flag_p=1.0))(x, labels).numpy()
    for im in flagged:
        ys, xs = np.nonzero(im > 0.5)
        top = ys < 10
        assert xs[top].min() <= 11  # ink reaches left of the bar near the top: a flag
        assert xs[ys > 18].min() >= 12  # the foot is untouched
    based = Augmenter(0, only(one_base_p=1.0))(x, labels).numpy()
    for im in based:
        ys, xs = np.nonzero(im > 0.5)
        assert np.ptp(xs[ys >= 20]) >= 5 and np.ptp(xs[ys < 18]) <= 3  # wide at the foot only
    sevens = Augmenter(0, only(seven_bar_p=1.0))(x, torch.full((8,), 7)).numpy()
    assert all(np.ptp(np.nonzero(im[12:16] > 0.5)[1]) >= 5 for im in sevens)  # a bar halfway down
    others = Augmenter(0, only(one_flag_p=1.0, one_base_p=0.0, seven_bar_p=1.0))(x, torch.full((8,), 4))
    assert torch.allclose(others, x.float() / 255, atol=1e-5)  # a 4 gets none of them
    with pytest.raises(ValueError, match="label"):
        Augmenter(0, only(one_flag_p=1.0))(x)


def test_draw_style_is_deterministic_and_keeps_digits_whole() -> None:
    x = strokes(40)
    labels = torch.arange(40) % 10
    a = Augmenter(7, STYLES["draw"])(x, labels)
    assert torch.equal(a, Augmenter(7, STYLES["draw"], chunk=6)(x, labels))
    assert float(a.min()) >= 0 and torch.allclose(a.amax((1, 2)), torch.ones(40))
    corr = [np.corrcoef(p.ravel(), r.ravel())[0, 1] for p, r in zip(a.numpy(), x.float().numpy(), strict=True)]
    assert np.median(corr) > 0.3  # distorted, still the same figure
