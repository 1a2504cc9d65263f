"""HoloViews elements for every page and for exports (no Panel here).

Functions return HoloViews objects with backend-neutral options only, so the same object
renders live in Bokeh and to PNG/SVG with the matplotlib backend (:mod:`explorer.export`).
Bokeh-only options (tools, hover, responsive sizing) are applied by the views.

The Format Lab's plots are plain Bokeh figures (:mod:`explorer.lab_plots`); this module gives them
their data: the columns of one slot's glyph (``codebook_columns`` ...), empty for hidden slots.
"""

from __future__ import annotations

import html
import math
from typing import Any, Mapping, Sequence

import holoviews as hv
import numpy as np
import pandas as pd

from .analysis import BINS_PER_BINADE, METRIC_LABELS, DataSummary, FormatResult

__all__ = [
    "codebook_columns",
    "binade_columns",
    "error_columns",
    "rug_columns",
    "histogram_columns",
    "histogram_ymax",
    "metrics_frame",
    "MAX_SPIKES",
    "curves_plot",
    "heatmap_plot",
    "grid_heatmap",
    "event_lines",
    "RUN_COLORS",
    "decade_range",
    "note",
    "grid_labels",
]

hv.renderer("bokeh")  # options below need a registered backend; this only registers it (no output)

#: at most this many codes are drawn as spikes (larger codebooks are subsampled evenly)
MAX_SPIKES = 2048
#: colour cycle for runs in Compare and exports
RUN_COLORS: tuple[str, ...] = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
)
_EMPTY = np.zeros(0)


def _thin(v: np.ndarray) -> np.ndarray:
    if v.size <= MAX_SPIKES:
        return v
    idx = np.linspace(0, v.size - 1, MAX_SPIKES).round().astype(int)
    return v[idx]


