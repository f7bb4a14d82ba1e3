"""Sign-in for e2e tests and benchmarks: a real OpenID Connect provider (oidc-provider-mock) on 127.0.0.1, the
secrets file that points the dashboard at it, and a browser signing in through its form.

Used by tests/e2e/test_auth.py and `python -m bench.load --sign-in`. Without predefined claims, the provider
makes the subject typed on its form also the person's email (so "alice1@example.edu" signs in as that email).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.appserver import free_port, stop_process

LOGIN_BUTTON = ".st-key-auth_login button"
SIGNED_IN_AS = ".st-key-auth_user"  # the sidebar's "signed in as" line


class Provider:
    """oidc-provider-mock in its own process on a free loopback port (stopped by stop())."""

    def __init__(self, log: Path, users: Iterable[dict[str, str]] = ()) -> None:
        """`users`: predefined people's claims (each with "sub"); anyone else may sign in too."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        claims = [a for u in users for a in ("--user-claims", json.dumps(u))]
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "oidc_provider_mock", "--port", str(self.port), *claims],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/.well-known/openid-configuration", timeout=2) as r:
                    self.issuer = json.loads(r.read())["issuer"]
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"the OIDC provider did not start: {log.read_text(errors='replace')[-2000:]}"
                    ) from None
                time.sleep(0.3)

    def stop(self) -> None:
        """Terminate the provider (kill it if it does not exit in 15 s)."""
        stop_process(self.proc)
        self._log.close()


def app_args(folder: Path, provider: Provider, instructors: Sequence[str] = ()) -> tuple[int, list[str]]:
    """A free port for the app and the `streamlit run` options that turn sign-in on there: a secrets.toml in
    `folder` with [auth] (redirect back to that port, a throwaway cookie secret, never a real one) and, when
    given, [mnist_lab] instructors. Pass both to AppServer(port=..., args=...)."""
    port = free_port()
    path = folder / "secrets.toml"
    text = (
        "[auth]\n"
        f'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        'cookie_secret = "e2e-only-cookie-secret-0123456789abcdef"\n'
        'client_id = "mnist-lab-e2e"\n'
        'client_secret = "e2e-client-secret"\n'
        f'server_metadata_url = "{provider.url}/.well-known/openid-configuration"\n'
    )
    if instructors:
        text += f"\n[mnist_lab]\ninstructors = {json.dumps(list(instructors))}\n"
    path.write_text(text)
    return port, ["--secrets.files", str(path)]


def sign_in(page: Any, url: str, who: str, email: str) -> None:
    """Sign this browser context in as subject `who` through the provider's form (sync Playwright)."""
    from playwright.sync_api import expect

    page.goto(url)
    page.locator(LOGIN_BUTTON).click()
    page.locator("input[name=sub]").fill(who)
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(f"{url}/**")
    expect(page.locator(SIGNED_IN_AS)).to_contain_text(email)


async def sign_in_async(page: Any, url: str, who: str, email: str, timeout: float = 90.0) -> None:
    """sign_in() for async Playwright (the benchmarks)."""
    from playwright.async_api import expect

    await page.goto(url, timeout=timeout * 1000)
    await page.locator(LOGIN_BUTTON).click(timeout=timeout * 1000)
    await page.locator("input[name=sub]").fill(who)
    await page.get_by_role("button", name="Authorize").click()
    await page.wait_for_url(f"{url}/**", timeout=timeout * 1000)
    await expect(page.locator(SIGNED_IN_AS)).to_contain_text(email, timeout=timeout * 1000)
