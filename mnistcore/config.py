"""Training configuration: one frozen dataclass, plus named presets."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from numbers import Integral, Real
from typing import Any

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "onecycle")
PRECISIONS = ("auto", "fp32", "bf16")
AUGMENT_STYLES = ("mnist", "draw")  # mnistcore.augment.STYLES: which distortions `augment` applies
MAX_BUDGET_SECONDS = 24 * 3600
MAX_EPOCHS = 200  # a run's limit, also for the epochs a time budget chooses
MAX_HOLDOUT = 30000  # at most half of MNIST's training images held out for calibration


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run; equal configs + same seed on CPU give equal results."""

    hidden: int = 128  # width of the single hidden layer (16..2048)
    epochs: int = 5  # full passes over the 60 000 training images
    batch_size: int = 128  # images per optimizer step
    lr: float = 1e-3  # learning rate (the peak rate with the one-cycle schedule)
    optimizer: str = "adam"  # "adam", or "sgd" with momentum 0.9 (Nesterov)
    seed: int = 0  # seeds weight init, shuffling, dropout and augmentation
    device: str = "auto"  # "auto" picks CUDA when available, else CPU; or "cpu" / "cuda"
    dropout: float = 0.0  # dropout on the hidden layer during training (0 = none)
    weight_decay: float = 0.0  # L2 penalty (decoupled, AdamW-style, for Adam)
    schedule: str = "constant"  # "constant" lr, or "onecycle" warm-up then cosine decay
    augment: bool = False  # random affine + elastic + stroke-thickness distortions of train images
    # With augment: the share of training images distorted afresh each epoch; the rest are used as they
    # are. Distorting costs about as much as training a wide net, and a mix learns faster in a time budget.
    augment_share: float = 1.0
    # With augment: "mnist", the distortions tuned on MNIST's own digits, or "draw", stronger ones that
    # mimic digits drawn on a canvas (mnistcore.augment.STYLES).
    augment_style: str = "mnist"
    # "auto": measured at run time on this device (mnistcore.hardware), bf16 only where clearly faster;
    # "fp32"; or "bf16" for the matrix products (fast with AMX / AVX-512 BF16 / a GPU, emulated and
    # 10-100x slower on AVX2-only CPUs).
    precision: str = "auto"
    # Seconds of training to fit: when set, `epochs` is chosen at run time from the measured throughput
    # (and recorded in the run) so that training ends within about 10 % of it.
    budget_seconds: float | None = None
    report_every: int = 50  # batches between progress events (each costs one sync)
    # Training images held out (the last ones of the training set, never trained on) to fit the temperature
    # that calibrates the probabilities shown (mnistcore.calibration); 0: none, temperature 1.0. On a
    # training set too small for it, fewer or none are held out, and the run records what was done.
    holdout: int = 5000

    def __post_init__(self) -> None:
        # Types first: a config read from a saved run's JSON may hold anything, and e.g. hidden=128.5
        # would pass the range check below and only fail deep inside torch.
        for name in ("hidden", "epochs", "batch_size", "seed", "report_every", "holdout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Integral):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        for name in ("lr", "dropout", "weight_decay", "augment_share"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if self.budget_seconds is not None and (
            isinstance(self.budget_seconds, bool)
            or not isinstance(self.budget_seconds, Real)
            or not math.isfinite(self.budget_seconds)
        ):
            raise ValueError(f"budget_seconds must be a number of seconds, got {self.budget_seconds!r}")
        if not isinstance(self.augment, bool):
            raise ValueError(f"augment must be true or false, got {self.augment!r}")
        checks = [
            (-(2**63) <= self.seed < 2**64, "seed must fit in 64 bits"),
            (16 <= self.hidden <= 2048, "hidden must be between 16 and 2048"),
            (1 <= self.epochs <= MAX_EPOCHS, f"epochs must be between 1 and {MAX_EPOCHS}"),
            (1 <= self.batch_size <= 60000, "batch_size must be between 1 and 60000"),
            (0 < self.lr <= 10, "lr must be in (0, 10]"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}"),
            (self.device in ("auto", "cpu", "cuda"), "device must be auto, cpu or cuda"),
            (0 <= self.dropout < 1, "dropout must be in [0, 1)"),
            (0 < self.augment_share <= 1, "augment_share must be in (0, 1]"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}"),
            (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}"),
            (self.augment_style in AUGMENT_STYLES, f"augment_style must be one of {AUGMENT_STYLES}"),
            (self.report_every >= 1, "report_every must be >= 1"),
            (0 <= self.holdout <= MAX_HOLDOUT, f"holdout must be between 0 and {MAX_HOLDOUT} images"),
            (
                self.budget_seconds is None or 1 <= self.budget_seconds <= MAX_BUDGET_SECONDS,
                f"budget_seconds must be between 1 and {MAX_BUDGET_SECONDS}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a dict, ignoring unknown keys (older or newer saved runs)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def with_(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed."""
        return replace(self, **changes)


# "default" is the seed recipe (784-128-10, Adam 1e-3, batch 128, 5 epochs).
# "best": still one hidden layer, designed for the slow machine: an AVX2-only CPU, where bf16 is emulated
# and training runs in fp32 (precision "auto" picks bf16 only where it is measured faster). 784-1024-10 for
# 56 epochs (half the images distorted) took 181.6 s on the AVX2 reference (target 150 s). 896 units for 48
# epochs with 70 % distorted cost 0.76x as much (side by side with AVX2 kernels) and reach 99.35 % (seed 0,
# 2 threads), 99.27 / 99.28 % (seeds 0 / 1, 1 thread); light dropout helps the last, low-lr epochs.
PRESETS: dict[str, TrainConfig] = {
    "default": TrainConfig(),
    "best": TrainConfig(
        hidden=896,
        epochs=48,
        batch_size=512,
        lr=2e-3,
        dropout=0.2,
        schedule="onecycle",
        augment=True,
        augment_share=0.7,
    ),
    # "draw": made for digits drawn on the Draw page's canvas (Home's one-click model). One hidden layer, few
    # epochs (<= 30 s on the AVX2 reference), and the "draw" distortions: slant, rotation, narrower or wider
    # digits, bolder and softer strokes, bent strokes and broken loops (bench/draw_preset.py measures it).
    "draw": TrainConfig(
        hidden=384,
        epochs=15,
        batch_size=256,
        lr=2e-3,
        schedule="onecycle",
        augment=True,
        augment_share=0.6,
        augment_style="draw",
    ),
}