def binade_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Number of codes in each binade ``[2^k, 2^(k+1))`` of positive ``values``: (k, counts)."""
    v = values[values > 0]
    if not v.size:
        return _EMPTY, _EMPTY
    k = np.floor(np.log2(v)).astype(np.int64)
    ks = np.arange(k.min(), k.max() + 1)
    return ks.astype(float), np.bincount(k - k.min(), minlength=ks.size).astype(float)


def metrics_frame(results: Sequence[FormatResult]) -> pd.DataFrame:
    """Metrics table: one row per format (ARE, rel. error, SQNR, saturation, overflow, underflow)."""
    rows = []
    for i, r in enumerate(results):
        row: dict[str, Any] = {"#": i + 1, "format": r.spec, "bits": r.bits}
        for k, lab in METRIC_LABELS.items():
            row[lab] = r.metrics[k]
        row["ms"] = round(1e3 * r.seconds, 1)
        if r.error:
            row["note"] = r.error
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------- training plots
def event_lines(steps: Sequence[float]) -> hv.VLines:
    """Vertical markers at the steps where a knob was changed."""
    return hv.VLines(np.asarray(list(steps), dtype=float), kdims=["step"]).opts(color="black", alpha=0.5)


def curves_plot(
    frames: Mapping[str, pd.DataFrame],
    y: str,
    x: str = "step",
    labels: Mapping[str, str] | None = None,
    title: str | None = None,
    markers: bool = False,
) -> hv.Overlay:
    """One curve of column ``y`` against ``x`` per run (``frames``: run id -> DataFrame); with
    ``markers`` each point is also drawn (per-epoch values, where a run may have one point)."""
    items = []
    for i, (rid, df) in enumerate(frames.items()):
        lab = (labels or {}).get(rid, rid)
        if df is None or y not in df or not len(df):
            xs, ys = _EMPTY, _EMPTY
        else:
            d = df[[x, y]].dropna()
            xs, ys = d[x].to_numpy(float), d[y].to_numpy(float)
        color = RUN_COLORS[i % len(RUN_COLORS)]
        items.append(hv.Curve((xs, ys), x, y, label=lab).opts(color=color))
        if markers:
            items.append(hv.Scatter((xs, ys), x, y, label=lab).opts(color=color))
    return hv.Overlay(items).opts(title=title or y)


def signal_plot(df: pd.DataFrame, title: str = "", label: str = "value") -> hv.Overlay:
    """A scheme signal (``step, value, series`` rows): one step curve per series (layer). No legend
    (it would be rebuilt as layers appear, which Bokeh does not survive); hover names the series."""
    items = []
    series = list(dict.fromkeys(df["series"])) if len(df) else []
    vdims = [hv.Dimension("value", label=label), "series"]
    for i, name in enumerate(series):
        d = df[df["series"] == name].sort_values("step")
        items.append(hv.Curve(d, "step", vdims).opts(
            color=RUN_COLORS[i % len(RUN_COLORS)], interpolation="steps-post"))
    if not items:
        items = [hv.Curve((_EMPTY, _EMPTY, np.array([], dtype=object)), "step", vdims)]
    title = title or "Scheme signal"
    return hv.Overlay([c.opts(title=title) for c in items]).opts(title=title, show_legend=False)


def heatmap_plot(df: pd.DataFrame, layers: Sequence[str], title: str = "", value: str = "ARE") -> hv.HeatMap:
    """Layer x step heat map (``df`` has columns step, layer, value); layers keep model order.

    Layers are drawn as integer rows (0 = first layer) so the step axis stays numeric.
    """
    order = {name: i for i, name in enumerate(layers)}
    if len(df):
        d = df[df["layer"].isin(order)]
        xs = d["step"].to_numpy(float)
        ys = d["layer"].map(order).to_numpy(float)
        vs = d["value"].to_numpy(float)
    else:
        xs = ys = vs = _EMPTY
    return hv.HeatMap((xs, ys, vs), ["step", "layer"], value).opts(title=title)


def grid_heatmap(table: pd.DataFrame, x: str, y: str, value: str, title: str = "") -> hv.HeatMap:
    """Heat map of ``value`` over a grid of runs (e.g. Ex x Mx); cells averaged when repeated.

    An empty ``y`` (or ``y == x``) gives a single row over ``x``.
    """
    if not y or y == x:
        y = "runs"
        table = table.assign(runs="all")
        title = title or f"{value} over {x}"
    if not len(table):
        return hv.HeatMap(([], [], []), [x, y], value).opts(title=title)
    d = table[[x, y, value]].copy()
    d[x] = d[x].astype(str)
    d[y] = d[y].astype(str)
    d = d.groupby([x, y], as_index=False)[value].mean()
    return hv.HeatMap(d, [x, y], value).opts(title=title or f"{value} over {x} x {y}")


_ = BINS_PER_BINADE


# ----------------------------------------------------------------- live training plots
_FLOOR = 1e-7


def are_cells(df: pd.DataFrame, layers: Sequence[str], value: str = "log10 ARE") -> dict[str, np.ndarray]:
    """The cells of a layer x step heat map: columns step (left edge), x1, y0, y1, ``value`` (``log10``
    of the ARE floored at 1e-7), value (the ARE) and layer; row ``i`` is ``layers[i]`` (0 = first layer).

    ``df`` has columns step, layer, value, width."""
    order = {name: i for i, name in enumerate(layers)}
    if len(df):
        d = df[df["layer"].isin(order)]
        x0 = d["step"].to_numpy(float)
        w = d["width"].to_numpy(float) if "width" in d else np.ones(len(d))
        y = d["layer"].map(order).to_numpy(float)
        v = np.clip(d["value"].to_numpy(float), _FLOOR, None)
        names = d["layer"].astype(str).to_numpy()
    else:
        x0 = w = y = v = _EMPTY
        names = np.zeros(0, dtype=str)
    return {"step": x0, "y0": y - 0.5, "x1": x0 + w, "y1": y + 0.5, value: np.log10(v), "value": v, "layer": names}


def weight_hist_cells(df: pd.DataFrame, value: str = "log10_count") -> dict[str, np.ndarray]:
    """The cells of a weight histogram over time: columns step (left edge), x1, y0, y1 (the bin's
    log2|w| +- 0.25), bin, ``value`` (``log10`` of the count, at least 0) and count. ``df`` has
    columns step, bin, count, width (:func:`explorer.live_frames.weight_hist_frame`)."""
    if len(df):
        x0 = df["step"].to_numpy(float)
        w = df["width"].to_numpy(float)
        b = df["bin"].to_numpy(float)
        c = df["count"].to_numpy(float)
    else:
        x0 = w = b = c = _EMPTY
    return {"step": x0, "y0": b - 0.25, "x1": x0 + w, "y1": b + 0.25, "bin": b,
            value: np.log10(np.maximum(c, 1.0)), "count": c}


def _percent(v: float) -> str:
    """``12.34%``, or ``n/a`` for a value that is not finite (nothing measured yet)."""
    return f"{v:.2%}" if math.isfinite(v) else "n/a"


def tail_series(d: Mapping[str, Any]) -> dict[str, Any]:
    """The tail plot's columns from :meth:`LiveTrainingState.tail_data` ``d`` (layers, measured,
    overflow, per_layer, average, approx, e1, u): x (layer number), layer, measured, overflow,
    per_layer, average and approx, floored at 1e-7 for the log axis."""
    layers = list(d.get("layers", []))
    x = np.arange(len(layers), dtype=float)

    def col(key: str) -> np.ndarray:
        v = np.asarray(d.get(key, [math.nan] * len(layers)), dtype=float)
        return np.clip(v, _FLOOR, None) if v.size else _EMPTY

    ones = np.ones(len(layers))
    avg = float(d.get("average", math.nan)) if layers else math.nan
    approx = float(d.get("approx", math.nan)) if layers else math.nan
    return {"x": x, "layer": [str(n) for n in layers], "measured": col("measured"), "overflow": col("overflow"),
            "per_layer": col("per_layer"), "average": np.clip(avg * ones, _FLOOR, None),
            "approx": np.clip(approx * ones, _FLOOR, None)}


def tail_title(d: Mapping[str, Any]) -> str:
    """The tail plot's title: with E1, u and L once there are layers."""
    title = "Overflow tail vs LogBTQ bound"
    layers = list(d.get("layers", []))
    if layers:
        title += f" (E1={d.get('e1', 1.0):.3g}, u={d.get('u', 0.1):g}, L={d.get('depth', len(layers))})"
    return title


