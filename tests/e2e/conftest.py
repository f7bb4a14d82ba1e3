"""End-to-end fixtures: a real `streamlit run` on 127.0.0.1 and a real headless Chromium.

Without Chromium or Playwright the e2e tests skip with a reason on a developer's machine, but fail
under CI=true, so they can never silently vanish from CI.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"e2e tests cannot run under CI: {reason}")
    pytest.skip(reason)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.e2e)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"streamlit did not become healthy at {url} within {timeout} s")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real MNIST (provisioned by `make test` before pytest)."""
    from mnistcore.data import default_data_dir, provision_mnist

    d = default_data_dir().resolve()
    provision_mnist(d)
    return d


@pytest.fixture(scope="session")
def trained_runs_dir(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """A runs dir holding one quickly trained model (1 epoch of the seed recipe)."""
    from mnistcore import RunStore, TrainConfig, load_mnist, train

    runs = tmp_path_factory.mktemp("runs-trained")
    data = load_mnist(data_dir)
    result = train(TrainConfig(epochs=1), data)
    RunStore(runs).save(result.model, result.config, test_accuracy=result.test_accuracy,
                        train_seconds=result.train_seconds, history=result.history, dataset=data.checksums)
    return runs


class Server:
    """A running `streamlit run app.py`, stopped by the fixture that made it."""

    def __init__(self, runs_dir: Path, data_dir: Path, log: Path) -> None:
        self.runs_dir = runs_dir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "MNIST_RUNS_DIR": str(runs_dir), "MNIST_DATA_DIR": str(data_dir),
               "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1",
             "--server.port", str(self.port), "--server.headless", "true", "--server.fileWatcherType", "none"],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        try:
            _wait_healthy(self.url, self.proc)
        except Exception:
            self.stop()
            raise RuntimeError(f"{log.read_text()[-3000:]}") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def _start(tmp_path_factory: pytest.TempPathFactory, runs_dir: Path, data_dir: Path) -> Iterator[Server]:
    server = Server(runs_dir, data_dir, tmp_path_factory.mktemp("log") / "streamlit.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, trained_runs_dir: Path, data_dir: Path) -> Iterator[Server]:
    """A server whose runs dir already holds a trained model."""
    yield from _start(tmp_path_factory, trained_runs_dir, data_dir)


@pytest.fixture(scope="module")
def scratch_server(tmp_path_factory: pytest.TempPathFactory, trained_runs_dir: Path,
                   data_dir: Path) -> Iterator[Server]:
    """A server on a private copy of the trained runs dir, for tests that train (and so save new runs)."""
    runs = tmp_path_factory.mktemp("runs-scratch") / "runs"
    shutil.copytree(trained_runs_dir, runs)
    yield from _start(tmp_path_factory, runs, data_dir)


@pytest.fixture(scope="module")
def empty_server(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[Server]:
    """A server with no saved runs: what a new user sees."""
    yield from _start(tmp_path_factory, tmp_path_factory.mktemp("runs-empty"), data_dir)


@pytest.fixture(scope="session")
def browser():
    """A headless Debian Chromium driven by Playwright."""
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        _missing(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright Python package is not installed")
    with sync_playwright() as pw:
        exe = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
        b = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    """A fresh browser context (its own Streamlit session) and page."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    p = context.new_page()
    p.set_default_timeout(30_000)
    try:
        yield p
    finally:
        context.close()


@pytest.fixture
def new_page(browser):
    """A factory of further pages, each in its own browser context (= another user), closed after the test."""
    contexts = []

    def make():
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        contexts.append(context)
        p = context.new_page()
        p.set_default_timeout(30_000)
        return p

    try:
        yield make
    finally:
        for context in contexts:
            context.close()


@pytest.fixture
def shot(request: pytest.FixtureRequest):
    """Save a screenshot under test-artifacts/ (for looking at pages and for failures)."""
    out = ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)

    def take(page, name: str) -> Path:
        path = out / f"{request.node.name}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
