"""The drawings commands (`drawings add|list|export|import`) and what they add to `evaluate --drawings` and
`train --with-drawings`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from mnistcore.cli.options import common, err
from mnistcore.drawings import DEFAULT_COLLECTION

if TYPE_CHECKING:
    from mnistcore.data import MnistData
    from mnistcore.drawings import Drawing, DrawingStore


def drawings_options(p: argparse.ArgumentParser) -> None:
    """--drawings-dir and --collection (for drawings, evaluate --drawings, train --with-drawings)."""
    p.add_argument(
        "--drawings-dir",
        type=Path,
        default=None,
        help="drawings dir (default $MNIST_DRAWINGS_DIR or <data dir>/drawings)",
    )
    p.add_argument(
        "--collection",
        default=DEFAULT_COLLECTION,
        help=f"which collection of drawings (default {DEFAULT_COLLECTION!r}; the dashboard keeps one per browser)",
    )


def add_parsers(sub: Any) -> None:
    """Add the `drawings` subcommands."""
    d = sub.add_parser("drawings", help="your own labelled drawings: add, list, export, import")
    dsub = d.add_subparsers(dest="drawings_command", required=True)
    add = dsub.add_parser("add", help="add images of one digit (prepared as Draw prepares a drawing)")
    add.add_argument("--label", type=int, required=True, choices=range(10), metavar="N", help="the digit 0..9")
    add.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    lst = dsub.add_parser("list", help="list the drawings")
    ex = dsub.add_parser("export", help="write every drawing to a zip")
    ex.add_argument("--out", type=Path, required=True, metavar="FILE.zip")
    im = dsub.add_parser("import", help="add the drawings of an exported zip")
    im.add_argument("zip", type=Path, metavar="FILE.zip")
    for p, func in ((add, cmd_add), (lst, cmd_list), (ex, cmd_export), (im, cmd_import)):
        common(p)
        drawings_options(p)
        p.add_argument("--json", action="store_true", help="print JSON on stdout")
        p.set_defaults(func=func)


def add_evaluate_options(p: argparse.ArgumentParser) -> None:
    """`evaluate --drawings`, and the evaluation it runs (args.evaluate_drawings) when given."""
    p.add_argument(
        "--drawings", action="store_true", help="evaluate on your drawings store instead of the MNIST test set"
    )
    drawings_options(p)
    p.set_defaults(evaluate_drawings=evaluate_drawings)


def add_train_options(p: argparse.ArgumentParser) -> None:
    """`train --with-drawings`, and the mixing it does (args.mix_drawings) when given."""
    p.add_argument(
        "--with-drawings",
        action="store_true",
        help="mix your drawings into the training images (oversampled to ~10 %% of them)",
    )
    drawings_options(p)
    p.set_defaults(mix_drawings=mix_for_training)


def _store(args: argparse.Namespace) -> DrawingStore:
    """The collection of drawings that --drawings-dir (or the data dir) and --collection name."""
    from mnistcore.drawings import DrawingStore, default_drawings_dir

    root = args.drawings_dir if args.drawings_dir is not None else default_drawings_dir(args.data_dir)
    return DrawingStore(root, args.collection)


def _drawing_json(d: Drawing) -> dict[str, Any]:
    """A drawing as the --json outputs show it."""
    return {
        "id": d.drawing_id,
        "label": d.label,
        "predicted": d.predicted,
        "created": d.created,
        "source": d.source,
        "path": str(d.path),
    }


def cmd_add(args: argparse.Namespace) -> int:
    """`drawings add`: store images of one digit, each prepared as Draw prepares a drawing."""
    from mnistcore.drawings import DrawingError, read_image_file

    try:
        store = _store(args)
        blobs = []
        for path in args.images:
            try:
                blobs.append(read_image_file(path))
            except DrawingError as exc:
                raise DrawingError(f"{path}: {exc}") from None
        try:
            added = store.add_many(blobs, args.label, source="cli")
        except DrawingError as exc:
            # add_many checks every image before writing any: name the one at fault.
            raise DrawingError(f"{_which(store, blobs, args.label, args.images)}{exc}; nothing was added") from None
    except DrawingError as exc:
        return err(str(exc))
    if args.json:
        print(json.dumps([_drawing_json(d) for d in added]))
    else:
        print(f"added {len(added)} drawing(s) of a {args.label} to {store.path}")
    return 0


def _which(store: DrawingStore, blobs: list[bytes], label: int, paths: list[Path]) -> str:
    """'path: ' of the first image that cannot be stored, or '' when it was not one image's fault."""
    from mnistcore.drawings import DrawingError

    for blob, path in zip(blobs, paths, strict=True):
        try:
            store._pending(blob, label, None, None, "cli")
        except DrawingError:
            return f"{path}: "
    return ""


