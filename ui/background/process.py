"""The local executor: each function in its own niced child process, forked from a forkserver.

Why processes, not threads: a training loop at small batch sizes is mostly Python and holds the GIL, and
two of them in the server's process starved its event loop (health checks went from 4 ms to 257 ms
median, and page switches froze). A function now runs in a child process forked from a forkserver that
has torch and the engine already imported (a start costs ~40 ms once it is warm), at a lower CPU priority
and with a share of the cores, and sends its messages back over a pipe. A reader thread in the server
hands them to on_message; the pages poll what their owner (a job or a task) made of them.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ui.background.executor import Outcome

NICENESS = 10  # background work yields the CPU to the server (pages, drawing) when both want it
# Imported once by the forkserver, so that a child starts without importing torch (or its work's module) again.
PRELOAD = ["torch", "mnistcore.train", "ui.jobs", "ui.tasks"]

_CONTEXT: Any = None
_CONTEXT_LOCK = threading.Lock()
_SPAWN_LOCK = threading.Lock()


def _context() -> Any:
    """The multiprocessing context: a forkserver with torch and the engine preloaded."""
    global _CONTEXT
    with _CONTEXT_LOCK:
        if _CONTEXT is None:
            # torch.multiprocessing: tensors (the dataset) travel through shared memory, not copied.
            import torch.multiprocessing as tmp

            ctx = tmp.get_context("forkserver")
            ctx.set_forkserver_preload(PRELOAD)
            _CONTEXT = ctx
        return _CONTEXT


@contextlib.contextmanager
def _main_not_reimported() -> Iterator[None]:
    """While a child process is started: tell multiprocessing not to re-import this process's __main__ in it.

    multiprocessing sends the parent's main module along so that the child can re-import it. In a Streamlit
    server, __main__ is the page script (app.py) while a page runs: every job process then ran the whole
    app in "bare mode" before training (loading MNIST, warnings, and, under load, 20+ s of delay). The
    functions run in the background live in importable modules, so the child needs only sys.path.
    """
    from multiprocessing import spawn

    original = spawn.get_preparation_data

    def without_main(name: str) -> dict[str, Any]:
        data = original(name)
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
        return data

    with _SPAWN_LOCK:
        spawn.get_preparation_data = without_main
        try:
            yield
        finally:
            spawn.get_preparation_data = original


def warm_up() -> None:
    """Start the forkserver now (a few seconds: it imports torch), so the first job starts at once."""
    from multiprocessing import forkserver

    _context()
    with _main_not_reimported():
        forkserver.ensure_running()


def _child_main(fn: Callable[..., Any], args: tuple, conn: Any, stop: Any, threads: int, niceness: int) -> None:
    """The child process: run fn(emit, stop, *args), sending its messages, then its result (or its error)."""
    import torch

    with contextlib.suppress(OSError):
        os.nice(niceness)
    torch.set_num_threads(threads)
    try:
        value = fn(lambda message: conn.send(("message", message)), stop, *args)
        conn.send(("result", value))
    except BaseException as exc:  # reported to the page; the process ends either way
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


class ChildProcess:
    """The Handle of one function in a child process; a reader thread starts it, then reads its pipe."""

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple,
        *,
        name: str,
        threads: int,
        on_message: Callable[[Any], None],
        on_end: Callable[[Outcome], None],
        niceness: int = NICENESS,
    ) -> None:
        self.name = name
        self._fn, self._args, self._threads, self._niceness = fn, tuple(args), threads, niceness
        self._on_message, self._on_end = on_message, on_end
        self._stop = _context().Event()  # process-shared: the child polls it between batches
        self._process: Any = None
        self._outcome: Outcome | None = None
        self._done = threading.Event()
        self._reader = threading.Thread(target=self._read, name=name, daemon=True)

    def start(self) -> ChildProcess:
        """Start the reader thread, which starts the process: not the caller (a page's rerun), since that takes
        seconds while the forkserver is still importing torch."""
        self._reader.start()
        return self

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def poll(self) -> Outcome | None:
        return self._outcome if self._done.is_set() else None

    def result(self, timeout: float | None = None) -> Outcome:
        if not self._done.wait(timeout):
            raise TimeoutError(f"{self.name} is still running")
        assert self._outcome is not None
        return self._outcome

    def stop(self) -> None:
        self._stop.set()

    def kill(self) -> None:
        self._stop.set()
        if self.alive:
            self._process.kill()

    def _read(self) -> None:
        try:
            outcome = self._run()
        except Exception as exc:  # a bug in on_message: the process was ended, its owner hears why
            outcome = Outcome(error=f"{type(exc).__name__}: {exc}")
        try:
            self._on_end(outcome)
        finally:
            self._outcome = outcome
            self._done.set()

    def _launch(self) -> Any:
        """Start the process; our end of its pipe."""
        ctx = _context()
        conn, child = ctx.Pipe(duplex=False)
        self._process = ctx.Process(
            target=_child_main,
            name=self.name,
            daemon=True,
            args=(self._fn, self._args, child, self._stop, self._threads, self._niceness),
        )
        with _main_not_reimported():
            self._process.start()
        child.close()  # only the child writes; with our copy closed, EOF arrives when the child ends
        return conn

    def _run(self) -> Outcome:
        try:
            conn = self._launch()
        except Exception as exc:
            return Outcome(error=f"its process could not start: {type(exc).__name__}: {exc}")
        try:
            outcome = self._receive(conn)
        except BaseException:
            self.kill()  # not left running unread; the finally below then joins it at once
            raise
        finally:
            conn.close()
            self._process.join(10)
        return outcome or Outcome(error=f"its process ended unexpectedly (exit code {self._process.exitcode})")

    def _receive(self, conn: Any) -> Outcome | None:
        """Hand every message to on_message until the pipe closes; the outcome the child sent, if any."""
        outcome = None
        while True:
            try:
                kind, payload = conn.recv()
            except (EOFError, OSError):
                return outcome
            if kind == "message":
                self._on_message(payload)
            elif kind == "result":
                outcome = Outcome(value=payload)
            else:
                outcome = Outcome(error=payload)


class LocalProcesses:
    """The Executor of this server: a niced child process per function (see the module docstring)."""

    def start(
        self,
        fn: Callable[..., Any],
        args: tuple,
        *,
        name: str,
        threads: int,
        on_message: Callable[[Any], None],
        on_end: Callable[[Outcome], None],
    ) -> ChildProcess:
        return ChildProcess(fn, args, name=name, threads=threads, on_message=on_message, on_end=on_end).start()


LOCAL = LocalProcesses()
