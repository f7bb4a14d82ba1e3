"""A compact HTML grid of small images with captions: one element however many images (no widgets)."""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np

from ui.figures import png_data_uri

GRID_CLASS = "mnist-grid"

_STYLE = (
    "<style>"
    f".{GRID_CLASS}{{display:grid;grid-template-columns:repeat(auto-fill,minmax(62px,1fr));gap:6px 4px;"
    "max-height:560px;overflow-y:auto;padding:4px;border:1px solid #E5E7EB;border-radius:8px}"
    f".{GRID_CLASS} figure{{margin:0;text-align:center}}"
    f".{GRID_CLASS} img{{width:56px;height:56px;image-rendering:pixelated;display:block;margin:0 auto;"
    "border-radius:3px}"
    f".{GRID_CLASS} figcaption{{font-size:11px;line-height:1.2;color:#374151;white-space:nowrap}}"
    "</style>"
)


def html_grid(images: np.ndarray, captions: Sequence[str], indices: Sequence[int] | None = None) -> str:
    """HTML for a scrollable grid: one <figure data-index=...> per image, in the given order."""
    images = np.asarray(images, dtype=np.uint8)
    if indices is None:
        indices = range(len(images))
    cells = [
        f'<figure data-index="{int(i)}"><img src="{png_data_uri(img)}" alt="test image {int(i)}">'
        f"<figcaption>{html.escape(cap)}</figcaption></figure>"
        for img, cap, i in zip(images, captions, indices, strict=True)
    ]
    return f'{_STYLE}<div class="{GRID_CLASS}" data-count="{len(cells)}">{"".join(cells)}</div>'
