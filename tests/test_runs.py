"""Saved runs: round trip, listing, deletion, refusal of anything that is not exactly our format, atomic saves."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from mnistcore import runs as runs_mod
from mnistcore.config import TrainConfig
from mnistcore.data import MnistData
from mnistcore.model import ShallowNet
from mnistcore.normalize import normalize
from mnistcore.runs import META, WEIGHTS, RunError, RunStore, default_runs_dir

CONFIG = TrainConfig(hidden=32, epochs=2, dropout=0.1, seed=3)
HISTORY = [{"epoch": 1, "epochs": 2, "test_accuracy": 0.8}, {"epoch": 2, "epochs": 2, "test_accuracy": 0.9}]


def _model(seed: int = 0, hidden: int = 32) -> ShallowNet:
    torch.manual_seed(seed)
    return ShallowNet(hidden, dropout=0.1).eval()


def _save(store: RunStore, model: ShallowNet | None = None, **overrides: object):
    kwargs = {"test_accuracy": 0.9, "train_seconds": 1.25, "history": HISTORY, "dataset": {"f": "0" * 32}}
    return store.save(model if model is not None else _model(), CONFIG, **(kwargs | overrides))


def _probs(model: ShallowNet, data: MnistData) -> torch.Tensor:
    return model.probabilities(normalize(data.test_images))


def _visible(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


def test_round_trip_same_predictions(tmp_path: Path, tiny_data: MnistData) -> None:
    store = RunStore(tmp_path / "runs")
    model = _model()
    info = _save(store, model, stopped=True, extra={"note": "hello"})
    assert info.path == tmp_path / "runs" / info.run_id
    assert sorted(p.name for p in info.path.iterdir()) == sorted([WEIGHTS, META])
    loaded, loaded_info = store.load(info.run_id)
    assert not loaded.training and next(loaded.parameters()).device.type == "cpu"
    assert torch.equal(_probs(loaded, tiny_data), _probs(model, tiny_data))
    assert all(
        torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values(), strict=True)
    )
    assert loaded_info == info == store.info(info.run_id)
    assert info.config == CONFIG and loaded.drop.p == CONFIG.dropout
    assert (info.test_accuracy, info.train_seconds, info.history) == (0.9, 1.25, HISTORY)
    assert info.stopped and info.extra == {"note": "hello"} and info.dataset == {"f": "0" * 32}
    meta = json.loads((info.path / META).read_text())
    assert meta["format"] == 1 and meta["run_id"] == info.run_id


def test_label(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    info = _save(store, test_accuracy=0.9123)
    assert info.label.startswith("91.23% · 784-32-10 · ")
    assert info.created[:10] in info.label and "stopped" not in info.label
    assert _save(store, stopped=True).label.endswith("(stopped early)")


def test_default_runs_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MNIST_RUNS_DIR", raising=False)
    assert default_runs_dir() == Path("runs") == RunStore().root
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path))
    assert RunStore().root == tmp_path


def test_empty_store(tmp_path: Path) -> None:
    for store in (RunStore(tmp_path / "never-created"), RunStore(tmp_path)):
        assert store.list() == []
        with pytest.raises(RunError, match="train one first"):
            store.load()
        with pytest.raises(RunError, match="no run 'nope'"):
            store.info("nope")


def test_list_latest_delete(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    # Three saves within (almost certainly) one second: "latest" must still be the last one saved.
    saved = [_save(store, _model(seed), test_accuracy=0.1 * seed) for seed in range(3)]
    assert [r.run_id for r in store.list()] == [s.run_id for s in reversed(saved)]
    assert store.info("latest").run_id == saved[-1].run_id
    model, info = store.load()
    assert info.run_id == saved[-1].run_id
    assert torch.equal(model.fc1.weight, _model(2).fc1.weight)

    store.delete(saved[1].run_id)
    assert [r.run_id for r in store.list()] == [saved[2].run_id, saved[0].run_id]
    assert _visible(tmp_path) == sorted([saved[0].run_id, saved[2].run_id])  # nothing left behind
    with pytest.raises(RunError, match="no run"):
        store.delete(saved[1].run_id)
    with pytest.raises(RunError, match="no run"):
        store.load(saved[1].run_id)


def test_older_second_resolution_runs_sort_by_time(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    new = _save(store)
    old = _save(store)
    meta = json.loads((old.path / META).read_text())
    meta["created"] = "2020-01-02T03:04:05+00:00"  # what earlier versions wrote
    (old.path / META).write_text(json.dumps(meta))
    assert [r.run_id for r in store.list()] == [new.run_id, old.run_id]


@pytest.mark.parametrize("run_id", ["", ".", "..", "../x", "a/b", "a\\b", ".tmp-x", "a\x00b", "/etc"])
def test_bad_run_ids_are_refused(tmp_path: Path, run_id: str) -> None:
    store = RunStore(tmp_path / "runs")
    _save(store)
    for op in (store.info, store.load, store.delete):
        with pytest.raises(RunError):
            op(run_id)
    assert len(store.list()) == 1


# ---------------------------------------------------------------- refusing what is not our format


class _Payload:
    """Unpickling this creates a file: the classic pickle code-execution payload, made harmless."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (open, (self.marker, "w"))


