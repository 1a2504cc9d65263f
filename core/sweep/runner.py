"""Drive a sweep: expand it, record it in the store, train its cells on the engine, watch them end.

:func:`run` is what ``python -m core.sweep run`` and the Sweeps page (through that command) call.
Cells already finished in the store are not trained again; cells interrupted, stopped or never
started are. A cell that diverges, raises or loses its worker is recorded with its status and
error and the rest of the sweep goes on (Dask reschedules the task of a lost worker; a task that
keeps losing workers ends as ``KilledWorker`` and its cell as ``interrupted``).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from core.store import FINAL_STATUSES, RunStatus, RunStore, SweepStatus

from .engine import Engine, store_path
from .spec import Cell, SweepSpec, cells_for_store, expand, load

__all__ = ["SweepResult", "run", "status", "Progress"]

log = logging.getLogger(__name__)

#: cells in these states count as finished (not trained again unless asked)
FINISHED = (RunStatus.DONE.value, RunStatus.DIVERGED.value, RunStatus.ERROR.value)


@dataclass
class Progress:
    """Counts of a sweep's cells, passed to the progress callback after every change."""

    total: int
    done: int = 0
    failed: int = 0
    running: int = 0
    skipped: int = 0
    todo: int = 0


@dataclass
class SweepResult:
    """What :func:`run` did: the sweep's final status, how many cells it trained, and the grid."""

    name: str
    status: str
    trained: int
    cells: pd.DataFrame
    seconds: float
    store: Path
    counts: dict[str, int] = field(default_factory=dict)


def _todo(cells: list[Cell], stored: pd.DataFrame, rerun_failed: bool) -> list[Cell]:
    by_key = dict(zip(stored["key"], stored["status"]))
    finished = {RunStatus.DONE.value, RunStatus.DIVERGED.value} | (set() if rerun_failed else {RunStatus.ERROR.value})
    return [c for c in cells if by_key.get(c.key) not in finished]


def run(sweep: SweepSpec | str | os.PathLike[str], *, store: RunStore | str | os.PathLike[str] | None = None,
        workers: int | None = None, scheduler: str | None = None, engine: Engine | None = None,
        rerun_failed: bool = False, on_progress: Callable[[Progress], None] | None = None,
        poll: float = 0.25, stop_timeout: float = 120.0) -> SweepResult:
    """Train every unfinished cell of a sweep and wait for the grid to fill.

    Args:
        sweep: a :class:`SweepSpec` or the path of a sweep file.
        store: the run store (default ``$LOWBIT_STORE`` / the user data directory).
        workers: embedded workers (default: one per core); ignored with ``scheduler`` or ``engine``.
        scheduler: address of an existing Dask scheduler (``tcp://HOST:8786``).
        engine: an :class:`Engine` to use (left open); else one is started and closed here.
        rerun_failed: also train again the cells that ended with an error.
        on_progress: called with a :class:`Progress` whenever a cell starts or ends.

    Ctrl-C (``KeyboardInterrupt``) or a stop asked through the store (the Sweeps page) stops the
    sweep cleanly: cells not started stay ``created``, running ones end ``stopped`` at their next
    step, the store stays consistent; a second Ctrl-C cancels at once.

    Raises:
        SweepError: the file or a cell is invalid (before anything runs).
        EngineError: the engine cannot start or the scheduler cannot be reached.
        RuntimeError: another process is driving this sweep.
        StoreWriteError: the store was opened read-only (a read-only folder or file).
    """
    t0 = time.monotonic()
    spec = sweep if isinstance(sweep, SweepSpec) else load(sweep)
    cells = expand(spec)
    st = store if isinstance(store, RunStore) else RunStore(store)
    st.require_writable()
    path = store_path(st)
    source = str(Path(spec.source).resolve()) if spec.source and Path(spec.source).is_file() else spec.source
    st.begin_sweep(spec.name, cells_for_store(cells), metric=spec.metric, axes=spec.default_axes,
                   source=source, spec=spec.text, description=spec.description)
    todo = _todo(cells, st.sweep_cells(spec.name), rerun_failed)
    prog = Progress(total=len(cells), todo=len(todo), skipped=len(cells) - len(todo))
    if on_progress:
        on_progress(prog)
    final = SweepStatus.DONE.value
    own = engine is None and bool(todo)
    eng = engine
    try:
        if todo:
            if eng is None:
                eng = Engine(scheduler=scheduler, workers=workers)
            st.update_sweep(spec.name, engine=eng.describe(), started=time.time(), ended=None)
            if scheduler:
                eng.wait_for_workers(1, timeout=30)
                eng.check_store(path, st.store_id)
            final = _drive(eng, st, spec, todo, prog, on_progress, poll, stop_timeout, rerun_failed)
    except BaseException:
        final = SweepStatus.STOPPED.value
        raise
    finally:
        if todo:
            st.update_sweep(spec.name, status=final, ended=time.time(), heartbeat=time.time())
        else:  # nothing trained: the sweep's recorded span and engine stay those of its last training
            st.update_sweep(spec.name, status=final, heartbeat=time.time())
        if own and eng is not None:
            eng.close()
    df = st.sweep_cells(spec.name)
    counts = df["status"].value_counts().to_dict()
    return SweepResult(spec.name, final, prog.done + prog.failed, df, time.monotonic() - t0, st.path,
                       {str(k): int(v) for k, v in counts.items()})


