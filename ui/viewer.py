"""Who is looking: the signed-in user, and whether they may see the server's health page.

The seam between this server's pages and sign-in: without an [auth] section in .streamlit/secrets.toml
(single-user mode, the default on 127.0.0.1) nobody signs in and everyone may see /server; with sign-in
on, only instructors may. Instructors are the emails in $MNIST_INSTRUCTORS (comma-separated) until the
sign-in work's own instructor list replaces `instructors()`.
"""

from __future__ import annotations

import os

import streamlit as st


def sign_in_enabled() -> bool:
    """True when the server is configured for st.login (an [auth] section in its secrets)."""
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all (FileNotFoundError, or Streamlit's own error): single-user mode
        return False


def signed_in_user() -> str | None:
    """The signed-in user's email (or name), or None when nobody is signed in or sign-in is off."""
    try:
        if not st.user.is_logged_in:
            return None
        who = st.user.get("email") or st.user.get("name")
    except Exception:  # outside a script run, or a Streamlit without st.user: nobody
        return None
    return str(who) if who else None


def instructors() -> frozenset[str]:
    """The instructors' emails (lower case), from $MNIST_INSTRUCTORS."""
    raw = os.environ.get("MNIST_INSTRUCTORS", "")
    return frozenset(e.strip().lower() for e in raw.split(",") if e.strip())


def may_see_server() -> bool:
    """Everyone in single-user mode; with sign-in on, a signed-in instructor only."""
    if not sign_in_enabled():
        return True
    user = signed_in_user()
    return user is not None and user.lower() in instructors()


def session_id() -> str | None:
    """Streamlit's id of the session running this script (not a secret: it names the websocket), or None."""
    try:
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        ctx = get_script_run_ctx()
    except Exception:  # a Streamlit that moved it: the page still works, it just counts no sessions
        return None
    return ctx.session_id if ctx is not None else None


def is_active_session(sid: str) -> bool:
    """Whether a session still has a browser connected (public runtime API, guarded)."""
    try:
        from streamlit import runtime

        return runtime.exists() and runtime.get_instance().is_active_session(sid)
    except Exception:
        return False
