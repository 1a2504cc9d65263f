"""Can this process write a run store? One reason, in words, for each way it cannot.

Owns :func:`unwritable` (why an existing store file cannot be written: a read-only file system,
folder or file; checked before opening, so such a store opens read-only for the readers) and
:func:`os_reason`/:func:`sqlite_reason` (what an ``OSError`` from making the store's folder, or a
SQLite error from writing the file, means), each the tail of the one-line
:class:`~core.store.StoreWriteError` ``cannot write the run store <path>: <why>``.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from .errors import StoreWriteError

__all__ = ["unwritable", "unwritable_folder", "os_reason", "sqlite_reason", "write_error"]

#: SQLite's primary result codes of a file that cannot be written (PERM, READONLY, IOERR, FULL, CANTOPEN)
_WRITE_CODES = frozenset({3, 8, 10, 13, 14})
#: SQLITE_IOERR_WRITE, _TRUNCATE, _SHMSIZE: growing a file failed other than with ENOSPC (EFBIG past a file
#: size limit, EDQUOT ...)
_IOERR_GROW = frozenset({10 | (3 << 8), 10 | (6 << 8), 10 | (19 << 8)})
#: SQLITE_IOERR_READ, _SHORT_READ: the file cannot be read (not a write failure)
_IOERR_READ = frozenset({10 | (1 << 8), 10 | (2 << 8)})


def write_error(path: Path, why: str) -> StoreWriteError:
    """``cannot write the run store <path>: <why>``."""
    return StoreWriteError(f"cannot write the run store {path}: {why}")


def _read_only_fs(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no such folder, or no statvfs (Windows)
        return False


def unwritable_folder(folder: Path) -> str | None:
    """Why files cannot be made in the existing ``folder`` (``read-only file system``, ``read-only folder``),
    or None."""
    if _read_only_fs(folder):
        return "read-only file system"
    if not os.access(folder, os.W_OK | os.X_OK):
        return "read-only folder"
    return None


def unwritable(path: Path) -> str | None:
    """Why the existing store file ``path`` cannot be written (its file system, its folder, which SQLite
    writes the ``-wal``/``-shm`` files into, or the file itself), or None."""
    why = unwritable_folder(path.parent)
    if why is None and not os.access(path, os.W_OK):
        why = "read-only file"
    return why


def os_reason(exc: OSError, folder: Path) -> str:
    """What ``exc``, raised while making the store's ``folder``, means (a path through a file, no permission ...)."""
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        for p in (folder, *folder.parents):
            if os.path.lexists(p) and not p.is_dir():
                return f"{p} is a file, not a folder"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"no permission to make its folder {folder}"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk full"
    return f"cannot make its folder {folder}: {exc.strerror or exc}"


def sqlite_reason(exc: sqlite3.Error) -> str | None:
    """Why SQLite could not write the store file (``attempt to write a readonly database``, ``database or disk
    is full`` ...), or None when ``exc`` is no such failure."""
    code = getattr(exc, "sqlite_errorcode", None)
    text = str(exc)
    if isinstance(code, int):
        if code & 0xFF not in _WRITE_CODES or code in _IOERR_READ:
            return None
        if code in _IOERR_GROW:
            return f"{text} (a write failed: a full disk, or a file size limit)"
    elif not any(s in text for s in ("readonly", "read-only", "disk is full", "disk I/O", "unable to open")):
        return None
    return text
