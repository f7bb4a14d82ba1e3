"""The drawings and label-issues commands, in-process on the tiny data: JSON outputs, refusals, exit codes."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mnistcore.drawings import DrawingStore
from mnistcore.evaluate import evaluate
from mnistcore.runs import RunStore
from tests.test_cli import TRAIN_ARGS, run_cli
from tests.test_drawings import canvas, snapshot


@pytest.fixture(autouse=True)
def _no_env_dirs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MNIST_DRAWINGS_DIR", raising=False)


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    paths = []
    for digit in (1, 7):
        p = tmp_path / f"d{digit}.png"
        Image.fromarray(canvas(digit)).save(p)
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def tiny_run(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    runs = tmp_path_factory.mktemp("dcli-runs")
    code, out, err = run_cli("train", "--data-dir", tiny_data_dir, "--runs-dir", runs, *TRAIN_ARGS, "--json")
    assert code == 0, err
    return runs, json.loads(out)["run_id"]


def test_add_list_export_import(tmp_path: Path, images: list[Path]) -> None:
    ddir = tmp_path / "dr"
    code, out, err = run_cli("drawings", "add", "--drawings-dir", ddir, "--label", "3", *images, "--json")
    assert code == 0, err
    added = json.loads(out)
    assert [d["label"] for d in added] == [3, 3] and all(d["source"] == "cli" for d in added)
    assert all(Path(d["path"]).parent == ddir / "default" for d in added)
    code, out, _ = run_cli("drawings", "list", "--drawings-dir", ddir, "--json")
    listed = json.loads(out)
    assert code == 0 and [d["id"] for d in listed] == [d["id"] for d in added]
    assert set(listed[0]) == {"id", "label", "predicted", "created", "source", "path"}
    code, out, _ = run_cli("drawings", "list", "--drawings-dir", ddir)
    assert code == 0 and "2 drawings" in out and "3×2" in out

    zpath = tmp_path / "mine.zip"
    code, out, _ = run_cli("drawings", "export", "--drawings-dir", ddir, "--out", zpath)
    assert code == 0 and "exported 2 drawings" in out and zipfile.is_zipfile(zpath)
    code, out, _ = run_cli("drawings", "import", "--drawings-dir", ddir, "--collection", "other", zpath, "--json")
    assert code == 0 and json.loads(out)["added"] == 2
    code, out, _ = run_cli("drawings", "import", "--drawings-dir", ddir, "--collection", "other", zpath)
    assert code == 0 and "imported 0 drawings" in out and "2 already there" in out


def test_default_dir_is_under_the_data_dir(tmp_path: Path, images: list[Path]) -> None:
    code, _, err = run_cli("drawings", "add", "--data-dir", tmp_path / "data", "--label", "1", images[0])
    assert code == 0, err
    assert len(DrawingStore(tmp_path / "data" / "drawings").list()) == 1


def test_add_refusals_add_nothing(tmp_path: Path, images: list[Path]) -> None:
    ddir = tmp_path / "dr"
    code, out, err = run_cli("drawings", "add", "--drawings-dir", ddir, "--label", "12", images[0])
    assert code == 2 and "--label" in err and out == ""
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    code, out, err = run_cli("drawings", "add", "--drawings-dir", ddir, "--label", "1", images[0], bad)
    assert code == 1 and out == "" and str(bad) in err and "nothing was added" in err
    blank = tmp_path / "blank.png"
    Image.new("L", (100, 100)).save(blank)
    code, _, err = run_cli("drawings", "add", "--drawings-dir", ddir, "--label", "1", blank, images[0])
    assert code == 1 and str(blank) in err and "othing drawn" in err
    code, _, err = run_cli("drawings", "add", "--drawings-dir", ddir, "--label", "1", tmp_path)
    assert code == 1 and "not a regular file" in err
    assert not ddir.exists() or DrawingStore(ddir).list() == []


def test_import_refusals_change_nothing(tmp_path: Path, images: list[Path]) -> None:
    ddir = tmp_path / "dr"
    assert run_cli("drawings", "add", "--drawings-dir", ddir, "--label", "1", images[0])[0] == 0
    before = snapshot(ddir)
    code, out, err = run_cli("drawings", "import", "--drawings-dir", ddir, images[0])
    assert code == 1 and out == "" and "not a zip file" in err and "nothing was imported" in err
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../../escape.png", b"x")
    code, _, err = run_cli("drawings", "import", "--drawings-dir", ddir, evil)
    assert code == 1 and "not part of a drawings export" in err
    assert snapshot(ddir) == before and not (tmp_path / "escape.png").exists()


def test_evaluate_on_drawings(tmp_path: Path, images: list[Path], tiny_run: tuple[Path, str]) -> None:
    runs, run_id = tiny_run
    ddir = tmp_path / "dr"
    code, _, err = run_cli("evaluate", "--runs-dir", runs, "--run", run_id, "--drawings", "--drawings-dir", ddir)
    assert code == 1 and "no drawings" in err
    run_cli("drawings", "add", "--drawings-dir", ddir, "--label", "1", images[0])
    run_cli("drawings", "add", "--drawings-dir", ddir, "--label", "7", *images)
    code, out, err = run_cli(
        "evaluate", "--runs-dir", runs, "--run", run_id, "--drawings", "--drawings-dir", ddir, "--json"
    )
    assert code == 0, err
    res = json.loads(out)
    assert res["count"] == 3 and res["run_id"] == run_id
    cm = np.array(res["confusion"])
    assert cm.shape == (10, 10) and cm.sum() == 3 and cm[1].sum() == 1 and cm[7].sum() == 2
    assert res["accuracy"] == pytest.approx(np.trace(cm) / 3)
    assert len(res["wrong"]) == 3 - np.trace(cm) == res["errors"]
    # and the result is the model's own prediction on the stored 28x28 images
    model, _ = RunStore(runs).load(run_id)
    x, y, _ = DrawingStore(ddir).arrays()
    ev = evaluate(model, torch.from_numpy(x), torch.from_numpy(y))
    assert res["confusion"] == ev.confusion.tolist()
    code, out, _ = run_cli("evaluate", "--runs-dir", runs, "--run", run_id, "--drawings", "--drawings-dir", ddir)
    assert code == 0 and "on 3 drawings" in out


def test_train_with_drawings_records_them(tmp_path: Path, images: list[Path], tiny_data_dir: Path) -> None:
    ddir, runs = tmp_path / "dr", tmp_path / "runs"
    code, _, err = run_cli(
        "train", "--data-dir", tiny_data_dir, "--runs-dir", runs, *TRAIN_ARGS, "--with-drawings", "--drawings-dir", ddir
    )
    assert code == 1 and "no drawings" in err and not RunStore(runs).list()
    run_cli("drawings", "add", "--drawings-dir", ddir, "--label", "1", images[0])
    run_cli("drawings", "add", "--drawings-dir", ddir, "--label", "7", images[1])
    code, out, err = run_cli(
        "train",
        "--data-dir",
        tiny_data_dir,
        "--runs-dir",
        runs,
        *TRAIN_ARGS,
        "--with-drawings",
        "--drawings-dir",
        ddir,
        "--json",
    )
    assert code == 0, err
    res = json.loads(out)
    d = res["drawings"]
    # 600 tiny training images: 2 drawings x 33 copies make ~10 % of the mix
    assert d["count"] == 2 and d["repeats"] == round(0.1 * 600 / (0.9 * 2)) and d["collection"] == "default"
    info = RunStore(runs).info(res["run_id"])
    assert info.extra["drawings"] == d
    assert info.dataset["drawings"] == d["checksum"]
    # without the flag: no drawings recorded
    code, out, _ = run_cli("train", "--data-dir", tiny_data_dir, "--runs-dir", runs, *TRAIN_ARGS, "--json")
    assert code == 0 and "drawings" not in json.loads(out)


def test_label_issues_json_is_ranked_and_cached(tiny_copy: Path) -> None:
    args = ["label-issues", "--data-dir", tiny_copy, "--folds", "3", "--seeds", "1", "--json"]
    code, out, err = run_cli(*args)
    assert code == 0, err
    issues = json.loads(out)
    assert isinstance(issues, list) and issues, "the generated digits overlap: some are always flagged"
    assert all(set(i) == {"index", "given", "suggested", "score"} for i in issues)
    assert [i["score"] for i in issues] == sorted(i["score"] for i in issues)
    assert len({i["index"] for i in issues}) == len(issues) and all(0 <= i["index"] < 600 for i in issues)
    assert "done: 100%" in err  # the progress bar on stderr
    cached = list((tiny_copy / "cache").glob("label-issues-train-*.json"))
    assert len(cached) == 1
    code, out2, err2 = run_cli(*args)
    assert code == 0 and json.loads(out2) == issues and "read from the cache: 100%" in err2
    code, out, _ = run_cli("label-issues", "--data-dir", tiny_copy, "--folds", "3", "--seeds", "1", "--top", "3")
    assert code == 0 and "flagged" in out and len(out.strip().splitlines()) == 2 + min(3, len(issues))


def test_label_issues_on_the_test_split(tiny_copy: Path) -> None:
    code, out, err = run_cli("label-issues", "--data-dir", tiny_copy, "--split", "test", "--seeds", "1", "--json")
    assert code == 0, err
    assert all(0 <= i["index"] < 200 for i in json.loads(out))
    assert "done: 100%" in err


@pytest.mark.parametrize("args", [["--split", "val"], ["--folds", "1"], ["--seeds", "0"]])
def test_label_issues_bad_arguments(args: list[str], tiny_copy: Path) -> None:
    code, out, err = run_cli("label-issues", "--data-dir", tiny_copy, *args)
    assert code == 2 and out == "" and "usage:" in err
    assert not (tiny_copy / "cache").exists()


def test_fine_tune_with_resume_and_drawings(
    tmp_path: Path, images: list[Path], tiny_data_dir: Path, tiny_run: tuple[Path, str]
) -> None:
    import shutil

    runs, parent = tmp_path / "runs", tiny_run[1]
    shutil.copytree(tiny_run[0], runs)
    ddir = tmp_path / "dr"
    run_cli("drawings", "add", "--drawings-dir", ddir, "--label", "1", *images)
    code, out, err = run_cli(
        "train",
        "--data-dir",
        tiny_data_dir,
        "--runs-dir",
        runs,
        "--resume",
        parent,
        "--epochs",
        "1",
        "--with-drawings",
        "--drawings-dir",
        ddir,
        "--json",
    )
    assert code == 0, err
    res = json.loads(out)
    assert res["parent"] == parent and res["drawings"]["count"] == 2
    info = RunStore(runs).info(res["run_id"])
    assert info.extra["drawings"]["count"] == 2 and len(info.history) == len(RunStore(runs).info(parent).history) + 1
