"""Live Training state (Panel-free): configure, start and observe one training run.

:class:`LiveTrainingState` turns its parameters into a :class:`core.train.RunConfig` and queues
it as a :class:`core.sweep.RemoteRun`: the run trains in a worker process of a one-worker Dask
engine, never in the server, and goes on when the browser closes. The page sees it only through
the run store:

* :meth:`LiveTrainingState.poll`, called by the page on a periodic callback (in the session's
  thread, holding the document lock), reads the rows the run wrote since the last poll
  (``RunStore.changes``, a rowid cursor: the same cost at step 100 and at step 100,000) and
  streams them into ``hv.streams.Buffer`` / ``Pipe`` objects and read-only status parameters;
* a reloaded page (a new session) finds the run in :mod:`explorer.registry` and reads its
  history through the same cursor from the start (:meth:`attach`); with no run of this server still
  going, a new page opens on the last run in the store, also one trained by another process or
  started by an earlier server (:meth:`LiveTrainingState.latest_run`).

The status shown becomes final (``done``, ``stopped`` ...) only once the page shows every row the
run wrote (the run commits its final status with its last rows; the feed reads the status before the
rows, :attr:`explorer.live_feed.RunFeed.status`): until then a page whose feed reads in the background
keeps the status of the rows it shows. While another process holds the store's write lock the run
buffers its rows, and :attr:`LiveTrainingState.store_note` says so (:attr:`RunFeed.store_busy`).

Moving a knob, Pause and Stop write a command row for the run (``RunStore.send_command``); the
run acknowledges it within ``Run.command_interval`` and applies it before its next step; the page
says so when the answer arrives, and the step of every applied ``update`` is marked on all plots. A
change the run never used (it ended first, or rejected it) is said so, and its control shows the
run's value again (:meth:`LiveTrainingState._restore`).
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
import typing
from pathlib import Path
from typing import Any, Callable, cast

import pandas as pd
import param
from holoviews import streams

import core
from core.store import is_active, is_final

from . import registry
from .batching import batched
from .builder import SpecBuilder
from .knobs import knob_text, scheme_knob_class, spec_fields
from .live_feed import EPOCH_COLS, SIGNAL_ROLES, STEP_COLS, RunFeed, feed_for
from .live_frames import HEAT_COLS, MAX_COLUMNS, SIGNAL_PLOT_COLS, WHIST_COLS, empty_frame, tail_fraction
from .plots import decade_range

#: ``scheme_knob_class``/``spec_fields`` (:mod:`explorer.knobs`) and ``tail_fraction``/``MAX_COLUMNS``
#: (:mod:`explorer.live_frames`) are re-exported for compatibility
__all__ = ["LiveTrainingState", "scheme_knob_class", "spec_fields", "tail_fraction", "SIGNAL_ROLES", "MAX_COLUMNS"]

log = logging.getLogger(__name__)

TENSORS: tuple[str, ...] = ("w", "a", "e", "g")
#: signal shown first when a run has it (precision first)
_SIGNAL_PREFERENCE = ("schedule.bits", "dfq.bits_mean", "niti.s_a", "logbtq.outside_mean", "cost.bitops")
_SIGNAL_PLOT_COLS = SIGNAL_PLOT_COLS
#: the plots redrawn from the feed, by the feed version they draw
_PLOTS = ("heat", "whist", "tail", "signals")


_empty = empty_frame


# ----------------------------------------------------------------- state
class LiveTrainingState(param.Parameterized):
    """State of the Live Training page (one per session; the run itself is process-wide)."""

    dataset: param.Selector[str] = param.Selector(default="digits", objects=["digits"],
        doc="Dataset (digits is embedded and needs no network).")
    model: param.Selector[str] = param.Selector(default="mlp", objects=["mlp"], doc="Model architecture.")
    hidden = param.String(default="128,64", doc="Hidden layer widths of the MLP, comma separated.")
    scheme: param.Selector[str] = param.Selector(default="mls", objects=["mls"],
                                                 doc="Training scheme (its knobs appear below).")
    knobs = cast("param.ClassSelector[param.Parameterized]",  # set by __init__ (never None after it)
        param.ClassSelector(class_=param.Parameterized, constant=True,
            doc="Knobs of the chosen scheme (one per scheme field)."))
    specs = param.Dict(default={}, constant=True,
        doc="Spec builders for the scheme's format fields (W/A/E/G ...), by field name.")
    lr = param.Number(default=0.1, bounds=(1e-6, 10.0), step=0.01, doc="Learning rate (live).")
    momentum = param.Number(default=0.9, bounds=(0.0, 0.999), step=0.01, doc="SGD momentum (live).")
    epochs = param.Integer(default=10, bounds=(1, 10000), doc="Epochs to train (live: can be extended).")
    batch_size: param.Selector[int] = param.Selector(default=64, objects=[16, 32, 64, 128, 256], doc="Mini-batch size.")
    seed = param.Integer(default=0, bounds=(0, None), doc="Seed of the run (deterministic on the CPU).")
    every = param.Integer(default=10, bounds=(1, 1000), doc="Steps between telemetry snapshots (live).")
    shadow = param.String(default="fp8_e4m3",
        doc="Extra 'shadow' formats measured on the live tensors, separated by ';'.")
    max_steps = param.Integer(default=0, bounds=(0, None), doc="Stop after this many steps (0: the epochs decide).")
    data_root = param.String(default="",
        doc="Folder holding the dataset's files (DataConfig.root; empty: $LOWBIT_DATA or the catalogue cache). "
            "Only for a page served on this machine (see local_paths).")
    local_paths = param.Boolean(default=True, constant=True,
        doc="Whether this page may name server folders (data_root): true when served on loopback only.")
    threads = param.Integer(default=1, bounds=(1, 64), doc="Torch threads of the training worker.")
    redraw = param.Number(default=1.5, bounds=(0.0, 60.0),
        doc="Seconds between redraws of the telemetry plots (heat maps, tail, histograms); curves stream on every "
            "poll.")
    background_reads = param.Boolean(default=False,
        doc="Read the run store in a background thread (the served page does: a long read never holds the "
            "server); False reads in the poll itself, so a poll returns with every row taken (tests, notebooks).")
    redraw_budget = param.Number(default=0.2, bounds=(0.0, 10.0),
        doc="Seconds of telemetry redraws one poll may spend (at least one plot per poll; the rest wait for the "
            "next polls, so a click waits at most about this long for the server).")
    ended_check = param.Number(default=2.0, bounds=(0.0, 60.0),
        doc="Seconds between looks at the row of an ended run this page shows in full (it changes only if the "
            "run is resumed): an ended run keeps the server idle, however many tabs show it.")
    heat_source: param.Selector[str] = param.Selector(default="live", objects=["live"],
        doc="ARE of the format in use ('live') or of a shadow format.")
    hist_layer: param.Selector[str] = param.Selector(default="", objects=[""],
                                                     doc="Layer whose weight histogram is shown over time.")
    bound_u = param.Number(default=0.1, bounds=(0.0, 0.99), step=0.01,
        doc="Barrier u of the LogBTQ bound (the scheme's u when it has one).")
    heat_scale: param.Selector[str] = param.Selector(default="auto", objects=["auto", "fixed"],
        doc="Colour range of the ARE heat maps: 'auto' is one range per tensor kind (W, A, E, G), the whole "
            "decades of log10 ARE its rows span over every source; 'fixed' is heat_range for all four maps.")
    heat_range = param.Range(default=(-4.0, 0.0), bounds=(-7.0, 1.0), step=0.5,
        doc="log10 ARE colour range of every heat map while heat_scale is 'fixed'.")
    signal: param.Selector[str] = param.Selector(default="", objects=[""],
        doc="Scheme signal plotted over steps: precision schedule (CPT/PFQ bits), DFQ bits per layer, NITI "
            "exponents, LogBTQ terms, effective BitOPs.")

    # param's stubs type an Action as taking no argument; it is called with the instance
    start = param.Action(default=lambda self: self.start_run(),  # type: ignore[arg-type, misc]
                         doc="Start a new run with this configuration.")
    pause = param.Action(default=lambda self: self.toggle_pause(),  # type: ignore[arg-type, misc]
                         doc="Pause the run, or resume a paused one.")
    stop = param.Action(default=lambda self: self.stop_run(),  # type: ignore[arg-type, misc]
                        doc="Stop the run (status 'stopped').")

    run_id = param.String(default="", constant=True, doc="Id of the observed run (read-only).")
    status = param.String(default="idle", constant=True, doc="Status of the observed run (read-only).")
    step = param.Integer(default=0, constant=True, doc="Last step seen (read-only).")
    total_steps = param.Integer(default=0, constant=True, doc="Steps the run will take (read-only).")
    progress = param.Number(default=0.0, bounds=(0.0, 1.0), constant=True, doc="Fraction of steps done (read-only).")
    test_acc = param.Number(default=None, allow_None=True, constant=True, doc="Latest test accuracy (read-only).")
    message = param.String(default="", constant=True, doc="Last message: errors, applied updates (read-only).")
    markers = param.List(default=[], constant=True, doc="Steps where a knob was changed during the run (read-only).")
    layers = param.List(default=[], constant=True, doc="Layer names of the observed run, in model order (read-only).")
    steps_per_s = param.Number(default=None, allow_None=True, constant=True,
        doc="Steps per second of the observed run over its last seconds (read-only).")
    elapsed = param.Number(default=None, allow_None=True, constant=True,
        doc="Seconds since the observed run started (to its end once it ended; read-only).")
    eta = param.Number(default=None, allow_None=True, constant=True,
        doc="Seconds the observed run needs to its last step at its current rate (read-only).")
    store_note = param.String(default="", constant=True,
        doc="Why no new rows arrive although the run goes: another process holds the run store's write lock, "
            "the run buffers its rows and retries (read-only; empty while its commits go through).")

    def __init__(self, store: Any = None, attach: bool = True, **params: Any) -> None:
        from core.data import list_datasets
        from core.models import list_models
        from core.train import list_schemes

        super().__init__(**params)
        self.store = store
        self.param.dataset.objects = list_datasets()
        self.param.model.objects = list_models()
        self.param.scheme.objects = list_schemes()
        # a feed keeps at most MAX_CURVE_STEPS steps of a run (thinned), so the buffers never drop rows
        self.steps = streams.Buffer(_empty(STEP_COLS), length=200_000, index=False)
        self.epoch_rows = streams.Buffer(_empty(EPOCH_COLS), length=200_000, index=False)
        self.heat = streams.Pipe(data=_empty(HEAT_COLS))  # every tensor's rows (notebooks, tests)
        #: the rows of one tensor each (the page's four heat maps: one can be redrawn per poll)
        self.heat_of = {t: streams.Pipe(data=_empty(HEAT_COLS)) for t in TENSORS}
        self.tail = streams.Pipe(data={})
        self.whist = streams.Pipe(data=_empty(WHIST_COLS))
        self.signals = streams.Pipe(data=_empty(_SIGNAL_PLOT_COLS))
        self._signal_auto_pick = False
        self._reset_signals()
        self._run: Any = None
        self._feed: RunFeed | None = None
        #: called (from the feed's reading thread) when the observed run's status as read changed, e.g. it ended
        #: and its last rows are in the feed: the page (explorer.live) schedules a poll at once
        self.wake: Callable[[], None] | None = None
        self._commands: dict[int, tuple[str, dict[str, Any]]] = {}  # seq -> (what was asked, changes)
        self._status_checked = -math.inf  # when check_answers last looked at an ended run's row
        self._got: dict[str, Any] = {}  # what this page has taken from the feed (see _take)
        self._held_messages: list[str] = []  # the run's end events: said with its final status
        self._sent: dict[str, Any] = {}  # feed version each plot last drew
        self._syncing = False
        self._last_redraw = 0.0
        self._next_redraw = 0.0
        self._pending_redraws: list[Any] = []
        self._redraw_cost = 0.0
        #: bumped whenever the curve buffers start again (a new run, a thinned history): a view streaming
        #: them (explorer.live_curves) starts again too
        self.curves_generation = 0
        self._spec_watchers: list[Any] = []
        self._knob_watcher: Any = None
        self._notes: tuple[str, str] = ("", "")  # the empty plots' reasons last drawn
        self._notes_key: Any = None  # what they were computed from
        self._deferred_specs: dict[str, Any] = {}  # format cards to set back to the run's spec
        self._build_scheme(self.scheme)
        if attach:  # a new page (or a reload) shows this server's run still going, else the store's last run
            run = self.latest_run()
            if run is not None:
                try:
                    self.attach(run)
                except (ValueError, TypeError) as exc:  # e.g. a config beyond this page's controls' bounds
                    log.warning("cannot show run %s: %s", run.id, exc)
                    self.detach()
                    self._feed = None
                    self._say(f"the store's last run {run.id} cannot be shown here: {exc}")

    # ------------------------------------------------------------ the run a new page opens on
    def latest_run(self) -> Any:
        """The run a new page shows: the run this server started last while it still goes (its Stop and
        knobs), else the run of this page's store created last that has begun training (a run of this
        server, of another process, or of an earlier server: a page opened after a restart shows it);
        None when the store has none (or does not exist: looking creates no file)."""
        active = registry.latest(active_only=True)
        if active is not None and self._same_store(active):
            return active
        found = self._last_stored_run()
        if found is not None:
            return found
        run = registry.latest(active_only=False)
        return run if run is not None and self._same_store(run) else None

    def _store_path(self) -> Path | None:
        from core.store import resolve_store_path

        path = getattr(self.store, "path", None)
        try:
            return Path(path if path is not None else resolve_store_path(self.store)).resolve()
        except (TypeError, OSError):
            return None

    def _same_store(self, run: Any) -> bool:
        path = getattr(getattr(run, "store", None), "path", None)
        try:
            return path is not None and Path(path).resolve() == self._store_path()
        except OSError:
            return False

    def _last_stored_run(self) -> Any:
        """A :class:`core.sweep.RemoteRun` of the store's last run that began training (the registry's own
        object when this server started it), or None."""
        from core.store import RunStatus, RunStore, StoreError
        from core.sweep.remote import RemoteRun

        path = self._store_path()
        if path is None or not path.is_file():
            return None
        try:
            if not isinstance(self.store, RunStore):
                self.store = RunStore(self.store)
            rows = self.store.conn.execute(
                "SELECT run_id FROM runs WHERE status != ? ORDER BY created DESC LIMIT 5",
                (RunStatus.CREATED.value,)).fetchall()
        except (StoreError, OSError, sqlite3.Error) as exc:
            log.warning("cannot look for the last run in %s: %s", path, exc)
            return None
        for (run_id,) in rows:  # the newest first; one whose config this code cannot read is passed over
            known = registry.get(str(run_id))
            if known is not None and self._same_store(known):
                return known
            try:
                return RemoteRun(self.store, str(run_id))
            except (StoreError, ValueError, TypeError, KeyError, sqlite3.Error) as exc:
                log.warning("run %s of %s cannot be shown: %s", run_id, path, exc)
        return None

    # ------------------------------------------------------------ config
    @property
    def run(self) -> Any:
        """The observed :class:`core.train.Run` (None before the first start)."""
        return self._run

    @property
    def running(self) -> bool:
        """True while the observed run is queued, running or paused."""
        return self._run is not None and is_active(self._run.status)

    def scheme_fields(self) -> dict[str, Any]:
        """The scheme's field values from the knobs and spec builders."""
        from core.train import SCHEMES
        from core.train.config import coerce_value

        hints = typing.get_type_hints(SCHEMES[self.scheme])
        vals: dict[str, Any] = {}
        for k, v in self.knobs.param.values().items():
            if k == "name":
                continue
            hint = hints.get(k)  # String knobs of tuple fields hold "3,4,6,8"
            vals[k] = coerce_value(v, hint, k) if isinstance(v, str) and typing.get_origin(hint) is tuple else v
        for k, b in self.specs.items():
            vals[k] = b.value
        return vals

    def run_config(self) -> Any:
        """The :class:`core.train.RunConfig` these parameters describe.

        Raises:
            ValueError: an invalid value (bad hidden sizes, spec, scheme field ...).
        """
        from core.data import DataConfig
        from core.models import ModelConfig
        from core.train import OptimConfig, RunConfig, TelemetryConfig, get_scheme

        try:
            hidden = tuple(int(h) for h in self.hidden.replace(" ", "").split(",") if h)
        except ValueError:
            raise ValueError(f"hidden sizes must be integers separated by commas, got {self.hidden!r}") from None
        shadow = tuple(s.strip() for s in self.shadow.split(";") if s.strip())
        for s in shadow:
            core.parse_format(s)
        root = self.data_root.strip()
        if root and not self.local_paths:
            raise ValueError("a data folder can only be given on a page served on this machine: set LOWBIT_DATA "
                             "where the server runs")
        if root and not Path(root).expanduser().is_dir():
            raise ValueError(f"data folder {root!r} is not a folder on the server")
        return RunConfig(
            data=DataConfig(name=self.dataset, root=str(Path(root).expanduser()) if root else None),
            model=ModelConfig(name=self.model, hidden=hidden or (128,)),
            scheme=get_scheme(self.scheme, **self.scheme_fields()),
            optim=OptimConfig(name="sgd", lr=self.lr, momentum=self.momentum),
            telemetry=TelemetryConfig(every=self.every, shadow=shadow, sample_every=max(10, 4 * self.every)),
            epochs=self.epochs, batch_size=int(self.batch_size), seed=self.seed,
            max_steps=self.max_steps or None, threads=self.threads, name="explorer",
        )

    def _build_scheme(self, name: str, values: dict[str, Any] | None = None) -> None:
        """(Re)create knobs and spec builders for scheme ``name``."""
        from core.train import SCHEMES, get_scheme

        for b, w in self._spec_watchers:
            b.param.unwatch(w)
        self._spec_watchers = []
        if self._knob_watcher is not None:
            self.knobs.param.unwatch(self._knob_watcher)
        cls = SCHEMES[name]
        default = get_scheme(name)  # the scheme's own defaults: the same as the CLI's and a sweep file's
        values = values or {}
        knobs = scheme_knob_class(name)()
        kv = {k: values.get(k, getattr(default, k)) for k in knobs.param.values() if k != "name"}
        kv = {k: (knob_text(v) if isinstance(knobs.param[k], param.String) else v) for k, v in kv.items()}
        with param.parameterized.discard_events(knobs):
            knobs.param.update(**kv)
        specs: dict[str, SpecBuilder] = {}
        for n in spec_fields(cls):
            v = values.get(n, getattr(default, n))
            b = SpecBuilder(v if v else None, optional=True)
            specs[n] = b
            self._spec_watchers.append((b, b.param.watch(self._on_spec, ["fmt", "enabled"])))
        with param.edit_constant(self):
            self.param.update(knobs=knobs, specs=specs)
        names = [k for k in knobs.param.values() if k != "name"]
        self._knob_watcher = knobs.param.watch(self._on_knob, names) if names else None
        if "u" in kv and isinstance(kv["u"], (int, float)):
            self.bound_u = float(kv["u"])

    @param.depends("scheme", watch=True)
    def _on_scheme(self) -> None:
        if self._syncing:
            return
        self._build_scheme(self.scheme)
        if self.running:
            self._live_update({"scheme": {"name": self.scheme, **self.scheme_fields()}})

    # -------------------------------------------------------- live updates
    def _ended_before(self, changes: dict[str, Any]) -> bool:
        """True (and the change said to be dropped, its controls restored) when the page still showed
        the run going but it has ended: the change reached the server too late."""
        if self._syncing or self._run is None or self.running or not is_active(self.status):
            return False
        shown = ", ".join(f"{k}={v}" for k, v in changes.items())
        self._restore(changes)
        self._catch_up()  # the page shows the run ended at once, with all of it
        self._refresh_status()
        self._say(f"not applied: run {self._run.id} ended ({self._run.status}) before it got {shown}; "
                  f"the controls show the run's values again")
        return True

    def _catch_up(self) -> None:
        """Read and draw at once everything the ended run wrote that this page does not show yet (a change
        reached the page after the run ended: the page then says so, and shows the run ended)."""
        self._read_new(force=True)
        if self._dirty() or self._pending_redraws:
            self._publish_telemetry()
            self._pending_redraws = []

    def _on_knob(self, *events: Any) -> None:
        if self._ended_before({f"scheme.{e.name}": e.new for e in events}):
            return
        if self.running:
            self._live_update({f"scheme.{e.name}": e.new for e in events})
            for e in events:
                if e.name == "u" and isinstance(e.new, (int, float)):
                    self.bound_u = float(e.new)

    def _on_spec(self, *events: Any) -> None:
        changes = {f"scheme.{k}": b.value for k, b in self.specs.items() if any(e.obj is b for e in events)}
        if not changes or self._ended_before(changes) or not self.running:
            return
        if changes:
            self._live_update(changes)

    @param.depends("lr", "momentum", "every", "epochs", watch=True)
    def _on_live_param(self) -> None:
        if self._run is None or self._syncing:
            return
        cfg = self._run.config
        changes: dict[str, Any] = {}
        if self.lr != cfg.optim.lr:
            changes["optim.lr"] = self.lr
        if self.momentum != cfg.optim.momentum:
            changes["optim.momentum"] = self.momentum
        if self.every != cfg.telemetry.every:
            changes["telemetry.every"] = self.every
        if self.epochs != cfg.epochs:
            changes["epochs"] = self.epochs
        if not changes or self._ended_before(changes) or not self.running:
            return
        self._live_update(changes)

    def _live_update(self, changes: dict[str, Any]) -> None:
        shown = ", ".join(f"{k}={v}" for k, v in changes.items())
        try:
            seq = self._run.update(changes)
        except (ValueError, RuntimeError, TypeError) as exc:
            self._restore(changes)
            self._say(f"not applied: {exc}; the controls show the run's values again")
            return
        self._commands[seq] = (shown, changes)
        self._say(f"sent to the run: {shown}")

    def check_answers(self) -> None:
        """Say what the run made of the commands this page sent (they are answered within ~0.1 s);
        cheap (one row per waiting command), so a page can call it more often than :meth:`poll`."""
        self._restore_specs()
        if self._run is None:
            return
        if not self._commands:
            # A stop, a pause or an end is shown within ~0.1 s, between polls; the step, progress and speed
            # follow at the next poll (refreshing them here, ten times a second in every open tab, kept the
            # server busy). An ended run's row changes only if the run is resumed: looked at every
            # ``ended_check`` seconds.
            now = time.monotonic()
            if is_final(self.status) and now - self._status_checked < self.ended_check:
                return
            self._status_checked = now
            if self._run.status != self.status:
                self._refresh_status()
            return
        for seq in sorted(self._commands):
            ans = self._run.answer(seq)
            shown, changes = self._commands[seq]
            if ans.get("acked"):
                del self._commands[seq]
                result = str(ans.get("result") or "")
                if result.startswith("applied"):
                    self._say(f"{result}: {shown}")
                elif result.startswith("rejected"):
                    self._restore(changes)
                    self._say(f"not applied ({result[len('rejected: '):]}): {shown}; the controls show the "
                              f"run's values again")
                else:
                    self._say(f"run {self._run.id}: {result}")
            elif is_final(self._run.status):
                del self._commands[seq]
                self._restore(changes)
                self._say(f"not applied: run {self._run.id} ended ({self._run.status}) before it read {shown}"
                          + ("; the controls show the run's values again" if changes else ""))
        if not self._commands:
            self._refresh_status()

    def _restore(self, changes: dict[str, Any]) -> None:
        """Show the run's own values again in the controls of ``changes`` (``optim.lr``, ``scheme.mx``,
        ``scheme`` ...) that the run never used; nothing is sent (the run has ended or refused them)."""
        if not changes or self._run is None:
            return
        cfg = self._run.config
        own = {"optim.lr": ("lr", cfg.optim.lr), "optim.momentum": ("momentum", cfg.optim.momentum),
               "telemetry.every": ("every", max(1, cfg.telemetry.every)), "epochs": ("epochs", cfg.epochs)}
        scheme = cfg.scheme.to_dict()
        self._syncing = True
        try:
            for key in changes:
                if key in own:
                    name, value = own[key]
                    setattr(self, name, value)
                elif key == "scheme" or (key.startswith("scheme.") and self.scheme != cfg.scheme.name):
                    self.scheme = cfg.scheme.name
                    self._build_scheme(cfg.scheme.name, scheme)
                elif key.startswith("scheme."):
                    field = key[len("scheme."):]
                    if field in self.specs:
                        # a card's change reaches us inside its own update: set it back after that
                        self._deferred_specs[field] = scheme.get(field)
                    elif field in self.knobs.param:
                        p = self.knobs.param[field]
                        v = scheme.get(field)
                        setattr(self.knobs, field, knob_text(v) if isinstance(p, param.String) else v)
        finally:
            self._syncing = False

    def _restore_specs(self) -> None:
        """Set format cards back to the run's specs (see :meth:`_restore`), without sending anything."""
        if not self._deferred_specs:
            return
        pending, self._deferred_specs = self._deferred_specs, {}
        self._syncing = True
        try:
            for field, value in pending.items():
                if field in self.specs:
                    self.specs[field].set_spec(value)
        finally:
            self._syncing = False

    def _say(self, text: str) -> None:
        with param.edit_constant(self):
            self.message = text

    # ------------------------------------------------------------ actions
    def start_run(self) -> Any:
        """Queue a new run on the worker engine (refused while one is going); returns its
        :class:`core.sweep.RemoteRun`, or None with a message."""
        from core.store import RunStore
        from core.sweep import EngineError
        from core.sweep.remote import RemoteRun

        if self.running:
            self._say(f"run {self._run.id} is still {self._run.status}: stop it first")
            return None
        try:
            cfg = self.run_config()
            from core.data import DATASETS
            from core.models import MODELS

            if cfg.data.name not in DATASETS or cfg.model.name not in MODELS:
                raise ValueError(f"unknown dataset or model: {cfg.data.name}, {cfg.model.name}")
            if not isinstance(self.store, RunStore):
                self.store = RunStore(self.store)
            run = RemoteRun.submit(cfg, store=self.store, engine=registry.engine())
        except (ValueError, TypeError, EngineError) as exc:
            self._say(f"cannot start: {exc}")
            return None
        registry.register(run)
        self.attach(run)
        self._say(f"started run {run.id} (training in a worker process)")
        return run

    def _command(self, what: str) -> None:
        try:
            seq = getattr(self._run, what)()
        except RuntimeError as exc:
            self._say(f"not applied: {exc}")
            return
        self._commands[seq] = (what, {})
        self._say(f"asked run {self._run.id} to {what}")

    def toggle_pause(self) -> None:
        """Pause a running run, resume a paused one."""
        if self._run is None:
            return
        if self._run.status == "paused":
            self._command("resume")
        elif self._run.status in ("running", "created"):
            self._command("pause")

    def stop_run(self) -> None:
        """Stop the observed run (it ends before its next step)."""
        if self.running:
            self._command("stop")

    # ------------------------------------------------------------ observe
    def attach(self, run: Any, backfill: bool = True) -> None:
        """Observe ``run`` (a :class:`core.sweep.RemoteRun`): reset the plots, show its config in the
        controls, then draw everything it has written so far (from the run's shared feed: a second
        page on the same run reads nothing again)."""
        self.detach()
        self._run = run
        self._feed = feed_for(run)
        self._feed.listen(self._feed_news)
        self._commands = {}
        self._reset_tables()
        self._sync_controls(run)
        if backfill and run.id:
            self._read_new(publish=True)
        self._refresh_status()

    def detach(self) -> None:
        """Stop observing (the run goes on)."""
        self._run = None
        if self._feed is not None:
            self._feed.unlisten(self._feed_news)

    def _feed_news(self) -> None:
        wake = self.wake
        if wake is not None:
            wake()

    def _reset_tables(self) -> None:
        self.curves_generation += 1
        self.steps.clear()
        self.epoch_rows.clear()
        self._held_messages = []
        self._got = {"steps": (-1, 0), "epochs": (-1, 0), "events": 0, "markers": -1, "layers": -1,
                     "status": None, "complete": False}
        self._sent = {}
        self._pending_redraws = []
        with param.edit_constant(self):
            self.param.update(markers=[], layers=[], test_acc=None, step=0, progress=0.0)
        self.heat.send(_empty(HEAT_COLS))
        for pipe in self.heat_of.values():
            pipe.send(_empty(HEAT_COLS))
        self.whist.send(_empty(WHIST_COLS))
        self.tail.send({})
        self._reset_signals()

    def _reset_signals(self) -> None:
        """No scheme signals yet; the next ones pick the preferred signal again."""
        self._signal_names: list[str] = []
        self._signal_auto = True
        self.param.signal.objects = [""]
        with param.parameterized.discard_events(self):
            self.signal = ""
        self.signals.send(_empty(_SIGNAL_PLOT_COLS))

    def _sync_controls(self, run: Any) -> None:
        """Show the observed run's configuration in the controls (without triggering updates)."""
        cfg = run.config
        self._syncing = True
        try:
            with param.parameterized.discard_events(self):
                self.param.update(
                    dataset=cfg.data.name, model=cfg.model.name, scheme=cfg.scheme.name,
                    hidden=",".join(str(h) for h in cfg.model.hidden), lr=cfg.optim.lr,
                    momentum=cfg.optim.momentum, epochs=cfg.epochs, batch_size=cfg.batch_size
                    if cfg.batch_size in self.param.batch_size.objects else self.batch_size,
                    seed=cfg.seed, every=max(1, cfg.telemetry.every), shadow="; ".join(cfg.telemetry.shadow),
                    max_steps=cfg.max_steps or 0,
                    data_root=(cfg.data.root or "") if self.local_paths else "",
                )
            self._build_scheme(cfg.scheme.name, cfg.scheme.to_dict())
            self.param.trigger("dataset", "model", "scheme", "hidden", "lr", "momentum", "epochs",
                               "batch_size", "seed", "every", "shadow", "max_steps", "data_root")
        finally:
            self._syncing = False
        self.param.heat_source.objects = ["live", *cfg.telemetry.shadow]
        if self.heat_source not in self.param.heat_source.objects:
            self.heat_source = "live"

    def _read_new(self, publish: bool = False, force: bool = False) -> int:
        """Bring the run's feed up to date and take what this page has not shown yet: the curves
        stream their new rows; with ``publish`` every telemetry plot is redrawn too. Returns how
        many rows the feed read from the store (0 when it reads in the background: the rows are
        taken by a later poll)."""
        feed = self._feed
        if feed is None:
            return 0
        if self.background_reads and not (publish or force):
            feed.refresh_soon()
            n = 0
        else:
            n = feed.refresh(force=publish or force)
        if not feed.lock.acquire(blocking=False):  # a reader is folding rows in: take them next poll
            return n
        try:
            self._take(feed)
        finally:
            feed.lock.release()
        if publish:
            self._publish_telemetry()
            self._last_redraw = time.monotonic()
        return n

    def _take(self, feed: RunFeed) -> None:
        """Stream the feed's new curve rows, markers, layers and messages into this page."""
        with feed.lock:
            got = self._got
            if got["layers"] != feed.versions["layers"]:
                got["layers"] = feed.versions["layers"]
                self._set_layers(list(feed.layers))
            for name, table, buf in (("steps", feed.steps, self.steps), ("epochs", feed.epochs, self.epoch_rows)):
                gen, pos = got[name]
                rows, restart = table.since(gen, pos)
                if restart:
                    buf.clear()
                    self.curves_generation += 1
                    pos = 0
                if len(rows):
                    buf.send(rows.reset_index(drop=True))
                got[name] = (table.generation, pos + len(rows))
                if name == "epochs" and len(rows):
                    acc = rows["test_acc"].dropna()
                    if len(acc):
                        with param.edit_constant(self):
                            self.test_acc = float(acc.iloc[-1])
            if got["markers"] != feed.versions["markers"]:
                got["markers"] = feed.versions["markers"]
                with param.edit_constant(self):
                    self.markers = list(feed.markers)
                # the plots that draw the markers are redrawn with the next redraws (none of them at once)
                for plot in ("heat", "whist", "signals"):
                    self._sent.pop(plot, None)
            if feed.signal_names != self._signal_names:
                self._update_signal_names(list(feed.signal_names))
            new = feed.events[got["events"]:]
            got["events"] = len(feed.events)
            if feed.complete:  # the run's last rows (its end event): said once the page says it ended
                self._held_messages.extend(new)
            else:
                for text in new:
                    self._say(text)
            # the run's status as of the rows just taken, and whether they are all it wrote
            got["status"], got["complete"] = feed.status, feed.complete

    @property
    def settled(self) -> bool:
        """True when the observed run has ended and the page shows all of it: nothing left to read,
        redraw or answer (a page may then poll rarely: :attr:`ended_check`)."""
        feed = self._feed
        return (self._run is not None and is_final(self.status) and not self._commands
                and not self._pending_redraws and feed is not None and feed.complete and not self._dirty())

    def _shows_all(self) -> bool:
        """True when this page has taken every row of the ended run from its feed and drawn them (no plot
        waits for a redraw): only then may its status say the run ended."""
        feed = self._feed
        return (feed is not None and bool(self._got.get("complete")) and not self._pending_redraws
                and not self._dirty())

    def _shown_status(self, status: str, was: str) -> str:
        """The status to show for the run's ``status``: a final one once the page shows all of the run
        (:meth:`_shows_all`), else the status of the rows it shows (a going run's pause, resume ... are
        shown at once: they need no rows)."""
        if not is_final(status) or self._shows_all():
            return status
        got = self._got.get("status")
        if got and not is_final(got):
            return str(got)
        return was if is_active(was) else "running"

    def _dirty(self) -> list[str]:
        """The plots whose feed data changed since they were drawn."""
        feed = self._feed
        if feed is None:
            return []
        return [p for p in _PLOTS if self._sent.get(p) != feed.versions[p]]

    def poll(self, max_items: int = 100_000, force: bool = False) -> int:
        """Take what the run wrote since the last poll into the streams and status; returns how many
        rows the run's feed read from the store.

        Curves stream on every call; the telemetry plots are redrawn at most every ``redraw``
        seconds, as many per call as fit in ``redraw_budget`` seconds and at least one (all at once
        when ``force``, or once the run has ended and its feed holds all its rows), so no poll holds
        the server for long while the worker trains: a click waits for the poll in progress. In a server session the
        redraws of one poll are one document update (:func:`explorer.batching.batched`). Call from
        the page's periodic callback (or directly in tests and notebooks).
        """
        if self._run is None:
            return 0
        self._restore_specs()
        n = self._read_new(force=force)
        self.check_answers()
        now = time.monotonic()
        ended = self._feed is not None and self._feed.complete
        dirty = self._dirty()
        if (dirty or self._pending_redraws) and (force or ended):
            # everything, at once: asked for, or the run ended (its feed reads nothing more, and the page says
            # the run ended only once every plot shows its last rows: one redraw, in this poll)
            with batched():
                self._publish_telemetry()
                self._pending_redraws = []
        elif self._pending_redraws or (dirty and (ended or now >= self._next_redraw)):
            feed = self._feed
            if feed is None or feed.lock.acquire(blocking=False):  # never wait here for a reader's fold-in
                try:
                    self._redraw_some(now, dirty)
                finally:
                    if feed is not None:
                        feed.lock.release()
        self._refresh_status()
        if ended and self._pending_redraws:  # what the final status redraws (an empty plot's reason): now too
            with batched():
                while self._pending_redraws:
                    self._pending_redraws.pop(0)()
        return n

    def _redraw_some(self, now: float, dirty: list[str]) -> None:
        """Redraw the next pending telemetry plots, as many as fit in ``redraw_budget`` (at least one)."""
        if not self._pending_redraws:
            self._pending_redraws = [f for p in dirty for f in self._publishers(p)]
            self._redraw_cost = 0.0
        with batched():
            while self._pending_redraws:
                self._pending_redraws.pop(0)()
                if time.monotonic() - now >= self.redraw_budget:
                    break
        self._redraw_cost += time.monotonic() - now
        if not self._pending_redraws:
            self._last_redraw = now
            # the server spends at most a seventh of its time redrawing, however long the run is
            self._next_redraw = now + max(self.redraw, 6.0 * self._redraw_cost)

    # --------------------------------------------------------- internals
    @property
    def _stats(self) -> dict[tuple[str, str], float]:
        """Per-layer statistics (``(layer, "a.mean")`` ...) of the observed run."""
        return self._feed.stats if self._feed is not None else {}

    def _set_layers(self, names: list[str]) -> None:
        with param.edit_constant(self):
            self.layers = list(names)
        self.param.hist_layer.objects = list(names) or [""]
        if self.hist_layer not in names:
            self.hist_layer = names[0] if names else ""

    def _update_signal_names(self, found: list[str]) -> None:
        self._signal_names = found
        # preferred signals first: a browser Select falls back to its first option when the options change
        names = [n for n in _SIGNAL_PREFERENCE if n in found] + sorted(set(found) - set(_SIGNAL_PREFERENCE))
        if names != list(self.param.signal.objects):
            self.param.signal.objects = names
            if self.signal not in names or self._signal_auto:  # until the user picks one, prefer precision
                pick = next((n for n in _SIGNAL_PREFERENCE if n in names), names[0])
                self._signal_auto_pick = True
                try:
                    self.signal = pick
                finally:
                    self._signal_auto_pick = False

    def signal_frame(self) -> pd.DataFrame:
        """Rows of the chosen scheme signal: columns step, value, series (a layer/tensor, or the name)."""
        if self._feed is None or not self.signal:
            return _empty(_SIGNAL_PLOT_COLS)
        return self._feed.signal_frame(self.signal)

    @param.depends("signal", watch=True)
    def _on_signal(self) -> None:
        if not self._signal_auto_pick and self.signal:
            self._signal_auto = False  # the user chose a signal: keep it
        self._publish_signals()

    def _publish_signals(self) -> None:
        self._mark_sent("signals")
        self.signals.send(self.signal_frame())

    def _mark_sent(self, plot: str) -> None:
        if self._feed is not None:
            self._sent[plot] = self._feed.versions[plot]

    def _publish_telemetry(self) -> None:
        with batched():
            self._publish_heat()
            self._publish_whist()
            self._publish_tail()
            self._publish_signals()

    def heat_frame(self) -> pd.DataFrame:
        """ARE rows of every source: columns step, layer, tensor, value, width, source.

        ``source`` is ``live`` (the format in use) or a shadow spec string; a long run is binned into
        at most :data:`MAX_COLUMNS` step columns.
        """
        return self._feed.heat_frame() if self._feed is not None else _empty(HEAT_COLS)

    def _publishers(self, plot: str) -> list[Any]:
        """The redraws of ``plot``, one call each (the heat maps one tensor at a time)."""
        if plot != "heat":
            return [getattr(self, f"_publish_{plot}")]
        calls: list[Any] = [lambda t=t: self._publish_heat_of(t) for t in TENSORS]
        calls.append(lambda: self.heat.send(self.heat_frame()))
        return calls

    def _publish_heat_of(self, tensor: str) -> None:
        self._mark_sent("heat")
        frame = self.heat_frame()
        self.heat_of[tensor].send(frame[frame["tensor"] == tensor] if len(frame) else frame)

    def heat_clim(self, tensor: str) -> tuple[float, float] | None:
        """The log10 ARE colour range of ``tensor``'s heat map: ``heat_range`` when ``heat_scale`` is
        'fixed', else the whole decades its rows of every source span (None without rows), so the live
        format and a shadow format of one tensor share a scale and noise within a decade stays one colour."""
        if self.heat_scale == "fixed":
            return (float(self.heat_range[0]), float(self.heat_range[1]))
        frame = self.heat_frame()
        return decade_range(frame.loc[frame["tensor"] == tensor, "value"]) if len(frame) else None

    @param.depends("heat_source", "heat_scale", "heat_range", watch=True)
    def _publish_heat(self) -> None:
        with batched():
            for t in TENSORS:
                self._publish_heat_of(t)
            self.heat.send(self.heat_frame())

    @param.depends("hist_layer", watch=True)
    def _publish_whist(self) -> None:
        self._mark_sent("whist")
        frame = self._feed.weight_hist_frame(self.hist_layer) if self._feed is not None else _empty(WHIST_COLS)
        self.whist.send(frame)

    @param.depends("bound_u", watch=True)
    def _publish_tail(self) -> None:
        self._mark_sent("tail")
        self.tail.send(self.tail_data())

    def tail_data(self) -> dict[str, Any]:
        """Per-layer measured tail P(|A| >= 2), the live overflow of A, and the LogBTQ bound."""
        return self._feed.tail_data(self.bound_u, self.layers) if self._feed is not None else {}

    def _empty_reason(self, what: str) -> str:
        """Why a telemetry plot of the observed run has nothing to show (``what``: the missing data)."""
        from core.train import SCHEMES

        run = self._run
        if run is None:
            return "no run yet: press Start"
        every = max(1, int(run.config.telemetry.every or 0))
        if is_active(self.status) and self.step <= every:
            return f"waiting for the first telemetry snapshot (every {every} steps)"
        cls = SCHEMES.get(run.config.scheme.name)
        if self._feed is not None and not len(self.heat_frame()) and cls is not None and cls.rebuilds_model:
            # e.g. NITI: an integer network, no float quantized layer for the hooks to measure
            return (f"no {what}: {cls.name} trains its own network\n({cls.description}),\nwith no float "
                    f"quantized layer to measure:\nsee its scheme signals")
        if not run.config.telemetry.hist:
            return f"no {what}: this run's telemetry has hist = false"
        return f"no {what} logged by this run"

    def tail_note(self) -> str:
        """Why the tail plot is empty ("" when it has a measured point)."""
        d = self.tail_data()
        vals = [*d.get("measured", []), *d.get("overflow", [])]
        if any(isinstance(v, float) and math.isfinite(v) for v in vals):
            return ""
        return self._empty_reason("activation histograms")

    def whist_note(self) -> str:
        """Why the weight histogram plot is empty ("" when it has a snapshot)."""
        if self._feed is not None and self._feed.weight_hists(self.hist_layer):
            return ""
        return self._empty_reason("weight histograms")

    def _refresh_status(self) -> None:
        run = self._run
        if run is None:
            return
        was = self.status
        status = self._shown_status(run.status, was)
        total = int(run.total_steps)
        feed = self._feed
        speed = feed.speed(total) if feed is not None else None
        busy = feed.store_busy if feed is not None and status == "running" else None
        note = (f"store busy: another process holds the run store's write lock (no commit for {busy:.0f} s); "
                f"rows buffered, retrying" if busy is not None else "")
        message = self.message
        if is_final(status) and self._held_messages:  # the run's end event, said with its final status
            message, self._held_messages = self._held_messages[-1], []
        with param.edit_constant(self):
            self.param.update(
                run_id=run.id or "", status=status, step=int(run.step),
                total_steps=total, progress=float(run.progress),
                steps_per_s=speed.steps_per_s if speed else None, elapsed=speed.elapsed if speed else None,
                eta=speed.eta if speed else None, store_note=note, message=message,
            )
        if status != was and is_final(status):
            # the heat-map titles say why a map stays empty once a run has ended (redrawn by the next polls)
            self._pending_redraws.extend(self._publishers("heat"))
        if status in ("error", "interrupted") and run.error and status != was:
            self._say(f"run {run.id} failed: {run.error}")
        self._publish_notes(run, status)

    def _publish_notes(self, run: Any, status: str) -> None:
        """Redraw the tail and weight-histogram plots when the reason they are empty changed."""
        feed = self._feed
        key = (id(feed), feed.versions["tail"] if feed else -1, feed.versions["whist"] if feed else -1,
               self.hist_layer, status, self.step <= max(1, int(run.config.telemetry.every or 0)))
        if key == self._notes_key:  # nothing an empty plot's reason depends on changed
            return
        self._notes_key = key
        notes = (self.tail_note(), self.whist_note())
        if notes != self._notes:  # an empty plot's reason changed (e.g. waiting -> none logged): redraw it
            self._notes = notes
            self._pending_redraws.extend([self._publish_tail, self._publish_whist])
