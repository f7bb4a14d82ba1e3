"""Turn a drawing or photo of a digit into the 28x28 input MNIST's own way (LeCun et al.).

Ink is extracted (opaque dark background, transparent background with ink in alpha, or dark ink on
light paper, measured from the border's level), specks are dropped, the ink is cropped to its bounding
box, scaled so the longer side is 20 px with anti-aliasing, and placed in 28x28 with its centre of
mass at (14, 14). One step MNIST did not need: canvas strokes can be far thinner or thicker than
MNIST's pen, so a stroke width outside MNIST's usual range is moved to the range's edge first (on a
crop scaled to WORK px, by offsetting the outline along its signed distance). bench/drawn_digits.py
measures the whole path on redrawn MNIST test digits; bench/DRAWN_RESULTS.md has the figures.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage

from mnistcore.normalize import normalize

NOTHING_DRAWN = "Nothing drawn: draw a digit."
BOX = 20  # MNIST digits fill a 20x20 box inside the 28x28 image
SIZE = 28
CENTRE = 14.0  # mean centre of mass of MNIST training digits, in pixel-index coordinates
WORK = 80  # the crop's longer side while stroke widths are measured and changed (4x BOX)
MAX_SIDE = 1024  # larger images are first shrunk by an integer factor: same result, bounded time
# Pixels an image may have once decoded. Checked from the header, before decoding: a 31 KB PNG can
# declare 13000x13000 1-bit pixels and take 2 GB and 10 s to decode. 4096x4096 covers screenshots and
# scans; JPEGs (phone photos) are decoded at 1/2, 1/4 or 1/8 scale to fit, so photos of up to 64x this
# many pixels are read (Pillow itself refuses images over 2 x Image.MAX_IMAGE_PIXELS, ~179 MP).
MAX_PIXELS = 4096 * 4096
# Only these decoders run, whatever a file is called: Pillow would otherwise try every format it knows,
# EPS (through Ghostscript) included. (Phone JPEGs with a second image open as "MPO" through "JPEG".)
FORMATS = ("PNG", "JPEG")
INK_FLOOR = 0.12  # on paper or noisy photos, ink weaker than this is grain, shadow or JPEG noise
CROP_THRESHOLD = 0.05  # ink level that counts for the bounding box (MNIST boxes count every grey pixel)
# Stroke width (2 * area / perimeter of the ink > 0.5 mask, at 20 px scale) of MNIST training digits
# as this module measures it: median 2.5, 10-90 % 1.8-3.5. Widths outside the band are moved to its
# nearest edge. The band sits above MNIST's median (about its 65th-91st percentile) because a canvas
# stroke is uniform while MNIST's pen varies, and the network reads a uniform stroke best when it is a
# little bolder: on redrawn test digits (2.8, 3.6) beat (2.3, 3.4) by 0.2-0.3 points on the sample it
# was picked on and on a second, independent one; (2.3, 3.0) lost 0.2 more, and no normalisation ~1.
STROKE_BAND = (2.8, 3.6)


class ImageReadError(ValueError):
    """The input is not an image we can read (not PNG/JPEG, damaged, or too many pixels); says which."""


def _too_large(width: int, height: int) -> ImageReadError:
    return ImageReadError(
        f"image too large: {width}x{height} pixels; at most {MAX_PIXELS // 1_000_000} million "
        f"pixels (e.g. {math.isqrt(MAX_PIXELS)}x{math.isqrt(MAX_PIXELS)}). Crop or shrink it."
    )


def _open(source: str | os.PathLike | bytes | bytearray) -> Image.Image:
    """Open a PNG or JPEG (header only), refuse too many pixels, then decode; ImageReadError otherwise."""
    fp = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    name = "the image" if isinstance(source, bytes | bytearray) else source  # never the bytes themselves
    try:
        img = Image.open(fp, formats=FORMATS)
    except UnidentifiedImageError:
        raise ImageReadError("not a PNG or JPEG image (only PNG and JPEG are read, whatever the file's name)") from None
    except Image.DecompressionBombError:
        raise ImageReadError("image too large: Pillow refuses to decode that many pixels") from None
    except FileNotFoundError:
        raise ImageReadError(f"no such file: {name}") from None
    except OSError as exc:  # a directory, no permission, an I/O error
        raise ImageReadError(f"cannot read {name}: {exc.strerror or exc}") from None
    width, height = img.size
    if width * height > MAX_PIXELS and img.format in ("JPEG", "MPO"):
        # JPEG decodes at 1/2, 1/4 or 1/8 scale for the price of the smaller image: the digit needs no more.
        scale = next((k for k in (2, 4, 8) if (width // k) * (height // k) <= MAX_PIXELS), 8)
        img.draft(img.mode, (-(-width // scale), -(-height // scale)))
    if img.size[0] * img.size[1] > MAX_PIXELS:
        img.close()
        raise _too_large(width, height)
    try:
        img.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"damaged or unreadable {img.format} image: {exc}") from None
    return img


def _shrink(arr: np.ndarray) -> np.ndarray:
    """An image with no side over MAX_SIDE, shrunk by an integer factor (box filter: same digit, less time)."""
    factor = -(-max(arr.shape[:2]) // MAX_SIDE)
    return np.asarray(Image.fromarray(arr).reduce(factor)) if factor > 1 else arr


@dataclass(frozen=True)
class PreparedDigit:
    """The model input made from a drawing, or the reason there is none."""

    pixels: np.ndarray | None  # (28, 28) float32 in [0, 1], white ink on black: what the model sees
    message: str = ""  # why there is no input (e.g. nothing drawn); empty when pixels is set

    @property
    def empty(self) -> bool:
        """True when there is nothing to predict."""
        return self.pixels is None

    def tensor(self) -> torch.Tensor:
        """The normalised model input, shape (1, 784)."""
        if self.pixels is None:
            raise ValueError(self.message or NOTHING_DRAWN)
        return normalize(torch.from_numpy(self.pixels)[None])


def load_image(source: str | os.PathLike | bytes | Image.Image | np.ndarray) -> np.ndarray:
    """Read a PNG/JPEG path or bytes, a PIL image or an array into a uint8 array (H, W), (H, W, 3) or (H, W, 4).

    Files and bytes must be PNG or JPEG content, of at most MAX_PIXELS pixels (checked before decoding);
    anything else raises ImageReadError with the reason.
    """
    if isinstance(source, np.ndarray):
        arr = source
        if arr.ndim >= 2 and arr.shape[0] * arr.shape[1] > MAX_PIXELS:
            raise _too_large(arr.shape[1], arr.shape[0])
    else:
        if isinstance(source, Image.Image):
            if source.size[0] * source.size[1] > MAX_PIXELS:
                raise _too_large(*source.size)
            img = source
        else:
            img = _open(source)
        try:
            img = ImageOps.exif_transpose(img) or img  # phone photos store their rotation in EXIF
        except (OSError, ValueError, SyntaxError) as exc:
            raise ImageReadError(f"not a readable image: {exc}") from None
        if img.mode not in ("L", "RGB", "RGBA", "I", "F") and not img.mode.startswith("I;16"):
            img = img.convert("RGBA" if "A" in img.getbands() or "transparency" in img.info else "RGB")
        arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)) or min(arr.shape[:2]) < 1:
        raise ImageReadError(f"expected a greyscale, RGB or RGBA image, got an array of shape {arr.shape}")
    if arr.dtype != np.uint8:
        a = np.nan_to_num(arr.astype(np.float64))
        peak = float(a.max())
        # Floats in [0, 1], 8-bit values in a wider type, or 16-bit greyscale (e.g. PNG 'I;16').
        scale = 255.0 if peak <= 1.0 else 1.0 if peak <= 255.0 else 255.0 / max(65535.0, peak)
        arr = np.clip(a * scale, 0, 255).round().astype(np.uint8)
    return arr


def extract_ink(arr: np.ndarray) -> np.ndarray:
    """Ink intensity (H, W) in [0, 1], whatever the background: dark, transparent or light paper."""
    if arr.ndim == 3 and arr.shape[2] == 4 and arr[..., 3].min() < 250:
        return arr[..., 3].astype(np.float32) * np.float32(1 / 255)  # transparent: ink lives in alpha
    # Pillow's luma conversion (ITU-R 601 weights, alpha ignored) is ~10x faster than a float matmul.
    grey8 = np.asarray(Image.fromarray(arr).convert("L")) if arr.ndim == 3 else arr
    h, w = grey8.shape
    band = max(1, min(h, w) // 25)
    border = np.concatenate(
        [
            grey8[:band].ravel(),
            grey8[-band:].ravel(),
            grey8[band:-band, :band].ravel(),
            grey8[band:-band, -band:].ravel(),
        ]
    )
    counts = np.bincount(border, minlength=256)
    bg = int(np.searchsorted(np.cumsum(counts), (len(border) + 1) // 2))  # the border's median level
    grey = grey8.astype(np.float32)
    # Light paper with dark ink is inverted; either way ink is measured from the background level.
    ink = (bg - grey) * np.float32(1 / max(bg, 1)) if bg > 127 else (grey - bg) * np.float32(1 / max(255 - bg, 1))
    if 2 * counts[bg] > len(border):
        return np.clip(ink, 0.0, 1.0)  # most of the border exactly one level: a clean digital canvas
    # Paper grain, shadows and JPEG noise sit in the bottom of the range.
    return np.clip((ink - INK_FLOOR) * np.float32(1 / (1 - INK_FLOOR)), 0.0, 1.0)


def _clean(ink: np.ndarray) -> np.ndarray:
    """Drop specks: connected ink pieces holding under 3 % of all ink."""
    labels, n = ndimage.label(ink > 0.2)
    if n <= 1:
        return ink
    mass = ndimage.sum(ink, labels, index=np.arange(1, n + 1))
    keep = np.concatenate([[False], mass >= 0.03 * mass.sum()])
    return ink * keep[labels]


def _resize(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Anti-aliased resize of a float image (Pillow's bilinear filter widens its support when shrinking)."""
    pil = Image.fromarray(np.ascontiguousarray(img, dtype=np.float32), mode="F")
    return np.asarray(pil.resize((max(1, width), max(1, height)), Image.Resampling.BILINEAR), dtype=np.float32)


