"""Fast in-memory training with progress events and a stop request; safe in a background thread."""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from mnistcore.config import TrainConfig
from mnistcore.data import MnistData
from mnistcore.model import ShallowNet
from mnistcore.normalize import normalize


@dataclass(frozen=True)
class BatchEvent:
    """Progress inside an epoch, sent every `report_every` batches."""

    epoch: int  # 1-based
    epochs: int
    batch: int  # batches done in this epoch
    batches: int  # batches per epoch
    step: int  # batches done overall
    total_steps: int
    loss: float  # mean training loss over the batches since the previous event
    train_accuracy: float  # running training accuracy over this epoch so far
    elapsed: float  # seconds since training started
    eta: float  # estimated seconds left


@dataclass(frozen=True)
class EpochEvent:
    """End of an epoch, with test-set metrics."""

    epoch: int
    epochs: int
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    epoch_seconds: float
    elapsed: float


Event = BatchEvent | EpochEvent


@dataclass
class TrainResult:
    """The trained model and what happened while training it."""

    model: ShallowNet
    config: TrainConfig
    history: list[dict[str, Any]] = field(default_factory=list)  # one EpochEvent dict per epoch
    stopped: bool = False  # True when a stop request ended training early
    train_seconds: float = 0.0
    steps_done: int = 0
    test_accuracy: float = float("nan")  # of the final model (evaluated even after a stop)
    test_loss: float = float("nan")


def resolve_device(device: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but CUDA is not available")
    return torch.device(device)


def _autocast(config: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    if config.precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def _test_metrics(model: ShallowNet, x: torch.Tensor, y: torch.Tensor, config: TrainConfig) -> tuple[float, float]:
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    with _autocast(config, x.device):
        for i in range(0, len(x), 8192):
            logits = model(x[i:i + 8192]).float()
            loss_sum += F.cross_entropy(logits, y[i:i + 8192], reduction="sum")
            correct += (logits.argmax(1) == y[i:i + 8192]).sum()
    model.train()
    n = max(len(x), 1)
    return loss_sum.item() / n, correct.item() / n


def _optimizer(model: ShallowNet, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        cls = torch.optim.AdamW if config.weight_decay else torch.optim.Adam
        return cls(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, foreach=True)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, nesterov=True,
                           weight_decay=config.weight_decay, foreach=True)


def train(
    config: TrainConfig,
    data: MnistData,
    on_event: Callable[[Event], None] | None = None,
    stop: threading.Event | None = None,
) -> TrainResult:
    """Train a ShallowNet on `data`; report events to `on_event`; end within one batch of `stop`."""
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)  # dropout masks use the global generator
    gen = torch.Generator().manual_seed(config.seed)
    model = ShallowNet(config.hidden, config.dropout)
    # Re-initialise from our own generator so results never depend on what ran before.
    with torch.no_grad():
        for layer in (model.fc1, model.fc2):  # PyTorch's default bounds, from our own generator
            bound = 1 / math.sqrt(layer.in_features)
            layer.weight.uniform_(-bound, bound, generator=gen)
            layer.bias.uniform_(-bound, bound, generator=gen)
    model.to(device).train()

    y_train = data.train_labels.to(device)
    x_test, y_test = normalize(data.test_images).to(device), data.test_labels.to(device)
    if config.augment:
        from mnistcore.augment import Augmenter

        augmenter = Augmenter(seed=config.seed)
        x_train = data.train_images.to(device)  # uint8 images; distorted and normalised per batch
    else:
        augmenter = None
        x_train = normalize(data.train_images).to(device)  # normalised once, not per batch

    n = len(y_train)
    batches = math.ceil(n / config.batch_size)
    total_steps = batches * config.epochs
    opt = _optimizer(model, config)
    sched = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=total_steps)
             if config.schedule == "onecycle" else None)
    result = TrainResult(model=model, config=config)
    emit = on_event or (lambda _e: None)
    start = time.perf_counter()
    step = 0
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        perm = torch.randperm(n, generator=gen).to(device)
        # Sums stay on the device; reading them (.item()) happens only at report time.
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        window_loss = torch.zeros((), device=device)
        window_n = seen = 0
        for b in range(batches):
            if stop is not None and stop.is_set():
                result.stopped = True
                break
            idx = perm[b * config.batch_size:(b + 1) * config.batch_size]
            yb = y_train[idx]
            xb = x_train[idx]
            if augmenter is not None:
                xb = normalize(augmenter(xb))
            with _autocast(config, device):
                logits = model(xb)
            loss = F.cross_entropy(logits.float(), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            step += 1
            with torch.no_grad():
                detached = loss.detach()
                loss_sum += detached * len(yb)
                window_loss += detached
                correct += (logits.argmax(1) == yb).sum()
            window_n += 1
            seen += len(yb)
            if (b + 1) % config.report_every == 0 or b + 1 == batches:
                elapsed = time.perf_counter() - start
                emit(BatchEvent(
                    epoch=epoch, epochs=config.epochs, batch=b + 1, batches=batches, step=step,
                    total_steps=total_steps, loss=window_loss.item() / window_n,
                    train_accuracy=correct.item() / seen, elapsed=elapsed,
                    eta=elapsed / step * (total_steps - step),
                ))
                window_loss.zero_()
                window_n = 0
        if result.stopped:
            break
        test_loss, test_acc = _test_metrics(model, x_test, y_test, config)
        event = EpochEvent(
            epoch=epoch, epochs=config.epochs, train_loss=loss_sum.item() / max(seen, 1),
            train_accuracy=correct.item() / max(seen, 1), test_loss=test_loss, test_accuracy=test_acc,
            epoch_seconds=time.perf_counter() - epoch_start, elapsed=time.perf_counter() - start,
        )
        result.history.append(event.__dict__.copy())
        emit(event)
    result.train_seconds = time.perf_counter() - start
    result.steps_done = step
    model.eval()
    if result.history and not result.stopped:
        result.test_loss, result.test_accuracy = result.history[-1]["test_loss"], result.history[-1]["test_accuracy"]
    else:
        result.test_loss, result.test_accuracy = _test_metrics(model, x_test, y_test, config)
        model.eval()
    return result
