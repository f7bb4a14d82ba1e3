"""Ownership on a server with sign-in: who may rename, delete or continue a run, quotas, and `runs --json` owner.

The refusals are checked where the action happens (RunStore / DrawingStore), with the disk compared
byte for byte before and after.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mnistcore.config import TrainConfig
from mnistcore.drawings import DrawingQuotaError, DrawingStore
from mnistcore.model import ShallowNet
from mnistcore.owners import Actor, NotAllowedError, Owner, check_change, may_change
from mnistcore.runs import META, RunError, RunNotAllowedError, RunQuotaError, RunStore
from tests.test_cli import run_cli
from tests.test_drawings import canvas

ISS = "https://id.example.edu"
ALICE = Owner(ISS, "alice-sub", "alice@example.edu")
BOB = Owner(ISS, "bob-sub", "bob@example.edu")
A, B = Actor(ALICE), Actor(BOB)
TEACHER = Actor(Owner(ISS, "teacher-sub", "t@example.edu"), instructor=True)
CONFIG = TrainConfig(hidden=16, epochs=1)


def _save(store: RunStore, name: str | None = None):
    torch.manual_seed(0)
    return store.save(
        ShallowNet(16).eval(),
        CONFIG,
        test_accuracy=0.9,
        train_seconds=1.0,
        history=[{"epoch": 1}],
        dataset={},
        name=name,
    )


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root with its bytes: 'nothing changed on disk' is this staying equal."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_identity_is_issuer_and_subject_not_email() -> None:
    moved = Owner(ISS, "alice-sub", "alice@new-domain.edu")
    assert ALICE.same_person(moved) and ALICE.key == moved.key and len(ALICE.key) == 32
    assert not ALICE.same_person(Owner("https://other-issuer", "alice-sub", "alice@example.edu"))
    assert not ALICE.same_person(Owner(ISS, "mallory", "alice@example.edu"))  # same email, another person
    assert Owner.from_record(ALICE.record()) == ALICE and Owner.from_record(None) is None
    assert Owner(ISS, "s").display == "s" and ALICE.display == "alice@example.edu"
    for bad in ({"iss": ISS}, {"iss": "", "sub": "x"}, "alice", {"iss": ISS, "sub": "a\nb"}):
        with pytest.raises(ValueError):
            Owner.from_record(bad)


def test_rules() -> None:
    assert may_change(None, ALICE) and may_change(None, None)  # single user: everything
    assert may_change(A, ALICE) and not may_change(B, ALICE)
    assert may_change(TEACHER, ALICE) and may_change(TEACHER, None)
    assert not may_change(A, None)  # a command-line run is the operator's
    assert not may_change(Actor(None), ALICE)  # signed out
    with pytest.raises(NotAllowedError, match=r"alice@example.edu.s, and only its owner or an instructor can delete"):
        check_change(B, ALICE, "delete", "run X")
    with pytest.raises(NotAllowedError, match="Sign in to rename"):
        check_change(Actor(None), ALICE, "rename", "run X")


def test_another_user_cannot_rename_delete_or_continue(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    info = _save(RunStore(root, actor=A), name="mine")
    assert info.owner == ALICE
    assert json.loads((info.path / META).read_text())["owner"] == ALICE.record()
    before = _snapshot(root)
    bob = RunStore(root, actor=B)
    with pytest.raises(RunNotAllowedError, match=r"cannot rename run .*alice@example.edu's.*Nothing was changed"):
        bob.rename(info.run_id, "stolen")
    with pytest.raises(RunNotAllowedError, match="cannot delete"):
        bob.delete(info.run_id)
    with pytest.raises(RunNotAllowedError, match="cannot continue"):
        bob.load_state(info.run_id)
    with pytest.raises(RunError):  # the pages' `except RunError` shows the message
        bob.delete(info.run_id)
    with pytest.raises(PermissionError):
        bob.delete(info.run_id)
    assert _snapshot(root) == before
    assert [r.run_id for r in bob.list()] == [info.run_id]  # everyone still sees it
    # Its owner and an instructor may; so may the single-user store (no actor).
    assert RunStore(root, actor=A).rename(info.run_id, "renamed").name == "renamed"
    assert RunStore(root, actor=TEACHER).rename(info.run_id, "by teacher").name == "by teacher"
    RunStore(root, actor=A).load_state(info.run_id)
    RunStore(root, actor=TEACHER).delete(info.run_id)
    assert RunStore(root).list() == []


def test_unowned_runs_are_the_instructors(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    info = _save(RunStore(root))  # the CLI: no owner
    assert info.owner is None and json.loads((info.path / META).read_text())["owner"] is None
    before = _snapshot(root)
    with pytest.raises(RunNotAllowedError, match="no owner"):
        RunStore(root, actor=A).delete(info.run_id)
    with pytest.raises(RunNotAllowedError, match="Sign in to delete"):
        RunStore(root, actor=Actor(None)).delete(info.run_id)
    assert _snapshot(root) == before
    RunStore(root, actor=TEACHER).delete(info.run_id)


def test_run_quota_refuses_before_training(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    alice = RunStore(root, actor=Actor(ALICE, max_runs=2))
    _save(alice)
    alice.check_writable(CONFIG)
    _save(alice)
    with pytest.raises(RunQuotaError, match=r"you have 2 saved runs.*is 2: delete some of yours on the Runs page"):
        alice.check_writable(CONFIG)
    RunStore(root, actor=Actor(BOB, max_runs=2)).check_writable(CONFIG)  # Bob's quota is his own
    RunStore(root).check_writable(CONFIG)  # no quota without sign-in
    assert len(alice.owned_by(ALICE)) == 2 and alice.owned_by(BOB) == []


def test_job_refuses_to_start_when_quota_is_full(tmp_path: Path, tiny_data) -> None:
    from ui.background import JobError
    from ui.jobs import JobRegistry

    store = RunStore(tmp_path / "runs", actor=Actor(ALICE, max_runs=1))
    _save(store)
    with pytest.raises(JobError, match="Training cannot start: you have 1 saved runs"):
        JobRegistry().start(ALICE.key, CONFIG, tiny_data, store)


def test_drawings_quota(tmp_path: Path) -> None:
    store = DrawingStore(tmp_path, ALICE.key, max_drawings=2)
    store.add(canvas(1), 1)
    store.add(canvas(2), 2)
    before = _snapshot(tmp_path)
    with pytest.raises(DrawingQuotaError, match=r"you keep 2 drawings.*most one person may keep on this server is 2"):
        store.add(canvas(3), 3)
    with pytest.raises(DrawingQuotaError):
        store.add_many([canvas(3)], 3)
    assert _snapshot(tmp_path) == before
    assert DrawingStore(tmp_path, BOB.key, max_drawings=2).list() == []  # another person's collection


def test_runs_json_owner(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    _save(RunStore(root, actor=A))
    _save(RunStore(root, actor=Actor(Owner(ISS, "no-email"))))
    _save(RunStore(root))
    code, out, _ = run_cli("runs", "--runs-dir", root, "--json")
    assert code == 0
    assert sorted(str(r["owner"]) for r in json.loads(out)) == ["None", "alice@example.edu", "no-email"]
