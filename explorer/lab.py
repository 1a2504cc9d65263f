"""The Format Lab page (a thin ``pn.viewable.Viewer`` over :class:`FormatLabState`).

The four plots are plain Bokeh figures (:mod:`explorer.lab_plots`) with one glyph per slot, updated in
place: moving one knob re-sends that slot's data sources alone.
"""

from __future__ import annotations

import html
from typing import Any, cast

import holoviews as hv

import panel as pn
import param
from panel.viewable import Viewer

from . import plots
from .builder import SLOT_COLORS
from .lab_cards import LabSpecCard, labelled, layout_html
from .lab_plots import LabPlots, MetricsTable
from .lab_state import FormatLabState

__all__ = ["FormatLab"]

hv.renderer("bokeh")  # registers the Bokeh backend and its options (no output, no extension JS)

_W = 230


class FormatLab(Viewer):
    """Format Lab: up to four formats side by side on a synthetic or stored tensor, the bit layout of a
    typed value, and the block scales of a scaled format over the tensor as a 2-D weight.

    Example (Jupyter)::

        import panel as pn; pn.extension()
        from explorer import FormatLab
        FormatLab()
    """

    # set by __init__ (never None after it): typed without None
    state = cast("param.ClassSelector[FormatLabState]",
                 param.ClassSelector(class_=FormatLabState, doc="The page's state (one per session)."))

    def __init__(self, state: FormatLabState | None = None, **params: Any) -> None:
        super().__init__(state=state if state is not None else FormatLabState(), **params)
        s = self.state
        sidebar = pn.Column(pn.pane.Markdown("### Data", margin=(0, 5)), *self._data_widgets(), self._stored(),
                            width=250, css_classes=["lab-sidebar"])
        self._cards = [LabSpecCard(b, title=f"Format {i + 1}", color=SLOT_COLORS[i]) for i, b in enumerate(s.builders)]
        cards = pn.FlexBox(*[
            pn.Column(card, visible=s.param.count.rx() > i, margin=0) for i, card in enumerate(self._cards)
        ], css_classes=["spec-cards"], sizing_mode="stretch_width")
        s.param.watch(self._on_slot_errors, "slot_errors")
        self._on_slot_errors()

        self._plots = LabPlots(s)
        panes = self._plots.panes()
        self._table = MetricsTable(s)
        table = self._table.pane()
        # plain HTML of a fixed height: a new text changes no layout
        status_html = pn.bind(lambda m, t: f"{html.escape(m)}<br>update: <b>{1e3 * t:.0f} ms</b>", s.param.message,
                              s.param.latency)
        status = pn.pane.HTML(status_html, css_classes=["lab-status"], margin=(0, 10), height=40,
                              sizing_mode="stretch_width")
        grid = pn.GridBox(*panes, ncols=2, sizing_mode="stretch_width")
        main = pn.Column(cards, status, table, grid, self._bit_layout(), self._scales(), sizing_mode="stretch_width",
                         min_width=0)
        self._layout = pn.Row(sidebar, main, sizing_mode="stretch_width", css_classes=["format-lab"])

    # ------------------------------------------------------------------ parts
    def _data_widgets(self) -> list[Any]:
        s = self.state
        rbits = pn.widgets.IntSlider.from_param(s.param.rbits, label="Random bits K (stochastic_rbits)", width=_W,
                                                visible=s.param.rounding.rx() == "stochastic_rbits")
        return [
            pn.widgets.IntSlider.from_param(s.param.count, label="Formats", width=_W),
            pn.widgets.Select.from_param(s.param.rounding, label="Rounding", width=_W),
            rbits,
            labelled(pn.widgets.RadioButtonGroup.from_param(s.param.source, width=_W), "Data", _W),
            pn.widgets.Select.from_param(s.param.distribution, label="Distribution", width=_W),
            pn.widgets.FloatSlider.from_param(s.param.log2_scale, label="log2 scale", width=_W),
            pn.widgets.FloatSlider.from_param(s.param.binades, label="Binades (log-uniform)", width=_W),
            labelled(pn.widgets.RadioButtonGroup.from_param(s.param.size, width=_W), "Elements", _W),
            pn.widgets.IntInput.from_param(s.param.seed, label="Seed", width=_W),
        ]

    def _stored(self) -> pn.Column:
        s = self.state
        refresh = pn.widgets.Button(label="Refresh runs", width=120)
        refresh.on_click(self._refresh)
        return pn.Column(
            pn.pane.Markdown("**Stored tensor**", margin=(0, 5)), refresh,
            pn.widgets.Select.from_param(s.param.run_id, label="Run", width=_W),
            pn.widgets.Select.from_param(s.param.layer, label="Layer", width=_W),
            labelled(pn.widgets.RadioButtonGroup.from_param(s.param.tensor, width=_W), "Tensor", _W),
            pn.widgets.Select.from_param(s.param.step, label="Step", width=_W),
            visible=s.param.source.rx() == "stored run")

    def _bit_layout(self) -> pn.Column:
        s = self.state
        controls = pn.Row(
            pn.widgets.TextInput.from_param(s.param.probe, label="Value x", width=160, css_classes=["probe-input"]),
            pn.widgets.IntSlider.from_param(s.param.probe_slot, label="Format slot", width=160,
                                            css_classes=["bit-layout-slot"]),
            pn.widgets.FloatInput.from_param(s.param.probe_amax, label="Block max |x| (0: x)", width=160),
            margin=0)
        view = pn.pane.HTML(pn.bind(layout_html, s.param.layout, s.param.layout_error), css_classes=["bit-layout-view"],
                            sizing_mode="stretch_width")
        return pn.Column(pn.pane.Markdown("### Bit layout", margin=(0, 5)), controls, view,
                         sizing_mode="stretch_width")

    def _scales(self) -> pn.Column:
        s = self.state
        image = hv.DynamicMap(pn.bind(plots.scale_image, s.param.scales, s.param.scales_message)).opts(
            hv.opts.Image(height=320, responsive=True, min_width=380, framewise=True, tools=["hover"],
                          backend="bokeh"))
        return pn.Column(
            pn.pane.Markdown("### Block scales (2-D view of the tensor)", margin=(0, 5)),
            pn.widgets.IntSlider.from_param(s.param.scale_slot, label="Format slot", width=200),
            pn.pane.HoloViews(image, css_classes=["plot-scales"], sizing_mode="stretch_width"),
            sizing_mode="stretch_width")

    def _on_slot_errors(self, *_: Any) -> None:
        for card, msg in zip(self._cards, self.state.slot_errors):
            card.compute_error = msg

    def _refresh(self, _event: Any = None) -> None:
        self.state.refresh_runs()

    def __panel__(self) -> pn.Row:
        return self._layout
