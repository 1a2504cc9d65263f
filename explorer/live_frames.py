"""Plot frames of the Live Training page: pure functions from the state's tables to what the
plots draw (Panel-free, no state: :class:`explorer.live_state.LiveTrainingState` owns the tables).

* :func:`heat_frame`: ARE rows of every source, binned along the steps (:func:`bin_steps`) so a
  long run draws at most :data:`MAX_COLUMNS` columns;
* :func:`weight_hist_frame`: the weight histogram of one layer over time;
* :func:`signal_frame`: one scheme signal per layer/tensor;
* :func:`tail_data`: the measured activation tail (:func:`tail_fraction`) against the LogBTQ bound;
* :func:`run_speed`: steps/s, elapsed time and ETA of a run from its row's timestamps (``started``,
  ``heartbeat``, ``ended``: the run writes ``heartbeat`` with every commit of its step rows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from core.schemes import tail_bound

__all__ = ["MAX_COLUMNS", "HEAT_COLS", "WHIST_COLS", "SIGNAL_PLOT_COLS", "empty_frame", "bin_steps", "heat_frame",
           "weight_hist_frame", "signal_frame", "tail_fraction", "tail_data", "RunSpeed", "run_speed", "SPEED_WINDOW",
           "duration_text"]

#: most step columns a heat map or the weight histogram draws (a long run is binned into this many)
MAX_COLUMNS = 160
HEAT_COLS = ["step", "layer", "tensor", "value", "width", "source"]
WHIST_COLS = ["step", "bin", "count", "width"]
SIGNAL_PLOT_COLS = ["step", "value", "series"]

#: one weight histogram snapshot: (step, counts, lo, hi) of log2|w|
WeightHist = tuple[int, np.ndarray, float, float]
#: one activation histogram: (counts, lo, hi, zeros)
ActHist = tuple[np.ndarray, float, float, int]


def empty_frame(cols: Sequence[str]) -> pd.DataFrame:
    """An empty frame with float columns ``cols``."""
    return pd.DataFrame({c: pd.Series(dtype=float) for c in cols})


def bin_steps(df: pd.DataFrame, every: float, max_columns: int = MAX_COLUMNS) -> pd.DataFrame:
    """Heat-map rows binned along the steps so that at most ``max_columns`` columns remain (the mean
    ARE per bin); rows are returned as they are when there are fewer steps than that."""
    steps = df["step"].to_numpy(float)
    if not len(df) or len(np.unique(steps)) <= max_columns:
        return df
    span = float(steps.max() - steps.min()) + every
    width = math.ceil(span / max_columns / every) * every
    out = df.assign(step=np.floor((steps - steps.min()) / width) * width + steps.min())
    out = out.groupby(["step", "layer", "tensor", "source"], as_index=False, sort=True)["value"].mean()
    out["width"] = float(width)
    return out[HEAT_COLS]


def heat_frame(tele: pd.DataFrame, every: float, max_columns: int = MAX_COLUMNS) -> pd.DataFrame:
    """ARE rows of every source from the telemetry table: columns step, layer, tensor, value, width,
    source (``live``, the format in use, or a shadow spec string); ``every`` is the telemetry period."""
    if not len(tele):
        return empty_frame(HEAT_COLS)
    sel = tele[(tele["name"] == "are") & tele["role"].isin(["live", "shadow"])]
    out = sel[["step", "layer", "tensor", "value"]].copy()
    out["width"] = every
    out["source"] = np.where(sel["role"] == "live", "live", sel["fmt"].astype(str))
    return bin_steps(out.reset_index(drop=True), every, max_columns)


def weight_hist_frame(items: Sequence[WeightHist], max_columns: int = MAX_COLUMNS) -> pd.DataFrame:
    """The non-empty bins of a layer's weight histogram snapshots: columns step, bin (the bin centre),
    count, width (the median step between snapshots); a long run keeps an evenly spaced subset of
    at most ``max_columns`` snapshots, always the last."""
    if not items:
        return empty_frame(WHIST_COLS)
    if len(items) > max_columns:
        pick = np.unique(np.linspace(0, len(items) - 1, max_columns).round().astype(int))
        items = [items[i] for i in pick]
    frames = []
    steps = [s for s, *_ in items]
    width = float(np.median(np.diff(steps))) if len(steps) > 1 else 1.0
    for s, counts, lo, hi in items:
        centers = np.linspace(lo, hi, counts.size + 1)[:-1] + (hi - lo) / counts.size / 2
        nz = counts > 0
        frames.append(pd.DataFrame({"step": float(s), "bin": centers[nz], "count": counts[nz], "width": width}))
    return pd.concat(frames, ignore_index=True)


def signal_frame(signals: pd.DataFrame, signal: str) -> pd.DataFrame:
    """Rows of scheme signal ``role.name``: columns step, value, series (a layer/tensor, or the name)."""
    if not len(signals) or not signal:
        return empty_frame(SIGNAL_PLOT_COLS)
    role, _, name = signal.partition(".")
    sel = signals[(signals["role"] == role) & (signals["name"] == name)]
    series = np.where(sel["layer"] != "", sel["layer"] + np.where(sel["tensor"] != "", "." + sel["tensor"], ""),
                      name)
    out = pd.DataFrame({"step": sel["step"].astype(float).to_numpy(), "value": sel["value"].to_numpy(float),
                        "series": series})
    return out.reset_index(drop=True)


def tail_fraction(counts: np.ndarray, lo: float, hi: float, zeros: int = 0, threshold: float = 2.0) -> float:
    """Fraction of a log2|x| histogram at or above ``|x| = threshold`` (zeros count in the total)."""
    counts = np.asarray(counts, dtype=float)
    total = counts.sum() + zeros
    if total <= 0:
        return math.nan
    edges = np.linspace(lo, hi, counts.size + 1)
    return float(counts[edges[:-1] >= math.log2(threshold)].sum() / total)


def tail_data(layers: Sequence[str], a_hists: Mapping[str, ActHist], overflow: Mapping[str, float],
              stats: Mapping[tuple[str, str], float], u: float) -> dict[str, Any]:
    """Per-layer measured tail P(|A| >= 2), the live overflow of A (``overflow``: the latest per layer),
    and the LogBTQ bound with barrier ``u`` (``stats`` holds the per-layer ``(layer, "a.mean" /
    "a.std")`` statistics)."""
    layers = list(layers)
    if not layers:
        return {}
    measured = []
    for n in layers:
        h = a_hists.get(n)
        measured.append(tail_fraction(*h) if h else math.nan)
    ovf = [float(overflow.get(n, math.nan)) for n in layers]
    mean = stats.get((layers[0], "a.mean"))
    std = stats.get((layers[0], "a.std"))
    e1 = (mean**2 + std**2) if mean is not None and std is not None else math.nan
    e1 = e1 if math.isfinite(e1) else 1.0  # no float activations measured (e.g. NITI): E1 = 1
    # the precision branches of a DFQ layer are one layer of depth: the bound is per depth
    blocks = list(dict.fromkeys(n.split(".branches.")[0] for n in layers))
    bound = tail_bound(e1, len(blocks), u)  # LogBTQ paper, Eq. 7-12
    per_layer = [bound.per_layer[blocks.index(n.split(".branches.")[0])] for n in layers]
    return {"layers": layers, "measured": measured, "overflow": ovf, "e1": e1, "u": u,
            "depth": len(blocks), "per_layer": per_layer, "average": bound.average, "approx": bound.approx}


#: seconds of the run's latest (heartbeat, step) samples that the steps/s rate is measured over
SPEED_WINDOW = 10.0


@dataclass(frozen=True)
class RunSpeed:
    """How fast a run goes: ``steps_per_s`` (None before two samples), ``elapsed`` seconds since it
    started (None before it started) and ``eta`` seconds to its last step (None while the rate is
    unknown or zero)."""

    steps_per_s: float | None
    elapsed: float | None
    eta: float | None


def run_speed(samples: Sequence[tuple[float, int]], started: float | None, ended: float | None,
              total: int, window: float = SPEED_WINDOW) -> RunSpeed:
    """Steps/s, elapsed time and ETA of a run from ``samples``, its row's ``(heartbeat, step)`` pairs
    as read over time (oldest first).

    The rate is ``(step_b - step_a) / (t_b - t_a)`` from the oldest sample of the last ``window``
    seconds (counted back from the last sample) to the last one (None while they are one instant);
    elapsed is ``ended`` (else the last heartbeat) minus ``started``; the ETA is
    ``(total - step) / rate`` (None while the rate is unknown or zero). Once the run ended the rate is
    its average, ``step / elapsed``, and the ETA 0."""
    pts = [(float(t), int(s)) for t, s in samples if t is not None and math.isfinite(float(t))]
    if not pts:
        return RunSpeed(None, None if ended is None or started is None else max(0.0, ended - started),
                        0.0 if ended is not None else None)
    last_t, last_s = pts[-1]
    end = float(ended) if ended is not None else last_t
    elapsed = max(0.0, end - float(started)) if started is not None else None
    t0, s0 = next(p for p in pts if p[0] >= last_t - window)
    rate = (last_s - s0) / (last_t - t0) if last_t > t0 else None
    if ended is not None:  # an ended run: its average over the whole run
        return RunSpeed(last_s / elapsed if elapsed else rate, elapsed, 0.0)
    eta = max(0, int(total) - last_s) / rate if rate and total else None
    return RunSpeed(rate, elapsed, eta)


def duration_text(seconds: float | None) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``; ``?`` for None."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"
