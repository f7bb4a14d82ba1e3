"""The health page's engine: percentiles, page-run windows, disk per owner and collection, process memory;
and the in-memory record of page runs (ui/activity.py) it reads."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from mnistcore import health
from ui.activity import Activity


@pytest.mark.parametrize(
    "values", [[1.0], [3.0, 1.0], [5.0, 1.0, 4.0, 2.0, 3.0], list(np.random.default_rng(0).random(101))]
)
@pytest.mark.parametrize("q", [0, 25, 50, 95, 100])
def test_percentile_matches_numpy(values: list[float], q: float) -> None:
    assert health.percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_empty_and_out_of_range() -> None:
    assert health.percentile([], 50) is None
    with pytest.raises(ValueError, match=r"0\.\.100"):
        health.percentile([1.0], 101)


def test_timings_keep_only_the_window_and_split_by_page() -> None:
    now = 1000.0
    samples = [(now - 400, 9.0, "draw"), (now - 200, 0.1, "draw"), (now - 100, 0.3, "draw"), (now - 5, 0.2, "runs")]
    overall, by_page = health.timings(samples, now, window=300)
    assert overall.count == 3 and overall.max == 0.3  # the 9 s run is older than 5 minutes
    assert overall.p50 == pytest.approx(0.2)
    assert by_page["draw"].count == 2 and by_page["draw"].p50 == pytest.approx(0.2)
    assert by_page["runs"].p95 == pytest.approx(0.2)
    empty, pages = health.timings([], now)
    assert (empty.count, empty.p50, empty.p95, pages) == (0, None, None, {})


def _run(root: Path, name: str, owner: str | dict | None, size: int) -> None:
    (root / name).mkdir(parents=True)
    meta = {"format": 1} | ({"owner": owner} if owner else {})
    (root / name / "meta.json").write_text(json.dumps(meta))
    (root / name / "model.safetensors").write_bytes(os.urandom(size))


def test_runs_disk_by_owner(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _run(runs, "a", "alice@example.com", 100_000)
    _run(runs, "b", "alice@example.com", 50_000)
    _run(runs, "c", None, 20_000)
    _run(runs, "f", {"iss": "https://id.example", "sub": "u1", "email": "alice@example.com"}, 10_000)
    _run(runs, "g", {"iss": "https://id.example", "sub": "u2", "email": None}, 10_000)
    _run(runs, ".tmp-d-x", "bob@example.com", 10_000)  # a save in progress is not a run
    (runs / "e").mkdir()  # no meta.json: counted, without an owner
    got = health.runs_disk_by_owner(runs)
    assert set(got) == {"alice@example.com", "u2", health.NO_OWNER}  # as text, or the sign-in record
    assert got["alice@example.com"][0] == 3 and got[health.NO_OWNER][0] == 2 and got["u2"][0] == 1
    assert got["alice@example.com"][1] >= 150_000
    assert health.tree_bytes(runs / "a") >= 100_000
    assert health.runs_disk_by_owner(tmp_path / "missing") == {}


def test_drawings_disk_by_collection_and_links_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "drawings"
    for coll, n in (("default", 3), ("abc123", 1)):
        for i in range(n):
            d = root / coll / f"d{i}"
            d.mkdir(parents=True)
            (d / "original.png").write_bytes(os.urandom(5000))
    big = tmp_path / "big"
    big.write_bytes(os.urandom(1_000_000))
    (root / "default" / "link").symlink_to(big)
    got = health.drawings_disk_by_collection(root)
    assert {k: v[0] for k, v in got.items()} == {"default": 3, "abc123": 1}
    assert 15_000 <= got["default"][1] < 1_000_000  # the linked megabyte is not counted


def test_rss_of_this_process_and_of_none() -> None:
    rss = health.rss_bytes(os.getpid())
    if not Path("/proc/self/status").exists():
        pytest.skip("no /proc here")
    assert rss is not None and 10e6 < rss < 100e9
    assert health.rss_bytes(2**22 + 12345) is None  # beyond pid_max: no such process


def test_activity_is_bounded_ordered_and_thread_safe() -> None:
    act = Activity(max_samples=1000, max_sessions=3)

    def hammer(k: int) -> None:
        for i in range(500):
            act.record(f"p{k}", 0.001 * i, session_id=f"s{(k * 500 + i) % 5}", user=None)

    threads = [threading.Thread(target=hammer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    samples = act.samples()
    assert len(samples) == 1000  # 2000 recorded, the oldest dropped
    assert [s[0] for s in samples] == sorted(s[0] for s in samples)
    assert len(act.sessions()) == 3


def test_activity_times_a_block_that_stops_early() -> None:
    act = Activity()

    class Stop(Exception):
        pass

    with pytest.raises(Stop), act.timed("draw", "sid", "a@b.c"):
        raise Stop  # st.stop() / st.rerun() end a page run with an exception
    ((_, seconds, page),) = act.samples()
    assert page == "draw" and 0 <= seconds < 1
    (seen,) = act.sessions()
    assert (seen.session_id, seen.user, seen.page) == ("sid", "a@b.c", "draw")


def test_queued_sweep_steps_are_listed_with_their_owner(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from mnistcore.config import TrainConfig
    from ui import server_view
    from ui.background import Status
    from ui.sweep_job import ChainSnapshot, Step

    steps = tuple(
        Step(value=v, config=TrainConfig(hidden=v), status=s)
        for v, s in ((32, Status.FINISHED), (64, Status.RUNNING), (128, Status.WAITING), (256, Status.WAITING))
    )
    snap = ChainSnapshot("c1", "sweep", "hidden", steps, running=True, stop_requested=False, message="Training")
    chain = SimpleNamespace(session_id="f" * 32, snapshot=lambda: snap)
    monkeypatch.setattr(server_view.CHAINS, "chains", lambda: [chain])
    monkeypatch.setattr(server_view.REGISTRY, "jobs", lambda: [])
    monkeypatch.setattr(server_view.TASKS, "tasks", lambda: [])
    running, queued = server_view._work_rows()
    assert running == []
    assert [q["work"] for q in queued] == ["sweep step 3/4 (hidden=128)", "sweep step 4/4 (hidden=256)"]
    assert {q["owner"] for q in queued} == {"f" * 8}
