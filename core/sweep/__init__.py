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

from .engine import Engine, EngineError, shared_local_engine
from .metrics import METRICS, metric_values
from .runner import Progress, SweepResult, run, status
from .spec import Cell, SweepError, SweepSpec, expand, load, loads, value_label

__all__ = ["load", "loads", "expand", "run", "status", "SweepSpec", "Cell", "SweepError", "SweepResult", "Progress",
           "Engine", "EngineError", "shared_local_engine", "METRICS", "metric_values", "value_label"]
