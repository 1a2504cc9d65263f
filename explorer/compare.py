"""The Compare page: a thin view over :class:`CompareState`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import holoviews as hv
import panel as pn
import param
from panel.viewable import Viewer

from .compare_state import CompareState
from .comparison import Comparison, final_table
from .export import curves, grid_plot

__all__ = ["Compare"]

hv.renderer("bokeh")

_OPTS = dict(height=380, responsive=True, min_width=380)


class Compare(Viewer):
    """Compare stored runs: overlaid curves, final metrics, a grid heat map, one-click export.

    Example (Jupyter)::

        from explorer import Compare
        Compare()
    """

    state = param.ClassSelector(class_=CompareState, doc="The page's state (one per session).")

    def __init__(self, state: CompareState | None = None, **params: Any) -> None:
        super().__init__(state=state if state is not None else CompareState(), **params)
        s = self.state
        self._select = pn.widgets.MultiSelect(label="Runs (newest first)", options=self._options(),
                                              value=list(s.selected), size=14, width=330, css_classes=["run-select"])
        self._select.param.watch(lambda e: setattr(s, "selected", list(e.new)), "value")
        s.param.watch(self._sync_select, ["runs", "selected"])
        refresh = pn.widgets.Button.from_param(s.param.refresh, label="Refresh", width=90, description=None)
        controls = pn.Param(
            s, parameters=["metric", "metric2", "smooth", "grid_x", "grid_y", "grid_value"],
            widgets={"metric": {"type": pn.widgets.Select, "label": "Curve 1"},
                     "metric2": {"type": pn.widgets.Select, "label": "Curve 2"},
                     "smooth": {"type": pn.widgets.IntSlider, "label": "Smoothing (steps)"},
                     "grid_x": {"type": pn.widgets.Select, "label": "Grid x"},
                     "grid_y": {"type": pn.widgets.Select, "label": "Grid y"},
                     "grid_value": {"type": pn.widgets.Select, "label": "Grid value"}},
            show_name=False, width=330, margin=0)
        export = pn.widgets.Button.from_param(s.param.export, label="Export PNG / SVG / HTML", color="primary",
                                              width=220, css_classes=["btn-export"], description=None)
        downloads = pn.panel(pn.bind(self._downloads, s.param.exported), css_classes=["export-files"])
        message = pn.pane.Markdown(s.param.message, css_classes=["compare-status"], margin=(0, 10))
        sidebar = pn.Column(pn.pane.Markdown("### Runs", margin=(0, 5)), refresh, self._select, controls,
                            export, downloads, width=350)
        c1 = pn.pane.HoloViews(pn.bind(self._curves, s.param.comparison, s.param.metric, s.param.smooth),
                               css_classes=["plot-curve1"], sizing_mode="stretch_width")
        c2 = pn.pane.HoloViews(pn.bind(self._curves, s.param.comparison, s.param.metric2, s.param.smooth),
                               css_classes=["plot-curve2"], sizing_mode="stretch_width")
        table = pn.pane.DataFrame(pn.bind(self._table, s.param.comparison), index=False,
                                  float_format="{:.4g}".format, sizing_mode="stretch_width",
                                  css_classes=["final-table"])
        grid = pn.panel(pn.bind(self._grid, s.param.comparison, s.param.grid_x, s.param.grid_y,
                                s.param.grid_value), css_classes=["plot-grid"])
        main = pn.Column(message, pn.GridBox(c1, c2, ncols=2, sizing_mode="stretch_width"),
                         pn.pane.Markdown("**Final metrics**", margin=(0, 10)), table, grid,
                         sizing_mode="stretch_width")
        self._layout = pn.Row(sidebar, main, sizing_mode="stretch_width", css_classes=["compare"])

    def _options(self) -> dict[str, str]:
        return {label: rid for rid, label in self.state.labels().items()}

    def _sync_select(self, *events: Any) -> None:
        if any(e.name == "runs" for e in events):
            self._select.options = self._options()
        if list(self._select.value) != list(self.state.selected):
            self._select.value = list(self.state.selected)

    @staticmethod
    def _curves(comp: Comparison | None, metric: str, smooth: int) -> Any:
        if comp is None:
            return hv.Curve([], "step", metric).opts(title=metric, **_OPTS)
        return curves(comp, metric, smooth).opts(
            hv.opts.Curve(tools=["hover"], line_width=2), hv.opts.Scatter(size=7),
            hv.opts.Overlay(legend_position="bottom", **_OPTS))

    @staticmethod
    def _table(comp: Comparison | None) -> Any:
        import pandas as pd

        return final_table(comp) if comp is not None else pd.DataFrame()

    def _grid(self, comp: Comparison | None, x: str, y: str, value: str) -> Any:
        if comp is None or not x:
            return pn.pane.Markdown("*Grid heat map: select runs whose configs differ (e.g. a sweep over Ex x Mx).*")
        return pn.pane.HoloViews(grid_plot(comp, x, y, value).opts(
            cmap="viridis", colorbar=True, tools=["hover"], height=330, width=520), sizing_mode="fixed")

    @staticmethod
    def _downloads(files: list[str]) -> Any:
        if not files:
            return pn.Column()
        return pn.Column(*[pn.widgets.FileDownload(file=f, filename=Path(f).name, color="light", width=220,
                                                   embed=False) for f in files])

    def __panel__(self) -> pn.Row:
        return self._layout
