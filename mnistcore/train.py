"""Fast in-memory training with progress events and a stop request; safe in a background thread.

The network is small enough that, with autograd and torch.optim, framework overhead costs more than
the arithmetic (about 1 ms a step against 0.2 ms of matrix products). So training runs its own
forward and backward pass (four matrix products and a handful of small ops into preallocated
buffers) on the four parameters held as views of one flat buffer, updated by one fused optimizer
kernel per step (the same kernels torch.optim's fused=True path calls). The result is a plain
ShallowNet with the same maths as `ShallowNet` + cross-entropy + torch.optim (checked in the tests).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mnistcore.augment import STYLES, Augmenter
from mnistcore.calibration import calibrate, split_holdout
from mnistcore.config import MAX_EPOCHS, TrainConfig
from mnistcore.data import MnistData
from mnistcore.hardware import PrecisionChoice, choose_precision
from mnistcore.model import ShallowNet
from mnistcore.normalize import normalize
from mnistcore.snapshots import Recorder, UnitSnapshots

# Knuth's MMIX LCG (multiplier, increment, 2**64): mixes a seed with a stream number into a new 64-bit seed
# whose stream is unrelated to the seed's own, so no two random streams of a run (or of its continuations)
# start from the same state. The values must never change: they decide every run's dropout masks.
_LCG_MULTIPLIER = 6364136223846793005
_LCG_INCREMENT = 1442695040888963407
_SEED_MODULUS = 2**64
_PLAN_SEED = 12345  # the budget measurement's scratch streams: fixed, and apart from the run's own
AUGMENT_CHUNK = 4096  # images distorted per Augmenter call: per batch costs ~20x more, per epoch delays a stop


@dataclass(frozen=True)
class BatchEvent:
    """Progress inside an epoch, sent every `report_every` batches."""

    epoch: int  # 1-based
    epochs: int
    batch: int  # batches done in this epoch
    batches: int  # batches per epoch
    step: int  # batches done overall
    total_steps: int
    loss: float  # mean training loss over the images since the previous event
    train_accuracy: float  # running training accuracy over this epoch so far
    elapsed: float  # seconds since training started
    eta: float  # estimated seconds left
    # The watched hidden units' input weights now, (K, 784) float16 (mnistcore/snapshots.py), on the events
    # that train(units_every=...) picked; None on the others.
    units: np.ndarray | None = field(default=None, compare=False)


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


@dataclass(frozen=True)
class BudgetPlan:
    """How a time budget became a number of epochs: the throughput measured in the first steps."""

    seconds: float  # the budget (TrainConfig.budget_seconds)
    epochs: int  # epochs chosen to fill it (the run's config.epochs)
    epoch_seconds: float  # estimated seconds per epoch: steps, distortions, test-set metrics
    step_seconds: float  # measured mean seconds per optimizer step
    measured_steps: int
    setup_seconds: float  # spent before training proper (data on the device, precision, this measurement)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready), as recorded in a run."""
        return dict(self.__dict__)


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
    # Where training left off, for a later train(init=TrainState(...)): the optimizer's flat state
    # (OPTIMIZER_STATE_KEYS, CPU float32, in PARAM_LAYOUT order) and the random streams' states.
    optimizer_state: dict[str, torch.Tensor] = field(default_factory=dict)
    rng_state: dict[str, torch.Tensor] = field(default_factory=dict)
    parent_seconds: float = 0.0  # training time of the run this one continued (0 for a fresh run)
    precision: PrecisionChoice | None = None  # how config.precision (e.g. "auto") was resolved on this device
    budget: BudgetPlan | None = None  # set when config.budget_seconds chose the number of epochs
    # The temperature fitted on the held-out training images and how (mnistcore.calibration.Calibration);
    # model.temperature holds the same temperature.
    calibration: dict[str, Any] | None = None
    ood: Any = None  # mnistcore.ood.OodModel fitted on the training data (the "not a digit" score), or None
    ood_seconds: float = 0.0  # what fitting it took (not part of train_seconds)
    # The watched units' weights after each epoch (and before the first), the parent's first for a continued run.
    unit_snapshots: UnitSnapshots | None = None

    def run_record(self) -> dict[str, Any]:
        """How this run was fitted to the machine, for the saved run's metadata: precision and budget."""
        return {
            "precision": self.precision.to_dict() if self.precision is not None else None,
            "budget": self.budget.to_dict() if self.budget is not None else None,
        }

    @property
    def total_seconds(self) -> float:
        """Training time including the runs this one continued."""
        return self.parent_seconds + self.train_seconds


