"""The dashboard's Streamlit config: users never see tracebacks, no full collection after every run (issue 10)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

CONFIG = Path(__file__).resolve().parent.parent / ".streamlit" / "config.toml"


def test_error_details_are_hidden_from_users(monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit import config
    from streamlit.elements import exception

    value = tomllib.loads(CONFIG.read_text())["client"]["showErrorDetails"]
    assert value in {o.value for o in config.ShowErrorDetailsConfigOptions}  # a value 1.67 knows
    # What Streamlit itself decides to show for an uncaught exception with this value: nothing but its
    # generic message (the legacy `false` would still show the traceback).
    real_get = config.get_option
    monkeypatch.setattr(config, "get_option", lambda key: value if key == "client.showErrorDetails" else real_get(key))
    shown = exception._error_detail_visibility(apply_show_error_details=True)
    assert (shown.show_message, shown.show_trace, shown.show_type) == (False, False, False)


def test_no_full_garbage_collection_after_every_page_run(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    from streamlit import config

    from ui import server_gc

    assert tomllib.loads(CONFIG.read_text())["runner"]["postScriptGC"] is False
    # Started without our config file (from another folder): the app switches it off itself, once.
    monkeypatch.setattr(server_gc, "_configured", False)
    before = config.get_option("runner.postScriptGC")
    config.set_option("runner.postScriptGC", True)
    frozen = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(True))
    try:
        server_gc.configure()
        assert config.get_option("runner.postScriptGC") is False and frozen == [True]
        server_gc.configure()
        assert frozen == [True]
    finally:
        config.set_option("runner.postScriptGC", before)


def test_upload_limit_is_what_the_largest_upload_needs() -> None:
    from mnistcore.drawings import MAX_IMAGE_BYTES, MAX_ZIP_BYTES

    server = tomllib.loads(CONFIG.read_text())["server"]
    assert server["maxUploadSize"] == MAX_ZIP_BYTES >> 20 == 200  # the drawings zip import, in MB
    assert MAX_IMAGE_BYTES >> 20 == 10  # each picture's uploader asks for this (ui/draw_view.py, drawings_view.py)
