"""Lowbit Explorer dashboards: Format Lab, Live Training, Compare and Sweeps, plus exports.

Each page is a ``pn.viewable.Viewer`` over Panel-free ``param`` state, so it serves in
``panel serve apps/explorer.py`` and displays as a widget in Jupyter::

    import panel as pn; pn.extension()
    from explorer import FormatLab, LiveTraining, Compare, Sweeps, export
    FormatLab()

``export(runs, out_dir)`` writes comparison plots (PNG, SVG, standalone HTML); the same is
available as ``python -m explorer.export --runs ...``.  Names are imported lazily so that
``import explorer.analysis`` does not load Panel.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["FormatLab", "LiveTraining", "Compare", "Sweeps", "export", "export_comparison", "Comparison",
           "load_comparison", "FormatLabState", "LiveTrainingState",
           "CompareState", "SweepsState", "SpecBuilder", "create_app"]

_LAZY = {
    "FormatLab": ("lab", "FormatLab"),
    "FormatLabState": ("lab_state", "FormatLabState"),
    "LiveTraining": ("live", "LiveTraining"),
    "LiveTrainingState": ("live_state", "LiveTrainingState"),
    "Compare": ("compare", "Compare"),
    "CompareState": ("compare_state", "CompareState"),
    "Sweeps": ("sweeps", "Sweeps"),
    "SweepsState": ("sweeps_state", "SweepsState"),
    "SpecBuilder": ("builder", "SpecBuilder"),
    "create_app": ("app", "create_app"),
    "export": ("export", None),
    "export_comparison": ("export", "export_comparison"),
    "Comparison": ("comparison", "Comparison"),
    "load_comparison": ("comparison", "load_comparison"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'explorer' has no attribute {name!r}")
    mod, attr = _LAZY[name]
    module = importlib.import_module(f".{mod}", __name__)
    return module if attr is None else getattr(module, attr)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