# The order of the four parameters in the flat buffer that the optimizer state is kept for.
PARAM_LAYOUT = ("fc1.weight", "fc2.weight", "fc1.bias", "fc2.bias")
OPTIMIZER_STATE_KEYS = {"adam": ("exp_avg", "exp_avg_sq", "step"), "sgd": ("momentum",)}
RNG_STREAMS = ("shuffle", "dropout", "augment")


@dataclass(frozen=True)
class TrainState:
    """Where a run left off, to continue it: train(config, data, init=TrainState(...)).

    Only `model` is required. The optimizer state is used when it belongs to the optimizer the new
    config asks for; the random streams are restored when the seed is unchanged, so that continuing a
    constant-rate run for N epochs gives the same weights as training it that much longer in one go.
    """

    model: ShallowNet
    optimizer: str | None = None  # the optimizer `optimizer_state` belongs to
    optimizer_state: dict[str, torch.Tensor] = field(default_factory=dict)
    rng_state: dict[str, torch.Tensor] = field(default_factory=dict)  # RNG_STREAMS -> generator state
    seed: int | None = None  # the seed the saved random streams started from
    history: list[dict[str, Any]] = field(default_factory=list)  # the parent's epochs
    train_seconds: float = 0.0  # the parent's training time
    unit_snapshots: UnitSnapshots | None = None  # the parent's, extended by the continued run


