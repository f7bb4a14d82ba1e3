"""The server's model caches when another server process shares the runs dir: renames show, deletes are seen."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mnistcore.config import TrainConfig
from mnistcore.model import ShallowNet
from mnistcore.runs import RunStore
from ui import cache


def test_a_rename_or_delete_by_another_process_shows_in_the_cached_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path))
    torch.manual_seed(0)
    info = RunStore(tmp_path).save(
        ShallowNet(16).eval(), TrainConfig(hidden=16), test_accuracy=0.5, train_seconds=1.0, history=[], dataset={}
    )
    model, first = cache.get_model(info.run_id)
    assert first.name is None

    other = RunStore(tmp_path)  # the other server
    other.rename(info.run_id, "renamed on B")
    again, renamed = cache.get_model(info.run_id)
    assert renamed.name == "renamed on B" and again is model  # the info is re-read; the weights stay cached

    other.delete(info.run_id)
    assert cache.get_model(info.run_id) is None  # not served from the cache as if it still existed
    assert cache.get_ood(info.run_id) is None
    assert cache.get_evaluation(info.run_id) is None
