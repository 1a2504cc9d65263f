"""Process-wide registry of the training runs started from the Explorer, and their engine.

Runs train in the worker process of a one-worker Dask engine (:func:`engine`), never in the
server; the server holds a :class:`core.sweep.RemoteRun` per run (its store row and the Dask
future that trains it). The registry outlives browser sessions, so a reloaded page (a new
session) finds the run that is still going and reattaches to it, and the futures stay referenced
so Dask keeps their tasks. Nothing here touches Panel.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from core.store import is_active

__all__ = ["register", "get", "latest", "all_runs", "engine", "warm_up"]

log = logging.getLogger(__name__)

_LOCK = threading.Lock()
_RUNS: dict[str, Any] = {}
_ORDER: list[str] = []
_WARM: list[Any] = []


def engine() -> Any:
    """The engine Live Training runs train on: this process's one-worker local Dask cluster."""
    from core.sweep import shared_local_engine

    return shared_local_engine(1)


def warm_up() -> None:
    """Start the engine and import the training stack in its worker, in the background (once), so a
    first Start does not wait for them."""
    with _LOCK:
        if _WARM:
            return
        _WARM.append(None)

    def go() -> None:
        try:
            from core.sweep.task import warm_up as task

            eng = engine()
            _WARM[0] = eng.submit(task, key="lowbit-warm-up")
        except Exception:  # noqa: BLE001 - a failed warm-up is reported when a run starts
            log.warning("could not warm up the training engine", exc_info=True)

    threading.Thread(target=go, name="lowbit-engine-warm-up", daemon=True).start()


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
            if is_active(getattr(_RUNS[old], "status", "")):
                break
            _ORDER.pop(0)
            _RUNS.pop(old, None)


def get(run_id: str) -> Any | None:
    """The registered run with this id, or None."""
    with _LOCK:
        return _RUNS.get(run_id)


def latest(active_only: bool = True) -> Any | None:
    """The most recently started run (only a still-active one when ``active_only``)."""
    with _LOCK:
        order = list(reversed(_ORDER))
        runs = dict(_RUNS)
    for rid in order:
        run = runs[rid]
        if not active_only or is_active(run.status):
            return run
    return None


def all_runs() -> list[Any]:
    """Registered runs, oldest first."""
    with _LOCK:
        return [_RUNS[r] for r in _ORDER]
