"""The drawings store: add/list/relabel/delete, per-collection folders, atomic writes, zip export/import,
and refusals (bad images, bad zips, zip bombs, path traversal, wrong labels) that change nothing."""

from __future__ import annotations

import io
import json
import os
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mnistcore import drawings as dr
from mnistcore.data import MnistData
from mnistcore.drawings import DrawingError, DrawingStore, default_drawings_dir, mix_drawings
from mnistcore.preprocess import prepare_digit


def canvas(digit: int = 1, size: int = 280) -> np.ndarray:
    """A canvas-like RGBA drawing (white ink on black): a bar whose position depends on `digit`."""
    img = np.zeros((size, size, 4), np.uint8)
    img[..., 3] = 255
    x = size // 4 + digit * size // 30
    img[size // 5 : 4 * size // 5, x : x + size // 14, :3] = 255
    return img


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root with its content: to check that a refusal changed nothing."""
    return (
        {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
        if root.exists()
        else {}
    )


@pytest.fixture
def store(tmp_path: Path) -> DrawingStore:
    return DrawingStore(tmp_path / "drawings")


def test_the_listing_is_reused_until_a_drawing_changes(store: DrawingStore, monkeypatch: pytest.MonkeyPatch) -> None:
    a = store.add(canvas(1), 1)
    b = store.add(canvas(2), 2)
    assert list(store.counts()) == [0, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    reads = []
    real = dr._read_regular
    monkeypatch.setattr(dr, "_read_regular", lambda *args: reads.append(args) or real(*args))
    assert [d.drawing_id for d in store.list()] == [a.drawing_id, b.drawing_id] and reads == []  # nothing re-read
    # Every change shows at once, also through another store object (another page, the CLI).
    other = DrawingStore(store.root)
    other.relabel(a.drawing_id, 7)
    assert list(store.counts()) == [0, 0, 1, 0, 0, 0, 0, 1, 0, 0]
    other.delete(b.drawing_id)
    c = other.add(canvas(3), 3)
    assert [(d.drawing_id, d.label) for d in store.list()] == [(a.drawing_id, 7), (c.drawing_id, 3)]
    store.list().clear()  # a caller changing its list changes nothing for the next one
    assert len(store.list()) == 2


def test_default_dir_follows_env_and_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MNIST_DRAWINGS_DIR", raising=False)
    monkeypatch.setenv("MNIST_DATA_DIR", str(tmp_path / "d"))
    assert default_drawings_dir() == tmp_path / "d" / "drawings"
    assert default_drawings_dir(tmp_path / "x") == tmp_path / "x" / "drawings"
    monkeypatch.setenv("MNIST_DRAWINGS_DIR", str(tmp_path / "mine"))
    assert default_drawings_dir(tmp_path / "x") == tmp_path / "mine"
    assert DrawingStore().path == tmp_path / "mine" / "default"


def test_add_keeps_original_label_and_the_same_prepared_image_as_draw(store: DrawingStore) -> None:
    img = canvas(3)
    d = store.add(img, 7, predicted=1, source="draw")
    assert d.label == 7 and d.predicted == 1 and d.source == "draw"
    assert sorted(p.name for p in d.path.iterdir()) == ["meta.json", "original.png", "prepared.png"]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(d.original_png()))), img)
    expected = np.round(prepare_digit(img).pixels * 255).astype(np.uint8)
    assert d.pixels().dtype == np.uint8 and np.array_equal(d.pixels(), expected)
    # PNG/JPEG bytes go through the same preprocessing
    d2 = store.add(png(img), 2)
    assert np.array_equal(d2.pixels(), expected)
    assert [x.drawing_id for x in store.list()] == [d.drawing_id, d2.drawing_id]
    images, labels, kept = store.arrays()
    assert images.shape == (2, 28, 28) and labels.tolist() == [7, 2] and len(kept) == 2
    assert store.counts().tolist() == [0, 0, 1, 0, 0, 0, 0, 1, 0, 0]


def test_given_prepared_digit_is_stored_as_is(store: DrawingStore) -> None:
    prepared = np.zeros((28, 28), np.float32)
    prepared[5:20, 12:15] = 1.0
    d = store.add(canvas(1), 1, prepared=prepared)
    assert d.pixels()[10, 13] == 255 and d.pixels()[0, 0] == 0


def test_collections_are_separate_folders(tmp_path: Path) -> None:
    a, b = DrawingStore(tmp_path, "alice"), DrawingStore(tmp_path, "bob")
    a.add(canvas(), 1)
    assert len(a.list()) == 1 and b.list() == []
    assert (tmp_path / "alice").is_dir() and not (tmp_path / "bob").exists()
    for bad in ("", "../x", "a/b", ".hidden", "x" * 65, "a b"):
        with pytest.raises(DrawingError, match="collection"):
            DrawingStore(tmp_path, bad)


@pytest.mark.parametrize("label", [-1, 10, 1.0, "3", True, None])
def test_wrong_labels_are_refused(store: DrawingStore, label: object) -> None:
    with pytest.raises(DrawingError, match=r"0\.\.9"):
        store.add(canvas(), label)  # type: ignore[arg-type]
    assert not store.path.exists()


def test_bad_images_are_refused_and_nothing_is_written(store: DrawingStore, tmp_path: Path) -> None:
    with pytest.raises(DrawingError, match="not a readable image"):
        store.add(b"definitely not a picture", 1)
    with pytest.raises(DrawingError, match=r"(?i)nothing drawn"):
        store.add(np.zeros((280, 280, 4), np.uint8) + np.uint8(255) * (np.arange(4) == 3), 1)
    with pytest.raises(DrawingError, match="more than"):
        store.add(b"\x89PNG" + b"0" * dr.MAX_IMAGE_BYTES, 1)
    assert not store.path.exists() or store.list() == []


def test_decompression_bomb_image_is_refused(store: DrawingStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dr, "MAX_IMAGE_PIXELS", 100 * 100)
    with pytest.raises(DrawingError, match="pixels"):
        store.add(png(np.zeros((200, 200), np.uint8)), 1)


def test_read_image_file_only_regular_files(tmp_path: Path) -> None:
    good = tmp_path / "a.png"
    good.write_bytes(png(canvas()))
    assert dr.read_image_file(good) == good.read_bytes()
    with pytest.raises(DrawingError, match="not a regular file"):
        dr.read_image_file(tmp_path)
    link = tmp_path / "link.png"
    link.symlink_to(good)
    with pytest.raises(DrawingError, match="not a regular file"):
        dr.read_image_file(link)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(DrawingError, match="not a regular file"):
        dr.read_image_file(fifo)
    with pytest.raises(DrawingError, match="cannot be read"):
        dr.read_image_file(tmp_path / "missing.png")


def test_large_originals_are_stored_shrunk(store: DrawingStore) -> None:
    d = store.add(canvas(2, size=2000), 2)
    assert max(Image.open(io.BytesIO(d.original_png())).size) == dr.MAX_STORED_SIDE


def test_relabel_and_delete(store: DrawingStore) -> None:
    d = store.add(canvas(), 1)
    assert store.relabel(d.drawing_id, 4).label == 4
    assert store.get(d.drawing_id).label == 4
    with pytest.raises(DrawingError):
        store.relabel(d.drawing_id, 11)
    assert store.get(d.drawing_id).label == 4
    store.delete(d.drawing_id)
    assert store.list() == [] and not any(store.path.iterdir())
    for bad in ("../default", "nope", d.drawing_id):
        with pytest.raises(DrawingError):
            store.delete(bad)


def test_damaged_drawings_and_strays_are_skipped(store: DrawingStore) -> None:
    good = store.add(canvas(), 1)
    bad = store.add(canvas(2), 2)
    (bad.path / "meta.json").write_text('{"format": 1, "label": 12}')
    (store.path / ".tmp-x").mkdir()
    (store.path / "stray.txt").write_text("x")
    assert [d.drawing_id for d in store.list()] == [good.drawing_id]
    os.unlink(good.path / "prepared.png")
    images, _, kept = store.arrays()
    assert len(images) == 0 and kept == []


def test_a_crash_while_writing_leaves_nothing(store: DrawingStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.add(canvas(), 1)
    before = snapshot(store.root)

    def boom(*a: object, **k: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(dr.os, "rename", boom)
    with pytest.raises(OSError):
        store.add(canvas(2), 2)
    assert snapshot(store.root) == before
    assert not [p for p in store.path.iterdir() if p.name.startswith(".tmp")]


def test_export_import_round_trip(tmp_path: Path) -> None:
    a = DrawingStore(tmp_path / "a")
    for digit in (1, 5, 9):
        a.add(canvas(digit), digit, predicted=digit)
    out = tmp_path / "out" / "mine.zip"
    assert a.export_zip(out) == 3
    names = zipfile.ZipFile(out).namelist()
    assert len(names) == 9 and all(n.startswith("drawings/") for n in names)
    b = DrawingStore(tmp_path / "b", "other")
    report = b.import_zip(out)
    assert (report.added, report.skipped) == (3, 0)
    xa, ya, _ = a.arrays()
    xb, yb, _ = b.arrays()
    assert np.array_equal(xa, xb) and ya.tolist() == yb.tolist() == [1, 5, 9]
    assert b.import_zip(out.read_bytes()) == dr.ImportReport(added=0, skipped=3)  # the same zip again
    assert isinstance(a.export_zip(), bytes)


def _zip(entries: dict[str, bytes], **kw: object) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data, **kw)
    return buf.getvalue()


def _entries(store: DrawingStore) -> dict[str, bytes]:
    data = store.export_zip()
    zf = zipfile.ZipFile(io.BytesIO(data))
    return {n: zf.read(n) for n in zf.namelist()}


@pytest.fixture
def exported(tmp_path: Path) -> dict[str, bytes]:
    src = DrawingStore(tmp_path / "src")
    src.add(canvas(1), 1)
    src.add(canvas(4), 4)
    return _entries(src)


def _first_id(entries: dict[str, bytes]) -> str:
    return sorted(entries)[0].split("/")[1]


def _bad_label(entries: dict[str, bytes]) -> dict[str, bytes]:
    name = f"drawings/{_first_id(entries)}/meta.json"
    meta = json.loads(entries[name])
    meta["label"] = 12
    return {**entries, name: json.dumps(meta).encode()}


def _traversal(entries: dict[str, bytes]) -> dict[str, bytes]:
    return {**entries, "../../evil.png": b"x"}


def _absolute(entries: dict[str, bytes]) -> dict[str, bytes]:
    return {**entries, "/etc/evil": b"x"}


def _stray(entries: dict[str, bytes]) -> dict[str, bytes]:
    return {**entries, "drawings/readme.txt": b"hello"}


def _bad_png(entries: dict[str, bytes]) -> dict[str, bytes]:
    return {**entries, f"drawings/{_first_id(entries)}/original.png": b"not a png"}


def _bad_prepared(entries: dict[str, bytes]) -> dict[str, bytes]:
    return {**entries, f"drawings/{_first_id(entries)}/prepared.png": png(np.zeros((20, 20), np.uint8))}


def _no_meta(entries: dict[str, bytes]) -> dict[str, bytes]:
    return {k: v for k, v in entries.items() if not k.endswith(f"{_first_id(entries)}/meta.json")}


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_bad_label, "0..9"),
        (_traversal, "not part of a drawings export"),
        (_absolute, "not part of a drawings export"),
        (_stray, "not part of a drawings export"),
        (_bad_png, "not a readable image"),
        (_bad_prepared, "28x28"),
        (_no_meta, "no meta.json"),
    ],
)
def test_bad_zips_are_refused_whole(tmp_path: Path, exported: dict[str, bytes], damage, message: str) -> None:
    target = DrawingStore(tmp_path / "t")
    target.add(canvas(7), 7)
    before = snapshot(target.root)
    with pytest.raises(DrawingError, match=message):
        target.import_zip(_zip(damage(exported)))
    assert snapshot(target.root) == before  # not even the good drawings of the zip were added


def test_not_a_zip_and_empty_zip(tmp_path: Path) -> None:
    store = DrawingStore(tmp_path / "t")
    with pytest.raises(DrawingError, match="not a zip file"):
        store.import_zip(png(canvas()))
    f = tmp_path / "x.zip"
    f.write_bytes(b"PK\x03\x04 garbage")
    with pytest.raises(DrawingError, match="zip"):
        store.import_zip(f)
    with pytest.raises(DrawingError, match="no drawings"):
        store.import_zip(_zip({}))
    with pytest.raises(DrawingError, match="not a regular file"):
        store.import_zip(tmp_path)
    assert not store.path.exists()


def test_zip_bomb_is_refused(tmp_path: Path, exported: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    store = DrawingStore(tmp_path / "t")
    name = f"drawings/{_first_id(exported)}/original.png"
    bomb = _zip({**exported, name: b"\0" * (dr.MAX_IMAGE_BYTES + 10)})
    assert len(bomb) < 100_000  # tiny on disk, 10 MB inflated
    with pytest.raises(DrawingError, match="decompresses to more than"):
        store.import_zip(bomb)
    # the total over all members is capped as well
    monkeypatch.setattr(dr, "MAX_ZIP_UNCOMPRESSED", 1000)
    with pytest.raises(DrawingError, match="decompresses to more than"):
        store.import_zip(_zip(exported))
    assert not store.path.exists()


def test_zip_with_too_many_members_or_a_link_is_refused(
    tmp_path: Path, exported: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DrawingStore(tmp_path / "t")
    monkeypatch.setattr(dr, "MAX_ZIP_MEMBERS", 3)
    with pytest.raises(DrawingError, match="entries"):
        store.import_zip(_zip(exported))
    monkeypatch.undo()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for n, d in exported.items():
            zf.writestr(n, d)
        info = zipfile.ZipInfo("drawings/link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(DrawingError, match="symbolic link"):
        store.import_zip(buf.getvalue())
    assert not store.path.exists()


def test_import_respects_the_collection_cap(
    tmp_path: Path, exported: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DrawingStore(tmp_path / "t")
    store.add(canvas(), 1)
    monkeypatch.setattr(dr, "MAX_DRAWINGS", 2)
    with pytest.raises(DrawingError, match="at most 2"):
        store.import_zip(_zip(exported))
    assert len(store.list()) == 1


def test_folder_entries_are_accepted(tmp_path: Path, exported: dict[str, bytes]) -> None:
    entries = {"drawings/": b"", f"drawings/{_first_id(exported)}/": b"", **exported}
    assert DrawingStore(tmp_path / "t").import_zip(_zip(entries)).added == 2


def test_mix_drawings_oversamples_into_the_training_split(tiny_data: MnistData) -> None:
    images = np.stack([np.full((28, 28), i, np.uint8) for i in range(4)])
    labels = np.array([0, 1, 2, 3])
    mixed, info = mix_drawings(tiny_data, images, labels, share=0.25)
    n = len(tiny_data.train_labels)
    repeats = info["repeats"]
    assert repeats == round(0.25 * n / (0.75 * 4)) == 50
    assert len(mixed.train_labels) == n + 4 * repeats
    assert torch.equal(mixed.train_images[-n:], tiny_data.train_images)  # the drawings first: see mix_drawings
    assert torch.equal(mixed.test_images, tiny_data.test_images)
    assert mixed.train_labels[: 4 * repeats].tolist() == np.repeat(labels, repeats).tolist()
    assert info["count"] == 4 and 0.24 < info["share"] < 0.26
    assert mixed.checksums["drawings"] == info["checksum"] != ""
    with pytest.raises(DrawingError):
        mix_drawings(tiny_data, images[:0], labels[:0])
    with pytest.raises(DrawingError):
        mix_drawings(tiny_data, images, np.array([0, 1, 2, 10]))


def test_fine_tune_on_drawings_saves_a_child_run_and_compares(tiny_data: MnistData, tmp_path: Path) -> None:
    from mnistcore.config import TrainConfig
    from mnistcore.runs import RunStore
    from mnistcore.train import train

    config = TrainConfig(hidden=32, epochs=2, batch_size=32, lr=3e-3, device="cpu")
    result = train(config, tiny_data)
    runs = RunStore(tmp_path / "runs")
    parent = runs.save(
        result.model,
        config,
        test_accuracy=result.test_accuracy,
        train_seconds=result.train_seconds,
        history=result.history,
        dataset=tiny_data.checksums,
        optimizer_state=result.optimizer_state,
        rng_state=result.rng_state,
    )
    store = DrawingStore(tmp_path / "dr", "me")
    with pytest.raises(DrawingError, match="no drawings"):
        dr.fine_tune_on_drawings(runs, parent.run_id, tiny_data, store)
    # "drawings" the tiny model cannot know: a bar drawn for every digit, all labelled 3
    for digit in range(4):
        store.add(canvas(digit), 3)
    ft = dr.fine_tune_on_drawings(runs, parent.run_id, tiny_data, store, epochs=2)
    assert ft is not None and ft.count == 4 and ft.parent.run_id == parent.run_id
    child = runs.info(ft.run.run_id)
    assert child.parent == parent.run_id and len(child.history) == 4
    assert child.extra["drawings"]["count"] == 4 and child.extra["drawings"]["collection"] == "me"
    assert child.config.precision == child.extra["precision"]["precision"] in ("fp32", "bf16")  # what ran
    assert ft.mnist_before == parent.test_accuracy and ft.mnist_after == child.test_accuracy
    assert ft.drawings_after == 1.0 >= ft.drawings_before  # learnt the drawings
    stop = __import__("threading").Event()
    stop.set()
    assert dr.fine_tune_on_drawings(runs, parent.run_id, tiny_data, store, stop=stop) is None
    assert len(runs.list()) == 2  # a stopped fine-tune saves nothing
