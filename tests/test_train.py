"""Training on the tiny synthetic task: it learns, stops on request, is deterministic, reports progress."""

from __future__ import annotations

import dataclasses
import math
import threading

import pytest
import torch

from mnistcore.config import TrainConfig
from mnistcore.data import MnistData
from mnistcore.evaluate import evaluate
from mnistcore.train import BatchEvent, EpochEvent, resolve_device, train

# Small and quick on the 600-image task: 19 batches per epoch.
FAST = TrainConfig(hidden=32, epochs=3, batch_size=32, lr=3e-3, device="cpu")
TIMING = {"epoch_seconds", "elapsed"}


def _untimed(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k not in TIMING} for h in history]


def _finite(model: torch.nn.Module) -> bool:
    return all(torch.isfinite(p).all() for p in model.parameters())


def test_learns_the_tiny_task(tiny_data: MnistData) -> None:
    config = FAST.with_(epochs=4)
    result = train(config, tiny_data)
    assert not result.stopped
    assert result.steps_done == 4 * math.ceil(600 / 32)
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert result.test_accuracy >= 0.75  # chance is 0.10
    assert result.history[-1]["train_accuracy"] >= 0.75
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.test_accuracy == result.history[-1]["test_accuracy"]
    assert result.test_loss == result.history[-1]["test_loss"]
    assert result.train_seconds > 0
    assert not result.model.training
    # The reported accuracy is the one an independent evaluation of the returned model finds.
    ev = evaluate(result.model, tiny_data.test_images, tiny_data.test_labels)
    assert ev.accuracy == pytest.approx(result.test_accuracy, abs=1 / 200)


def test_untrained_model_is_at_chance(tiny_data: MnistData) -> None:
    stop = threading.Event()
    stop.set()  # stop before the first batch: the result is the initial model
    result = train(FAST, tiny_data, stop=stop)
    assert result.stopped and result.steps_done == 0 and result.history == []
    assert result.test_accuracy < 0.4
    assert math.isfinite(result.test_loss)


def test_training_does_not_modify_the_data(tiny_data: MnistData) -> None:
    before = [t.clone() for t in (tiny_data.train_images, tiny_data.train_labels, tiny_data.test_images)]
    train(FAST.with_(epochs=1), tiny_data)
    after = (tiny_data.train_images, tiny_data.train_labels, tiny_data.test_images)
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_progress_events_order_and_content(tiny_data: MnistData) -> None:
    config = FAST.with_(epochs=2, batch_size=64, report_every=3)  # 10 batches per epoch
    events: list[BatchEvent | EpochEvent] = []
    result = train(config, tiny_data, on_event=events.append)

    kinds = [(type(e).__name__, e.epoch, getattr(e, "batch", None)) for e in events]
    expected = []
    for epoch in (1, 2):
        expected += [("BatchEvent", epoch, b) for b in (3, 6, 9, 10)]  # every 3rd batch, and the epoch's last
        expected.append(("EpochEvent", epoch, None))
    assert kinds == expected

    batch_events = [e for e in events if isinstance(e, BatchEvent)]
    assert [e.step for e in batch_events] == [3, 6, 9, 10, 13, 16, 19, 20]
    for e in batch_events:
        assert (e.epochs, e.batches, e.total_steps) == (2, 10, 20)
        assert math.isfinite(e.loss) and e.loss > 0
        assert 0 <= e.train_accuracy <= 1
        assert e.eta >= 0
    assert batch_events[-1].eta == 0
    elapsed = [e.elapsed for e in events]
    assert elapsed == sorted(elapsed)

    epoch_events = [e for e in events if isinstance(e, EpochEvent)]
    assert result.history == [dataclasses.asdict(e) for e in epoch_events]
    for e in epoch_events:
        assert e.epochs == 2 and 0 <= e.test_accuracy <= 1 and math.isfinite(e.test_loss)
        # The epoch's training accuracy is the running accuracy its last batch event reported.
        last = [b for b in batch_events if b.epoch == e.epoch][-1]
        assert e.train_accuracy == pytest.approx(last.train_accuracy)
    assert epoch_events[-1].test_accuracy == result.test_accuracy