def cmd_list(args: argparse.Namespace) -> int:
    """`drawings list`: the drawings of the collection, with counts per digit."""
    from mnistcore.drawings import DrawingError

    try:
        store = _store(args)
        drawings = store.list()
    except DrawingError as exc:
        return err(str(exc))
    if args.json:
        print(json.dumps([_drawing_json(d) for d in drawings]))
        return 0
    if not drawings:
        print(f"no drawings in {store.path}; add some: python -m mnistcore drawings add --label N IMAGE...")
        return 0
    counts = store.counts()
    print(f"{len(drawings)} drawings in {store.path}: " + ", ".join(f"{c}×{n}" for c, n in enumerate(counts) if n))
    for d in drawings:
        print(f"  {d.drawing_id}  label {d.label}  {d.source:<6}  {d.created[:19].replace('T', ' ')}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """`drawings export`: write every drawing of the collection to a zip."""
    from mnistcore.drawings import DrawingError

    try:
        # Given a path, export_zip returns the count (bytes only when there is none).
        count = cast(int, _store(args).export_zip(args.out))
    except (DrawingError, OSError) as exc:
        return err(str(exc))
    if args.json:
        print(json.dumps({"path": str(args.out), "count": count}))
    else:
        print(f"exported {count} drawings to {args.out}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """`drawings import`: add the drawings of an exported zip (those already there are skipped)."""
    from mnistcore.drawings import DrawingError

    try:
        store = _store(args)
        report = store.import_zip(args.zip)
    except DrawingError as exc:
        return err(f"{args.zip}: {exc}; nothing was imported")
    if args.json:
        print(json.dumps({"added": report.added, "skipped": report.skipped, "path": str(store.path)}))
    else:
        print(
            f"imported {report.added} drawings into {store.path}"
            + (f" ({report.skipped} already there)" if report.skipped else "")
        )
    return 0


def _flagged(model: Any, ood: Any, store: DrawingStore) -> int | None:
    """How many of the store's drawings the OOD score calls "not a digit"; None without an OOD record."""
    if ood is None:
        return None
    images = store.arrays()[0]
    return int((ood.scores(model, images.astype("float32") / 255.0) > ood.threshold).sum())


def evaluate_drawings(args: argparse.Namespace) -> int:
    """`evaluate --drawings`: the run's accuracy and confusion matrix on the drawings store."""
    from mnistcore.drawings import DrawingError
    from mnistcore.drawings import evaluate_drawings as run_eval
    from mnistcore.runs import RunStore

    runs = RunStore(args.runs_dir)
    model, info = runs.load(args.run)
    try:
        store = _store(args)
        ev, drawings = run_eval(model, store)
        flagged = _flagged(model, runs.load_ood(info), store)
    except DrawingError as exc:
        return err(str(exc))
    wrong = [
        {
            "id": d.drawing_id,
            "label": int(ev.labels[i]),
            "predicted": int(ev.predictions[i]),
            "confidence": round(float(ev.confidence[i]), 4),
        }
        for i, d in enumerate(drawings)
        if ev.labels[i] != ev.predictions[i]
    ]
    out = {
        "run_id": info.run_id,
        "collection": store.collection,
        "count": len(drawings),
        "accuracy": ev.accuracy,
        "errors": ev.errors,
        "confusion": ev.confusion.tolist(),
        "per_digit_count": ev.support.tolist(),
        "recall": ev.recall.tolist(),
        "wrong": wrong,
        "not_a_digit": flagged,  # how many the run's OOD score flags (null: the run has no OOD record)
    }
    if args.json:
        print(json.dumps(out))
        return 0
    print(
        f"run {info.run_id} on {len(drawings)} drawings ({store.path}): accuracy {ev.accuracy:.2%} ({ev.errors} wrong)"
    )
    if flagged is not None:
        print(f"not a digit (the run's OOD score): {flagged} of {len(drawings)} drawings flagged")
    print("confusion matrix (rows = your label, columns = predicted):")
    print("      " + " ".join(f"{c:>4}" for c in range(10)))
    for t, row in enumerate(ev.confusion):
        print(f"  {t:>2}  " + " ".join(f"{v:>4}" for v in row))
    return 0


def mix_for_training(args: argparse.Namespace, data: MnistData) -> tuple[MnistData, dict[str, Any]]:
    """`train --with-drawings`: MNIST with the drawings store mixed into its training split, and what was mixed.

    Raises DrawingError (a message for the user) when there are no drawings.
    """
    from mnistcore.drawings import DrawingError, mix_drawings

    store = _store(args)
    images, labels, drawings = store.arrays()
    if not drawings:
        raise DrawingError(
            f"--with-drawings: there are no drawings in {store.path}; add some first "
            f"(python -m mnistcore drawings add --label N IMAGE...)"
        )
    mixed, info = mix_drawings(data, images, labels)
    return mixed, {**info, "collection": store.collection}
