"""MNIST Lab dashboard: navigation and the sidebar model selector; the pages live in app_pages/.

Not in pages/: when a folder named pages/ sits next to the main script, Streamlit 1.67 starts every
fresh server in the legacy auto-discovery mode, and a first request for a deep link (/draw,
/confusion?true=4&pred=9) then runs that page file alone, without this script's navigation, page
config or sidebar, until some session has loaded "/".
"""

import time

import streamlit as st

from ui import auth, cache, server_gc, session, sidebar, streamlit_fixes, viewer
from ui.activity import ACTIVITY

started = time.perf_counter()  # a page run's time on the health page starts here (imports are cached after the first)

streamlit_fixes.install()  # before any fragment can race a page switch (see ui/streamlit_fixes.py)

st.set_page_config(page_title="MNIST Lab", page_icon="✏️", layout="wide")
if not auth.gate():  # an exposed server without sign-in, or a signed-out visitor: nothing else is shown
    st.stop()

PAGES = [
    st.Page("app_pages/home.py", title="Home", icon=":material/home:", url_path="home", default=True),
    st.Page("app_pages/train.py", title="Train", icon=":material/model_training:", url_path="train"),
    st.Page("app_pages/runs.py", title="Runs", icon=":material/table_chart:", url_path="runs"),
    st.Page("app_pages/confusion.py", title="Confusion matrix", icon=":material/grid_on:", url_path="confusion"),
    st.Page("app_pages/errors.py", title="Errors", icon=":material/error:", url_path="errors"),
    st.Page("app_pages/network.py", title="Inside the network", icon=":material/hub:", url_path="network"),
    st.Page("app_pages/draw.py", title="Draw", icon=":material/draw:", url_path="draw"),
    st.Page("app_pages/drawings.py", title="My drawings", icon=":material/collections:", url_path="drawings"),
    st.Page("app_pages/label_issues.py", title="Label issues", icon=":material/report:", url_path="label-issues"),
]
# The instructor's health page: everyone's in single-user mode, instructors' only with sign-in (ui/viewer.py).
SERVER = st.Page("app_pages/server.py", title="Server", icon=":material/monitor_heart:", url_path="server")

page = st.navigation([*PAGES, SERVER] if viewer.may_see_server() else PAGES)
cache.warm_up_jobs()  # the job forkserver imports torch once, in the background, not at the first Start
sidebar.render(page.url_path)
server_gc.configure()  # after the first run's imports: see ui/server_gc.py
if session.link_notice():  # a ?run= link to a deleted run: say so before showing anything else
    st.stop()
# Timed for the health page: the server's own time per page run, which a browser cannot see (ui/activity.py).
with ACTIVITY.timed(page.url_path or "home", viewer.session_id(), viewer.signed_in_user(), start=started):
    page.run()