def test_stop_from_on_event_ends_within_one_batch(tiny_data: MnistData) -> None:
    stop = threading.Event()
    events: list = []

    def on_event(e: BatchEvent | EpochEvent) -> None:
        events.append(e)
        if isinstance(e, BatchEvent):
            stop.set()

    result = train(FAST.with_(report_every=1), tiny_data, on_event=on_event, stop=stop)
    assert result.stopped
    assert result.steps_done == 1
    assert len(events) == 1 and isinstance(events[0], BatchEvent)  # no epoch finished, no further batch
    assert result.history == []
    assert math.isfinite(result.test_accuracy) and 0 <= result.test_accuracy <= 1
    assert _finite(result.model) and not result.model.training
    probs = result.model.probabilities(torch.randn(3, 784))
    torch.testing.assert_close(probs.sum(1), torch.ones(3))


def test_stop_after_an_epoch_keeps_that_epoch(tiny_data: MnistData) -> None:
    stop = threading.Event()

    def on_event(e: BatchEvent | EpochEvent) -> None:
        if isinstance(e, EpochEvent):
            stop.set()

    result = train(FAST, tiny_data, on_event=on_event, stop=stop)
    assert result.stopped
    assert result.steps_done == math.ceil(600 / 32)
    assert len(result.history) == 1
    # Nothing trained after epoch 1 was evaluated, so the final metrics are epoch 1's.
    assert result.test_accuracy == pytest.approx(result.history[0]["test_accuracy"])


def test_stop_from_another_thread(tiny_data: MnistData) -> None:
    stop = threading.Event()
    started = threading.Event()
    steps: list[int] = []
    late: list[int] = []  # batch events after the trainer had already seen the stop request
    seen_stop = [False]
    out: dict = {}

    def on_event(e: BatchEvent | EpochEvent) -> None:
        if isinstance(e, BatchEvent):
            if seen_stop[0]:
                late.append(e.step)
            steps.append(e.step)
            seen_stop[0] = stop.is_set()
            if e.step >= 5:
                started.set()

    config = FAST.with_(epochs=200, report_every=1)  # far too long to finish by itself during the test
    worker = threading.Thread(target=lambda: out.update(result=train(config, tiny_data, on_event, stop)))
    worker.start()
    try:
        assert started.wait(60), "training made no progress"
    finally:
        stop.set()
        worker.join(60)
    assert not worker.is_alive()
    result = out["result"]
    assert result.stopped
    assert result.steps_done < 200 * math.ceil(600 / 32)
    assert late == []
    assert result.steps_done == steps[-1]
    assert _finite(result.model)


def test_same_seed_same_result(tiny_data: MnistData) -> None:
    config = FAST.with_(epochs=2, dropout=0.2)  # dropout: the global RNG must be seeded too
    first = train(config, tiny_data)
    torch.manual_seed(12345)  # whatever ran before must not matter
    torch.rand(1000)
    second = train(config, tiny_data)
    assert _untimed(first.history) == _untimed(second.history)
    a, b = first.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert first.test_accuracy == second.test_accuracy


def test_different_seed_different_result(tiny_data: MnistData) -> None:
    first = train(FAST.with_(epochs=1, seed=0), tiny_data)
    second = train(FAST.with_(epochs=1, seed=1), tiny_data)
    assert not torch.equal(first.model.fc1.weight, second.model.fc1.weight)
    assert first.history[0]["train_loss"] != second.history[0]["train_loss"]


@pytest.mark.parametrize(
    "changes",
    [
        {"optimizer": "sgd", "lr": 0.05},
        {"schedule": "onecycle", "lr": 1e-2},
        {"optimizer": "sgd", "lr": 0.05, "schedule": "onecycle", "dropout": 0.2},
        {"weight_decay": 1e-2},
        {"precision": "bf16"},
    ],
    ids=["sgd", "onecycle", "sgd-onecycle-dropout", "adamw", "bf16"],
)
def test_variants_learn(tiny_data: MnistData, changes: dict) -> None:
    result = train(FAST.with_(**changes), tiny_data)
    assert _finite(result.model)
    assert result.test_accuracy >= 0.6


def test_weight_decay_shrinks_weights(tiny_data: MnistData) -> None:
    plain = train(FAST.with_(epochs=2), tiny_data)
    decayed = train(FAST.with_(epochs=2, weight_decay=5.0), tiny_data)  # lr*wd = 1.5 % per step
    assert decayed.model.fc1.weight.norm() < 0.8 * plain.model.fc1.weight.norm()