def _crop(ink: np.ndarray, threshold: float) -> np.ndarray | None:
    rows = np.flatnonzero((ink > threshold).any(1))
    if len(rows) == 0:
        return None
    cols = np.flatnonzero((ink[rows[0] : rows[-1] + 1] > threshold).any(0))
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width in px of an ink image: 2 * area / perimeter of its ink > 0.5 mask."""
    mask = ink > 0.5
    # Perimeter = ink pixels with a 4-neighbour outside the ink (cheaper than binary_erosion).
    edge = mask.copy()
    edge[1:-1, 1:-1] &= ~(mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:])
    return 2.0 * float(mask.sum()) / max(int(edge.sum()), 1)


def _offset(crop: np.ndarray, delta: float) -> np.ndarray:
    """Grow (delta > 0) or shrink every stroke edge by delta px, anti-aliased like a pen's edge."""
    pad = int(np.ceil(max(delta, 0.0))) + 2
    mask = np.pad(crop > 0.5, pad)
    # Signed distance to the ink's edge (> 0 inside): moving the 0.5 level set by delta is an exact
    # disk dilation or erosion, at two distance transforms' cost whatever the radius.
    inside = ndimage.distance_transform_edt(mask)
    outside = ndimage.distance_transform_edt(~mask)
    signed = np.where(mask, inside - 0.5, 0.5 - outside)
    return np.clip(signed + delta + 0.5, 0.0, 1.0).astype(np.float32)


