"""Damaged copies of a real run store, for the tests of the store's integrity check (the CLIs' one
error line, the Explorer's alert): a short training run's store with 16 pages of random bytes
written over its middle ("garbled") or cut at 60 % of its size ("truncated"); and sound SQLite files
whose tables are not the schema's: a table rebuilt without one of its columns (:func:`without_column`)."""

from __future__ import annotations

import random
import shutil
import sqlite3
from pathlib import Path

__all__ = ["make_real_store", "corrupt_copy", "without_column", "HOW"]

HOW = ("garbled", "truncated")
_PAGE = 4096


def make_real_store(path: Path) -> Path:
    """A store at ``path`` with one finished 30-step digits run (MLS, telemetry every 5 steps), closed
    (its WAL merged back into the file)."""
    from core.models import ModelConfig
    from core.store import RunStore
    from core.train import Run, RunConfig, TelemetryConfig, get_scheme

    cfg = RunConfig(model=ModelConfig(hidden=(32,)), scheme=get_scheme("mls", first_last=True), epochs=1,
                    max_steps=30, telemetry=TelemetryConfig(every=5), threads=1, checkpoint=False)
    run = Run(cfg, store=str(path)).start()
    assert run.wait(120) == "done"
    run.store.close()
    with RunStore(path) as s:  # a last open and close checkpoints the WAL into the file
        assert len(s.list_runs()) == 1
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0
    assert path.stat().st_size >= 40 * _PAGE, path.stat().st_size
    return path


def corrupt_copy(src: Path, dst: Path, how: str, seed: int = 0) -> Path:
    """Copy ``src`` to ``dst`` (a new file) and damage the copy (``how`` in :data:`HOW`)."""
    shutil.copyfile(src, dst)
    size = dst.stat().st_size
    if how == "garbled":
        with open(dst, "r+b") as f:
            f.seek(size // 2 // _PAGE * _PAGE)
            f.write(random.Random(seed).randbytes(16 * _PAGE))
    elif how == "truncated":
        with open(dst, "r+b") as f:
            f.truncate(size * 6 // 10 // _PAGE * _PAGE)
    else:
        raise ValueError(f"how must be one of {HOW}, got {how!r}")
    return dst


def without_column(src: Path, dst: Path, table: str, column: str) -> Path:
    """Copy the store ``src`` to ``dst`` and rebuild ``table`` there without ``column`` (as an
    ``ALTER TABLE ... DROP COLUMN``, or a hand-made ``CREATE TABLE new AS SELECT ...`` and rename, leaves
    it: the rows and the other columns kept, the schema version unchanged); the copy's WAL is merged
    into the file, so it is a sound, closed SQLite file."""
    if Path(f"{src}-wal").exists() and Path(f"{src}-wal").stat().st_size:
        with sqlite3.connect(src) as c:
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copyfile(src, dst)
    c = sqlite3.connect(dst, isolation_level=None)
    try:
        cols = [r[1] for r in c.execute(f"PRAGMA table_info({table})")]
        assert column in cols, (table, column, cols)
        keep = ", ".join(x for x in cols if x != column)
        c.execute("BEGIN")
        c.execute(f"CREATE TABLE {table}__rebuilt AS SELECT {keep} FROM {table}")
        c.execute(f"DROP TABLE {table}")
        c.execute(f"ALTER TABLE {table}__rebuilt RENAME TO {table}")
        c.execute("COMMIT")
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        c.close()
    return dst
