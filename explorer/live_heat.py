"""The Live Training page's ARE heat maps (the MLS paper's Fig. 3, live) as plain Bokeh figures.

A HoloViews redraw of a heat map costs the server 0.1-0.3 s with every core busy (element, plot and
range machinery, per redraw, four maps per cycle) while the event loop, and so every click, waits.
Here a redraw replaces the cells' ``ColumnDataSource.data`` and sets the colour mapper's range,
the title and the layer ticks in place: no Bokeh model is created, none is replaced, so the page's
model graph never changes and a redraw is a few milliseconds of data.

:class:`HeatMap` subscribes to one of :class:`explorer.live_state.LiveTrainingState`'s ``heat_of``
pipes and redraws when the state sends it rows; what it shows (the live format or a shadow, the
colour range, the reason a map is empty) follows the state as the HoloViews version did.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import panel as pn
from bokeh.models import ColorBar, ColumnDataSource, FixedTicker, HoverTool, LinearColorMapper
from bokeh.palettes import Viridis256
from bokeh.plotting import figure

from . import plots

__all__ = ["HeatMap", "TENSOR_TITLES"]

TENSOR_TITLES = {"w": "W (weights)", "a": "A (activations)", "e": "E (errors)", "g": "G (weight gradients)"}
_VALUE = "log10_ARE"  # the cells' column (HoloViews' name for "log10 ARE")
_TOOLS = "pan,wheel_zoom,box_zoom,reset,save"


class HeatMap:
    """The ARE heat map of one tensor kind (``w``, ``a``, ``e`` or ``g``) on one Live page.

    Args:
        state: the page's :class:`~explorer.live_state.LiveTrainingState`.
        tensor: which tensor kind's map.
        height, min_width: the figure's height and narrowest width in pixels.
    """

    def __init__(self, state: Any, tensor: str, height: int = 260, min_width: int = 360) -> None:
        self.state = state
        self.tensor = tensor
        empty = plots.are_cells(pd.DataFrame(), [], _VALUE)
        self.cells = ColumnDataSource(data=empty)
        self.marks = ColumnDataSource(data={"step": np.array([], dtype=float)})
        self.mapper = LinearColorMapper(palette=Viridis256, low=-4.0, high=0.0)
        self.ticker = FixedTicker(ticks=[])
        fig = figure(title=f"ARE of {TENSOR_TITLES[tensor]}", height=height, min_width=min_width,
                     sizing_mode="stretch_width", tools=_TOOLS, toolbar_location="right",
                     x_axis_label="step", y_axis_label="layer")
        fig.toolbar.logo = None
        fig.yaxis.ticker = self.ticker
        quads = fig.quad(left="step", right="x1", bottom="y0", top="y1", source=self.cells, line_alpha=0,
                         fill_color={"field": _VALUE, "transform": self.mapper})
        fig.add_tools(HoverTool(renderers=[quads], tooltips=[("step", "@step"), ("layer", "@layer"),
                                                             ("ARE", "@value{0.0000e}"), ("log10 ARE", f"@{_VALUE}")]))
        fig.vspan(x="step", source=self.marks, line_color="black", line_alpha=0.5, line_width=1)
        self.colorbar = ColorBar(color_mapper=self.mapper, title="log10 ARE", visible=False)
        fig.add_layout(self.colorbar, "right")
        self.figure = fig
        state.heat_of[tensor].add_subscriber(self._on_rows)
        self._on_rows(state.heat_of[tensor].data)

    def pane(self) -> pn.pane.Bokeh:
        """The figure as a Panel pane (CSS class ``plot-heat-<tensor>``)."""
        return pn.pane.Bokeh(self.figure, css_classes=[f"plot-heat-{self.tensor}"], sizing_mode="stretch_width")

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
        self.cells.data = plots.are_cells(d, layers, _VALUE)
        clim = s.heat_clim(tensor)
        if clim is not None and all(math.isfinite(v) for v in clim):
            self.mapper.update(low=float(clim[0]), high=float(clim[1]))
        self.colorbar.visible = bool(len(d))  # an empty map keeps no old scale
        ticks = list(range(len(layers)))
        if list(self.ticker.ticks) != ticks:
            self.ticker.ticks = ticks
        overrides = {i: str(n) for i, n in enumerate(layers)}
        if self.figure.yaxis[0].major_label_overrides != overrides:
            self.figure.yaxis[0].major_label_overrides = overrides
        self.figure.title.text = title
        self.marks.data = {"step": np.asarray(list(s.markers), dtype=float)}
