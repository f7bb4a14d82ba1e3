"""Two processes sharing one runs dir (two server replicas, or a server and the CLI): nothing lost or corrupt."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC
from datetime import datetime as real_datetime
from pathlib import Path

import pytest
import torch

from mnistcore import runs as runs_mod
from mnistcore.runs import META, RunError, RunStore
from tests.runs_stress import CONFIG, model_for

ROOT = Path(__file__).resolve().parent.parent
SECONDS = 12.0


def _save(store: RunStore, tag: int):
    return store.save(
        model_for(tag), CONFIG, test_accuracy=0.5, train_seconds=0.1, history=[], dataset={}, extra={"tag": tag}
    )


def test_a_taken_run_id_gets_a_fresh_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fixed = real_datetime(2026, 12, 6, 7, 0, 0, tzinfo=UTC)

    class Frozen(real_datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[override]
            return fixed

    tokens = iter(["aaaaaa", "aaaaaa", "aaaaaa", "bbbbbb"])
    monkeypatch.setattr(runs_mod, "datetime", Frozen)
    monkeypatch.setattr(runs_mod.secrets, "token_hex", lambda n=3: next(tokens))
    store = RunStore(tmp_path)
    first, second = _save(store, 1), _save(store, 2)  # the second draws the first's id twice, then a free one
    assert (first.run_id, second.run_id) == ("20261206-070000-aaaaaa", "20261206-070000-bbbbbb")
    assert second.extra["tag"] == 2 and json.loads((second.path / META).read_text())["run_id"] == second.run_id
    assert torch.equal(store.load(first.run_id)[0].fc1.weight, model_for(1).fc1.weight)  # not overwritten
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.run_id, second.run_id]


def test_a_rename_of_a_run_deleted_elsewhere_says_so(tmp_path: Path) -> None:
    a, b = RunStore(tmp_path), RunStore(tmp_path)  # two processes' stores, in effect
    info = _save(a, 1)
    b.delete(info.run_id)
    with pytest.raises(RunError, match="deleted elsewhere"):
        a.rename(info.run_id, "x")
    with pytest.raises(RunError, match="already deleted elsewhere"):
        a.delete(info.run_id)
    assert list(tmp_path.iterdir()) == []


def test_two_processes_saving_renaming_deleting_lose_nothing(tmp_path: Path) -> None:
    root, go = tmp_path / "runs", tmp_path / "go"
    root.mkdir()
    logs = [tmp_path / f"log{k}.jsonl" for k in (1, 2)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.runs_stress", str(root), str(SECONDS), str(k), str(log), str(go)],
            cwd=ROOT,
            env=env,
        )
        for k, log in zip((1, 2), logs, strict=True)
    ]
    try:
        deadline = time.monotonic() + 120
        while not all(Path(f"{log}.ready").exists() for log in logs):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "a worker did not start"
            time.sleep(0.05)
        go.touch()
        assert [p.wait(timeout=SECONDS + 120) for p in procs] == [0, 0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    events = [json.loads(line) for log in logs for line in log.read_text().splitlines()]
    ops = Counter(e["op"] for e in events)
    assert ops["save"] >= 20 and ops["rename"] >= 10 and ops["delete"] >= 5, ops
    assert not [e for e in events if e["op"] == "bad"]
    refused = [e["why"] for e in events if e["op"].endswith("-refused")]
    assert all("deleted" in why or "no run" in why for why in refused), refused  # only lost races, said so

    # An id can come back after its run was deleted (ids here are drawn from 256 values a second), but a
    # run never replaces another: an id is saved at most once more than it is deleted.
    saves = Counter(e["id"] for e in events if e["op"] == "save")
    tags: dict[str, set[int]] = {}
    for e in events:
        if e["op"] == "save":
            tags.setdefault(e["id"], set()).add(e["tag"])
    deleted = Counter(e["id"] for e in events if e["op"] == "delete")
    assert all(saves[rid] - deleted[rid] in (0, 1) for rid in saves | deleted), "a run lost, or deleted twice"
    names = {}
    for e in events:
        if e["op"] == "rename":
            names.setdefault(e["id"], set()).add(e["name"])

    store = RunStore(root)
    listed = {info.run_id: info for info in store.list()}
    assert set(listed) == {rid for rid in saves if saves[rid] > deleted[rid]}, "a run lost, or a deleted one back"
    for rid, info in listed.items():
        model, _ = store.load(rid)
        tag = info.extra["tag"]
        assert tag in tags[rid] and torch.equal(model.fc1.weight, model_for(tag).fc1.weight)
        assert info.name is None or info.name in names.get(rid, set())
    assert sorted(p.name for p in root.iterdir()) == sorted(listed), "temp or trash folders left behind"
    assert not [f for rid in listed for f in (root / rid).iterdir() if f.name.endswith(".tmp")]
