"""The Live Training page's cell plots over steps as plain Bokeh figures: the ARE heat maps (the
MLS paper's Fig. 3, live) and the weight histogram over time.

A HoloViews redraw of such a plot costs the server 0.1-0.4 s with every core busy (element, plot
and range machinery, per redraw; five plots per cycle) while the event loop, and so every click,
waits. Here a redraw replaces the cells' ``ColumnDataSource.data`` and sets the colour mapper's
range, the title, the colour bar's visibility and the y ticks in place: no Bokeh model is created
or replaced, so the page's model graph never changes and a redraw is a few milliseconds of data.

:class:`HeatMap` subscribes to one of :class:`explorer.live_state.LiveTrainingState`'s ``heat_of``
pipes, :class:`WeightHistogram` to its ``whist`` pipe; each redraws when the state sends it rows.
Both draw the knob-change markers (``state.markers``) and, while empty, the reason in the plot area
(a ``text`` column, as the other plots' notes).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence, cast

import numpy as np
import pandas as pd
import panel as pn
from bokeh.models import ColorBar, ColumnDataSource, FixedTicker, HoverTool, LinearColorMapper  # type: ignore[attr-defined]
from bokeh.palettes import Magma256, Viridis256
from bokeh.plotting import figure

from . import plots
from .widgets import FIGURE_TOOLS, figure_pane

if TYPE_CHECKING:
    from bokeh.models.annotations.labels import Title

__all__ = ["CellFigure", "HeatMap", "WeightHistogram", "TENSOR_TITLES", "set_axis_labels"]

TENSOR_TITLES = {"w": "W (weights)", "a": "A (activations)", "e": "E (errors)", "g": "G (weight gradients)"}
_ARE = "log10_ARE"  # the cells' colour column (HoloViews' name for "log10 ARE")
_COUNT = "log10_count"


class CellFigure:
    """A figure of rectangular cells (columns step, x1, y0, y1 and ``color``) coloured through a
    linear colour map, with a colour bar shown only while there are cells, knob-change markers and a
    note in the plot area while it is empty; every update is in place (:meth:`show`)."""

    def __init__(self, title: str, y_label: str, color: str, color_title: str, palette: Sequence[str],
                 tooltips: list[tuple[str, str]], css_class: str, height: int = 260, min_width: int = 360) -> None:
        self.color = color
        self.css_class = css_class
        self.cells = ColumnDataSource(data={c: np.array([], dtype=float) for c in ("step", "x1", "y0", "y1", color)})
        self.marks = ColumnDataSource(data={"step": np.array([], dtype=float)})
        self.notes = ColumnDataSource(data={"x": [], "y": [], "text": []})
        self.mapper = LinearColorMapper(palette=list(palette), low=0.0, high=1.0)
        fig = figure(title=title, height=height, min_width=min_width, sizing_mode="stretch_width", tools=FIGURE_TOOLS,
                     toolbar_location="right", x_axis_label="step", y_axis_label=y_label)
        fig.toolbar.logo = None
        quads = fig.quad(left="step", right="x1", bottom="y0", top="y1", source=self.cells, line_alpha=0,
                         fill_color={"field": color, "transform": self.mapper})
        fig.add_tools(HoverTool(renderers=[quads], tooltips=tooltips))
        fig.vspan(x="step", source=self.marks, line_color="black", line_alpha=0.5, line_width=1)
        fig.text(x="x", y="y", text="text", source=self.notes, text_color="#555555", text_font_size="11pt",
                 text_align="center", text_baseline="middle")
        self.colorbar = ColorBar(color_mapper=self.mapper, title=color_title, visible=False)
        fig.add_layout(self.colorbar, "right")
        self.figure = fig

    def pane(self) -> pn.pane.Bokeh:
        return figure_pane(self.figure, self.css_class)

    def show(self, cells: dict[str, Any], title: str, markers: Sequence[float], clim: tuple[float, float] | None = None,
             note: str = "") -> None:
        """Draw ``cells`` (a dict of columns) under ``title`` with colour range ``clim`` (default: the
        cells' own), the ``markers`` and, when there are no cells, ``note``."""
        n = len(cells.get("step", ()))
        self.cells.data = cells
        values = np.asarray(cells.get(self.color, ()), dtype=float)
        finite = values[np.isfinite(values)] if n else values
        if clim is None and finite.size:
            lo, hi = float(finite.min()), float(finite.max())
            clim = (lo, hi if hi > lo else lo + 1.0)
        if clim is not None and all(math.isfinite(v) for v in clim):
            self.mapper.update(low=float(clim[0]), high=float(clim[1]))
        self.colorbar.visible = bool(n)  # an empty map keeps no old scale
        cast("Title", self.figure.title).text = title  # a figure made with a title string holds a Title
        self.marks.data = {"step": np.asarray(list(markers), dtype=float)}
        text = [note] if note and not n else []
        self.notes.data = {"x": [0.5] * len(text), "y": [0.5] * len(text), "text": text}

    def set_y_labels(self, labels: Sequence[str]) -> None:
        """One y tick per label (row ``i`` is ``labels[i]``)."""
        set_axis_labels(self.figure.yaxis[0], labels)


def set_axis_labels(axis: Any, labels: Sequence[str]) -> None:
    """One tick of ``axis`` per label (position ``i`` is ``labels[i]``), set in place: the same ticker
    model while it exists (a new model would change the page's model graph)."""
    ticks = list(range(len(labels)))
    if not isinstance(axis.ticker, FixedTicker):
        axis.ticker = FixedTicker(ticks=ticks)
    elif list(axis.ticker.ticks) != ticks:
        axis.ticker.ticks = ticks
    overrides = {i: str(n) for i, n in enumerate(labels)}
    if axis.major_label_overrides != overrides:
        axis.major_label_overrides = overrides


class HeatMap(CellFigure):
    """The ARE heat map of one tensor kind (``w``, ``a``, ``e`` or ``g``) on one Live page.

    Args:
        state: the page's :class:`~explorer.live_state.LiveTrainingState`.
        tensor: which tensor kind's map.
        height, min_width: the figure's height and narrowest width in pixels.
    """

    def __init__(self, state: Any, tensor: str, height: int = 260, min_width: int = 360) -> None:
        super().__init__(f"ARE of {TENSOR_TITLES[tensor]}", "layer", _ARE, "log10 ARE", Viridis256,
                         [("step", "@step"), ("layer", "@layer"), ("ARE", "@value{0.0000e}"),
                          ("log10 ARE", f"@{_ARE}")], f"plot-heat-{tensor}", height, min_width)
        self.figure.yaxis[0].ticker = FixedTicker(ticks=[])
        self.state = state
        self.tensor = tensor
        state.heat_of[tensor].add_subscriber(self._on_rows)
        self._on_rows(state.heat_of[tensor].data)

    def _on_rows(self, data: Any = None, **_: Any) -> None:
        s, tensor = self.state, self.tensor
        data = data if data is not None else pd.DataFrame()
        title = f"ARE of {TENSOR_TITLES[tensor]}"
        d = data[(data["tensor"] == tensor) & (data["source"] == s.heat_source)] if len(data) else data
        if not len(d) and len(data):
            # e.g. G is not quantized by the scheme: show it in a shadow format instead
            alt = data[(data["tensor"] == tensor) & (data["source"] != "live")]
            if len(alt):
                src = str(alt["source"].iloc[0])
                d = alt[alt["source"] == src]
                title += f" in {src} (shadow)"
            else:
                title += " - not measured"
        elif not len(data) and s.run_id:
            title += " - none (this scheme logs no ARE)" if s.status not in ("running", "paused") else ""
        elif s.heat_source != "live":
            title += f" in {s.heat_source} (shadow)"
        layers = list(s.layers)
        self.set_y_labels(layers)
        self.show(plots.are_cells(d, layers, _ARE), title, s.markers, s.heat_clim(tensor) or (-4.0, 0.0))


class WeightHistogram(CellFigure):
    """The weight histogram of the chosen layer over time (log2|w| bins per telemetry step, colour
    log10 count) on one Live page, with the reason it is empty in the plot area."""

    def __init__(self, state: Any, height: int = 260, min_width: int = 360) -> None:
        super().__init__("Weight histogram over time", "log2|w|", _COUNT, "log10 count", Magma256,
                         [("step", "@step"), ("log2|w|", "@bin"), ("count", "@count")], "plot-whist",
                         height, min_width)
        self.state = state
        state.whist.add_subscriber(self._on_rows)
        self._on_rows(state.whist.data)

    def _on_rows(self, data: Any = None, **_: Any) -> None:
        s = self.state
        title = "Weight histogram over time" + (f": {s.hist_layer}" if s.hist_layer else "")
        self.show(plots.weight_hist_cells(data if data is not None else pd.DataFrame()), title, s.markers,
                  note=s.whist_note())
