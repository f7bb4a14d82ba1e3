"""Every dashboard page under streamlit.testing.v1.AppTest: renders, key widgets, selections, drawing."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from mnistcore.config import PRESETS, TrainConfig
from mnistcore.data import load_mnist
from mnistcore.evaluate import cell_indices, evaluate, select_predictions
from mnistcore.predict import predict_prepared
from mnistcore.preprocess import prepare_digit
from mnistcore.runs import RunStore

PAGES = [
    "app_pages/home.py",
    "app_pages/train.py",
    "app_pages/confusion.py",
    "app_pages/errors.py",
    "app_pages/draw.py",
]


def keys(elements) -> set[str]:
    return {e.key for e in elements if e.key}


def has_button(at, key: str) -> bool:
    return key in keys(at.button)


def open_page(at, page: str):
    if not at._tree:  # AppTest needs one run before switching pages
        at.run()
    at.switch_page(page)
    return at.run()


def markdown_text(at) -> str:
    return "\n".join(m.value for m in at.markdown)


@pytest.fixture(scope="module")
def mnist(app_data_dir):
    return load_mnist(app_data_dir)


@pytest.fixture(scope="module")
def small_eval(small_run, mnist):
    runs_dir, info = small_run
    model, _ = RunStore(runs_dir).load(info.run_id)
    return model, evaluate(model, mnist.test_images, mnist.test_labels)


# ------------------------------------------------------------------ no model yet


@pytest.mark.parametrize("page", PAGES)
def test_every_page_runs_without_a_model(make_app, tmp_path, page):
    at = open_page(make_app(tmp_path / "empty-runs"), page)
    assert not at.exception
    assert "No saved models yet" in " ".join(c.value for c in at.sidebar.caption)
    if page.endswith("train.py"):
        assert has_button(at, "train_start")
    else:  # one obvious button for a new user on every other page
        name = page.split("/")[1].removesuffix(".py")
        button = at.button(key=f"{name}_train_default")
        assert re.fullmatch(r"Train a model for drawing \(~\d+ s\)", button.label)
        draw = PRESETS["draw"]
        prompt = " ".join(i.value for i in at.info)  # says in plain words what the button trains
        assert f"{draw.hidden} units" in prompt and f"{draw.epochs} passes over 55,000 of MNIST" in prompt


def test_home_one_click_trains_the_draw_preset_and_the_train_page_lists_it(make_app, tmp_path, monkeypatch):
    import ui.session

    started = []
    monkeypatch.setattr(ui.session, "start_job", lambda config: started.append(config))
    at = open_page(make_app(tmp_path / "empty-runs"), "app_pages/home.py")
    at.button(key="home_train_default").click().run()
    assert not at.exception
    assert started == [PRESETS["draw"]]  # not the CLI's default, the seed recipe
    at = open_page(make_app(tmp_path / "empty-runs"), "app_pages/train.py")
    assert "draw" in at.selectbox(key="train_preset").options
    at.selectbox(key="train_preset").set_value("draw").run()
    draw = PRESETS["draw"]
    assert at.number_input(key="train_hidden").value == draw.hidden
    assert at.slider(key="train_epochs").value == draw.epochs
    assert at.checkbox(key="train_augment").value is True


@pytest.mark.slow
def test_train_default_button_trains_and_activates_a_model(make_app, tmp_path, monkeypatch):
    import ui.components

    quick = TrainConfig(hidden=16, epochs=1, batch_size=512, device="cpu")
    monkeypatch.setattr(ui.components, "PRESETS", {"draw": quick})
    runs_dir = tmp_path / "runs"
    at = open_page(make_app(runs_dir), "app_pages/draw.py")
    at.button(key="draw_train_default").click().run()
    assert not at.exception
    assert "Training a model for you" in " ".join(i.value for i in at.info)
    assert at.get("progress")
    deadline = time.monotonic() + 180
    while not RunStore(runs_dir).list() and time.monotonic() < deadline:
        time.sleep(0.2)
    (info,) = RunStore(runs_dir).list()
    at.run()
    assert not at.exception
    assert at.slider(key="draw_stroke")  # the canvas page is ready
    assert at.sidebar.radio(key="sidebar_model").value == info.run_id
    assert info.config.hidden == 16 and info.dataset


# ------------------------------------------------------------------ with a model


@pytest.mark.slow
def test_home_shows_the_active_model_and_the_dataset(make_app, small_run):
    runs_dir, info = small_run
    at = open_page(make_app(runs_dir), "app_pages/home.py")
    assert not at.exception
    assert at.metric[0].label == "Test accuracy" and at.metric[0].value == f"{info.test_accuracy:.2%}"
    assert info.run_id in markdown_text(at)
    assert "60,000" in markdown_text(at)
    assert at.sidebar.radio(key="sidebar_model").value == info.run_id
    assert has_button(at, "sidebar_delete_confirm")


@pytest.mark.slow
def test_train_page_widgets(make_app, small_run):
    at = open_page(make_app(small_run[0]), "app_pages/train.py")
    assert not at.exception
    assert at.selectbox(key="train_preset").value == "default"
    assert at.number_input(key="train_hidden").value == 128
    assert at.slider(key="train_epochs").value == 5
    assert at.selectbox(key="train_batch").value == 128
    assert at.select_slider(key="train_lr").value == pytest.approx(1e-3)
    assert at.radio(key="train_optimizer").value == "adam"
    assert at.number_input(key="train_seed").value == 0
    assert has_button(at, "train_start") and not has_button(at, "train_stop")
    at.selectbox(key="train_preset").set_value("best").run()
    best = PRESETS["best"]
    assert at.number_input(key="train_hidden").value == best.hidden
    assert at.slider(key="train_epochs").value == best.epochs
    assert at.selectbox(key="train_batch").value == best.batch_size
    assert at.slider(key="train_dropout").value == pytest.approx(best.dropout)
    assert at.selectbox(key="train_schedule").value == best.schedule
    assert at.checkbox(key="train_augment").value is best.augment


@pytest.mark.slow
def test_form_and_filter_values_survive_a_visit_to_another_page(make_app, small_run):
    at = open_page(make_app(small_run[0]), "app_pages/train.py")
    at.selectbox(key="train_preset").set_value("best").run()
    at.switch_page("app_pages/errors.py").run()
    at.selectbox(key="err_true").set_value(3).run()
    at.switch_page("app_pages/home.py").run()
    at.switch_page("app_pages/train.py").run()
    assert at.selectbox(key="train_preset").value == "best"
    assert at.number_input(key="train_hidden").value == PRESETS["best"].hidden
    at.switch_page("app_pages/errors.py").run()
    assert at.selectbox(key="err_true").value == 3


@pytest.mark.slow
@pytest.mark.slow
def test_train_with_a_time_budget_picks_the_epochs(make_app, runs_copy):
    at = open_page(make_app(runs_copy), "app_pages/train.py")
    at.number_input(key="train_hidden").set_value(32)
    at.selectbox(key="train_batch").set_value(512)
    at.number_input(key="train_budget").set_value(4)
    at.button(key="train_start").click().run()
    assert not at.exception
    deadline = time.monotonic() + 120
    while len(RunStore(runs_copy).list()) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    new = next(r for r in RunStore(runs_copy).list() if r.config.hidden == 32)
    assert new.extra["budget"]["seconds"] == 4  # the budget and the plan it led to are in the run
    assert new.config.epochs == new.extra["budget"]["epochs"] == len(new.history) >= 1


def test_train_start_stop_keep(make_app, runs_copy):
    at = open_page(make_app(runs_copy), "app_pages/train.py")
    at.number_input(key="train_hidden").set_value(16)
    at.slider(key="train_epochs").set_value(20)
    at.selectbox(key="train_batch").set_value(16)
    at.button(key="train_start").click().run()
    assert not at.exception
    assert has_button(at, "train_stop")
    assert at.button(key="train_start").disabled  # one job per session
    at.button(key="train_stop").click().run()
    deadline = time.monotonic() + 60
    while not has_button(at, "train_keep") and time.monotonic() < deadline:
        time.sleep(0.2)
        at.run()
    assert has_button(at, "train_discard")
    at.button(key="train_keep").click().run()
    assert not at.exception
    runs = RunStore(runs_copy).list()
    assert len(runs) == 2
    kept = next(r for r in runs if r.stopped)
    assert kept.config.hidden == 16
    assert at.sidebar.radio(key="sidebar_model").value == kept.run_id  # the kept model is now active
    assert not has_button(at, "train_stop")


@pytest.mark.slow
def test_jobs_are_per_session(make_app, runs_copy):
    alice = open_page(make_app(runs_copy), "app_pages/train.py")
    alice.number_input(key="train_hidden").set_value(16)
    alice.slider(key="train_epochs").set_value(20)
    alice.button(key="train_start").click().run()
    assert has_button(alice, "train_stop")
    bob = open_page(make_app(runs_copy), "app_pages/train.py")
    assert not bob.exception
    assert not has_button(bob, "train_stop") and not bob.button(key="train_start").disabled


@pytest.mark.slow
def test_server_wide_cap_of_two_jobs_shows_a_clear_message(make_app, runs_copy):
    for _ in range(2):
        at = open_page(make_app(runs_copy), "app_pages/train.py")
        at.slider(key="train_epochs").set_value(20)
        at.button(key="train_start").click().run()
        assert has_button(at, "train_stop")
    third = open_page(make_app(runs_copy), "app_pages/train.py")
    third.button(key="train_start").click().run()
    assert not third.exception
    assert "already running 2 training jobs, its limit" in third.error[0].value
    assert not has_button(third, "train_stop")


@pytest.mark.slow
def test_confusion_page(make_app, small_run, small_eval):
    _, ev = small_eval
    at = open_page(make_app(small_run[0]), "app_pages/confusion.py")
    assert not at.exception
    assert at.get("plotly_chart")[0].key == "cm"
    assert not at.toggle(key="cm_normalize").value
    assert "Click a cell" in " ".join(i.value for i in at.info)
    table = at.dataframe[0].value
    assert np.allclose(table["recall"], ev.recall) and list(table["test images"]) == list(ev.support)
    at.toggle(key="cm_normalize").set_value(True).run()
    assert not at.exception


def cell_shown(at) -> tuple[str, int]:
    title = next(s.value for s in at.subheader if s.value.startswith("True "))
    grid = at.get("html")[0].value
    return title, grid.count("<figure")


@pytest.mark.slow
def test_confusion_cell_from_the_url(make_app, small_run, small_eval):
    _, ev = small_eval
    errors = ev.confusion - np.diag(np.diag(ev.confusion))
    true, pred = np.unravel_index(np.argmax(errors), errors.shape)
    at = make_app(small_run[0])
    at.query_params["true"], at.query_params["pred"] = str(true), str(pred)
    open_page(at, "app_pages/confusion.py")
    assert not at.exception
    title, count = cell_shown(at)
    n = int(ev.confusion[true, pred])
    assert title == f"True {true}, predicted {pred}: {n} misclassified images"
    assert count == n
    grid = at.get("html")[0].value
    shown = [int(i) for i in re.findall(r'data-index="(\d+)"', grid)]
    assert shown == cell_indices(ev, true, pred).tolist()  # exactly that cell, most confident first


@pytest.mark.slow
def test_confusion_click_on_a_diagonal_cell(make_app, small_run, small_eval):
    _, ev = small_eval
    at = open_page(make_app(small_run[0]), "app_pages/confusion.py")
    at.session_state["cm"] = {
        "selection": {
            "points": [
                {
                    "curve_number": 2,
                    "point_index": 11,
                    "x": 1,
                    "y": 1,
                    "customdata": {"0": 1, "1": 1, "2": int(ev.confusion[1, 1]), "3": 99.0},
                }
            ],
            "point_indices": [11],
            "box": [],
            "lasso": [],
        }
    }
    at.run()
    assert not at.exception
    title, count = cell_shown(at)
    assert title == f"True 1, predicted 1: {ev.confusion[1, 1]} correct images"
    assert count == ev.confusion[1, 1] > 1000
    assert (at.query_params["true"], at.query_params["pred"]) == ("1", "1")
    at.button(key="cm_clear").click().run()
    assert "true" not in at.query_params
    assert "Click a cell" in " ".join(i.value for i in at.info)


@pytest.mark.slow
def test_confusion_bad_link(make_app, small_run):
    at = make_app(small_run[0])
    at.query_params["true"], at.query_params["pred"] = "12", "x"
    open_page(at, "app_pages/confusion.py")
    assert not at.exception
    assert "no valid cell" in at.warning[0].value


def showing(at) -> tuple[int, int]:
    text = next(c.value for c in at.caption if c.value.startswith("Showing "))
    shown, total = re.match(r"Showing (\d+) of ([\d,]+)", text).groups()
    return int(shown), int(total.replace(",", ""))


@pytest.mark.slow
def test_errors_page_filters_and_pick(make_app, small_run, small_eval):
    _, ev = small_eval
    at = open_page(make_app(small_run[0]), "app_pages/errors.py")
    assert not at.exception
    assert keys(at.selectbox) >= {"err_true", "err_pred"}
    assert at.get("plotly_chart")[0].key == "err_grid"
    assert showing(at) == (min(48, ev.errors), ev.errors)
    at.selectbox(key="err_true").set_value(4).run()
    n4 = len(select_predictions(ev, true=4))
    assert showing(at) == (min(48, n4), n4)
    at.toggle(key="err_correct").set_value(True).run()
    assert showing(at) == (48, len(select_predictions(ev, correct=True, true=4)))
    at.slider(key="err_min_conf").set_value(0.99).run()
    assert showing(at)[1] == len(select_predictions(ev, correct=True, true=4, min_confidence=0.99))
    first = int(select_predictions(ev, correct=True, true=4, min_confidence=0.99)[0])
    at.session_state["err_grid"] = {
        "selection": {
            "points": [{"customdata": {"0": first, "1": 4, "2": 4}}],
            "point_indices": [0],
            "box": [],
            "lasso": [],
        }
    }
    at.run()
    assert not at.exception
    assert f"**Test image #{first}**" in markdown_text(at)


@pytest.mark.slow
def test_errors_pagination(make_app, small_run, small_eval):
    _, ev = small_eval
    at = open_page(make_app(small_run[0]), "app_pages/errors.py")
    at.toggle(key="err_correct").set_value(True).run()
    pages = -(-int((ev.labels == ev.predictions).sum()) // 48)
    assert f"(page 1 of {pages})" in " ".join(c.value for c in at.caption)
    at.session_state["err_page"] = 3
    at.run()
    assert f"(page 3 of {pages})" in " ".join(c.value for c in at.caption)


SEVEN = [{"w": 18, "p": [80, 60, 140, 58, 200, 60, 170, 120, 140, 180, 125, 225]}]


def canvas_state(strokes: list, seq: int = 1) -> dict:
    """What the Draw canvas sends after a stroke: every stroke's width and points so far."""
    return {"strokes": {"seq": seq, "strokes": strokes}}


