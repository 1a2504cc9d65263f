"""The Live Training page: a thin view over :class:`LiveTrainingState`.

The run trains in a worker process (a one-worker Dask engine that the server starts in the
background when the page is first built); this page only reads the run store and writes commands
into it. A periodic callback (every ``period`` ms, in the session) calls
:meth:`LiveTrainingState.poll`, which takes the new rows (read by the run's feed in a background
thread) into the state's ``Buffer``/``Pipe`` streams; the callback is removed when the session is
destroyed (the run goes on, and a reload reattaches; a new page opens on the last run in the store,
also after a restart). The status line says a run ended only once the page shows all its rows, and
says so while another process holds the store's write lock (the run buffers its rows meanwhile:
:attr:`LiveTrainingState.store_note`). Every plot is a plain Bokeh figure updated in place from those
streams (:mod:`explorer.live_curves`, :mod:`explorer.live_heat`,
:mod:`explorer.live_lines`): a redraw changes data, ranges and titles, never the document's model
graph, so the server answers a click within a poll's few milliseconds however long the run.

The page fits a 1280 px wide window (the plots shrink to ``min_width``, the rows of controls wrap);
each ARE heat map has one colour range per tensor kind (``heat_scale``/``heat_range``), a plot that
stays empty says why in its plot area, and the data-folder field exists only on a page served on
loopback (:func:`local_request`): elsewhere the server's ``LOWBIT_DATA`` names the folder.
"""

from __future__ import annotations

import ipaddress
import math
import time
from typing import Any, cast
from urllib.parse import urlsplit

import panel as pn
import param
from panel.viewable import Viewer

from core.store import is_active, is_final

from . import registry
from .live_curves import LiveCurves
from .live_heat import HeatMap, WeightHistogram
from .live_lines import SignalPlot, TailPlot
from .live_frames import duration_text
from .batching import batched
from .live_state import TENSORS, LiveTrainingState
from .widgets import OptionalSpecBuilderView, knob_widgets

__all__ = ["LiveTraining", "local_request", "served_locally"]

# how often a session looks for the run's answers (Pause, Stop, knob changes): while a run is active, and
# once an ended run is shown in full (then only a resume can change it)
_ANSWERS_MS, _SETTLED_ANSWERS_MS = 100, 1000
_HEIGHT, _MIN_WIDTH = 260, 360  # every plot: its height and narrowest width (px); the width stretches


def _loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def local_request(host_header: str | None, remote_ip: str | None) -> bool:
    """True when a page request came from this machine to a loopback address: the browser opened
    ``localhost``/``127.0.0.1``/``[::1]`` (the ``Host`` header; a server reached by any other name
    or address is served beyond this machine, docs/architecture.md invariants) and the client is a
    loopback address (``remote_ip``; None when unknown)."""
    hostname = urlsplit("//" + (host_header or "")).hostname
    return _loopback(hostname) and (remote_ip is None or _loopback(remote_ip))


def served_locally() -> bool:
    """Whether this session's page may name server folders: outside a server (Jupyter) yes, in a
    server only for a :func:`local_request`."""
    doc = pn.state.curdoc
    ctx = getattr(doc, "session_context", None) if doc is not None else None
    req = getattr(ctx, "request", None) if ctx is not None else None
    if req is None:
        return ctx is None
    headers = getattr(req, "headers", {}) or {}
    tornado_req = getattr(req, "_request", None)
    return local_request(headers.get("Host") or headers.get("host"), getattr(tornado_req, "remote_ip", None))


