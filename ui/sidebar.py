"""The sidebar on every page: who is signed in, pick the active model among the saved runs, delete one (asks first).

With sign-in the picker lists the person's own runs (and the active one, when it is someone else's: the
Runs page makes anyone's run active), and Delete is there only for a run they may delete.
"""

from __future__ import annotations

import streamlit as st

from mnistcore.runs import RunError
from ui import auth, cache, components, session

PICK = "sidebar_model"


def _picked() -> None:
    session.set_active(st.session_state.get(PICK))


def _delete(run_id: str) -> None:
    try:
        cache.store().delete(run_id)
    except RunError as exc:
        st.session_state["sidebar_delete_error"] = str(exc)
        return
    cache.forget_run(run_id)
    session.set_active(None)


def render(page: str = "") -> None:
    """Draw the sidebar for the page at url path `page`; the active run id lives in session state."""
    session.activate_finished_job()
    runs = cache.list_runs()
    active = session.active_run_id()
    if (me := auth.current_owner()) is not None:
        runs = [r for r in runs if me.same_person(r.owner) or r.run_id == active]
    auth.sidebar_user()
    with st.sidebar:
        st.markdown("#### Active model")
        if gone := st.session_state.pop(session.ACTIVE_GONE, None):
            now = f"now showing `{active}`" if active is not None else "there is no other saved model"
            st.warning(
                f"The model you were using (`{gone}`) was deleted, in another window or by another user; {now}.",
                icon=":material/info:",
            )
        if not runs or active is None:
            st.caption("No saved models yet — train one (Home or Train page).")
        else:
            by_id = {r.run_id: r for r in runs}
            st.session_state[PICK] = active  # the widget follows the active run (e.g. after training)
            st.radio(
                "Saved models",
                list(by_id),
                key=PICK,
                on_change=_picked,
                label_visibility="collapsed",
                format_func=lambda rid: by_id[rid].label,
                help="Accuracy on the 10 000 test images · network shape · when it was trained (UTC)",
            )
            if not auth.may_change(by_id[active].owner):
                owner = by_id[active].owner
                who = owner.display if owner else "the operator (command line)"
                st.caption(f"Trained by {who}; only they (or an instructor) can delete it.")
            else:
                _delete_popover(by_id[active].label, active)
            if err := st.session_state.pop("sidebar_delete_error", None):
                st.error(err)
        if runs and page != "train":  # the Train page and the no-model prompts show their own progress
            components.job_status_sidebar()


def _delete_popover(label: str, active: str) -> None:
    """Delete… with a confirmation, for the active model."""
    with st.popover(
        "Delete…", icon=":material/delete:", key="sidebar_delete", help="Delete the active model from disk (asks first)"
    ):
        st.warning(f"Delete **{label}**? Its weights are removed from disk; this cannot be undone.")
        st.button("Yes, delete it", key="sidebar_delete_confirm", type="primary", on_click=_delete, args=(active,))
