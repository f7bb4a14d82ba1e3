"""Start and stop the dashboard (`streamlit run app.py` on 127.0.0.1) for benchmarks and e2e tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    """Wait until the server answers its health check; raise if it exits or times out."""
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


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate a child process started for a test or a benchmark, and kill it if it does not exit in 15 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class AppServer:
    """A running `streamlit run app.py` on a free loopback port, with its own runs and data dirs."""

    def __init__(
        self,
        runs_dir: Path,
        data_dir: Path,
        log: Path,
        env: dict[str, str] | None = None,
        *,
        port: int | None = None,
        args: Sequence[str] = (),
    ) -> None:
        """`args`: more `streamlit run` options (e.g. --secrets.files F); `env`: more environment variables."""
        self.runs_dir = runs_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        env = {
            **os.environ,
            "MNIST_RUNS_DIR": str(runs_dir),
            "MNIST_DATA_DIR": str(data_dir),
            "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
            **(env or {}),
        }
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "app.py",
                "--server.address",
                "127.0.0.1",
                "--server.port",
                str(self.port),
                "--server.headless",
                "true",
                "--server.fileWatcherType",
                "none",
                *args,
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_healthy(self.url, self.proc)
        except Exception:
            self.stop()
            raise RuntimeError(f"{log.read_text(errors='replace')[-3000:]}") from None

    def stop(self) -> None:
        """Terminate the server (kill it if it does not exit in 15 s)."""
        stop_process(self.proc)
        self._log.close()
