"""Reading a sweep's cells into per-cell :class:`~core.reproduce.verdict.Stat` s and metric rows.

A cell's seeds that ended ``diverged`` are counted apart (docs/sweeps.md's "(k/3 div.)"); the others
give their ``best_test_acc`` (or any metric of :mod:`core.sweep.metrics`).
"""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd

from .verdict import Stat, stat_of

__all__ = ["stats_by", "metric_by", "run_ids", "shadow_are", "telemetry_values"]


def stats_by(df: pd.DataFrame, keys: Sequence[str], value: str = "best_test_acc") -> dict[tuple[Any, ...], Stat]:
    """``(key values) -> Stat`` of ``value`` over the rows (seeds) of each group."""
    out: dict[tuple[Any, ...], Stat] = {}
    for k, g in df.groupby(list(keys), sort=False):
        key = k if isinstance(k, tuple) else (k,)
        ok = g[g["status"] == "done"]
        out[key] = stat_of(ok[value].tolist(), int((g["status"] == "diverged").sum()))
    return out


def metric_by(store: Any, df: pd.DataFrame, keys: Sequence[str], metric: str) -> dict[tuple[Any, ...], Stat]:
    """Like :func:`stats_by` for a metric of :data:`core.sweep.metrics.METRICS` (e.g. ``bitops``)."""
    from core.sweep.metrics import metric_values

    vals = metric_values(store, list(df["run_id"]), metric)
    d = df.copy()
    d["_m"] = [vals.get(r) for r in d["run_id"]]
    return stats_by(d, keys, "_m")


def run_ids(df: pd.DataFrame) -> list[str]:
    """The cells' run ids (cells never started have none)."""
    return [str(r) for r in df["run_id"] if isinstance(r, str) and r]


def shadow_are(store: Any, run_ids_: Sequence[str]) -> pd.DataFrame:
    """Mean over the telemetry steps of the shadow formats' ARE: columns ``layer, tensor, fmt, are``."""
    q = ",".join("?" * len(run_ids_))
    df = pd.read_sql_query(f"SELECT layer, tensor, fmt, value FROM metrics WHERE run_id IN ({q}) AND role='shadow' "
                           "AND name='are'", store.conn, params=list(run_ids_))
    return df.groupby(["layer", "tensor", "fmt"], sort=False)["value"].mean().rename("are").reset_index()


def telemetry_values(store: Any, run_ids_: Sequence[str], name: str, role: str) -> pd.DataFrame:
    """Every telemetry row ``name`` of ``role``: columns ``run_id, step, layer, tensor, value``."""
    q = ",".join("?" * len(run_ids_))
    return pd.read_sql_query(f"SELECT run_id, step, layer, tensor, value FROM metrics WHERE run_id IN ({q}) "
                             "AND role=? AND name=? ORDER BY run_id, step", store.conn,
                             params=[*run_ids_, role, name])
