"""Label issues on small generated data: k-fold bookkeeping, planted label errors found, the cache, stop."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from mnistcore import label_issues as li
from mnistcore.config import TrainConfig
from mnistcore.data import RAW_FILES, MnistData
from mnistcore.label_issues import LabelIssues, LabelIssuesError, Recipe, Stopped

QUICK = TrainConfig(hidden=32, epochs=4, batch_size=32, lr=3e-3, device="cpu", report_every=5)


def recipe(folds: int = 4, seeds: int = 1) -> Recipe:
    return Recipe(folds=folds, seeds=seeds, config=QUICK)


def with_ids(data: MnistData) -> tuple[MnistData, torch.Tensor]:
    """A copy whose training images carry their own index in two corner pixels (so subsets can be traced)."""
    x = data.train_images.clone()
    idx = torch.arange(len(x))
    x[:, 0, 0] = (idx // 256).to(torch.uint8)
    x[:, 0, 1] = (idx % 256).to(torch.uint8)
    return MnistData(x, data.train_labels.clone(), data.test_images, data.test_labels, data.checksums), idx


def ids_of(images: torch.Tensor) -> list[int]:
    return (images[:, 0, 0].long() * 256 + images[:, 0, 1].long()).tolist()


@pytest.fixture
def record(monkeypatch: pytest.MonkeyPatch):
    """Record what every net trained on and which images were scored, around the real functions."""
    calls: dict[str, list] = {"train": [], "scored": [], "seeds": []}
    real_train, real_probs = li.train, li._probabilities

    def train(config, data, on_event=None, stop=None):
        calls["train"].append((ids_of(data.train_images), ids_of(data.test_images)))
        calls["seeds"].append(config.seed)
        return real_train(config, data, on_event=on_event, stop=stop)

    def probabilities(model, images):
        calls["scored"].append(images)
        return real_probs(model, images)

    monkeypatch.setattr(li, "train", train)
    monkeypatch.setattr(li, "_probabilities", probabilities)
    return calls


def test_stratified_folds_partition_the_indices(tiny_data: MnistData) -> None:
    y = tiny_data.train_labels.numpy()
    folds = li.stratified_folds(y, 5, seed=3)
    assert len(folds) == 5
    together = np.concatenate(folds)
    assert sorted(together.tolist()) == list(range(len(y)))  # each index held out exactly once
    for held in folds:
        counts = np.bincount(y[held], minlength=10)
        assert counts.min() >= np.bincount(y, minlength=10).min() // 5 - 1  # every class in every fold
    assert [f.tolist() for f in li.stratified_folds(y, 5, seed=3)] == [f.tolist() for f in folds]
    with pytest.raises(LabelIssuesError):
        li.stratified_folds(y[:3], 5, seed=0)


def test_every_image_is_scored_exactly_once_out_of_fold(tiny_data: MnistData, record) -> None:
    data, _ = with_ids(tiny_data)
    n = len(data.train_labels)
    progress: list[li.Progress] = []
    probs, folds = li.out_of_fold_probabilities(
        data.train_images, data.train_labels, recipe(folds=4, seeds=2), on_progress=progress.append
    )
    assert probs.shape == (n, 10) and np.allclose(probs.sum(1), 1, atol=1e-4)
    assert len(record["train"]) == 8  # 4 folds x 2 nets
    held_seen: list[int] = []
    for k, held in enumerate(folds):
        for s in range(2):
            trained_on, measured_on = record["train"][2 * k + s]
            assert set(trained_on).isdisjoint(held.tolist())  # never trained on what it scores
            assert sorted(trained_on + held.tolist()) == list(range(n))  # and on everything else
            assert measured_on == held.tolist()
            assert ids_of(record["scored"][2 * k + s]) == held.tolist()
        held_seen += held.tolist()
    assert sorted(held_seen) == list(range(n))
    assert len(set(record["seeds"])) == 8  # every net its own seed
    fractions = [p.fraction for p in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and progress[-1].nets == 8


def test_test_split_is_scored_by_nets_trained_on_the_whole_training_split(tiny_data: MnistData, record) -> None:
    data, _ = with_ids(tiny_data)
    result = li.find_issues(data, "test", recipe(seeds=2))
    assert len(record["train"]) == 2
    assert all(sorted(t) == list(range(len(data.train_labels))) for t, _ in record["train"])
    assert all(torch.equal(s, data.test_images) for s in record["scored"])
    assert result.split == "test" and result.scored == len(data.test_labels)
    assert all(0 <= i.index < len(data.test_labels) for i in result.issues)


def test_planted_label_errors_are_found_and_ranked_first(tiny_data: MnistData) -> None:
    y = tiny_data.train_labels.clone()
    rng = np.random.default_rng(0)
    planted = rng.choice(len(y), 15, replace=False)
    y[planted] = (y[planted] + torch.from_numpy(rng.integers(1, 10, 15))) % 10  # always a different digit
    noisy = MnistData(tiny_data.train_images, y, tiny_data.test_images, tiny_data.test_labels, {"x": "noisy"})
    result = li.find_issues(noisy, "train", recipe(folds=5))
    flagged = result.flagged_indices()
    found = set(flagged.tolist()) & set(planted.tolist())
    # The generated digits overlap (85 % out-of-fold accuracy), so some clean but ambiguous images are
    # flagged too; the planted errors (2.5 % of the images) must still dominate the top of the ranking.
    assert len(found) >= 11, (sorted(found), len(flagged))
    assert len(set(flagged[:15].tolist()) & set(planted.tolist())) >= 9
    assert len(flagged) <= 60
    scores = [i.score for i in result.issues]
    assert scores == sorted(scores)  # ranked by self-confidence, most suspicious first
    for issue in result.issues:
        assert issue.given == int(y[issue.index])
        assert abs(issue.score - issue.probabilities[issue.given]) < 1e-4
        assert issue.suggested == int(np.argmax(issue.probabilities))
    # the planted ones get the right label back as the suggestion
    clean = tiny_data.train_labels
    right = sum(i.suggested == int(clean[i.index]) for i in result.issues if i.index in found)
    assert right >= len(found) - 1


def test_results_are_cached_per_data_and_recipe(
    tiny_data: MnistData, tmp_path: Path, record, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = recipe(folds=3)
    first = li.label_issues(tiny_data, "train", r, cache_dir=tmp_path)
    path = li.cache_path(tmp_path, tiny_data.checksums, "train", r)
    assert path.exists() and [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp files left
    calls = len(record["train"])
    again = li.label_issues(tiny_data, "train", r, cache_dir=tmp_path)
    assert len(record["train"]) == calls  # from the cache: nothing trained
    assert [i.to_json() for i in again.issues] == [i.to_json() for i in first.issues]
    keys = {
        li.cache_key(tiny_data.checksums, "train", r),
        li.cache_key(tiny_data.checksums, "test", r),
        li.cache_key(tiny_data.checksums, "train", recipe(folds=4)),
        li.cache_key({**tiny_data.checksums, "x": "y"}, "train", r),
    }
    assert len(keys) == 4
    # the device does not change what is found, so it does not change the key either
    assert li.cache_key(tiny_data.checksums, "train", r) == li.cache_key(
        tiny_data.checksums, "train", Recipe(folds=3, seeds=1, config=QUICK.with_(device="auto"))
    )
    # a damaged cache is recomputed and replaced
    path.write_text("{not json")
    li.label_issues(tiny_data, "train", r, cache_dir=tmp_path)
    assert len(record["train"]) == calls + 3
    assert LabelIssues.from_dict(json.loads(path.read_text())).split == "train"


def test_cache_files_are_validated(tmp_path: Path) -> None:
    good = LabelIssues(
        split="train",
        issues=[li.LabelIssue(3, 1, 7, 0.01, (0.0,) * 10)],
        recipe={},
        checksums={},
        scored=10,
        accuracy=0.9,
        seconds=1.0,
        created="x",
        cleanlab_version="2.9.0",
    )
    assert LabelIssues.from_dict(good.to_dict()).issues == good.issues
    for bad in (
        [],
        {"version": 99},
        {**good.to_dict(), "split": "val"},
        {**good.to_dict(), "issues": [{"index": "3", "given": 1, "suggested": 7, "score": 0.1}]},
        {**good.to_dict(), "issues": [{"index": 3, "given": 11, "suggested": 7, "score": 0.1}]},
    ):
        with pytest.raises(LabelIssuesError):
            LabelIssues.from_dict(bad)
    assert li.load_cached(tmp_path / "none.json") is None
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(LabelIssuesError):
        li.load_cached(tmp_path / "dir.json")


def test_stop_ends_the_computation_and_caches_nothing(tiny_data: MnistData, tmp_path: Path) -> None:
    stop = threading.Event()

    def on_progress(p: li.Progress) -> None:
        if p.net == 2:
            stop.set()

    with pytest.raises(Stopped):
        li.label_issues(tiny_data, "train", recipe(), cache_dir=tmp_path, on_progress=on_progress, stop=stop)
    assert not any(tmp_path.iterdir())


def test_recipe_and_split_are_checked(tiny_data: MnistData) -> None:
    with pytest.raises(ValueError):
        Recipe(folds=1)
    with pytest.raises(ValueError):
        Recipe(seeds=0)
    with pytest.raises(ValueError):
        li.find_issues(tiny_data, "validation", recipe())


def test_without_indices_leaves_out_training_images(tiny_data: MnistData) -> None:
    data, _ = with_ids(tiny_data)
    out = li.without_indices(data, np.array([0, 5, 599]))
    assert len(out.train_labels) == len(data.train_labels) - 3
    assert not {0, 5, 599} & set(ids_of(out.train_images))
    assert torch.equal(out.test_images, data.test_images)
    assert (
        out.checksums["removed_train_indices"]
        != li.without_indices(data, np.array([1])).checksums["removed_train_indices"]
    )
    with pytest.raises(ValueError):
        li.without_indices(data, np.array([600]))


def test_train_without_flagged_compares_like_with_like(tiny_data: MnistData, tmp_path: Path) -> None:
    from mnistcore.runs import RunStore
    from mnistcore.train import train

    runs = RunStore(tmp_path / "runs")
    result = train(QUICK, tiny_data)
    base = runs.save(
        result.model,
        QUICK,
        test_accuracy=result.test_accuracy,
        train_seconds=result.train_seconds,
        history=result.history,
        dataset=tiny_data.checksums,
    )
    flagged = np.array([3, 30, 300])
    cmp = li.train_without_flagged(runs, base.run_id, tiny_data, flagged)
    assert cmp is not None and cmp.removed == 3 and cmp.baseline.run_id == base.run_id  # reused: same recipe
    assert cmp.accuracy_with == pytest.approx(base.test_accuracy)
    cleaned = runs.info(cmp.run.run_id)
    assert cleaned.extra["removed_flagged"] == 3 and cleaned.extra["precision"]["requested"] == QUICK.precision
    # what ran is saved: the recipe, with "auto" precision resolved on this machine
    assert cleaned.config == QUICK.with_(report_every=10, precision=cleaned.extra["precision"]["precision"])
    assert cleaned.test_accuracy == pytest.approx(cmp.accuracy_without)
    assert round((cmp.accuracy_without - cmp.accuracy_with) * len(tiny_data.test_labels)) == cmp.fixed - cmp.broken
    # a run that was not trained from scratch on this data is not a fair baseline: one is trained
    cmp2 = li.train_without_flagged(runs, cleaned.run_id, tiny_data, flagged)
    assert cmp2 is not None and cmp2.baseline.run_id not in (base.run_id, cleaned.run_id)
    assert runs.info(cmp2.baseline.run_id).dataset == tiny_data.checksums
    stop = threading.Event()
    stop.set()
    before = len(runs.list())
    assert li.train_without_flagged(runs, base.run_id, tiny_data, flagged, stop=stop) is None
    assert len(runs.list()) == before


def test_cache_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MNIST_CACHE_DIR", raising=False)
    assert li.default_cache_dir(tmp_path) == tmp_path / "cache"
    monkeypatch.setenv("MNIST_CACHE_DIR", str(tmp_path / "c"))
    assert li.default_cache_dir(tmp_path) == tmp_path / "c"


STANDARD = {name: md5 for name, _, md5 in RAW_FILES.values()}


def _standard_like(data: MnistData) -> MnistData:
    """Tiny arrays that claim the standard MNIST files' checksums (what the shipped results are keyed by)."""
    return MnistData(data.train_images, data.train_labels, data.test_images, data.test_labels, dict(STANDARD))


