"""Format Lab views beside the plots: the slot card, the bit-layout view (Panel).

:class:`LabSpecCard` is the Format Lab's spec card: like :class:`explorer.widgets.SpecBuilderView` but
every knob goes through :meth:`SpecBuilder.set_knob`, so a value outside a knob's range (mu = -3) shows
the reason beside the field instead of being dropped; radio groups carry labels; the spec box fits an MX
spec; a slot whose format could not be computed says so.  :func:`layout_html` renders an
:class:`explorer.bitlayout.BitLayout` as HTML (no state).
"""

from __future__ import annotations

import html
import math
from typing import Any, cast

import panel as pn
import param

from .bitlayout import BitLayout
from .builder import SpecBuilder
from .widgets import knob_widgets

__all__ = ["LabSpecCard", "layout_html", "labelled", "CARD_WIDTH"]

#: width of a Format Lab card (three fit beside the sidebar at 1280 px)
CARD_WIDTH = 330
#: the spec box's text: small monospace with narrow padding, so the longest MX spec
#: (``mx(elem=fp6_e3m2,block=4096,axis=-1,scale=rceil)``, 48 characters: 301 px) fits the 308 px inside the box
#: (at 11 px with Bokeh's 12 px padding an MX spec of 46 characters needed 329 px and lost its end); a line box
#: of 16 px leaves the underscores room below the baseline
_SPEC_CSS = (":host input { font-family: monospace; font-size: 10px; line-height: 16px; padding-left: 6px;"
             " padding-right: 6px; }")
_FIELD_COLORS = {"sign": "#c0392b", "exponent": "#2471a3", "mantissa": "#1e8449", "integer": "#7d3c98",
                 "index": "#7d3c98"}


def labelled(widget: Any, label: str, width: int) -> pn.Column:
    """A widget under a small label (radio groups have none of their own)."""
    return pn.Column(pn.pane.HTML(f"<span style='font-size:12px'>{html.escape(label)}</span>", margin=(0, 5)),
                     widget, width=width, margin=0)


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


