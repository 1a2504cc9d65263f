"""One vocabulary for the life of a run, a sweep cell and a sweep, and the commands a run obeys.

Every status string in the store, the engine and the pages comes from these enums (they are
``str`` enums, so ``RunStatus.DONE == "done"`` and the values are what the store holds).
"""

from __future__ import annotations

from enum import Enum

__all__ = ["RunStatus", "CommandKind", "SweepStatus", "ACTIVE_STATUSES", "FINAL_STATUSES", "PENDING_STATUSES",
           "RERUN_STATUSES", "is_active", "is_final"]


class _Name(str, Enum):
    """A ``str`` enum whose ``str()`` is its value (what the store holds)."""

    def __str__(self) -> str:
        return str(self.value)


class RunStatus(_Name):
    """Status of a run (and of the sweep cell that holds it).

    ``created``: the row exists, training has not begun (a queued sweep cell or a Live run waiting
    for its worker). ``running``/``paused``: a process trains it. The rest are final: ``done``,
    ``stopped`` (by a user: Stop, Ctrl-C, SIGTERM), ``diverged`` (loss non-finite or above the
    threshold, the MLS paper's "Div."), ``error`` (an exception), ``interrupted`` (its process
    vanished: killed, or its worker was lost).
    """

    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    DONE = "done"
    STOPPED = "stopped"
    DIVERGED = "diverged"
    ERROR = "error"
    INTERRUPTED = "interrupted"


class SweepStatus(_Name):
    """Status of a sweep: ``running`` while a client drives it, ``stopping`` once a stop was asked,
    then ``done`` (every cell ended), ``stopped`` or ``interrupted`` (its client vanished)."""

    RUNNING = "running"
    STOPPING = "stopping"
    DONE = "done"
    STOPPED = "stopped"
    INTERRUPTED = "interrupted"


class CommandKind(_Name):
    """What a page or a sweep client can ask of a run through the store (see ``RunStore.send_command``)."""

    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"
    UPDATE = "update"


#: a process is training the run
ACTIVE_STATUSES: tuple[str, ...] = (RunStatus.RUNNING.value, RunStatus.PAUSED.value)
#: training has not begun
PENDING_STATUSES: tuple[str, ...] = (RunStatus.CREATED.value,)
#: the run has ended
FINAL_STATUSES: tuple[str, ...] = (RunStatus.DONE.value, RunStatus.STOPPED.value, RunStatus.DIVERGED.value,
                                   RunStatus.ERROR.value, RunStatus.INTERRUPTED.value)
#: a sweep run again trains its cells in these states again (finished results are kept)
RERUN_STATUSES: tuple[str, ...] = (RunStatus.CREATED.value, RunStatus.STOPPED.value, RunStatus.INTERRUPTED.value)


def is_active(status: str) -> bool:
    """True while the run is going or waiting to go (``created``, ``running``, ``paused``)."""
    return status in ACTIVE_STATUSES or status in PENDING_STATUSES


def is_final(status: str) -> bool:
    """True once the run has ended."""
    return status in FINAL_STATUSES
