"""Transactions of the store: one rule for ending a failed one.

When SQLite itself ends a transaction (the disk is full, the database file went away), a ROLLBACK
fails with ``cannot rollback - no transaction is active`` and would hide the real cause; the
caller's own exception must reach the user instead.
"""

from __future__ import annotations

import sqlite3

__all__ = ["rollback"]


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back ``conn``'s open transaction, if SQLite has not already done so."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
