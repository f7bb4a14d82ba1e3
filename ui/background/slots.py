"""The server-wide cap on running background work, and the rule of one of each kind per browser.

Training jobs, the steps of sweeps and continued runs, and tasks (fine-tune on drawings, find label issues,
train without them) all keep the CPU busy, so they all count against one cap: each holds a slot from the
moment it is accepted until its process has ended and its outcome is recorded. A request over the cap is
refused with a message for the user (`JobLimitError`) or, when it asks to, waits for a slot (sweeps do).
A slot is also held under a key (kind, browser): a second request with the same key is refused
(`JobBusyError`), which is "one training job per browser" and "one task of each kind per browser".
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from ui.background.errors import JobBusyError, JobLimitError

MAX_RUNNING = 2  # jobs and tasks together: two keep a 2-core server busy and leave it responsive
RECHECK = 0.5  # seconds between checks of a waiting request's `cancelled` (a release wakes it at once)


class Slot:
    """One unit of the cap, held by one piece of work; release() (once or more) gives it back."""

    def __init__(self, registry: SlotRegistry, kind: str, owner: str) -> None:
        self.kind, self.owner = kind, owner
        self.threads = registry.threads  # the share of the cores its process may use
        self._registry = registry

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, self.owner

    def release(self) -> None:
        self._registry._release(self)


class SlotRegistry:
    """At most `max_running` slots held at once on the whole server, and one per (kind, browser)."""

    def __init__(self, max_running: int = MAX_RUNNING) -> None:
        self.max_running = max_running
        self._held: dict[tuple[str, str], Slot] = {}
        self._cond = threading.Condition()

    @property
    def threads(self) -> int:
        """Intra-op threads per slot: the cores this process may use, shared by the work that may run at once."""
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            cores = os.cpu_count() or 1
        return max(1, cores // self.max_running)

    def running(self, kind: str | None = None) -> int:
        """How many slots are held (of one kind, or in all)."""
        with self._cond:
            return sum(kind in (None, k) for k, _ in self._held)

    def holds(self, kind: str, owner: str) -> bool:
        with self._cond:
            return (kind, owner) in self._held

    def acquire(
        self,
        kind: str,
        owner: str,
        *,
        busy: str,
        wait: float = 0.0,
        cancelled: Callable[[], bool] | None = None,
        on_wait: Callable[[], None] | None = None,
    ) -> Slot:
        """A slot for `owner`'s work of `kind`, or JobBusyError(busy) while it holds one of that kind already.

        At the cap: JobLimitError at once, or after up to `wait` seconds of waiting for a slot (sooner when
        `cancelled()` turns true); on_wait() is called once when the wait begins (under the registry's lock:
        it must not call back into the registry).
        """
        deadline = time.monotonic() + wait
        told = False
        with self._cond:
            while True:
                if (kind, owner) in self._held:
                    raise JobBusyError(busy)
                if len(self._held) < self.max_running:
                    slot = self._held[kind, owner] = Slot(self, kind, owner)
                    return slot
                left = deadline - time.monotonic()
                if left <= 0 or (cancelled is not None and cancelled()):
                    raise JobLimitError(
                        f"The server is already running {len(self._held)} training jobs, its limit. "
                        "Try again in a moment, when one of them has finished."
                    )
                if on_wait is not None and not told:
                    told = True
                    on_wait()
                self._cond.wait(min(left, RECHECK))

    def _release(self, slot: Slot) -> None:
        with self._cond:
            if self._held.get(slot.key) is slot:
                del self._held[slot.key]
                self._cond.notify_all()


SLOTS = SlotRegistry()