def resolve_device(device: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but CUDA is not available")
    return torch.device(device)


def onecycle(step: int, total_steps: int, max_lr: float) -> tuple[float, float]:
    """(lr, momentum) of torch's OneCycleLR with its defaults at optimizer step `step` (0-based)."""
    # Written out rather than driving torch.optim.lr_scheduler.OneCycleLR: that needs a torch.optim
    # optimizer, whose per-step Python overhead is what this module avoids.
    initial, peak = max_lr / 25.0, max_lr
    final = initial / 1e4
    warm_end = 0.3 * total_steps - 1
    last = total_steps - 1
    if step <= warm_end:
        pct, lr_from, lr_to, mom_from, mom_to = step / warm_end, initial, peak, 0.95, 0.85
    else:
        pct, lr_from, lr_to, mom_from, mom_to = (step - warm_end) / (last - warm_end), peak, final, 0.85, 0.95
    cos = math.cos(math.pi * pct) + 1

    def anneal(start: float, end: float) -> float:
        return end + (start - end) / 2.0 * cos

    return anneal(lr_from, lr_to), anneal(mom_from, mom_to)


class _Params:
    """fc1.weight, fc2.weight, fc1.bias, fc2.bias as views of one flat tensor, in that order.

    Weights first, so the two weight gradients form one contiguous block (one cast in bf16).
    """

    def __init__(self, hidden: int, device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        self.hidden = hidden
        self.weights = hidden * 784 + 10 * hidden  # length of the weight block
        self.flat = torch.zeros(self.weights + hidden + 10, device=device, dtype=dtype)
        w1, w2, b1, b2 = self.flat.split((hidden * 784, 10 * hidden, hidden, 10))
        self.w1, self.w2, self.b1, self.b2 = w1.view(hidden, 784), w2.view(10, hidden), b1, b2
        self.b2col = b2.view(10, 1)  # broadcast over the batch in the (10, batch) logits


class _Optimizer:
    """Adam / AdamW / SGD with Nesterov momentum on one flat tensor: one fused kernel per step."""

    def __init__(self, config: TrainConfig, params: torch.Tensor, grads: torch.Tensor) -> None:
        self.config = config
        self.params, self.grads = params, grads
        if config.optimizer == "adam":
            self.exp_avg, self.exp_avg_sq = torch.zeros_like(params), torch.zeros_like(params)
            self.step_count = torch.zeros((), device=params.device)  # the kernels want it as a tensor
            self.kernel = torch._fused_adamw_ if config.weight_decay else torch._fused_adam_
        else:
            self.momentum = torch.zeros_like(params)
        self.first = True

    def step(self, lr: float, momentum: float) -> None:
        """Apply the current gradients; `momentum` is Adam's beta1 or SGD's momentum."""
        c = self.config
        if c.optimizer == "adam":
            self.step_count.add_(1)
            self.kernel(
                [self.params],
                [self.grads],
                [self.exp_avg],
                [self.exp_avg_sq],
                [],
                [self.step_count],
                lr=lr,
                beta1=momentum,
                beta2=0.999,
                weight_decay=c.weight_decay,
                eps=1e-8,
                amsgrad=False,
                maximize=False,
            )
        else:
            torch._fused_sgd_(
                [self.params],
                [self.grads],
                [self.momentum],
                weight_decay=c.weight_decay,
                momentum=momentum,
                lr=lr,
                dampening=0.0,
                nesterov=True,
                maximize=False,
                is_first_step=self.first,
            )
        self.first = False

    def state(self) -> dict[str, torch.Tensor]:
        """The state a later run needs to continue exactly: flat CPU float32 copies (OPTIMIZER_STATE_KEYS)."""
        if self.config.optimizer == "adam":
            tensors = {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq, "step": self.step_count}
        else:
            tensors = {"momentum": self.momentum}
        return {k: v.detach().to("cpu", torch.float32, copy=True).contiguous() for k, v in tensors.items()}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        """Continue from `state()` of an earlier run with the same optimizer and net shape."""
        expected = OPTIMIZER_STATE_KEYS[self.config.optimizer]
        if sorted(state) != sorted(expected):
            raise ValueError(f"{self.config.optimizer} state needs {expected}, got {sorted(state)}")
        for key in expected:
            dst = self.step_count if key == "step" else getattr(self, key)
            if state[key].numel() != dst.numel():
                raise ValueError(f"optimizer state {key} has {state[key].numel()} values, expected {dst.numel()}")
            dst.copy_(state[key].reshape(dst.shape))
        # SGD's first step fills the momentum buffer with the gradient; a continued run already has one.
        self.first = False


class _Stepper:
    """Forward + cross-entropy + backward for one batch, written into preallocated buffers."""

    def __init__(
        self, config: TrainConfig, params: _Params, grads: _Params, device: torch.device, dropout_seed: int
    ) -> None:
        self.config, self.params, self.grads, self.device = config, params, grads, device
        self.dtype = torch.bfloat16 if config.precision == "bf16" else torch.float32
        if self.dtype == torch.float32:
            self.compute = params  # the products read the fp32 master weights directly
            self.wgrad = grads
        else:
            # bf16 copies of the weights for the products, and a bf16 landing place for the weight
            # gradients; the master weights and the optimizer stay fp32.
            self.compute = _Params(config.hidden, device, self.dtype)
            self.wgrad = _Params(config.hidden, device, self.dtype)
        # Dropout keeps a unit when a random byte is below keep_below: 4 mask entries per 32-bit draw, ~10x
        # cheaper than bernoulli_. The keep probability is thereby rounded to a multiple of 1/256.
        self.keep_below = min(255, max(1, round((1.0 - config.dropout) * 256)))
        self.keep_scale = 256 / self.keep_below if config.dropout else 1.0
        # Its own generator: reseeding the global one would disturb other threads.
        self.dropout_gen = torch.Generator(device=device).manual_seed(dropout_seed) if config.dropout else None
        # Masks are applied to the bit pattern: x * 0 or x * 1 as integers is exact and far faster in bf16.
        self.int_view = torch.int16 if self.dtype == torch.bfloat16 else torch.int32
        self._buffers: dict[int, tuple[torch.Tensor, ...]] = {}

    def buffers(self, m: int) -> tuple[torch.Tensor, ...]:
        """Hidden activations, logits (10, m), output and hidden gradients, dropout bits for batch size m."""
        if m not in self._buffers:
            h = self.config.hidden
            self._buffers[m] = (
                torch.empty(m, h, device=self.device, dtype=self.dtype),
                torch.empty(10, m, device=self.device, dtype=self.dtype),
                torch.empty(10, m, device=self.device),
                torch.empty(m, h, device=self.device, dtype=self.dtype),
                torch.empty((m * h + 3) // 4, device=self.device, dtype=torch.int32),  # dropout's random bytes
            )
        return self._buffers[m]

    def __call__(
        self,
        xb: torch.Tensor,
        neg_onehot: torch.Tensor,
        labels: torch.Tensor,
        true_logp: torch.Tensor,
        max_logp: torch.Tensor,
    ) -> None:
        """Gradients of the mean loss of batch xb into the grads buffer.

        neg_onehot: (10, m) with -1/batch_size at each label; labels: (1, m). Writes each image's
        log-probability of its label into true_logp (1, m) and its largest log-probability into
        max_logp (m,): the loss and accuracy are summed from them only when reported.
        """
        p, g, m = self.compute, self.grads, xb.shape[0]
        hidden, logits, grad_out, grad_hidden, bits = self.buffers(m)
        if self.compute is not self.params:
            p.flat.copy_(self.params.flat)
        torch.addmm(p.b1, xb, p.w1.t(), out=hidden)
        hidden.relu_()
        if self.dropout_gen is not None:
            # Dropped units become 0; the 1/keep scaling rides on the products below (alpha, grad_out),
            # and the ReLU backward (hidden > 0) then also zeroes their gradient.
            bits.random_(-(2**31), 2**31, generator=self.dropout_gen)
            keep = bits.view(torch.uint8)[: hidden.numel()].view(hidden.shape) < self.keep_below
            hidden.view(self.int_view).mul_(keep)
        # Logits as (10, m): softmax over the contiguous dim of a (10, m) tensor is ~5x faster here.
        torch.addmm(p.b2col, p.w2, hidden.t(), alpha=self.keep_scale, out=logits)
        logp = torch.log_softmax(logits, 0, dtype=torch.float32)
        torch.gather(logp, 0, labels, out=true_logp)
        torch.amax(logp, 0, out=max_logp)
        # d(mean loss)/d(logits) = (softmax - onehot) / m
        torch.add(neg_onehot, logp.exp_(), alpha=1.0 / self.config.batch_size, out=grad_out)
        if m != self.config.batch_size:
            grad_out.mul_(self.config.batch_size / m)
        torch.sum(grad_out, 1, out=g.b2)
        if self.dropout_gen is not None:
            grad_out.mul_(self.keep_scale)  # both products below see the hidden layer scaled by 1/keep
        go = grad_out if self.dtype == torch.float32 else grad_out.to(self.dtype)
        torch.mm(go, hidden, out=self.wgrad.w2)
        torch.mm(go.t(), p.w2, out=grad_hidden)
        grad_pre = torch.ops.aten.threshold_backward(grad_hidden, hidden, 0)
        torch.mm(grad_pre.t(), xb, out=self.wgrad.w1)
        torch.sum(grad_pre, 0, dtype=torch.float32, out=g.b1)
        if self.wgrad is not g:
            g.flat[: g.weights].copy_(self.wgrad.flat[: g.weights])


@torch.no_grad()
def _test_metrics(params: _Params, x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of the current weights on (x, y), in the training precision."""
    w1, b1, w2, b2 = (t.to(dtype) for t in (params.w1, params.b1, params.w2, params.b2))
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    for i in range(0, len(x), 8192):
        logits = torch.addmm(b2, torch.addmm(b1, x[i : i + 8192], w1.t()).relu_(), w2.t()).float()
        loss_sum += F.cross_entropy(logits, y[i : i + 8192], reduction="sum")
        correct += (logits.argmax(1) == y[i : i + 8192]).sum()
    n = max(len(x), 1)
    return loss_sum.item() / n, correct.item() / n


def _normalized(images: torch.Tensor, device: torch.device, dtype: torch.dtype, chunk: int = 8192) -> torch.Tensor:
    """normalize(images) as (N, 784) `dtype` on `device`, a chunk at a time.

    In one go its float32 temporaries would add ~0.5 GB to the peak memory for the training set.
    """
    out = torch.empty(len(images), 784, device=device, dtype=dtype)
    for i in range(0, len(images), chunk):
        out[i : i + chunk] = normalize(images[i : i + chunk]).to(device, dtype)
    return out


def _distorted_chunk(
    augmenter: Augmenter,
    images: torch.Tensor,
    labels: torch.Tensor,
    share: float,
    gen: torch.Generator,
    dtype: torch.dtype,
) -> torch.Tensor:
    """normalize() of uint8 images (N, 28, 28) of which a random `share` is distorted: (N, 784) `dtype`."""
    if share >= 1:
        return normalize(augmenter(images, labels)).to(dtype)
    chosen = torch.nonzero(torch.rand(len(images), generator=gen) < share).flatten().to(images.device)
    x = images.to(torch.float32) / 255.0
    if len(chosen):
        x[chosen] = augmenter(images[chosen], labels[chosen])
    return normalize(x).to(dtype)


def _init_params(config: TrainConfig, device: torch.device, gen: torch.Generator) -> _Params:
    """PyTorch's default Linear init (U(-1/sqrt(fan_in), 1/sqrt(fan_in))), drawn from our own generator."""
    params = _Params(config.hidden, torch.device("cpu"))
    for weight, bias in ((params.w1, params.b1), (params.w2, params.b2)):
        bound = 1 / math.sqrt(weight.shape[1])
        weight.uniform_(-bound, bound, generator=gen)
        bias.uniform_(-bound, bound, generator=gen)
    if device.type != "cpu":
        moved = _Params(config.hidden, device)
        moved.flat.copy_(params.flat)
        params = moved
    return params


def _params_from(model: ShallowNet, config: TrainConfig, device: torch.device) -> _Params:
    """The flat parameter buffer holding (float32 copies of) a model's weights, to continue training it."""
    if model.hidden != config.hidden:
        raise ValueError(f"cannot continue a 784-{model.hidden}-10 net with hidden={config.hidden}")
    params = _Params(config.hidden, device)
    state = model.state_dict()
    with torch.no_grad():
        for dst, name in zip((params.w1, params.w2, params.b1, params.b2), PARAM_LAYOUT, strict=True):
            dst.copy_(state[name])
    return params


def _stream_seed(seed: int, stream: int, epochs_done: int) -> int:
    """A seed for a random stream of a continued run whose saved state cannot be used (LCG mix, 64 bits)."""
    return (seed * _LCG_MULTIPLIER + _LCG_INCREMENT * (stream + 1) + epochs_done) % _SEED_MODULUS


def _restore_stream(gen: torch.Generator, init: TrainState, seed: int, stream: str, epochs_done: int) -> None:
    """Continue a random stream from its saved state, or (new seed, other device) start one unlike the parent's."""
    state = init.rng_state.get(stream) if init.seed == seed else None
    if state is not None:
        try:
            gen.set_state(state.to("cpu", torch.uint8))
            return
        except (RuntimeError, TypeError, ValueError):
            pass  # saved by another kind of generator (CPU vs CUDA): not continuable
    gen.manual_seed(_stream_seed(seed, RNG_STREAMS.index(stream), epochs_done))


def _plan_budget(
    config: TrainConfig,
    device: torch.device,
    params: _Params,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    neg_onehot: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    clock: float,
) -> BudgetPlan:
    """Measure this run's throughput, then choose the epochs that fill config.budget_seconds.

    Measured on scratch copies (weights, optimizer, dropout and distortion streams of their own), so
    the run itself is exactly the run with that many epochs and no budget. The measurement is part
    of the budget: about 3 % of it, at least a few steps.
    """
    assert config.budget_seconds is not None
    n, bs = len(y_train), config.batch_size
    batches = math.ceil(n / bs)
    scratch, grads = _Params(config.hidden, device), _Params(config.hidden, device)
    scratch.flat.copy_(params.flat)
    opt = _Optimizer(config, scratch.flat, grads.flat)
    stepper = _Stepper(config, scratch, grads, device, dropout_seed=_PLAN_SEED)
    gen = torch.Generator().manual_seed(_PLAN_SEED)
    m = min(bs, n)
    start = time.perf_counter()  # per epoch: shuffling and the gathers it implies
    perm = torch.randperm(n, generator=gen).to(device)
    labels, onehot = y_train[perm].view(1, n), neg_onehot[:, perm]
    epoch_overhead = time.perf_counter() - start
    true_logp, max_logp = torch.empty(1, m, device=device), torch.empty(m, device=device)
    chunk_seconds, chunks = 0.0, 0
    if config.augment:
        chunk = max(1, AUGMENT_CHUNK // bs) * bs
        start = time.perf_counter()
        augmenter = Augmenter(seed=_PLAN_SEED, params=STYLES[config.augment_style])
        source = _distorted_chunk(augmenter, x_train[:chunk], y_train[:chunk], config.augment_share, gen, stepper.dtype)
        chunk_seconds, chunks = time.perf_counter() - start, math.ceil(n / chunk)
    else:
        source = x_train
    xbuf = torch.empty(m, 784, device=device, dtype=stepper.dtype)
    full = n // m  # whole batches in an epoch

    def one_step(b: int) -> None:
        s = (b % full) * m
        if source is x_train:  # the real loop gathers each shuffled batch from the whole set
            xb = torch.index_select(x_train, 0, perm[s : s + m], out=xbuf)
        else:  # or slices it from the distorted chunk
            xb = source[s % (len(source) - m + 1) :][:m]
        stepper(xb, onehot[:, s : s + m], labels[:, s : s + m], true_logp, max_logp)
        opt.step(config.lr / 25, 0.95)

    one_step(0)  # warm-up: buffers, kernel choice
    # ~3 % of the budget: on a busy machine single steps vary several-fold, and only a longer sample
    # averages that out (the plan still cannot foresee load that starts or stops later).
    target = min(max(0.03 * config.budget_seconds, 0.3), 5.0)
    steps, start = 0, time.perf_counter()
    while steps < 3 or (time.perf_counter() - start < target and steps < batches):
        steps += 1
        one_step(steps)
    true_logp.sum().item()  # waits for a GPU to finish
    step_seconds = (time.perf_counter() - start) / steps
    start = time.perf_counter()
    _test_metrics(scratch, x_test, y_test, stepper.dtype)
    test_seconds = time.perf_counter() - start

    epoch_seconds = batches * step_seconds + chunks * chunk_seconds + test_seconds + epoch_overhead
    setup = time.perf_counter() - clock
    epochs = round((config.budget_seconds - setup) / epoch_seconds)
    return BudgetPlan(
        seconds=float(config.budget_seconds),
        epochs=min(max(epochs, 1), MAX_EPOCHS),
        epoch_seconds=epoch_seconds,
        step_seconds=step_seconds,
        measured_steps=steps,
        setup_seconds=setup,
    )


def _meta_model(config: TrainConfig) -> ShallowNet:
    """A ShallowNet without storage: its default init would draw from (and so disturb) the global RNG."""
    with torch.device("meta"):
        return ShallowNet(config.hidden, config.dropout)


def _to_model(params: _Params, config: TrainConfig) -> ShallowNet:
    """A ShallowNet (eval mode, on the training device) holding copies of the trained weights."""
    model = _meta_model(config).to_empty(device=params.flat.device)
    with torch.no_grad():
        for dst, src in (
            (model.fc1.weight, params.w1),
            (model.fc1.bias, params.b1),
            (model.fc2.weight, params.w2),
            (model.fc2.bias, params.b2),
        ):
            dst.copy_(src)
    return model.eval()


def train(
    config: TrainConfig,
    data: MnistData,
    on_event: Callable[[Event], None] | None = None,
    stop: threading.Event | None = None,
    init: TrainState | None = None,
    units_every: float | None = None,
) -> TrainResult:
    """Train a ShallowNet on `data` (or continue `init`); report events to `on_event`; end within a batch of `stop`.

    A continued run's history is `init.history` followed by the new epochs, numbered on from it. The last
    `config.holdout` training images are held out of training and fit the model's calibration temperature.
    With `units_every` (seconds), a progress event carries the watched units' weights (BatchEvent.units)
    when at least that long has passed since the last one that did (a live picture, mnistcore/snapshots.py).
    """
    kept, held, note = split_holdout(data, config.holdout)
    with torch.inference_mode():  # no autograd anywhere: skips version-counter bookkeeping on every op
        result, params = _train(config, kept, on_event, stop, init, units_every)
    # Built outside inference mode, so the returned model is an ordinary one (it can be fine-tuned).
    result.model = _to_model(params, config)
    fitted = calibrate(result.model, data, held, config.holdout, note)
    result.model.temperature, result.model.temperature_drawn = fitted.temperature, fitted.temperature_drawn
    result.calibration = fitted.to_dict()
    _fit_ood(result, data, held)
    return result


def _fit_ood(result: TrainResult, data: MnistData, held: int) -> None:
    """Fit the run's "not a digit" score on its training images, the last `held` never trained on (mnistcore/ood)."""
    from mnistcore import ood

    start = time.perf_counter()
    images, labels = data.train_images.cpu().numpy(), data.train_labels.cpu().numpy()
    result.ood = ood.fit(result.model, images, labels, held=held)
    result.ood_seconds = time.perf_counter() - start


@dataclass
class _Setup:
    """The run's resolved config and its trainable state: weights, optimizer, step, random streams."""

    config: TrainConfig  # with the precision it actually runs in (and, after a budget, its epochs)
    device: torch.device
    clock: float  # perf_counter() at the start: train_seconds, and a time budget, count from here
    choice: PrecisionChoice
    gen: torch.Generator  # init, then shuffling
    done: int  # epochs of the run being continued
    params: _Params
    opt: _Optimizer
    stepper: _Stepper
    recorder: Recorder  # the watched units' snapshots and live pictures


@dataclass
class _Staged:
    """The data on the device in the form the epoch loop reads it, and the loop's preallocated buffers."""

    n: int  # training images
    x_train: torch.Tensor  # normalised (N, 784), or uint8 (N, 28, 28) when distorted a chunk at a time
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    neg_onehot: torch.Tensor  # -1/batch_size at (label, image): the gradient's constant part
    true_logp: torch.Tensor
    max_logp: torch.Tensor
    xbuf: torch.Tensor
    chunk: int  # images per augmentation call, whole batches
    augmenter: Augmenter | None


def _setup(config: TrainConfig, init: TrainState | None, units_every: float | None = None) -> _Setup:
    """Resolve device and precision; the initial (or continued) weights, optimizer and random streams."""
    device = resolve_device(config.device)
    clock = time.perf_counter()
    choice = choose_precision(config.precision, device, config.hidden, config.batch_size)
    config = config.with_(precision=choice.precision)  # the run records what it actually ran in
    gen = torch.Generator().manual_seed(config.seed)
    done = len(init.history) if init is not None else 0
    if init is None:
        params = _init_params(config, device, gen)
    else:
        params = _params_from(init.model, config, device)
        _restore_stream(gen, init, config.seed, "shuffle", done)
    grads = _Params(config.hidden, device)
    opt = _Optimizer(config, params.flat, grads.flat)
    if init is not None and init.optimizer == config.optimizer and init.optimizer_state:
        opt.load(init.optimizer_state)
    # Dropout's stream is derived from the seed, not drawn from `gen`: turning dropout on or off leaves the
    # initial weights and the shuffling as they were.
    stepper = _Stepper(config, params, grads, device, (config.seed * _LCG_MULTIPLIER + 1) % _SEED_MODULUS)
    if init is not None and stepper.dropout_gen is not None:
        _restore_stream(stepper.dropout_gen, init, config.seed, "dropout", done)
    return _Setup(
        config=config,
        device=device,
        clock=clock,
        choice=choice,
        gen=gen,
        done=done,
        params=params,
        opt=opt,
        stepper=stepper,
        recorder=Recorder(config.hidden, init.unit_snapshots if init is not None else None, done, units_every),
    )


def _stage(s: _Setup, data: MnistData, init: TrainState | None) -> _Staged:
    """Put the data on the device (normalised once, unless distorted per chunk) and allocate the loop's buffers."""
    config, device, dtype = s.config, s.device, s.stepper.dtype
    n, bs = len(data.train_labels), config.batch_size
    y_train = data.train_labels.to(device)
    x_test, y_test = _normalized(data.test_images, device, dtype), data.test_labels.to(device)
    augmenter = None
    if config.augment:
        augmenter = Augmenter(seed=config.seed, params=STYLES[config.augment_style])
        if init is not None:
            _restore_stream(augmenter.generator, init, config.seed, "augment", s.done)
        x_train = data.train_images.to(device)  # uint8; distorted and normalised a chunk at a time
    else:
        x_train = _normalized(data.train_images, device, dtype)  # normalised once, not per batch
    # Shuffled along with the images, so each batch's slice of it is that batch's one-hot labels.
    neg_onehot = torch.zeros(10, n, device=device)
    neg_onehot[y_train, torch.arange(n, device=device)] = -1.0 / bs
    return _Staged(
        n=n,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        neg_onehot=neg_onehot,
        true_logp=torch.empty(n, device=device),
        max_logp=torch.empty(n, device=device),
        xbuf=torch.empty(bs, 784, device=device, dtype=dtype),
        chunk=max(1, AUGMENT_CHUNK // bs) * bs,
        augmenter=augmenter,
    )


def _emitter(on_event: Callable[[Event], None] | None) -> Callable[[Event], None]:
    """on_event, called outside inference mode (the caller's code runs as it would anywhere else)."""

    def emit(event: Event) -> None:
        if on_event is not None:
            with torch.inference_mode(False):
                on_event(event)

    return emit


def _train_epoch(
    s: _Setup,
    d: _Staged,
    result: TrainResult,
    epoch: int,
    step: int,
    total_steps: int,
    emit: Callable[[Event], None],
    stop: threading.Event | None,
) -> tuple[float, int, int, int]:
    """One pass over the shuffled training set: (loss sum, correct, images seen, steps done overall).

    Sets result.stopped and returns early when `stop` is set.
    """
    config, n, bs, gen, dtype = s.config, d.n, s.config.batch_size, s.gen, s.stepper.dtype
    x_train, true_logp, max_logp, augmenter, chunk = d.x_train, d.true_logp, d.max_logp, d.augmenter, d.chunk
    batches = math.ceil(n / bs)
    perm = torch.randperm(n, generator=gen).to(s.device)
    labels = d.y_train[perm].view(1, n)
    onehot = d.neg_onehot[:, perm]
    loss_sum, correct, window_start, seen = 0.0, 0, 0, 0
    x_chunk, chunk_start = x_train, 0
    for b in range(batches):
        if stop is not None and stop.is_set():
            result.stopped = True
            break
        lo, hi = b * bs, min((b + 1) * bs, n)
        if augmenter is not None:
            if lo % chunk == 0:
                chunk_start = lo
                idx = perm[lo : lo + chunk]
                x_chunk = _distorted_chunk(augmenter, x_train[idx], d.y_train[idx], config.augment_share, gen, dtype)
            xb = x_chunk[lo - chunk_start : hi - chunk_start]
        elif hi - lo == bs:
            xb = torch.index_select(x_train, 0, perm[lo:hi], out=d.xbuf)
        else:
            xb = x_train[perm[lo:hi]]
        s.stepper(xb, onehot[:, lo:hi], labels[:, lo:hi], true_logp[lo:hi].view(1, hi - lo), max_logp[lo:hi])
        lr, momentum = onecycle(step, total_steps, config.lr) if config.schedule == "onecycle" else (config.lr, 0.9)
        s.opt.step(lr, momentum)
        step += 1
        seen = hi
        if (b + 1) % config.report_every == 0 or b + 1 == batches:
            window = slice(window_start, seen)
            window_loss = -true_logp[window].sum().item()
            loss_sum += window_loss
            correct += int((true_logp[window] == max_logp[window]).sum().item())
            elapsed = time.perf_counter() - s.clock
            emit(
                BatchEvent(
                    epoch=s.done + epoch,
                    epochs=s.done + config.epochs,
                    batch=b + 1,
                    batches=batches,
                    step=step,
                    total_steps=total_steps,
                    loss=window_loss / (seen - window_start),
                    train_accuracy=correct / seen,
                    elapsed=elapsed,
                    eta=elapsed / step * (total_steps - step),
                    units=s.recorder.live(s.params.w1),
                )
            )
            window_start = seen
    return loss_sum, correct, seen, step


def _train_epochs(
    s: _Setup, d: _Staged, result: TrainResult, emit: Callable[[Event], None], stop: threading.Event | None
) -> int:
    """The epoch loop: train, then test-set metrics and an EpochEvent per epoch; returns the steps done."""
    config = s.config
    total_steps = math.ceil(d.n / config.batch_size) * config.epochs
    step = 0
    s.recorder.epoch(s.done, s.params.w1)  # where training starts from
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        loss_sum, correct, seen, step = _train_epoch(s, d, result, epoch, step, total_steps, emit, stop)
        if result.stopped:
            break
        test_loss, test_acc = _test_metrics(s.params, d.x_test, d.y_test, s.stepper.dtype)
        s.recorder.epoch(s.done + epoch, s.params.w1)
        event = EpochEvent(
            epoch=s.done + epoch,
            epochs=s.done + config.epochs,
            train_loss=loss_sum / max(seen, 1),
            train_accuracy=correct / max(seen, 1),
            test_loss=test_loss,
            test_accuracy=test_acc,
            epoch_seconds=time.perf_counter() - epoch_start,
            elapsed=time.perf_counter() - s.clock,
        )
        # The history's clock runs on from the parent's, so curves over seconds continue where it ended.
        result.history.append(event.__dict__ | {"elapsed": result.parent_seconds + event.elapsed})
        emit(event)
    return step


def _finish(s: _Setup, d: _Staged, result: TrainResult, step: int) -> None:
    """Record where training left off (time, steps, optimizer, random streams) and the final test metrics."""
    result.train_seconds = time.perf_counter() - s.clock
    result.steps_done = step
    result.optimizer_state = s.opt.state()
    streams = {
        "shuffle": s.gen,
        "dropout": s.stepper.dropout_gen,
        "augment": d.augmenter.generator if d.augmenter is not None else None,
    }
    result.rng_state = {name: g.get_state() for name, g in streams.items() if g is not None}
    result.unit_snapshots = s.recorder.result()
    if result.history and not result.stopped:
        result.test_loss, result.test_accuracy = result.history[-1]["test_loss"], result.history[-1]["test_accuracy"]
    else:
        result.test_loss, result.test_accuracy = _test_metrics(s.params, d.x_test, d.y_test, s.stepper.dtype)


def _train(
    config: TrainConfig,
    data: MnistData,
    on_event: Callable[[Event], None] | None,
    stop: threading.Event | None,
    init: TrainState | None = None,
    units_every: float | None = None,
) -> tuple[TrainResult, _Params]:
    s = _setup(config, init, units_every)
    d = _stage(s, data, init)
    plan = None
    if s.config.budget_seconds is not None:
        plan = _plan_budget(
            s.config, s.device, s.params, d.x_train, d.y_train, d.neg_onehot, d.x_test, d.y_test, s.clock
        )
        # Fixed before the first real step: the one-cycle schedule is laid out for exactly this length.
        s.config = s.config.with_(epochs=plan.epochs)
    result = TrainResult(model=_meta_model(s.config), config=s.config)  # train() puts in the trained model
    result.precision, result.budget = s.choice, plan
    if init is not None:
        result.history, result.parent_seconds = [dict(h) for h in init.history], init.train_seconds
    step = _train_epochs(s, d, result, _emitter(on_event), stop)
    _finish(s, d, result, step)
    return result, s.params
