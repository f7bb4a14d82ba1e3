"""The health page's parts (/server): sessions, users, background work, memory, disk, time per page run.

Reads what this server process knows (its registries and ui/activity.py); each replica behind a proxy
shows its own sessions, jobs and times, while the disk figures are of the shared folders.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

import streamlit as st

from mnistcore import health
from mnistcore.drawings import default_drawings_dir
from ui import auth, cache, viewer
from ui.activity import ACTIVITY, FRAGMENT
from ui.background import Status
from ui.jobs import REGISTRY
from ui.sweep_job import CHAINS
from ui.tasks import TASKS

WINDOW = 300.0  # seconds of page runs summarised: the last 5 minutes
TIMES_KEY = "server_times"  # container key: bench.load reads the summary line from it


def _mb(n: int | None) -> str:
    return "—" if n is None else f"{n / 1e6:,.1f} MB"


def _ms(s: float | None) -> str:
    return "—" if s is None else f"{s * 1000:,.0f} ms"


def _who(owner: str) -> str:
    """A signed-in person's key as their email; a browser id (a long hex hash) shortened for a table; an email
    or a collection name whole."""
    if (person := auth.shown_as(owner)) is not None:
        return person
    return owner[:8] if re.fullmatch(r"[0-9a-f]{16,}", owner) else owner


def active_sessions() -> list[Any]:
    """The sessions seen by this process whose browser is still connected."""
    return [s for s in ACTIVITY.sessions() if viewer.is_active_session(s.session_id)]


def sessions(active: list[Any]) -> None:
    """Active sessions and the signed-in users among them."""
    users = sorted({s.user for s in active if s.user})
    st.subheader(f"{len(active)} active sessions · {len(users)} signed-in users")
    if users:
        st.caption("Signed in: " + ", ".join(users))
    now = time.time()
    rows = [
        {
            "session": s.session_id[:8],
            "user": s.user or "—",
            "page": s.page,
            "last page run": f"{now - s.last_run:.0f} s ago",
        }
        for s in reversed(active)
    ]
    if rows:
        st.table(rows)


def _work_rows() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(running, queued) background work of this server with owner, progress, process and its memory."""
    running, queued = [], []
    for job in REGISTRY.jobs():
        if job.running:
            snap = job.snapshot(touch=False)  # looking must not keep an abandoned job alive
            running.append(("training", job.owner, snap.fraction, snap.progress_text, job.pid))
    for task in TASKS.tasks():
        if task.running:
            t = task.snapshot()
            running.append((f"task: {t.kind}", task.owner, t.fraction, t.message, task.pid))
    for chain in CHAINS.chains():
        c = chain.snapshot()
        if not c.running:
            continue
        for i, step in enumerate(c.steps):
            if step.status == Status.WAITING:
                what = f"{c.kind} step {i + 1}/{len(c.steps)}" + (f" ({c.param}={step.value})" if c.param else "")
                queued.append({"work": what, "owner": _who(chain.session_id), "state": c.message})
    rows = [
        {
            "work": kind,
            "owner": _who(owner),
            "progress": frac,
            "status": text,
            "pid": pid,
            "memory": _mb(health.rss_bytes(pid) if pid else None),
        }
        for kind, owner, frac, text, pid in running
    ]
    return rows, queued


def work_and_memory() -> None:
    """Running and queued work, and the memory of the server and of each job process."""
    rows, queued = _work_rows()
    server_rss = health.rss_bytes(os.getpid())
    st.subheader(f"{len(rows)} running · {len(queued)} queued")
    cols = st.columns(2)
    cols[0].metric("Server process memory (RSS)", _mb(server_rss))
    jobs_rss = sum(health.rss_bytes(int(r["pid"])) or 0 for r in rows if r["pid"] is not None)
    cols[1].metric("Job processes' memory (RSS)", _mb(jobs_rss))
    if rows:
        st.dataframe(
            rows,
            hide_index=True,
            column_config={"progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0)},
        )
    if queued:
        st.caption("Queued (waiting for a free slot or for the step before):")
        st.table(queued)


@st.cache_data(ttl=5, show_spinner=False)
def _disk(runs_root: str, drawings_root: str) -> tuple[dict[str, tuple[int, int]], dict[str, tuple[int, int]]]:
    return health.runs_disk_by_owner(runs_root), health.drawings_disk_by_collection(drawings_root)


def disk() -> None:
    """Disk used by runs per owner and by drawings per collection (shared by every replica)."""
    runs, drawings = _disk(cache.runs_dir(), str(default_drawings_dir(cache.data_dir()).resolve()))
    st.subheader("Disk")
    left, right = st.columns(2)
    with left:
        total = sum(b for _, b in runs.values())
        st.markdown(f"**Runs**: {_mb(total)} in `{cache.runs_dir()}`")
        rows = [
            {"owner": _who(o), "runs": n, "disk": _mb(b)} for o, (n, b) in sorted(runs.items(), key=lambda x: -x[1][1])
        ]
        if rows:
            st.table(rows)
    with right:
        total = sum(b for _, b in drawings.values())
        st.markdown(f"**Drawings**: {_mb(total)}")
        rows = [
            {"collection": _who(c), "drawings": n, "disk": _mb(b)}
            for c, (n, b) in sorted(drawings.items(), key=lambda x: -x[1][1])
        ]
        if rows:
            st.table(rows)


def page_times() -> None:
    """Time per page run measured inside this server over the last 5 minutes: p50 / p95, all and per page."""
    samples = ACTIVITY.samples()
    overall, _ = health.timings([s for s in samples if not s[2].endswith(FRAGMENT)], time.monotonic(), WINDOW)
    _, by_page = health.timings(samples, time.monotonic(), WINDOW)
    with st.container(key=TIMES_KEY):
        st.subheader("Time per page run (last 5 minutes)")
        st.caption(
            f"All pages: {overall.count} page runs, p50 {_ms(overall.p50)}, p95 {_ms(overall.p95)}, "
            f"max {_ms(overall.max)}"
        )
        rows = [
            {"page": p, "runs": t.count, "p50": _ms(t.p50), "p95": _ms(t.p95), "max": _ms(t.max)}
            for p, t in by_page.items()
        ]
        if rows:
            st.table(rows)
    st.caption(
        "Measured in the server from the start of a page's script to its end (the sidebar included), so it "
        "leaves out the network and the browser's rendering. A stroke on Draw reruns only the canvas and its "
        "answer: those runs are listed as 'draw (fragment)' and left out of the line for all pages (they are "
        "also inside Draw's page runs); progress updates are not timed. Each replica measures its own."
    )
