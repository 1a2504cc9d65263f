"""The Format Lab's four plots as plain Bokeh figures updated in place: the codebooks, the code density
per binade, the relative error over |x| and the data histogram with each format's codes as a rug.

Every plot has one glyph per slot (four), with its own ``ColumnDataSource``, legend entry and hover.
When the state's results change, only the sources of the slots whose result (or the data, for the
plots drawn over it) changed get new ``.data``; hidden slots are empty. A knob move therefore sends
the browser one slot's four sources, and no Bokeh model is created or replaced, so the server spends
a few milliseconds where a HoloViews redraw of the four overlays took 0.15 s (element, plot and range
machinery) and the browser re-renders data alone. Axis ranges follow the data (``DataRange1d``)
except the codebook's rows and the histogram's height, which are set from the slot count.

Under the codebook, a note of a fixed height (:func:`scale_note`) names the shown slots whose format is
scaled: their codebook is drawn in element values (units of their scale) while the histogram and its
rug are in data units.
"""

from __future__ import annotations

import html
from typing import Any, Literal, Sequence

import numpy as np
import panel as pn
from bokeh.models import (ColumnDataSource, FixedTicker, HoverTool, Legend, LegendItem,  # type: ignore[attr-defined]
                          NumeralTickFormatter, Range1d)
from bokeh.plotting import figure

from . import plots
from .analysis import DataSummary, FormatResult
from .builder import SLOT_COLORS
from .widgets import FIGURE_TOOLS, figure_pane

__all__ = ["LabPlots", "MetricsTable", "SLOTS", "scale_note"]

#: the Format Lab's slots (format cards)
SLOTS = 4
_HEIGHT, _MIN_WIDTH = 300, 380


def _slot_label(i: int) -> str:
    """Legend entry of slot ``i`` (0-based): ``Format 1`` like its card; the spec is in the hover."""
    return f"Format {i + 1}"


def scale_note(results: Sequence[FormatResult | None]) -> str:
    """The HTML note under the codebook: which shown slots hold a scaled format, whose codebook is drawn
    in element values (units of the format's scale) while the histogram and its rug show data values
    (element value x scale). "" when no shown slot is scaled."""
    slots = [str(i + 1) for i, r in enumerate(results) if r is not None and r.scaled]
    if not slots:
        return ""
    which = (f"Format {slots[0]} is scaled: its codebook row shows" if len(slots) == 1
             else f"Formats {', '.join(slots)} are scaled: their codebook rows show")
    return (f"<span class='scale-note-text'><b>{html.escape(which)}</b> element values, in units of the "
            "scale (per block or tensor); the histogram and its code rug show data values (element value x scale)."
            "</span>")


def log_ticks(lo: float, hi: float) -> list[float]:
    """Ticks for a log axis over ``[lo, hi]`` at 1, 2, 5 x 10^k (1 x 10^k alone over more than three
    decades). Bokeh's own log ticker turns linear below two decades, which leaves a relative-error axis
    of 0.01 to 1 with the ticks 0.5 and 1 alone."""
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo <= hi):
        return []
    k0, k1 = int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi)))
    mantissas = (1.0,) if k1 - k0 > 3 else (1.0, 2.0, 5.0)
    return [m * 10.0**k for k in range(k0, k1 + 1) for m in mantissas if lo <= m * 10.0**k <= hi]


def _empty(columns: Sequence[str]) -> dict[str, np.ndarray]:
    return {c: np.zeros(0) for c in columns}


