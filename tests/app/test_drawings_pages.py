"""My drawings and Label issues under AppTest: save a drawing -> it is on My drawings -> evaluated; relabel,
delete, fine-tune; the Label issues page from a cached result, its filters, and without one."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from mnistcore.data import load_mnist
from mnistcore.drawings import DrawingStore
from mnistcore.evaluate import evaluate
from mnistcore.label_issues import LabelIssues, Recipe, cache_path, find_cached, rank_issues, save_cached
from mnistcore.runs import RunStore
from tests.test_drawings import canvas
from ui.tasks import TASKS

ME = "apptest-browser"


@pytest.fixture(autouse=True)
def _private_dirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("MNIST_DRAWINGS_DIR", str(tmp_path / "drawings"))
    monkeypatch.setenv("MNIST_CACHE_DIR", str(tmp_path / "cache"))
    yield
    TASKS.shutdown()


def page(at: AppTest, path: str) -> AppTest:
    at.session_state["ui_session_id"] = ME  # this browser's collection
    if not at._tree:
        at.run()
    at.switch_page(path)
    return at.run()


def texts(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info])


def test_save_drawing_box_saves_with_the_preset_or_corrected_label(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def script() -> None:
        import os

        from mnistcore.preprocess import prepare_digit
        from tests.test_drawings import canvas
        from ui.drawings_view import save_drawing_box

        img = canvas(int(os.environ.get("DIGIT", "1")))  # the test changes the drawing through the environment
        save_drawing_box(img, prepare_digit(img), 7, key="draw_save")

    at = AppTest.from_function(script, default_timeout=60)
    at.session_state["ui_session_id"] = ME
    at.run()
    assert not at.exception
    assert at.segmented_control(key="draw_save_label").value == 7  # preset to the prediction
    assert "No drawings saved yet" in texts(at)
    at.button(key="draw_save_save").click().run()
    store = DrawingStore(tmp_path / "drawings", ME)
    assert [(d.label, d.predicted, d.source) for d in store.list()] == [(7, 7, "draw")]
    assert at.button(key="draw_save_save").disabled  # the same drawing is not saved twice
    assert "1 saved" in texts(at) and "**7**×1" in texts(at)
    # one click corrects the label; a changed drawing can be saved again
    at.segmented_control(key="draw_save_label").set_value(2).run()
    monkeypatch.setenv("DIGIT", "3")
    at.run()
    at.button(key="draw_save_save").click().run()
    assert sorted(d.label for d in store.list()) == [2, 7]


def test_my_drawings_shows_the_collection_and_the_model_on_it(
    make_app, small_run, app_data_dir, tmp_path: Path
) -> None:
    runs_dir, info = small_run
    at = page(make_app(runs_dir), "app_pages/drawings.py")
    assert not at.exception and "No drawings yet" in texts(at)
    store = DrawingStore(tmp_path / "drawings", ME)
    for digit, label in ((1, 1), (4, 1), (9, 7)):
        store.add(canvas(digit), label)
    DrawingStore(tmp_path / "drawings", "someone-else").add(canvas(2), 2)
    at.run()
    assert not at.exception
    assert "3 saved" in texts(at)  # only this browser's drawings
    model, _ = RunStore(runs_dir).load(info.run_id)
    x, y, drawings = store.arrays()
    ev = evaluate(model, torch.from_numpy(x), torch.from_numpy(y))
    assert at.metric[0].value == f"{ev.accuracy:.1%}"
    captions = [c.value for c in at.caption]
    for d, p in zip(drawings, ev.predictions, strict=True):
        assert f"**{d.label}** · model {p}" in captions
    # relabel and delete through each drawing's menu
    first = drawings[0]
    at.segmented_control(key=f"dr_relabel_{first.drawing_id}").set_value(5).run()
    assert store.get(first.drawing_id).label == 5
    at.button(key=f"dr_del_{drawings[1].drawing_id}").click().run()
    assert [d.drawing_id for d in store.list()] == [first.drawing_id, drawings[2].drawing_id]
    assert not at.exception and "2 saved" in texts(at)


@pytest.mark.slow
def test_fine_tune_makes_a_child_run_and_compares(make_app, runs_copy: Path, tmp_path: Path) -> None:
    store = DrawingStore(tmp_path / "drawings", ME)
    for digit in range(6):
        store.add(canvas(digit), 3)
    at = page(make_app(runs_copy), "app_pages/drawings.py")
    parent = RunStore(runs_copy).list()[0]
    at.button(key="dr_ft_start").click().run()
    deadline = time.time() + 240
    while (
        "dr_ft_result" not in {c.key for c in at.get("flex_container") if getattr(c, "key", None)}
        and time.time() < deadline
    ):
        time.sleep(1)
        at.run()
    assert not at.exception
    runs = RunStore(runs_copy).list()
    child = next(r for r in runs if r.parent == parent.run_id)
    assert child.extra["drawings"]["count"] == 6 and child.extra["drawings"]["collection"] == ME
    values = [m.value for m in at.metric]
    assert f"{child.test_accuracy:.2%}" in values


@pytest.fixture(scope="module")
def cached_result(app_data_dir) -> tuple[LabelIssues, np.ndarray]:
    """A label-issues result built by cleanlab from a quick model's probabilities on the test split."""
    from mnistcore.config import TrainConfig
    from mnistcore.train import train

    data = load_mnist(app_data_dir)
    result = train(TrainConfig(hidden=32, epochs=1, batch_size=256, device="cpu"), data)
    probs = evaluate(result.model, data.test_images, data.test_labels).probabilities.astype(np.float64)
    labels = data.test_labels.numpy()
    issues = rank_issues(labels, probs)
    li = LabelIssues(
        split="test",
        issues=issues,
        recipe=Recipe().to_dict(),
        checksums=data.checksums,
        scored=len(labels),
        accuracy=float((probs.argmax(1) == labels).mean()),
        seconds=1.0,
        created="2026-01-01T00:00:00",
        cleanlab_version="2.9.0",
    )
    return li, data.test_images.numpy()


