"""Work that runs in the background of the dashboard: training jobs, tasks and sweep steps. No Streamlit here.

- `status.py`: the one status vocabulary (`Status`) that jobs, tasks and sweep steps share.
- `errors.py`: what a page tells its user when work cannot start or be acted on.
- `slots.py`: the server-wide cap on running work (`SLOTS`, `MAX_RUNNING`) and the per-browser rule.
- `executor.py`: the interface between work and where it runs (`Executor` starts a function, `Handle`).
- `process.py`: the one executor there is: a niced child process per function (`LOCAL`).
- `work.py`: what a job and a task share (`Work`: a slot held while its process runs) and `Board`.
"""

from ui.background.errors import JobBusyError, JobError, JobLimitError
from ui.background.executor import Executor, Handle, Outcome
from ui.background.process import LOCAL, warm_up
from ui.background.slots import MAX_RUNNING, SLOTS, Slot, SlotRegistry
from ui.background.status import Status
from ui.background.work import Board, Work

__all__ = [
    "LOCAL",
    "MAX_RUNNING",
    "SLOTS",
    "Board",
    "Executor",
    "Handle",
    "JobBusyError",
    "JobError",
    "JobLimitError",
    "Outcome",
    "Slot",
    "SlotRegistry",
    "Status",
    "Work",
    "warm_up",
]
