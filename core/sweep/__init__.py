"""Sweeps: grids of training runs on a Dask engine, every cell an ordinary run in the run store.

API::

    from core import sweep
    spec = sweep.load("sweeps/formats_8bit.toml")      # parse (SweepError names the key and line)
    cells = sweep.expand(spec)                          # validated cells, before anything runs
    result = sweep.run(spec, workers=2)                 # train the unfinished cells, wait
    sweep.status("formats-8bit")                        # the sweep, its cells, counts per status

CLI: ``python -m core.sweep run FILE.toml [--workers N] [--scheduler ADDRESS] [--store PATH]``,
``python -m core.sweep status NAME``, ``python -m core.sweep list``. File format: :mod:`core.sweep.spec`;
engine: :mod:`core.sweep.engine`; what runs in a worker: :mod:`core.sweep.task`. See ``docs/sweeps.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine import Engine, EngineError, shared_local_engine
    from .metrics import METRICS, metric_values
    from .runner import Progress, SweepResult, run, status
    from .spec import Cell, SweepError, SweepSpec, expand, load, loads, value_label

__all__ = ["load", "loads", "expand", "run", "status", "SweepSpec", "Cell", "SweepError", "SweepResult", "Progress",
           "Engine", "EngineError", "shared_local_engine", "METRICS", "metric_values", "value_label"]

#: name -> submodule; loaded on first access, so ``python -m core.sweep list`` does not import Dask or torch
_LAZY = {
    **dict.fromkeys(("Engine", "EngineError", "shared_local_engine"), "engine"),
    **dict.fromkeys(("METRICS", "metric_values"), "metrics"),
    **dict.fromkeys(("Progress", "SweepResult", "run", "status"), "runner"),
    **dict.fromkeys(("Cell", "SweepError", "SweepSpec", "expand", "load", "loads", "value_label"), "spec"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'core.sweep' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
