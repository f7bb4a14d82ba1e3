"""The interface between background work and where it runs: an Executor starts a function, a Handle follows it.

The function is called as fn(emit, stop, *args) where it runs: emit(message) sends a (picklable) message to
the server, where on_message(message) receives it, and stop.is_set() says that its user wants it to end. Its
return value (or the exception that ended it) comes back as an Outcome, given to on_end once and then kept by
the handle. A page never sees an executor: jobs and tasks (ui/background/work.py) do, so that another one
(a pool of remote workers, say) could be added without touching the pages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Outcome:
    """How a function run in the background ended: its return value, or the error that ended it."""

    value: Any = None
    error: str | None = None  # "ValueError: bad input", or why it ended without an answer

    @property
    def ok(self) -> bool:
        return self.error is None


class Handle(Protocol):
    """One function running in the background."""

    def poll(self) -> Outcome | None:
        """Its outcome once it has ended and on_end has run; None until then."""
        ...

    def result(self, timeout: float | None = None) -> Outcome:
        """Wait for the outcome (as poll gives it); TimeoutError when it is not there after `timeout` seconds."""
        ...

    def stop(self) -> None:
        """Ask the function to end (it sees stop.is_set()); it still ends with an outcome."""
        ...

    def kill(self) -> None:
        """End it now (shutdown, after a stop request was not honoured in time)."""
        ...


class Executor(Protocol):
    """Starts functions in the background."""

    def start(
        self,
        fn: Callable[..., Any],
        args: tuple,
        *,
        name: str,
        threads: int,
        on_message: Callable[[Any], None],
        on_end: Callable[[Outcome], None],
    ) -> Handle:
        """Run fn(emit, stop, *args) with `threads` intra-op threads; fn must be picklable (module level)."""
        ...
