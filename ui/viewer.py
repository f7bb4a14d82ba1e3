"""Who is looking: the signed-in user, and whether they may see the server's health page.

The seam between the health page and sign-in (ui/auth.py): without an [auth] section in
.streamlit/secrets.toml (single-user mode, the default on 127.0.0.1) nobody signs in and everyone may see
/server; with sign-in on, only the instructors listed under [mnist_lab] may, as for changing others' runs;
nobody on a server opened to anyone without sign-in.
"""

from __future__ import annotations

from ui import auth


def signed_in_user() -> str | None:
    """The signed-in user as shown (email, else subject), or None when nobody is signed in or sign-in is off."""
    try:
        owner = auth.current_owner()
    except Exception:  # outside a script run, or a Streamlit without st.user: nobody
        return None
    return owner.display if owner is not None else None


def may_see_server() -> bool:
    """Everyone in single-user mode; with sign-in on, a signed-in instructor only; on a server the operator
    opened to anyone ($MNIST_LAB_OPEN=1) nobody, since anyone there is a stranger."""
    if auth.is_open():
        return False
    actor = auth.actor()
    return actor is None or (actor.owner is not None and actor.instructor)


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
