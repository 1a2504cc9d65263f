"""Thin Panel views shared by the pages: the spec builder card and small helpers.

Views hold no state of their own: they render a ``param`` state object with widgets made
from its parameters (``pn.Param`` / ``Widget.from_param``) and bind to ``param`` values.
"""

from __future__ import annotations

from typing import Any, cast

import panel as pn
import param
from panel.viewable import Viewer

from .builder import SpecBuilder

__all__ = ["SpecBuilderView", "OptionalSpecBuilderView", "knob_widgets", "figure_pane", "FIGURE_TOOLS"]

#: the tools of every plain Bokeh figure of the pages
FIGURE_TOOLS = "pan,wheel_zoom,box_zoom,reset,save"


def figure_pane(fig: Any, css_class: str) -> pn.pane.Bokeh:
    """A plain Bokeh figure as a Panel pane that a page (and a browser test) finds by ``css_class``.

    The class goes on the figure itself: Panel renders a Bokeh pane as its figure, so the pane's own
    ``css_classes`` never reach the page."""
    if css_class not in fig.css_classes:
        fig.css_classes = [*fig.css_classes, css_class]
    return pn.pane.Bokeh(fig, sizing_mode="stretch_width")


def knob_widgets(knobs: param.Parameterized) -> dict[str, Any]:
    """Widget types for a knob object: sliders for small integer ranges, inputs otherwise."""
    out: dict[str, Any] = {}
    for name, p in knobs.param.objects("existing").items():
        if name == "name":
            continue
        if isinstance(p, param.Boolean):
            out[name] = pn.widgets.Checkbox
        elif isinstance(p, param.Integer):
            b = p.bounds
            small = bool(b) and b is not None and b[0] is not None and b[1] is not None and b[1] - b[0] <= 64
            if small and not p.allow_None:
                out[name] = {"type": pn.widgets.IntSlider, "throttled": False}
            elif p.allow_None:
                out[name] = pn.widgets.LiteralInput
            else:
                out[name] = pn.widgets.IntInput
        elif isinstance(p, param.Number):
            out[name] = pn.widgets.FloatInput
        elif isinstance(p, param.Selector):
            objs = p.objects
            n = len(objs) if objs is not None else 0
            short = n > 0 and sum(len(str(o)) for o in objs) <= 20
            out[name] = pn.widgets.RadioButtonGroup if 0 < n <= 4 and short else pn.widgets.Select
    return out


class SpecBuilderView(Viewer):
    """A card for one :class:`SpecBuilder`: family, preset, the spec string, its error, the knobs."""

    # set by __init__ (never None after it): typed without None
    builder = cast("param.ClassSelector[SpecBuilder]",
                   param.ClassSelector(class_=SpecBuilder, doc="The state this view shows."))
    title = param.String(default="", doc="Card title (e.g. 'Format 1').")
    color = param.String(default="#888888", doc="Accent colour of the card (matches the plots).")

    def __init__(self, builder: SpecBuilder | None = None, **params: Any) -> None:
        super().__init__(builder=builder if builder is not None else SpecBuilder(), **params)
        b = self.builder
        top = pn.Row(
            pn.widgets.Select.from_param(b.param.family, label="Family", width=135, margin=(0, 5)),
            pn.widgets.Select.from_param(b.param.preset, label="Preset", width=135, margin=(0, 5)),
            margin=0,
        )
        spec_input = pn.widgets.TextInput.from_param(
            b.param.spec, label="Spec", width=280, css_classes=["spec-input"], margin=(0, 5))
        error = pn.pane.Alert(b.param.error, alert_type="danger", visible=b.param.error.rx.bool(),
                              width=280, margin=(0, 5), css_classes=["spec-error"])
        knobs = pn.panel(pn.bind(self._knobs, b.param.knobs))
        header = pn.pane.HTML(f"<b style='color:{self.color}'>{self.title}</b>" if self.title else "",
                              margin=(0, 5))
        self._layout = pn.Column(header, top, spec_input, error, knobs,
                                 styles={"border-top": f"4px solid {self.color}"},
                                 width=300, margin=5, css_classes=["spec-builder"])

    @staticmethod
    def _knobs(knobs: param.Parameterized) -> pn.Param:
        return pn.Param(knobs, show_name=False, widgets=knob_widgets(knobs), width=290, margin=0,
                        css_classes=["knobs"])

    def __panel__(self) -> pn.Column:
        return self._layout


class OptionalSpecBuilderView(SpecBuilderView):
    """The card of an optional format (a scheme's G, E ... field): its family knobs only while the
    builder quantizes; set to ``(float)`` (``enabled`` false) the card shows no knobs, since none apply."""

    def _knobs(self, knobs: param.Parameterized) -> pn.Column:  # type: ignore[override]
        return pn.Column(SpecBuilderView._knobs(knobs), visible=self.builder.param.enabled, margin=0,
                         css_classes=["optional-knobs"])
