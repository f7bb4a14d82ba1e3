"""The Runs page and ?run= links under AppTest: table, selection from the URL, comparison, rename, delete."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from mnistcore.config import PRESETS, TrainConfig
from mnistcore.data import load_mnist
from mnistcore.evaluate import evaluate
from mnistcore.experiments import compare_evaluations
from mnistcore.runs import RunStore
from ui import runs_view

SMALL = TrainConfig(hidden=32, epochs=1, batch_size=256, device="cpu")  # as the small run of conftest.py


def open_page(at, page: str):
    if not at._tree:
        at.run()
    at.switch_page(page)
    return at.run()


@pytest.fixture(scope="module")
def family(small_run, app_data_dir, tmp_path_factory) -> tuple[Path, str, str]:
    """A runs dir with the small run (parent) and a run that continues it for one more epoch (child)."""
    runs = tmp_path_factory.mktemp("family") / "runs"
    shutil.copytree(small_run[0], runs)
    store = RunStore(runs)
    parent = small_run[1]
    from mnistcore.train import train

    init, _ = store.load_state(parent.run_id)
    data = load_mnist(app_data_dir)
    res = train(SMALL.with_(lr=3e-3), data, init=init)
    child = store.save(
        res.model,
        res.config,
        test_accuracy=res.test_accuracy,
        train_seconds=res.total_seconds,
        history=res.history,
        dataset=data.checksums,
        name="child",
        parent=parent.run_id,
        optimizer_state=res.optimizer_state,
        rng_state=res.rng_state,
    )
    return runs, parent.run_id, child.run_id


@pytest.fixture
def family_copy(family, tmp_path) -> tuple[Path, str, str]:
    runs, a, b = family
    dest = tmp_path / "runs"
    shutil.copytree(runs, dest)
    return dest, a, b


def test_runs_page_lists_every_run(make_app, family):
    runs, parent, child = family
    at = open_page(make_app(runs), "app_pages/runs.py")
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["run id"]) == [child, parent]  # newest first
    assert list(table["name"]) == ["child", ""] and list(table["epochs"]) == [2, 1]
    assert table["parent"].iloc[0] == runs_view.short_label(RunStore(runs).info(parent))
    assert table["parent"].iloc[1] == ""
    assert list(table["shape"]) == ["784-32-10"] * 2
    assert "Tick runs" in " ".join(c.value for c in at.caption)
    assert not at.get("plotly_chart")  # nothing selected, nothing compared


@pytest.mark.slow
def test_two_runs_from_a_link_are_compared(make_app, family, app_data_dir):
    runs, parent, child = family
    at = make_app(runs)
    at.query_params["compare"] = f"{parent},{child}"
    open_page(at, "app_pages/runs.py")
    assert not at.exception
    charts = {c.key for c in at.get("plotly_chart")}
    assert {"runs_curves_chart", "runs_recall"} <= charts
    diff = at.dataframe[1].value  # (AppTest keeps keys only of selectable tables)
    assert {"lr", "epochs trained", "continues"} <= set(diff.index)
    # The fixed / broken galleries hold exactly the engine's images, and the sentence gives the counts.
    store, data = RunStore(runs), load_mnist(app_data_dir)
    evs = [evaluate(store.load(r)[0], data.test_images, data.test_labels) for r in (parent, child)]
    cmp = compare_evaluations(store.info(parent), evs[0], store.info(child), evs[1])
    text = " ".join(m.value for m in at.markdown)
    assert f"**{cmp.fixed}** test images right" in text and f"**{cmp.broken}** wrong" in text
    grids = [h.value for h in at.get("html")]
    assert len(grids) == 2
    assert grids[0].count("<figure") == min(cmp.fixed, runs_view.GALLERY_MAX)
    assert grids[1].count("<figure") == min(cmp.broken, runs_view.GALLERY_MAX)
    assert f'data-index="{cmp.fixed_indices[0]}"' in grids[0]
    dl = {b.key for b in at.get("download_button")}
    assert {f"runs_dl_{r}_{n}" for r in (parent, child) for n in ("meta.json", "predictions.csv")} <= dl
    # Switching the curves to seconds keeps the page working.
    at.get("button_group")[0].set_value("seconds").run()
    assert not at.exception


def test_selection_keeps_unknown_ids_out(make_app, family):
    runs, parent, _ = family
    at = make_app(runs)
    at.query_params["compare"] = f"nope,{parent},../x"
    open_page(at, "app_pages/runs.py")
    assert not at.exception
    assert at.session_state[runs_view.SELECTED] == [parent]
    assert at.query_params["compare"] == [parent] or at.query_params["compare"] == parent


def test_rename_and_make_active(make_app, family_copy):
    runs, parent, child = family_copy
    at = make_app(runs)
    at.query_params["compare"] = parent
    open_page(at, "app_pages/runs.py")
    at.text_input(key=f"runs_name_{parent}").set_value("  the first one ")
    at.button(key="runs_rename").click().run()
    assert not at.exception
    assert RunStore(runs).info(parent).name == "the first one"
    assert at.dataframe[0].value["name"].iloc[1] == "the first one"
    at.text_input(key=f"runs_name_{parent}").set_value("bad\u0007name")
    at.button(key="runs_rename").click().run()
    assert "control characters" in at.error[0].value and RunStore(runs).info(parent).name == "the first one"
    assert at.sidebar.radio(key="sidebar_model").value == child
    at.button(key="runs_activate").click().run()
    assert at.sidebar.radio(key="sidebar_model").value == parent


def test_delete_selected(make_app, family_copy):
    runs, parent, child = family_copy
    at = make_app(runs)
    at.query_params["compare"] = child
    open_page(at, "app_pages/runs.py")
    at.button(key="runs_delete_confirm").click().run()
    assert not at.exception
    assert [r.run_id for r in RunStore(runs).list()] == [parent]
    assert list(at.dataframe[0].value["run id"]) == [parent]
    assert at.session_state[runs_view.SELECTED] == []


def test_runs_page_without_runs(make_app, tmp_path):
    at = open_page(make_app(tmp_path / "none"), "app_pages/runs.py")
    assert not at.exception and "No saved runs" in at.info[0].value


# ---------------------------------------------------------------- ?run= links


def test_run_link_picks_the_model(make_app, family):
    runs, parent, _ = family
    at = make_app(runs)
    at.query_params["run"] = parent  # the newest (child) would be active otherwise
    open_page(at, "app_pages/errors.py")
    assert not at.exception
    assert at.sidebar.radio(key="sidebar_model").value == parent
    assert at.query_params["run"] in (parent, [parent])


def test_url_follows_the_sidebar_choice(make_app, family):
    runs, parent, child = family
    at = open_page(make_app(runs), "app_pages/home.py")
    assert at.query_params["run"] in (child, [child])
    at.sidebar.radio(key="sidebar_model").set_value(parent).run()
    assert at.query_params["run"] in (parent, [parent])


def test_link_to_a_deleted_run_says_so_and_offers_the_active_model(make_app, family):
    runs, _, child = family
    at = make_app(runs)
    at.query_params["run"] = "20200101-000000-dead00"
    open_page(at, "app_pages/confusion.py")
    assert not at.exception
    assert "does not exist" in at.warning[0].value
    assert not at.get("plotly_chart")  # the page waits for the user's answer
    at.button(key="missing_run_active").click().run()
    assert not at.exception and not any("does not exist" in w.value for w in at.warning)
    assert at.get("plotly_chart")[0].key == "cm"
    assert at.query_params["run"] in (child, [child])
    np.testing.assert_equal(at.sidebar.radio(key="sidebar_model").value, child)


def test_recipe_names_the_draw_distortions():
    assert "augment 60% (draw)" in runs_view.recipe(PRESETS["draw"].with_(augment_share=0.6))
    assert "(draw)" not in runs_view.recipe(PRESETS["best"])
