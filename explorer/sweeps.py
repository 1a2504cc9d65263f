"""The Sweeps page: a thin view over :class:`SweepsState`.

A heat map per facet value (``hv.HeatMap`` with the values as ``hv.Labels``), filled live: a
periodic callback (every ``period`` ms) re-reads the store through :meth:`SweepsState.refresh`,
and new values are pushed into the existing plots through ``hv.streams.Pipe`` (the figure is
rebuilt only when the sweep or the axes change). Clicking a cell (``hv.streams.Tap``) opens its
runs through ``SweepsState.open_runs`` (the app opens them in Compare).
"""

from __future__ import annotations

from typing import Any, cast

import holoviews as hv
import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer

from core.store import SweepStatus

from .sweeps_state import ALL, CellState, SweepsState, value_range

__all__ = ["Sweeps", "heatmap", "heatmap_cells", "heatmap_labels", "plot_data", "STATUS_TEXT_COLORS"]

hv.renderer("bokeh")

#: label colour of the cells that have no value
STATUS_TEXT_COLORS: dict[str, str] = {CellState.DIVERGED: "#9b0d1e", CellState.FAILED: "#9b0d1e",
                                      CellState.STOPPED: "#444444", CellState.RUNNING: "#1f4e9b",
                                      CellState.PENDING: "#666666"}
_NAN_COLOR = "#e3e3e3"
_HOVER_COLUMNS = ("x", "y", "value", "status", "label", "detail", "counts", "over", "runs", "config", "error", "hatch")


def _palette(reverse: bool) -> list[str]:
    from bokeh.palettes import Viridis256

    return list(reversed(Viridis256)) if reverse else list(Viridis256)


def _text_colors(frame: pd.DataFrame, clim: tuple[float, float], palette: list[str]) -> list[str]:
    """Black on light cells, white on dark ones; the status colours where there is no value."""
    lo, hi = clim
    out = []
    for v, s in zip(frame["value"], frame["status"]):
        if s in (CellState.DONE, CellState.STOPPED) and v == v:
            t = 0.0 if hi <= lo else min(max((float(v) - lo) / (hi - lo), 0.0), 1.0)
            c = palette[int(round(t * (len(palette) - 1)))]
            r, g, b = (int(c[i:i + 2], 16) for i in (1, 3, 5))
            out.append("black" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "white")
        else:
            out.append(STATUS_TEXT_COLORS.get(s, "#333333"))
    return out


def plot_data(frame: pd.DataFrame, clim: tuple[float, float], palette: list[str]) -> pd.DataFrame:
    df = frame.drop(columns=["run_ids"]).copy()
    df["hatch"] = [("/" if s == CellState.DIVERGED else "x" if s == CellState.FAILED else " ") for s in df["status"]]
    df["tc"] = _text_colors(df, clim, palette)
    for c in df.columns:
        if c not in ("value", "std", "n", "cells", "ix", "iy", "ifacet"):
            df[c] = df[c].astype(object)  # HoloViews reshapes columns; Arrow strings cannot
    df["value"] = df["value"].astype(float)
    return df


def _hatch_hook(plot: Any, element: Any) -> None:
    """Diverged cells hatched '/', failed ones 'x' (the ``hatch`` column of the source)."""
    from bokeh.core.property.vectorization import field

    glyph = plot.handles.get("glyph")
    if glyph is not None:
        glyph.hatch_pattern = field("hatch")
        glyph.hatch_color = "#8c8c8c"
        glyph.hatch_alpha = 0.9
        glyph.hatch_scale = 10


def _dims(x_values: list[str], y_values: list[str], x_label: str, y_label: str) -> list[hv.Dimension]:
    return [hv.Dimension("x", label=x_label, values=list(x_values)),
            hv.Dimension("y", label=y_label or " ", values=list(y_values))]


