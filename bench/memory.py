"""Peak memory: `python -m mnistcore train` (a subprocess) and the Streamlit server after every page.

The server runs on 127.0.0.1 with a temporary runs dir holding the run trained first, so every page
has a model to show; a headless Chromium (Playwright) visits each page the app declares, and the
server's peak resident set (VmHWM in /proc/<pid>/status) is read before it is stopped.

    python -m bench.memory [--preset default] [--preset best] [--epochs N] [--skip-server]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench import machine

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TARGET_MIB = 1536


def run_with_peak_rss(cmd: list[str], env: dict[str, str]) -> tuple[int, float, str]:
    """Run cmd to completion: (exit status, peak RSS in MiB of it and its children, stdout)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    proc.stdout.close()
    # wait4 gives this child's own rusage (RUSAGE_CHILDREN would mix in every child reaped before).
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped: keep Popen from waiting again
    return proc.returncode, usage.ru_maxrss / 1024, out  # ru_maxrss is in KiB on Linux


def proc_status_mib(pid: int) -> dict[str, float]:
    """VmHWM (peak) and VmRSS (now) of a live process, in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def page_paths(app: Path = ROOT / "app.py") -> list[str]:
    """URL paths of the pages app.py declares (st.Page(..., url_path="...")), the default page first as '/'."""
    paths = re.findall(r'url_path\s*=\s*"([^"]*)"', app.read_text()) if app.exists() else []
    return ["/", *(f"/{p}" for p in paths if p)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
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


def _wait_rendered(page: object, timeout: float = 60.0, quiet: float = 1.5) -> None:
    """Wait until the app shows content and its 'running' indicator has been gone for `quiet` seconds."""
    page.wait_for_selector('[data-testid="stMain"]', timeout=timeout * 1000)  # type: ignore[attr-defined]
    deadline, idle_since = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        running = page.query_selector('[data-testid="stStatusWidget"]')  # type: ignore[attr-defined]
        if running is None:
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since >= quiet:
                return
        else:
            idle_since = None
        time.sleep(0.2)


def server_peak(runs_dir: Path, data_dir: Path) -> tuple[dict[str, float], list[tuple[str, float]]]:
    """Start the app, visit every page, return (VmHWM/VmRSS in MiB, [(path, seconds to render)])."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MNIST_RUNS_DIR": str(runs_dir), "MNIST_DATA_DIR": str(data_dir),
           "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1",
             "--server.port", str(port), "--server.headless", "true", "--server.fileWatcherType", "none"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            _wait_healthy(url, proc)
            visits = _visit_pages(url)
            return proc_status_mib(proc.pid), visits
        except Exception:
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-3000:])
            raise
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _visit_pages(url: str) -> list[tuple[str, float]]:
    """Open every page in one browser session; [(path, seconds until rendered)]."""
    from playwright.sync_api import sync_playwright

    visits = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            for path in page_paths():
                start = time.perf_counter()
                page.goto(url + path)
                _wait_rendered(page)
                visits.append((path, time.perf_counter() - start))
        finally:
            browser.close()
    return visits


def main(argv: list[str] | None = None) -> int:
    """Print the peak RSS of CLI training and of the Streamlit server."""
    p = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.splitlines()[0])
    p.add_argument("--preset", action="append", choices=("default", "best"),
                   help="train preset(s) to measure (default: default)")
    p.add_argument("--epochs", type=int, default=None,
                   help="train this many epochs (peak memory does not grow with them)")
    p.add_argument("--skip-server", action="store_true", help="only measure CLI training")
    args = p.parse_args(argv)
    presets = args.preset or ["default"]
    from mnistcore.data import default_data_dir, provision_mnist

    data_dir = default_data_dir().resolve()
    provision_mnist(data_dir)
    print("memory: peak resident set size (target <= 1.5 GB each)")
    print(f"  machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="bench-runs-") as tmp:
        runs = Path(tmp)
        env = {**os.environ, "MNIST_DATA_DIR": str(data_dir), "MNIST_RUNS_DIR": str(runs)}
        for preset in presets:
            label = f"train --preset {preset}" + (f" --epochs {args.epochs}" if args.epochs else "")
            cmd = [sys.executable, "-m", "mnistcore", *label.split(), "--json"]
            rc, peak, out = run_with_peak_rss(cmd, env)
            if rc != 0:
                print(f"  python -m mnistcore {label}: FAILED (exit {rc})")
                return 1
            acc = json.loads(out.strip().splitlines()[-1])["test_accuracy"]
            print(f"  python -m mnistcore {label}: peak RSS {peak:.0f} MiB "
                  f"({'within' if peak <= TARGET_MIB else 'OVER'} target; run reached {acc:.2%})")
        if args.skip_server:
            return 0
        if not Path(CHROMIUM).exists():
            print(f"  streamlit server: skipped (no Chromium at {CHROMIUM})")
            return 0
        mem, visits = server_peak(runs, data_dir)
        pages = ", ".join(f"{path} {sec:.1f} s" for path, sec in visits)
        print(f"  streamlit server after visiting {len(visits)} pages ({pages}): peak RSS (VmHWM) "
              f"{mem['VmHWM']:.0f} MiB, now {mem['VmRSS']:.0f} MiB "
              f"({'within' if mem['VmHWM'] <= TARGET_MIB else 'OVER'} target)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
