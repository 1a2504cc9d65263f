"""HoloViews elements for every page and for exports (no Panel here).

Functions return HoloViews objects with backend-neutral options only, so the same object
renders live in Bokeh and to PNG/SVG with the matplotlib backend (:mod:`explorer.export`).
Bokeh-only options (tools, hover, responsive sizing) are applied by the views.

Format Lab plots always contain one element per slot (four), empty for hidden slots, so a
``DynamicMap`` keeps its structure and Bokeh updates data in place.
"""

from __future__ import annotations

import html
import math
from typing import Any, Mapping, Sequence

import holoviews as hv
import numpy as np
import pandas as pd

from .analysis import BINS_PER_BINADE, METRIC_LABELS, DataSummary, FormatResult
from .builder import SLOT_COLORS

__all__ = [
    "codebook_plot",
    "binade_plot",
    "error_plot",
    "histogram_plot",
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


def _segments(parts: list[tuple[np.ndarray, Any, Any, str, str]], xdim: str, ydim: str) -> hv.Segments:
    """Vertical segments ``(x, y0) - (x, y1)`` from per-slot (x, y0, y1, color, spec) tuples."""
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("x0", "y0", "x1", "y1", "color", "format")}
    for x, y0, y1, color, spec in parts:
        n = x.size
        cols["x0"].append(x)
        cols["x1"].append(x)
        cols["y0"].append(np.broadcast_to(y0, (n,)).astype(float))
        cols["y1"].append(np.broadcast_to(y1, (n,)).astype(float))
        cols["color"].append(np.full(n, color))
        cols["format"].append(np.full(n, spec))
    return _segments_element(cols, xdim, ydim)


def _segments_element(cols: dict[str, list[np.ndarray]], xdim: str, ydim: str) -> hv.Segments:
    data = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in cols.items()}
    kdims = [hv.Dimension("x0", label=xdim), hv.Dimension("y0", label=ydim), "x1", "y1"]
    return hv.Segments(data, kdims=kdims, vdims=["color", "format"]).opts(color="color")


def _polylines(parts: list[tuple[np.ndarray, np.ndarray, str, str]], xdim: str, ydim: str) -> hv.Segments:
    """Polylines as one ``hv.Segments`` element (one glyph; colour and format per segment)."""
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("x0", "y0", "x1", "y1", "color", "format")}
    for x, y, color, spec in parts:
        if x.size < 2:
            continue
        n = x.size - 1
        cols["x0"].append(x[:-1])
        cols["x1"].append(x[1:])
        cols["y0"].append(y[:-1])
        cols["y1"].append(y[1:])
        cols["color"].append(np.full(n, color))
        cols["format"].append(np.full(n, spec))
    return _segments_element(cols, xdim, ydim)


def codebook_plot(results: Sequence[FormatResult]) -> hv.Segments:
    """The positive codebook of each format on a log axis, one row per slot (row 1 on top).

    Scaled formats show element values (in units of their scale); codebooks with more than
    :data:`MAX_SPIKES` codes are thinned evenly.
    """
    parts = []
    n = len(results)
    for i, r in enumerate(results[:4]):
        v = _thin(r.codebook)
        row = n - 1 - i
        parts.append((v, np.float64(row + 0.1), np.float64(row + 0.9), SLOT_COLORS[i], r.spec))
    return _segments(parts, "code value", "slot").opts(title="Codebook (log axis)", logx=True)