class _SlotFigure:
    """One figure with a segment glyph per slot, a legend naming the slots and a hover per slot that
    names the slot's format; :meth:`set_slot` replaces one slot's data and hover text in place."""

    def __init__(self, title: str, x_label: str, y_label: str, css_class: str, tooltips: list[tuple[str, str]],
                 y_axis_type: Literal["linear", "log"] = "linear", y_range: Any = None, under: Any = None,
                 line_width: float = 1.5) -> None:
        kw: dict[str, Any] = {} if y_range is None else {"y_range": y_range}
        fig = figure(title=title, height=_HEIGHT, min_width=_MIN_WIDTH, sizing_mode="stretch_width", tools=FIGURE_TOOLS,
                     toolbar_location="right", x_axis_type="log", y_axis_type=y_axis_type, x_axis_label=x_label,
                     y_axis_label=y_label, **kw)
        fig.toolbar.logo = None
        items = []
        if under is not None:  # a glyph below the slots' (the data histogram)
            items.append(under(fig))
        self.sources = [ColumnDataSource(data=_empty(plots.SEGMENT_COLUMNS)) for _ in range(SLOTS)]
        self.hovers = []
        for i, src in enumerate(self.sources):
            r = fig.segment(x0="x0", y0="y0", x1="x1", y1="y1", source=src, color=SLOT_COLORS[i],
                            line_width=line_width)
            hover = HoverTool(renderers=[r], tooltips=[("format", "")] + tooltips)
            fig.add_tools(hover)
            self.hovers.append(hover)
            items.append(LegendItem(label=_slot_label(i), renderers=[r]))
        self.slot_items = items[-SLOTS:]
        fig.add_layout(Legend(items=items, click_policy="hide", label_text_font_size="9pt"), "right")
        self.figure = fig
        self.css_class = css_class
        self._tooltips = tooltips

    def set_slot(self, i: int, columns: dict[str, np.ndarray], spec: str) -> None:
        self.sources[i].data = columns
        want = [("format", spec)] + self._tooltips
        if self.hovers[i].tooltips != want:
            self.hovers[i].tooltips = want

    def show_slots(self, n: int) -> None:
        """Legend entries for the first ``n`` slots only (the others are hidden cards)."""
        for i, item in enumerate(self.slot_items):
            if item.visible != (i < n):
                item.visible = i < n

    def pane(self) -> pn.pane.Bokeh:
        return figure_pane(self.figure, self.css_class)


class LabPlots:
    """The four Format Lab plots over a :class:`explorer.lab_state.FormatLabState`, redrawn from its
    ``results`` and ``data``: only the slots whose inputs changed (compared by identity: the state's
    result cache returns the same object for an unchanged slot) get new data."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self.codebook = _SlotFigure("Codebook (log x; scaled formats: element values)", plots.CODEBOOK_AXIS, "slot",
                                    "plot-codebook", [("code", "@x0")], y_range=Range1d(start=0, end=2))
        self.density = _SlotFigure("Code density per binade", "code value", "codes per binade", "plot-density",
                                   [("binade from", "@x0"), ("codes", "@y0")], line_width=2)
        self.error = _SlotFigure("Relative error vs |x|", "|x|", "relative error", "plot-error",
                                 [("|x|", "@x0"), ("relative error", "@y0")], y_axis_type="log", line_width=2)
        self.error_ticks = FixedTicker(ticks=[])
        self.error.figure.yaxis[0].ticker = self.error_ticks
        self.bars = ColumnDataSource(data=_empty(("left", "right", "top")))

        def histogram(fig: Any) -> LegendItem:
            r = fig.quad(left="left", right="right", top="top", bottom=0, source=self.bars, color="#9e9e9e",
                         line_alpha=0)
            fig.add_tools(HoverTool(renderers=[r], tooltips=[("|x| from", "@left"), ("to", "@right"),
                                                             ("count", "@top")]))
            return LegendItem(label="data |x|", renderers=[r])

        self.hist = _SlotFigure("Data histogram with codes (data units)", "|x|", "count", "plot-hist",
                                [("code", "@x0")], y_range=Range1d(start=0, end=1), under=histogram)
        self.hist.figure.yaxis[0].formatter = NumeralTickFormatter(format="0.[0]a")  # 100k, not 1.000e+5
        # what each slot's glyphs were last drawn from: (result, data, slot count)
        self._drawn: list[tuple[Any, Any, int] | None] = [None] * SLOTS
        self._bars_of: DataSummary | None = None
        # a fixed height (three lines): a new note changes no layout
        self.note = pn.pane.HTML("", css_classes=["codebook-note"], height=50, sizing_mode="stretch_width",
                                 margin=(0, 10), styles={"font-size": "12px", "color": "#444"})
        state.param.watch(self._on_results, ["results"])
        self._on_results()

    @property
    def figures(self) -> list[_SlotFigure]:
        return [self.codebook, self.density, self.error, self.hist]

    def panes(self) -> list[pn.viewable.Viewable]:
        """One pane per plot, with the CSS classes ``plot-codebook``, ``plot-density``, ``plot-error``,
        ``plot-hist``; the codebook's comes with its scale note below (``codebook-note``)."""
        codebook, *others = [f.pane() for f in self.figures]
        return [pn.Column(codebook, self.note, sizing_mode="stretch_width", margin=0), *others]

    def _on_results(self, *_: Any) -> None:
        results: list[FormatResult] = list(self.state.results)
        data: DataSummary = self.state.data
        n = len(results)
        if data is not self._bars_of:
            self.bars.data = plots.histogram_columns(data)
            self._bars_of = data
        self.codebook.figure.y_range.update(start=0, end=max(n, 1))
        self.hist.figure.y_range.update(start=0, end=plots.histogram_ymax(data, n))
        for f in self.figures:
            f.show_slots(n)
        for i in range(SLOTS):
            r = results[i] if i < n else None
            drawn = self._drawn[i]
            key = (r, data, n)
            if drawn is not None and drawn[0] is r and drawn[1] is data and drawn[2] == n:
                continue
            spec = r.spec if r is not None else ""
            same_result = drawn is not None and drawn[0] is r
            same_data = drawn is not None and drawn[1] is data
            self.codebook.set_slot(i, plots.codebook_columns(r, i, n), spec)  # its row depends on the count
            if not same_result:  # the density depends on the result alone
                self.density.set_slot(i, plots.binade_columns(r), spec)
            if not (same_result and same_data):
                self.error.set_slot(i, plots.error_columns(data, r), spec)
                self.hist.set_slot(i, plots.rug_columns(data, r, i), spec)
            self._drawn[i] = key
        note = scale_note(results)
        if self.note.object != note:
            self.note.object = note
        ys = [src.data[c] for src in self.error.sources for c in ("y0", "y1") if len(src.data[c])]
        y = np.concatenate(ys) if ys else np.zeros(0)
        ticks = log_ticks(float(y.min()), float(y.max())) if y.size else []
        if list(self.error_ticks.ticks) != ticks:
            self.error_ticks.ticks = ticks


