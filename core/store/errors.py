"""The store's base error (every failure of a store file the user must act on is a :class:`StoreError`)."""

from __future__ import annotations

__all__ = ["StoreError"]


class StoreError(RuntimeError):
    """The store file cannot be used (not a database, not a run store, newer schema, corrupt, unknown run)."""
