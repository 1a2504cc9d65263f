"""Is a run's (or a sweep's) process still there? Process identity on this host, for the store's
liveness checks: a pid plus its start time, so a reused pid is not taken for the old process."""

from __future__ import annotations

import os

__all__ = ["process_start_time", "pid_alive"]


def process_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (Linux ``/proc``), or None where unavailable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
        return int(data.rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def pid_alive(pid: int | None, pid_start: int | None) -> bool:
    """True while process ``pid`` (started at ``pid_start`` ticks, when known) is alive on this host."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OSError:
        return False
    if pid_start is not None:
        now = process_start_time(pid)
        if now is not None and now != pid_start:
            return False  # the pid was reused
        if now is None and os.path.isdir("/proc"):
            return False
    return True
