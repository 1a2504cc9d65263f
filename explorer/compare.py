"""The Compare page: a thin view over :class:`CompareState`.

Runs are picked in a searchable table (``pn.widgets.Tabulator``: a checkbox per row, a filter under
each column title, pages of 12 rows), as in W&B's runs table. The curves carry no legend (a Bokeh
legend of many long labels stretches the page): a list of the selected runs with their colour
swatches sits under them. The grid heat map writes each cell's value on it, and defaults to the
config keys that differ across the selected runs (:meth:`Comparison.varying_keys`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import holoviews as hv
import panel as pn
from bokeh.models.widgets.tables import NumberFormatter
import param
from panel.viewable import Viewer

from .compare_state import CompareState
from .comparison import Comparison, final_table
from .export import curves, grid_plot
from . import plots
from .plots import RUN_COLORS

__all__ = ["Compare", "legend_html"]

hv.renderer("bokeh")

_OPTS = dict(height=380, responsive=True, min_width=320)
_FILTERS = {c: {"type": "input", "func": "like", "placeholder": "filter"}
            for c in ("run", "label", "scheme", "dataset", "model", "name", "status")}


def legend_html(comp: Comparison | None) -> str:
    """The selected runs with the colour of their curves (wrapping rows of swatch + label)."""
    if comp is None:
        return ""
    return plots.legend_html([(comp.labels[rid], RUN_COLORS[i % len(RUN_COLORS)], "swatch")
                              for i, rid in enumerate(comp.run_ids)], css_class="run-legend-item")


class Compare(Viewer):
    """Compare stored runs: overlaid curves, final metrics, a grid heat map, one-click export.

    Example (Jupyter)::

        from explorer import Compare
        Compare()
    """

    # set by __init__ (never None after it): typed without None
    state = cast("param.ClassSelector[CompareState]",
                 param.ClassSelector(class_=CompareState, doc="The page's state (one per session)."))

    def __init__(self, state: CompareState | None = None, **params: Any) -> None:
        super().__init__(state=state if state is not None else CompareState(), **params)
        pn.extension("tabulator")  # the table's JS and CSS, in this session's page (idempotent)
        s = self.state
        self._table = pn.widgets.Tabulator(
            s.runs_table(), selectable="checkbox", header_filters=_FILTERS, pagination="local", page_size=12,
            show_index=False, disabled=True, layout="fit_data_table", sizing_mode="stretch_width",
            formatters={"test acc": NumberFormatter(format="0.0%")},
            css_classes=["run-table"])
        self._syncing = False
        self._sync_table()
        self._table.param.watch(self._on_selection, "selection")
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
            show_name=False, width=280, margin=0)
        export = pn.widgets.Button.from_param(s.param.export, label="Export PNG / SVG / HTML", color="primary",
                                              width=220, css_classes=["btn-export"], description=None)
        downloads = pn.panel(pn.bind(self._downloads, s.param.exported), css_classes=["export-files"])
        message = pn.pane.Markdown(s.param.message, css_classes=["compare-status"], margin=(0, 10))
        sidebar = pn.Column(pn.pane.Markdown("### Plots", margin=(0, 5)), refresh, controls,
                            export, downloads, width=300)
        c1 = pn.pane.HoloViews(pn.bind(self._curves, s.param.comparison, s.param.metric, s.param.smooth),
                               css_classes=["plot-curve1"], sizing_mode="stretch_width")
        c2 = pn.pane.HoloViews(pn.bind(self._curves, s.param.comparison, s.param.metric2, s.param.smooth),
                               css_classes=["plot-curve2"], sizing_mode="stretch_width")
        legend = pn.pane.HTML(pn.bind(legend_html, s.param.comparison), css_classes=["run-legend"],
                              sizing_mode="stretch_width", margin=(0, 10))
        table = pn.pane.DataFrame(pn.bind(self._final, s.param.comparison), index=False,
                                  float_format="{:.4g}".format, sizing_mode="stretch_width",
                                  styles={"overflow-x": "auto"}, css_classes=["final-table"])
        grid = pn.panel(pn.bind(self._grid, s.param.comparison, s.param.grid_x, s.param.grid_y,
                                s.param.grid_value), css_classes=["plot-grid"])
        main = pn.Column(pn.pane.Markdown("### Runs (tick to compare; type in a column's filter to search)",
                                          margin=(0, 10)),
                         self._table, message, pn.GridBox(c1, c2, ncols=2, sizing_mode="stretch_width"), legend,
                         pn.pane.Markdown("**Final metrics**", margin=(0, 10)), table, grid,
                         sizing_mode="stretch_width")
        self._layout = pn.Row(sidebar, main, sizing_mode="stretch_width", css_classes=["compare"])

    # ------------------------------------------------------------ runs table <-> state
    def _ids(self) -> list[str]:
        return [str(r) for r in self.state.param.selected.objects]

    def _sync_table(self) -> None:
        ids = self._ids()
        self._syncing = True
        try:
            self._table.selection = [ids.index(r) for r in self.state.selected if r in ids]
        finally:
            self._syncing = False

    def _on_selection(self, event: Any) -> None:
        if self._syncing:
            return
        ids = self._ids()
        # keep the order of the runs already selected (their colours), new ones after them
        chosen = [ids[i] for i in event.new if 0 <= i < len(ids)]
        keep = [r for r in self.state.selected if r in chosen]
        self.state.selected = keep + [r for r in chosen if r not in keep]

    def _sync_select(self, *events: Any) -> None:
        if any(e.name == "runs" for e in events):
            self._syncing = True
            try:
                self._table.value = self.state.runs_table()
            finally:
                self._syncing = False
        ids = self._ids()
        want = sorted(ids.index(r) for r in self.state.selected if r in ids)
        if sorted(self._table.selection) != want:
            self._sync_table()

    # ------------------------------------------------------------ plots
    @staticmethod
    def _curves(comp: Comparison | None, metric: str, smooth: int) -> Any:
        if comp is None:
            return hv.Curve([], "step", metric).opts(title=metric, **_OPTS)
        return curves(comp, metric, smooth).opts(
            hv.opts.Curve(tools=["hover"], line_width=2), hv.opts.Scatter(size=7),
            hv.opts.Overlay(show_legend=False, **_OPTS))

    @staticmethod
    def _final(comp: Comparison | None) -> Any:
        import pandas as pd

        return final_table(comp) if comp is not None else pd.DataFrame()

    def _grid(self, comp: Comparison | None, x: str, y: str, value: str) -> Any:
        if comp is None or not x:
            return pn.pane.Markdown("*Grid heat map: select runs whose configs differ (e.g. a sweep over Ex x Mx).*")
        return pn.pane.HoloViews(grid_plot(comp, x, y, value).opts(
            hv.opts.HeatMap(cmap="viridis", colorbar=True, tools=["hover"], height=330, responsive=True,
                            min_width=320, max_width=720, xrotation=20)), sizing_mode="stretch_width")

    @staticmethod
    def _downloads(files: list[str]) -> Any:
        if not files:
            return pn.Column()
        return pn.Column(*[pn.widgets.FileDownload(file=f, filename=Path(f).name, color="light", width=220,
                                                   embed=False) for f in files])

    def __panel__(self) -> pn.Row:
        return self._layout
