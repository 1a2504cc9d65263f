"""The Live Training page's line plots other than the curves, as plain Bokeh figures updated in
place: the overflow tail against the LogBTQ bound, and the chosen scheme signal over steps.

As for :mod:`explorer.live_heat`: a redraw replaces data and sets titles, never creates or replaces a
Bokeh model, so the page's model graph stays the same and the server's event loop is free again
within milliseconds. Both subscribe to a :class:`explorer.live_state.LiveTrainingState` pipe
(``tail``, ``signals``) and redraw when the state sends it data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import panel as pn
from bokeh.models import ColumnDataSource, FixedTicker, HoverTool
from bokeh.plotting import figure

from .live_heat import set_axis_labels
from .plots import RUN_COLORS, TAIL_LEGEND, legend_html, tail_legend, tail_series, tail_title
from .widgets import FIGURE_TOOLS, figure_pane

__all__ = ["TailPlot", "SignalPlot"]

_DASH = {"line": "solid", "dashed": "dashed", "dotted": "dotted", "dashdot": "dashdot"}


def _figure(title: str, x_label: str, y_label: str, height: int, min_width: int, **kw: Any) -> Any:
    fig = figure(title=title, height=height, min_width=min_width, sizing_mode="stretch_width", tools=FIGURE_TOOLS,
                 toolbar_location="right", x_axis_label=x_label, y_axis_label=y_label, **kw)
    fig.toolbar.logo = None
    return fig


class TailPlot:
    """Per-layer tail P(|A| >= 2) and live overflow of A next to the LogBTQ bound (log y), the
    legend as HTML below with the bound's two averages (:func:`explorer.plots.tail_legend`) and the
    reason in the plot area while nothing is measured."""

    def __init__(self, state: Any, height: int = 300, min_width: int = 360) -> None:
        self.state = state
        self.source = ColumnDataSource(data=tail_series({}))
        self.notes = ColumnDataSource(data={"x": [], "y": [], "text": []})
        fig = _figure("Overflow tail vs LogBTQ bound", "layer", "fraction", height, min_width, y_axis_type="log")
        fig.xaxis[0].ticker = FixedTicker(ticks=[])
        (_, c_m, _), (_, c_o, _), *bounds = TAIL_LEGEND
        line = fig.line("x", "measured", source=self.source, color=c_m, line_width=2)
        fig.scatter("x", "measured", source=self.source, color=c_m, size=7)
        fig.scatter("x", "overflow", source=self.source, color=c_o, size=7, marker="square")
        for (_, color, dash), col in zip(bounds, ("per_layer", "average", "approx")):
            fig.line("x", col, source=self.source, color=color, line_dash=_DASH[dash], line_width=1.5)
        fig.add_tools(HoverTool(renderers=[line], tooltips=[("layer", "@layer"), ("P(|A| >= 2)", "@measured"),
                                                            ("overflow", "@overflow"), ("bound", "@per_layer")],
                                mode="vline"))
        fig.text(x="x", y="y", text="text", source=self.notes, text_color="#555555", text_font_size="11pt",
                 text_align="center", text_baseline="middle")
        self.figure = fig
        self.legend = pn.pane.HTML(legend_html(TAIL_LEGEND), css_classes=["tail-legend"], sizing_mode="stretch_width",
                                   margin=(0, 10))
        state.tail.add_subscriber(self._on_data)
        self._on_data(state.tail.data)

    def panes(self) -> pn.Column:
        """The figure (CSS class ``plot-tail``) with its legend below (``tail-legend``)."""
        return pn.Column(figure_pane(self.figure, "plot-tail"),
                         self.legend, sizing_mode="stretch_width")

    def _on_data(self, data: Any = None, **_: Any) -> None:
        series = tail_series(data or {})
        self.source.data = series
        set_axis_labels(self.figure.xaxis[0], series["layer"])
        self.figure.title.text = tail_title(data or {})
        legend = legend_html(tail_legend(data or {}))
        if self.legend.object != legend:
            self.legend.object = legend
        why = self.state.tail_note()
        # the note sits mid-plot on the log axis (1e-3: inside the axis' default range when nothing is drawn)
        text = [why] if why else []
        self.notes.data = {"x": [0.0] * len(text), "y": [1e-3] * len(text), "text": text}


class SignalPlot:
    """The chosen scheme signal: one step line per series (layer/tensor; the hover names it), the
    knob-change markers, and a title that names the signal."""

    def __init__(self, state: Any, height: int = 260, min_width: int = 360) -> None:
        self.state = state
        self.source = ColumnDataSource(data={"xs": [], "ys": [], "series": [], "color": []})
        self.marks = ColumnDataSource(data={"step": np.array([], dtype=float)})
        fig = _figure("Scheme signal (precision, DFQ bits, exponents, BitOPs ...)", "step", "value", height,
                      min_width)
        lines = fig.multi_line(xs="xs", ys="ys", line_color="color", line_width=2, source=self.source)
        fig.add_tools(HoverTool(renderers=[lines], tooltips=[("series", "@series"), ("step", "$x{0}"),
                                                             ("value", "$y")]))
        fig.vspan(x="step", source=self.marks, line_color="black", line_alpha=0.5, line_width=1)
        self.figure = fig
        state.signals.add_subscriber(self._on_data)
        self._on_data(state.signals.data)

    def pane(self) -> pn.pane.Bokeh:
        return figure_pane(self.figure, "plot-signal")

    def _on_data(self, data: Any = None, **_: Any) -> None:
        s = self.state
        df = data if isinstance(data, pd.DataFrame) else pd.DataFrame(columns=["step", "value", "series"])
        xs, ys, names, colors = [], [], [], []
        for i, name in enumerate(dict.fromkeys(df["series"]) if len(df) else []):
            d = df[df["series"] == name].sort_values("step")
            x = d["step"].to_numpy(float)
            y = d["value"].to_numpy(float)
            if x.size:  # a step line (the value holds until the next row): x0 x1 x1 x2 ..., y0 y0 y1 y1 ...
                x = np.repeat(x, 2)[1:]
                y = np.repeat(y, 2)[:-1]
            xs.append(x)
            ys.append(y)
            names.append(str(name))
            colors.append(RUN_COLORS[i % len(RUN_COLORS)])
        self.source.data = {"xs": xs, "ys": ys, "series": names, "color": colors}
        if s.signal:
            title = f"Scheme signal: {s.signal}"
        elif s.run_id:
            title = "Scheme signal: none logged by this run yet"
        else:
            title = "Scheme signal (precision, DFQ bits, exponents, BitOPs ...)"
        self.figure.title.text = title
        self.figure.yaxis[0].axis_label = s.signal or "value"
        self.marks.data = {"step": np.asarray(list(s.markers), dtype=float)}
