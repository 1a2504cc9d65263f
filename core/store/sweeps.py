"""Sweeps in the run store: one row per sweep, one per grid cell, each cell pointing at its run.

A cell is identified by its key (a hash of the run config it trains), so running the same sweep
file again finds its finished cells and trains only the rest. The sweep engine
(:mod:`core.sweep`) writes these rows; the Sweeps page and ``python -m core.sweep status`` read them.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any, Sequence

import pandas as pd

from .process import pid_alive as _pid_alive
from .process import process_start_time
from .base import StoreBase
from .tx import rollback
from .status import RunStatus, SweepStatus

__all__ = ["SweepsMixin", "CellRow"]

#: (key, coords, config) of one cell, as the engine expands a sweep
CellRow = tuple[str, dict[str, Any], dict[str, Any]]

_SWEEP_UPDATABLE = {"status", "started", "ended", "heartbeat", "pid", "pid_start", "host", "engine", "metric",
                    "axes", "source", "description", "spec", "stop_requested"}
_CELL_UPDATABLE = {"status", "run_id", "attempts", "error"}


class SweepsMixin(StoreBase):
    """Sweep rows of the store (mixed into :class:`~core.store.RunStore`)."""


    def begin_sweep(self, name: str, cells: Sequence[CellRow], *, metric: str = "best_test_acc",
                    axes: Sequence[str] = (), source: str = "", spec: str = "", description: str = "",
                    engine: str | None = None) -> None:
        """Create or reopen sweep ``name`` for this process with exactly these cells.

        Cells already present (same key) keep their status and run; new cells start ``created``;
        cells no longer in the sweep are dropped from it (their runs stay in the store).

        Raises:
            RuntimeError: another live process is driving this sweep.
        """
        now = time.time()
        pid = os.getpid()
        host = socket.gethostname()
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            row = c.execute("SELECT status, pid, pid_start, host FROM sweeps WHERE sweep_id=?", (name,)).fetchone()
            if row is not None and row[0] in (SweepStatus.RUNNING.value, SweepStatus.STOPPING.value) and (
                    row[3] != host or _pid_alive(row[1], row[2])) and row[1] != pid:
                raise RuntimeError(f"sweep {name!r} is already running (pid {row[1]} on {row[3]})")
            if row is None:
                c.execute("INSERT INTO sweeps (sweep_id, created, status, started, heartbeat, pid, pid_start, host, "
                          "engine, metric, axes, source, spec, description) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                          (name, now, SweepStatus.RUNNING.value, now, now, pid, process_start_time(pid), host,
                           engine or "", metric, json.dumps(list(axes)), source, spec, description))
            else:  # started/ended/engine are set when training begins (a rerun may train nothing)
                c.execute("UPDATE sweeps SET status=?, heartbeat=?, pid=?, pid_start=?, host=?, metric=?, axes=?, "
                          "source=?, spec=?, description=?, stop_requested=NULL WHERE sweep_id=?",
                          (SweepStatus.RUNNING.value, now, pid, process_start_time(pid), host, metric,
                           json.dumps(list(axes)), source, spec, description, name))
                if engine is not None:
                    c.execute("UPDATE sweeps SET engine=? WHERE sweep_id=?", (engine, name))
            keys = [k for k, _, _ in cells]
            old = {k for (k,) in c.execute("SELECT key FROM sweep_cells WHERE sweep_id=?", (name,))}
            gone = old - set(keys)
            c.executemany("DELETE FROM sweep_cells WHERE sweep_id=? AND key=?", [(name, k) for k in gone])
            for idx, (key, coords, config) in enumerate(cells):
                if key in old:
                    c.execute("UPDATE sweep_cells SET idx=?, coords=? WHERE sweep_id=? AND key=?",
                              (idx, json.dumps(coords, default=str), name, key))
                else:
                    c.execute("INSERT INTO sweep_cells (sweep_id, idx, key, coords, config, status, updated) "
                              "VALUES (?,?,?,?,?,?,?)", (name, idx, key, json.dumps(coords, default=str),
                                                         json.dumps(config, default=str), RunStatus.CREATED.value,
                                                         now))
            c.execute("COMMIT")
        except BaseException:
            rollback(c)
            raise

    def update_sweep(self, name: str, **fields: Any) -> None:
        """Update columns of a sweep row (``status``, ``ended``, ``heartbeat`` ...)."""
        bad = set(fields) - _SWEEP_UPDATABLE
        if bad:
            raise ValueError(f"cannot update sweep columns {sorted(bad)}")
        self._tx([(f"UPDATE sweeps SET {', '.join(f'{k}=?' for k in fields)} WHERE sweep_id=?",
                   [*fields.values(), name])])

    def update_cell(self, name: str, key: str, **fields: Any) -> None:
        """Update a cell (``status``, ``run_id``, ``attempts``, ``error``)."""
        bad = set(fields) - _CELL_UPDATABLE
        if bad:
            raise ValueError(f"cannot update sweep cell columns {sorted(bad)}")
        fields["updated"] = time.time()
        self._tx([(f"UPDATE sweep_cells SET {', '.join(f'{k}=?' for k in fields)} WHERE sweep_id=? AND key=?",
                   [*fields.values(), name, key])])

    def sweep_stop_requested(self, name: str) -> bool:
        """True once a stop of sweep ``name`` was asked (by the page, ``core.sweep stop`` or Ctrl-C)."""
        row = self.conn.execute("SELECT stop_requested FROM sweeps WHERE sweep_id=?", (name,)).fetchone()
        return bool(row and row[0])

    def request_sweep_stop(self, name: str) -> None:
        """Ask the process driving sweep ``name`` to stop it (its running cells end ``stopped``)."""
        self._tx([("UPDATE sweeps SET stop_requested=?, status=CASE WHEN status='running' THEN 'stopping' "
                   "ELSE status END WHERE sweep_id=?", (time.time(), name))])

    def list_sweeps(self) -> pd.DataFrame:
        """One row per sweep, newest first, with cell counts per status (``n_cells``, ``n_done`` ...)."""
        df = self._df("SELECT sweep_id, status, created, started, ended, heartbeat, host, engine, metric, axes, "
                      "source, description FROM sweeps ORDER BY created DESC")
        counts = self._df("SELECT sweep_id, status, count(*) AS n FROM sweep_cells GROUP BY sweep_id, status")
        wide = counts.pivot_table(index="sweep_id", columns="status", values="n", aggfunc="sum", fill_value=0)
        for st in RunStatus:
            col = f"n_{st.value}"
            df[col] = [int(wide.loc[s, st.value]) if s in wide.index and st.value in wide.columns else 0
                       for s in df["sweep_id"]]
        df["n_cells"] = sum(df[f"n_{st.value}"] for st in RunStatus) if len(df) else pd.Series(dtype=int)
        df["axes"] = [json.loads(a) for a in df["axes"]]
        return df

    def get_sweep(self, name: str) -> dict[str, Any]:
        """The sweep row as a dict (``axes`` parsed).

        Raises:
            KeyError: no sweep of that name.
        """
        cur = self.conn.execute("SELECT * FROM sweeps WHERE sweep_id=?", (name,))
        row = cur.fetchone()
        if row is None:
            raise KeyError(name)
        d = dict(zip([c[0] for c in cur.description], row))
        d["axes"] = json.loads(d["axes"])
        return d

    def sweep_cells(self, name: str) -> pd.DataFrame:
        """Cells of a sweep in grid order with their run's progress and results.

        Columns: ``idx, key, coords`` (dict), ``config`` (dict), ``status``, ``run_id``, ``attempts``,
        ``error``, and from the run: ``step``, ``total_steps``, ``epoch``, ``final_test_acc``,
        ``best_test_acc``, ``started``, ``ended``.
        """
        df = self._df("SELECT c.idx, c.key, c.coords, c.config, c.status, c.run_id, c.attempts, c.error, c.updated, "
                      "r.step, r.total_steps, r.epoch, r.final_test_acc, r.best_test_acc, r.started, r.ended "
                      "FROM sweep_cells c LEFT JOIN runs r ON r.run_id = c.run_id WHERE c.sweep_id=? ORDER BY c.idx",
                      (name,))
        df["coords"] = [json.loads(x) for x in df["coords"]]
        df["config"] = [json.loads(x) for x in df["config"]]
        return df

    def sweep_of_run(self, run_id: str) -> tuple[str, dict[str, Any]] | None:
        """(sweep name, cell coordinates) of a run that belongs to a sweep, else None."""
        row = self.conn.execute("SELECT sweep_id, coords FROM sweep_cells WHERE run_id=?", (run_id,)).fetchone()
        return (row[0], json.loads(row[1])) if row else None
