"""Several users at once: page switches and drawing in real Chromium against a real `streamlit run` (127.0.0.1).

    python -m bench.load [--quick] [--only 1 2 3] [--no-old] [--seed N] [--sign-in]

Everything runs on this machine: the bench starts its own server (bench/appserver.py) on a private runs
dir holding one freshly trained model, drives headless Chromium contexts (one per user) with Playwright,
and stops everything it started, even on failure. Three scenarios, each bounded in count and time:

1. Page switches while two jobs train: two users each start a long training on the Train page
   (784-256-10, 20 epochs, batch 16: a Python-heavy loop), then switch pages in the sidebar at random
   0.2-2 s intervals. A switch is a FREEZE when the new page is not fully rendered within 15 s: its
   title shown, no stale (greyed) element left, Streamlit's script state no longer "running".
   The health endpoint is probed twice a second meanwhile.
2. One user drawing alone on an idle server: mouse-up -> new prediction (the 28x28 preview's src
   changes), 20 strokes, each after Clear. The same on the version before this work (commit 54e4f0e,
   streamlit-drawable-canvas), checked out in a temporary git worktree and served by the same Python,
   in alternating blocks so both see the same machine.
3. Six users drawing while two jobs train: every stroke must be answered; each answer's 28x28 preview
   must be exactly what that user drew (recomputed here from the strokes the canvas sent) and its digit
   what the model says about it: anything else is counted as a cross-session leak or a wrong answer.
   Peak RSS (VmHWM) of the server process and of its job processes.

Latencies are timed inside the page (performance.timeOrigin + now(): pointer-up or click, to the first
animation frame that shows the result). A WebSocket hook splits a stroke's time into the server's part
(first message sent after mouse-up -> last message received before the result appeared) and the
browser's part (the rest: serialising the canvas, rendering). Load averages are read before each
scenario: the machine is shared, and the browsers run on the same cores as the server.

--sign-in turns sign-in on (st.login against oidc-provider-mock on 127.0.0.1, bench/oidc.py): every simulated
user signs in as a different person (alice1@example.edu, alice2@..., before the scenario's timed part),
and the health page is read by an instructor (instructor@example.edu) in a browser of their own. The old
version (scenario 2's comparison, --old-switches) has no sign-in and is served as before.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import itertools
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import oidc
from bench.appserver import CHROMIUM, CHROMIUM_ARGS, AppServer, free_port, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
OLD_COMMIT = "54e4f0e"  # the last commit before the load work: streamlit-drawable-canvas on Draw
FREEZE_SECONDS = 15.0
ANSWER_SECONDS = 20.0  # a stroke with no answer after this long counts as unanswered
JOB = {"hidden": 256, "epochs": 20, "batch": 16}  # ~75 000 small steps: minutes of Python-heavy work
NAV = '[data-testid="stSidebarNav"] a'
INSTRUCTOR = "instructor@example.edu"  # --sign-in: the one person who may read the health page (/server)

# In every frame: when the last pointer-up and click happened (page clock, ms since the epoch); in the
# top frame also when each WebSocket message was sent and received.
INIT_JS = """(() => {
  const now = () => performance.timeOrigin + performance.now();
  let top = window;
  try { top = window.top; } catch (e) {}
  addEventListener("pointerup", () => { try { top.__mnlUp = now(); } catch (e) {} }, true);
  addEventListener("click", () => { try { top.__mnlClick = now(); } catch (e) {} }, true);
  if (window !== top) return;
  const log = window.__mnlWs = { sent: [], recv: [] };
  const keep = (a) => { if (a.length > 4000) a.splice(0, 2000); };
  const Base = window.WebSocket;
  class Watched extends Base {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", () => { log.recv.push(now()); keep(log.recv); });
    }
    send(data) { log.sent.push(now()); keep(log.sent); return super.send(data); }
  }
  window.WebSocket = Watched;
  // The answer's arrival, without polling: a MutationObserver notices the watched <img> get a new src and
  // stamps the next animation frame (the first that can show it). Polling on every frame instead kept six
  // renderers busy at 60 fps and slowed the very answers being timed.
  const seen = () => {
    const w = window.__mnlWatch;
    const e = w && document.querySelector(w.sel);
    const src = e && e.getAttribute("src");
    if (src && src !== w.before && !w.pending) {
      w.pending = true;
      requestAnimationFrame(() => { w.shown = [now(), src]; });
    }
  };
  new MutationObserver(seen).observe(document, { subtree: true, childList: true, attributes: true,
                                                 attributeFilter: ["src"] });
})();"""

# The page counts as rendered when its title shows, nothing is stale and no script runs (fragment
# polls run briefly every 0.5 s while a job trains; between them the state is "notRunning").
RENDERED_JS = """(title) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute("data-test-script-state") !== "notRunning") return null;
  if (document.querySelector('[data-stale="true"]')) return null;
  const h = document.querySelector('[data-testid="stMain"] h1');
  if (!h || !h.textContent.includes(title)) return null;
  return performance.timeOrigin + performance.now();
}"""
PAGE_STATE_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  const h = document.querySelector('[data-testid="stMain"] h1');
  return { state: app && app.getAttribute("data-test-script-state"),
           connection: app && app.getAttribute("data-test-connection-state"),
           stale: document.querySelectorAll('[data-stale="true"]').length,
           title: h ? h.textContent : null, path: location.pathname };
}"""
WATCH_JS = """([sel, before]) => { window.__mnlWatch = { sel, before, pending: false, shown: null }; }"""
CHANGED_JS = "() => (window.__mnlWatch && window.__mnlWatch.shown) || null"  # stamped in the page (INIT_JS)
POLL_MS = 50  # how often Playwright looks; the times themselves are taken in the page
IDLE_JS = """([empty, answer]) => {
  const app = document.querySelector('[data-testid="stApp"]');
  return !!app && app.getAttribute("data-test-script-state") === "notRunning"
    && !!document.querySelector(empty) && !document.querySelector(answer);
}"""