def test_payload_is_live(tmp_path: Path) -> None:
    # Proof that the payload below would act if unpickled (our own bytes, made two lines above).
    marker = tmp_path / "proof"
    pickle.loads(pickle.dumps(_Payload(marker))).close()
    assert marker.exists()


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_malicious_checkpoint_is_refused_and_not_executed(tmp_path: Path, writer: str) -> None:
    store = RunStore(tmp_path / "runs")
    info = _save(store)
    marker = tmp_path / "pwned"
    weights = info.path / WEIGHTS
    if writer == "pickle":
        weights.write_bytes(pickle.dumps({"fc1.weight": _Payload(marker)}))
    else:
        torch.save({"fc1.weight": _Payload(marker)}, weights)
    with pytest.raises(RunError, match="not a valid safetensors"):
        store.load(info.run_id)
    assert not marker.exists()


def _rewrite_weights(path: Path, state: dict[str, torch.Tensor]) -> None:
    save_file(state, str(path / WEIGHTS))


def _state(hidden: int = 32) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in _model(hidden=hidden).state_dict().items()}


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda s: s.pop("fc2.bias"), "expected"),
        (lambda s: s.update(extra=torch.zeros(3)), "expected"),
        (lambda s: s.update({"fc1.weight": torch.zeros(32, 783)}), "expected"),
        (lambda s: s.update({"fc2.weight": s["fc2.weight"].half()}), "non-float32"),
        (lambda s: s.update({"fc1.bias": s["fc1.bias"].double()}), "non-float32"),
    ],
    ids=["missing-key", "extra-key", "wrong-shape", "float16", "float64"],
)
def test_wrong_weights_are_refused(tmp_path: Path, mutate, match: str) -> None:
    store = RunStore(tmp_path)
    info = _save(store)
    state = _state()
    mutate(state)
    _rewrite_weights(info.path, state)
    with pytest.raises(RunError, match=match):
        store.load(info.run_id)