def heatmap_cells(data: pd.DataFrame, x_values: list[str], y_values: list[str], *, x_label: str, y_label: str,
                  value_label: str, clim: tuple[float, float], palette: list[str], title: str = "",
                  width: int | None = None, height: int = 320, percent: bool = False) -> hv.HeatMap:
    """The coloured cells of one heat map (hover: coordinates, value ± std, n, status, runs, config)."""
    vdims = [hv.Dimension("value", label=value_label), "status", "label", "detail", "counts", "over", "runs",
             "config", "error", "hatch"]
    cols = ["x", "y", *[v if isinstance(v, str) else v.name for v in vdims]]
    hm = hv.HeatMap(data[cols] if len(data) else pd.DataFrame({c: [] for c in cols}),
                    kdims=_dims(x_values, y_values, x_label, y_label), vdims=vdims)
    tips = [(x_label, "@x")] + ([(y_label, "@y")] if y_label else []) + [
        (value_label, "@detail"), ("status", "@status (@counts)"), ("over", "@over"), ("runs", "@runs"),
        ("config", "@config"), ("error", "@error")]
    size = dict(width=width) if width else dict(responsive=True, min_width=360)
    cbar: dict[str, Any] = {"title": value_label}
    if percent:
        from bokeh.models import NumeralTickFormatter

        cbar["formatter"] = NumeralTickFormatter(format="0%")
    return hm.opts(cmap=palette, clim=clim, colorbar=True, clipping_colors={"NaN": _NAN_COLOR}, line_color="white",
                   line_width=2, tools=["hover", "tap"], hover_tooltips=tips, hooks=[_hatch_hook], xrotation=0,
                   title=title, height=height, toolbar="right", default_tools=["save", "reset"],
                   colorbar_opts=cbar, nonselection_alpha=1.0, selection_alpha=1.0, **size)


def heatmap_labels(data: pd.DataFrame, x_values: list[str], y_values: list[str], *, x_label: str,
                   y_label: str) -> hv.Labels:
    """The text of each cell ("43.2%", "Div.", "failed", "run 40%", "...")."""
    cols = ["x", "y", "label", "tc"]
    lab = hv.Labels(data[cols] if len(data) else pd.DataFrame({c: [] for c in cols}),
                    kdims=_dims(x_values, y_values, x_label, y_label), vdims=["label", "tc"])
    return lab.opts(text_color=hv.dim("tc"), text_font_size="13px", text_font_style="bold",
                    default_tools=["save", "reset"])


def heatmap(data: pd.DataFrame, x_values: list[str], y_values: list[str], *, x_label: str, y_label: str,
            value_label: str, clim: tuple[float, float], palette: list[str], title: str = "",
            width: int | None = None, height: int = 320, percent: bool = False) -> hv.Overlay:
    """One static heat map of the Sweeps page: ``hv.HeatMap`` (colour = value) with ``hv.Labels`` on top.

    ``data`` is a facet's rows of :attr:`SweepsState.frame` prepared by :func:`plot_data`.
    """
    return (heatmap_cells(data, x_values, y_values, x_label=x_label, y_label=y_label, value_label=value_label,
                          clim=clim, palette=palette, title=title, width=width, height=height, percent=percent)
            * heatmap_labels(data, x_values, y_values, x_label=x_label, y_label=y_label))