def _normalise_stroke(crop: np.ndarray) -> np.ndarray:
    """Thicken or thin the strokes of a crop (longer side WORK px) into MNIST's range."""
    width = stroke_width(crop)
    side = max(crop.shape)
    scaled = width * BOX / side
    target = min(max(scaled, STROKE_BAND[0]), STROKE_BAND[1])
    if target == scaled:
        return crop
    # Offsetting the edges by delta grows the box by 2 delta too, so solve
    # (width + 2 delta) / (side + 2 delta) = target / BOX for delta.
    delta = (target * side / BOX - width) / (2 * (1 - target / BOX))
    delta = max(delta, -0.35 * width)  # never erode a stroke away
    if abs(delta) < 0.25:  # under a tenth of a pixel at 28x28
        return crop
    return _offset(crop, delta)


def _place(crop: np.ndarray) -> np.ndarray:
    """Scale a crop so its longer side spans BOX px and put its centre of mass at CENTRE, anti-aliased.

    MNIST shifted by whole pixels, so its centres of mass scatter over +-0.5 px; placing to a fraction
    of a pixel instead puts every digit at the middle of that scatter, and makes the output move
    smoothly, not in 1-px jumps, as a drawing changes (worth ~0.25 points on redrawn test digits).
    """
    s = max(crop.shape) / BOX  # crop px per output px
    h, w = crop.shape
    pad = int(np.ceil(SIZE * s)) + 2  # the resize box may reach past the crop; Pillow needs it inside
    cy, cx = ndimage.center_of_mass(crop)
    # Output pixel j (centre j + 0.5) samples the padded crop at y0 + (j + 0.5) * s; the centre of mass
    # (index cy, so at cy + 0.5) must land on CENTRE + 0.5. A lopsided digit is kept inside the frame.
    y0 = float(np.clip(pad + cy + 0.5 - (CENTRE + 0.5) * s, pad + h - SIZE * s, pad))
    x0 = float(np.clip(pad + cx + 0.5 - (CENTRE + 0.5) * s, pad + w - SIZE * s, pad))
    src = Image.fromarray(np.pad(crop, pad).astype(np.float32), mode="F")
    out = src.resize((SIZE, SIZE), Image.Resampling.BILINEAR, box=(x0, y0, x0 + SIZE * s, y0 + SIZE * s))
    return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)


