"""Sign-in across replicas: a login started on one server and called back on another succeeds when both
sign cookies with one cookie_secret, and fails when they do not (the control).

Two real `streamlit run` servers of a minimal st.login page (the dashboard's own sign-in lives with its
sign-in work), a real OIDC provider (oidc-provider-mock), nginx as the one address in front (st.login
requires the page's origin to be the redirect URI's) and headless Chromium. nginx sends the provider's
callback (/oauth2callback) to replica B and everything else to replica A, as a proxy may when a replica
restarts or a class shares one IP. Skipped where nginx is not installed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from bench.appserver import ROOT, free_port, stop_process, wait_healthy
from bench.oidc import Provider

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
pytest.importorskip("oidc_provider_mock")
pytest.importorskip("authlib")

APP = """
import streamlit as st
if not st.user.is_logged_in:
    if st.button("Sign in", key="auth_login"):
        st.login()
    st.stop()
st.markdown(f"signed in as {st.user.email}")
"""
USER = {"sub": "alice", "email": "alice@example.edu"}


class Proc:
    """A process on a loopback port with its output in a log file; stop() ends it."""

    def __init__(self, args: list[str], log: Path) -> None:
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.log = log
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    p = Provider(tmp_path_factory.mktemp("oidc") / "provider.log", [USER])
    try:
        yield p.url
    finally:
        p.stop()


def _nginx(work: Path, a_port: int, b_port: int, listen: int) -> Proc:
    """nginx on `listen`: /oauth2callback to replica B, everything else (websocket included) to replica A."""
    (work / "tmp").mkdir()
    proxy = (
        "proxy_http_version 1.1; proxy_set_header Host $host; proxy_set_header Upgrade $http_upgrade; "
        'proxy_set_header Connection "upgrade"; proxy_read_timeout 1h;'
    )
    conf = work / "nginx.conf"
    conf.write_text(
        f"pid {work}/nginx.pid;\nerror_log {work}/nginx-error.log;\nevents {{}}\nhttp {{\n"
        f"access_log {work}/nginx-access.log;\nclient_body_temp_path {work}/tmp;\nproxy_temp_path {work}/tmp;\n"
        f"server {{ listen 127.0.0.1:{listen};\n"
        f"location /oauth2callback {{ proxy_pass http://127.0.0.1:{b_port}; {proxy} }}\n"
        f"location / {{ proxy_pass http://127.0.0.1:{a_port}; {proxy} }}\n}}\n}}\n"
    )
    return Proc([NGINX, "-p", str(work), "-c", str(conf), "-g", "daemon off;"], work / "nginx.log")


def _replicas(work: Path, provider: str, secret_a: str, secret_b: str) -> tuple[str, list[Proc]]:
    """Replicas A and B of the minimal app behind one nginx address; that address and every process."""
    (work / "app.py").write_text(APP)
    a_port, b_port, listen = free_port(), free_port(), free_port()
    url = f"http://127.0.0.1:{listen}"
    started: list[Proc] = []
    try:
        for name, port, secret in (("a", a_port, secret_a), ("b", b_port, secret_b)):
            secrets = work / f"secrets-{name}.toml"
            secrets.write_text(
                "[auth]\n"
                f'redirect_uri = "{url}/oauth2callback"\n'
                f'cookie_secret = "{secret}"\n'
                'client_id = "mnist-lab-e2e"\nclient_secret = "e2e-client-secret"\n'
                f'server_metadata_url = "{provider}/.well-known/openid-configuration"\n'
            )
            args = [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(work / "app.py"),
                "--server.address",
                "127.0.0.1",
                "--server.port",
                str(port),
                "--server.headless",
                "true",
                "--server.fileWatcherType",
                "none",
                "--browser.gatherUsageStats",
                "false",
                "--secrets.files",
                str(secrets),
            ]
            started.append(Proc(args, work / f"{name}.log"))
            wait_healthy(f"http://127.0.0.1:{port}", started[-1].proc)
        started.append(_nginx(work, a_port, b_port, listen))
        wait_healthy(url, started[-1].proc, timeout=30)
    except Exception:
        for proc in started:
            proc.stop()
        raise
    return url, started


def _sign_in(page, url: str) -> None:
    page.goto(url)  # served by replica A, where the login starts
    page.locator(".st-key-auth_login button").click()
    page.locator("input[name=sub]").fill(USER["sub"])
    page.get_by_role("button", name="Authorize").click()  # the provider calls back: nginx sends it to B


@pytest.mark.parametrize("shared", [True, False], ids=["one-cookie-secret", "different-secrets-control"])
def test_a_login_started_on_one_replica_is_called_back_on_another(tmp_path, provider, page, shared, nginx):
    secret = "e2e-only-shared-cookie-secret-0123456789abcdef"  # a throwaway, >= 32 bytes
    other = secret if shared else "e2e-only-other-cookie-secret-9876543210fedcba"
    url, procs = _replicas(tmp_path, provider, secret, other)
    try:
        _sign_in(page, url)
        page.wait_for_url(f"{url}/**")
        signed_in = page.get_by_text(f"signed in as {USER['email']}")
        if shared:  # B accepted A's login state, set the sign-in cookie, and A reads it
            expect(signed_in).to_be_visible(timeout=60_000)
        else:  # B cannot read the login state A signed: no sign-in
            page.wait_for_timeout(3_000)
            page.goto(url)
            expect(page.locator(".st-key-auth_login button")).to_be_visible(timeout=60_000)
            expect(signed_in).to_have_count(0)
        callbacks = [
            line for line in (tmp_path / "nginx-access.log").read_text().splitlines() if "/oauth2callback" in line
        ]
        assert callbacks, "the provider's callback did not pass through the proxy"
    finally:
        for proc in procs:
            proc.stop()
