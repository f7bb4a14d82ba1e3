"""Sign-in on the dashboard: who is using this browser, what they may do, and who may reach the server at all.

Three modes, decided by `.streamlit/secrets.toml` and the address the server listens on:
- **sign-in**: secrets hold an `[auth]` section (OpenID Connect: redirect_uri, cookie_secret, client_id,
  client_secret, server_metadata_url). Streamlit's own st.login / st.user / st.logout do the sign-in; each
  person is identified by the provider's (iss, sub) (mnistcore/owners.py), may change only their own
  runs (unless listed as an instructor), has their own drawings, jobs and active model on every browser,
  and has quotas. A signed-out visitor sees a Home with a sign-in button and nothing that writes.
- **single user** (loopback address, no [auth]): as MNIST Lab always was; nothing owned, nothing refused.
- **open** (a non-loopback address, no [auth], and MNIST_LAB_OPEN=1): like single user, for anyone who can
  reach the server, and every page says so. Without MNIST_LAB_OPEN=1 such a server refuses to serve
  (`python -m ui.serve_check` refuses before `make run` starts it; the app refuses too).

Settings, under `[mnist_lab]` in secrets.toml (environment variables win): `instructors` (emails or
subjects), `max_runs_per_user` (MNIST_LAB_MAX_RUNS, 50), `max_drawings_per_user` (MNIST_LAB_MAX_DRAWINGS,
2000), `session_max_age_hours` (MNIST_LAB_SESSION_MAX_AGE_HOURS, 12).

The public API other modules use: configured(), is_open(), settings(), current_owner(), actor(),
may_change(owner), user_key(), exposure_problem(address), gate(), sidebar_user().
"""

from __future__ import annotations

import ipaddress
import os
import time
from dataclasses import dataclass
from typing import Any

import streamlit as st

from mnistcore.owners import Actor, Owner
from mnistcore.owners import may_change as _may_change

OPEN_ENV = "MNIST_LAB_OPEN"  # "1": serve a non-loopback address without sign-in, on purpose
SIGNED_IN_AT = "auth_signed_in_at"  # session_state key: when this tab first saw its user (for tokens without iat)
AUTH_KEYS = ("redirect_uri", "cookie_secret")  # what Streamlit needs in [auth] besides the provider's settings
HOW_TO = (
    "Configure sign-in: put an [auth] section (redirect_uri, cookie_secret, client_id, client_secret, "
    "server_metadata_url of your OpenID Connect provider) in .streamlit/secrets.toml (README: 'Sign-in'), "
    f"or, to serve it open to anyone who can reach it, set {OPEN_ENV}=1."
)


@dataclass(frozen=True)
class LabSettings:
    """The [mnist_lab] settings: who the instructors are, the quotas, the longest a sign-in lasts."""

    instructors: tuple[str, ...] = ()
    max_runs: int = 50
    max_drawings: int = 2000
    session_max_age: float = 12 * 3600.0  # seconds


def _section(name: str) -> dict[str, Any]:
    """A section of secrets.toml as a dict; {} when there is no secrets file or no such section."""
    try:
        value = st.secrets.get(name)
    except FileNotFoundError:  # StreamlitSecretNotFoundError: no secrets file, or one that does not parse
        return {}
    return dict(value) if isinstance(value, dict) or hasattr(value, "keys") else {}


def configured() -> bool:
    """True when secrets.toml has an [auth] section with what Streamlit's sign-in needs."""
    auth = _section("auth")
    return all(auth.get(k) for k in AUTH_KEYS)


def is_open() -> bool:
    """True when the operator chose to serve without sign-in to anyone ($MNIST_LAB_OPEN=1, no [auth])."""
    return os.environ.get(OPEN_ENV, "") == "1" and not configured()


def _number(env: str, value: Any, default: float) -> float:
    raw = os.environ.get(env, value)
    try:
        number = float(raw) if raw is not None and not isinstance(raw, bool) else default
    except (TypeError, ValueError):
        return default
    return number if number > 0 else default


def settings() -> LabSettings:
    """The [mnist_lab] section (and MNIST_LAB_* environment variables), with the defaults for what is missing."""
    lab = _section("mnist_lab")
    base = LabSettings()
    instructors = lab.get("instructors") or ()
    return LabSettings(
        instructors=tuple(str(i).strip().lower() for i in instructors if str(i).strip()),
        max_runs=int(_number("MNIST_LAB_MAX_RUNS", lab.get("max_runs_per_user"), base.max_runs)),
        max_drawings=int(_number("MNIST_LAB_MAX_DRAWINGS", lab.get("max_drawings_per_user"), base.max_drawings)),
        session_max_age=3600.0
        * _number("MNIST_LAB_SESSION_MAX_AGE_HOURS", lab.get("session_max_age_hours"), base.session_max_age / 3600),
    )


# Person key -> how they are shown, for people seen signed in on this server since it started: the health
# page's jobs and drawings are keyed by person, and only a page run of theirs knows the email.
_SHOWN_AS: dict[str, str] = {}


