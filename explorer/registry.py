"""Process-wide registry of the training runs started from the Explorer.

Runs train in worker threads owned by :class:`core.train.Run`; pages only observe them.  The
registry outlives browser sessions, so a reloaded page (a new session) finds the run that is
still going and reattaches to it.  Nothing here starts threads or touches Panel.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["register", "get", "latest", "all_runs", "ACTIVE_STATUSES"]

#: statuses of a run that is still going
ACTIVE_STATUSES: frozenset[str] = frozenset({"created", "running", "paused"})

_LOCK = threading.Lock()
_RUNS: dict[str, Any] = {}
_ORDER: list[str] = []


def register(run: Any) -> None:
    """Remember a started run (``run.id`` must be set)."""
    with _LOCK:
        _RUNS[run.id] = run
        if run.id in _ORDER:
            _ORDER.remove(run.id)
        _ORDER.append(run.id)
        # keep the registry small: forget finished runs beyond the last 16
        while len(_ORDER) > 16:
            old = _ORDER[0]
            if getattr(_RUNS[old], "status", "") in ACTIVE_STATUSES:
                break
            _ORDER.pop(0)
            _RUNS.pop(old, None)


def get(run_id: str) -> Any | None:
    """The registered run with this id, or None."""
    with _LOCK:
        return _RUNS.get(run_id)


def latest(active_only: bool = True) -> Any | None:
    """The most recently started run (only a still-active one when ``active_only``).

    Runs started elsewhere in this process (``core.train.active_runs()``) count too.
    """
    with _LOCK:
        order = list(reversed(_ORDER))
        runs = dict(_RUNS)
    for rid in order:
        run = runs[rid]
        if not active_only or run.status in ACTIVE_STATUSES:
            return run
    if active_only:
        try:
            from core.train import active_runs
        except ImportError:
            return None
        alive = [r for r in active_runs().values() if r.status in ACTIVE_STATUSES]
        return alive[-1] if alive else None
    return None


def all_runs() -> list[Any]:
    """Registered runs, oldest first."""
    with _LOCK:
        return [_RUNS[r] for r in _ORDER]