@pytest.mark.parametrize("split", li.SPLITS)
def test_the_shipped_result_answers_at_once_on_standard_mnist(
    split: str, tiny_data: MnistData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = li.shipped_path(STANDARD, split, Recipe())
    assert path.is_file() and path.stat().st_size < 200_000  # a small file in the repo, for the default recipe
    monkeypatch.setattr(li, "find_issues", lambda *a, **k: pytest.fail("computed although a result ships"))
    found = li.label_issues(_standard_like(tiny_data), split, Recipe(), cache_dir=tmp_path)
    assert found.shipped and found.checksums == STANDARD and found.split == split
    assert found.precision == "fp32"  # computed as the AVX2-only reference computes it
    assert list(tmp_path.iterdir()) == []  # read where it ships, not copied into the cache
    if split == "train":
        assert 30 <= len(found.issues) <= 80 and found.accuracy > 0.98
    # a result computed here takes precedence: it is what this server computed
    li.save_cached(li.cache_path(tmp_path, STANDARD, split, Recipe()), replace(found, issues=found.issues[:1]))
    mine = li.find_cached(_standard_like(tiny_data), split, Recipe(), tmp_path)
    assert mine is not None and not mine.shipped and len(mine.issues) == 1


def test_the_shipped_result_is_ignored_for_other_data_or_another_recipe(
    tiny_data: MnistData, tmp_path: Path, record
) -> None:
    assert li.find_cached(tiny_data, "train", Recipe(), tmp_path) is None  # other files: other checksums
    assert li.find_cached(_standard_like(tiny_data), "train", Recipe(folds=3), tmp_path) is None
    assert (
        li.find_cached(_standard_like(tiny_data), "train", Recipe(config=li.DEFAULT_CONFIG.with_(epochs=11)), tmp_path)
        is None
    )
    r = recipe(folds=2)
    computed = li.label_issues(_standard_like(tiny_data), "train", r, cache_dir=tmp_path)
    assert not computed.shipped and len(record["train"]) == 2  # the tiny recipe is computed, not shipped


def test_the_default_recipe_chooses_its_precision() -> None:
    assert li.DEFAULT_CONFIG.precision == "auto" and Recipe().to_dict()["config"]["precision"] == "auto"


def test_progress_says_how_long_the_rest_takes_once_the_first_net_is_timed() -> None:
    now = [100.0]
    seen: list[li.Progress] = []
    ticker = li._Ticker(5, seen.append, clock=lambda: now[0])
    ticker.start_net("fold 1/5, net 1/1")
    assert seen[-1].seconds_left is None and "left" not in seen[-1].message
    now[0] += 0.5
    ticker._emit(0.05)  # 5 % of the first net: its start-up costs would inflate an estimate
    assert seen[-1].seconds_left is None
    now[0] += 9.5
    ticker._emit(1.0)  # the first net took 10 s: four more nets, about 40 s
    assert seen[-1].seconds_left == pytest.approx(40.0)
    assert seen[-1].message == "fold 1/5, net 1/1: about 40 s left on this machine"
    ticker.start_net("fold 2/5, net 1/1")
    now[0] += 290.0  # a slower machine (or a busy one): the estimate follows what was measured
    ticker._emit(1.0)
    assert seen[-1].seconds_left == pytest.approx(300.0 * 3 / 2) and "about 8 min left" in seen[-1].message
    ticker.done()
    assert seen[-1].fraction == 1.0 and seen[-1].seconds_left == 0.0


def test_a_result_records_the_precision_its_nets_trained_in(tiny_data: MnistData, tmp_path: Path) -> None:
    r = Recipe(folds=2, config=QUICK.with_(precision="auto"))
    result = li.label_issues(tiny_data, "test", r, cache_dir=tmp_path)
    assert result.precision in ("fp32", "bf16")
    again = li.LabelIssues.from_dict(json.loads(li.cache_path(tmp_path, tiny_data.checksums, "test", r).read_text()))
    assert again.precision == result.precision
    old = {**result.to_dict()}
    del old["precision"]  # a result cached before precisions were recorded still loads
    assert li.LabelIssues.from_dict(old).precision is None
    with pytest.raises(LabelIssuesError):
        li.LabelIssues.from_dict({**old, "precision": "fp16"})