@dataclass(frozen=True)
class DrawUi:
    """Where a version of the Draw page keeps its parts."""

    name: str
    canvas: str
    clear: str
    preview: str  # the 28x28 input the model saw, an <img> whose src changes with every answer
    digit: str
    ink: str = ""  # the canvas that holds the ink drawn (for telling a lost stroke from an unanswered one)
    empty: str = ".st-key-draw_empty"
    recreated: bool = False  # Clear re-creates the canvas (a new component instance under a new key)


NEW_UI = DrawUi(
    "new (own canvas, stroke paths)",
    ".st-key-draw_canvas_box canvas.mnl-surface",
    ".st-key-draw_canvas_box [data-testid='draw-clear']",
    ".st-key-draw_answer img.mnl-seen",
    ".st-key-draw_answer [data-testid='draw-digit']",
    ink=".st-key-draw_canvas_box canvas.mnl-surface",
)
OLD_UI = DrawUi(
    f"old ({OLD_COMMIT}, drawable-canvas)",
    ".st-key-draw_canvas_box canvas.upper-canvas",
    ".st-key-draw_clear button",
    "[data-testid='stImage'] img",
    ".st-key-draw_digit",
    ink=".st-key-draw_canvas_box canvas.lower-canvas",
    recreated=True,
)


# -- small helpers ------------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank), nan for no values."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


def fmt_s(value: float) -> str:
    return "—" if value != value else f"{value:.2f} s"  # nan -> dash


def table(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    print(f"\n{title}")
    print("-" * len(title))
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")


def loadavg() -> str:
    one, five, _ = os.getloadavg()
    cores = os.cpu_count() or 1
    busy = "  (busy machine)" if one > cores else ""
    return f"{one:.2f} (5 min {five:.2f}) on {cores} cores{busy}"


def page_titles(app: Path = ROOT / "app.py") -> list[tuple[str, str]]:
    """(url path, page title) for each page app.py declares, read from the page files' st.title()."""
    out = []
    for file, url in re.findall(r'st\.Page\("([^"]+)".*?url_path="([^"]*)"', app.read_text()):
        m = re.search(r'st\.title\("([^"]+)"\)', (app.parent / file).read_text())
        if m:
            out.append(("/" if "default=True" in _page_decl(app, file) else f"/{url}", m.group(1)))
    return out


def _page_decl(app: Path, file: str) -> str:
    return next(line for line in app.read_text().splitlines() if f'"{file}"' in line)


# -- processes ---------------------------------------------------------------------------------------
def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()  # fields from the 3rd on (state, ppid, ...)


def descendants(pid: int) -> dict[int, int]:
    """{pid: parent pid} of every live descendant of pid."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            parents[int(entry)] = int(st[1])
    out, frontier = {}, [pid]
    while frontier:
        p = frontier.pop()
        for child, parent in parents.items():
            if parent == p and child not in out:
                out[child] = parent
                frontier.append(child)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (0 when gone)."""
    st = _stat(pid)
    return 0.0 if st is None else (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")


def vm_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def kill_tree(root_pids: list[int], pids: set[int]) -> None:
    """SIGKILL the given processes (ours: the server's descendants collected while it ran) that still live."""
    for pid in list(pids) + root_pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


class Monitor:
    """Threads that probe /_stcore/health and sample the process trees (the server's, the bench's) twice a second."""

    def __init__(self, url: str, server_pid: int) -> None:
        self.url, self.pid = url, server_pid
        self.health: list[float] = []
        self.health_fail = 0
        self.hwm: dict[int, int] = {}  # pid -> VmHWM KiB (latest reading while alive)
        self.role: dict[int, str] = {}
        self.cpu: dict[int, float] = {}  # pid -> CPU seconds at its latest sample (kept after it ends)
        self.seen: set[int] = set()
        self.peak_total_kib = 0
        self.jobs_running: list[tuple[float, int]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=f, name=f"bench-load-{f.__name__}", daemon=True)
            for f in (self._probe, self._sample)
        ]

    def __enter__(self) -> Monitor:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(12)

    def reset_health(self) -> None:
        self.health, self.health_fail = [], 0

    def _probe(self) -> None:
        while not self._stop.wait(0.5):
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=10) as r:
                    r.read()
                self.health.append(time.perf_counter() - t0)
            except OSError:
                self.health_fail += 1

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            self.sample()

    def sample(self) -> None:
        ours = descendants(os.getpid())  # first: a process forked in between shows up in the server's tree
        tree = descendants(self.pid)
        with self._lock:
            self._sample_locked(tree, ours)

    def _sample_locked(self, tree: dict[int, int], ours: dict[int, int]) -> None:
        self.seen |= set(tree)
        forkservers = set()
        for pid in tree:
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "forkserver" in cmd:
                forkservers.add(pid)
            self.role.setdefault(pid, "resource tracker" if "resource_tracker" in cmd else "server children")
        jobs = 0
        for pid, parent in tree.items():
            if parent in forkservers:
                self.role[pid] = "job"
                jobs += 1
            elif pid in forkservers and parent not in forkservers:
                self.role[pid] = "forkserver"
        self.role[self.pid] = "server"
        self.role[os.getpid()] = "bench"
        others = {p for p in ours if p not in tree and p != self.pid}
        for pid in others:
            if pid not in self.role:
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
                except OSError:
                    continue
                self.role[pid] = "old server" if "streamlit" in cmd else "browsers"
        for pid in [self.pid, os.getpid(), *tree, *others]:
            if (c := cpu_seconds(pid)) > 0:
                self.cpu[pid] = c
        total = vm_kib(self.pid, "VmRSS") + sum(vm_kib(p, "VmRSS") for p in tree)
        self.peak_total_kib = max(self.peak_total_kib, total)
        for pid in [self.pid, *tree]:
            if (h := vm_kib(pid, "VmHWM")) > 0:
                self.hwm[pid] = max(self.hwm.get(pid, 0), h)
        self.jobs_running.append((time.time(), jobs))

    def cpu_mark(self) -> dict[str, float]:
        """Cumulative CPU seconds by role (server, job, browsers, ...) and of the whole machine ("all", "steal")."""
        self.sample()
        with self._lock:
            out: dict[str, float] = {}
            for pid, c in self.cpu.items():
                role = self.role.get(pid, "browsers")
                role = "jobs" if role in ("job", "forkserver") else role
                out[role] = out.get(role, 0.0) + c
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        ticks = [int(v) for v in fields] + [0] * 10
        hz = os.sysconf("SC_CLK_TCK")
        out["all"] = (ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6]) / hz
        out["steal"] = ticks[7] / hz
        out["t"] = time.monotonic()
        return out

    @staticmethod
    def cpu_share(start: dict[str, float], end: dict[str, float]) -> str:
        """'server 0.62, jobs 0.40, browsers 0.51, other users 0.30 cores (steal 0.05)' between two marks."""
        wall = max(1e-6, end["t"] - start["t"])
        use = {k: (end.get(k, 0.0) - start.get(k, 0.0)) / wall for k in end if k not in ("t",)}
        mine = sum(v for k, v in use.items() if k not in ("all", "steal"))
        parts = [f"{k} {use[k]:.2f}" for k in ("server", "jobs", "browsers", "old server", "bench") if use.get(k)]
        return (
            f"{', '.join(parts)}; everything else on the machine {max(0.0, use['all'] - mine):.2f} "
            f"(cores busy on average; steal {use['steal']:.2f})"
        )

    def peaks_mib(self) -> dict[str, float]:
        """Peak RSS (MiB): the streamlit process, the largest job process, the forkserver, all together."""
        jobs = [h for p, h in self.hwm.items() if self.role.get(p) == "job"]
        forks = [h for p, h in self.hwm.items() if self.role.get(p) == "forkserver"]
        return {
            "server": self.hwm.get(self.pid, 0) / 1024,
            "job": max(jobs, default=0) / 1024,
            "jobs seen": float(len(jobs)),
            "forkserver": max(forks, default=0) / 1024,
            "tree": self.peak_total_kib / 1024,
        }

    def jobs_at(self, t: float) -> int:
        """Job processes alive at the sample nearest to time t (time.time())."""
        if not self.jobs_running:
            return 0
        return min(self.jobs_running, key=lambda s: abs(s[0] - t))[1]


