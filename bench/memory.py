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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import machine
from bench.appserver import CHROMIUM, CHROMIUM_ARGS, AppServer

ROOT = Path(__file__).resolve().parent.parent
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
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        server = AppServer(runs_dir, data_dir, Path(tmp) / "streamlit.log")
        try:
            visits = _visit_pages(server.url)  # first: the peak is read after every page was shown
            return proc_status_mib(server.proc.pid), visits
        except Exception:
            sys.stderr.write(server.log_path.read_text(errors="replace")[-3000:])
            raise
        finally:
            server.stop()


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
    p.add_argument(
        "--preset", action="append", choices=("default", "best"), help="train preset(s) to measure (default: default)"
    )
    p.add_argument(
        "--epochs", type=int, default=None, help="train this many epochs (peak memory does not grow with them)"
    )
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
            print(
                f"  python -m mnistcore {label}: peak RSS {peak:.0f} MiB "
                f"({'within' if peak <= TARGET_MIB else 'OVER'} target; run reached {acc:.2%})"
            )
        if args.skip_server:
            return 0
        if not Path(CHROMIUM).exists():
            print(f"  streamlit server: skipped (no Chromium at {CHROMIUM})")
            return 0
        mem, visits = server_peak(runs, data_dir)
        pages = ", ".join(f"{path} {sec:.1f} s" for path, sec in visits)
        print(
            f"  streamlit server after visiting {len(visits)} pages ({pages}): peak RSS (VmHWM) "
            f"{mem['VmHWM']:.0f} MiB, now {mem['VmRSS']:.0f} MiB "
            f"({'within' if mem['VmHWM'] <= TARGET_MIB else 'OVER'} target)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
