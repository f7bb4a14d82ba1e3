"""Why background work could not start or be acted on; every message is meant for the user."""

from __future__ import annotations


class JobError(RuntimeError):
    """A job or task could not be started or acted on; the message is meant for the user."""


class JobLimitError(JobError):
    """The server already runs its maximum number of jobs and tasks."""


class JobBusyError(JobError):
    """This browser already runs that (its one training job, or a task of that kind)."""
