"""One run's plot data, read from the run store once and shared by every page that shows the run.

A :class:`RunFeed` reads the rows a run wrote since its last read (``RunStore.changes``, a rowid
cursor) and folds them into aggregates of bounded size, so the cost of a page update is the same at
step 100 and at step 100,000, and three tabs on one run cost one store read and one aggregation:

* :class:`Thinned`: rows keyed by step (loss curve, scheme signals, weight-histogram snapshots) with at
  most ``capacity`` distinct steps; when full, every other step goes and the stride doubles (an
  evenly spaced history of a long run);
* :class:`HeatGrid`: the mean ARE per (tensor, source, layer) in at most :data:`MAX_COLUMNS` step
  bins; when a step falls beyond the last bin, neighbouring bins merge pairwise and the bin width
  doubles;
* the latest activation histogram and overflow of each layer (the tail plot), per-layer statistics,
  knob-change markers and the run's end events;
* the run row's timestamps: ``started``, ``ended`` and the latest :data:`MAX_SPEED_SAMPLES`
  ``(heartbeat, step)`` pairs (:func:`explorer.live_frames.run_speed` turns them into steps/s,
  elapsed time and ETA);
* :attr:`RunFeed.status`, the run's status as of the rows read: it is read before the rows, and the
  run commits its final status with its last rows, so a final ``status`` means every row is in the feed
  (a page says a run ended only then: :mod:`explorer.live_state`);
* :attr:`RunFeed.store_busy`: while the run is ``running`` but has committed nothing (its heartbeat
  stands still) for :data:`STALL_AFTER` seconds and the store's write lock is held (probed with a
  ``BEGIN IMMEDIATE`` that gives up after :data:`PROBE_WAIT` s and is rolled back at once), another
  process blocks its commits: the run trains on with its rows buffered and retries
  (``core.train.Run._flush``). Nothing can be written to the store meanwhile, so the page learns it
  from the lock itself; afterwards the run's ``store_blocked`` event says how long it lasted (a
  message, :attr:`RunFeed.events`).

Every aggregate has a version number; a page redraws a plot only when its version changed, and
the frames a plot draws are computed once per version (:meth:`RunFeed.heat_frame` ...). Nothing
here touches Panel (:mod:`explorer.live_state` turns the frames into HoloViews streams).
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections import deque
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from . import live_frames
from .live_frames import HEAT_COLS, MAX_COLUMNS, ActHist, RunSpeed, WeightHist, empty_frame, run_speed

__all__ = ["Thinned", "HeatGrid", "RunFeed", "STEP_COLS", "EPOCH_COLS", "SIGNAL_ROLES", "feed_for"]

log = logging.getLogger(__name__)

STEP_COLS = ["step", "loss", "train_acc", "lr"]
EPOCH_COLS = ["step", "epoch", "test_acc", "test_loss"]
SIGNAL_COLS = ["step", "layer", "tensor", "role", "name", "value"]
#: metric roles of the schemes' own telemetry (plotted as "scheme signals")
SIGNAL_ROLES = ("schedule", "dfq", "niti", "logbtq", "cost", "scale")  # scale: the training recipes
#: most distinct steps the loss/accuracy curves keep (a longer run keeps an evenly spaced subset)
MAX_CURVE_STEPS = 8000
#: most distinct steps a scheme signal keeps
MAX_SIGNAL_STEPS = 2000
#: most (heartbeat, step) samples of the run row kept for its steps/s rate
MAX_SPEED_SAMPLES = 120
#: seconds without a commit (the run row's heartbeat unchanged) after which a running run's store is probed
#: for another process's write lock (a run commits every ``Run.flush_interval`` = 0.25 s while it trains and
#: buffers its rows once a commit waited ``Run.store_wait`` = 1 s for the lock)
STALL_AFTER = 1.5
#: seconds the write-lock probe waits for the lock (a commit of another run or page takes milliseconds)
PROBE_WAIT = 0.1


class Thinned:
    """Rows keyed by step, at most ``capacity`` distinct steps, in step order.

    The ``k``-th distinct step seen is kept while ``k % stride == 0``; when more than ``capacity``
    steps are kept the stride doubles and every other kept step goes (``generation`` counts these
    thinnings, so a reader knows to start over). Appending is O(new rows); a thinning is O(kept
    rows) and happens ``log2(steps / capacity)`` times in a run.
    """

    def __init__(self, columns: Sequence[str], capacity: int) -> None:
        if capacity < 2:
            raise ValueError(f"capacity must be at least 2, got {capacity}")
        self.columns = list(columns)
        self.capacity = int(capacity)
        self.stride = 1
        self.generation = 0
        self._ordinal = -1  # ordinal of the last distinct step seen
        self._last_step = -math.inf
        self._chunks: list[pd.DataFrame] = []
        self._frame = empty_frame([*self.columns, "_k"])
        self._kept_steps = 0

    def __len__(self) -> int:
        return len(self.frame)

    def add(self, df: pd.DataFrame) -> None:
        """Append rows (columns ``columns``; steps at or after the last step added)."""
        if not len(df):
            return
        df = df[df["step"] >= self._last_step] if math.isfinite(self._last_step) else df
        if not len(df):
            return
        steps = df["step"].to_numpy(float)
        new = np.concatenate([[steps[0] != self._last_step], steps[1:] != steps[:-1]])
        ordinal = self._ordinal + np.cumsum(new)
        self._ordinal = int(ordinal[-1])
        self._last_step = float(steps[-1])
        keep = ordinal % self.stride == 0
        if keep.any():
            part = df.loc[keep, self.columns].reset_index(drop=True)
            part["_k"] = ordinal[keep]
            self._chunks.append(part)
            self._kept_steps += int((new & keep).sum())
        while self._kept_steps > self.capacity:
            self._thin()

    def _thin(self) -> None:
        self.stride *= 2
        self.generation += 1
        f = self.frame_with_ordinals()
        f = f[f["_k"] % self.stride == 0].reset_index(drop=True)
        self._frame, self._chunks = f, []
        self._kept_steps = int(f["_k"].nunique())

    def frame_with_ordinals(self) -> pd.DataFrame:
        if self._chunks:
            parts = [self._frame, *self._chunks] if len(self._frame) else self._chunks
            self._frame = pd.concat(parts, ignore_index=True)
            self._chunks = []
        return self._frame

    @property
    def frame(self) -> pd.DataFrame:
        """The kept rows (columns ``columns``)."""
        return self.frame_with_ordinals()[self.columns]

    def since(self, generation: int, position: int) -> tuple[pd.DataFrame, bool]:
        """Rows a reader at (``generation``, ``position`` rows read) has not seen, and whether it must
        start over (a thinning happened since: the rows are then all the kept rows)."""
        f = self.frame
        if generation != self.generation:
            return f, True
        return f.iloc[position:], False


class HeatGrid:
    """Mean value per (key, layer) in at most ``columns`` equal step bins (the live heat maps).

    The first step seen is the origin; bin ``j`` covers ``[origin + j w, origin + (j + 1) w)``
    with ``w`` the telemetry period at first. A step beyond the last bin merges neighbouring bins
    pairwise (sums and counts add) and doubles ``w``, as often as needed: memory and the cost of a
    frame stay ``keys x layers x columns``, however long the run.
    """

    def __init__(self, width: float, columns: int = MAX_COLUMNS) -> None:
        if columns < 2 or columns % 2:
            raise ValueError(f"columns must be an even number >= 2, got {columns}")
        self.width = float(max(width, 1.0))
        self.columns = int(columns)
        self.origin: float | None = None
        self.keys: dict[tuple[str, str], int] = {}
        self.layers: dict[str, int] = {}
        self.sums = np.zeros((0, 0, self.columns))
        self.counts = np.zeros((0, 0, self.columns))

    def _index(self, table: dict[Any, int], values: Sequence[Any], axis: int) -> np.ndarray:
        for v in dict.fromkeys(values):
            if v not in table:
                table[v] = len(table)
        grow = len(table) - self.sums.shape[axis]
        if grow > 0:
            pad = [(0, 0)] * 3
            pad[axis] = (0, grow)
            self.sums = np.pad(self.sums, pad)
            self.counts = np.pad(self.counts, pad)
        return np.fromiter((table[v] for v in values), dtype=np.int64, count=len(values))

    def add(self, steps: np.ndarray, layers: Sequence[str], tensors: Sequence[str], sources: Sequence[str],
            values: np.ndarray) -> None:
        """Add ARE rows; NaN values are skipped."""
        steps = np.asarray(steps, dtype=float)
        values = np.asarray(values, dtype=float)
        ok = np.isfinite(values) & np.isfinite(steps)
        if not ok.any():
            return
        steps, values = steps[ok], values[ok]
        layers = [str(x) for x, k in zip(layers, ok) if k]
        keys = [(str(t), str(s)) for t, s, k in zip(tensors, sources, ok) if k]
        if self.origin is None:
            self.origin = float(steps.min())
        steps = np.maximum(steps, self.origin)
        while (steps.max() - self.origin) // self.width >= self.columns:
            self._merge()
        col = ((steps - self.origin) // self.width).astype(np.int64)
        ki = self._index(self.keys, keys, 0)
        li = self._index(self.layers, layers, 1)
        np.add.at(self.sums, (ki, li, col), values)
        np.add.at(self.counts, (ki, li, col), 1.0)

    def _merge(self) -> None:
        half = self.columns // 2
        for name in ("sums", "counts"):
            a = getattr(self, name)
            merged = a[..., 0::2] + a[..., 1::2]
            out = np.zeros_like(a)
            out[..., :half] = merged
            setattr(self, name, out)
        self.width *= 2

    def frame(self) -> pd.DataFrame:
        """Rows step (the bin's start), layer, tensor, value (the mean), width, source."""
        if self.origin is None or not self.counts.size:
            return empty_frame(HEAT_COLS)
        k, li, c = np.nonzero(self.counts)
        keys = list(self.keys)
        names = list(self.layers)
        value = self.sums[k, li, c] / self.counts[k, li, c]
        return pd.DataFrame({
            "step": self.origin + c * self.width,
            "layer": np.array(names, dtype=object)[li] if len(names) else np.zeros(0, dtype=object),
            "tensor": np.array([keys[i][0] for i in k], dtype=object),
            "value": value,
            "width": self.width,
            "source": np.array([keys[i][1] for i in k], dtype=object),
        })[HEAT_COLS]


class RunFeed:
    """Everything the Live Training plots draw of one run, shared by the pages that show it.

    Call :meth:`refresh` (cheap when called again within ``min_interval`` seconds, or after the run
    ended and its last rows were read); read the aggregates through the versioned accessors.
    """

    #: seconds between two store reads, however many pages poll
    min_interval: float = 0.2
    #: and at least this many times the last read's own cost: the reads (pandas, under the GIL the
    #: server's event loop needs) take at most about a fifth of the server's time on a long, fast run
    read_cost_factor: float = 4.0

    def __init__(self, run: Any) -> None:
        self.run = run
        self.lock = threading.RLock()
        self._read_lock = threading.Lock()  # one store reader at a time
        self._reader_lock = threading.Lock()
        self._reader: threading.Thread | None = None
        self._speed: RunSpeed | None = None
        self._cursor: dict[str, int] = {}
        self._read_at = -math.inf
        self._read_cost = 0.0  # seconds the last read took
        self.complete = False  # the run ended and every row it wrote has been read
        #: the run's status read just before the rows of the last successful read (None before one): every row
        #: the run wrote up to that status is in the feed
        self.status: str | None = None
        self._heartbeat: Any = None  # the run row's heartbeat as last read, and when it was first seen
        self._heartbeat_seen = -math.inf
        self._busy_since: float | None = None  # monotonic time of the run's last commit seen, while blocked
        self._probe: sqlite3.Connection | None = None
        self.layers: list[str] = []
        self.steps = Thinned(STEP_COLS, MAX_CURVE_STEPS)
        self.epochs = Thinned(EPOCH_COLS, MAX_CURVE_STEPS)
        self.signals = Thinned(SIGNAL_COLS, MAX_SIGNAL_STEPS)
        self.signal_names: list[str] = []
        every = float(max(1, getattr(getattr(run.config, "telemetry", None), "every", 1)))
        self.heat = HeatGrid(every)
        self.whist: dict[str, Thinned] = {}
        self.a_hists: dict[str, ActHist] = {}
        self.a_overflow: dict[str, tuple[float, float]] = {}  # layer -> (step, live overflow of A)
        self.stats: dict[tuple[str, str], float] = {}
        self.markers: list[int] = []
        self.events: list[str] = []  # messages of the run's warning and end events, in order
        self._end_events: list[str] = []  # end events read before the final status that came with them
        self.started: float | None = None
        self.ended: float | None = None
        self.speed_samples: deque[tuple[float, int]] = deque(maxlen=MAX_SPEED_SAMPLES)
        self.versions = {"heat": 0, "whist": 0, "tail": 0, "signals": 0, "markers": 0, "layers": 0}
        self._cache: dict[Any, Any] = {}
        self._listeners: list[Callable[[], None]] = []

    # ---------------------------------------------------------------- news for the pages
    def listen(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` after every read that changed :attr:`status` (a pause, a resume, the run's end with
        its last rows): a page then polls at once instead of at its next period. ``fn`` runs in the
        reading thread (the feed's background reader when the page reads with :meth:`refresh_soon`),
        so it must only schedule work, e.g. Bokeh's ``Document.add_next_tick_callback``."""
        with self.lock:
            if fn not in self._listeners:
                self._listeners.append(fn)

    def unlisten(self, fn: Callable[[], None]) -> None:
        with self.lock:
            if fn in self._listeners:
                self._listeners.remove(fn)

    def _notify(self) -> None:
        with self.lock:
            listeners = list(self._listeners)
        for fn in listeners:
            try:
                fn()
            except Exception:  # noqa: BLE001 - one page's closed session must not stop the others' news
                log.warning("a listener of run %s failed", self.run.id, exc_info=True)

    # ---------------------------------------------------------------- reading
    def refresh(self, force: bool = False) -> int:
        """Read what the run wrote since the last read (at most every ``min_interval`` s unless
        ``force``, or the run has just ended); returns how many rows were read.

        One reader at a time; the aggregates are locked (:attr:`lock`) only while the new rows are
        folded in, not while the store is read.
        """
        from core.store import is_final

        with self._read_lock:
            if self.complete:
                return 0
            now = time.monotonic()
            # the status row is committed with the run's last rows: a read after a final status is the last
            try:
                status = str(self.run.refresh(0.0 if force else None).get("status") or "")
            except sqlite3.Error as exc:  # the run row cannot be read now: try again at the next refresh
                log.warning("reading the status of run %s failed: %s", self.run.id, exc)
                return 0
            ended = is_final(status)
            if not (force or ended) and now - self._read_at < max(self.min_interval,
                                                                  self.read_cost_factor * self._read_cost):
                return 0
            was = self.status
            n = self._read(status)
            self._read_at = now
            self._read_cost = time.monotonic() - now
            if n is None:  # nothing was read: neither complete nor a newer status
                return 0
            self._watch_commits(status)
            if ended:
                self._close_probe()
            if status != was:
                self._notify()
            return n

    def refresh_soon(self) -> None:
        """Start :meth:`refresh` in a background thread unless one is going; returns at once.

        The Live page polls this way, so a long read (thousands of rows after a reload, a busy
        machine) never holds the server's event loop: a click is answered while the feed reads.
        """
        with self._reader_lock:
            if self.complete or (self._reader is not None and self._reader.is_alive()):
                return
            self._reader = threading.Thread(target=self._refresh_logged, name=f"feed-{self.run.id}", daemon=True)
            self._reader.start()

    def _refresh_logged(self) -> None:
        try:
            self.refresh()
        except Exception:  # noqa: BLE001 - a thread's failure would otherwise only reach stderr
            log.warning("reading run %s failed", self.run.id, exc_info=True)

    @property
    def reading(self) -> bool:
        """Whether a background read (:meth:`refresh_soon`) is going."""
        t = self._reader
        return t is not None and t.is_alive()

    def _read(self, status: str) -> int | None:
        """Fold the run's new rows in, and ``status`` (the run's, read before them) with them: a page taking
        the rows under :attr:`lock` sees the run's end event only together with ``complete``. Returns the number
        of rows read, None when the store could not be read (the feed is then not complete: the next refresh
        reads again)."""
        from core.store import is_final

        ended = is_final(status)
        run = self.run
        store = run.store
        try:
            names: list[str] | None = None
            if not self.layers:
                lay = store.layers(run.id)
                if len(lay):
                    names = [str(n) for n in lay.sort_values("idx")["name"]]
            tables, cursor = store.changes(run.id, self._cursor)
        except Exception as exc:  # noqa: BLE001 - a store hiccup must not break the pages
            log.warning("reading run %s failed: %s", run.id, exc)
            return None
        try:
            times: dict[str, Any] | None = store.get_run(run.id)
        except Exception as exc:  # noqa: BLE001 - no timing is no reason to drop the rows
            log.warning("reading the timestamps of run %s failed: %s", run.id, exc)
            times = None
        m, h, ev = tables["metrics"], tables["histograms"], tables["events"]
        with self.lock:  # fold the new rows in (the pages read the aggregates under this lock)
            self._cursor = cursor
            if names and not self.layers:
                self._set_layers(names)
            if times is not None:
                self._read_times(times)
            if len(m):
                self._add_metrics(m)
            if len(h):
                self._add_hists(h)
            if len(ev):
                self._add_events(ev)
            self.status = status
            self.complete = ended
            if ended:
                self.events.extend(self._end_events)
                self._end_events = []
        return len(m) + len(h) + len(ev)

    # ---------------------------------------------------------------- a store locked by another process
    def _watch_commits(self, status: str) -> None:
        """Follow the run's commits (its row's heartbeat): a running run that committed nothing for
        :data:`STALL_AFTER` s while the store's write lock is held is blocked (:attr:`store_busy`) until its
        heartbeat moves again."""
        if status != "running":  # a paused run commits nothing either, and needs not
            self._busy_since = None
            return
        if time.monotonic() - self._heartbeat_seen < STALL_AFTER:
            return
        if self._busy_since is None and self._write_locked():
            self._busy_since = self._heartbeat_seen if math.isfinite(self._heartbeat_seen) else time.monotonic()

    def _seen_heartbeat(self, hb: Any) -> None:
        if hb != self._heartbeat or not math.isfinite(self._heartbeat_seen):
            self._heartbeat = hb
            self._heartbeat_seen = time.monotonic()
            self._busy_since = None  # the run committed: whatever it buffered is written

    def _write_locked(self) -> bool:
        """Whether another connection holds the store's write lock now (a ``BEGIN IMMEDIATE`` that waits at
        most :data:`PROBE_WAIT` s, rolled back at once: it never holds the lock for longer than that)."""
        store = self.run.store
        path = getattr(store, "path", None)
        if getattr(store, "readonly", False) or path is None:
            return False
        try:
            if self._probe is None:
                # the run's row exists, so the file does: connecting creates nothing
                self._probe = sqlite3.connect(str(path), timeout=PROBE_WAIT, isolation_level=None,
                                              check_same_thread=False)
            c = self._probe
            c.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            return any(k in str(exc) for k in ("locked", "busy"))
        except sqlite3.Error:
            return False
        try:
            c.execute("ROLLBACK")
        except sqlite3.Error:
            self._close_probe()
        return False

    def _close_probe(self) -> None:
        if self._probe is not None:
            try:
                self._probe.close()
            except sqlite3.Error:
                pass
            self._probe = None

    @property
    def store_busy(self) -> float | None:
        """Seconds since the run's last commit while another process holds the store's write lock and the
        run buffers its rows (None while its commits go through)."""
        since = self._busy_since
        return None if since is None or self.complete else max(0.0, time.monotonic() - since)

    def _read_times(self, row: dict[str, Any]) -> None:
        """Keep the run row's start, end and one (heartbeat, step) sample per heartbeat."""
        self.started = row.get("started")
        self.ended = row.get("ended")
        hb, step = row.get("heartbeat"), row.get("step")
        self._seen_heartbeat(hb)
        if hb is not None and (not self.speed_samples or float(hb) > self.speed_samples[-1][0]):
            self.speed_samples.append((float(hb), int(step or 0)))

    def speed(self, total: int) -> RunSpeed:
        """Steps/s, elapsed time and ETA (to ``total`` steps) from the run row's timestamps (the last
        figures while a reader folds rows in: a page never waits for it)."""
        if not self.lock.acquire(blocking=False):
            return self._speed if self._speed is not None else run_speed([], None, None, total)
        try:
            self._speed = run_speed(list(self.speed_samples), self.started, self.ended, total)
            return self._speed
        finally:
            self.lock.release()

    def _add_metrics(self, m: pd.DataFrame) -> None:
        scalar = m[(m["role"] == "") & (m["layer"] == "")]
        st = scalar[scalar["name"].isin(STEP_COLS[1:])]
        if len(st):
            w = st.pivot_table(index="step", columns="name", values="value", aggfunc="last").reset_index()
            self.steps.add(w.reindex(columns=STEP_COLS).astype(float))
        ep = scalar[scalar["name"].isin(["test_acc", "test_loss"])]
        if len(ep):
            w = ep.pivot_table(index=["epoch", "step"], columns="name", values="value", aggfunc="last").reset_index()
            self.epochs.add(w.reindex(columns=EPOCH_COLS).astype(float).sort_values("step"))
        tel = m[m["name"].isin(["are", "overflow", "mean", "std"])]
        if len(tel):
            self._add_telemetry(tel)
        sig = m[m["role"].isin(SIGNAL_ROLES)]
        if len(sig):
            self._add_signals(sig)

    def _add_telemetry(self, df: pd.DataFrame) -> None:
        layer = df["layer"].astype(str)
        new = [n for n in dict.fromkeys(layer) if n and n not in self.layers]
        if new:
            self._set_layers(self.layers + new)
        stat = (df["role"] == "stat").to_numpy()
        for r in df[stat].itertuples(index=False):
            self.stats[(str(r.layer), f"{r.tensor}.{r.name}")] = float(r.value)
        live = (df["role"] == "live").to_numpy()
        are = (df["name"] == "are").to_numpy() & (live | (df["role"] == "shadow").to_numpy())
        if are.any():
            a = df[are]
            src = np.where(a["role"] == "live", "live", a["fmt"].astype(str))
            self.heat.add(a["step"].to_numpy(float), a["layer"].astype(str).tolist(), a["tensor"].astype(str).tolist(),
                          src.tolist(), a["value"].to_numpy(float))
            self.versions["heat"] += 1
        ovf = df[live & (df["name"] == "overflow").to_numpy() & (df["tensor"] == "a").to_numpy()]
        if len(ovf):
            for r in ovf.itertuples(index=False):
                key = str(r.layer)
                old = self.a_overflow.get(key)
                if old is None or float(r.step) >= old[0]:
                    self.a_overflow[key] = (float(r.step), float(r.value))
            self.versions["tail"] += 1
        if stat.any():
            self.versions["tail"] += 1

    def _add_signals(self, df: pd.DataFrame) -> None:
        df = df.reindex(columns=SIGNAL_COLS).copy()
        df["layer"] = df["layer"].fillna("").astype(str)
        df["tensor"] = df["tensor"].fillna("").astype(str)
        df["value"] = pd.to_numeric(df["value"], errors="coerce")
        self.signals.add(df.sort_values("step", kind="stable"))
        names = set(self.signal_names) | set(df["role"].astype(str) + "." + df["name"].astype(str))
        self.signal_names = sorted(names)
        self.versions["signals"] += 1

    def _add_hists(self, h: pd.DataFrame) -> None:
        """Fold in new histogram rows: each layer's weight histograms as one batch (a long run's first read
        holds thousands), the last activation histogram of each layer."""
        x = h[h["kind"] == "x"]
        if not len(x):
            return
        layers = x["layer"].astype(str).to_numpy()
        tensors = x["tensor"].astype(str).to_numpy()
        weights = tensors == "w"
        for layer in dict.fromkeys(layers[weights]):
            rows = x[weights & (layers == layer)]
            t = self.whist.get(layer)
            if t is None:
                t = self.whist[layer] = Thinned(["step", "item"], MAX_COLUMNS)
            items = [(int(step), np.asarray(counts, dtype=float), float(lo), float(hi))
                     for step, counts, lo, hi in zip(rows["step"], rows["counts"], rows["lo"], rows["hi"])]
            t.add(pd.DataFrame({"step": rows["step"].to_numpy(float), "item": items}))
            self.versions["whist"] += 1
        if (tensors == "a").any():
            for row in x[tensors == "a"].itertuples(index=False):
                self.a_hists[str(row.layer)] = (np.asarray(row.counts, dtype=float), float(row.lo), float(row.hi),
                                                int(getattr(row, "zeros", 0) or 0))
            self.versions["tail"] += 1

    def _add_events(self, ev: pd.DataFrame) -> None:
        ups = [int(p.get("step", s)) for s, k, p in zip(ev["step"], ev["kind"], ev["payload"]) if k == "update"]
        if ups:
            self.markers = sorted(set(self.markers) | set(ups))
            self.versions["markers"] += 1
        for k, p in zip(ev["kind"], ev["payload"]):
            if k in ("diverged", "error", "done", "stopped", "interrupted", "warning"):
                detail = f": {p.get('message')}" if k in ("error", "warning") and p.get("message") else ""
                # an end event is committed with the run's final status, but may be read with the status before
                # it (read first): it joins the messages with that final status (see _read)
                (self.events if k == "warning" else self._end_events).append(f"run {self.run.id}: {k}{detail}")
            elif k == "store_blocked":  # written by the run once its buffered rows could be committed
                secs = p.get("seconds")
                took = f" for {float(secs):.1f} s" if isinstance(secs, (int, float)) else ""
                self.events.append(f"run {self.run.id}: the run store was locked by another process{took}; the "
                                   f"run kept training, buffered its rows and wrote them once the store was free")

    def _set_layers(self, names: list[str]) -> None:
        self.layers = list(names)
        self.versions["layers"] += 1

    # ---------------------------------------------------------------- frames (cached per version)
    def _cached(self, key: tuple[Any, ...], make: Any) -> Any:
        with self.lock:
            hit = self._cache.get(key[0])
            if hit is not None and hit[0] == key:
                return hit[1]
            value = make()
            self._cache[key[0]] = (key, value)
            return value

    def heat_frame(self) -> pd.DataFrame:
        """ARE rows of every source (columns of :data:`live_frames.HEAT_COLS`), binned."""
        return self._cached(("heat", self.versions["heat"]), self.heat.frame)

    def weight_hist_frame(self, layer: str) -> pd.DataFrame:
        """The weight histogram of ``layer`` over time (at most :data:`MAX_COLUMNS` snapshots)."""
        return self._cached(("whist", self.versions["whist"], layer),
                            lambda: live_frames.weight_hist_frame(self.weight_hists(layer), MAX_COLUMNS))

    def weight_hists(self, layer: str) -> list[WeightHist]:
        t = self.whist.get(layer)
        return list(t.frame["item"]) if t is not None else []

    def signal_frame(self, signal: str) -> pd.DataFrame:
        """Rows of scheme signal ``role.name``: columns step, value, series."""
        return self._cached(("signal", self.versions["signals"], signal),
                            lambda: live_frames.signal_frame(self.signals.frame, signal))

    def tail_data(self, u: float, layers: Sequence[str] | None = None) -> dict[str, Any]:
        """Per-layer measured tail, live overflow of A and the LogBTQ bound with barrier ``u``
        (for ``layers``, default the run's)."""
        names = tuple(self.layers if layers is None else layers)
        overflow = {k: v for k, (_, v) in self.a_overflow.items()}
        return self._cached(("tail", self.versions["tail"], names, u),
                            lambda: live_frames.tail_data(names, self.a_hists, overflow, self.stats, u))


_FEEDS: dict[tuple[str, str], RunFeed] = {}
_FEEDS_LOCK = threading.Lock()
#: feeds kept for runs no page shows any more (the oldest go first)
MAX_FEEDS = 8


def feed_for(run: Any) -> RunFeed:
    """The shared feed of ``run`` (a :class:`core.sweep.RemoteRun`); one per store and run id."""
    key = (str(getattr(run.store, "path", id(run.store))), str(run.id))
    with _FEEDS_LOCK:
        feed = _FEEDS.pop(key, None)
        if feed is None:
            feed = RunFeed(run)
        _FEEDS[key] = feed  # most recently used last
        while len(_FEEDS) > MAX_FEEDS:
            _FEEDS.pop(next(iter(_FEEDS)))
        return feed