class LiveTraining(Viewer):
    """Live Training: configure a run, Start / Pause / Stop it and watch it train.

    Example (Jupyter)::

        from explorer import LiveTraining
        LiveTraining()
    """

    # set by __init__ (never None after it): typed without None
    state = cast("param.ClassSelector[LiveTrainingState]",
                 param.ClassSelector(class_=LiveTrainingState, doc="The page's state (one per session)."))
    period = param.Integer(default=300, bounds=(50, 10_000), doc="Milliseconds between polls of the run store.")
    curve_period = param.Number(default=1.0, bounds=(0.0, 60.0),
        doc="Seconds between two streams of new points into the loss and accuracy curves while a run goes.")

    def __init__(self, state: LiveTrainingState | None = None, **params: Any) -> None:
        super().__init__(state=state if state is not None else LiveTrainingState(), **params)
        registry.warm_up()  # the worker engine starts in the background; a first Start need not wait
        s = self.state
        local = served_locally()
        with param.edit_constant(s):
            s.local_paths = local
        if not local:
            s.data_root = ""
        doc = pn.state.curdoc
        self._doc = doc if doc is not None and doc.session_context is not None else None
        if self._doc is not None:
            s.background_reads = True  # served: a long store read never holds the server's event loop
            s.wake = self._wake_soon  # the run paused, resumed or ended: poll at once, not at the next period
        # the data-folder field comes last, so the other inputs keep their order
        config = pn.Param(
            s, parameters=["dataset", "model", "hidden", "scheme", "lr", "momentum", "epochs", "batch_size",
                           "seed", "every", "shadow", "max_steps", *(["data_root"] if local else [])],
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
                "data_root": {"type": pn.widgets.TextInput, "label": "Data folder (mnist, CIFAR-10; empty = default)",
                              "placeholder": "$LOWBIT_DATA or the dataset cache", "css_classes": ["data-root"]},
            },
            show_name=False, width=270, margin=0,
        )
        data_note = pn.pane.Markdown(
            "Data folder: this page is served beyond this machine, so the server's `LOWBIT_DATA` environment "
            "variable names it (set it where the server runs).", css_classes=["data-root-note"],
            visible=not local, width=270, margin=(0, 5))
        # Pause and Stop only while there is a run to pause or stop
        idle = pn.bind(lambda status: not is_active(status), s.param.status)
        start = pn.widgets.Button.from_param(s.param.start, label="Start", color="primary", width=80,
                                             css_classes=["btn-start"], description=None)
        pause = pn.widgets.Button.from_param(s.param.pause, label="Pause / Resume", width=120,
                                             css_classes=["btn-pause"], description=None, disabled=idle)
        # red only while there is a run to stop (a disabled red button reads as an alarm)
        stop_color = pn.bind(lambda st: "danger" if is_active(st) else "light", s.param.status)
        stop = pn.widgets.Button.from_param(s.param.stop, label="Stop", width=70, css_classes=["btn-stop"],
                                            description=None, disabled=idle, color=stop_color)
        percent = pn.bind(lambda p: int(round(100 * p)), s.param.progress)
        progress = pn.indicators.Progress(value=percent, max=100, bar_color="primary",
                                          sizing_mode="stretch_width", css_classes=["run-progress"])
        status = pn.pane.Markdown(
            pn.bind(self._status_text, s.param.run_id, s.param.status, s.param.step, s.param.total_steps,
                    s.param.test_acc, s.param.message, s.param.steps_per_s, s.param.elapsed, s.param.eta,
                    s.param.store_note),
            css_classes=["run-status"], sizing_mode="stretch_width", margin=(0, 10))
        knobs = pn.panel(pn.bind(self._knob_panel, s.param.knobs, s.param.specs), width=290)
        sidebar = pn.Column(
            pn.pane.Markdown("### Run", margin=(0, 5)), config, data_note,
            pn.pane.Markdown("**Scheme knobs** (live)", margin=(0, 5)), knobs, width=300)

        # the curves stream (explorer.live_curves); the telemetry plots below are HoloViews redraws
        self._curves = LiveCurves(s, height=_HEIGHT, min_width=_MIN_WIDTH)
        loss_pane, acc_pane = self._curves.panes()
        # the knob-change markers are drawn by each plot's own redraw (LiveTrainingState queues one
        # when they change), not by a stream every plot listens to: a knob change redraws no plot at once

        # the heat maps are plain Bokeh figures redrawn in place (explorer.live_heat)
        self._heat_maps = [HeatMap(s, t, height=_HEIGHT, min_width=_MIN_WIDTH) for t in TENSORS]
        heat_plots = [m.pane() for m in self._heat_maps]
        # the legend is HTML below the plot (never over the points, and not rebuilt by every redraw)
        self._tail = TailPlot(s, height=300, min_width=_MIN_WIDTH)
        self._whist = WeightHistogram(s, height=_HEIGHT, min_width=_MIN_WIDTH)

        heat_controls = pn.FlexBox(
            pn.widgets.Select.from_param(s.param.heat_source, name="Heat map ARE of", width=200),
            pn.widgets.RadioButtonGroup.from_param(s.param.heat_scale, width=120, margin=(24, 10, 5, 10),
                                                   css_classes=["heat-scale"]),
            pn.widgets.RangeSlider.from_param(s.param.heat_range, name="Fixed colour range (log10 ARE)", width=240,
                                              css_classes=["heat-range"],
                                              disabled=s.param.heat_scale.rx.pipe(lambda v: v != "fixed")),
            sizing_mode="stretch_width", css_classes=["heat-controls"])
        extras = pn.FlexBox(
            pn.widgets.Select.from_param(s.param.hist_layer, name="Weight histogram layer", width=200),
            pn.widgets.FloatSlider.from_param(s.param.bound_u, name="Bound u", width=200),
            pn.widgets.Select.from_param(s.param.signal, name="Scheme signal", width=220),
            sizing_mode="stretch_width", css_classes=["live-extras"])
        self._signal = SignalPlot(s, height=_HEIGHT, min_width=_MIN_WIDTH)
        telemetry = [
            pn.pane.Markdown("**ARE per layer and step** (the MLS paper's Fig. 3, live)", margin=(0, 10)),
            heat_controls,
            pn.GridBox(*heat_plots, ncols=2, sizing_mode="stretch_width"),
            extras,
            pn.GridBox(self._tail.panes(),
                       self._whist.pane(),
                       self._signal.pane(),
                       ncols=2, sizing_mode="stretch_width"),
        ]
        # Served, the telemetry plots (seven of the nine figures, two thirds of the page's models) follow once
        # the browser has drawn the rest: the controls, the status and the curves are usable first. The plots
        # are fed from the start either way (their data is in them when they arrive).
        self._telemetry = pn.Column(sizing_mode="stretch_width", margin=0, css_classes=["live-telemetry"])
        pn.state.onload(lambda: setattr(self._telemetry, "objects", telemetry))
        main = pn.Column(
            pn.Row(start, pause, stop, progress, sizing_mode="stretch_width"),
            status,
            pn.GridBox(loss_pane, acc_pane, ncols=2, sizing_mode="stretch_width"),
            self._telemetry,
            sizing_mode="stretch_width",
        )
        self._heat_panes = heat_plots
        self._stop = stop
        self._layout = pn.Row(sidebar, main, sizing_mode="stretch_width", css_classes=["live-training"])
        self._callback: Any = None
        self._next_poll = 0.0
        self._curves_at = -math.inf
        self._start_polling()

    # ----------------------------------------------------------------- helpers
    @staticmethod
    def _status_text(run_id: str, status: str, step: int, total: int, test_acc: float | None, message: str,
                     steps_per_s: float | None = None, elapsed: float | None = None, eta: float | None = None,
                     note: str = "") -> str:
        """The status line: the run, its status, step and speed; then ``note`` (why no rows arrive, e.g. a
        store locked by another process: :attr:`LiveTrainingState.store_note`) and the last message."""
        if not run_id:
            return f"No run yet: press **Start**. {message}"
        message = f"**{note}**  \n{message}" if note else message
        acc = f", test acc **{test_acc:.2%}**" if test_acc is not None else ""
        if status == "created":
            return f"run `{run_id}` **queued** - waiting for its worker process  \n{message}"
        speed = ""
        if elapsed is not None:
            rate = f"{steps_per_s:.1f} steps/s, " if steps_per_s is not None else ""
            left = f", ETA {duration_text(eta)}" if is_active(status) and eta is not None else ""
            speed = f" ({rate}elapsed {duration_text(elapsed)}{left})"
        return f"run `{run_id}` **{status}** - step {step}/{total}{acc}{speed}  \n{message}"

    def _knob_panel(self, knobs: param.Parameterized, specs: dict[str, Any]) -> pn.Column:
        items: list[Any] = [pn.Param(knobs, show_name=False, widgets=knob_widgets(knobs), width=280, margin=0,
                                     css_classes=["scheme-knobs"])]
        for name, b in specs.items():
            items.append(OptionalSpecBuilderView(b, title=f"{name.upper()} format (optional)", color="#555555"))
        return pn.Column(*items, margin=0)

    def _start_polling(self) -> None:
        self._callback = pn.state.add_periodic_callback(self._poll, period=self.period, start=True)
        # the run's answers to Pause / Stop / knob changes are shown within ~0.1 s, between polls
        self._answers = pn.state.add_periodic_callback(self.state.check_answers, period=_ANSWERS_MS, start=True)
        self.state.param.watch(self._on_status, ["status", "run_id"])
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.on_session_destroyed(self._destroyed)

    def _wake_soon(self) -> None:
        """The run's feed read a new status (called from its reading thread): poll in the session's next tick."""
        doc = self._doc
        if doc is not None and self._callback is not None:
            try:
                doc.add_next_tick_callback(self._wake)  # the one Document method safe to call from another thread
            except Exception:  # noqa: BLE001 - a session being destroyed: its page polls no more anyway
                pass

    def _wake(self) -> None:
        from panel.io.state import set_curdoc

        with set_curdoc(self._doc):
            self._next_poll = 0.0
            self._poll()

    def _poll(self) -> None:
        """Poll the store, but leave the server's event loop at least two thirds of its time for the
        user's clicks (a long run's redraws can cost more than the period)."""
        now = time.monotonic()
        if now < self._next_poll:
            return
        self.poll()
        cost = time.monotonic() - now
        self._next_poll = now + max(0.0, 3.0 * cost - self.period / 1000.0)
        if self.state.settled:  # an ended run, all of it shown: look again rarely (a resume)
            self._next_poll = max(self._next_poll, now + self.state.ended_check)
            self._answer_every(_SETTLED_ANSWERS_MS)
            self._poll_every(int(1000 * self.state.ended_check))  # each call costs Panel ~1 ms even when skipped

    def _on_status(self, *_: Any) -> None:
        """A run started or came back: poll at once and look for answers every 0.1 s again."""
        self._poll_every(self.period)  # until the page shows all of the run again (then ``_poll`` slows it)
        if not is_final(self.state.status):
            self._next_poll = 0.0
            self._answer_every(_ANSWERS_MS)

    def _poll_every(self, ms: int) -> None:
        cb = getattr(self, "_callback", None)
        if cb is not None and cb.period != max(ms, self.period):
            cb.period = max(ms, self.period)

    def _answer_every(self, ms: int) -> None:
        cb = getattr(self, "_answers", None)
        if cb is not None and cb.period != ms:
            cb.period = ms

    def poll(self, force: bool = False) -> None:
        """Take the run's new rows (:meth:`LiveTrainingState.poll`) and stream the curves' new points
        (at most every ``curve_period`` seconds unless ``force``: each stream is a redraw in the browser,
        which shares the cores with the training)."""
        with batched():  # the poll's changes reach the browser as one message (one redraw there)
            self.state.poll()
            now = time.monotonic()
            if force or now - self._curves_at >= self.curve_period or not is_active(self.state.status):
                self._curves_at = now
                self._curves.update()

    def _destroyed(self, session_context: Any) -> None:
        if self._callback is not None:
            self._callback.stop()
            self._answers.stop()
            self._callback = None
        self.state.wake = None
        self.state.detach()

    def __panel__(self) -> pn.Row:
        return self._layout
