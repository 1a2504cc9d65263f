"""The Format Lab page (a thin ``pn.viewable.Viewer`` over :class:`FormatLabState`)."""

from __future__ import annotations

from typing import Any

import holoviews as hv

import panel as pn
import param
from panel.viewable import Viewer

from . import plots
from .builder import SLOT_COLORS
from .lab_state import FormatLabState
from .widgets import SpecBuilderView

__all__ = ["FormatLab"]

hv.renderer("bokeh")  # registers the Bokeh backend and its options (no output, no extension JS)

_PLOT = dict(height=300, responsive=True, min_width=380, framewise=True, axiswise=True)


def _bokeh(obj: Any) -> Any:
    """Bokeh-only options for a Format Lab plot (each element rescales on every update)."""
    return obj.opts(
        hv.opts.Segments(**_PLOT, tools=["hover"], line_width=1.5, backend="bokeh"),
        hv.opts.Path(**_PLOT, tools=["hover"], line_width=2, backend="bokeh"),
        hv.opts.Histogram(**_PLOT, line_alpha=0, backend="bokeh"),
        hv.opts.Overlay(**_PLOT, backend="bokeh"),
    )


class FormatLab(Viewer):
    """Format Lab: up to four formats side by side on a synthetic or stored tensor.

    Example (Jupyter)::

        import panel as pn; pn.extension()
        from explorer import FormatLab
        FormatLab()
    """

    state = param.ClassSelector(class_=FormatLabState, doc="The page's state (one per session).")

    def __init__(self, state: FormatLabState | None = None, **params: Any) -> None:
        super().__init__(state=state if state is not None else FormatLabState(), **params)
        s = self.state
        data_widgets = pn.Param(
            s,
            parameters=["count", "rounding", "source", "distribution", "log2_scale", "binades", "size", "seed"],
            widgets={
                "count": {"type": pn.widgets.IntSlider, "label": "Formats", "throttled": False, "width": 230},
                "rounding": {"type": pn.widgets.Select, "label": "Rounding", "width": 230},
                "source": {"type": pn.widgets.RadioButtonGroup, "label": "Data", "width": 230},
                "distribution": {"type": pn.widgets.Select, "label": "Distribution", "width": 230},
                "log2_scale": {"type": pn.widgets.FloatSlider, "label": "log2 scale", "throttled": False,
                               "width": 230},
                "binades": {"type": pn.widgets.FloatSlider, "label": "Binades (log-uniform)", "throttled": False,
                            "width": 230},
                "size": {"type": pn.widgets.RadioButtonGroup, "label": "Elements", "width": 230},
                "seed": {"type": pn.widgets.IntInput, "label": "Seed", "width": 230},
            },
            show_name=False, width=250, margin=0,
        )
        stored_widgets = pn.Param(
            s, parameters=["run_id", "layer", "tensor", "step"],
            widgets={"run_id": {"type": pn.widgets.Select, "label": "Run", "width": 230},
                     "layer": {"type": pn.widgets.Select, "label": "Layer", "width": 230},
                     "tensor": {"type": pn.widgets.RadioButtonGroup, "label": "Tensor", "width": 230},
                     "step": {"type": pn.widgets.Select, "label": "Step", "width": 230}},
            show_name=False, width=250, margin=0,
        )
        refresh = pn.widgets.Button(label="Refresh runs", width=120)
        refresh.on_click(self._refresh)
        stored = pn.Column(pn.pane.Markdown("**Stored tensor**", margin=(0, 5)), refresh, stored_widgets,
                           visible=s.param.source.rx() == "stored run")
        sidebar = pn.Column(pn.pane.Markdown("### Data", margin=(0, 5)), data_widgets, stored, width=280)

        cards = pn.Row(*[
            pn.Column(SpecBuilderView(b, title=f"Format {i + 1}", color=SLOT_COLORS[i]),
                      visible=s.param.count.rx() > i, margin=0)
            for i, b in enumerate(s.builders)
        ], css_classes=["spec-cards"])

        results = s.param.results
        codebook = _bokeh(hv.DynamicMap(pn.bind(plots.codebook_plot, results))).opts(yaxis=None, backend="bokeh")
        density = _bokeh(hv.DynamicMap(pn.bind(plots.binade_plot, results)))
        error = _bokeh(hv.DynamicMap(pn.bind(lambda r: plots.error_plot(s.data, r), results)))
        hist = _bokeh(hv.DynamicMap(pn.bind(lambda r: plots.histogram_plot(s.data, r), results)))
        table = pn.pane.DataFrame(pn.bind(plots.metrics_frame, results), index=False,
                                  float_format="{:.4g}".format, sizing_mode="stretch_width",
                                  css_classes=["metrics-table"])
        status = pn.pane.Markdown(
            pn.bind(lambda m, t: f"{m}  \nupdate: **{1e3 * t:.0f} ms**", s.param.message, s.param.latency),
            css_classes=["lab-status"], margin=(0, 10))
        grid = pn.GridBox(
            pn.pane.HoloViews(codebook, css_classes=["plot-codebook"], sizing_mode="stretch_width"),
            pn.pane.HoloViews(density, css_classes=["plot-density"], sizing_mode="stretch_width"),
            pn.pane.HoloViews(error, css_classes=["plot-error"], sizing_mode="stretch_width"),
            pn.pane.HoloViews(hist, css_classes=["plot-hist"], sizing_mode="stretch_width"),
            ncols=2, sizing_mode="stretch_width",
        )
        main = pn.Column(cards, status, table, grid, sizing_mode="stretch_width")
        self._layout = pn.Row(sidebar, main, sizing_mode="stretch_width", css_classes=["format-lab"])

    def _refresh(self, _event: Any = None) -> None:
        self.state.refresh_runs()

    def __panel__(self) -> pn.Row:
        return self._layout