def test_label_issues_page_from_a_cached_result(
    make_app, small_run, app_data_dir, tmp_path: Path, cached_result
) -> None:
    result, _ = cached_result
    data = load_mnist(app_data_dir)
    at = page(make_app(small_run[0]), "app_pages/label_issues.py")
    assert not at.exception
    # nothing is cached here, but the result for the standard MNIST files ships: shown at once, nothing to compute
    shipped = find_cached(data, "train", Recipe(), tmp_path / "nothing-cached")
    assert shipped is not None and shipped.shipped
    assert at.metric[0].value == str(len(shipped.issues)) and "li_find" not in {b.key for b in at.button}
    save_cached(cache_path(tmp_path / "cache", data.checksums, "test", Recipe()), result)
    at.segmented_control(key="li_split").set_value("test").run()
    assert not at.exception
    assert at.metric[0].value == str(len(result.issues))
    html = at.get("html")[0].proto.body
    assert html.count("<figure") == len(result.issues)
    first = result.issues[0]
    assert f'data-index="{first.index}"' in html and f"{first.given} → {first.suggested}" in html
    # the filter by given digit
    at.selectbox(key="li_given").set_value(first.given).run()
    html = at.get("html")[0].proto.body
    assert html.count("<figure") == sum(i.given == first.given for i in result.issues)
    assert "li_clean_start" not in {b.key for b in at.button}  # training without them: train split only


@pytest.mark.slow
def test_train_without_the_flagged_images_compares_on_test(
    make_app, runs_copy: Path, app_data_dir, tmp_path: Path
) -> None:
    data = load_mnist(app_data_dir)
    base = RunStore(runs_copy).list()[0]
    model, _ = RunStore(runs_copy).load(base.run_id)
    probs = evaluate(model, data.train_images, data.train_labels).probabilities.astype(np.float64)
    issues = rank_issues(data.train_labels.numpy(), probs)[:50]
    result = LabelIssues(
        split="train",
        issues=issues,
        recipe=Recipe().to_dict(),
        checksums=data.checksums,
        scored=60000,
        accuracy=0.9,
        seconds=1.0,
        created="2026-01-01T00:00:00",
        cleanlab_version="2.9.0",
    )
    save_cached(cache_path(tmp_path / "cache", data.checksums, "train", Recipe()), result)
    at = page(make_app(runs_copy), "app_pages/label_issues.py")
    assert not at.exception and at.metric[0].value == "50"
    at.button(key="li_clean_start").click().run()
    assert TASKS.get(ME, "train_cleaned").wait(240)
    at.run()
    assert not at.exception
    cleaned = next(r for r in RunStore(runs_copy).list() if r.run_id != base.run_id)
    assert cleaned.extra["removed_flagged"] == 50 and cleaned.extra["baseline"] == base.run_id
    # The same recipe and seed; the precision it ran in is recorded resolved ("auto" -> fp32 or bf16).
    assert cleaned.config.precision in ("fp32", "bf16")
    assert cleaned.config.with_(report_every=1) == base.config.with_(report_every=1, precision=cleaned.config.precision)
    values = [m.value for m in at.metric]
    # The page compares both models evaluated in fp32 on the test set (a run's own test_accuracy was taken in
    # the precision it trained in, bf16 where "auto" picked it, and can differ by a few images).
    evaluated = [
        evaluate(RunStore(runs_copy).load(r.run_id)[0], data.test_images, data.test_labels) for r in (cleaned, base)
    ]
    assert all(f"{ev.accuracy:.2%}" in values for ev in evaluated), (values, [ev.accuracy for ev in evaluated])


def test_label_issues_page_offers_to_compute_for_other_data(
    make_app, small_run, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ui import label_issues_view

    monkeypatch.setattr(label_issues_view, "find_cached", lambda *a, **k: None)  # as for files other than MNIST's
    at = page(make_app(small_run[0]), "app_pages/label_issues.py")
    assert not at.exception
    assert at.button(key="li_find").label == "Find label issues"
    assert "times the first net" in at.info[0].value  # how long it takes is measured, not promised