def current_owner() -> Owner | None:
    """The signed-in person (from the provider's iss, sub and email), or None: signed out or no sign-in here."""
    if not configured() or not st.user.is_logged_in:
        return None
    try:
        owner = Owner.from_claims(st.user.to_dict())
    except ValueError:  # a provider that sends no iss/sub is not usable for ownership
        return None
    _SHOWN_AS[owner.key] = owner.display
    return owner


def shown_as(key: str) -> str | None:
    """How the person with this key was shown when last seen signed in here, or None."""
    return _SHOWN_AS.get(key)


def actor() -> Actor | None:
    """Who acts in this session: None without sign-in (single user or open: nothing owned or refused),
    else an Actor (owner None while signed out, who may change nothing) with their rights and quotas."""
    if not configured():
        return None
    owner = current_owner()
    conf = settings()
    instructor = owner is not None and bool(
        {owner.subject.lower(), (owner.email or "").lower()} & set(conf.instructors)
    )
    return Actor(owner, instructor=instructor, max_runs=conf.max_runs, max_drawings=conf.max_drawings)


def may_change(owner: Owner | None) -> bool:
    """May this session rename, delete or continue work owned by `owner`? (Pages hide what it may not do;
    the stores refuse it anyway.)"""
    return _may_change(actor(), owner)


def user_key() -> str | None:
    """The signed-in person's stable key (jobs, drawings and the active model follow it), else None."""
    owner = current_owner()
    return owner.key if owner is not None else None


def is_loopback(address: str | None) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost); unset means all interfaces."""
    if not address:
        return False
    if address.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip().strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def exposure_problem(address: str | None) -> str | None:
    """Why a server on `address` must not serve (off loopback, no sign-in, not opened on purpose), else None."""
    if is_loopback(address) or configured() or os.environ.get(OPEN_ENV, "") == "1":
        return None
    where = address or "every network interface"
    return f"MNIST Lab will not serve on {where} without sign-in: anyone who finds it could change everything. {HOW_TO}"


def session_expired(claims: dict[str, Any], max_age: float, now: float, first_seen: float) -> bool:
    """Has this sign-in lasted longer than `max_age` seconds? From the ID token's iat (else when first seen).

    Streamlit checks neither the token's expiry nor an age, and keeps its cookie for 30 days.
    """
    issued = claims.get("iat")
    start = float(issued) if isinstance(issued, int | float) and not isinstance(issued, bool) else first_seen
    return now - start > max_age


def _sign_out_if_too_old() -> bool:
    """Sign this tab out when its sign-in is older than the maximum session age; True when it did."""
    claims = st.user.to_dict()
    first_seen = st.session_state.setdefault(SIGNED_IN_AT, time.time())
    max_age = settings().session_max_age
    if not session_expired(claims, max_age, time.time(), first_seen):
        return False
    st.session_state.pop(SIGNED_IN_AT, None)
    st.logout()  # clears the cookie (the browser is sent to Streamlit's logout route); other tabs keep their view
    st.info(f"Your sign-in is more than {max_age / 3600:g} hours old: sign in again.", icon=":material/schedule:")
    return True


def _signed_out_home() -> None:
    """What a signed-out visitor sees: what MNIST Lab is, and a sign-in button. Nothing here writes."""
    st.title("MNIST Lab")
    st.markdown(
        "MNIST Lab trains a small neural network on the 70 000 handwritten digits of MNIST, shows what it "
        "confuses and why, and lets you draw digits for it to read. **Sign in** to train your own models, "
        "keep your drawings and see the class's runs."
    )
    if st.button("Sign in", key="auth_login", type="primary", icon=":material/login:"):
        st.login()


def gate() -> bool:
    """At the top of every page run: refuse an exposed server, say when it is open, keep sign-ins fresh.

    Returns True when the page may run; False when this function drew all there is (the refusal or the
    signed-out Home) and the caller must stop.
    """
    problem = exposure_problem(st.get_option("server.address"))
    if problem is not None:
        st.error(problem, icon=":material/lock:")
        return False
    if is_open():
        st.warning(
            "This server is **open to anyone who can reach it**: there is no sign-in, and every visitor can "
            "see, rename and delete every saved model.",
            icon=":material/public:",
        )
    if not configured():
        return True
    if not st.user.is_logged_in:
        _signed_out_home()
        return False
    if _sign_out_if_too_old():
        _signed_out_home()
        return False
    return True


def sidebar_user() -> None:
    """In the sidebar, with sign-in: who is signed in, and a sign-out button (this tab only)."""
    owner = current_owner()
    if owner is None:
        return
    with st.sidebar.container(key="auth_user", border=True):
        role = " · instructor" if (a := actor()) is not None and a.instructor else ""
        st.markdown(f":material/account_circle: Signed in as **{owner.display}**{role}")
        if st.button(
            "Sign out",
            key="auth_logout",
            icon=":material/logout:",
            help="Signs out this tab; other open tabs stay signed in until they are reloaded.",
        ):
            st.logout()