def test_augmented_training_learns_and_is_deterministic(tiny_data: MnistData) -> None:
    config = FAST.with_(epochs=1, augment=True)
    first, second = train(config, tiny_data), train(config, tiny_data)
    assert _untimed(first.history) == _untimed(second.history)
    assert torch.equal(first.model.fc1.weight, second.model.fc1.weight)
    assert first.test_accuracy >= 0.5
    # The distortions change what is trained on.
    assert not torch.equal(first.model.fc1.weight, train(config.with_(augment=False), tiny_data).model.fc1.weight)


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


# ---------------------------------------------------------------- same maths as autograd + torch.optim


def _initial_model(config: TrainConfig, data: MnistData) -> torch.nn.Module:
    """The weights `train` starts from: stopped before its first step, it returns them untouched."""
    stop = threading.Event()
    stop.set()
    return train(config, data, stop=stop).model


def _reference_optimizer(config: TrainConfig, model: torch.nn.Module, total_steps: int):
    if config.optimizer == "adam":
        cls = torch.optim.AdamW if config.weight_decay else torch.optim.Adam
        opt = cls(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    else:
        opt = torch.optim.SGD(
            model.parameters(), lr=config.lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay
        )
    sched = (
        torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=total_steps)
        if config.schedule == "onecycle"
        else None
    )
    return opt, sched


