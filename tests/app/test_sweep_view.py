"""Train page experiments under AppTest: a sweep of two values, and continuing the active model."""

from __future__ import annotations

import time

import pytest

from mnistcore.config import PRESETS
from mnistcore.runs import RunStore
from ui.background import Status
from ui.session import SESSION_ID
from ui.sweep_job import CHAINS

DONE = Status.FINISHED  # shown as "done" in the sweep's table


def keys(elements) -> set[str]:
    return {e.key for e in elements if e.key}


def open_train(at):
    at.run()
    at.switch_page("app_pages/train.py")
    return at.run()


@pytest.fixture(autouse=True)
def _no_chains_left_behind():
    yield
    CHAINS.shutdown()


def _quick_base(at) -> None:
    """The sweep's base: the default preset, one epoch per run."""
    at.selectbox(key="sweep_base").set_value("default").run()
    assert at.number_input(key="sweep_epochs_default").value == PRESETS["default"].epochs  # its own epochs
    at.number_input(key="sweep_epochs_default").set_value(1)


def _wait_chain(at, timeout: float = 240.0):
    chain = CHAINS.get(at.session_state[SESSION_ID])
    assert chain is not None
    assert chain.wait(timeout), "the sweep did not finish in time"
    return chain


@pytest.mark.slow
def test_sweep_of_two_values(make_app, runs_copy):
    at = open_train(make_app(runs_copy))
    assert {"sweep_start", "resume_start"} <= keys(at.button)
    assert at.selectbox(key="sweep_base").value == "active"  # by default the active model's settings
    _quick_base(at)
    at.selectbox(key="sweep_param").set_value("dropout").run()
    assert at.text_input(key="sweep_values_dropout").value == "0,0.2,0.4"  # a new setting brings its own values
    at.selectbox(key="sweep_param").set_value("hidden").run()
    assert at.text_input(key="sweep_values_hidden").value == "32,64,128,256"
    at.text_input(key="sweep_values_hidden").set_value("16, 24")
    at.button(key="sweep_start").click().run()
    assert not at.exception and not at.error
    assert at.button(key="train_start").disabled and at.button(key="sweep_start").disabled
    assert "sweep_stop_after" in keys(at.button) and "sweep_stop_now" in keys(at.button)
    chain = _wait_chain(at)
    at.run()
    assert not at.exception
    snap = chain.snapshot()
    assert [(s.value, s.status) for s in snap.steps] == [(16, DONE), (24, DONE)]
    runs = {r.run_id: r for r in RunStore(runs_copy).list()}
    assert {runs[s.run_id].name for s in snap.steps} == {"hidden=16", "hidden=24"}
    assert all(runs[s.run_id].config.epochs == 1 and runs[s.run_id].config.batch_size == 128 for s in snap.steps)
    table = at.dataframe[0].value
    assert list(table["hidden"]) == [16, 24] and list(table["status"]) == ["done", "done"]
    assert list(table["test accuracy"]) == [s.test_accuracy for s in snap.steps]
    assert "sweep_chart" in {c.key for c in at.get("plotly_chart")}
    assert not at.button(key="sweep_start").disabled  # finished: a new sweep may start
    assert at.sidebar.radio(key="sidebar_model").value == snap.steps[-1].run_id  # the last run is active


@pytest.mark.slow
def test_bad_sweep_values_say_why(make_app, runs_copy):
    at = open_train(make_app(runs_copy))
    at.selectbox(key="sweep_param").set_value("dropout").run()
    at.text_input(key="sweep_values_dropout").set_value("0.1, 1.5")
    at.button(key="sweep_start").click().run()
    assert not at.exception and "dropout" in at.error[0].value
    assert CHAINS.get(at.session_state[SESSION_ID]) is None


@pytest.mark.slow
def test_continue_the_active_model(make_app, runs_copy, small_run):
    parent = small_run[1]
    at = open_train(make_app(runs_copy))
    at.number_input(key="resume_epochs").set_value(1)
    at.button(key="resume_start").click().run()
    assert not at.exception and not at.error
    chain = _wait_chain(at)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any("continuing" in s.value for s in at.success):
        at.run()
    step = chain.snapshot().steps[0]
    assert step.status == DONE
    child = RunStore(runs_copy).info(step.run_id)
    assert child.parent == parent.run_id and len(child.history) == len(parent.history) + 1
    assert [h["epoch"] for h in child.history] == [1, 2]
    assert child.config == parent.config.with_(
        epochs=1, report_every=child.config.report_every, precision=child.config.precision
    )  # "auto" resolved
    assert at.sidebar.radio(key="sidebar_model").value == child.run_id
