"""Integrity of a run store file: SQLite's ``PRAGMA quick_check`` when a store is opened.

Owns :class:`StoreCorruptError` and :func:`check_integrity`. A store whose pages are damaged (a
disk error, a copy cut short, bytes written over the file) is refused with a one-line reason
instead of failing later, half-way through a page or a sweep, with ``database disk image is
malformed``. ``quick_check`` reads every page of the b-trees (O(file size): ~35 ms for a 50-run,
52 MB store with a warm page cache, ~0.5 s cold), so a process checks a file once as long as it is
unchanged (keyed by device, inode, size and modification time; in WAL mode the main file changes
only at checkpoints, so a store being written is checked again now and then, not on every open). It
cannot see damage inside a row's payload (SQLite keeps no checksums); such bytes read back as they are.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from .errors import StoreError

__all__ = ["StoreCorruptError", "check_integrity", "is_corruption", "corrupt_error", "forget_checks"]

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