@pytest.mark.parametrize(
    "changes",
    [
        {"lr": 1e-2},
        {"lr": 1e-2, "weight_decay": 0.1},
        {"optimizer": "sgd", "lr": 0.1, "weight_decay": 1e-3},
        {"lr": 1e-2, "schedule": "onecycle"},
        {"optimizer": "sgd", "lr": 0.1, "schedule": "onecycle"},
    ],
    ids=["adam", "adamw", "sgd-nesterov", "adam-onecycle", "sgd-onecycle"],
)
def test_full_batch_training_matches_autograd_reference(tiny_data: MnistData, changes: dict) -> None:
    # One batch per epoch holds the whole training set, so shuffling cannot change any step.
    config = TrainConfig(hidden=32, epochs=6, batch_size=600, device="cpu", **changes)
    events: list = []
    result = train(config, tiny_data, on_event=events.append)

    import torch.nn.functional as F

    from mnistcore.normalize import normalize

    ref = _initial_model(config, tiny_data).train()
    x, y = normalize(tiny_data.train_images), tiny_data.train_labels
    opt, sched = _reference_optimizer(config, ref, total_steps=config.epochs)
    ref_losses, ref_acc = [], []
    for _ in range(config.epochs):
        logits = ref(x)
        loss = F.cross_entropy(logits, y)
        ref_losses.append(loss.item())
        ref_acc.append((logits.argmax(1) == y).sum().item() / len(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()

    for name, value in ref.state_dict().items():
        torch.testing.assert_close(result.model.state_dict()[name], value, rtol=1e-4, atol=1e-5, msg=name)
    # Reported training loss/accuracy are those of the weights each step started from.
    batch_losses = [e.loss for e in events if isinstance(e, BatchEvent)]
    assert batch_losses == pytest.approx(ref_losses, rel=1e-4)
    assert [h["train_accuracy"] for h in result.history] == ref_acc
    # Reported test metrics are those of the final weights.
    ref.eval()
    with torch.no_grad():
        test_logits = ref(normalize(tiny_data.test_images))
    assert result.test_loss == pytest.approx(F.cross_entropy(test_logits, tiny_data.test_labels).item(), rel=1e-4)
    assert result.test_accuracy == (test_logits.argmax(1) == tiny_data.test_labels).sum().item() / 200


def test_partial_last_batch_is_a_mean_over_its_images(tiny_data: MnistData) -> None:
    # Every training image identical: any batch's mean gradient is that one image's gradient, whatever
    # the shuffle, so a 400 + 200 split must take two equal-sized SGD steps per epoch.
    image, label = tiny_data.train_images[:1], tiny_data.train_labels[:1]
    data = MnistData(image.repeat(600, 1, 1), label.repeat(600), tiny_data.test_images, tiny_data.test_labels, {})
    config = TrainConfig(hidden=32, epochs=2, batch_size=400, optimizer="sgd", lr=0.05, device="cpu")
    result = train(config, data)

    import torch.nn.functional as F

    from mnistcore.normalize import normalize

    ref = _initial_model(config, data).train()
    opt, _ = _reference_optimizer(config, ref, total_steps=4)
    x = normalize(image)
    for _ in range(4):
        opt.zero_grad()
        F.cross_entropy(ref(x), label).backward()
        opt.step()
    for name, value in ref.state_dict().items():
        torch.testing.assert_close(result.model.state_dict()[name], value, rtol=1e-4, atol=1e-5, msg=name)


def test_returned_model_is_an_ordinary_trainable_module(tiny_data: MnistData) -> None:
    import torch.nn.functional as F

    from mnistcore.normalize import normalize

    model = train(FAST.with_(epochs=1), tiny_data).model
    assert all(p.requires_grad for p in model.parameters())
    loss = F.cross_entropy(model.train()(normalize(tiny_data.train_images[:8])), tiny_data.train_labels[:8])
    loss.backward()  # an inference-mode tensor would refuse to be saved for backward
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


# ---- precision "auto" and time budgets ---------------------------------------------------------------


def test_auto_precision_is_resolved_and_recorded(tiny_data: MnistData) -> None:
    result = train(FAST.with_(epochs=1, precision="auto"), tiny_data)
    assert result.config.precision in ("fp32", "bf16")  # the run's config says what it ran in
    assert result.precision is not None and result.precision.requested == "auto"
    assert result.precision.precision == result.config.precision and result.precision.reason
    assert result.run_record()["precision"]["precision"] == result.config.precision
    assert result.budget is None and result.run_record()["budget"] is None


@pytest.fixture
def one_thread() -> None:
    """Budgets are about timing: one torch thread is steady on a shared machine, two wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


BUDGETED = TrainConfig(
    hidden=512,
    batch_size=8,
    lr=1e-3,
    schedule="onecycle",
    dropout=0.1,
    device="cpu",
    precision="fp32",
    budget_seconds=1.5,
)


def test_budget_chooses_the_epochs_and_the_run_is_that_many_epochs(tiny_data: MnistData, one_thread: None) -> None:
    events: list[BatchEvent] = []
    result = train(BUDGETED, tiny_data, on_event=lambda e: isinstance(e, BatchEvent) and events.append(e))
    plan = result.budget
    assert plan is not None and plan.seconds == 1.5 and plan.measured_steps >= 3
    epochs = plan.epochs
    assert 2 <= epochs < 200 and result.config.epochs == epochs and len(result.history) == epochs, plan
    assert result.config.budget_seconds == 1.5  # kept: the run records what it was asked for
    # The one-cycle schedule was laid out for exactly the chosen length.
    batches = math.ceil(600 / 8)
    assert {e.total_steps for e in events} == {batches * epochs} and result.steps_done == batches * epochs
    # Loose: the budget is met to ~10 % on a quiet machine; five engineers share this one's two cores.
    assert 0.3 * 1.5 < result.train_seconds < 4 * 1.5, (result.train_seconds, plan)
    record = result.run_record()["budget"]
    assert record["epochs"] == epochs and record["seconds"] == 1.5 and record["epoch_seconds"] > 0
    # Measuring used scratch copies: the run is exactly the run with that many epochs and no budget.
    fixed = train(BUDGETED.with_(budget_seconds=None, epochs=epochs), tiny_data)
    assert _untimed(fixed.history) == _untimed(result.history)
    for a, b in zip(fixed.model.parameters(), result.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_budget_scales_the_epochs(tiny_data: MnistData, one_thread: None) -> None:
    short = train(BUDGETED.with_(budget_seconds=1), tiny_data).config.epochs
    long = train(BUDGETED.with_(budget_seconds=3), tiny_data).config.epochs
    assert long > short  # about 3x; loose, as the machine is shared


def test_budget_with_the_draw_distortions_measures_them_and_trains(tiny_data: MnistData, one_thread: None) -> None:
    # The planner distorts a scratch chunk too, and the draw style's strokes need that chunk's labels.
    config = BUDGETED.with_(hidden=64, augment=True, augment_share=0.6, augment_style="draw", budget_seconds=2)
    result = train(config, tiny_data)
    assert result.budget is not None and result.config.epochs == result.budget.epochs >= 1
    assert result.config.augment_style == "draw" and len(result.history) == result.config.epochs
