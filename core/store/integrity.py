"""Integrity of a run store file: SQLite's ``PRAGMA quick_check`` and the tables' columns when a store is opened.

Owns :class:`StoreCorruptError` and :func:`check_integrity`. A store whose pages are damaged (a
disk error, a copy cut short, bytes written over the file) is refused with a one-line reason
instead of failing later, half-way through a page or a sweep, with ``database disk image is
malformed``. ``quick_check`` reads every page of the b-trees (O(file size): ~35 ms for a 50-run,
52 MB store with a warm page cache, ~0.5 s cold), so a process checks a file once as long as it is
unchanged (keyed by device, inode, size and modification time; in WAL mode the main file changes
only at checkpoints, so a store being written is checked again now and then, not on every open). It
cannot see damage inside a row's payload (SQLite keeps no checksums); such bytes read back as they are.

:func:`check_schema` compares the store's tables with the schema's (``PRAGMA table_info``, every open:
a dozen tiny reads): a store whose table was rebuilt without a column (by hand, or by another
program) is refused with one line naming the table and the column, instead of every write of a run
failing later with ``no such column``.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
from pathlib import Path

from .errors import StoreError, StoreSchemaError

__all__ = ["StoreCorruptError", "check_integrity", "is_corruption", "corrupt_error", "forget_checks",
           "schema_columns", "schema_problems", "check_schema"]

#: (device, inode, size, mtime) of the store files this process has found sound
_CHECKED: set[tuple[int, int, int, int]] = set()
_CHECKED_LOCK = threading.Lock()
#: SQLite's primary result code of a damaged file (extended codes keep it in their low byte)
_SQLITE_CORRUPT = 11


class StoreCorruptError(StoreError):
    """The store file is damaged: SQLite's ``quick_check`` (or a read) found broken pages."""


def is_corruption(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` is SQLite's ``SQLITE_CORRUPT`` (``database disk image is malformed``)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF == _SQLITE_CORRUPT
    return "malformed" in str(exc)


def corrupt_error(path: Path, reason: str, more: int = 0) -> StoreCorruptError:
    """The one-line error of a damaged store: ``run store X is corrupt: <reason> ...``."""
    reason = " ".join(reason.replace("*** in database main ***", "").split())
    extra = f" (and {more} more problem{'s' if more != 1 else ''})" if more else ""
    return StoreCorruptError(f"run store {path} is corrupt: {reason}{extra}; move it aside (a new store is "
                             f"made in its place) or restore a copy")


def _key(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def check_integrity(conn: sqlite3.Connection, path: Path) -> None:
    """Run ``PRAGMA quick_check`` on ``conn`` (the store at ``path``) unless this process already
    found that file, unchanged since, sound.

    Raises:
        StoreCorruptError: quick_check reported problems, or reading the file failed as corrupt.
    """
    key = _key(path)
    with _CHECKED_LOCK:
        if key is not None and key in _CHECKED:
            return
    try:
        rows = [str(r[0]) for r in conn.execute("PRAGMA quick_check(20)").fetchall()]
    except sqlite3.DatabaseError as exc:
        if is_corruption(exc):
            raise corrupt_error(path, str(exc)) from None
        raise
    if rows != ["ok"]:
        raise corrupt_error(path, rows[0] if rows else "quick_check returned nothing", max(0, len(rows) - 1))
    if key is not None:
        with _CHECKED_LOCK:
            _CHECKED.add(key)


def forget_checks() -> None:
    """Forget which files were found sound (the next open of each checks it again)."""
    with _CHECKED_LOCK:
        _CHECKED.clear()


# ------------------------------------------------------------------ the tables


@functools.lru_cache(maxsize=1)
def schema_columns() -> dict[str, tuple[str, ...]]:
    """Table -> its columns, as :data:`~core.store.schema.SCHEMA` makes them (read from an in-memory copy)."""
    from .schema import SCHEMA

    c = sqlite3.connect(":memory:")
    try:
        c.executescript(SCHEMA)
        tables = [r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table' "
                                          "AND name NOT LIKE 'sqlite_%' ORDER BY rowid")]
        return {t: tuple(str(r[1]) for r in c.execute(f"PRAGMA table_info({t})")) for t in tables}
    finally:
        c.close()


def _plural(n: int, word: str) -> str:
    return word if n == 1 else word + "s"


def schema_problems(conn: sqlite3.Connection, *, tables_may_be_missing: bool = False) -> list[str]:
    """How the tables of the store on ``conn`` differ from the schema's, one phrase each (empty: they match).

    A missing column, a missing table (unless ``tables_may_be_missing``: an open for writing makes it),
    and a column of the store's own that must be set (``NOT NULL`` without a default) and that this code
    never writes, so every insert would fail.
    """
    problems = []
    for table, columns in schema_columns().items():
        have = {str(r[1]): r for r in conn.execute(f"PRAGMA table_info({table})")}
        if not have:
            if not tables_may_be_missing:
                problems.append(f"it has no table {table}")
            continue
        missing = [col for col in columns if col not in have]
        if missing:
            problems.append(f"table {table} lacks {_plural(len(missing), 'column')} {', '.join(missing)}")
        # table_info rows: cid, name, type, notnull, dflt_value, pk
        unfillable = [n for n, r in have.items() if n not in columns and r[3] and r[4] is None and not r[5]]
        if unfillable:
            problems.append(f"table {table} has {_plural(len(unfillable), 'column')} {', '.join(unfillable)} "
                            f"that must be set and that this code does not write")
    return problems


def check_schema(conn: sqlite3.Connection, path: Path, *, tables_may_be_missing: bool = False) -> None:
    """Refuse a store whose tables are not the schema's (:func:`schema_problems`) with one line naming the
    store and the first problem.

    Raises:
        StoreSchemaError: a column or table is missing, or a column cannot be filled.
    """
    from .schema import SCHEMA_VERSION

    problems = schema_problems(conn, tables_may_be_missing=tables_may_be_missing)
    if problems:
        more = len(problems) - 1
        extra = f" (and {more} more {_plural(more, 'problem')})" if more else ""
        raise StoreSchemaError(f"run store {path} does not match schema version {SCHEMA_VERSION}: {problems[0]}"
                               f"{extra}; move it aside (a new store is made in its place) or restore a copy")