def _drive(eng: Engine, st: RunStore, spec: SweepSpec, todo: list[Cell], prog: Progress,
           on_progress: Callable[[Progress], None] | None, poll: float, stop_timeout: float,
           rerun_failed: bool) -> str:
    from distributed import as_completed

    from .task import train_cell

    path = store_path(st)
    rerun = (RunStatus.ERROR.value,) if rerun_failed else ()
    futures = {eng.submit(train_cell, path, spec.name, c.key, c.config.to_dict(), 1, rerun,
                          key=f"lowbit-cell-{spec.name}-{c.key}-{time.time_ns()}"): c for c in todo}
    pending = set(futures)
    stopping_since: float | None = None
    last_beat = 0.0
    interrupts = 0
    ready = as_completed(list(pending), loop=eng.client.loop)
    while pending:
        try:
            done = set(ready.next_batch(block=False)) if ready.has_ready() else set()
            if not done:
                time.sleep(poll)
            for f in done:
                pending.discard(f)  # first: a Ctrl-C or SIGTERM while recording must not leave it pending for ever
                _record(st, spec.name, futures[f], f, prog)
            now = time.monotonic()
            if now - last_beat > 1.0:
                last_beat = now
                st.update_sweep(spec.name, heartbeat=time.time())
                prog.running = _count_running(st, spec.name)
                if stopping_since is None and st.sweep_stop_requested(spec.name):
                    stopping_since = _begin_stop(st, spec.name)
            if on_progress:
                on_progress(prog)
            if stopping_since is not None:
                _stop_running(st, spec.name)  # cells that started since the stop began
                if now - stopping_since > stop_timeout:
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            interrupts += 1
            if interrupts > 1 or (stopping_since is not None and time.monotonic() - stopping_since > stop_timeout):
                eng.client.cancel(list(pending))
                _mark_cancelled(st, spec.name, [futures[f] for f in pending])
                return SweepStatus.STOPPED.value
            if stopping_since is None:
                stopping_since = _begin_stop(st, spec.name)
    prog.running = 0
    if on_progress:
        on_progress(prog)
    return SweepStatus.STOPPED.value if stopping_since is not None else SweepStatus.DONE.value


def _record(st: RunStore, name: str, cell: Cell, fut: Any, prog: Progress) -> None:
    """Count a finished task; record the cells whose task died without writing its own end."""
    try:
        res = fut.result()
    except Exception as exc:  # noqa: BLE001 - KilledWorker, a crash outside Run, a cancelled task
        lost = type(exc).__name__ in ("KilledWorker", "CancelledError", "FutureCancelledError")
        status = RunStatus.INTERRUPTED.value if lost else RunStatus.ERROR.value
        msg = f"{type(exc).__name__}: {exc}"
        if lost:
            msg = f"worker lost: {msg}"
        row = st.conn.execute("SELECT run_id FROM sweep_cells WHERE sweep_id=? AND key=?", (name, cell.key)).fetchone()
        if row and row[0]:
            try:
                if st.get_run(row[0])["status"] not in FINAL_STATUSES:
                    st.update_run(row[0], status=RunStatus.INTERRUPTED.value if lost else RunStatus.ERROR.value,
                                  ended=time.time(), error=msg)
            except Exception:  # noqa: BLE001
                log.warning("could not close run %s of cell %s", row[0], cell.key, exc_info=True)
        st.update_cell(name, cell.key, status=status, error=msg)
        prog.failed += 1
        return
    s = res.get("status")
    if s == "skipped":
        prog.skipped += 1
    elif s in (RunStatus.DONE.value, RunStatus.STOPPED.value):
        prog.done += 1
    else:
        prog.failed += 1


def _count_running(st: RunStore, name: str) -> int:
    row = st.conn.execute("SELECT count(*) FROM sweep_cells WHERE sweep_id=? AND status IN ('running','paused')",
                          (name,)).fetchone()
    return int(row[0])


def _begin_stop(st: RunStore, name: str) -> float:
    log.warning("stopping sweep %s: running cells end at their next step", name)
    st.request_sweep_stop(name)
    _stop_running(st, name)
    return time.monotonic()


def _stop_running(st: RunStore, name: str) -> None:
    """Send a stop command to every running cell's run that has not had one."""
    from core.store import CommandKind

    rows = st.conn.execute("SELECT run_id FROM sweep_cells WHERE sweep_id=? AND status IN ('running','paused') "
                           "AND run_id IS NOT NULL", (name,)).fetchall()
    for (run_id,) in rows:
        sent = st.conn.execute("SELECT 1 FROM commands WHERE run_id=? AND kind='stop'", (run_id,)).fetchone()
        if not sent:
            st.send_command(run_id, CommandKind.STOP)


def _mark_cancelled(st: RunStore, name: str, cells: list[Cell]) -> None:
    for c in cells:
        row = st.conn.execute("SELECT status FROM sweep_cells WHERE sweep_id=? AND key=?", (name, c.key)).fetchone()
        if row and row[0] == RunStatus.CREATED.value:
            continue
        if row and row[0] in (RunStatus.RUNNING.value, RunStatus.PAUSED.value):
            st.update_cell(name, c.key, status=RunStatus.STOPPED.value, error="cancelled when the sweep stopped")


def status(name: str, store: RunStore | str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The sweep row, its cells and the counts per status.

    Raises:
        KeyError: no sweep of that name.
    """
    st = store if isinstance(store, RunStore) else RunStore(store)
    row = st.get_sweep(name)
    cells = st.sweep_cells(name)
    return {"sweep": row, "cells": cells,
            "counts": {str(k): int(v) for k, v in cells["status"].value_counts().items()}}