class Sweeps(Viewer):
    """Sweeps as live heat maps: choose axes, facet and metric; start, stop, resume; click a cell to compare.

    Example (Jupyter)::

        from explorer import Sweeps
        Sweeps()
    """

    # set by __init__ (never None after it): typed without None
    state = cast("param.ClassSelector[SweepsState]",
                 param.ClassSelector(class_=SweepsState, doc="The page's state (one per session)."))
    period = param.Integer(default=1000, bounds=(100, 60_000), doc="Milliseconds between re-reads of the store.")

    def __init__(self, state: SweepsState | None = None, **params: Any) -> None:
        super().__init__(state=state if state is not None else SweepsState(), **params)
        s = self.state
        self._pipes: dict[str, hv.streams.Pipe] = {}
        self._taps: list[hv.streams.Tap] = []
        self._structure: tuple[Any, ...] | None = None
        self._callback: Any = None
        self._ticks = 0
        self._clim: tuple[float, float] = (0.0, 1.0)
        controls = pn.Param(
            s, parameters=["sweep", "x", "y", "facet", "agg", "metric"],
            widgets={"sweep": {"type": pn.widgets.Select, "name": "Sweep"},
                     "x": {"type": pn.widgets.Select, "name": "x axis"},
                     "y": {"type": pn.widgets.Select, "name": "y axis"},
                     "facet": {"type": pn.widgets.Select, "name": "Facet (one plot per value)"},
                     "agg": {"type": pn.widgets.Select, "name": "Over the other keys"},
                     "metric": {"type": pn.widgets.Select, "name": "Metric"}},
            show_name=False, width=300, margin=0, css_classes=["sweeps-controls"])
        refresh = pn.widgets.Button.from_param(s.param.refresh_action, label="Refresh", width=90, description=None)
        files = pn.widgets.Select.from_param(s.param.sweep_file, name="Sweep file", width=290,
                                             css_classes=["sweep-file"])
        self._start = pn.widgets.Button.from_param(s.param.start, label="Start", button_type="primary", width=90,
                                                   css_classes=["btn-sweep-start"], description=None)
        self._stop = pn.widgets.Button.from_param(s.param.stop, label="Stop", button_type="danger", width=90,
                                                  css_classes=["btn-sweep-stop"], description=None)
        self._resume = pn.widgets.Button.from_param(s.param.resume, label="Resume", width=90,
                                                    css_classes=["btn-sweep-resume"], description=None)
        workers = pn.widgets.IntInput.from_param(s.param.workers, name="Workers (0 = one per core)", width=290,
                                                 css_classes=["sweep-workers"])
        folder = pn.pane.Markdown(f"<small>files in `{s.sweeps_dir}`</small>", margin=(0, 10), width=300)
        sidebar = pn.Column(pn.pane.Markdown("### Sweeps", margin=(0, 5)), refresh, controls,
                            pn.pane.Markdown("### Run a sweep", margin=(10, 5, 0, 5)), files, folder, workers,
                            pn.Row(self._start, self._stop, self._resume, margin=0), width=320,
                            css_classes=["sweeps-sidebar"])
        bold_progress = pn.bind(lambda t: f"**{t}**" if t else "", s.param.progress)
        progress = pn.pane.Markdown(bold_progress, css_classes=["sweeps-progress"], margin=(0, 10))
        message = pn.pane.Markdown(s.param.message, css_classes=["sweeps-message"], margin=(0, 10))
        self._plots = pn.Column(sizing_mode="stretch_width", css_classes=["sweeps-heatmap"], min_height=340)
        self._table = pn.pane.DataFrame(pd.DataFrame(), index=False, sizing_mode="stretch_width",
                                        css_classes=["sweeps-table"], max_height=320)
        hint = pn.pane.Markdown("<small>Click a cell to open its runs in Compare. Grey cells have no value yet; "
                                "<b>Div.</b> (hatched): training diverged; <b>failed</b>: error or lost "
                                "worker.</small>", margin=(0, 10))
        main = pn.Column(progress, message, self._plots, hint, pn.pane.Markdown("**Cells**", margin=(0, 10)),
                         self._table, sizing_mode="stretch_width")
        self._layout = pn.Row(sidebar, main, sizing_mode="stretch_width", css_classes=["sweeps"])
        s.param.watch(self._on_frame, ["frame"])
        s.param.watch(self._on_status, ["sweep_status", "sweep"])
        self._on_status()
        self._redraw(force=True)
        self._start_polling()

    # ----------------------------------------------------------- buttons
    def _on_status(self, *events: Any) -> None:
        st = self.state.sweep_status
        active = st in (SweepStatus.RUNNING.value, SweepStatus.STOPPING.value)
        self._stop.disabled = st != SweepStatus.RUNNING.value
        self._resume.disabled = active or not self.state.sweep

    # ----------------------------------------------------------- plots
    def _on_frame(self, *events: Any) -> None:
        self._redraw()

    def _redraw(self, force: bool = False) -> None:
        s = self.state
        frame = s.frame
        if frame is None or not len(frame):
            self._structure = None
            self._pipes = {}
            self._taps = []
            self._plots.objects = [pn.pane.Markdown(
                "*No sweep to show yet.* Choose a sweep file and press **Start**, or run "
                "`python -m core.sweep run sweeps/FILE.toml` - the grid fills here as its cells finish.",
                margin=(10, 10))]
            self._table.object = pd.DataFrame()
            return
        m = s.metric_info()
        palette = _palette(reverse=not m.higher_is_better)
        clim = value_range(frame)
        xo = list(frame.sort_values("ix")["x"].drop_duplicates())
        yo = list(frame.sort_values("iy")["y"].drop_duplicates())
        fo = list(frame.sort_values("ifacet")["facet"].drop_duplicates())
        structure = (s.sweep, s.x, s.y, s.facet, s.metric, s.agg, tuple(xo), tuple(yo), tuple(fo))
        self._clim = clim
        data = plot_data(frame, clim, palette)
        if not force and structure == self._structure and set(self._pipes) == set(fo):
            for f, pipe in self._pipes.items():
                pipe.send(data[data["facet"] == f])
        else:
            self._build(data, xo, yo, fo, clim, palette, m)
            self._structure = structure
        self._table.object = self._cells_table(frame)

    def _build(self, data: pd.DataFrame, xo: list[str], yo: list[str], fo: list[str], clim: tuple[float, float],
               palette: list[str], metric: Any) -> None:
        s = self.state
        height = max(240, min(640, 70 * len(yo) + 150))
        faceted = bool(s.facet)
        width = 460 if faceted else None
        self._pipes = {}
        self._taps = []
        plots = []
        percent = "%" in metric.fmt
        for f in fo:
            pipe = hv.streams.Pipe(data=data[data["facet"] == f])
            title = f"{s.facet} = {f}" if faceted else f"{s.sweep}: {metric.title}"
            cells_kw = dict(x_label=s.x, y_label=s.y, value_label=metric.title, palette=palette, title=title,
                            width=width, height=height, percent=percent)
            cells = hv.DynamicMap(self._cells_callback(xo, yo, cells_kw), streams=[pipe])
            labels = hv.DynamicMap(self._labels_callback(xo, yo, s.x, s.y), streams=[pipe])
            tap = hv.streams.Tap(source=cells, x=None, y=None)  # on the HeatMap's own DynamicMap
            tap.add_subscriber(lambda x, y, f=f: self._tapped(x, y, f))
            self._pipes[f] = pipe
            self._taps.append(tap)
            plots.append(cells * labels)
        obj = plots[0] if len(plots) == 1 else hv.Layout(plots).cols(2).opts(shared_axes=False)
        pane = pn.pane.HoloViews(obj, sizing_mode="stretch_width", css_classes=["sweeps-plot"],
                                 linked_axes=False)
        self._plots.objects = [pane]

    def _cells_callback(self, xo: list[str], yo: list[str], kw: dict[str, Any]) -> Any:
        def cb(data: pd.DataFrame) -> hv.HeatMap:
            return heatmap_cells(data, xo, yo, clim=self._clim, **kw)
        return cb

    @staticmethod
    def _labels_callback(xo: list[str], yo: list[str], x_label: str, y_label: str) -> Any:
        def cb(data: pd.DataFrame) -> hv.Labels:
            return heatmap_labels(data, xo, yo, x_label=x_label, y_label=y_label)
        return cb

    def _tapped(self, x: Any, y: Any, facet: str) -> None:
        if x is None:
            return
        s = self.state
        s.open_cell(str(x), str(y) if s.y and y is not None else None, facet if s.facet else None)

    @staticmethod
    def _cells_table(frame: pd.DataFrame) -> pd.DataFrame:
        cols = {"facet": "facet", "y": "y", "x": "x", "label": "value", "detail": "mean ± std (n)",
                "counts": "cells", "runs": "runs", "error": "error"}
        df = frame[list(cols)].rename(columns=cols)
        if not frame["facet"].astype(bool).any():
            df = df.drop(columns=["facet"])
        if (frame["y"] == ALL).all():
            df = df.drop(columns=["y"])
        if not frame["error"].astype(bool).any():
            df = df.drop(columns=["error"])
        return df

    # ----------------------------------------------------------- polling
    def _start_polling(self) -> None:
        self._callback = pn.state.add_periodic_callback(self._poll, period=self.period, start=True)
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.on_session_destroyed(self._destroyed)

    def set_polling(self, on: bool) -> None:
        """Start or pause the periodic re-read (the app pauses it while another tab is open)."""
        cb = self._callback
        if cb is None:
            return
        if on and not cb.running:
            self.state.refresh_files()
            self.state.refresh()
            cb.start()
        elif not on and cb.running:
            cb.stop()

    def _poll(self) -> None:
        self._ticks += 1
        if self._ticks % 5 == 0:
            self.state.refresh_files()
        self.state.refresh()

    def _destroyed(self, session_context: Any) -> None:
        if self._callback is not None:
            self._callback.stop()

    def __panel__(self) -> pn.Row:
        return self._layout
