"""SQLite schema of the run store (version 2) and the store's location.

Owns the ``CREATE TABLE`` statements, the schema version and :func:`default_store_path`
(argument > ``$LOWBIT_STORE`` > the user data directory).
"""

from __future__ import annotations

import os
from pathlib import Path

from core.userdirs import APP_NAME, user_data_dir

__all__ = ["SCHEMA_VERSION", "SCHEMA", "MIGRATIONS", "APP_NAME", "default_store_path", "resolve_store_path"]

SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS lowbit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    ended REAL,
    heartbeat REAL,
    pid INTEGER,
    pid_start INTEGER,
    host TEXT,
    dataset TEXT,
    model TEXT,
    scheme TEXT,
    epochs INTEGER,
    step INTEGER NOT NULL DEFAULT 0,
    epoch INTEGER NOT NULL DEFAULT 0,
    final_test_acc REAL,
    best_test_acc REAL,
    error TEXT,
    config TEXT NOT NULL,
    versions TEXT NOT NULL DEFAULT '{}',
    total_steps INTEGER
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL, step INTEGER NOT NULL, epoch INTEGER NOT NULL,
    layer TEXT NOT NULL, tensor TEXT NOT NULL, fmt TEXT NOT NULL, role TEXT NOT NULL,
    name TEXT NOT NULL, value REAL
);
CREATE INDEX IF NOT EXISTS metrics_run_name ON metrics (run_id, name, step);
CREATE TABLE IF NOT EXISTS histograms (
    run_id TEXT NOT NULL, step INTEGER NOT NULL, epoch INTEGER NOT NULL,
    layer TEXT NOT NULL, tensor TEXT NOT NULL, kind TEXT NOT NULL,
    lo REAL NOT NULL, hi REAL NOT NULL, bins INTEGER NOT NULL,
    zeros INTEGER NOT NULL, nonfinite INTEGER NOT NULL, counts TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS histograms_run ON histograms (run_id, layer, tensor, step);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL, step INTEGER NOT NULL, time REAL NOT NULL, kind TEXT NOT NULL,
    payload TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS events_run ON events (run_id, step);
CREATE TABLE IF NOT EXISTS layers (
    run_id TEXT NOT NULL, idx INTEGER NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL,
    shape TEXT NOT NULL, params INTEGER NOT NULL, PRIMARY KEY (run_id, idx)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    run_id TEXT NOT NULL, step INTEGER NOT NULL, epoch INTEGER NOT NULL, time REAL NOT NULL,
    path TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS samples (
    run_id TEXT NOT NULL, step INTEGER NOT NULL, layer TEXT NOT NULL, tensor TEXT NOT NULL,
    numel INTEGER NOT NULL, shape TEXT NOT NULL, data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS samples_run ON samples (run_id, layer, tensor, step);
CREATE TABLE IF NOT EXISTS commands (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, time REAL NOT NULL, kind TEXT NOT NULL,
    payload TEXT NOT NULL DEFAULT '{}', acked REAL, applied_step INTEGER, result TEXT
);
CREATE INDEX IF NOT EXISTS commands_run ON commands (run_id, seq);
CREATE TABLE IF NOT EXISTS sweeps (
    sweep_id TEXT PRIMARY KEY, status TEXT NOT NULL, created REAL NOT NULL, started REAL, ended REAL,
    heartbeat REAL, pid INTEGER, pid_start INTEGER, host TEXT, engine TEXT NOT NULL DEFAULT '',
    metric TEXT NOT NULL DEFAULT 'best_test_acc', axes TEXT NOT NULL DEFAULT '[]', source TEXT NOT NULL DEFAULT '',
    spec TEXT NOT NULL DEFAULT '', description TEXT NOT NULL DEFAULT '', stop_requested REAL
);
CREATE TABLE IF NOT EXISTS sweep_cells (
    sweep_id TEXT NOT NULL, idx INTEGER NOT NULL, key TEXT NOT NULL, coords TEXT NOT NULL, config TEXT NOT NULL,
    status TEXT NOT NULL, run_id TEXT, attempts INTEGER NOT NULL DEFAULT 0, error TEXT, updated REAL,
    PRIMARY KEY (sweep_id, key)
);
CREATE INDEX IF NOT EXISTS sweep_cells_run ON sweep_cells (run_id);
"""

#: statements that bring an older store up to :data:`SCHEMA_VERSION` (old version -> statements)
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: ("ALTER TABLE runs ADD COLUMN total_steps INTEGER",),
}


def default_store_path() -> Path:
    """``runs.sqlite`` in the user data directory of ``lowbit-explorer`` (:func:`core.userdirs.user_data_dir`:
    ``$XDG_DATA_HOME`` or ``~/.local/share`` on Linux, ``~/Library/Application Support`` on macOS,
    ``%LOCALAPPDATA%`` on Windows)."""
    return user_data_dir() / "runs.sqlite"


def resolve_store_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The store file: ``path`` if given, else ``$LOWBIT_STORE``, else :func:`default_store_path`."""
    if path is not None:
        return Path(path).expanduser()
    env = os.environ.get("LOWBIT_STORE")
    return Path(env).expanduser() if env else default_store_path()