class OldServer:
    """The version before this work, served from a git worktree by this Python (same .venv) on a free port."""

    def __init__(self, worktree: Path, runs_dir: Path, data_dir: Path, log: Path) -> None:
        self.root = worktree
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        env = {
            **os.environ,
            "MNIST_RUNS_DIR": str(runs_dir),
            "MNIST_DATA_DIR": str(data_dir),
            "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
            "PYTHONPATH": str(worktree),
        }
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "app.py",
                "--server.address",
                "127.0.0.1",
                "--server.port",
                str(self.port),
                "--server.headless",
                "true",
                "--server.fileWatcherType",
                "none",
            ],
            cwd=worktree,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_healthy(self.url, self.proc)
        except Exception:
            self.stop()
            raise

    stop = AppServer.stop


# -- browser actions ---------------------------------------------------------------------------------
async def new_user(browser: Any, sign_in: tuple[str, str] | None = None) -> Any:
    """A new browser context (one user); signed in at (app url, email) first when given."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    await context.add_init_script(INIT_JS)
    page = await context.new_page()
    page.set_default_timeout(60_000)
    if sign_in is not None:
        url, email = sign_in
        await oidc.sign_in_async(page, url, email, email)
    return page


async def user(env: Env, srv: Any = None) -> Any:
    """A new user of srv (default: this version's server); with --sign-in, on this version's server, signed in
    as the next person (alice1@example.edu, alice2@...). The old version has no sign-in."""
    srv = srv or env.server
    if env.people is None or srv is not env.server:
        return await new_user(env.browser)
    return await new_user(env.browser, (srv.url, next(env.people)))


async def wait_rendered(page: Any, title: str, timeout: float) -> float:
    """Page-clock ms when the page showed `title`, nothing stale, no script running; raises on timeout."""
    handle = await page.wait_for_function(RENDERED_JS, arg=title, polling="raf", timeout=timeout * 1000)
    return float(await handle.json_value())


async def start_job(page: Any, url: str) -> None:
    """Open Train, set the long job's recipe and start it; return when its progress shows."""
    from playwright.async_api import expect

    await page.goto(f"{url}/train")
    start = page.locator(".st-key-train_start button")
    await expect(start).to_be_enabled(timeout=90_000)
    hidden = page.locator(".st-key-train_hidden input")
    await hidden.fill(str(JOB["hidden"]))
    await hidden.press("Tab")
    slider = page.locator(".st-key-train_epochs input[type=range]")
    await slider.focus()
    await page.keyboard.press("Home")
    for _ in range(JOB["epochs"] - 1):
        await page.keyboard.press("ArrowRight")
    await expect(slider).to_have_value(str(JOB["epochs"]))
    await page.locator(".st-key-train_batch").click()
    await page.get_by_role("option", name=str(JOB["batch"]), exact=True).click()
    await expect(hidden).to_have_value(str(JOB["hidden"]))
    await start.click()
    await expect(page.locator(".st-key-train_progress")).to_contain_text(
        re.compile(rf"Epoch \d+/{JOB['epochs']} · batch"), timeout=90_000
    )


async def job_running(page: Any) -> bool:
    """This user's job still runs (its Stop button on Train, or the sidebar's background status elsewhere)."""
    return await page.evaluate("""() => !!document.querySelector('.st-key-train_stop')
        || [...document.querySelectorAll('[data-testid="stSidebar"] [data-testid="stCaptionContainer"]')]
             .some(e => e.textContent.includes('Training in the background'))""")


@dataclass
class Switches:
    latencies: list[float] = field(default_factory=list)
    freezes: list[dict[str, Any]] = field(default_factory=list)
    restarts: int = 0
    job_not_shown: list[dict[str, Any]] = field(default_factory=list)  # a page that did not show the running job
    both_jobs: int = 0  # switches made while two job processes were alive


async def switcher(
    page: Any,
    url: str,
    pages: list[tuple[str, str]],
    n: int,
    rng: random.Random,
    out: Switches,
    mon: Monitor,
    deadline: float,
    artifacts: Path,
    who: str,
) -> None:
    """n sidebar page switches at random 0.2-2 s intervals; record latency or a freeze for each."""
    current = "/train"
    for i in range(n):
        if time.monotonic() > deadline:
            return
        if not await job_running(page):  # the long job ended? start another so that two keep running
            state = await page.evaluate(PAGE_STATE_JS)
            await page.goto(f"{url}/train", wait_until="commit", timeout=120_000)
            await wait_rendered(page, "Train a network", 60)
            current = "/train"
            if await page.locator(".st-key-train_stop").count():
                out.job_not_shown.append({"user": who, "switch": i, "state": state})
            else:
                await start_job(page, url)
                out.restarts += 1
        await asyncio.sleep(rng.uniform(0.2, 2.0))
        path, title = rng.choice([p for p in pages if p[0] != current])
        link = page.locator(f'{NAV}[href="{url}{path}"]')
        out.both_jobs += mon.jobs_at(time.time()) >= 2
        await link.first.click()
        try:
            shown = await wait_rendered(page, title, FREEZE_SECONDS)
            clicked = await page.evaluate("() => window.__mnlClick")
            out.latencies.append((shown - clicked) / 1000)
        except Exception as exc:  # a freeze (or a broken page): keep the evidence, reload, go on
            state = await page.evaluate(PAGE_STATE_JS)
            shot = artifacts / f"freeze-{who}-{i}.png"
            with contextlib.suppress(Exception):
                await page.screenshot(path=str(shot), full_page=True)
            out.freezes.append(
                {
                    "user": who,
                    "switch": i,
                    "to": path,
                    "state": state,
                    "error": type(exc).__name__,
                    "screenshot": str(shot),
                }
            )
            await page.goto(f"{url}{path}")
            await wait_rendered(page, title, 60)
        current = path


async def draw_stroke(page: Any, ui: DrawUi, points: list[tuple[float, float]]) -> None:
    """One mouse stroke through points given as fractions of the canvas (0..1)."""
    box = await page.locator(ui.canvas).bounding_box()
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    await page.mouse.move(*xy[0])
    await page.mouse.down()
    for (x0, y0), (x1, y1) in itertools.pairwise(xy):
        await page.mouse.move(x1, y1, steps=max(2, int(max(abs(x1 - x0), abs(y1 - y0)) / 8)))
    await page.mouse.up()


async def clear_and_wait(page: Any, ui: DrawUi) -> None:
    """Clear the canvas and wait until the page shows the empty answer with no script running."""
    await page.locator(ui.clear).click()
    await page.wait_for_function(IDLE_JS, arg=[ui.empty, ui.preview], polling=POLL_MS, timeout=60_000)
    if ui.recreated:  # the old page re-creates its canvas on Clear: wait until there is exactly one, shown
        canvas = page.locator(ui.canvas)
        deadline = time.monotonic() + 60
        while await canvas.count() != 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await canvas.wait_for(timeout=60_000)


async def open_draw(page: Any, url: str, ui: DrawUi) -> None:
    await page.goto(f"{url}/draw", wait_until="commit", timeout=120_000)
    await page.locator(ui.canvas).wait_for(timeout=90_000)
    await page.wait_for_function(IDLE_JS, arg=[ui.empty, ui.preview], polling=POLL_MS, timeout=90_000)


@dataclass
class Stroke:
    seconds: float | None  # mouse-up -> the new answer on screen; None: unanswered
    server: float | None = None  # the WebSocket part of it
    digit: str | None = None
    preview: str | None = None  # data URI (new UI) of the 28x28 input shown
    strokes: Any = None  # what the canvas sent (new UI)
    expected: str | None = None  # digit shape drawn
    lost: bool = False  # the stroke left no ink (the old canvas drops strokes drawn too soon after Clear)
    at: float = field(default_factory=time.time)  # when it was drawn (time.time())


async def has_ink(page: Any, ui: DrawUi) -> bool:
    return await page.locator(ui.ink).first.evaluate("""c => {
        const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        for (let i = 0; i < d.length; i += 4) if (d[i] > 0) return true;
        return false; }""")


async def one_stroke(
    page: Any,
    ui: DrawUi,
    points: list[tuple[float, float]],
    shape: str,
    think: tuple[float, float] = (0.3, 0.8),
    rng: random.Random | None = None,
) -> Stroke:
    """Clear, wait a moment, then one stroke; time mouse-up -> the new 28x28 preview, and split off the server's
    part. A stroke that left no ink is `lost`; one with ink but no answer within ANSWER_SECONDS is unanswered."""
    await clear_and_wait(page, ui)
    await asyncio.sleep((rng or random).uniform(*think))
    before = await page.evaluate(f"() => document.querySelector({ui.preview!r})?.getAttribute('src') ?? ''")
    await page.evaluate(WATCH_JS, [ui.preview, before])
    await draw_stroke(page, ui, points)
    strokes = None
    if not ui.recreated:
        strokes = await page.locator(ui.canvas).evaluate("c => c.parentElement.__mnl.strokes")
    handle = None
    for wait in (2.0, ANSWER_SECONDS - 2.0):  # after 2 s without an answer, look whether the stroke left ink
        try:
            handle = await page.wait_for_function(CHANGED_JS, polling=POLL_MS, timeout=wait * 1000)
            break
        except Exception:
            if wait == 2.0 and not await has_ink(page, ui):
                return Stroke(None, strokes=strokes, expected=shape, lost=True)
    if handle is None:
        return Stroke(None, strokes=strokes, expected=shape)
    shown, src = await handle.json_value()
    up, ws = await page.evaluate("() => [window.__mnlUp, window.__mnlWs]")
    sent = [t for t in ws["sent"] if t >= up]
    recv = [t for t in ws["recv"] if sent and sent[0] <= t <= shown]
    server = (recv[-1] - sent[0]) / 1000 if sent and recv else None
    try:
        digit = await (
            await page.wait_for_function(
                f"() => document.querySelector({ui.digit!r})?.textContent.trim() || null", timeout=10_000
            )
        ).json_value()
    except Exception:
        digit = None
    return Stroke((shown - up) / 1000, server, digit, src if src.startswith("data:") else None, strokes, shape)


# -- digit shapes (one stroke each), jittered so that no two drawings are alike -------------------------
def shape(name: str, rng: random.Random) -> list[tuple[float, float]]:
    j = lambda v: v + rng.uniform(-0.04, 0.04)  # noqa: E731
    if name == "1":
        return [(j(0.5), j(0.15)), (j(0.5), j(0.85))]
    if name == "7":
        return [(j(0.25), j(0.2)), (j(0.75), j(0.2)), (j(0.42), j(0.85))]
    if name == "0":
        rx, ry, cx, cy = j(0.22), j(0.32), j(0.5), j(0.5)
        import math

        return [(cx + rx * math.sin(2 * math.pi * k / 24), cy - ry * math.cos(2 * math.pi * k / 24)) for k in range(25)]
    if name == "4":
        return [(j(0.62), j(0.85)), (j(0.62), j(0.15)), (j(0.25), j(0.6)), (j(0.8), j(0.6))]
    raise ValueError(name)


SHAPES = ["1", "7", "0", "4"]


def sequence(n: int, rng: random.Random) -> list[str]:
    """n digit shapes, never the same twice in a row (so every answer differs from the one before)."""
    out: list[str] = []
    while len(out) < n:
        out.append(rng.choice([s for s in SHAPES if not out or s != out[-1]]))
    return out


def decode_preview(src: str) -> Any:
    import numpy as np
    from PIL import Image

    big = np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("L"))
    return big[:: big.shape[0] // 28, :: big.shape[1] // 28]


# -- scenarios -----------------------------------------------------------------------------------------
@dataclass
class Env:
    browser: Any
    server: AppServer
    mon: Monitor
    artifacts: Path
    runs_dir: Path
    data_dir: Path
    rng: random.Random
    deadline: float
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    old_worktree: Path | None = None
    old_servers: int = 0
    people: Iterator[str] | None = None  # --sign-in: who the next user signs in as


async def server_side(env: Env, scenario: str) -> dict[str, str]:
    """The server's own time per page run (last 5 minutes), read from its health page (/server), as a table.

    Measured inside the server (ui/activity.py): script start to end, which a browser cannot see apart from
    the network and its own rendering. Reading it is one more page run, after the figures it reads.
    """
    instructor = None if env.people is None else (env.server.url, INSTRUCTOR)
    page = await new_user(env.browser, instructor)  # with sign-in on, only an instructor may see /server
    try:
        await page.goto(f"{env.server.url}/server")
        box = page.locator(".st-key-server_times")
        line = box.get_by_text(re.compile(r"^All pages: "))
        await line.wait_for(timeout=60_000)
        await box.locator("table").wait_for(timeout=30_000)  # the per-page rows come with the same run
        rows = [("all page runs", (await line.inner_text()).removeprefix("All pages: "))]
        for tr in await box.locator("table tr").all():
            cells = [c.strip() for c in (await tr.locator("th, td").all_inner_texts())]
            if len(cells) == 5 and cells[0] != "page":  # page, runs, p50, p95, max (after the header row)
                name, runs, p50, p95, top = cells
                rows.append((name, f"{runs} runs, p50 {p50}, p95 {p95}, max {top}"))
    finally:
        await page.context.close()
    table(f"{scenario} -- inside the server (its /server page): time per page run, last 5 minutes", rows)
    return dict(rows)


async def scenario_switches(env: Env, n: int, old: bool = False) -> dict[str, Any]:
    """Scenario 1 on this version, or (old=True) on OLD_COMMIT: a control that shows the check finds freezes."""
    load = loadavg()
    srv = start_old(env) if old else env.server
    pages = page_titles((srv.root if old else ROOT) / "app.py")
    if env.people is not None and not old:  # signed in as students, the health page is not in their sidebar
        pages = [p for p in pages if p[0] != "/server"]
    mon = Monitor(srv.url, srv.proc.pid).__enter__() if old else env.mon
    if old:
        env.cleanups.append(lambda: mon.__exit__(None, None, None))
    a, b = await user(env, srv), await user(env, srv)
    # A first visit of every page by a third user, so that the figures are for a warm server.
    warm = await user(env, srv)
    cold = []
    for path, title in pages:
        t0 = time.perf_counter()
        await warm.goto(f"{srv.url}{path}", wait_until="commit", timeout=120_000)
        await wait_rendered(warm, title, 120)
        cold.append(time.perf_counter() - t0)
    await warm.context.close()
    await start_job(a, srv.url)
    await start_job(b, srv.url)
    mon.reset_health()
    out = Switches()
    mark = mon.cpu_mark()
    t0 = time.perf_counter()
    tag = "old" if old else "new"
    await asyncio.gather(
        switcher(
            a,
            srv.url,
            pages,
            (n + 1) // 2,
            random.Random(env.rng.random()),
            out,
            mon,
            env.deadline,
            env.artifacts,
            f"{tag}-A",
        ),
        switcher(
            b,
            srv.url,
            pages,
            n // 2,
            random.Random(env.rng.random()),
            out,
            mon,
            env.deadline,
            env.artifacts,
            f"{tag}-B",
        ),
    )
    wall = time.perf_counter() - t0
    cpu = mon.cpu_share(mark, mon.cpu_mark())
    health = list(mon.health)
    for p in (a, b):
        await p.context.close()
    done = len(out.latencies) + len(out.freezes)
    rows = [
        ("load average before", load),
        ("pages", f"{len(pages)} ({', '.join(t for _, t in pages)})"),
        ("first visit of each page (cold)", f"max {max(cold):.2f} s, total {sum(cold):.1f} s"),
        (
            "switches (2 users at once)",
            f"{done} of {n} in {wall:.0f} s; "
            + ("jobs are threads in the server there" if old else f"{out.both_jobs} while 2 job processes ran")
            + f"; {out.restarts} jobs restarted after finishing",
        ),
        ("FREEZES (> 15 s)", str(len(out.freezes))),
        (
            "switch latency",
            f"p50 {fmt_s(pct(out.latencies, 50))}, p95 {fmt_s(pct(out.latencies, 95))}, "
            f"max {fmt_s(max(out.latencies, default=float('nan')))}",
        ),
        (
            "/_stcore/health meanwhile",
            f"median {statistics.median(health) * 1000:.0f} ms, "
            f"max {max(health) * 1000:.0f} ms ({len(health)} probes, "
            f"{mon.health_fail} failed)"
            if health
            else "no probe",
        ),
        ("CPU use meanwhile (cores)", cpu),
        ("load average after", loadavg()),
    ]
    what = f"OLD version {OLD_COMMIT} (control)" if old else "this version"
    table(
        f"1{'b' if old else ''}. Page switches while two jobs train ({JOB['hidden']} hidden, {JOB['epochs']} "
        f"epochs, batch {JOB['batch']}), {what}",
        rows,
    )
    for f in out.freezes:
        print(f"  freeze: user {f['user']} switch {f['switch']} -> {f['to']}: {f['state']} ({f['screenshot']})")
    for f in out.job_not_shown:
        print(f"  note: user {f['user']} after switch {f['switch']}: the running job not shown: {f['state']}")
    return {"freezes": len(out.freezes), "switches": done, "latencies": out.latencies, "health": health}


async def draw_block(page: Any, ui: DrawUi, n: int, rng: random.Random) -> list[Stroke]:
    out = []
    seq = sequence(n, rng)
    for name in seq:
        out.append(await one_stroke(page, ui, shape(name, rng), name, rng=rng))
    return out


def stroke_rows(strokes: list[Stroke]) -> str:
    ok = [s.seconds for s in strokes if s.seconds is not None]
    server = [s.server for s in strokes if s.server is not None]
    lost = sum(s.lost for s in strokes)
    return (
        f"p50 {fmt_s(pct(ok, 50))}, p95 {fmt_s(pct(ok, 95))}, max {fmt_s(max(ok, default=float('nan')))}"
        f" ({len(ok)} answered, {len(strokes) - len(ok) - lost} unanswered, {lost} lost: no ink); "
        f"server part p50 {fmt_s(pct(server, 50))}, p95 {fmt_s(pct(server, 95))}"
    )


async def scenario_draw_alone(env: Env, n: int, with_old: bool, block: int = 5) -> dict[str, Any]:
    load = loadavg()
    servers: list[tuple[DrawUi, Any]] = [(NEW_UI, env.server)]
    if with_old:
        servers.append((OLD_UI, start_old(env)))
    results: dict[str, list[Stroke]] = {ui.name: [] for ui, _ in servers}
    cpu: dict[str, float] = dict.fromkeys(results, 0.0)
    pages = []
    for ui, srv in servers:
        page = await user(env, srv)
        await open_draw(page, srv.url, ui)
        await draw_block(page, ui, 2, env.rng)  # warm-up strokes (first model load, first picture), not counted
        pages.append(page)
    mark = env.mon.cpu_mark()
    t0 = time.perf_counter()
    while any(len(r) < n for r in results.values()) and time.monotonic() < env.deadline:
        for (ui, srv), page in zip(servers, pages, strict=True):
            k = min(block, n - len(results[ui.name]))
            if k > 0:
                c0 = cpu_seconds(srv.proc.pid)
                results[ui.name] += await draw_block(page, ui, k, env.rng)
                cpu[ui.name] += cpu_seconds(srv.proc.pid) - c0
    wall = time.perf_counter() - t0
    cpu_use = env.mon.cpu_share(mark, env.mon.cpu_mark())
    for page in pages:
        await page.context.close()
    rows = [("load average before", load)]
    p95 = {}
    for name, strokes in results.items():
        ok = [s.seconds for s in strokes if s.seconds is not None]
        p95[name] = pct(ok, 95)
        rows.append((name, stroke_rows(strokes)))
        rows.append(("  server CPU per stroke", f"{cpu[name] / max(1, len(strokes)) * 1000:.0f} ms (with its Clear)"))
        wrong = sum(s.digit != s.expected for s in strokes if s.seconds is not None)
        rows.append(("  answers not the digit drawn", f"{wrong} of {len(ok)}"))
    if with_old:
        new, old = p95[NEW_UI.name], p95[OLD_UI.name]
        rows.append(("new p95 / old p95", f"{new / old:.2f} (target ≤ 0.5)" if old == old and old else "—"))
    rows.append(("CPU use meanwhile (cores)", cpu_use))
    rows.append(("wall time", f"{wall:.0f} s; load average after {loadavg()}"))
    table(f"2. One user drawing alone, idle server: mouse-up -> new prediction, {n} strokes each, after Clear", rows)
    return {"p95": p95}


def start_old(env: Env) -> OldServer:
    """Serve OLD_COMMIT from a temporary git worktree (made once, removed at the end) on a copy of the runs dir."""
    if env.old_worktree is None:
        worktree = Path(tempfile.mkdtemp(prefix="mnist-old-")) / "old-mnist"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(worktree), OLD_COMMIT],
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        env.cleanups.insert(
            0,
            lambda: (  # runs last: after the old servers have stopped
                subprocess.run(
                    ["git", "worktree", "remove", "--force", str(worktree)],
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                ),
                shutil.rmtree(worktree.parent, ignore_errors=True),
            ),
        )
        env.old_worktree = worktree
    env.old_servers += 1
    runs = env.artifacts / f"runs-old-{env.old_servers}"
    shutil.copytree(env.runs_dir, runs)
    srv = OldServer(env.old_worktree, runs, env.data_dir, env.artifacts / f"streamlit-old-{env.old_servers}.log")
    seen: set[int] = set()

    def stop() -> None:
        seen.update(descendants(srv.proc.pid))
        srv.stop()
        kill_tree([], seen)

    env.cleanups.append(stop)
    return srv


