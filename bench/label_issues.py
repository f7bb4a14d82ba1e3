"""MNIST's label issues, the real run: how many images cleanlab flags, how long it takes, and a picture of
the top of the list to judge by eye (docs/label-issues-top50.png).

Uses the cache in <data dir>/cache when this recipe was run before (pass --refresh to time a fresh run).

    python -m bench.label_issues               # train split, top 50 picture
    python -m bench.label_issues --split test
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mnistcore.data import default_data_dir, load_mnist
from mnistcore.label_issues import Recipe, default_cache_dir, label_issues

ROOT = Path(__file__).resolve().parent.parent


def grid_png(images: np.ndarray, captions: list[str], path: Path, cols: int = 10, scale: int = 3) -> None:
    """A grid of 28x28 images (black ink on white, as a person reads them) with a caption under each."""
    cell, text_h, pad = 28 * scale, 17, 8
    rows = -(-len(images) // cols)
    out = Image.new("L", (cols * (cell + pad) + pad, rows * (cell + text_h + pad) + pad), 255)
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=13)
    for k, (img, cap) in enumerate(zip(images, captions, strict=True)):
        r, c = divmod(k, cols)
        x, y = pad + c * (cell + pad), pad + r * (cell + text_h + pad)
        out.paste(Image.fromarray(255 - img).resize((cell, cell), Image.NEAREST), (x, y))
        draw.text((x, y + cell + 1), cap, fill=0, font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path)


def main(argv: list[str] | None = None) -> int:
    """Run (or read from the cache) the label issues of a split; print the figures; save the top-N grid."""
    p = argparse.ArgumentParser(prog="python -m bench.label_issues", description=__doc__.splitlines()[0])
    p.add_argument("--split", choices=("train", "test"), default="train")
    p.add_argument("--top", type=int, default=50)
    p.add_argument("--refresh", action="store_true", help="recompute even when cached")
    p.add_argument("--out", type=Path, default=None, help="grid PNG (default docs/label-issues-top50.png)")
    args = p.parse_args(argv)
    data = load_mnist(default_data_dir())
    start = time.perf_counter()
    result = label_issues(data, args.split, Recipe(), cache_dir=default_cache_dir(), refresh=args.refresh)
    took = time.perf_counter() - start
    recipe = result.recipe
    c = recipe["config"]
    print(
        f"label issues, {args.split} split: {len(result.issues)} of {result.scored:,} flagged; out-of-sample "
        f"accuracy {result.accuracy:.2%}; {recipe['folds']} folds x {recipe['seeds']} nets of 784-{c['hidden']}-10, "
        f"{c['epochs']} epochs; computed in {result.seconds:.0f} s "
        f"({'read from the cache' if took < result.seconds / 2 else 'just now'}); cleanlab {result.cleanlab_version}"
    )
    pairs: dict[tuple[int, int], int] = {}
    for i in result.issues:
        pairs[(i.given, i.suggested)] = pairs.get((i.given, i.suggested), 0) + 1
    common = sorted(pairs.items(), key=lambda kv: -kv[1])[:8]
    print("most frequent given -> suggested: " + ", ".join(f"{g}->{s} x{n}" for (g, s), n in common))
    top = result.issues[: args.top]
    images = (data.train_images if args.split == "train" else data.test_images).numpy()
    out = args.out or ROOT / "docs" / f"label-issues-{args.split}-top{args.top}.png"
    grid_png(images[[i.index for i in top]], [f"#{i.index} {i.given}>{i.suggested}" for i in top], out)
    shown = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    print(f"top {len(top)} (index, given > suggested) saved to {shown}")
    for i in top:
        print(f"  #{i.index:>5}  given {i.given}  suggested {i.suggested}  self-confidence {i.score:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
