"""What a sweep's grid shows per cell: one definition per metric, used by the CLI table and the Sweeps page.

Each metric reads the cells' runs from the store in one query per metric (not one per cell), so a
1,000-cell grid costs the same few queries as a 4-cell one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import pandas as pd

__all__ = ["Metric", "METRICS", "metric_values"]


@dataclass(frozen=True)
class Metric:
    """A per-run number shown in a sweep's grid.

    Attributes:
        name: the key in sweep files and on the page.
        title: axis/colour-bar title.
        higher_is_better: whether the best cell is the largest value.
        fmt: how a value is printed.
    """

    name: str
    title: str
    higher_is_better: bool
    fmt: str
    read: Callable[[Any, Sequence[str]], dict[str, float]]


def _run_column(col: str) -> Callable[[Any, Sequence[str]], dict[str, float]]:
    def read(store: Any, run_ids: Sequence[str]) -> dict[str, float]:
        if not run_ids:
            return {}
        q = ",".join("?" * len(run_ids))
        rows = store.conn.execute(f"SELECT run_id, {col} FROM runs WHERE run_id IN ({q})", list(run_ids)).fetchall()
        return {r: float(v) for r, v in rows if v is not None}
    return read


def _last_metric(name: str, role: str = "") -> Callable[[Any, Sequence[str]], dict[str, float]]:
    def read(store: Any, run_ids: Sequence[str]) -> dict[str, float]:
        if not run_ids:
            return {}
        q = ",".join("?" * len(run_ids))
        rows = store.conn.execute(
            f"SELECT run_id, value FROM metrics WHERE rowid IN (SELECT max(rowid) FROM metrics "
            f"WHERE run_id IN ({q}) AND name=? AND role=? AND layer='' GROUP BY run_id)",
            [*run_ids, name, role]).fetchall()
        return {r: float(v) for r, v in rows if v is not None}
    return read


def _mean_are(tensors: str) -> Callable[[Any, Sequence[str]], dict[str, float]]:
    """Mean live ARE over the layers and the given tensors at each run's last telemetry step."""
    def read(store: Any, run_ids: Sequence[str]) -> dict[str, float]:
        if not run_ids:
            return {}
        q = ",".join("?" * len(run_ids))
        t = ",".join("?" * len(tensors))
        df = pd.read_sql_query(
            f"SELECT run_id, step, value FROM metrics WHERE run_id IN ({q}) AND name='are' AND role='live' "
            f"AND tensor IN ({t})", store.conn, params=[*run_ids, *tensors])
        if df.empty:
            return {}
        last = df[df["step"] == df.groupby("run_id")["step"].transform("max")]
        return {str(k): float(v) for k, v in last.groupby("run_id")["value"].mean().items()}
    return read


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("best_test_acc", "best test accuracy", True, "{:.2%}", _run_column("best_test_acc")),
    Metric("final_test_acc", "final test accuracy", True, "{:.2%}", _run_column("final_test_acc")),
    Metric("final_test_loss", "final test loss", False, "{:.4f}", _last_metric("test_loss")),
    Metric("final_loss", "final training loss", False, "{:.4f}", _last_metric("loss")),
    Metric("bitops", "effective BitOPs", False, "{:.3g}", _last_metric("bitops", "cost")),
    Metric("energy", "energy estimate (FP32 adds, MLS App. E)", False, "{:.3g}", _last_metric("energy", "cost")),
    Metric("energy_ratio", "energy saving vs FP32 (x)", True, "{:.2f}", _last_metric("energy_ratio", "cost")),
    Metric("are_w", "mean ARE of W", False, "{:.4f}", _mean_are("w")),
    Metric("are_a", "mean ARE of A", False, "{:.4f}", _mean_are("a")),
    Metric("are_e", "mean ARE of E", False, "{:.4f}", _mean_are("e")),
    Metric("are_wae", "mean ARE of W, A, E", False, "{:.4f}", _mean_are("wae")),
    Metric("seconds", "wall time (s)", False, "{:.1f}", _run_column("(coalesce(ended, heartbeat) - started)")),
)}


def metric_values(store: Any, run_ids: Sequence[str | None], metric: str) -> dict[str, float]:
    """``metric`` of each run (runs without a value are left out).

    Raises:
        KeyError: unknown metric.
    """
    ids = [r for r in run_ids if r]
    return METRICS[metric].read(store, ids)