async def drawer(page: Any, n: int, rng: random.Random, deadline: float) -> list[Stroke]:
    out = []
    for name in sequence(n, rng):
        if time.monotonic() > deadline:
            break
        out.append(await one_stroke(page, NEW_UI, shape(name, rng), name, think=(0.3, 1.5), rng=rng))
    return out


async def keep_training(page: Any, url: str, stop: asyncio.Event) -> int:
    """Watch a user's job from its Train page and start another whenever it ends; how many were restarted."""
    restarts = 0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 3)
        if not stop.is_set() and not await page.locator(".st-key-train_stop").count():
            await start_job(page, url)
            restarts += 1
    return restarts


async def scenario_draw_crowd(env: Env, users: int, n: int) -> dict[str, Any]:
    import numpy as np

    from mnistcore.predict import predict_prepared
    from mnistcore.preprocess import prepare_digit
    from mnistcore.runs import RunStore
    from mnistcore.strokes import rasterize

    load = loadavg()
    owners = [await user(env) for _ in range(2)]
    for p in owners:
        await start_job(p, env.server.url)
    pages = [await user(env) for _ in range(users)]
    for p in pages:  # one after the other: six first loads at once take minutes on a busy 2-core machine
        await open_draw(p, env.server.url, NEW_UI)
    jobs_before = env.mon.jobs_at(time.time())
    c0 = cpu_seconds(env.server.proc.pid)
    mark = env.mon.cpu_mark()
    t0 = time.perf_counter()
    stop = asyncio.Event()
    keepers = [asyncio.create_task(keep_training(p, env.server.url, stop)) for p in owners]
    per_user = await asyncio.gather(*(drawer(p, n, random.Random(env.rng.random()), env.deadline) for p in pages))
    stop.set()
    restarts = sum(await asyncio.gather(*keepers))
    wall = time.perf_counter() - t0
    cpu_use = env.mon.cpu_share(mark, env.mon.cpu_mark())
    server_cpu = cpu_seconds(env.server.proc.pid) - c0
    jobs_after = env.mon.jobs_at(time.time())
    for p in pages + owners:
        await p.context.close()

    # Every answer must be this user's own: its 28x28 preview exactly what this user's strokes make, and
    # its digit what the model says about that picture.
    model, _ = RunStore(env.runs_dir).load()
    expected: list[list[tuple[bytes, str] | None]] = []
    for strokes in per_user:
        row = []
        for s in strokes:
            if s.strokes is None:
                row.append(None)
                continue
            prepared = prepare_digit(rasterize(s.strokes))
            pix = (np.clip(prepared.pixels, 0, 1) * 255).astype(np.uint8)
            row.append((pix.tobytes(), str(int(np.argmax(predict_prepared(model, prepared))))))
        expected.append(row)
    owner_of = {e[0]: u for u, row in enumerate(expected) for e in row if e is not None}
    leaks = wrong = mismatched = 0
    for u, strokes in enumerate(per_user):
        for s, e in zip(strokes, expected[u], strict=True):
            if s.seconds is None or s.preview is None or e is None:
                continue
            seen = decode_preview(s.preview).tobytes()
            if seen != e[0]:
                if owner_of.get(seen, u) != u:
                    leaks += 1
                else:
                    mismatched += 1
            elif s.digit != e[1]:
                wrong += 1
    flat = [s for strokes in per_user for s in strokes]
    answered = [s for s in flat if s.seconds is not None]
    peaks = env.mon.peaks_mib()
    rows = [
        ("load average before", load),
        (
            "strokes",
            f"{len(flat)} ({users} users × {n}), {len(answered)} answered, "
            f"{len(flat) - len(answered)} NOT ANSWERED ({sum(s.lost for s in flat)} of them left no ink)",
        ),
        ("mouse-up -> new prediction", stroke_rows(flat)),
        ("cross-session leaks", f"{leaks} (answers showing another user's drawing)"),
        ("other wrong answers", f"{mismatched} previews not this drawing, {wrong} digits not the model's answer"),
        (
            "job processes alive",
            f"{jobs_before} at the start, {jobs_after} at the end; {restarts} jobs restarted "
            f"after finishing; {sum(env.mon.jobs_at(s.at) >= 2 for s in flat)} strokes drawn "
            f"while 2 ran",
        ),
        (
            "server CPU",
            f"{server_cpu:.1f} s over {wall:.0f} s ({server_cpu / max(1, len(flat)) * 1000:.0f} ms "
            f"per stroke with its Clear)",
        ),
        ("CPU use meanwhile (cores)", cpu_use),
        (
            "peak RSS (VmHWM)",
            f"streamlit process {peaks['server']:.0f} MiB; job processes {peaks['job']:.0f} MiB "
            f"each at most ({peaks['jobs seen']:.0f} seen); forkserver {peaks['forkserver']:.0f} MiB;"
            f" whole tree at once {peaks['tree']:.0f} MiB (RSS sum, shared pages counted twice)",
        ),
        ("load average after", loadavg()),
    ]
    table(f"3. {users} users drawing while two jobs train", rows)
    return {"unanswered": len(flat) - len(answered), "leaks": leaks, "p95": pct([s.seconds for s in answered], 95)}


