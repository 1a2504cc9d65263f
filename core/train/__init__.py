"""The live quantized training engine. Public API: ``docs/train-api.md``.

``Run(RunConfig(...)).start()`` trains in a worker thread with the layers swapped for quantized twins
(:func:`convert`), per-layer telemetry at a cadence, and every value written to the run store
(:mod:`core.store`). Schemes are frozen configs registered by name (:func:`register_scheme`).
"""

from __future__ import annotations

from core.data import DataConfig
from core.models import ModelConfig

from .checkpoint import load_checkpoint, save_checkpoint
from .config import LIVE_KEYS, OptimConfig, RunConfig, TelemetryConfig
from .context import MetricRow, StepContext, StepOutput
from .qlayers import LayerInfo, QConv2d, QLinear, QuantConfig, TensorQuant, assign, convert, qlayers
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
    "qlayers",
    "Telemetry",
    "StepContext",
    "StepOutput",
    "MetricRow",
    "load_checkpoint",
    "save_checkpoint",
]

# The papers' schemes (logbtq, niti, sbm, cpt, pfq, dfq) live in ``core.schemes``, which builds on this
# package; the registry imports it (an entry point of the distribution) the first time it is read.