class LabSpecCard(pn.viewable.Viewer):
    """A Format Lab slot: family, preset, spec string (canonical form), errors and the family's knobs."""

    # set by __init__ (never None after it): typed without None
    builder = cast("param.ClassSelector[SpecBuilder]",
                   param.ClassSelector(class_=SpecBuilder, doc="The slot's spec builder."))
    title = param.String(default="", doc="Card title.")
    color = param.String(default="#888888", doc="Accent colour (matches the plots).")
    compute_error = param.String(default="", doc="Why the slot's current spec could not be computed.")

    def __init__(self, builder: SpecBuilder, **params: Any) -> None:
        super().__init__(builder=builder, **params)
        b = self.builder
        w = CARD_WIDTH - 20
        top = pn.Row(
            pn.widgets.Select.from_param(b.param.family, label="Family", width=w // 2 - 5, margin=(0, 5)),
            pn.widgets.Select.from_param(b.param.preset, label="Preset", width=w // 2 - 5, margin=(0, 5)),
            margin=0,
        )
        spec_input = pn.widgets.TextInput(value=b.spec, label="Spec", width=w, css_classes=["spec-input"],
                                          margin=(0, 5), stylesheets=[_SPEC_CSS])
        self._spec_input = spec_input
        self._typing = False
        spec_input.param.watch(self._on_typed, "value")
        b.param.watch(self._on_spec, "spec")
        error = pn.pane.Alert(self._error_text(b.error, b.fmt), alert_type="danger", visible=bool(b.error), width=w,
                              margin=(0, 5), css_classes=["spec-error"])
        failed = pn.pane.Alert(self.compute_error, alert_type="warning", visible=bool(self.compute_error), width=w,
                               margin=(0, 5), css_classes=["compute-error"])

        # plain watchers (object and visibility together, so a cleared message also hides its box)
        def show_error(*_: Any) -> None:
            error.param.update(object=self._error_text(b.error, b.fmt), visible=bool(b.error))

        def show_failed(*_: Any) -> None:
            failed.param.update(object=self.compute_error, visible=bool(self.compute_error))

        b.param.watch(show_error, ["error", "fmt"])
        self.param.watch(show_failed, "compute_error")
        knobs = pn.panel(pn.bind(self._knobs, b.param.knobs))
        header = pn.pane.HTML(f"<b style='color:{self.color}'>{html.escape(self.title)}</b>", margin=(0, 5))
        self._layout = pn.Column(header, top, spec_input, error, failed, knobs,
                                 styles={"border-top": f"4px solid {self.color}"}, width=CARD_WIDTH, margin=5,
                                 css_classes=["spec-builder"])

    def _on_typed(self, event: param.parameterized.Event) -> None:
        self._typing = True
        try:
            self.builder.spec = event.new
        finally:
            self._typing = False
        if self.builder.spec != event.new:
            # canonicalized: a value set while the browser's own change is being handled is not sent back,
            # so show the canonical form on the next tick
            self._show_spec_later()

    def _on_spec(self, event: param.parameterized.Event) -> None:
        if not self._typing and self._spec_input.value != event.new:
            self._spec_input.value = event.new

    def _show_spec_later(self) -> None:
        def show() -> None:
            self._spec_input.value = self.builder.spec

        doc = pn.state.curdoc
        if doc is not None and doc.session_context is not None:
            doc.add_next_tick_callback(show)
        else:
            show()

    @staticmethod
    def _error_text(error: str, fmt: Any) -> str:
        if not error:
            return ""
        tail = "" if "still showing" in error else f" (not applied: still showing {fmt})"
        return f"{error}{tail}"

    def _knobs(self, knobs: param.Parameterized) -> pn.Column:
        """One widget per knob, unlinked from the knob: changes go through ``set_knob`` (checked), and the
        widgets follow the knobs back when the spec changes."""
        kinds = knob_widgets(knobs)
        kinds = {n: kinds.get(n, pn.widgets.TextInput) for n in knobs.param.objects("existing") if n != "name"}
        widgets: dict[str, Any] = {}
        rows = []
        w = CARD_WIDTH - 20
        for name, kind in kinds.items():
            p = knobs.param[name]
            cls = kind["type"] if isinstance(kind, dict) else kind
            value = getattr(knobs, name)
            label = _label(name)
            kw: dict[str, Any] = dict(value=value, margin=(0, 5))
            if cls is pn.widgets.IntSlider:
                lo, hi = p.bounds
                kw.update(start=lo, end=hi, label=label, width=w)
            elif cls in (pn.widgets.RadioButtonGroup, pn.widgets.Select):
                kw.update(options=list(p.objects), width=w)
                if cls is pn.widgets.Select:
                    kw["label"] = label
            elif cls is pn.widgets.Checkbox:
                kw.update(label=label, width=w // 2 - 10)
            elif cls is pn.widgets.LiteralInput:
                kw.update(label=label, width=w // 2 - 10, type=(int, type(None)))
            elif cls is pn.widgets.TextInput:
                kw.update(label=label, width=w)
            else:
                kw.update(label=label, width=w // 2 - 10)
            if cls is pn.widgets.IntInput:
                kw.update(start=None, end=None)
            widget = cls(**kw)
            widget.param.watch(lambda e, n=name: self._on_widget(n, e.new), "value")
            widgets[name] = widget
            rows.append(labelled(widget, label, w) if cls is pn.widgets.RadioButtonGroup else widget)

        def follow(*events: param.parameterized.Event) -> None:
            for e in events:
                wd = widgets.get(e.name)
                if wd is not None and wd.value != e.new:
                    wd.value = e.new

        knobs.param.watch(follow, list(widgets))
        # String knobs (scaled elem/block, codebook book) stay plain text boxes; small boxes two per row
        small = [r for r in rows if (r.width or w) < w // 2]
        big = [r for r in rows if (r.width or w) >= w // 2]
        pairs = [pn.Row(*small[i:i + 2], margin=0) for i in range(0, len(small), 2)]
        return pn.Column(*big, *pairs, width=CARD_WIDTH - 10, margin=0, css_classes=["knobs"])

    def _on_widget(self, name: str, value: Any) -> None:
        if getattr(self.builder.knobs, name) == value and not self.builder.error:
            return
        self.builder.set_knob(name, value)

    def __panel__(self) -> pn.Column:
        return self._layout


def _num(v: float) -> str:
    return f"{v:.8g}" if math.isfinite(v) else str(v)


def _fields_html(fields: Any) -> str:
    cells = []
    for f in fields:
        if not f.bits:
            continue
        color = _FIELD_COLORS.get(f.name, "#555")
        cells.append(f"<td style='padding:2px 6px;border:1px solid #ccc;color:{color}'>"
                     f"<div style='font-size:10px'>{f.name} ({f.value})</div>"
                     f"<code style='font-size:15px'>{f.bits}</code></td>")
    return "<table class='bit-fields' style='border-collapse:collapse'><tr>" + "".join(cells) + "</tr></table>"


def layout_html(layout: BitLayout | None, error: str = "") -> str:
    """The bit-layout view: code fields, block scale fields, neighbours and the rounding table."""
    if layout is None:
        return f"<div class='bit-layout-error' style='color:#b03a2e'>{html.escape(error)}</div>"
    L = layout
    parts = [f"<div class='bit-layout'><b>{html.escape(L.spec)}</b>: x = {_num(L.x)}, code {L.code} "
             f"({L.width} bits)", _fields_html(L.fields)]
    if L.scale_fields:
        parts += [f"<div style='margin-top:4px'>{html.escape(L.scale_name)}</div>", _fields_html(L.scale_fields)]
    lc = "" if L.lower_code is None else f" (code {L.lower_code})"
    uc = "" if L.upper_code is None else f" (code {L.upper_code})"
    parts.append(f"<div class='neighbours' style='margin-top:4px'>lower neighbour <b>{_num(L.lower)}</b>{lc}, "
                 f"upper neighbour <b>{_num(L.upper)}</b>{uc}</div>")
    rows = "".join(
        f"<tr><td><code>{html.escape(r.mode)}</code></td><td>{_num(r.value)}</td><td>{r.direction}</td>"
        f"<td style='font-size:11px'>{html.escape(r.reason)}</td></tr>" for r in L.roundings)
    parts.append("<table class='roundings' style='font-size:12px'><tr><th>rounding</th><th>result</th>"
                 f"<th>goes</th><th>why</th></tr>{rows}</table></div>")
    return "".join(parts)