class MetricsTable:
    """The metrics of the shown slots (:func:`explorer.plots.metrics_frame`) as a small HTML table of a
    fixed height: a new text changes no layout (a ``DataFrame`` pane re-rendered through pandas and a
    new page layout per knob move cost ~40 ms of the ~0.26 s from a knob to its plots)."""

    _STYLE = ("<style>.lab-metrics{border-collapse:collapse;font-size:13px;width:100%}"
              ".lab-metrics th,.lab-metrics td{padding:3px 8px;text-align:right;border-bottom:1px solid #ddd;"
              "white-space:nowrap}.lab-metrics th{border-bottom:1px solid #888}"
              ".lab-metrics td.t,.lab-metrics th.t{text-align:left}"
              ".lab-metrics tr:nth-child(even) td{background:#f5f5f5}</style>")

    def __init__(self, state: Any) -> None:
        self.state = state
        self.html = pn.pane.HTML(self._html(), css_classes=["metrics-table"], sizing_mode="stretch_width",
                                 height=36 + 27 * SLOTS, margin=(0, 10))
        state.param.watch(self._on_results, ["results"])

    def _html(self) -> str:
        frame = plots.metrics_frame(list(self.state.results))
        text = {"format", "note"}
        head = "".join(f"<th class='t'>{html.escape(c)}</th>" if c in text else f"<th>{html.escape(c)}</th>"
                       for c in frame.columns)
        rows = []
        for rec in frame.itertuples(index=False):
            cells = []
            for c, v in zip(frame.columns, rec):
                cls = " class='t'" if c in text else ""
                cells.append(f"<td{cls}>{html.escape(_cell(v))}</td>")
            rows.append("<tr>" + "".join(cells) + "</tr>")
        return f"{self._STYLE}<table class='lab-metrics'><tr>{head}</tr>{''.join(rows)}</table>"

    def _on_results(self, *_: Any) -> None:
        self.html.object = self._html()

    def pane(self) -> pn.pane.HTML:
        return self.html


def _cell(v: Any) -> str:
    """A table cell as text: numbers to 4 significant digits, NaN (a missing value) empty."""
    if isinstance(v, (float, np.floating)):
        return "" if np.isnan(v) else f"{float(v):.4g}"
    return "" if v is None else str(v)
