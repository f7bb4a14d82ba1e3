"""Training speed: the seed's own loop against mnistcore on the seed recipe, alternated in one run.

Also measures this machine's matrix-product throughput at the sizes training uses, and what share
of it an epoch reaches. FLOPs of an epoch of 784-H-10 on N images, counted the usual way: forward
2*N*(784*H + H*10), backward twice that (input and weight gradients), so 6*N*(784*H + 10*H) =
36.6 GFLOP for H=128, N=60000. Layer 1's input gradient is never needed, so the work actually
required is 24.5 GFLOP; both bounds are printed.

    python -m bench.train_speed [--repeats 3] [--quick] [--epochs 5] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from bench import machine
from mnistcore.config import TrainConfig
from mnistcore.data import default_data_dir, load_mnist, provision_mnist
from mnistcore.train import train


def epoch_flops(hidden: int = 128, n: int = 60000, required_only: bool = False) -> float:
    """FLOPs of one training epoch of 784-hidden-10 (see the module docstring for the count)."""
    forward = 2 * n * (784 * hidden + hidden * 10)
    return 3 * forward - (2 * n * 784 * hidden if required_only else 0)


def seed_loop(data_dir: str, epochs: int = 5, seed: int = 0) -> tuple[float, float]:
    """The seed's training loop as it was (DataLoader + ToTensor): (seconds per epoch, test accuracy)."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    torch.manual_seed(seed)
    train_set = datasets.MNIST(data_dir, train=True, download=False, transform=transforms.ToTensor())
    test_set = datasets.MNIST(data_dir, train=False, download=False, transform=transforms.ToTensor())
    loader = DataLoader(train_set, batch_size=128, shuffle=True)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
    seconds = (time.perf_counter() - start) / epochs
    correct = 0
    with torch.no_grad():
        for x, y in DataLoader(test_set, batch_size=1000):
            correct += (model(x).argmax(1) == y).sum().item()
    return seconds, correct / len(test_set)


def mnistcore_run(data: object, config: TrainConfig) -> tuple[float, float]:
    """mnistcore's training of `config`: (seconds per epoch, including each epoch's test pass; test accuracy)."""
    result = train(config, data)  # type: ignore[arg-type]
    return result.train_seconds / config.epochs, result.test_accuracy


def mm_rate(m: int, k: int, n: int, dtype: torch.dtype, min_seconds: float = 0.3) -> float:
    """GFLOP/s of torch.mm (m x k) @ (k x n) in `dtype`, best of several timed blocks."""
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    out = torch.empty(m, n, dtype=dtype)
    for _ in range(20):
        torch.mm(a, b, out=out)
    reps, best, spent = 50, float("inf"), 0.0
    while spent < min_seconds:
        start = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b, out=out)
        took = time.perf_counter() - start
        spent += took
        best = min(best, took / reps)
    return 2 * m * k * n / best / 1e9


def step_rate(hidden: int, batch: int, dtype: torch.dtype) -> float:
    """GFLOP/s of a training step's two big products (layer-1 forward and weight gradient) at this size."""
    fwd, wgrad = mm_rate(batch, 784, hidden, dtype), mm_rate(hidden, batch, 784, dtype)
    flops = 2 * batch * 784 * hidden
    return 2 * flops / (flops / fwd + flops / wgrad)


def sgemm_report(hidden: int = 128, batch: int = 128) -> dict[str, float]:
    """Print and return matrix-product throughput: training-step sizes and a large square product."""
    rates = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        rates[f"step_{name}"] = step_rate(hidden, batch, dtype)
        rates[f"square_{name}"] = mm_rate(1024, 1024, 1024, dtype)
        print(
            f"  torch.mm {name}: {rates[f'step_{name}']:7.1f} GFLOP/s at the step's sizes "
            f"({batch}x784 @ 784x{hidden}, {hidden}x{batch} @ {batch}x784), "
            f"{rates[f'square_{name}']:7.1f} GFLOP/s at 1024^3"
        )
    return rates


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print seconds per epoch, accuracies, ratios and the sgemm share."""
    p = argparse.ArgumentParser(prog="python -m bench.train_speed", description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="alternated repeats of each candidate (default 3)")
    p.add_argument("--quick", action="store_true", help="one repeat, no bf16 extra")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's own; 1 is far less hurt by other processes' load)",
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 1 if args.quick else max(1, args.repeats)

    data_dir = default_data_dir()
    provision_mnist(data_dir)
    data = load_mnist(data_dir)
    recipe = TrainConfig(epochs=args.epochs, device="cpu")
    candidates = {
        "seed loop": lambda: seed_loop(str(data_dir), args.epochs),
        "mnistcore": lambda: mnistcore_run(data, recipe),
    }
    if not args.quick:
        candidates["mnistcore bf16"] = lambda: mnistcore_run(data, recipe.with_(precision="bf16"))

    print(f"train_speed: seed recipe 784-128-10, Adam 1e-3, batch 128, {args.epochs} epochs")
    print(f"  machine: {machine()}")
    times: dict[str, list[float]] = {k: [] for k in candidates}
    accs: dict[str, list[float]] = {k: [] for k in candidates}
    for r in range(repeats):
        for name, run in candidates.items():  # alternated, so load changes hit every candidate alike
            seconds, acc = run()
            times[name].append(seconds)
            accs[name].append(acc)
            print(f"  repeat {r + 1}: {name:15s} {seconds:6.3f} s/epoch  test accuracy {acc:.2%}", flush=True)
        ratio = times["seed loop"][-1] / times["mnistcore"][-1]
        print(f"  repeat {r + 1}: seed loop / mnistcore = {ratio:.1f}x")

    print("  summary (median over repeats):")
    med = {k: statistics.median(v) for k, v in times.items()}
    for name in candidates:
        print(
            f"    {name:15s} {med[name]:6.3f} s/epoch  test accuracy {statistics.median(accs[name]):.2%}"
            f"  speed-up vs seed loop {med['seed loop'] / med[name]:5.1f}x"
        )
    print("  sgemm throughput:")
    rates = sgemm_report()
    for name, key in (("mnistcore", "step_fp32"), ("mnistcore bf16", "step_bf16")):
        if name not in med:
            continue
        for label, flops in (
            ("nominal 36.6 GFLOP", epoch_flops()),
            ("required 24.5 GFLOP", epoch_flops(required_only=True)),
        ):
            bound = flops / (rates[key] * 1e9)
            print(
                f"    {name:15s} {label}: bound {bound:.3f} s/epoch at {rates[key]:.0f} GFLOP/s "
                f"-> an epoch reaches {bound / med[name]:.0%} of it ({flops / med[name] / 1e9:.0f} GFLOP/s)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
