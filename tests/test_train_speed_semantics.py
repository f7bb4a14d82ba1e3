"""The fast training path computes what autograd + torch.optim would: gradients, updates, schedule."""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from mnistcore.config import TrainConfig
from mnistcore.data import MnistData
from mnistcore.model import ShallowNet
from mnistcore.train import _Optimizer, _Params, _Stepper, onecycle, train

CPU = torch.device("cpu")
train_module = importlib.import_module("mnistcore.train")  # the package re-exports train(), the function


def _setup(config: TrainConfig, m: int, seed: int = 0) -> tuple[_Params, _Params, _Stepper, torch.Tensor, torch.Tensor]:
    """Random parameters, a stepper and one batch (inputs normalised-like, labels)."""
    gen = torch.Generator().manual_seed(seed)
    params, grads = _Params(config.hidden, CPU), _Params(config.hidden, CPU)
    params.flat.copy_(torch.randn(params.flat.shape, generator=gen) * 0.05)
    x = torch.randn(m, 784, generator=gen)
    y = torch.randint(0, 10, (m,), generator=gen)
    return params, grads, _Stepper(config, params, grads, CPU, dropout_seed=seed), x, y


def _step(stepper: _Stepper, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run one fast step; return each image's log-probability of its label and its largest one."""
    m, bs = len(y), stepper.config.batch_size
    neg_onehot = torch.zeros(10, m)
    neg_onehot[y, torch.arange(m)] = -1.0 / bs
    true_logp, max_logp = torch.empty(1, m), torch.empty(m)
    stepper(x.to(stepper.dtype), neg_onehot, y.view(1, m), true_logp, max_logp)
    return true_logp[0], max_logp


def _autograd(
    params: _Params,
    x: torch.Tensor,
    y: torch.Tensor,
    keep: torch.Tensor | None = None,
    scale: float = 1.0,
    bf16: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-image losses and the gradients of their mean, the ordinary way (optionally dropout, bf16 autocast)."""
    model = ShallowNet(params.hidden)
    with torch.no_grad():
        for dst, src in (
            (model.fc1.weight, params.w1),
            (model.fc1.bias, params.b1),
            (model.fc2.weight, params.w2),
            (model.fc2.bias, params.b2),
        ):
            dst.copy_(src)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        hidden = torch.relu(model.fc1(x))
        if keep is not None:
            hidden = hidden * keep * scale
        logits = model.fc2(hidden)
    losses = F.cross_entropy(logits.float(), y, reduction="none")
    losses.mean().backward()
    return losses.detach(), {
        "w1": model.fc1.weight.grad,
        "b1": model.fc1.bias.grad,
        "w2": model.fc2.weight.grad,
        "b2": model.fc2.bias.grad,
    }


@pytest.mark.parametrize("m", [32, 20], ids=["full-batch", "short-last-batch"])
def test_fp32_gradients_equal_autograd(m: int) -> None:
    config = TrainConfig(hidden=48, batch_size=32)
    params, grads, stepper, x, y = _setup(config, m)
    true_logp, max_logp = _step(stepper, x, y)
    losses, expected = _autograd(params, x, y)
    for name, grad in expected.items():
        torch.testing.assert_close(getattr(grads, name), grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(-true_logp, losses, rtol=1e-5, atol=1e-6)
    # An image counts as right exactly when its label has the largest log-probability.
    logits = torch.relu(x @ params.w1.T + params.b1) @ params.w2.T + params.b2
    assert torch.equal(true_logp == max_logp, logits.argmax(1) == y)


def test_dropout_gradients_equal_autograd_with_the_same_mask() -> None:
    config = TrainConfig(hidden=64, batch_size=128, dropout=0.4)
    params, grads, stepper, x, y = _setup(config, 128)
    _step(stepper, x, y)
    bits = stepper.buffers(128)[4]
    keep = bits.view(torch.uint8)[: 128 * 64].view(128, 64) < stepper.keep_below
    assert abs(keep.float().mean().item() - 0.6) < 0.02
    assert stepper.keep_scale == pytest.approx(1 / 0.6, rel=0.01)
    _, expected = _autograd(params, x, y, keep.float(), stepper.keep_scale)
    for name, grad in expected.items():
        torch.testing.assert_close(getattr(grads, name), grad, rtol=1e-4, atol=1e-6)


def test_bf16_gradients_match_autocast() -> None:
    config = TrainConfig(hidden=64, batch_size=64, precision="bf16")
    params, grads, stepper, x, y = _setup(config, 64)
    _step(stepper, x, y)
    _, expected = _autograd(params, x, y, bf16=True)
    for name, grad in expected.items():
        got = getattr(grads, name)
        assert got.dtype == torch.float32
        # Same products in the same precision as autocast; the bias sums round a little differently.
        assert (got - grad).norm() <= 0.01 * grad.norm(), name


@pytest.mark.parametrize(
    ("changes", "reference"),
    [
        ({}, lambda p: torch.optim.Adam(p, lr=1e-3)),
        ({"weight_decay": 0.1}, lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.1)),
        (
            {"optimizer": "sgd", "weight_decay": 1e-3},
            lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9, nesterov=True, weight_decay=1e-3),
        ),
    ],
    ids=["adam", "adamw", "sgd-nesterov"],
)
def test_optimizer_matches_torch_optim(changes: dict, reference: Callable) -> None:
    config = TrainConfig(**changes)
    gen = torch.Generator().manual_seed(3)
    start = torch.randn(1000, generator=gen)
    params, grads = start.clone(), torch.zeros(1000)
    ours = _Optimizer(config, params, grads)
    ref_param = torch.nn.Parameter(start.clone())
    ref = reference([ref_param])
    for _ in range(5):
        g = torch.randn(1000, generator=gen)
        grads.copy_(g)
        ours.step(1e-3, 0.9)
        ref_param.grad = g.clone()
        ref.step()
    torch.testing.assert_close(params, ref_param.detach(), rtol=1e-5, atol=1e-7)


def test_onecycle_matches_torch_scheduler() -> None:
    total, max_lr = 40, 0.01
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=max_lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=total)
    for step in range(total):
        lr, beta1 = onecycle(step, total, max_lr)
        assert lr == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9)
        assert beta1 == pytest.approx(opt.param_groups[0]["betas"][0], rel=1e-9)
        opt.step()
        sched.step()


def test_augmentation_in_several_chunks_is_deterministic(tiny_data: MnistData, monkeypatch: pytest.MonkeyPatch) -> None:
    # 64-image chunks: each epoch of 600 images asks the augmenter ten times, between batches.
    monkeypatch.setattr(train_module, "AUGMENT_CHUNK", 64)
    config = TrainConfig(hidden=32, epochs=2, batch_size=32, lr=3e-3, augment=True, device="cpu")
    first, second = train(config, tiny_data), train(config, tiny_data)
    assert torch.equal(first.model.fc1.weight, second.model.fc1.weight)
    assert first.history[-1]["test_accuracy"] == second.history[-1]["test_accuracy"]
    assert first.steps_done == 2 * math.ceil(600 / 32)


def test_training_leaves_global_torch_state_alone(tiny_data: MnistData) -> None:
    threads = torch.get_num_threads()
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    train(TrainConfig(hidden=32, epochs=1, batch_size=32, dropout=0.3, device="cpu"), tiny_data)
    assert torch.equal(torch.rand(3), expected)  # the global generator was neither drawn from nor reseeded
    assert torch.get_num_threads() == threads
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()


def test_returned_model_is_an_ordinary_trainable_module(tiny_data: MnistData) -> None:
    model = train(TrainConfig(hidden=32, epochs=1, batch_size=32, device="cpu"), tiny_data).model
    assert not any(p.is_inference() for p in model.parameters())
    model.train()
    model(torch.randn(4, 784)).sum().backward()  # would fail on inference-mode tensors
    assert model.fc1.weight.grad is not None


@pytest.mark.slow
def test_seed_recipe_on_real_mnist(mnist_data: MnistData) -> None:
    result = train(TrainConfig(device="cpu"), mnist_data)
    assert result.test_accuracy >= 0.973


def test_augment_share_distorts_that_share_of_images(tiny_data: MnistData) -> None:
    from mnistcore.augment import Augmenter
    from mnistcore.normalize import normalize

    images, labels = tiny_data.train_images[:400], tiny_data.train_labels[:400]
    plain = normalize(images)
    gen = torch.Generator().manual_seed(0)
    out = train_module._distorted_chunk(Augmenter(0), images, labels, 0.5, gen, torch.float32)
    changed = (out != plain).any(1).float().mean().item()
    assert 0.4 < changed < 0.6
    gen = torch.Generator().manual_seed(0)
    every = train_module._distorted_chunk(Augmenter(0), images, labels, 1.0, gen, torch.float32)
    assert (every != plain).any(1).float().mean().item() > 0.95
    config = TrainConfig(hidden=32, epochs=2, batch_size=32, lr=3e-3, augment=True, augment_share=0.5, device="cpu")
    first, second = train(config, tiny_data), train(config, tiny_data)
    assert torch.equal(first.model.fc1.weight, second.model.fc1.weight)
    assert first.test_accuracy >= 0.5
    # The draw style (its strokes need the labels) trains, reproducibly, and is not the mnist style's run.
    drawn = config.with_(augment_style="draw")
    third, fourth = train(drawn, tiny_data), train(drawn, tiny_data)
    assert torch.equal(third.model.fc1.weight, fourth.model.fc1.weight)
    assert not torch.equal(first.model.fc1.weight, third.model.fc1.weight)
    assert third.config.augment_style == "draw" and third.test_accuracy >= 0.5


def test_augment_share_is_validated() -> None:
    with pytest.raises(ValueError, match="augment_share"):
        TrainConfig(augment_share=0.0)
    with pytest.raises(ValueError, match="augment_share"):
        TrainConfig(augment_share=1.5)
    assert TrainConfig.from_dict({"hidden": 64}).augment_share == 1.0  # runs saved before the field existed


def test_progress_callbacks_run_outside_inference_mode(tiny_data: MnistData) -> None:
    modes: list[bool] = []
    train(
        TrainConfig(hidden=32, epochs=1, batch_size=32, report_every=5, device="cpu"),
        tiny_data,
        on_event=lambda _e: modes.append(torch.is_inference_mode_enabled()),
    )
    assert modes and not any(modes)