def test_weights_for_another_width_are_refused(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    info = _save(store)
    _rewrite_weights(info.path, _state(hidden=64))  # meta.json says hidden=32
    with pytest.raises(RunError, match="hidden=32"):
        store.load(info.run_id)


@pytest.mark.parametrize(
    "content", [b"", b"garbage" * 10, b"\xff" * 8 + b"{}"], ids=["empty", "garbage", "huge-header"]
)
def test_not_safetensors_is_refused(tmp_path: Path, content: bytes) -> None:
    store = RunStore(tmp_path)
    info = _save(store)
    (info.path / WEIGHTS).write_bytes(content)
    with pytest.raises(RunError, match="not a valid safetensors"):
        store.load(info.run_id)


def test_missing_weights_are_refused(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    info = _save(store)
    (info.path / WEIGHTS).unlink()
    with pytest.raises(RunError, match=WEIGHTS):
        store.load(info.run_id)


_DELETE = object()


def _edit_meta(key: str, value: object):
    """A change to meta.json: set `key` (or the config's hidden width) to `value`, or delete it."""

    def edit(meta: dict) -> dict:
        if key in meta and value is _DELETE:
            del meta[key]
        elif key == "config.hidden":
            meta["config"]["hidden"] = value
        else:
            meta[key] = value
        return meta

    return edit


@pytest.mark.parametrize(
    "content",
    [
        "not json {",
        "[]",
        "null",
        _edit_meta("config", _DELETE),
        _edit_meta("config", "hidden=32"),
        _edit_meta("config.hidden", 5),
        _edit_meta("config.hidden", 32.5),
        _edit_meta("test_accuracy", "high"),
        _edit_meta("test_accuracy", _DELETE),
        _edit_meta("train_seconds", None),
        _edit_meta("history", "abc"),
        _edit_meta("history", [1, 2]),
        _edit_meta("created", "yesterday"),
        _edit_meta("format", 2),
        _edit_meta("format", _DELETE),
        b"\xff\xfe not utf-8",
        None,  # meta.json missing
    ],
    ids=[
        "not-json",
        "list",
        "null",
        "no-config",
        "config-string",
        "hidden-5",
        "hidden-float",
        "accuracy-string",
        "no-accuracy",
        "seconds-null",
        "history-string",
        "history-ints",
        "created-bad",
        "format-2",
        "no-format",
        "not-utf8",
        "missing",
    ],
)
def test_bad_meta_is_refused(tmp_path: Path, content: object) -> None:
    store = RunStore(tmp_path)
    good = _save(store)
    bad = _save(store)
    meta_path = bad.path / META
    if content is None:
        meta_path.unlink()
    elif isinstance(content, bytes):
        meta_path.write_bytes(content)
    elif isinstance(content, str):
        meta_path.write_text(content)
    else:
        meta_path.write_text(json.dumps(content(json.loads(meta_path.read_text()))))
    with pytest.raises(RunError, match="not a valid run"):
        store.info(bad.run_id)
    with pytest.raises(RunError, match="not a valid run"):
        store.load(bad.run_id)
    # The broken run is not listed; the good one still is, and is "latest".
    assert [r.run_id for r in store.list()] == [good.run_id]
    assert store.load()[1].run_id == good.run_id


def test_unknown_config_keys_in_meta_are_ignored(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    info = _save(store)
    meta = json.loads((info.path / META).read_text())
    meta["config"]["from_a_newer_version"] = 1
    (info.path / META).write_text(json.dumps(meta))
    assert store.load(info.run_id)[1].config == CONFIG


# ---------------------------------------------------------------- interrupted saves


def _assert_only(store: RunStore, earlier, data: MnistData, model: ShallowNet) -> None:
    assert [r.run_id for r in store.list()] == [earlier.run_id]
    assert _visible(store.root) == [earlier.run_id]  # no temp dirs, no half-written run
    loaded, _ = store.load()
    assert torch.equal(_probs(loaded, data), _probs(model, data))


@pytest.mark.parametrize("exc", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_failed_weights_write_leaves_earlier_run(
    tmp_path: Path, tiny_data: MnistData, monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    store = RunStore(tmp_path)
    model = _model(1)
    earlier = _save(store, model)

    def broken_save_file(state: dict, filename: str) -> None:
        Path(filename).write_bytes(b"half a file")
        raise exc

    monkeypatch.setattr(runs_mod, "save_file", broken_save_file)
    with pytest.raises(type(exc)):
        _save(store, _model(2))
    _assert_only(store, earlier, tiny_data, model)


def test_failed_meta_write_leaves_earlier_run(
    tmp_path: Path, tiny_data: MnistData, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RunStore(tmp_path)
    model = _model(1)
    earlier = _save(store, model)
    real_write_text = Path.write_text

    def half_write(self: Path, text: str, *args: object, **kwargs: object) -> int:
        real_write_text(self, text[: len(text) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", half_write)
    with pytest.raises(OSError, match="No space left"):
        _save(store, _model(2))
    monkeypatch.undo()
    _assert_only(store, earlier, tiny_data, model)


def test_failed_rename_leaves_earlier_run(
    tmp_path: Path, tiny_data: MnistData, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RunStore(tmp_path)
    model = _model(1)
    earlier = _save(store, model)

    def broken_rename(src: object, dst: object) -> None:
        raise OSError("rename failed")

    monkeypatch.setattr(runs_mod.os, "rename", broken_rename)
    with pytest.raises(OSError, match="rename failed"):
        _save(store, _model(2))
    monkeypatch.undo()
    _assert_only(store, earlier, tiny_data, model)


def test_leftover_temp_dir_of_a_killed_save_is_invisible(tmp_path: Path, tiny_data: MnistData) -> None:
    store = RunStore(tmp_path)
    model = _model(1)
    earlier = _save(store, model)
    # What a process killed between writing and renaming leaves: a complete run under a temp name.
    leftover = tmp_path / ".tmp-20990101-000000-abcdef-xyz"
    leftover.mkdir()
    _rewrite_weights(leftover, _state())
    meta = json.loads((earlier.path / META).read_text())
    (leftover / META).write_text(json.dumps(meta | {"created": "2099-01-01T00:00:00+00:00"}))
    assert [r.run_id for r in store.list()] == [earlier.run_id]
    assert store.info("latest").run_id == earlier.run_id
    with pytest.raises(RunError):
        store.load(leftover.name)
    np.testing.assert_array_equal(_probs(store.load()[0], tiny_data).numpy(), _probs(model, tiny_data).numpy())


def test_unserialisable_extra_leaves_nothing(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    with pytest.raises(TypeError):
        _save(store, extra={"bad": object()})
    assert _visible(tmp_path) == [] and store.list() == []


# ---------------------------------------------------------------- names, parents, optimizer state (issue 8)

P32 = 32 * 784 + 32 + 10 * 32 + 10  # parameters of a 784-32-10 net: the length of each flat optimizer tensor


def _adam_state(n: int = P32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "exp_avg": torch.randn(n, generator=g),
        "exp_avg_sq": torch.rand(n, generator=g),
        "step": torch.tensor(42.0),
    }


def _rng() -> dict[str, torch.Tensor]:
    return {"shuffle": torch.Generator().manual_seed(5).get_state()}


def test_name_and_parent_round_trip(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    parent = _save(store)
    info = _save(store, name="  wide net  ", parent=parent.run_id)
    assert (info.name, info.parent) == ("wide net", parent.run_id)
    assert info.label.startswith("wide net · 90.00% · 784-32-10")
    meta = json.loads((info.path / META).read_text())
    assert (meta["name"], meta["parent"]) == ("wide net", parent.run_id)
    assert (parent.name, parent.parent) == (None, None)
    store.delete(parent.run_id)  # a child outlives its parent: the id stays, as a record of where it came from
    assert store.info(info.run_id).parent == parent.run_id


def test_rename_rewrites_only_the_name(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    info = _save(store, name="first")
    before = json.loads((info.path / META).read_text())
    weights = (info.path / WEIGHTS).read_bytes()
    renamed = store.rename(info.run_id, "second try")
    assert renamed.name == "second try" and renamed.run_id == info.run_id
    after = json.loads((info.path / META).read_text())
    assert after == before | {"name": "second try"}
    assert (info.path / WEIGHTS).read_bytes() == weights
    assert sorted(p.name for p in info.path.iterdir()) == sorted([WEIGHTS, META])  # no temp file left
    assert store.rename("latest", "  ").name is None  # blank clears
    assert store.info(info.run_id).name is None


@pytest.mark.parametrize(
    ("name", "match"),
    [("x" * 41, "at most 40"), ("a\nb", "control"), ("tab\there", "control"), (7, "text"), (["a"], "text")],
)
def test_bad_names_are_refused(tmp_path: Path, name: object, match: str) -> None:
    store = RunStore(tmp_path / "runs")
    with pytest.raises(RunError, match=match):
        _save(store, name=name)
    assert not (tmp_path / "runs").exists() or _visible(tmp_path / "runs") == []
    info = _save(store, name="kept")
    with pytest.raises(RunError, match=match):
        store.rename(info.run_id, name)
    assert store.info(info.run_id).name == "kept"
    assert runs_mod.validate_name("x" * 40) == "x" * 40


def test_rename_of_missing_or_invalid_run(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    with pytest.raises(RunError, match="no run"):
        store.rename("20990101-000000-abcdef", "x")
    info = _save(store)
    (info.path / META).write_text("{not json")
    with pytest.raises(RunError, match="not a valid run"):
        store.rename(info.run_id, "x")
    assert (info.path / META).read_text() == "{not json"  # a bad file is left as it was


# Names are labels, never paths, so "../../etc" is a valid name; a parent is an id that links and lookups use.
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "x" * 41),
        ("name", 12),
        ("name", "a\nb"),
        ("parent", "../../etc"),
        ("parent", "x" * 300),
        ("parent", 12),
        ("parent", "a\nb"),
        ("parent", ".hidden"),
    ],
)
def test_bad_stored_name_or_parent_make_the_run_invalid(tmp_path: Path, field: str, value: object) -> None:
    store = RunStore(tmp_path)
    info = _save(store)
    meta = json.loads((info.path / META).read_text())
    (info.path / META).write_text(json.dumps(meta | {field: value}))
    with pytest.raises(RunError, match="not a valid run"):
        store.info(info.run_id)
    assert store.list() == []


def test_bad_parent_is_refused_on_save(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    with pytest.raises(RunError, match="not a run id"):
        _save(store, parent="../elsewhere")
    assert _visible(tmp_path) == []


def test_optimizer_state_round_trip(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    state, rng = _adam_state(), _rng()
    info = _save(store, optimizer_state=state, rng_state=rng)
    assert sorted(p.name for p in info.path.iterdir()) == sorted([WEIGHTS, META, runs_mod.OPTIMIZER])
    got_state, got_rng = store.read_optimizer(info.run_id)
    assert sorted(got_state) == sorted(state) and all(torch.equal(got_state[k], state[k]) for k in state)
    assert torch.equal(got_rng["shuffle"], rng["shuffle"])
    init, loaded = store.load_state(info.run_id)
    assert loaded == info and init.optimizer == "adam" and init.seed == CONFIG.seed
    assert init.history == HISTORY and init.train_seconds == 1.25
    assert torch.equal(init.model.fc1.weight, _model().fc1.weight)


def test_run_without_optimizer_state_resumes_afresh(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    info = _save(store)
    assert store.read_optimizer(info.run_id) is None
    init, _ = store.load_state(info.run_id)
    assert init.optimizer is None and init.optimizer_state == {} and init.rng_state == {}


def _bad_state(kind: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    meta = {"optimizer": "adam", "layout": "fc1.weight,fc2.weight,fc1.bias,fc2.bias"}
    state: dict[str, torch.Tensor] = _adam_state() | {"rng.shuffle": _rng()["shuffle"]}
    if kind == "wrong-optimizer":
        meta["optimizer"] = "sgd"
    elif kind == "no-metadata":
        meta = {}
    elif kind == "wrong-layout":
        meta["layout"] = "fc1.bias,fc1.weight,fc2.weight,fc2.bias"
    elif kind == "missing-key":
        del state["exp_avg_sq"]
    elif kind == "extra-key":
        state["momentum"] = torch.zeros(P32)
    elif kind == "unknown-stream":
        state["rng.other"] = state["rng.shuffle"].clone()
    elif kind == "wrong-shape":
        state["exp_avg"] = torch.zeros(P32 - 1)
    elif kind == "float64":
        state["exp_avg"] = state["exp_avg"].double()
    elif kind == "nan":
        state["exp_avg"][3] = float("nan")
    elif kind == "inf-step":
        state["step"] = torch.tensor(float("inf"))
    elif kind == "fractional-step":
        state["step"] = torch.tensor(2.5)
    elif kind == "negative-variance":
        state["exp_avg_sq"][0] = -1.0
    elif kind == "rng-not-bytes":
        state["rng.shuffle"] = state["rng.shuffle"].float()
    return state, meta


BAD_STATES = [
    "wrong-optimizer",
    "no-metadata",
    "wrong-layout",
    "missing-key",
    "extra-key",
    "unknown-stream",
    "wrong-shape",
    "float64",
    "nan",
    "inf-step",
    "fractional-step",
    "negative-variance",
    "rng-not-bytes",
]


@pytest.mark.parametrize("kind", BAD_STATES)
def test_bad_optimizer_state_is_refused(tmp_path: Path, kind: str) -> None:
    store = RunStore(tmp_path)
    info = _save(store, optimizer_state=_adam_state(), rng_state=_rng())
    state, meta = _bad_state(kind)
    save_file(state, str(info.path / runs_mod.OPTIMIZER), metadata=meta)
    with pytest.raises(RunError, match="not a valid optimizer state file"):
        store.load_state(info.run_id)
    store.load(info.run_id)  # the weights themselves still load: the model stays usable


@pytest.mark.parametrize("writer", ["pickle", "torch.save", "garbage", "empty", "huge", "directory"])
def test_optimizer_file_that_is_not_ours_is_refused_and_not_executed(tmp_path: Path, writer: str) -> None:
    store = RunStore(tmp_path / "runs")
    info = _save(store, optimizer_state=_adam_state())
    path = info.path / runs_mod.OPTIMIZER
    marker = tmp_path / "pwned"
    if writer == "pickle":
        path.write_bytes(pickle.dumps({"exp_avg": _Payload(marker)}))
    elif writer == "torch.save":
        torch.save({"exp_avg": _Payload(marker)}, path)
    elif writer == "garbage":
        path.write_bytes(b"garbage" * 100)
    elif writer == "empty":
        path.write_bytes(b"")
    elif writer == "huge":  # far larger than any real state of this width: refused before it is read
        with open(path, "r+b") as f:
            f.truncate(10 * 4 * P32)
    else:
        path.unlink()
        path.mkdir()
    with pytest.raises(RunError, match="not a valid optimizer state file"):
        store.load_state(info.run_id)
    assert not marker.exists()


def test_rename_keeps_the_parent_and_bad_parents_are_refused(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    parent = _save(store)
    child = _save(store, name="first name", parent=parent.run_id)
    info = store.rename(child.run_id, "kept name")
    assert info.parent == parent.run_id and info.name == "kept name"
    for bad in ("../x", "", ".hidden"):
        with pytest.raises(RunError, match="not a run id"):
            _save(store, parent=bad)
    assert store.info(child.run_id).parent == parent.run_id
    assert {r.run_id for r in store.list()} == {parent.run_id, child.run_id}


# ---- hostile and broken input: meta.json, weights, leftovers, races, full disks (issue 10) ----------


def _hostile_meta(kind: str, path: Path) -> None:
    import os

    path.unlink()
    if kind == "deep nesting":
        path.write_text("[" * 200_000 + "]" * 200_000)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink to /dev/zero":
        path.symlink_to("/dev/zero")
    elif kind == "huge":
        with open(path, "wb") as f:  # sparse: no disk used
            f.truncate(runs_mod.META_MAX_BYTES + 1)
    elif kind == "directory":
        path.mkdir()


HOSTILE = ["deep nesting", "fifo", "symlink to /dev/zero", "huge", "directory"]


@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_meta_skips_that_run_only(tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    import signal

    store = RunStore(tmp_path)
    good, bad = _save(store, _model(1)), _save(store, _model(2))
    _hostile_meta(kind, bad.path / META)
    signal.alarm(20)  # a FIFO read would block forever: fail instead of hanging the suite
    try:
        with caplog.at_level("WARNING", logger="mnistcore.runs"):
            assert [r.run_id for r in store.list()] == [good.run_id]
            store.list()  # a second listing (every page view lists) does not log it again
        with pytest.raises(RunError, match=f"{bad.run_id} is not a valid run"):
            store.info(bad.run_id)
        with pytest.raises(RunError):
            store.load(bad.run_id)
    finally:
        signal.alarm(0)
    skipped = [r for r in caplog.records if bad.run_id in r.getMessage()]
    assert len(skipped) == 1 and "skipping run" in skipped[0].getMessage()
    assert store.load(good.run_id)[1].run_id == good.run_id  # the others still load


@pytest.mark.parametrize("kind", ["fifo", "symlink to /dev/zero", "huge"])
def test_hostile_weights_file_is_refused(tmp_path: Path, kind: str) -> None:
    import signal

    store = RunStore(tmp_path)
    info = _save(store)
    _hostile_meta(kind, info.path / WEIGHTS)  # same tricks on the weights file
    signal.alarm(20)
    try:
        with pytest.raises(RunError, match="weights file"):
            store.load(info.run_id)
    finally:
        signal.alarm(0)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused_at_load_and_never_saved(tmp_path: Path, value: float) -> None:
    store = RunStore(tmp_path)
    info = _save(store)
    state = {k: v.clone() for k, v in _model().state_dict().items()}
    state["fc2.bias"][3] = value
    save_file(state, str(info.path / WEIGHTS))
    with pytest.raises(RunError, match=r"NaN or infinite values in fc2\.bias"):
        store.load(info.run_id)
    diverged = _model()
    with torch.no_grad():
        diverged.fc1.weight[0, 0] = value
    with pytest.raises(RunError, match=r"not saved.*fc1\.weight.*diverged"):
        _save(store, diverged)
    assert _visible(tmp_path) == [info.run_id]  # nothing half-written


def _age(path: Path, seconds: float) -> None:
    import os
    import time

    past = time.time() - seconds
    for p in [*path.rglob("*"), path]:
        os.utime(p, (past, past), follow_symlinks=False)


def test_stale_leftovers_are_cleaned_up_safely(tmp_path: Path) -> None:
    import time

    store = RunStore(tmp_path / "runs")
    run = _save(store)
    root = store.root
    old_tmp = root / ".tmp-20260101-000000-abcdef-x1y2"
    old_tmp.mkdir()
    (old_tmp / WEIGHTS).write_bytes(b"half a model")
    old_del = root / f".del-{run.run_id}x-{int(time.time() * 1000)}"
    (old_del / "sub").mkdir(parents=True)
    fresh_tmp = root / ".tmp-20260101-000001-abcdef-z9"  # a save in progress
    fresh_tmp.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not ours")
    link = root / ".tmp-link"
    link.symlink_to(outside, target_is_directory=True)
    file_ = root / ".tmp-file"
    file_.write_text("a file, not one of our folders")
    other = root / ".cache-thing"
    other.mkdir()
    old_meta, fresh_meta = run.path / ".meta-k1.tmp", run.path / ".meta-k2.tmp"  # a killed rename's temp file
    old_meta.write_text("{}")
    for p in (old_tmp, old_del, other, outside):
        _age(p, 2 * runs_mod.STALE_SECONDS)
    _age(run.path, 2 * runs_mod.STALE_SECONDS)  # (its files too)
    fresh_meta.write_text("{}")
    removed = store.cleanup_stale()
    assert sorted(removed) == sorted([old_tmp.name, old_del.name, f"{run.run_id}/{old_meta.name}"])
    assert fresh_meta.exists()  # a rename in progress
    assert sorted(p.name for p in root.iterdir()) == sorted(
        [run.run_id, fresh_tmp.name, link.name, file_.name, other.name]
    )
    assert (outside / "keep.txt").read_text() == "not ours"  # never followed the link
    assert store.load(run.run_id)[1].run_id == run.run_id
    # A later save cleans up too (a killed save's folder, once stale).
    _age(fresh_tmp, 2 * runs_mod.STALE_SECONDS)
    _save(store)
    assert not fresh_tmp.exists()


def test_deleting_a_run_deleted_elsewhere_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    store, other_session = RunStore(tmp_path), RunStore(tmp_path)
    first, second = _save(store, _model(1)), _save(store, _model(2))
    other_session.delete(first.run_id)
    with pytest.raises(RunError, match="already deleted elsewhere"):
        store.delete(first.run_id)
    # The race itself: the run vanishes between the check and the rename.
    real_rename = os.rename

    def vanish(src: object, dst: object) -> None:
        real_rename(src, str(dst) + "-other")  # the other session's delete wins
        raise FileNotFoundError(2, "No such file or directory", str(src))

    monkeypatch.setattr(runs_mod.os, "rename", vanish)
    with pytest.raises(RunError, match="already deleted elsewhere"):
        store.delete(second.run_id)


def test_renaming_a_run_deleted_between_check_and_read_says_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    store = RunStore(tmp_path)
    run = _save(store)
    real_read = runs_mod.read_bounded

    def deleted_first(path: Path, limit: int) -> bytes:
        shutil.rmtree(path.parent)  # another process's delete lands after the existence check
        return real_read(path, limit)

    monkeypatch.setattr(runs_mod, "read_bounded", deleted_first)
    with pytest.raises(RunError, match="deleted elsewhere") as caught:
        store.rename(run.run_id, "mine")
    assert "not a valid run" not in str(caught.value)


def test_check_writable_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    RunStore(tmp_path / "new" / "runs").check_writable(CONFIG)  # created on the way
    assert (tmp_path / "new" / "runs").is_dir() and _visible(tmp_path / "new" / "runs") == []
    (tmp_path / "afile").write_text("x")
    for root in (tmp_path / "afile", tmp_path / "afile" / "runs"):
        with pytest.raises(RunError, match=f"cannot save runs in {root}"):
            RunStore(root).check_writable()
    usage = type("Usage", (), {"free": 1000, "total": 10**9, "used": 0})
    monkeypatch.setattr(runs_mod.shutil, "disk_usage", lambda path: usage)
    with pytest.raises(RunError, match="MB free"):
        RunStore(tmp_path / "runs").check_writable(TrainConfig(hidden=1024))


def test_a_failed_save_falls_back_to_a_temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    store = RunStore(tmp_path / "runs")
    monkeypatch.setattr(runs_mod.tempfile, "tempdir", str(tmp_path))  # the fallback's temp dirs land here
    real_save = RunStore.save

    def full_disk(self: RunStore, *args: object, **kwargs: object):
        if self.root == store.root:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.root / "x" / WEIGHTS))
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(RunStore, "save", full_disk)
    kwargs = {"test_accuracy": 0.9, "train_seconds": 1.25, "history": HISTORY, "dataset": {}}
    model = _model(5)
    info, why = runs_mod.save_or_fallback(store, model, CONFIG, **kwargs)
    assert why is not None and "No space left on device" in why and str(store.root) in why
    assert info.path.parent.parent == tmp_path and info.path.parent.name.startswith("mnist-lab-unsaved-")
    loaded, _ = RunStore(info.path.parent).load(info.run_id)
    assert torch.equal(loaded.fc1.weight, model.fc1.weight)  # nothing lost
    monkeypatch.setattr(runs_mod.tempfile, "mkdtemp", lambda prefix: (_ for _ in ()).throw(OSError(30, "Read-only")))
    with pytest.raises(RunError, match="the trained model is lost"):
        runs_mod.save_or_fallback(store, model, CONFIG, **kwargs)
    monkeypatch.undo()
    info, why = runs_mod.save_or_fallback(RunStore(tmp_path / "ok"), model, CONFIG, **kwargs)
    assert why is None and info.path.parent == tmp_path / "ok"


def test_save_result_records_what_ran_and_falls_back(
    tiny_data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mnistcore.train import train

    result = train(TrainConfig(hidden=16, epochs=1, batch_size=64, device="cpu"), tiny_data)
    result.parent_seconds = 7.0  # a continued run: its seconds include the parent's
    store = RunStore(tmp_path / "runs")
    info, why = runs_mod.save_result(
        store, result, dataset=tiny_data.checksums, source="dashboard", name="x", extra={"steps_done": 3}
    )
    assert why is None and info.name == "x" and info.train_seconds == pytest.approx(result.train_seconds + 7.0)
    assert info.extra["source"] == "dashboard" and info.extra["steps_done"] == 3
    assert info.extra["precision"]["precision"] == info.config.precision == "fp32"  # resolved, never "auto"
    assert store.read_optimizer(info.run_id) is not None  # a later run can continue it
    info2, _ = runs_mod.save_result(store, result, dataset=tiny_data.checksums)
    assert "source" not in info2.extra  # callers say who trained it; the engine never guesses
    import errno

    monkeypatch.setattr(runs_mod.tempfile, "tempdir", str(tmp_path))
    real_save = RunStore.save

    def full_disk(self: RunStore, *args: object, **kwargs: object):
        if self.root == store.root:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.root))
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(RunStore, "save", full_disk)
    info3, why3 = runs_mod.save_result(store, result, dataset=tiny_data.checksums)
    assert why3 is not None and "No space left" in why3 and info3.path.parent.name.startswith("mnist-lab-unsaved-")