def binade_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Number of codes in each binade ``[2^k, 2^(k+1))`` of positive ``values``: (k, counts)."""
    v = values[values > 0]
    if not v.size:
        return _EMPTY, _EMPTY
    k = np.floor(np.log2(v)).astype(np.int64)
    ks = np.arange(k.min(), k.max() + 1)
    return ks.astype(float), np.bincount(k - k.min(), minlength=ks.size).astype(float)


def binade_plot(results: Sequence[FormatResult]) -> hv.Segments:
    """Code density: codes per binade for each format, as steps over ``[2^k, 2^(k+1))`` (log x)."""
    parts = []
    for i, r in enumerate(results[:4]):
        ks, c = binade_counts(r.codebook)
        x = np.repeat(np.exp2(ks), 2)
        x[1::2] *= 2.0
        parts.append((x, np.repeat(c, 2), SLOT_COLORS[i], r.spec))
    return _polylines(parts, "code value", "codes per binade").opts(title="Code density per binade", logx=True)


def error_plot(data: DataSummary, results: Sequence[FormatResult]) -> hv.Segments:
    """Mean relative error ``|Q(x)-x|/|x|`` per ``log2|x|`` bin, log-log (floored at 1e-10)."""
    centers = np.exp2(0.5 * (data.edges[:-1] + data.edges[1:]))
    parts = []
    for i, r in enumerate(results[:4]):
        ok = np.isfinite(r.err_mean)
        parts.append((centers[ok], np.clip(r.err_mean[ok], 1e-10, None), SLOT_COLORS[i], r.spec))
    return _polylines(parts, "|x|", "relative error").opts(title="Relative error vs |x|", logx=True, logy=True)


def histogram_plot(data: DataSummary, results: Sequence[FormatResult]) -> hv.Overlay:
    """Histogram of ``|x|`` (log bins) with each format's codes (data units) as a rug row above it.

    Codes of scaled formats are drawn at the scale of the largest element; codes more than
    one binade outside the data are left out.  Row ``i`` (slot ``i``) sits above the bars.
    """
    edges = np.exp2(data.edges)
    counts = data.counts.astype(float)
    top = float(counts.max()) if counts.size and counts.max() > 0 else 1.0
    hist = hv.Histogram((edges, counts), kdims=["|x|"], vdims=["count"]).opts(color="#9e9e9e")
    lo, hi = edges[0] / 2.0, edges[-1] * 2.0
    parts = []
    for i, r in enumerate(results[:4]):
        v = _thin(r.codes[(r.codes >= lo) & (r.codes <= hi)])
        y0 = top * (1.04 + 0.1 * i)
        parts.append((v, np.float64(y0), np.float64(y0 + 0.08 * top), SLOT_COLORS[i], r.spec))
    seg = _segments(parts, "|x|", "count")
    # Segments' ranges only see y0: make room for every rug row explicitly
    ymax = top * (1.04 + 0.1 * max(1, len(results[:4])) + 0.02)
    return (hist * seg).opts(title="Data histogram with codes", logx=True, ylim=(0, ymax))


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


# ----------------------------------------------------------------- Format Lab: one element per slot
#: axis label of the codebook plot (scaled formats' codes are element values, in units of their block scale)
CODEBOOK_AXIS = "code value (scaled formats: element value, x block scale)"


def slot_label(i: int, r: FormatResult | None) -> str:
    """Legend entry of Format Lab slot ``i`` (0-based): ``Format 1`` like its card (a label that never changes,
    so the overlay keeps its structure and Bokeh updates data in place; the spec is in the hover)."""
    return f"Format {i + 1}"


def codebook_slot(r: FormatResult | None, i: int, n: int) -> hv.Segments:
    """Slot ``i`` of :func:`codebook_plot` alone (row ``n - 1 - i`` of ``n``), labelled for a legend."""
    v = _thin(r.codebook) if r is not None else _EMPTY
    row = n - 1 - i
    return _segments([(v, np.float64(row + 0.1), np.float64(row + 0.9), SLOT_COLORS[i],
                       r.spec if r is not None else "")], CODEBOOK_AXIS, "slot").relabel(slot_label(i, r)).opts(
        color=SLOT_COLORS[i])


def binade_slot(r: FormatResult | None, i: int) -> hv.Segments:
    """Slot ``i`` of :func:`binade_plot` alone, labelled for a legend."""
    if r is None:
        parts: list[tuple[np.ndarray, np.ndarray, str, str]] = []
    else:
        ks, c = binade_counts(r.codebook)
        x = np.repeat(np.exp2(ks), 2)
        x[1::2] *= 2.0
        parts = [(x, np.repeat(c, 2), SLOT_COLORS[i], r.spec)]
    return _polylines(parts, "code value", "codes per binade").relabel(slot_label(i, r)).opts(color=SLOT_COLORS[i])


def error_slot(data: DataSummary, r: FormatResult | None, i: int) -> hv.Segments:
    """Slot ``i`` of :func:`error_plot` alone, labelled for a legend."""
    parts: list[tuple[np.ndarray, np.ndarray, str, str]] = []
    if r is not None:
        centers = np.exp2(0.5 * (data.edges[:-1] + data.edges[1:]))
        ok = np.isfinite(r.err_mean)
        parts = [(centers[ok], np.clip(r.err_mean[ok], 1e-10, None), SLOT_COLORS[i], r.spec)]
    return _polylines(parts, "|x|", "relative error").relabel(slot_label(i, r)).opts(color=SLOT_COLORS[i])


def rug_slot(data: DataSummary, r: FormatResult | None, i: int) -> hv.Segments:
    """Slot ``i``'s rug row of :func:`histogram_plot` (codes in data units) alone, labelled for a legend."""
    edges = np.exp2(data.edges)
    counts = data.counts.astype(float)
    top = float(counts.max()) if counts.size and counts.max() > 0 else 1.0
    lo, hi = edges[0] / 2.0, edges[-1] * 2.0
    v = _thin(r.codes[(r.codes >= lo) & (r.codes <= hi)]) if r is not None else _EMPTY
    y0 = top * (1.04 + 0.1 * i)
    return _segments([(v, np.float64(y0), np.float64(y0 + 0.08 * top), SLOT_COLORS[i], r.spec if r else "")],
                     "|x|", "count").relabel(slot_label(i, r)).opts(color=SLOT_COLORS[i])


def data_histogram(data: DataSummary) -> hv.Histogram:
    """The ``|x|`` histogram of :func:`histogram_plot` (log bins) alone."""
    edges = np.exp2(data.edges)
    return hv.Histogram((edges, data.counts.astype(float)), kdims=["|x|"], vdims=["count"],
                        label="data |x|").opts(color="#9e9e9e")


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