# -- setup and teardown ----------------------------------------------------------------------------------
LOG_PATTERNS = (
    "Traceback",
    "Error",
    "does not exist anymore",
    "WebSocketDisconnected",
    "terminate called",
    "Discarding rerun",
)


def chromium(work: Path, niceness: int) -> str:
    """The Chromium to launch: as is, or through a wrapper that lowers its CPU priority (its renderers run
    on the server's cores here; on a real deployment they run on the users' machines)."""
    if not niceness:
        return CHROMIUM
    wrapper = work / "chromium-niced"
    wrapper.write_text(f'#!/bin/sh\nexec nice -n {int(niceness)} "{CHROMIUM}" "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def log_summary(path: Path) -> None:
    """Count the server log lines worth a look (errors, dropped fragments, disconnects)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return
    counts = {p: sum(p in line for line in lines) for p in LOG_PATTERNS}
    found = ", ".join(f"{n} × '{p}'" for p, n in counts.items() if n)
    print(f"\nserver log: {len(lines)} lines; {found or 'no error, traceback or dropped-fragment line'}")


def start_server(
    runs: Path, data_dir: Path, log: Path, options: list[str], port: int | None = None, args: Sequence[str] = ()
) -> AppServer:
    """This version's server; options ("runner.postScriptGC=false") reach it as STREAMLIT_* variables, `port` and
    `args` go to AppServer (sign-in: bench/oidc.py app_args)."""
    saved = dict(os.environ)
    try:
        for opt in options:
            key, _, value = opt.partition("=")
            name = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", key.replace(".", "_")).upper()
            os.environ[f"STREAMLIT_{name}"] = value
        return AppServer(runs, data_dir, log, port=port, args=args)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def start_signed_in(runs: Path, data_dir: Path, work: Path, options: list[str]) -> tuple[AppServer, oidc.Provider]:
    """An OIDC provider and this version's server with sign-in on, INSTRUCTOR its one instructor."""
    provider = oidc.Provider(work / "provider.log")
    try:
        port, args = oidc.app_args(work, provider, [INSTRUCTOR])
        return start_server(runs, data_dir, work / "streamlit.log", options, port=port, args=args), provider
    except BaseException:
        provider.stop()
        raise


def train_model(runs: Path, data_dir: Path) -> None:
    from mnistcore import RunStore, TrainConfig, load_mnist, train

    data = load_mnist(data_dir)
    result = train(TrainConfig(epochs=1), data)
    RunStore(runs).save(
        result.model,
        result.config,
        test_accuracy=result.test_accuracy,
        train_seconds=result.train_seconds,
        history=result.history,
        dataset=data.checksums,
    )


async def run(args: argparse.Namespace) -> int:
    from playwright.async_api import async_playwright

    from mnistcore.data import default_data_dir, provision_mnist

    started = time.perf_counter()
    deadline = time.monotonic() + args.max_minutes * 60
    work = Path(tempfile.mkdtemp(prefix="mnist-load-"))
    print(
        f"bench.load: {'quick' if args.quick else 'full'} run, work dir {work}; load average {loadavg()}"
        + (f"; server options {' '.join(args.server_option)}" if args.server_option else "")
        + (f"; browsers at niceness {args.nice_browsers}" if args.nice_browsers else "")
        + ("; sign-in on (a different person per user)" if args.sign_in else "")
    )
    data_dir = default_data_dir().resolve()
    provision_mnist(data_dir)
    runs = work / "runs"
    if args.runs_from:
        shutil.copytree(args.runs_from, runs)
    else:
        train_model(runs, data_dir)
    failed = False
    provider: oidc.Provider | None = None
    if args.sign_in:
        server, provider = start_signed_in(runs, data_dir, work, args.server_option)
    else:
        server = start_server(runs, data_dir, work / "streamlit.log", args.server_option)
    seen: set[int] = set()
    env: Env | None = None
    try:
        with Monitor(server.url, server.proc.pid) as mon:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(
                    executable_path=chromium(work, args.nice_browsers), args=CHROMIUM_ARGS
                )
                env = Env(browser, server, mon, work, runs, data_dir, random.Random(args.seed), deadline)
                if provider is not None:
                    env.people = (f"alice{i}@example.edu" for i in itertools.count(1))
                try:
                    results = {}
                    if 1 in args.only:
                        results[1] = await scenario_switches(env, args.switches)
                        failed |= results[1]["freezes"] > 0
                        await server_side(env, "1")
                    if args.old_switches:
                        await scenario_switches(env, args.old_switches, old=True)
                    if 2 in args.only:
                        results[2] = await scenario_draw_alone(env, args.strokes, with_old=not args.no_old)
                        await server_side(env, "2")
                    if 3 in args.only:
                        results[3] = await scenario_draw_crowd(env, args.users, args.crowd_strokes)
                        failed |= results[3]["unanswered"] > 0 or results[3]["leaks"] > 0
                        await server_side(env, "3")
                    if time.monotonic() > deadline:
                        print(f"\nnote: stopped early at the {args.max_minutes} min limit")
                finally:
                    seen |= mon.seen
                    await browser.close()
    except BaseException:
        failed = True
        sys.stderr.write(f"\nserver log tail ({server.log_path}):\n")
        sys.stderr.write(server.log_path.read_text(errors="replace")[-3000:])
        raise
    finally:
        seen |= set(descendants(server.proc.pid))
        server.stop()
        kill_tree([], seen)  # job processes and the forkserver, should any outlive the server
        if provider is not None:
            provider.stop()
        log_summary(server.log_path)
        for cleanup in reversed(env.cleanups if env else []):
            with contextlib.suppress(Exception):
                cleanup()
        if failed:
            print(f"\nevidence kept in {work} (server logs, screenshots)")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nbench.load: done in {time.perf_counter() - started:.0f} s")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """Run the load scenarios and print one table each; exit status 1 on a freeze, an unanswered stroke or a leak."""
    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer switches and strokes (a few minutes)")
    p.add_argument("--only", type=int, nargs="+", choices=[1, 2, 3], default=[1, 2, 3], help="scenarios to run")
    p.add_argument("--no-old", action="store_true", help="scenario 2 without the old version")
    p.add_argument(
        "--old-switches",
        type=int,
        default=0,
        metavar="N",
        help=f"also scenario 1 with N switches on {OLD_COMMIT}, a control that shows freezes are caught",
    )
    p.add_argument(
        "--nice-browsers",
        type=int,
        default=0,
        metavar="N",
        help="run Chromium at niceness N (default 0: same priority as the server)",
    )
    p.add_argument(
        "--server-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Streamlit config option for this version's server, e.g. runner.postScriptGC=false",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--sign-in",
        action="store_true",
        help="sign-in on: each user signs in as another person (a local OIDC provider); an instructor reads /server",
    )
    p.add_argument("--runs-from", type=Path, help="copy this runs dir (one trained model) instead of training one")
    p.add_argument("--max-minutes", type=float, default=None, help="stop starting new work after this long")
    args = p.parse_args(argv)
    args.switches, args.strokes, args.users, args.crowd_strokes = (40, 8, 6, 4) if args.quick else (200, 20, 6, 20)
    if args.max_minutes is None:
        args.max_minutes = 6.0 if args.quick else 30.0

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # so that every finally block runs and the servers are stopped

    signal.signal(signal.SIGTERM, terminate)
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
