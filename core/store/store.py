"""The run store: SQLite in WAL mode, written while training, read as pandas DataFrames.

Owns :class:`RunStore` (open/create, readers, export, interrupted-run detection) and
:class:`RunWriter` (buffered writes of one run from its worker thread, committed in one transaction
per flush, so a killed process leaves every committed row readable and nothing half-written).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from core.userdirs import checkpoints_root

from .schema import MIGRATIONS, SCHEMA, SCHEMA_VERSION, resolve_store_path
from .control import ControlMixin
from .access import os_reason, sqlite_reason, unwritable, unwritable_folder, write_error
from .errors import StoreError, StoreSchemaError, StoreWriteError
from .integrity import StoreCorruptError, check_integrity, check_schema, corrupt_error, is_corruption
from .process import pid_alive as _pid_alive
from .process import process_start_time
from .tx import rollback
from .status import ACTIVE_STATUSES, FINAL_STATUSES, RunStatus
from .sweeps import SweepsMixin

__all__ = ["RunStore", "RunWriter", "StoreError", "StoreCorruptError", "StoreSchemaError", "StoreWriteError",
           "ACTIVE_STATUSES", "FINAL_STATUSES", "process_start_time"]

log = logging.getLogger(__name__)

_RUN_COLUMNS = ("run_id", "name", "status", "created", "started", "ended", "heartbeat", "pid", "pid_start",
                "host", "dataset", "model", "scheme", "epochs", "step", "epoch", "total_steps", "final_test_acc",
                "best_test_acc", "error")

_UPDATABLE = set(_RUN_COLUMNS) - {"run_id", "created", "config"} | {"versions"}


def _connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        uri = f"{path.resolve().as_uri()}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError:
            conn.close()
            # a WAL store on read-only media has no -shm file to open: nobody can write it, read it as is
            conn = sqlite3.connect(uri + "&immutable=1", uri=True, timeout=30.0, isolation_level=None,
                                   check_same_thread=False)
    else:
        conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class RunStore(ControlMixin, SweepsMixin):
    """A run store file.

    Args:
        path: the SQLite file; None = ``$LOWBIT_STORE`` or the user data directory.
        stale_after: seconds without a heartbeat after which a run of another host counts as dead.
        readonly: open for reading only (nothing is created, upgraded or marked); chosen by itself
            when an existing store cannot be written (a read-only mount, another user's folder or file;
            :attr:`readonly_reason` says which). A writer calls :meth:`require_writable` first.

    Raises:
        StoreCorruptError: the file is damaged (SQLite's ``quick_check`` fails; checked once per process
            and file: :mod:`core.store.integrity`).
        StoreSchemaError: its tables are not the schema's (a column missing:
            :func:`~core.store.integrity.check_schema`).
        StoreWriteError: there is no store there and none can be made (a read-only folder, a file where a
            folder of the path should be ...); nothing is written.
        StoreError: the file is not a SQLite database, or not a Lowbit run store; with ``readonly``,
            no store there or one that needs an upgrade.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, stale_after: float = 3600.0,
                 readonly: bool = False) -> None:
        self.path = resolve_store_path(path)
        self.stale_after = stale_after
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        if self.path.exists() and self.path.is_dir():
            raise StoreError(f"run store {self.path} is a directory, not a file")
        #: why the store is read-only (``read-only folder`` ...), None while it can be written
        self.readonly_reason: str | None = "opened read-only" if readonly else None
        if not readonly and self.path.is_file():
            why = unwritable(self.path)
            if why is not None:
                log.info("run store %s: %s, opening it read-only", self.path, why)
                readonly, self.readonly_reason = True, why
        self.readonly = readonly
        if readonly:
            self._check_readable()
            return
        self._make_folder()
        self._init_schema()
        self.mark_interrupted()

    def require_writable(self) -> None:
        """Refuse to go on with a store that was opened read-only (before a run or a sweep writes anything).

        Raises:
            StoreWriteError: ``cannot write the run store <path>: <why>`` (``read-only folder`` ...).
        """
        if self.readonly:
            raise write_error(self.path, self.readonly_reason or "opened read-only")

    def _make_folder(self) -> None:
        """Make the store's folder; refuse a store that cannot be created there before anything is written."""
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(self.path, os_reason(exc, folder)) from None
        if not os.path.lexists(self.path):
            why = unwritable_folder(folder)
            if why is not None:
                raise write_error(self.path, why)

    def _check_readable(self) -> None:
        if not self.path.is_file():
            raise StoreError(f"no run store at {self.path}")
        try:
            c = _connect(self.path, readonly=True)
            try:
                tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if "lowbit_meta" not in tables:
                    raise StoreError(f"{self.path} is not a Lowbit run store")
                check_integrity(c, self.path)
                if _stored_version(c) in (None, SCHEMA_VERSION):  # an older one is refused below, by its version
                    check_schema(c, self.path)
                row = c.execute("SELECT value FROM lowbit_meta WHERE key='schema_version'").fetchone()
            finally:
                c.close()
        except sqlite3.DatabaseError as exc:
            if is_corruption(exc):
                raise corrupt_error(self.path, str(exc)) from None
            raise StoreError(f"{self.path} is not a run store: {exc}") from None
        version = int(row[0]) if row else 0
        if version != SCHEMA_VERSION:
            raise StoreError(f"{self.path} has schema version {version}; this code reads {SCHEMA_VERSION} "
                             f"(open it once where it can be written to upgrade it)")

    # ------------------------------------------------------------------ connections
    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection."""
        c = getattr(self._local, "conn", None)
        if c is None:
            c = _connect(self.path, readonly=self.readonly)
            self._local.conn = c
            with self._lock:
                self._conns.append(c)
        return c

    def close(self) -> None:
        """Close every connection this object opened."""
        with self._lock:
            for c in self._conns:
                try:
                    c.close()
                except sqlite3.Error:
                    pass
            self._conns.clear()
        self._local = threading.local()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _init_schema(self) -> None:
        try:
            c = _connect(self.path)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open run store {self.path}: {exc}") from exc
        try:
            tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if tables and "lowbit_meta" not in tables:
                raise StoreError(f"{self.path} is a SQLite database but not a Lowbit run store "
                                 f"(tables: {', '.join(sorted(tables))})")
            if tables:
                check_integrity(c, self.path)
                if _stored_version(c) in (None, SCHEMA_VERSION):  # an older store is checked once upgraded
                    check_schema(c, self.path, tables_may_be_missing=True)  # before anything is written
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=NORMAL")
            c.execute("BEGIN IMMEDIATE")
            try:
                for stmt in SCHEMA.split(";"):
                    if stmt.strip():
                        c.execute(stmt)
                row = c.execute("SELECT value FROM lowbit_meta WHERE key='schema_version'").fetchone()
                if row is None:
                    c.execute("INSERT INTO lowbit_meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                elif int(row[0]) > SCHEMA_VERSION:
                    raise StoreError(f"{self.path} has schema version {row[0]}; this code reads <= {SCHEMA_VERSION}")
                elif int(row[0]) < SCHEMA_VERSION:
                    for version in range(int(row[0]), SCHEMA_VERSION):
                        for stmt in MIGRATIONS.get(version, ()):
                            c.execute(stmt)
                    c.execute("UPDATE lowbit_meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
                c.execute("INSERT OR IGNORE INTO lowbit_meta VALUES ('store_id', ?)", (uuid.uuid4().hex,))
                check_schema(c, self.path)
                c.execute("COMMIT")
            except BaseException:
                rollback(c)
                raise
        except sqlite3.DatabaseError as exc:
            if is_corruption(exc):
                raise corrupt_error(self.path, str(exc)) from None
            why = sqlite_reason(exc)
            if why is not None:
                raise write_error(self.path, why) from None
            raise StoreError(f"{self.path} is not a run store: {exc}") from exc
        finally:
            c.close()

    @property
    def store_id(self) -> str:
        """A random id made when the store file was created (tells two stores at one path apart)."""
        row = self.conn.execute("SELECT value FROM lowbit_meta WHERE key='store_id'").fetchone()
        return str(row[0]) if row else ""

    def mark_interrupted(self) -> list[str]:
        """Mark ``running``/``paused`` runs whose process is gone as ``interrupted``; return their ids."""
        host = socket.gethostname()
        now = time.time()
        dead = []
        rows = self.conn.execute(
            "SELECT run_id, pid, pid_start, host, heartbeat FROM runs WHERE status IN ('running','paused')"
        ).fetchall()
        for run_id, pid, pid_start, rhost, hb in rows:
            if rhost == host:
                alive = _pid_alive(pid, pid_start)
            else:
                alive = hb is not None and now - hb < self.stale_after
            if not alive:
                dead.append(run_id)
        for run_id in dead:
            self._tx([("UPDATE runs SET status='interrupted', ended=COALESCE(ended, heartbeat) "
                       "WHERE run_id=? AND status IN ('running','paused')", (run_id,)),
                      ("INSERT INTO events VALUES (?, (SELECT step FROM runs WHERE run_id=?), ?, 'interrupted', ?)",
                       (run_id, run_id, now, json.dumps({"reason": "process gone"}))),
                      ("UPDATE sweep_cells SET status='interrupted', updated=? WHERE run_id=? "
                       "AND status IN ('running','paused')", (now, run_id))])
            log.info("run %s marked interrupted", run_id)
        rows = self.conn.execute("SELECT sweep_id, pid, pid_start, host, heartbeat FROM sweeps "
                                 "WHERE status IN ('running','stopping')").fetchall()
        for sweep_id, pid, pid_start, rhost, hb in rows:
            alive = (_pid_alive(pid, pid_start) if rhost == host
                     else hb is not None and now - hb < self.stale_after)
            if not alive:
                self._tx([("UPDATE sweeps SET status='interrupted', ended=COALESCE(ended, heartbeat) "
                           "WHERE sweep_id=? AND status IN ('running','stopping')", (sweep_id,))])
                log.info("sweep %s marked interrupted", sweep_id)
        return dead

    def _tx(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in statements:
                c.execute(sql, params)
            c.execute("COMMIT")
        except BaseException:
            rollback(c)
            raise

    # ------------------------------------------------------------------ writing
    def create_run(self, config: dict[str, Any], *, name: str = "", dataset: str = "", model: str = "",
                   scheme: str = "", epochs: int = 0, versions: dict[str, Any] | None = None,
                   status: str = RunStatus.RUNNING.value) -> str:
        """Insert a run row for this process and return its new id (12 hex chars).

        ``status="created"`` makes a row for a run that another process will train
        (:meth:`adopt_run`): a Live Training run waiting for its worker, a queued sweep cell.
        """
        run_id = uuid.uuid4().hex[:12]
        now = time.time()
        pid = os.getpid()
        self._tx([(
            "INSERT INTO runs (run_id, name, status, created, started, heartbeat, pid, pid_start, host, dataset, "
            "model, scheme, epochs, config, versions) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (run_id, name, status, now, now, now, pid, process_start_time(pid), socket.gethostname(), dataset,
             model, scheme, epochs, json.dumps(config, default=str), json.dumps(versions or {}, default=str)),
        )])
        return run_id

    def adopt_run(self, run_id: str, versions: dict[str, Any] | None = None) -> None:
        """Claim a ``created`` run row for this process (pid, host, start time) and mark it running.

        Raises:
            StoreError: no such run, or it is not waiting to be trained.
        """
        now = time.time()
        pid = os.getpid()
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            row = c.execute("SELECT status FROM runs WHERE run_id=?", (run_id,)).fetchone()
            if row is None:
                raise StoreError(f"no run {run_id!r} in {self.path}")
            if row[0] != RunStatus.CREATED.value:
                raise StoreError(f"run {run_id} is {row[0]}, not waiting to be trained")
            c.execute("UPDATE runs SET status=?, started=?, heartbeat=?, pid=?, pid_start=?, host=?, versions=? "
                      "WHERE run_id=?", (RunStatus.RUNNING.value, now, now, pid, process_start_time(pid),
                                         socket.gethostname(), json.dumps(versions or {}, default=str), run_id))
            c.execute("COMMIT")
        except BaseException:
            rollback(c)
            raise

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Update columns of a run row (``status``, ``ended``, ``final_test_acc`` ...)."""
        self._tx([_update_sql(run_id, fields)])

    def writer(self, run_id: str) -> "RunWriter":
        """A buffered writer for ``run_id`` (use it from one thread)."""
        return RunWriter(self.path, run_id)

    def delete_run(self, run_id: str) -> None:
        """Delete a run and all its rows (checkpoint files are left on disk)."""
        self._tx([(f"DELETE FROM {t} WHERE run_id=?", (run_id,))
                  for t in ("metrics", "histograms", "events", "layers", "checkpoints", "samples", "commands",
                            "runs")])

    # ------------------------------------------------------------------ reading
    def _df(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        return pd.read_sql_query(sql, self.conn, params=list(params))

    def list_runs(self) -> pd.DataFrame:
        """One row per run, newest first (columns of ``runs`` without ``config``/``versions``)."""
        return self._df(f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs ORDER BY created DESC")

    def get_run(self, run_id: str) -> dict[str, Any]:
        """The run row as a dict with ``config`` and ``versions`` parsed.

        Raises:
            StoreError: no such run.
        """
        cur = self.conn.execute("SELECT * FROM runs WHERE run_id=?", (run_id,))
        row = cur.fetchone()
        if row is None:
            raise StoreError(f"no run {run_id!r} in {self.path}")
        d = dict(zip([c[0] for c in cur.description], row))
        d["config"] = json.loads(d["config"])
        d["versions"] = json.loads(d["versions"])
        return d

    def metrics(self, run_id: str | Iterable[str], name: str | Sequence[str] | None = None,
                layer: str | None = None, tensor: str | None = None, role: str | None = None,
                since_step: int | None = None) -> pd.DataFrame:
        """Long-format metric rows: ``run_id, step, epoch, layer, tensor, fmt, role, name, value``."""
        ids = [run_id] if isinstance(run_id, str) else list(run_id)
        where = [f"run_id IN ({','.join('?' * len(ids))})"]
        params: list[Any] = list(ids)
        if name is not None:
            names = [name] if isinstance(name, str) else list(name)
            where.append(f"name IN ({','.join('?' * len(names))})")
            params += names
        for col, v in (("layer", layer), ("tensor", tensor), ("role", role)):
            if v is not None:
                where.append(f"{col}=?")
                params.append(v)
        if since_step is not None:
            where.append("step>=?")
            params.append(since_step)
        return self._df(f"SELECT run_id, step, epoch, layer, tensor, fmt, role, name, value FROM metrics "
                        f"WHERE {' AND '.join(where)} ORDER BY rowid", params)

    def scalars(self, run_id: str) -> pd.DataFrame:
        """Per-step scalars, wide: ``step, epoch, loss, train_acc, lr, step_time`` (+ ``telemetry_time``)."""
        df = self.metrics(run_id, name=["loss", "train_acc", "lr", "step_time", "telemetry_time"], role="")
        return _wide(df, ["step", "epoch"])

    def epochs(self, run_id: str) -> pd.DataFrame:
        """Per-epoch values, wide: ``epoch, step, test_acc, test_loss, epoch_train_loss, ...``."""
        df = self.metrics(run_id, name=["test_acc", "test_loss", "epoch_train_loss", "epoch_train_acc",
                                        "epoch_time"], role="")
        return _wide(df, ["epoch", "step"])

    def histograms(self, run_id: str, layer: str | None = None, tensor: str | None = None,
                   kind: str | None = "x", since_step: int | None = None) -> pd.DataFrame:
        """Histogram rows with ``counts`` as int64 arrays."""
        where, params = ["run_id=?"], [run_id]  # type: tuple[list[str], list[Any]]
        for col, v in (("layer", layer), ("tensor", tensor), ("kind", kind)):
            if v is not None:
                where.append(f"{col}=?")
                params.append(v)
        if since_step is not None:
            where.append("step>=?")
            params.append(since_step)
        df = self._df(f"SELECT * FROM histograms WHERE {' AND '.join(where)} ORDER BY rowid", params)
        df["counts"] = [np.asarray(json.loads(c), dtype=np.int64) for c in df["counts"]]
        return df

    def events(self, run_id: str) -> pd.DataFrame:
        """Events with ``payload`` parsed into dicts."""
        df = self._df("SELECT * FROM events WHERE run_id=? ORDER BY rowid", (run_id,))
        df["payload"] = [json.loads(p) for p in df["payload"]]
        return df

    def layers(self, run_id: str) -> pd.DataFrame:
        """The run's quantizable layers in model order."""
        df = self._df("SELECT * FROM layers WHERE run_id=? ORDER BY idx", (run_id,))
        df["shape"] = [tuple(json.loads(s)) for s in df["shape"]]
        return df

    def checkpoints(self, run_id: str) -> pd.DataFrame:
        """Checkpoint files of a run."""
        return self._df("SELECT * FROM checkpoints WHERE run_id=? ORDER BY step", (run_id,))

    def samples(self, run_id: str, layer: str | None = None, tensor: str | None = None) -> pd.DataFrame:
        """Stored tensor samples (without the data): ``step, layer, tensor, numel, shape``."""
        where, params = ["run_id=?"], [run_id]
        for col, v in (("layer", layer), ("tensor", tensor)):
            if v is not None:
                where.append(f"{col}=?")
                params.append(v)
        return self._df(f"SELECT run_id, step, layer, tensor, numel, shape FROM samples "
                        f"WHERE {' AND '.join(where)} ORDER BY step", params)

    def load_sample(self, run_id: str, layer: str, tensor: str, step: int | None = None) -> np.ndarray:
        """A stored float32 sample of one tensor (the latest at or before ``step``; latest if None).

        Raises:
            StoreError: no sample stored for that layer/tensor.
        """
        sql = "SELECT data FROM samples WHERE run_id=? AND layer=? AND tensor=?"
        params: list[Any] = [run_id, layer, tensor]
        if step is not None:
            sql += " AND step<=?"
            params.append(step)
        row = self.conn.execute(sql + " ORDER BY step DESC LIMIT 1", params).fetchone()
        if row is None:
            raise StoreError(f"no sample of {tensor!r} in layer {layer!r} for run {run_id!r}")
        return np.frombuffer(row[0], dtype="<f4").copy()

    def export(self, run_id: str, directory: str | os.PathLike[str], fmt: str = "csv") -> list[Path]:
        """Write the run's tables (``run``, ``metrics``, ``histograms``, ``events``, ``layers``,
        ``checkpoints``) as ``<run_id>_<table>.csv`` or ``.parquet`` files; return their paths."""
        if fmt not in ("csv", "parquet"):
            raise ValueError(f"export format must be 'csv' or 'parquet', got {fmt!r}")
        if fmt == "parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise ValueError("parquet export needs pyarrow: pip install 'lowbit-explorer[parquet]'") from None
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        run = self.get_run(run_id)
        run["config"] = json.dumps(run["config"])
        run["versions"] = json.dumps(run["versions"])
        tables = {
            "run": pd.DataFrame([run]),
            "metrics": self.metrics(run_id),
            "histograms": self.histograms(run_id, kind=None),
            "events": self.events(run_id),
            "layers": self.layers(run_id),
            "checkpoints": self.checkpoints(run_id),
        }
        tables["histograms"]["counts"] = [json.dumps(c.tolist()) for c in tables["histograms"]["counts"]]
        tables["events"]["payload"] = [json.dumps(p) for p in tables["events"]["payload"]]
        tables["layers"]["shape"] = [json.dumps(list(s)) for s in tables["layers"]["shape"]]
        paths = []
        for tname, df in tables.items():
            p = out / f"{run_id}_{tname}.{fmt}"
            if fmt == "csv":
                df.to_csv(p, index=False)
            else:
                df.to_parquet(p, index=False)
            paths.append(p)
        return paths

    def checkpoint_dir(self, run_id: str) -> Path:
        """``<checkpoints root>/<store id>/<run_id>``: the root is :func:`core.userdirs.checkpoints_root`
        (``$LOWBIT_CHECKPOINTS``, else ``checkpoints`` in the user data directory), never the store's own
        folder (``LOWBIT_STORE=~/runs.sqlite`` writes nothing else into ``~``); the store's id keeps two
        stores' runs apart. The store records each checkpoint's full path (:meth:`checkpoints`)."""
        return checkpoints_root() / (self.store_id or "no-id") / run_id


def _stored_version(c: sqlite3.Connection) -> int | None:
    """The schema version a store's ``lowbit_meta`` records, or None (no row, no readable value)."""
    try:
        row = c.execute("SELECT value FROM lowbit_meta WHERE key='schema_version'").fetchone()
        return int(row[0]) if row else None
    except (sqlite3.Error, ValueError, TypeError):
        return None


def _wide(df: pd.DataFrame, index: list[str]) -> pd.DataFrame:
    if df.empty:
        return pd.DataFrame(columns=index)
    w = df.pivot_table(index=index, columns="name", values="value", aggfunc="last").reset_index()
    w.columns.name = None
    return w.sort_values(index[0], kind="stable").reset_index(drop=True)


def _update_sql(run_id: str, fields: dict[str, Any]) -> tuple[str, list[Any]]:
    bad = set(fields) - _UPDATABLE
    if bad:
        raise ValueError(f"cannot update run columns {sorted(bad)}")
    vals = [json.dumps(v, default=str) if k == "versions" else v for k, v in fields.items()]
    return f"UPDATE runs SET {', '.join(f'{k}=?' for k in fields)} WHERE run_id=?", vals + [run_id]


class RunWriter:
    """Buffered writes for one run; every :meth:`flush` is one transaction (use from one thread)."""

    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        self.run_id = run_id
        self._conn: sqlite3.Connection | None = None
        self.metrics: list[tuple[Any, ...]] = []
        self.histograms: list[tuple[Any, ...]] = []
        self.events: list[tuple[Any, ...]] = []
        self.other: list[tuple[str, Sequence[Any]]] = []
        self.last_flush = time.monotonic()

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = _connect(self.path)
        return self._conn

    def metric(self, step: int, epoch: int, layer: str, tensor: str, fmt: str, role: str, name: str,
               value: float | None) -> None:
        self.metrics.append((self.run_id, step, epoch, layer, tensor, fmt, role, name, _num(value)))

    def histogram(self, step: int, epoch: int, layer: str, tensor: str, kind: str, lo: float, hi: float,
                  bins: int, zeros: int, nonfinite: int, counts: Sequence[int]) -> None:
        self.histograms.append((self.run_id, step, epoch, layer, tensor, kind, lo, hi, bins, zeros, nonfinite,
                                json.dumps([int(c) for c in counts])))

    def event(self, step: int, kind: str, payload: dict[str, Any] | None = None) -> None:
        self.events.append((self.run_id, step, time.time(), kind, json.dumps(payload or {}, default=str)))

    def layer(self, idx: int, name: str, kind: str, shape: Sequence[int], params: int) -> None:
        self.other.append(("INSERT OR REPLACE INTO layers VALUES (?,?,?,?,?,?)",
                           (self.run_id, idx, name, kind, json.dumps(list(shape)), params)))

    def checkpoint(self, step: int, epoch: int, path: Path) -> None:
        self.other.append(("INSERT INTO checkpoints VALUES (?,?,?,?,?)",
                           (self.run_id, step, epoch, time.time(), str(path))))

    def sample(self, step: int, layer: str, tensor: str, numel: int, shape: Sequence[int], data: np.ndarray) -> None:
        self.other.append(("INSERT INTO samples VALUES (?,?,?,?,?,?,?)",
                           (self.run_id, step, layer, tensor, numel, json.dumps(list(shape)),
                            np.ascontiguousarray(data, dtype="<f4").tobytes())))

    def pending(self) -> int:
        return len(self.metrics) + len(self.histograms) + len(self.events) + len(self.other)

    def flush(self, wait: float | None = None, **run_fields: Any) -> None:
        """Commit everything buffered plus ``run_fields`` (and a heartbeat) in one transaction.

        Args:
            wait: seconds to wait for another process's write lock (default 30); when it is not
                released in time, ``sqlite3.OperationalError`` is raised and every row stays buffered.
        """
        run_fields.setdefault("heartbeat", time.time())
        c = self.conn
        c.execute(f"PRAGMA busy_timeout={int(1000 * (30.0 if wait is None else wait))}")
        c.execute("BEGIN IMMEDIATE")
        try:
            if self.metrics:
                c.executemany("INSERT INTO metrics VALUES (?,?,?,?,?,?,?,?,?)", self.metrics)
            if self.histograms:
                c.executemany("INSERT INTO histograms VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", self.histograms)
            if self.events:
                c.executemany("INSERT INTO events VALUES (?,?,?,?,?)", self.events)
            for sql, params in self.other:
                c.execute(sql, params)
            c.execute(*_update_sql(self.run_id, run_fields))
            c.execute("COMMIT")
        except BaseException:
            rollback(c)
            raise
        self.metrics.clear()
        self.histograms.clear()
        self.events.clear()
        self.other.clear()
        self.last_flush = time.monotonic()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _num(v: float | None) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else (None if np.isnan(f) else f)
