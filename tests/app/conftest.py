"""Fixtures for the dashboard's AppTest tests: temp runs dirs, a small model trained once on real MNIST."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the app imports `ui` and `mnistcore` from the repository root
    sys.path.insert(0, str(ROOT))

from streamlit.testing.v1 import AppTest  # noqa: E402

from mnistcore.config import TrainConfig  # noqa: E402
from mnistcore.data import load_mnist, provision_mnist  # noqa: E402
from mnistcore.runs import RunInfo, RunStore  # noqa: E402
from mnistcore.train import train  # noqa: E402
from ui.jobs import REGISTRY  # noqa: E402

APP = ROOT / "app.py"
SMALL = TrainConfig(hidden=32, epochs=1, batch_size=256, device="cpu")


@pytest.fixture(scope="session")
def app_data_dir() -> Path:
    """The real MNIST data dir ($MNIST_DATA_DIR, else the repo's data/), provisioned and verified."""
    data_dir = Path(os.environ.get("MNIST_DATA_DIR") or ROOT / "data").resolve()
    provision_mnist(data_dir)
    return data_dir


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory, app_data_dir: Path) -> tuple[Path, RunInfo]:
    """A runs dir holding one small model (784-32-10, 1 epoch) trained on real MNIST; treat as read-only."""
    data = load_mnist(app_data_dir)
    result = train(SMALL, data)
    runs_dir = tmp_path_factory.mktemp("app-runs") / "runs"
    info = RunStore(runs_dir).save(
        result.model,
        SMALL,
        test_accuracy=result.test_accuracy,
        train_seconds=result.train_seconds,
        history=result.history,
        dataset=data.checksums,
    )
    return runs_dir, info


@pytest.fixture
def runs_copy(small_run: tuple[Path, RunInfo], tmp_path: Path) -> Path:
    """A private copy of the small run's dir that a test may change (train into, delete from)."""
    dest = tmp_path / "runs"
    shutil.copytree(small_run[0], dest)
    return dest


@pytest.fixture(autouse=True)
def _no_jobs_left_behind():
    yield
    REGISTRY.shutdown()


@pytest.fixture
def make_app(monkeypatch: pytest.MonkeyPatch, app_data_dir: Path) -> Callable[[Path], AppTest]:
    """make_app(runs_dir) -> an AppTest of app.py, with $MNIST_RUNS_DIR / $MNIST_DATA_DIR pointed at test dirs."""

    def _make(runs_dir: Path) -> AppTest:
        monkeypatch.setenv("MNIST_DATA_DIR", str(app_data_dir))
        monkeypatch.setenv("MNIST_RUNS_DIR", str(runs_dir))
        return AppTest.from_file(str(APP), default_timeout=120)

    return _make
