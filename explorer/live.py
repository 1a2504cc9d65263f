"""The Live Training page: a thin view over :class:`LiveTrainingState`.

The run trains in a worker process (a one-worker Dask engine that the server starts in the
background when the page is first built); this page only reads the run store and writes commands
into it. A periodic callback (every ``period`` ms, in the session) calls
:meth:`LiveTrainingState.poll`, which streams the new rows into HoloViews ``Buffer``/``Pipe``
streams; the callback is removed when the session is destroyed (the run goes on, and a reload
reattaches).
"""

from __future__ import annotations

import time
from typing import Any

import holoviews as hv
import panel as pn
import param
from panel.viewable import Viewer

from core.store import is_active

from . import plots, registry
from .live_state import LiveTrainingState
from .widgets import SpecBuilderView, knob_widgets

__all__ = ["LiveTraining"]

hv.renderer("bokeh")

_OPTS = dict(height=260, responsive=True, min_width=360)
_TENSOR_TITLES = {"w": "W (weights)", "a": "A (activations)", "e": "E (errors)", "g": "G (weight gradients)"}


def _layer_ticks(layers: list[str]) -> Any:
    """A Bokeh hook: one y tick per layer, labelled with the layer's name."""

    def hook(plot: Any, element: Any) -> None:
        from bokeh.models import FixedTicker

        axis = plot.state.yaxis[0]
        axis.ticker = FixedTicker(ticks=list(range(len(layers))))
        axis.major_label_overrides = {i: str(n) for i, n in enumerate(layers)}

    return hook


def _lines(state: LiveTrainingState) -> hv.DynamicMap:
    return hv.DynamicMap(lambda data: plots.event_lines(data), streams=[state.marks])


