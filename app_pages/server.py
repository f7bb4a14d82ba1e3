"""Server: the instructor's view of this server's health (sessions, users, work, memory, disk, page times)."""

import streamlit as st

from ui import server_view, viewer

st.title("Server")
if not viewer.may_see_server():  # app.py lists the page only for them; a typed URL must not show it either
    st.error("This page is for instructors.")
    st.stop()
st.caption(
    "This server process only: behind a proxy, each replica has its own sessions, jobs and page times "
    "(the disk figures are of the shared folders). Refresh to update."
)
st.button("Refresh", icon=":material/refresh:", key="server_refresh")
active = server_view.active_sessions()
server_view.sessions(active)
server_view.work_and_memory()
server_view.disk()
server_view.page_times()
