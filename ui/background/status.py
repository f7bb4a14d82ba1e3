"""The one status vocabulary of background work: training jobs, tasks and the steps of a sweep."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """Where a piece of background work is in its life (not every kind of work passes through every one)."""

    WAITING = "waiting"  # a sweep step that has not started yet
    RUNNING = "running"  # holds a slot: its process runs
    FINISHED = "finished"  # ran to its end (a job or a sweep step: trained and saved; a sweep shows it as "done")
    STOPPED = "stopped"  # stopped by its user; a job's partial model then awaits keep or discard
    KEEPING = "keeping"  # a stopped job's partial model is being saved
    KEPT = "kept"  # a stopped (or abandoned) job's partial model was saved
    DISCARDED = "discarded"  # a stopped (or abandoned) job's partial model was dropped
    FAILED = "failed"
    SKIPPED = "skipped"  # a sweep step that never ran: the sweep ended before it
