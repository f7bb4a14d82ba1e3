"""AppTest: the Inside-the-network page, and the why-this-not-that maps on the Errors and Confusion pages."""

from __future__ import annotations

import base64
import json
import re
import shutil

import numpy as np
import pytest
import torch

from mnistcore.evaluate import cell_indices, evaluate, select_predictions
from mnistcore.explain import explain
from mnistcore.model import ShallowNet
from mnistcore.normalize import normalize
from mnistcore.runs import RunStore
from tests.app.conftest import SMALL

PAGE = "app_pages/network.py"


def open_page(at, page: str):
    if not at._tree:  # AppTest needs one run before switching pages
        at.run()
    at.switch_page(page)
    return at.run()


def subheaders(at) -> list[str]:
    return [s.value for s in at.subheader]


def grid_units(at) -> list[int]:
    """The unit numbers the clickable grid shows, in order (from its markers' customdata)."""
    chart = next(c for c in at.get("plotly_chart") if c.key == "net_grid")
    traces = json.loads(chart.proto.spec)["data"]
    return [int(c[0]) for c in traces[2]["customdata"]]


def plotly_array(value) -> np.ndarray:
    """A plotly JSON array: a list, or a typed array {"dtype", "bdata"} (base64)."""
    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
    return np.asarray(value)


def images(at) -> list[str]:
    return [im.proto.imgs[0].caption for im in at.get("image")]


@pytest.fixture(scope="module")
def small_model(small_run):
    runs_dir, info = small_run
    return RunStore(runs_dir).load(info.run_id)[0]


@pytest.fixture(scope="module")
def activations(small_model, app_data_dir):
    from mnistcore.data import load_mnist

    data = load_mnist(app_data_dir)
    with torch.no_grad():
        acts = torch.relu(small_model.fc1(normalize(data.test_images))).numpy()
    return acts, data


def test_network_page_without_a_model(make_app, tmp_path):
    at = open_page(make_app(tmp_path / "empty-runs"), PAGE)
    assert not at.exception
    assert at.button(key="network_train_default").label.startswith("Train a model for drawing")


@pytest.mark.slow
def test_units_in_importance_order_and_the_top_unit_in_detail(make_app, small_run, small_model, activations):
    acts, _ = activations
    w2 = small_model.fc2.weight.detach().numpy()
    importance = acts.mean(0) * np.linalg.norm(w2, axis=0)
    order = np.argsort(-importance, kind="stable")
    at = open_page(make_app(small_run[0]), PAGE)
    assert not at.exception
    assert at.title[0].value == "Inside the network"
    assert "32 hidden units" in at.markdown[0].value
    assert grid_units(at) == order.tolist()  # 32 units: one page, most important first
    top = int(order[0])
    assert subheaders(at)[0] == f"Unit #{top}"
    assert at.number_input(key="net_unit_input").value == top
    assert {c.key for c in at.get("plotly_chart")} >= {"net_grid", "net_out_weights", "net_class_act"}
    bars = next(c for c in at.get("plotly_chart") if c.key == "net_out_weights")
    np.testing.assert_allclose(plotly_array(json.loads(bars.proto.spec)["data"][0]["y"]), w2[:, top], rtol=1e-5)
    grid = next(h.value for h in at.get("html") if "data-index" in h.value)
    shown = [int(i) for i in re.findall(r'data-index="(\d+)"', grid)]
    np.testing.assert_allclose(acts[shown, top], np.sort(acts[:, top])[::-1][:8], rtol=1e-5)
    assert any(c.startswith("Input weights") for c in images(at))
    assert "Each digit's template" in subheaders(at)


@pytest.mark.slow
def test_picking_a_unit_by_click_or_by_number(make_app, small_run):
    at = open_page(make_app(small_run[0]), PAGE)
    at.session_state["net_grid"] = {
        "selection": {"points": [{"customdata": {"0": 5, "1": 9}}], "point_indices": [0], "box": [], "lasso": []}
    }
    at.run()
    assert not at.exception
    assert subheaders(at)[0] == "Unit #5"
    assert at.number_input(key="net_unit_input").value == 5  # the box follows the click
    at.number_input(key="net_unit_input").set_value(17).run()
    assert subheaders(at)[0] == "Unit #17"
    at.run()  # the old click is not acted on again
    assert subheaders(at)[0] == "Unit #17"


@pytest.mark.slow
def test_wide_net_is_paginated(make_app, small_run, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(small_run[0], runs)
    torch.manual_seed(0)
    wide = RunStore(runs).save(
        ShallowNet(100).eval(), SMALL.with_(hidden=100), test_accuracy=0.1, train_seconds=0.0, history=[], dataset={}
    )
    at = open_page(make_app(runs), PAGE)  # the newest run (the wide one) is active
    assert not at.exception
    first = grid_units(at)
    assert len(first) == 48 and subheaders(at)[0] == f"Unit #{first[0]}"
    at.session_state["net_page"] = 3
    at.run()
    last = grid_units(at)
    assert len(last) == 100 - 96 and not set(last) & set(first)
    assert wide.run_id in at.session_state["net_unit"]


@pytest.mark.slow
def test_errors_pick_shows_why_maps(make_app, small_run, small_model, activations):
    _, data = activations
    ev = evaluate(small_model, data.test_images, data.test_labels)
    first = int(select_predictions(ev)[0])  # the most confident error: on the grid's first page
    true = int(ev.labels[first])
    pred = int(explain(small_model, data.test_images[first].numpy() / np.float32(255)).digit)
    at = open_page(make_app(small_run[0]), "app_pages/errors.py")
    at.session_state["err_grid"] = {
        "selection": {
            "points": [{"customdata": {"0": first, "1": true, "2": pred}}],
            "point_indices": [0],
            "box": [],
            "lasso": [],
        }
    }
    at.run()
    assert not at.exception
    assert any(c.startswith(f"Why {pred} and not {true}:") for c in images(at))


@pytest.mark.slow
def test_confusion_cell_explains_a_picked_image(make_app, small_run, small_model, activations):
    _, data = activations
    ev = evaluate(small_model, data.test_images, data.test_labels)
    errors = ev.confusion - np.diag(np.diag(ev.confusion))
    true, pred = (int(v) for v in np.unravel_index(np.argmax(errors), errors.shape))
    at = make_app(small_run[0])
    at.query_params["true"], at.query_params["pred"] = str(true), str(pred)
    open_page(at, "app_pages/confusion.py")
    assert not at.exception
    box = at.selectbox(key=f"cm_explain_{true}_{pred}")
    idx = cell_indices(ev, true, pred).tolist()
    assert list(box.options) == [f"test image #{i} ({ev.confidence[i]:.2f})" for i in idx]
    assert f"#{idx[0]}: true {true}, predicted {pred}" in images(at)
    assert any(c.startswith(f"Why {pred} and not {true}:") for c in images(at))
    box.set_value(idx[1]).run()
    assert f"#{idx[1]}: true {true}, predicted {pred}" in images(at)
