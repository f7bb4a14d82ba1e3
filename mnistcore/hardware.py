"""Hardware-specific fast paths, chosen by measuring on this device rather than assumed.

bf16 matrix products are 3-4x faster than fp32 where the CPU has AMX or AVX-512 BF16 (or on a GPU),
but on an AVX2-only CPU torch emulates them at 1-20 GFLOP/s against ~100 for fp32: the same setting
is a large speed-up on one machine and a 10-100x slow-down on another. So precision="auto" first
asks torch whether it has native bf16 kernels here (no: fp32, at once), and otherwise times one
training step's products in both precisions at the step's own sizes, once per process and size,
and picks bf16 only when it is clearly faster.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from mnistcore.model import param_count

CLEARLY_FASTER = 0.8  # bf16 is chosen only when its step takes at most this share of the fp32 step's time
HOPELESS = 4.0  # bf16's first call this many times slower than fp32's best settles it: fp32
MEASURE_ROWS = 128  # images per measured step (at most the batch size)
MIN_REPEATS = 3  # clean pairs of repeats wanted (see measure_step_precisions)
CLEAN = 1.3  # a repeat within this factor of its precision's best time is not disturbed by load
MEASURE_SECONDS = 0.01  # measure at least this long
MAX_SECONDS = 1.0  # and at most this long (a very busy machine): then inconclusive, fp32

_cache: dict[tuple[Any, ...], PrecisionChoice] = {}
_lock = threading.Lock()  # one measurement at a time: two at once would slow each other down


@dataclass(frozen=True)
class PrecisionChoice:
    """Which precision a training run uses, what was asked for, and the measurement behind it."""

    requested: str  # "auto", "fp32" or "bf16"
    precision: str  # what training runs in: "fp32" or "bf16"
    reason: str  # one line for people, e.g. "auto: bf16 step 9.1 ms vs fp32 24.0 ms"
    fp32_ms: float | None = None  # measured time of one step's products, None when not measured
    bf16_ms: float | None = None
    device: str = "cpu"
    cpu_capability: str = ""  # torch's kernel ISA (e.g. AVX512, AVX2): ATEN_CPU_CAPABILITY changes it
    bf16_native: bool | None = None  # whether torch has real bf16 kernels here (None: not checked)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready), as recorded in a run."""
        return asdict(self)