@pytest.mark.slow
def test_draw_page_empty_then_a_drawing_gives_a_prediction_and_its_evidence(make_app, small_run, small_eval):
    from mnistcore.strokes import rasterize

    model, _ = small_eval
    at = open_page(make_app(small_run[0]), "app_pages/draw.py")
    assert not at.exception
    assert at.slider(key="draw_stroke").value == 18
    assert [i.value for i in at.info] == ["Draw a digit"]
    at.session_state["draw_canvas"] = canvas_state(SEVEN)
    at.run()
    assert not at.exception
    probs = predict_prepared(model, prepare_digit(rasterize(SEVEN)))
    expected = int(np.argmax(probs))
    answer = [h.proto.body for h in at.get("html") if "mnl-answer" in h.proto.body]
    assert answer and f'data-prediction="{expected}"' in answer[0]
    assert f"{probs[expected]:.1%} sure" in answer[0]
    assert any(
        f"Why {expected} and not" in (i.proto.imgs[0].caption if i.proto.imgs else "") for i in at.get("image")
    )  # the evidence maps
    assert not at.info
    at.session_state["draw_canvas"] = canvas_state([], seq=2)  # the canvas's own Clear sends no strokes
    at.run()
    assert [i.value for i in at.info] == ["Draw a digit"]