def decode_upload(data: bytes | str | os.PathLike) -> np.ndarray:
    """Decode an uploaded PNG/JPEG once into the array prepare_digit takes (no side over MAX_SIDE px).

    Decoding is the slow part for a large photo; a page that reruns should cache this array (keyed by
    the upload's bytes), not the bytes. Raises ImageReadError like load_image.
    """
    return _shrink(load_image(data))


def prepare_digit(source: str | os.PathLike | bytes | Image.Image | np.ndarray) -> PreparedDigit:
    """Make the 28x28 model input from a drawing or image of any size; 'nothing drawn' if empty."""
    arr = _shrink(load_image(source))
    ink = _clean(extract_ink(arr))
    crop = _crop(ink, CROP_THRESHOLD)
    h, w = ink.shape
    # Near-empty: too little ink, or a mark smaller than 6 % of the picture (a click, a speck).
    if crop is None or max(crop.shape) < 0.06 * min(h, w) or (crop > 0.2).sum() < 4:
        return PreparedDigit(None, NOTHING_DRAWN)
    f = WORK / max(crop.shape)
    crop = _resize(crop, round(crop.shape[0] * f), round(crop.shape[1] * f))
    crop = _crop(_normalise_stroke(crop), CROP_THRESHOLD)
    if crop is None:
        return PreparedDigit(None, NOTHING_DRAWN)
    out = _place(crop)
    peak = float(out.max())
    if peak <= 0:
        return PreparedDigit(None, NOTHING_DRAWN)
    return PreparedDigit(out / peak)
