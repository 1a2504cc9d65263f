"""What runs inside a Dask worker: train one sweep cell, or one queued run, into the run store.

These functions are the tasks the engine submits; they import the training stack in the worker
process (never in the client or the server), write the store directly and return a small summary.
A cell's own status is written here, so the store tells the truth even if the client has gone.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from core.store import RunStatus, RunStore, StoreError

__all__ = ["train_cell", "train_run", "probe_store", "warm_up"]

log = logging.getLogger(__name__)

_STORES: dict[str, RunStore] = {}
_LOCK = threading.Lock()


def _store(path: str) -> RunStore:
    """One open store per path and worker process (opening checks the schema and marks dead runs)."""
    with _LOCK:
        s = _STORES.get(path)
        if s is None:
            s = _STORES[path] = RunStore(path)
        else:
            s.mark_interrupted()
        return s


def probe_store(path: str, store_id: str) -> str:
    """``ok`` if this process sees the store ``store_id`` at ``path``, else why not (never creates a file)."""
    if not os.path.isfile(path):
        return f"no file {path} on this worker's machine"
    try:
        import sqlite3

        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as c:
            row = c.execute("SELECT value FROM lowbit_meta WHERE key='store_id'").fetchone()
    except Exception as exc:  # noqa: BLE001
        return f"cannot read it: {exc}"
    if not row or row[0] != store_id:
        return "the file there is another run store"
    return "ok"


def warm_up() -> str:
    """Import the training stack (so the first run starts without that wait); returns the pid."""
    import core.train.run  # noqa: F401  (the whole training stack: torch, models, data, schemes, store)

    return str(os.getpid())


def _limit_threads(threads: int | None) -> None:
    """One worker, ``threads`` threads: torch's and Numba's (Dask limits OpenMP/MKL but not Numba, and
    two workers each running Numba's pool on every core slow each other down)."""
    if threads:
        from core.train.run import _set_threads

        _set_threads(threads)


def train_run(store_path: str, run_id: str, config: dict[str, Any], threads: int | None = 1) -> dict[str, Any]:
    """Train the ``created`` run ``run_id`` (made by a page) to its end; returns its result."""
    from core.train import Run, RunConfig

    _limit_threads(threads)
    store = _store(store_path)
    run = Run(RunConfig.from_dict(config), store=store, run_id=run_id)
    try:
        run.start()
    except StoreError as exc:  # e.g. stopped before a worker took it
        return {"run_id": run_id, "status": "skipped", "error": str(exc)}
    run.wait()
    return dict(run.result, error=f"{type(run.error).__name__}: {run.error}" if run.error else None)


def train_cell(store_path: str, sweep: str, key: str, config: dict[str, Any], threads: int | None = 1,
               rerun: tuple[str, ...] = ()) -> dict[str, Any]:
    """Train one cell of ``sweep`` unless it is already finished or the sweep is stopping.

    Each attempt is a new run in the store; the cell points at the latest one (an earlier attempt
    whose worker was lost stays in the store as ``interrupted``).
    """
    from core.train import Run, RunConfig

    _limit_threads(threads)
    store = _store(store_path)
    row = store.conn.execute("SELECT status, run_id, attempts FROM sweep_cells WHERE sweep_id=? AND key=?",
                             (sweep, key)).fetchone()
    if row is None:
        return {"key": key, "status": "skipped", "error": "the cell is no longer in the sweep"}
    status, old_run, attempts = row
    if status in (RunStatus.DONE, RunStatus.DIVERGED, RunStatus.ERROR) and status not in rerun:
        return {"key": key, "status": status, "run_id": old_run, "skipped": True}
    if store.sweep_stop_requested(sweep):
        return {"key": key, "status": "skipped", "error": "the sweep is stopping"}
    cfg = RunConfig.from_dict(config)
    try:
        run = Run(cfg, store=store)
        run_id = store.create_run(cfg.to_dict(), name=cfg.name, dataset=cfg.data.name, model=cfg.model.name,
                                  scheme=cfg.scheme.name, epochs=cfg.epochs, status=RunStatus.CREATED.value)
    except (ValueError, TypeError) as exc:
        store.update_cell(sweep, key, status=RunStatus.ERROR.value, error=f"{type(exc).__name__}: {exc}")
        return {"key": key, "status": RunStatus.ERROR.value, "error": str(exc)}
    store.update_cell(sweep, key, status=RunStatus.RUNNING.value, run_id=run_id, attempts=int(attempts or 0) + 1,
                      error=None)
    run = Run(cfg, store=store, run_id=run_id)
    if store.sweep_stop_requested(sweep):
        store.update_run(run_id, status=RunStatus.STOPPED.value)
        store.update_cell(sweep, key, status=RunStatus.CREATED.value)
        return {"key": key, "status": "skipped", "error": "the sweep is stopping"}
    run.start()
    run.wait()
    err = f"{type(run.error).__name__}: {run.error}" if run.error else None
    store.update_cell(sweep, key, status=run.status, error=err)
    return dict(run.result, key=key, error=err)