def cpu_capability() -> str:
    """The instruction set torch's CPU kernels use here (AVX512, AVX2, ...)."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # very old or unusual builds: not worth failing a training run over
        return "unknown"


def bf16_native(device: torch.device) -> bool:
    """Whether torch has real bf16 matrix kernels here (else it emulates them, far slower than fp32).

    On the CPU bf16 products go through oneDNN, which has bf16 kernels from AVX-512 (BW/VL/DQ) up,
    AMX included; on an AVX2-only CPU, or with ONEDNN_MAX_CPU_ISA set below AVX-512, it has none.
    """
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return True  # no detection elsewhere: let the measurement decide
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN: bf16 products are plain loops
        return False


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _StepProducts:
    """The matrix products (and bf16 casts) of one training step of 784-hidden-10 on a batch of m."""

    def __init__(self, dtype: torch.dtype, device: torch.device, hidden: int, m: int) -> None:
        gen = torch.Generator().manual_seed(0)
        self.dtype = dtype
        self.master = (torch.rand(param_count(hidden), generator=gen) - 0.5).to(device)  # fp32 weights
        self.grads = torch.empty_like(self.master)
        self.compute = self.master if dtype == torch.float32 else torch.empty_like(self.master, dtype=dtype)
        self.wgrad = self.grads if dtype == torch.float32 else torch.empty_like(self.grads, dtype=dtype)
        split = (hidden * 784, 10 * hidden, hidden, 10)
        self.w1, self.w2, self.b1, _ = (t for t in self.compute.split(split))
        self.w1, self.w2 = self.w1.view(hidden, 784), self.w2.view(10, hidden)
        self.gw1, self.gw2 = (
            t.view(s) for t, s in zip(self.wgrad.split(split)[:2], ((hidden, 784), (10, hidden)), strict=True)
        )
        self.x = torch.rand(m, 784, generator=gen).to(device, dtype)
        self.hidden = torch.empty(m, hidden, device=device, dtype=dtype)
        self.logits = torch.empty(10, m, device=device, dtype=dtype)
        self.grad_out = torch.rand(10, m, generator=gen).to(device)
        self.grad_hidden = torch.empty(m, hidden, device=device, dtype=dtype)

    def __call__(self) -> None:
        if self.compute is not self.master:
            self.compute.copy_(self.master)
        torch.addmm(self.b1, self.x, self.w1.t(), out=self.hidden)
        self.hidden.relu_()
        torch.mm(self.w2, self.hidden.t(), out=self.logits)
        go = self.grad_out if self.dtype == torch.float32 else self.grad_out.to(self.dtype)
        torch.mm(go, self.hidden, out=self.gw2)
        torch.mm(go.t(), self.w2, out=self.grad_hidden)
        torch.mm(self.grad_hidden.t(), self.x, out=self.gw1)
        if self.wgrad is not self.grads:
            self.grads.copy_(self.wgrad)


def _timed(step: _StepProducts, device: torch.device) -> float:
    start = time.perf_counter()
    step()
    _sync(device)
    return time.perf_counter() - start


def measure_step_precisions(device: torch.device, hidden: int, batch_size: int) -> tuple[float, float, float]:
    """(fp32 s, bf16 s, typical bf16/fp32 ratio) of one training step's products, measured here.

    Measured on up to MEASURE_ROWS images of the batch (the ratio, not the absolute time, is what
    counts). Other processes' load only ever adds time, in spikes of tens of ms on a busy machine (and
    for the first ~0.5 s of a process while torch's worker threads start), so the two precisions are
    alternated, each keeps its best time, and the ratio is the median over "clean" pairs: pairs where
    both times are within CLEAN of their precision's best. Too few clean pairs in MAX_SECONDS gives an
    infinite ratio: inconclusive, which keeps fp32. Where bf16 is emulated (AVX2-only CPUs: tens of
    times slower) its first call already shows it and it is not called again.
    """
    m = min(batch_size, MEASURE_ROWS)
    with torch.inference_mode():
        fp32, bf16 = _StepProducts(torch.float32, device, hidden, m), _StepProducts(torch.bfloat16, device, hidden, m)
        start = time.perf_counter()
        _timed(fp32, device)  # warm-up: first calls allocate and pick kernels
        pairs = [(_timed(fp32, device), _timed(bf16, device))]  # bf16's warm-up: one-time costs err to fp32
        while True:
            best32 = min(a for a, _ in pairs)
            best16 = min(b for _, b in pairs)
            if len(pairs) == 1 and pairs[0][1] > HOPELESS * best32:
                return best32, best16, pairs[0][1] / best32
            clean = [b / a for a, b in pairs[1:] if a <= CLEAN * best32 and b <= CLEAN * best16]
            spent = time.perf_counter() - start
            if len(clean) >= MIN_REPEATS and spent >= MEASURE_SECONDS:
                return best32, best16, statistics.median(clean)
            if spent >= MAX_SECONDS:
                return best32, best16, float("inf")
            pairs.append((_timed(fp32, device), _timed(bf16, device)))


def choose_precision(requested: str, device: torch.device, hidden: int, batch_size: int) -> PrecisionChoice:
    """Resolve a TrainConfig precision ("auto" measures, cached per process and size) to fp32 or bf16."""
    capability = cpu_capability() if device.type == "cpu" else ""
    if requested in ("fp32", "bf16"):
        return PrecisionChoice(requested, requested, "asked for", device=str(device), cpu_capability=capability)
    if requested != "auto":
        raise ValueError(f"precision must be auto, fp32 or bf16, got {requested!r}")
    if not bf16_native(device):
        return PrecisionChoice(
            "auto",
            "fp32",
            f"auto: fp32, torch has no native bf16 matrix kernels on this "
            f"{'CPU' if device.type == 'cpu' else 'device'} ({capability or device}): bf16 would be emulated, "
            f"tens of times slower",
            device=str(device),
            cpu_capability=capability,
            bf16_native=False,
        )
    key = (str(device), capability, hidden, batch_size, torch.get_num_threads())
    with _lock:
        if key not in _cache:
            fp32_s, bf16_s, ratio = measure_step_precisions(device, hidden, batch_size)
            # Both the best times and the typical pair must agree: one lucky bf16 repeat decides nothing.
            use_bf16 = bf16_s <= CLEARLY_FASTER * fp32_s and ratio <= CLEARLY_FASTER
            verdict = "faster" if use_bf16 else "not clearly faster"
            what = f"784-{hidden}-10 step products on {min(batch_size, MEASURE_ROWS)} images"
            _cache[key] = PrecisionChoice(
                requested="auto",
                precision="bf16" if use_bf16 else "fp32",
                reason=f"auto: bf16 {verdict} here ({what}: bf16 {1000 * bf16_s:.2f} ms, fp32 "
                f"{1000 * fp32_s:.2f} ms; {capability or device})",
                fp32_ms=round(1000 * fp32_s, 4),
                bf16_ms=round(1000 * bf16_s, 4),
                device=str(device),
                cpu_capability=capability,
                bf16_native=True,
            )
        return _cache[key]


def clear_cache() -> None:
    """Forget measured choices (tests; or after changing the thread count)."""
    with _lock:
        _cache.clear()
