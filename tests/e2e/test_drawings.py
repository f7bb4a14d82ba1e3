"""My drawings and Label issues in a real browser: save drawings (upload) -> they are on My drawings with the
active model's accuracy on them; bad uploads and zips are refused with a message and change nothing; the
Label issues page shows a cached result."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from playwright.sync_api import expect

from bench.appserver import AppServer
from mnistcore import RunStore, load_mnist
from mnistcore.drawings import DrawingStore
from mnistcore.evaluate import evaluate
from mnistcore.label_issues import LabelIssues, Recipe, cache_path, rank_issues, save_cached
from tests.test_drawings import canvas


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("e2e-drawings")
    return {"drawings": root / "drawings", "cache": root / "cache"}


@pytest.fixture(scope="module")
def dserver(
    tmp_path_factory: pytest.TempPathFactory, trained_runs_dir: Path, data_dir: Path, dirs: dict[str, Path]
) -> Iterator[AppServer]:
    """A server with a trained model whose drawings and label-issues cache live in private temp dirs."""
    with pytest.MonkeyPatch.context() as mp:  # the server inherits the environment when it starts
        mp.setenv("MNIST_DRAWINGS_DIR", str(dirs["drawings"]))
        mp.setenv("MNIST_CACHE_DIR", str(dirs["cache"]))
        server = AppServer(trained_runs_dir, data_dir, tmp_path_factory.mktemp("log") / "streamlit.log")
    try:
        yield server
    finally:
        server.stop()


def _png(arr: np.ndarray, path: Path) -> Path:
    Image.fromarray(arr).save(path)
    return path


def _collections(root: Path) -> list[Path]:
    return [p for p in root.iterdir() if p.is_dir()] if root.exists() else []


def _upload(page, files: list[Path], digit: int) -> None:
    if not page.locator(".st-key-dr_upload").is_visible():
        page.get_by_text("Add pictures of a digit").click()
    uploader = page.locator(".st-key-dr_upload input[type=file]")
    expect(uploader).to_have_count(1, timeout=30_000)  # after an add, the emptied uploader replaces the old one
    uploader.set_input_files([str(f) for f in files])
    expect(page.locator(".st-key-dr_upload_label button").first).to_be_visible(timeout=30_000)
    page.locator(".st-key-dr_upload_label button", has_text=str(digit)).click()
    add = page.locator(".st-key-dr_upload_add button")
    expect(add).to_be_enabled(timeout=30_000)
    add.click()


def test_saved_drawings_appear_with_the_models_accuracy(dserver, page, tmp_path: Path, dirs, shot) -> None:
    page.goto(f"{dserver.url}/drawings")
    expect(page.get_by_text("No drawings yet")).to_be_visible(timeout=60_000)
    ones = [_png(canvas(d), tmp_path / f"one{d}.png") for d in (1, 2)]
    _upload(page, ones, 1)
    expect(page.get_by_text("Added 2 drawing(s) of a 1.")).to_be_visible(timeout=30_000)
    _upload(page, [_png(canvas(6), tmp_path / "seven.png")], 7)
    expect(page.get_by_text("Added 1 drawing(s) of a 7.")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("3 saved")).to_be_visible()

    # What the page shows is mnistcore's evaluation of the active model on the stored drawings.
    (collection,) = _collections(dirs["drawings"])
    store = DrawingStore(dirs["drawings"], collection.name)
    model, _ = RunStore(dserver.runs_dir).load("latest")
    x, y, drawings = store.arrays()
    assert sorted(y.tolist()) == [1, 1, 7]
    ev = evaluate(model, torch.from_numpy(x), torch.from_numpy(y))
    box = page.locator(".st-key-dr_eval")
    expect(box).to_contain_text(f"{ev.accuracy:.1%}")
    for d in drawings:
        expect(page.locator(f".st-key-dr_item_{d.drawing_id}")).to_be_visible()
    expect(page.locator(".st-key-dr_wrong figure")).to_have_count(ev.errors)
    shot(page, "my-drawings")

    # Another browser has its own, empty collection.
    other = page.context.browser.new_context().new_page()
    try:
        other.goto(f"{dserver.url}/drawings")
        expect(other.get_by_text("No drawings yet")).to_be_visible(timeout=60_000)
    finally:
        other.context.close()


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()} if root.exists() else {}


def test_bad_uploads_and_zips_are_refused(dserver, page, tmp_path: Path, dirs) -> None:
    page.goto(f"{dserver.url}/drawings")
    expect(page.get_by_role("heading", name="My drawings")).to_be_visible(timeout=60_000)
    page.wait_for_timeout(1000)
    before = _snapshot(dirs["drawings"])
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"this is not a picture")
    _upload(page, [fake], 3)
    expect(page.get_by_text("Nothing was added")).to_be_visible(timeout=30_000)
    assert _snapshot(dirs["drawings"]) == before

    if not page.locator(".st-key-dr_import").is_visible():
        page.get_by_text("Export / import").click()
    cases = {"not-a-zip.zip": b"plain text, not a zip"}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../../escape.png", b"x")
    cases["traversal.zip"] = buf.getvalue()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("drawings/20260101-000000-abcdef/original.png", b"\0" * (11 * 1024 * 1024))
        zf.writestr("drawings/20260101-000000-abcdef/meta.json", b"{}")
    cases["bomb.zip"] = buf.getvalue()
    messages = {
        "not-a-zip.zip": "not a zip file",
        "traversal.zip": "not part of a drawings export",
        "bomb.zip": "decompresses to more than",
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        page.locator(".st-key-dr_import input[type=file]").set_input_files(str(path))
        # The upload's own rerun clears the previous message: only then is the Import button this file's.
        expect(page.get_by_text("Nothing was imported")).to_have_count(0, timeout=30_000)
        page.locator(".st-key-dr_import_go button").click()
        expect(page.get_by_text(messages[name])).to_be_visible(timeout=30_000)
        expect(page.get_by_text("Nothing was imported")).to_be_visible()
        assert _snapshot(dirs["drawings"]) == before, name


@pytest.fixture(scope="module")
def cached_train_result(dserver, data_dir: Path, dirs) -> LabelIssues:
    """A cached train-split result: cleanlab on the server's model's probabilities of the training images."""
    data = load_mnist(data_dir)
    model, _ = RunStore(dserver.runs_dir).load("latest")
    probs = evaluate(model, data.train_images, data.train_labels).probabilities.astype(np.float64)
    labels = data.train_labels.numpy()
    issues = rank_issues(labels, probs)[:80]
    result = LabelIssues(
        split="train",
        issues=issues,
        recipe=Recipe().to_dict(),
        checksums=data.checksums,
        scored=len(labels),
        accuracy=float((probs.argmax(1) == labels).mean()),
        seconds=12.0,
        created="2026-01-01T00:00:00",
        cleanlab_version="2.9.0",
    )
    save_cached(cache_path(dirs["cache"], data.checksums, "train", Recipe()), result)
    return result


def test_label_issues_page_shows_the_cached_result(dserver, page, cached_train_result: LabelIssues, shot) -> None:
    assert os.environ.get("MNIST_CACHE_DIR") is None  # the test process itself was left as it was
    page.goto(f"{dserver.url}/label-issues")
    grid = page.locator(".st-key-li_grid .mnist-grid")
    expect(grid).to_be_visible(timeout=60_000)
    issues = cached_train_result.issues
    expect(grid.locator("figure")).to_have_count(len(issues))
    shown = [int(i) for i in grid.locator("figure").evaluate_all("els => els.map(e => e.dataset.index)")]
    assert shown == [i.index for i in issues]  # ranked as cached
    expect(grid.locator("figure").first).to_contain_text(f"{issues[0].given} → {issues[0].suggested}")
    expect(page.locator(".st-key-li_summary")).to_contain_text(str(len(issues)))
    expect(page.locator(".st-key-li_clean_start button")).to_be_visible()
    shot(page, "label-issues")
