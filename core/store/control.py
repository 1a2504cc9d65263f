"""The store as a control channel and as a feed: commands to a run, incremental reads of its rows.

A run may train in another process (a Dask worker) than the page that controls it. The page writes
a command row (:meth:`ControlMixin.send_command`); the run reads its new commands between steps,
acknowledges each one at once (``acked``, ``result``) and applies it before its next step. The page
reads what the run wrote since its last look with :meth:`ControlMixin.changes` (rows after a
``rowid`` cursor), so a poll costs the same at step 100 and at step 100,000.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pandas as pd

from .base import StoreBase
from .tx import rollback
from .status import CommandKind

__all__ = ["ControlMixin", "Cursor"]

#: rowid cursors of one reader, per table
Cursor = dict[str, int]

_TABLES = ("metrics", "histograms", "events")


class ControlMixin(StoreBase):
    """Commands and incremental reads (mixed into :class:`~core.store.RunStore`)."""


    # ------------------------------------------------------------------ commands
    def send_command(self, run_id: str, kind: CommandKind | str, payload: dict[str, Any] | None = None) -> int:
        """Queue a command for ``run_id`` (``pause``, ``resume``, ``stop``, ``update`` with ``{"changes": ...}``);
        returns its sequence number (see :meth:`command`)."""
        kind = CommandKind(kind)
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            cur = c.execute("INSERT INTO commands (run_id, time, kind, payload) VALUES (?,?,?,?)",
                            (run_id, time.time(), kind.value, json.dumps(payload or {}, default=str)))
            c.execute("COMMIT")
        except BaseException:
            rollback(c)
            raise
        return int(cur.lastrowid or 0)

    def new_commands(self, run_id: str, after: int = 0) -> list[dict[str, Any]]:
        """Commands for ``run_id`` with a sequence number above ``after``, oldest first."""
        rows = self.conn.execute("SELECT seq, kind, payload FROM commands WHERE run_id=? AND seq>? ORDER BY seq",
                                 (run_id, after)).fetchall()
        return [{"seq": int(q), "kind": k, "payload": json.loads(p)} for q, k, p in rows]

    def ack_command(self, seq: int, result: str, applied_step: int | None = None) -> None:
        """Record that a run has received command ``seq`` and what it made of it."""
        self._tx([("UPDATE commands SET acked=?, result=?, applied_step=? WHERE seq=?",
                   (time.time(), result, applied_step, seq))])

    def command(self, seq: int) -> dict[str, Any]:
        """A command row: ``seq, run_id, time, kind, payload, acked`` (None until received), ``result``,
        ``applied_step``."""
        cur = self.conn.execute("SELECT * FROM commands WHERE seq=?", (seq,))
        row = cur.fetchone()
        if row is None:
            return {}
        d = dict(zip([c[0] for c in cur.description], row))
        d["payload"] = json.loads(d["payload"])
        return d

    def _max_rowid(self, table: str) -> int:
        return int(self.conn.execute(f"SELECT coalesce(max(rowid), 0) FROM {table}").fetchone()[0])

    # ------------------------------------------------------------------ incremental reads
    def changes(self, run_id: str, cursor: Cursor | None = None) -> tuple[dict[str, pd.DataFrame], Cursor]:
        """Rows of ``metrics``, ``histograms`` and ``events`` that ``run_id`` wrote after ``cursor``.

        Returns:
            the new rows per table (``histograms.counts`` as lists, ``events.payload`` as dicts) and
            the cursor to pass next time (start with None: everything).
        """
        cursor = dict(cursor or {})
        out: dict[str, pd.DataFrame] = {}
        for table in _TABLES:
            if table not in cursor:  # first read: start at the run's first row (found by the index)
                first = self.conn.execute(f"SELECT min(rowid) FROM {table} WHERE run_id=?", (run_id,)).fetchone()[0]
                cursor[table] = int(first) - 1 if first is not None else self._max_rowid(table)
            after = int(cursor[table])
            # "+run_id": scan the rowid range after the cursor, not every row of the run
            df = self._df(f"SELECT rowid AS _rowid, * FROM {table} WHERE +run_id=? AND rowid>? "
                          "ORDER BY rowid",
                          (run_id, after))
            if len(df):
                cursor[table] = int(df["_rowid"].iloc[-1])
            df = df.drop(columns="_rowid")
            if table == "histograms":
                df["counts"] = [json.loads(c) for c in df["counts"]]
            elif table == "events":
                df["payload"] = [json.loads(p) for p in df["payload"]]
            out[table] = df
        return out, cursor