@pytest.mark.slow
def test_sidebar_switch_and_delete(make_app, runs_copy, small_run, mnist):
    result_cfg = TrainConfig(hidden=16, epochs=1, batch_size=512, device="cpu")
    from mnistcore.train import train

    res = train(result_cfg, mnist)
    newer = RunStore(runs_copy).save(
        res.model,
        result_cfg,
        test_accuracy=res.test_accuracy,
        train_seconds=res.train_seconds,
        history=res.history,
        dataset=mnist.checksums,
    )
    older = small_run[1]
    at = open_page(make_app(runs_copy), "app_pages/home.py")
    radio = at.sidebar.radio(key="sidebar_model")
    assert radio.value == newer.run_id and set(radio.options) == {newer.label, older.label}
    radio.set_value(older.run_id).run()
    assert not at.exception
    assert older.run_id in markdown_text(at)
    at.switch_page("app_pages/confusion.py").run()  # the choice holds on other pages
    assert at.sidebar.radio(key="sidebar_model").value == older.run_id
    at.button(key="sidebar_delete_confirm").click().run()
    assert not at.exception
    assert [r.run_id for r in RunStore(runs_copy).list()] == [newer.run_id]
    assert at.sidebar.radio(key="sidebar_model").value == newer.run_id


def test_a_run_deleted_elsewhere_is_announced_not_switched_silently(make_app, runs_copy, small_run):
    at = open_page(make_app(runs_copy), "app_pages/home.py")
    active = at.sidebar.radio(key="sidebar_model").value
    RunStore(runs_copy).delete(active)  # another tab or another user deletes it
    at.run()
    assert not at.exception
    warnings = " ".join(w.value for w in at.sidebar.warning)
    assert f"The model you were using (`{active}`) was deleted" in warnings
    at.run()  # said once, not on every page view
    assert "was deleted" not in " ".join(w.value for w in at.sidebar.warning)
