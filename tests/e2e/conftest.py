"""End-to-end fixtures: a real `streamlit run` on 127.0.0.1 and a real headless Chromium.

Without Chromium or Playwright the e2e tests skip with a reason on a developer's machine, but fail
under CI=true, so they can never silently vanish from CI.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.appserver import CHROMIUM, CHROMIUM_ARGS, AppServer

ROOT = Path(__file__).resolve().parents[2]


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"e2e tests cannot run under CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def nginx() -> str:
    """Path of the nginx binary (the proxy tests of deploy/): .ci/run installs nginx-light; skipped without it
    on a developer's machine, a failure under CI."""
    path = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(path).exists():
        _missing("nginx is not installed (apt-get install nginx-light)")
    return path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.e2e)


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
    from mnistcore.runs import save_result

    runs = tmp_path_factory.mktemp("runs-trained")
    data = load_mnist(data_dir)
    result = train(TrainConfig(epochs=1), data)
    save_result(RunStore(runs), result, dataset=data.checksums)  # as every trainer saves: with its OOD record
    return runs


Server = AppServer  # the e2e tests type their fixtures with this name


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
def scratch_server(
    tmp_path_factory: pytest.TempPathFactory, trained_runs_dir: Path, data_dir: Path
) -> Iterator[Server]:
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
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        _missing("the playwright Python package is not installed")
    # Assertions wait up to 15 s (Playwright's default is 5 s): server, jobs and browser share two cores, and
    # a page that is merely slow there is no failure (a frozen one still fails).
    expect.set_options(timeout=15_000)
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