class LiveTraining(Viewer):
    """Live Training: configure a run, Start / Pause / Stop it and watch it train.

    Example (Jupyter)::

        from explorer import LiveTraining
        LiveTraining()
    """

    state = param.ClassSelector(class_=LiveTrainingState, doc="The page's state (one per session).")
    period = param.Integer(default=300, bounds=(50, 10_000), doc="Milliseconds between polls of the run store.")

    def __init__(self, state: LiveTrainingState | None = None, **params: Any) -> None:
        super().__init__(state=state if state is not None else LiveTrainingState(), **params)
        registry.warm_up()  # the worker engine starts in the background; a first Start need not wait
        s = self.state
        config = pn.Param(
            s, parameters=["dataset", "model", "hidden", "scheme", "lr", "momentum", "epochs", "batch_size",
                           "seed", "every", "shadow", "max_steps"],
            widgets={
                "dataset": {"type": pn.widgets.Select, "label": "Dataset"},
                "model": {"type": pn.widgets.Select, "label": "Model"},
                "hidden": {"type": pn.widgets.TextInput, "label": "MLP hidden sizes"},
                "scheme": {"type": pn.widgets.Select, "label": "Scheme"},
                "lr": {"type": pn.widgets.FloatInput, "label": "Learning rate", "step": 0.01},
                "momentum": {"type": pn.widgets.FloatSlider, "label": "Momentum", "throttled": True},
                "epochs": {"type": pn.widgets.IntInput, "label": "Epochs"},
                "batch_size": {"type": pn.widgets.Select, "label": "Batch size"},
                "seed": {"type": pn.widgets.IntInput, "label": "Seed"},
                "every": {"type": pn.widgets.IntInput, "label": "Telemetry every (steps)"},
                "shadow": {"type": pn.widgets.TextInput, "label": "Shadow formats (;)"},
                "max_steps": {"type": pn.widgets.IntInput, "label": "Max steps (0 = all)"},
            },
            show_name=False, width=270, margin=0,
        )
        # Pause and Stop only while there is a run to pause or stop
        idle = pn.bind(lambda status: not is_active(status), s.param.status)
        start = pn.widgets.Button.from_param(s.param.start, label="Start", color="primary", width=80,
                                             css_classes=["btn-start"], description=None)
        pause = pn.widgets.Button.from_param(s.param.pause, label="Pause / Resume", width=120,
                                             css_classes=["btn-pause"], description=None, disabled=idle)
        stop = pn.widgets.Button.from_param(s.param.stop, label="Stop", color="danger", width=70,
                                            css_classes=["btn-stop"], description=None, disabled=idle)
        progress = pn.indicators.Progress(value=pn.bind(lambda p: int(round(100 * p)), s.param.progress), max=100,
                                          bar_color="primary",
                                          sizing_mode="stretch_width", css_classes=["run-progress"])
        status = pn.pane.Markdown(
            pn.bind(self._status_text, s.param.run_id, s.param.status, s.param.step, s.param.total_steps,
                    s.param.test_acc, s.param.message),
            css_classes=["run-status"], sizing_mode="stretch_width", margin=(0, 10))
        knobs = pn.panel(pn.bind(self._knob_panel, s.param.knobs, s.param.specs), width=290)
        sidebar = pn.Column(
            pn.pane.Markdown("### Run", margin=(0, 5)), config,
            pn.pane.Markdown("**Scheme knobs** (live)", margin=(0, 5)), knobs, width=300)

        steps = s.steps
        loss = hv.DynamicMap(lambda data: hv.Curve(data, "step", "loss").opts(color="#1f77b4"), streams=[steps])
        train_acc = hv.DynamicMap(
            lambda data: hv.Curve(data, "step", hv.Dimension("train_acc", label="accuracy"), label="train"),
            streams=[steps])
        test_acc = hv.DynamicMap(
            lambda data: hv.Curve(data, "step", hv.Dimension("test_acc", label="accuracy"), label="test")
            * hv.Scatter(data, "step", hv.Dimension("test_acc", label="accuracy")),
            streams=[s.epoch_rows])
        lines = _lines(s)
        curve_opts = [hv.opts.Curve(**_OPTS, framewise=True, tools=["hover"]),
                      hv.opts.Scatter(size=6, color="#ff7f0e"), hv.opts.Overlay(**_OPTS, framewise=True)]
        loss_plot = (loss * lines).opts(*curve_opts).opts(hv.opts.Overlay(title="Training loss"))
        acc_plot = (train_acc * test_acc * lines).opts(*curve_opts).opts(
            hv.opts.Overlay(title="Accuracy (train per step, test per epoch)", legend_position="bottom_right"))

        heat_plots = []
        for t in ("w", "a", "e", "g"):
            dm = hv.DynamicMap(self._heat_callback(t), streams=[s.heat_of[t]])
            heat_plots.append(pn.pane.HoloViews(
                (dm * lines).opts(hv.opts.Rectangles(**_OPTS, colorbar=True, tools=["hover"], line_alpha=0,
                                                     framewise=True),
                                  hv.opts.Overlay(**_OPTS, framewise=True)),
                css_classes=[f"plot-heat-{t}"], sizing_mode="stretch_width"))
        tail = hv.DynamicMap(lambda data: plots.tail_plot(data), streams=[s.tail]).opts(
            hv.opts.Curve(framewise=True), hv.opts.Overlay(**_OPTS, framewise=True, legend_position="bottom_left"))
        whist = hv.DynamicMap(lambda data: plots.weight_hist_rectangles(data), streams=[s.whist])
        whist_plot = (whist * lines).opts(
            hv.opts.Rectangles(**_OPTS, colorbar=True, tools=["hover"], line_alpha=0, framewise=True),
            hv.opts.Overlay(**_OPTS, framewise=True))

        extras = pn.Param(s, parameters=["heat_source", "hist_layer", "bound_u", "signal"],
                          widgets={"heat_source": {"type": pn.widgets.Select, "label": "Heat map ARE of"},
                                   "hist_layer": {"type": pn.widgets.Select, "label": "Weight histogram layer"},
                                   "bound_u": {"type": pn.widgets.FloatSlider, "label": "Bound u"},
                                   "signal": {"type": pn.widgets.Select, "label": "Scheme signal"}},
                          default_layout=pn.Row, show_name=False, margin=0)
        signal_plot = hv.DynamicMap(self._signal_callback,
                                    streams={"data": s.signals.param.data, "marks": s.marks.param.data}).opts(
            hv.opts.Curve(**_OPTS, framewise=True, tools=["hover"]),
            hv.opts.Overlay(**_OPTS, framewise=True))
        main = pn.Column(
            pn.Row(start, pause, stop, progress, sizing_mode="stretch_width"),
            status,
            pn.GridBox(pn.pane.HoloViews(loss_plot, css_classes=["plot-loss"], sizing_mode="stretch_width"),
                       pn.pane.HoloViews(acc_plot, css_classes=["plot-acc"], sizing_mode="stretch_width"),
                       ncols=2, sizing_mode="stretch_width"),
            pn.pane.Markdown("**ARE per layer and step** (the MLS paper's Fig. 3, live)", margin=(0, 10)),
            pn.GridBox(*heat_plots, ncols=2, sizing_mode="stretch_width"),
            extras,
            pn.GridBox(pn.pane.HoloViews(tail, css_classes=["plot-tail"], sizing_mode="stretch_width"),
                       pn.pane.HoloViews(whist_plot, css_classes=["plot-whist"], sizing_mode="stretch_width"),
                       pn.pane.HoloViews(signal_plot, css_classes=["plot-signal"], sizing_mode="stretch_width"),
                       ncols=2, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
        self._layout = pn.Row(sidebar, main, sizing_mode="stretch_width", css_classes=["live-training"])
        self._callback: Any = None
        self._next_poll = 0.0
        self._start_polling()

    # ----------------------------------------------------------------- helpers
    def _heat_callback(self, tensor: str) -> Any:
        s = self.state

        def cb(data: Any) -> hv.Rectangles:
            title = f"ARE of {_TENSOR_TITLES[tensor]}"
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
            return plots.are_rectangles(d, s.layers, title=title).opts(hooks=[_layer_ticks(s.layers)])

        return cb

    def _signal_callback(self, data: Any, marks: Any) -> hv.Overlay:
        """The chosen scheme signal with the knob-change markers; the title names the signal."""
        s = self.state
        if s.signal:
            title = f"Scheme signal: {s.signal}"
        elif s.run_id:
            title = "Scheme signal: none logged by this run yet"
        else:
            title = "Scheme signal (precision, DFQ bits, exponents, BitOPs ...)"
        return (plots.signal_plot(data, title=title, label=s.signal or "value")
                * plots.event_lines(marks)).opts(title=title)

    @staticmethod
    def _status_text(run_id: str, status: str, step: int, total: int, test_acc: float | None, message: str) -> str:
        if not run_id:
            return f"No run yet: press **Start**. {message}"
        acc = f", test acc **{test_acc:.2%}**" if test_acc is not None else ""
        if status == "created":
            return f"run `{run_id}` **queued** - waiting for its worker process  \n{message}"
        return f"run `{run_id}` **{status}** - step {step}/{total}{acc}  \n{message}"

    def _knob_panel(self, knobs: param.Parameterized, specs: dict[str, Any]) -> pn.Column:
        items: list[Any] = [pn.Param(knobs, show_name=False, widgets=knob_widgets(knobs), width=280, margin=0,
                                     css_classes=["scheme-knobs"])]
        for name, b in specs.items():
            items.append(SpecBuilderView(b, title=f"{name.upper()} format (optional)", color="#555555"))
        return pn.Column(*items, margin=0)

    def _start_polling(self) -> None:
        self._callback = pn.state.add_periodic_callback(self._poll, period=self.period, start=True)
        # the run's answers to Pause / Stop / knob changes are shown within ~0.1 s, between polls
        self._answers = pn.state.add_periodic_callback(self.state.check_answers, period=100, start=True)
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.on_session_destroyed(self._destroyed)

    def _poll(self) -> None:
        """Poll the store, but leave the server's event loop at least two thirds of its time for the
        user's clicks (a long run's redraws can cost more than the period)."""
        now = time.monotonic()
        if now < self._next_poll:
            return
        self.state.poll()
        cost = time.monotonic() - now
        self._next_poll = now + max(0.0, 3.0 * cost - self.period / 1000.0)

    def _destroyed(self, session_context: Any) -> None:
        if self._callback is not None:
            self._callback.stop()
            self._answers.stop()
        self.state.detach()

    def __panel__(self) -> pn.Row:
        return self._layout
