"""The Format Lab page (a thin ``pn.viewable.Viewer`` over :class:`FormatLabState`).

Each plot is an overlay of one element per slot (plus the data histogram): an element is rebuilt only
when its slot's result (or the data) changed, and HoloViews re-sends only the data sources of rebuilt
elements (``static_source``), so moving one knob re-sends that slot's sources alone.
"""

from __future__ import annotations

from typing import Any, Callable

import holoviews as hv

import panel as pn
import param
from panel.viewable import Viewer

from . import plots
from .analysis import FormatResult
from .builder import SLOT_COLORS
from .lab_cards import LabSpecCard, labelled, layout_html
from .lab_state import FormatLabState

__all__ = ["FormatLab"]

hv.renderer("bokeh")  # registers the Bokeh backend and its options (no output, no extension JS)

_PLOT = dict(height=300, responsive=True, min_width=380, framewise=True, axiswise=True)
_W = 230


def _bokeh(obj: Any) -> Any:
    """Bokeh-only options for a Format Lab plot (each element rescales on every update)."""
    return obj.opts(
        hv.opts.Segments(**_PLOT, tools=["hover"], line_width=1.5, backend="bokeh"),
        hv.opts.Path(**_PLOT, tools=["hover"], line_width=2, backend="bokeh"),
        hv.opts.Histogram(**_PLOT, line_alpha=0, backend="bokeh"),
        hv.opts.Overlay(**_PLOT, legend_position="right", backend="bokeh"),
    )


class _SlotElements:
    """Memo of per-slot elements: the same element object while its inputs are the same objects, so
    HoloViews keeps its data source (nothing re-sent for an unchanged slot)."""

    def __init__(self, make: Callable[..., Any]) -> None:
        self._make = make
        self._memo: dict[int, tuple[tuple[int, ...], Any]] = {}

    def __call__(self, i: int, *inputs: Any) -> Any:
        key = tuple(id(v) if not isinstance(v, int) else v for v in inputs)
        hit = self._memo.get(i)
        if hit is not None and hit[0] == key:
            return hit[1]
        el = self._make(*inputs)
        self._memo[i] = (key, el)
        return el


def _slot(results: list[FormatResult], i: int) -> FormatResult | None:
    return results[i] if i < len(results) else None


class FormatLab(Viewer):
    """Format Lab: up to four formats side by side on a synthetic or stored tensor, the bit layout of a
    typed value, and the block scales of a scaled format over the tensor as a 2-D weight.

    Example (Jupyter)::

        import panel as pn; pn.extension()
        from explorer import FormatLab
        FormatLab()
    """

    state = param.ClassSelector(class_=FormatLabState, doc="The page's state (one per session).")

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

        results = s.param.results
        cb, bd, er, rg = (_SlotElements(plots.codebook_slot), _SlotElements(plots.binade_slot),
                          _SlotElements(plots.error_slot), _SlotElements(plots.rug_slot))
        hist_memo = _SlotElements(plots.data_histogram)

        def codebook(r: list[FormatResult]) -> hv.Overlay:
            n = len(r)
            return hv.Overlay([cb(i, _slot(r, i), i, n) for i in range(4)]).opts(
                title="Codebook (log x; scaled formats: element values)", logx=True, ylim=(0, max(n, 1)))

        def density(r: list[FormatResult]) -> hv.Overlay:
            return hv.Overlay([bd(i, _slot(r, i), i) for i in range(4)]).opts(
                title="Code density per binade", logx=True)

        def error(r: list[FormatResult]) -> hv.Overlay:
            return hv.Overlay([er(i, s.data, _slot(r, i), i) for i in range(4)]).opts(
                title="Relative error vs |x|", logx=True, logy=True)

        def hist(r: list[FormatResult]) -> hv.Overlay:
            counts = s.data.counts
            top = float(counts.max()) if counts.size and counts.max() > 0 else 1.0
            ymax = top * (1.04 + 0.1 * max(1, len(r[:4])) + 0.02)
            return hv.Overlay([hist_memo(0, s.data)] + [rg(i, s.data, _slot(r, i), i) for i in range(4)]).opts(
                title="Data histogram with codes (data units)", logx=True, ylim=(0, ymax))

        panes = [pn.pane.HoloViews(_bokeh(hv.DynamicMap(pn.bind(fn, results))), css_classes=[css],
                                   sizing_mode="stretch_width")
                 for fn, css in ((codebook, "plot-codebook"), (density, "plot-density"), (error, "plot-error"),
                                 (hist, "plot-hist"))]
        table = pn.pane.DataFrame(pn.bind(plots.metrics_frame, results), index=False,
                                  float_format="{:.4g}".format, sizing_mode="stretch_width",
                                  css_classes=["metrics-table"])
        status = pn.pane.Markdown(
            pn.bind(lambda m, t: f"{m}  \nupdate: **{1e3 * t:.0f} ms**", s.param.message, s.param.latency),
            css_classes=["lab-status"], margin=(0, 10))
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
