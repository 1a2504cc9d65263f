"""The run store: SQLite (WAL) with runs, metrics, histograms, events, layers, checkpoints, tensor
samples, commands to runs and sweeps; DataFrame readers and CSV/Parquet export. See ``docs/train-api.md``."""

from __future__ import annotations

from .schema import SCHEMA_VERSION, default_store_path, resolve_store_path
from .status import (ACTIVE_STATUSES, FINAL_STATUSES, PENDING_STATUSES, RERUN_STATUSES, CommandKind, RunStatus,
                     SweepStatus, is_active, is_final)
from .errors import StoreError, StoreSchemaError, StoreWriteError
from .integrity import StoreCorruptError
from .store import RunStore, RunWriter

__all__ = [
    "RunStore",
    "RunWriter",
    "StoreError",
    "StoreCorruptError",
    "StoreSchemaError",
    "StoreWriteError",
    "default_store_path",
    "resolve_store_path",
    "SCHEMA_VERSION",
    "ACTIVE_STATUSES",
    "FINAL_STATUSES",
    "PENDING_STATUSES",
    "RERUN_STATUSES",
    "RunStatus",
    "SweepStatus",
    "CommandKind",
    "is_active",
    "is_final",
]