def tail_legend(d: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """:data:`TAIL_LEGEND` with the bound's two averages (``n/a`` before any is known) in their labels."""
    layers = list(d.get("layers", []))
    avg = float(d.get("average", math.nan)) if layers else math.nan
    approx = float(d.get("approx", math.nan)) if layers else math.nan
    values = {"bound averaged over L": avg, "E1/(4L(1-u))": approx}
    return [(f"{label}: {_percent(values[label])}" if label in values else label, color, mark)
            for label, color, mark in TAIL_LEGEND]


#: the tail plot's series (label, colour, mark) for :func:`legend_html` (HTML below the plot, updated in place)
TAIL_LEGEND = (("P(|A| >= 2)", "#1f77b4", "line"), ("overflow of A (format)", "#d62728", "square"),
               ("LogBTQ bound per layer", "black", "dashed"), ("bound averaged over L", "gray", "dotted"),
               ("E1/(4L(1-u))", "gray", "dashdot"))

_MARKS = {
    "swatch": "width:14px;height:14px;border-radius:2px;background:{c}",
    "square": "width:9px;height:9px;margin:0 3px;background:{c}",
    "line": "width:22px;height:0;border-top:2px solid {c}",
    "dashed": "width:22px;height:0;border-top:2px dashed {c}",
    "dotted": "width:22px;height:0;border-top:2px dotted {c}",
    "dashdot": "width:22px;height:0;border-top:2px dashed {c};opacity:0.7",
}


def legend_html(items: Sequence[tuple[str, str, str]], css_class: str = "legend-item") -> str:
    """A wrapping HTML legend: one ``(label, colour, mark)`` per item, ``mark`` one of swatch, square,
    line, dashed, dotted, dashdot (labels are escaped). For legends that would otherwise stretch a
    plot (many long run names) or be rebuilt on every redraw."""
    spans = []
    for label, color, mark in items:
        style = _MARKS.get(mark, _MARKS["swatch"]).format(c=html.escape(color, quote=True))
        cls = "swatch" if mark == "swatch" else "mark"
        spans.append(f"<span class='{css_class}' style='display:inline-flex;align-items:center;margin:2px 14px 2px 0'>"
                     f"<span class='{cls}' style='display:inline-block;{style};margin-right:6px'></span>"
                     f"{html.escape(label)}</span>")
    return "<div style='display:flex;flex-wrap:wrap'>" + "".join(spans) + "</div>"


# ----------------------------------------------------------------- colour ranges, notes, grid labels
def decade_range(values: Any, floor: float = _FLOOR) -> tuple[float, float] | None:
    """The colour range of a log10 heat map of ``values`` rounded out to whole decades (at least one):
    ARE 0.12 .. 0.15 gives (-1, 0), so noise within a decade never spreads over the whole colour map.
    None without finite values. Values are floored at ``floor`` as :func:`are_cells` does."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not v.size:
        return None
    lv = np.log10(np.clip(v, floor, None))
    lo, hi = math.floor(float(lv.min())), math.ceil(float(lv.max()))
    return (float(lo), float(max(hi, lo + 1)))


def note(text: str, kdims: Sequence[str] = ("x", "y")) -> hv.Text:
    """A line of text in the middle of an otherwise empty plot (why it is empty); ``""`` draws nothing."""
    return hv.Text(0.5, 0.5, text, kdims=list(kdims)).opts(text_color="#555555", text_font_size="11pt")


def grid_labels(table: pd.DataFrame, x: str, y: str, value: str, fmt: str = "{:.3g}") -> hv.Labels:
    """The cell values of :func:`grid_heatmap` (same axes and averaging) as text labels on the cells."""
    if not y or y == x:
        y = "runs"
        table = table.assign(runs="all")
    if not len(table):
        return hv.Labels(([], [], []), [x, y], "text")
    d = table[[x, y, value]].copy()
    d[x] = d[x].astype(str)
    d[y] = d[y].astype(str)
    d = d.groupby([x, y], as_index=False)[value].mean()
    d["text"] = [fmt.format(v) if math.isfinite(v) else "n/a" for v in d[value].astype(float)]
    return hv.Labels(d[[x, y, "text"]], [x, y], "text").opts(text_color="white", text_font_size="10pt")


# ----------------------------------------------------------------- Format Lab: the columns of one slot
# Each function gives the ColumnDataSource columns of one slot's glyph in one Format Lab plot
# (:mod:`explorer.lab_plots` draws them as plain Bokeh figures): segments ``x0 y0 x1 y1``, or the
# histogram's ``left right top`` bars. ``r = None`` (a hidden slot) gives empty columns.

#: axis label of the codebook plot (scaled formats' codes are element values, in units of their block scale)
CODEBOOK_AXIS = "code value (scaled formats: element value, x block scale)"
SEGMENT_COLUMNS: tuple[str, ...] = ("x0", "y0", "x1", "y1")


def _spikes(x: np.ndarray, y0: float, y1: float) -> dict[str, np.ndarray]:
    """Vertical segments ``(x, y0) - (x, y1)``."""
    x = np.asarray(x, dtype=float)
    return {"x0": x, "y0": np.full(x.size, y0), "x1": x, "y1": np.full(x.size, y1)}


def _polyline(x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """A polyline through ``(x, y)`` as its segments."""
    if x.size < 2:
        return {k: _EMPTY for k in SEGMENT_COLUMNS}
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    return {"x0": x[:-1], "y0": y[:-1], "x1": x[1:], "y1": y[1:]}


def codebook_columns(r: FormatResult | None, i: int, n: int) -> dict[str, np.ndarray]:
    """Slot ``i``'s positive codebook as spikes in row ``n - 1 - i`` of ``n`` (slot 1 on top; log x).

    Scaled formats show element values (in units of their scale); codebooks with more than
    :data:`MAX_SPIKES` codes are thinned evenly."""
    row = n - 1 - i
    return _spikes(_thin(r.codebook) if r is not None else _EMPTY, row + 0.1, row + 0.9)


def binade_columns(r: FormatResult | None) -> dict[str, np.ndarray]:
    """Code density: the codes per binade ``[2^k, 2^(k+1))`` of one slot, as steps (log x)."""
    if r is None:
        return _polyline(_EMPTY, _EMPTY)
    ks, c = binade_counts(r.codebook)
    x = np.repeat(np.exp2(ks), 2)
    x[1::2] *= 2.0
    return _polyline(x, np.repeat(c, 2))


def error_columns(data: DataSummary, r: FormatResult | None) -> dict[str, np.ndarray]:
    """Mean relative error ``|Q(x)-x|/|x|`` per ``log2|x|`` bin of one slot, log-log (floored at 1e-10)."""
    if r is None:
        return _polyline(_EMPTY, _EMPTY)
    centers = np.exp2(0.5 * (data.edges[:-1] + data.edges[1:]))
    ok = np.isfinite(r.err_mean)
    return _polyline(centers[ok], np.clip(r.err_mean[ok], 1e-10, None))


def histogram_top(data: DataSummary) -> float:
    """The tallest bar of the data histogram (1 when empty): the rug rows sit above it."""
    counts = data.counts
    return float(counts.max()) if counts.size and counts.max() > 0 else 1.0


def histogram_ymax(data: DataSummary, n: int) -> float:
    """Top of the histogram plot's y axis: the bars and the rug rows of ``n`` slots."""
    return histogram_top(data) * (1.04 + 0.1 * max(1, min(n, 4)) + 0.02)


def rug_columns(data: DataSummary, r: FormatResult | None, i: int) -> dict[str, np.ndarray]:
    """Slot ``i``'s codes within the data's range (data units) as a rug row above the histogram."""
    edges = np.exp2(data.edges)
    top = histogram_top(data)
    lo, hi = edges[0] / 2.0, edges[-1] * 2.0
    v = _thin(r.codes[(r.codes >= lo) & (r.codes <= hi)]) if r is not None else _EMPTY
    y0 = top * (1.04 + 0.1 * i)
    return _spikes(v, y0, y0 + 0.08 * top)


def histogram_columns(data: DataSummary) -> dict[str, np.ndarray]:
    """The data's ``|x|`` histogram on its log2 bins: bars ``left right top``."""
    edges = np.exp2(data.edges)
    return {"left": edges[:-1], "right": edges[1:], "top": data.counts.astype(float)}


def scale_image(m: Any, message: str = "") -> hv.Image:
    """The per-block log2 scales of :class:`explorer.scalemap.ScaleMap` ``m`` as an image over the tensor's
    (column, row) indices (row 0 on top); ``None`` gives an empty image titled with ``message``."""
    if m is None:
        return hv.Image(np.full((1, 1), np.nan), bounds=(0, 0, 1, 1), kdims=["column", "row"],
                        vdims=["log2 scale"]).opts(title=f"Block scales: {message}"[:90])
    r, c = m.shape
    title = f"log2 block scale of {m.spec} over a {r}x{c} tensor ({m.distinct} distinct)"
    return hv.Image(m.image[::-1], bounds=(0, 0, c, r), kdims=["column", "row"], vdims=["log2 scale"]).opts(
        title=title, cmap="viridis", colorbar=True, invert_yaxis=True)
