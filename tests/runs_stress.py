"""One of two processes hammering one runs dir (tests/test_runs_replicas.py): saves, renames, deletes, lists.

    python -m tests.runs_stress ROOT SECONDS SEED LOG GO_FILE

Every operation that succeeded is appended to LOG as a JSON line, so the test can check afterwards that
nothing was lost or corrupted. Run ids are drawn from a tiny random space, so that the two processes take
the same id within one second and the save's retry on a taken id is exercised.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

import torch

from mnistcore import runs
from mnistcore.config import TrainConfig
from mnistcore.model import ShallowNet
from mnistcore.runs import RunError, RunStore

CONFIG = TrainConfig(hidden=16, epochs=1)


def model_for(tag: int) -> ShallowNet:
    """The model a save with this tag wrote: its weights say which save it was."""
    torch.manual_seed(tag)
    return ShallowNet(CONFIG.hidden, CONFIG.dropout).eval()


def main(root: str, seconds: float, seed: int, log_path: str, go: str) -> None:
    rng = random.Random(seed)
    runs.secrets.token_hex = lambda n=3: f"{rng.randrange(256):02x}"  # type: ignore[attr-defined]
    store = RunStore(root)
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - one line per event until the process ends

    def say(**event: object) -> None:
        log.write(json.dumps({"pid": seed, **event}) + "\n")

    Path(log_path + ".ready").touch()
    while not Path(go).exists():
        time.sleep(0.01)
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
        op = rng.choices(["save", "rename", "delete", "read"], [4, 3, 2, 2])[0]
        ids = [p.name for p in Path(root).iterdir() if not p.name.startswith(".")]
        try:
            if op == "save":
                tag = seed * 1_000_000 + n
                info = store.save(
                    model_for(tag),
                    CONFIG,
                    test_accuracy=0.5,
                    train_seconds=0.1,
                    history=[],
                    dataset={},
                    extra={"tag": tag},
                )
                say(op="save", id=info.run_id, tag=tag)
            elif op == "rename" and ids:
                rid, name = rng.choice(ids), f"p{seed}-{n}"
                store.rename(rid, name)
                say(op="rename", id=rid, name=name)
            elif op == "delete" and ids:
                rid = rng.choice(ids)
                store.delete(rid)
                say(op="delete", id=rid)
            elif op == "read":
                for info in store.list():
                    try:
                        model, _ = store.load(info.run_id)
                    except RunError as exc:
                        if (Path(root) / info.run_id).is_dir():  # not deleted meanwhile: damaged
                            say(op="bad", id=info.run_id, why=str(exc))
                        continue
                    if not torch.equal(model.fc1.weight, model_for(info.extra["tag"]).fc1.weight):
                        say(op="bad", id=info.run_id, why="weights of another save")
        except RunError as exc:
            say(op=f"{op}-refused", why=str(exc))
    log.close()


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
