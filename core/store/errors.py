"""The store's errors (every failure of a store file the user must act on is a :class:`StoreError`)."""

from __future__ import annotations

__all__ = ["StoreError", "StoreWriteError", "StoreSchemaError"]


class StoreError(RuntimeError):
    """The store file cannot be used (not a database, not a run store, newer schema, corrupt, unknown run)."""


class StoreWriteError(StoreError):
    """The store cannot be written (a read-only folder, file or file system, a path through a file, a full
    disk): ``cannot write the run store <path>: <why>``. Raised before anything is written to it."""


class StoreSchemaError(StoreError):
    """The store's tables are not those of its schema version (a column or table missing, a column this code
    cannot fill): ``run store <path> does not match schema version N: <what>``."""
