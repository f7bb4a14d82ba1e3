"""deploy/nginx.conf in front of two real replicas: pages load and talk over the proxied websocket.

Skipped where nginx is not installed (it is optional: `apt-get install nginx-light`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from bench.appserver import AppServer, free_port

ROOT = Path(__file__).resolve().parents[2]


def _config(conf: str, ports: list[int], listen: int) -> str:
    """The shipped config with this test's replica ports and listening port (everything else as shipped)."""
    upstream = "".join(f"    server 127.0.0.1:{p};\n" for p in ports)
    conf = re.sub(r"(upstream mnist_lab \{\n    ip_hash;\n)(?:    #? ?server [^\n]*\n)+", rf"\g<1>{upstream}", conf)
    return conf.replace("listen 80;", f"listen 127.0.0.1:{listen};")


@pytest.fixture(scope="module")
def proxied(
    tmp_path_factory: pytest.TempPathFactory, trained_runs_dir: Path, data_dir: Path, nginx: str
) -> Iterator[tuple]:
    work = tmp_path_factory.mktemp("nginx")
    runs = work / "runs"
    shutil.copytree(trained_runs_dir, runs)
    env = {"MNIST_DRAWINGS_DIR": str(work / "drawings"), "STREAMLIT_SERVER_COOKIE_SECRET": "s" * 48}
    servers = []
    try:
        for k in range(2):
            servers.append(AppServer(runs, data_dir, work / f"replica{k}.log", env))
        listen = free_port()
        site = _config((ROOT / "deploy" / "nginx.conf").read_text(), [s.port for s in servers], listen)
        for d in ("logs", "tmp"):
            (work / d).mkdir()
        (work / "nginx.conf").write_text(
            f"pid {work}/nginx.pid;\nerror_log {work}/logs/error.log;\nevents {{}}\nhttp {{\n"
            f"log_format up '$upstream_addr $request';\naccess_log {work}/logs/access.log up;\n"
            f"client_body_temp_path {work}/tmp;\nproxy_temp_path {work}/tmp;\n"
            f"{site}\n}}\n"
        )
        proxy = subprocess.Popen([nginx, "-p", str(work), "-c", str(work / "nginx.conf"), "-g", "daemon off;"])
        try:
            url = f"http://127.0.0.1:{listen}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                        assert r.status == 200
                        break
                except OSError:
                    assert proxy.poll() is None and time.monotonic() < deadline, "nginx did not start"
                    time.sleep(0.2)
            yield url, servers, work / "logs" / "access.log"
        finally:
            proxy.terminate()
            proxy.wait(10)
    finally:
        for s in servers:
            s.stop()


def test_pages_work_through_nginx_with_sticky_sessions(proxied, page, new_page, shot):
    url, servers, access_log = proxied
    page.goto(f"{url}/runs")
    expect(page.get_by_role("heading", name="Runs")).to_be_visible(timeout=60_000)  # rendered over the websocket
    page.goto(f"{url}/server")
    expect(page.get_by_text(re.compile(r"^1 active sessions"))).to_be_visible(timeout=60_000)
    other = new_page()  # a second browser from the same address: ip_hash sends it to the same replica
    other.goto(f"{url}/server")
    expect(other.get_by_text(re.compile(r"^2 active sessions"))).to_be_visible(timeout=60_000)
    shot(other, "server-through-nginx")
    streams = [line.split()[0] for line in access_log.read_text().splitlines() if "/_stcore/stream" in line]
    assert streams and len(set(streams)) == 1, streams  # both websockets on one replica (nginx logs on close)
    assert set(streams) <= {f"127.0.0.1:{s.port}" for s in servers}
