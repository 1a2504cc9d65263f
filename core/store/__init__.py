"""The run store (issue 4): SQLite (WAL) with runs, metrics, histograms, events, layers, checkpoints
and tensor samples; DataFrame readers and CSV/Parquet export. See ``docs/train-api.md``."""

from __future__ import annotations

from .schema import SCHEMA_VERSION, default_store_path, resolve_store_path
from .store import ACTIVE_STATUSES, FINAL_STATUSES, RunStore, RunWriter, StoreError

__all__ = [
    "RunStore",
    "RunWriter",
    "StoreError",
    "default_store_path",
    "resolve_store_path",
    "SCHEMA_VERSION",
    "ACTIVE_STATUSES",
    "FINAL_STATUSES",
]
