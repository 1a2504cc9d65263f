"""The live quantized training engine. Public API: ``docs/train-api.md``.

``Run(RunConfig(...)).start()`` trains in a worker thread with the layers swapped for quantized twins
(:func:`convert`), per-layer telemetry at a cadence, and every value written to the run store
(:mod:`core.store`). Schemes are frozen configs registered by name (:func:`register_scheme`).

``import core.train`` is light (no torch): the names below load their submodule on first access, so
``python -m core.train --help`` answers before torch loads.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.data import DataConfig
    from core.models import ModelConfig

    from .checkpoint import load_checkpoint, save_checkpoint
    from .config import LIVE_KEYS, OptimConfig, RunConfig, TelemetryConfig
    from .context import MetricRow, StepContext, StepOutput
    from .qlayers import LayerInfo, QConv2d, QLinear, QuantConfig, TensorQuant, assign, convert, quantized_layers
    from .run import Run, active_runs
    from .schemes import (
        SCHEMES,
        AMPScheme,
        CustomScheme,
        FP32Scheme,
        MLSScheme,
        Scheme,
        get_scheme,
        list_schemes,
        register_scheme,
    )
    from .telemetry import Telemetry

__all__ = [
    "Run",
    "active_runs",
    "RunConfig",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "TelemetryConfig",
    "LIVE_KEYS",
    "Scheme",
    "SCHEMES",
    "register_scheme",
    "get_scheme",
    "list_schemes",
    "FP32Scheme",
    "AMPScheme",
    "MLSScheme",
    "CustomScheme",
    "QuantConfig",
    "TensorQuant",
    "LayerInfo",
    "QLinear",
    "QConv2d",
    "convert",
    "assign",
    "quantized_layers",
    "Telemetry",
    "StepContext",
    "StepOutput",
    "MetricRow",
    "load_checkpoint",
    "save_checkpoint",
]

#: name -> module it is loaded from on first access (relative to this package unless absolute)
_LAZY = {
    "DataConfig": "core.data",
    "ModelConfig": "core.models",
    **dict.fromkeys(("load_checkpoint", "save_checkpoint"), ".checkpoint"),
    **dict.fromkeys(("LIVE_KEYS", "OptimConfig", "RunConfig", "TelemetryConfig"), ".config"),
    **dict.fromkeys(("MetricRow", "StepContext", "StepOutput"), ".context"),
    **dict.fromkeys(("LayerInfo", "QConv2d", "QLinear", "QuantConfig", "TensorQuant", "assign", "convert",
                     "quantized_layers"), ".qlayers"),
    **dict.fromkeys(("Run", "active_runs"), ".run"),
    **dict.fromkeys(("SCHEMES", "AMPScheme", "CustomScheme", "FP32Scheme", "MLSScheme", "Scheme", "get_scheme",
                     "list_schemes", "register_scheme"), ".schemes"),
    "Telemetry": ".telemetry",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'core.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


# The papers' schemes (logbtq, niti, sbm, cpt, pfq, dfq) live in ``core.schemes``, which builds on this
# package; the registry imports it (an entry point of the distribution) the first time it is read.
