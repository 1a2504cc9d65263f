"""Sweeps state (Panel-free): pick a sweep from the run store, lay its cells out as a heat map, start/stop it.

A sweep (:mod:`core.sweep`) is a grid of training runs; the store holds one row per cell with its
coordinates (dotted config key -> value), status and run. :class:`SweepsState` reads them with a
few queries per :meth:`SweepsState.refresh` (``list_sweeps``, ``sweep_cells`` and one query for the
metric), so the page can call it every second and the grid fills while cells finish.

The grid: two coordinate keys on x and y (default: the sweep's ``axes``), optionally a third as
facet (one heat map per value), and the remaining keys (e.g. seeds) aggregated: the chosen
statistic of the finished cells' metric, with the spread (std) and the count. :attr:`frame` is a
tidy DataFrame, one row per heat-map cell (see :data:`FRAME_COLUMNS`).

Sweeps never run in the server: Start and Resume launch ``python -m core.sweep run FILE --store
STORE --no-progress`` as a detached process (its own session, output to a log beside the store),
so the sweep goes on when the browser closes; Stop asks it through the store
(``RunStore.request_sweep_stop``).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import param

from core.store import RunStatus, SweepStatus
from core.sweep.metrics import METRICS, metric_values

__all__ = ["SweepsState", "FRAME_COLUMNS", "CellState", "AGGREGATIONS", "ALL", "build_frame", "value_range",
           "config_summary", "project_root", "find_sweeps_dir", "SWEEPS_DIR_ENV"]

#: environment variable naming the folder of sweep files offered by Start (default: ``<project>/sweeps``)
SWEEPS_DIR_ENV = "LOWBIT_SWEEPS_DIR"
#: statistics over the cells that share x, y and facet
AGGREGATIONS: tuple[str, ...] = ("mean", "median", "min", "max")
_NONE = ""
#: y label when no y key is chosen
ALL = "(all)"


class CellState:
    """Summary status of one heat-map cell (all the sweep cells that share its x, y and facet)."""

    DONE = "done"
    DIVERGED = "diverged"
    FAILED = "failed"
    STOPPED = "stopped"
    RUNNING = "running"
    PENDING = "pending"


#: run statuses that count as failed (shown "failed")
_FAILED = (RunStatus.ERROR.value, RunStatus.INTERRUPTED.value)
_ACTIVE = (RunStatus.RUNNING.value, RunStatus.PAUSED.value)
_SWEEP_ACTIVE = (SweepStatus.RUNNING.value, SweepStatus.STOPPING.value)

#: columns of :attr:`SweepsState.frame`
FRAME_COLUMNS: tuple[str, ...] = (
    "facet", "y", "x",          # labels (value_label of the coordinates; y is ALL without a y key)
    "value", "std", "n",        # statistic of the done cells' metric, their std (ddof=1) and count
    "cells",                    # sweep cells in this heat-map cell
    "status", "label",          # CellState value; text drawn in the cell ("12.3%", "Div.", "failed" ...)
    "detail",                   # "value ± std (n=2)" for hover
    "counts",                   # "2 done, 1 diverged" for hover
    "over",                     # the aggregated keys' values, "seed=0,1"
    "run_ids", "runs",          # list of run ids; the same as text
    "config",                   # short config summary of the cell
    "error",                    # first error message of a failed run ('' if none)
    "ix", "iy", "ifacet",       # positions of the labels in their axis order
)


def project_root() -> Path:
    """The repository / package root (the folder above ``explorer/``)."""
    return Path(__file__).resolve().parents[1]


def find_sweeps_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The folder of sweep files: ``path``, else ``$LOWBIT_SWEEPS_DIR``, else ``<project>/sweeps`` in a
    checkout, else the sweep files shipped in the package (``core/sweep/examples``)."""
    if path is not None:
        return Path(path)
    env = os.environ.get(SWEEPS_DIR_ENV)
    if env:
        return Path(env)
    checkout = project_root() / "sweeps"
    if checkout.is_dir():
        return checkout
    import core.sweep

    return Path(core.sweep.__file__).resolve().parent / "examples"


def _label(v: Any) -> str:
    from core.sweep.spec import value_label

    return value_label(v)


def config_summary(cfg: Mapping[str, Any]) -> str:
    """One line naming a run config's dataset, model, scheme, optimizer and length."""
    d = cfg.get("data") or {}
    m = cfg.get("model") or {}
    s = cfg.get("scheme") or {}
    o = cfg.get("optim") or {}
    model = str(m.get("name", "?"))
    if m.get("hidden"):
        model += "[" + ",".join(str(h) for h in m["hidden"]) + "]"
    length = f"{cfg.get('epochs', '?')} epoch(s)"
    if cfg.get("max_steps"):
        length += f", max {cfg['max_steps']} steps"
    return (f"{d.get('name', '?')} / {model} / {s.get('name', '?')} / {o.get('name', '?')} lr={o.get('lr', '?')} "
            f"bs={cfg.get('batch_size', '?')} / {length}")


def _last_error_line(log: Path) -> str:
    """The last line of ``log`` that starts with ``error:``, else its last non-empty line."""
    try:
        lines = [ln.strip() for ln in log.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    errors = [ln for ln in lines if ln.startswith("error:")]
    return errors[-1] if errors else (lines[-1] if lines else "")


class SweepsState(param.Parameterized):
    """State of the Sweeps page.

    Args:
        store: a ``core.store.RunStore`` or its path; None = ``$LOWBIT_STORE`` / the user data dir.
        sweeps_dir: folder of the sweep files Start offers (default :func:`find_sweeps_dir`).
        open_runs: called with a list of run ids when a cell is opened (the app opens them in Compare).
    """

    sweep: param.Selector[str | None] = param.Selector(default=None, objects=[], allow_None=True,
                                                       doc="The sweep shown (newest first).")
    x: param.Selector[str] = param.Selector(default=_NONE, objects=[_NONE], doc="Coordinate key on the x axis.")
    y: param.Selector[str] = param.Selector(default=_NONE, objects=[_NONE],
                                            doc="Coordinate key on the y axis ('' = one row).")
    facet: param.Selector[str] = param.Selector(default=_NONE, objects=[_NONE],
                                                doc="Key with one heat map per value ('' = none).")
    agg: param.Selector[str] = param.Selector(default="mean", objects=list(AGGREGATIONS),
                                              doc="Statistic over the other keys (e.g. seeds).")
    metric: param.Selector[str] = param.Selector(default="best_test_acc", objects=list(METRICS),
                                                 doc="Per-cell metric (default: its own).")
    sweep_file: param.Selector[str | None] = param.Selector(default=None, objects=[], allow_None=True,
                                                            doc="Sweep file (sweeps folder) for Start.")
    workers = param.Integer(default=0, bounds=(0, 256), doc="Dask workers for Start/Resume (0 = one per core).")

    # param's stubs type an Action as taking no argument; it is called with the instance
    start = param.Action(default=lambda self: self.start_sweep(),  # type: ignore[arg-type, misc]
                         doc="Launch the chosen sweep file.")
    stop = param.Action(default=lambda self: self.stop_sweep(),  # type: ignore[arg-type, misc]
                        doc="Ask the shown sweep to stop.")
    resume = param.Action(default=lambda self: self.resume_sweep(),  # type: ignore[arg-type, misc]
                          doc="Launch the shown sweep's file again.")
    refresh_action = param.Action(default=lambda self: self.refresh(),  # type: ignore[arg-type, misc]
                                  doc="Re-read the store.")

    open_runs = param.Callable(default=None, allow_None=True, doc="Called with the run ids of an opened cell.")

    sweeps = param.DataFrame(default=None, allow_None=True, constant=True, doc="store.list_sweeps() (read-only).")
    frame = param.DataFrame(default=None, allow_None=True, constant=True, doc="The heat map's cells (read-only).")
    sweep_status = param.String(default="", constant=True, doc="Status of the shown sweep (read-only).")
    progress = param.String(default="", constant=True, doc="'sweep X: running, 3/4 done, 1 running, 0 failed'.")
    message = param.String(default="", constant=True, doc="Result of the last action / the sweep process (read-only).")

    def __init__(self, store: Any = None, sweeps_dir: str | os.PathLike[str] | None = None,
                 open_runs: Callable[[list[str]], Any] | None = None, **params: Any) -> None:
        super().__init__(**params)
        self.store = store
        self.sweeps_dir = find_sweeps_dir(sweeps_dir)
        self.open_runs = open_runs
        self._cells: pd.DataFrame | None = None
        self._values: dict[str, float] = {}
        self._procs: dict[str, tuple[subprocess.Popen[bytes], Path, str]] = {}
        self._select_when_listed: str | None = None
        self._last_mark = 0.0
        self._files: dict[str, Path] = {}
        self._updating = False
        self._axes_for: str | None = None
        self.param.watch(self._axes_changed, ["x", "y", "facet"])
        self.refresh_files()
        self.refresh()

    # ----------------------------------------------------------- store
    def _store(self) -> Any:
        from core.store import RunStore

        if not isinstance(self.store, RunStore):
            self.store = RunStore(self.store)
        return self.store

    def _set(self, **values: Any) -> None:
        changed = {k: v for k, v in values.items() if not _same(getattr(self, k), v)}
        if changed:
            with param.edit_constant(self):
                self.param.update(**changed)

    # ----------------------------------------------------------- refresh
    def refresh(self) -> pd.DataFrame | None:
        """Re-read the sweep list and the shown sweep's cells (a few queries); returns :attr:`frame`."""
        st = self._store()
        now = time.monotonic()
        if now - self._last_mark > 5.0:  # a sweep whose process was killed ends 'interrupted'
            self._last_mark = now
            try:
                st.mark_interrupted()
            except Exception:  # noqa: BLE001 - a busy store: next time
                pass
        self._poll_processes()
        df = st.list_sweeps()
        names = [str(s) for s in df["sweep_id"]]
        self._set(sweeps=df)  # before the options: a widget may pick a sweep as they change
        if list(self.param.sweep.objects) != names:
            self.param.sweep.objects = names
        target = self.sweep
        if self._select_when_listed in names:
            target, self._select_when_listed = self._select_when_listed, None
        elif target not in names:
            target = names[0] if names else None
        if target != self.sweep:
            self.sweep = target  # the watcher reads the cells
        else:
            self._read_cells()
        return self.frame

    @param.depends("sweep", watch=True)
    def _sweep_changed(self) -> None:
        self._cells = None
        self._read_cells()

    def _row(self) -> dict[str, Any] | None:
        df = self.sweeps
        if df is None or self.sweep is None:
            return None
        rows = df[df["sweep_id"] == self.sweep]
        return rows.iloc[0].to_dict() if len(rows) else None

    def _read_cells(self) -> None:
        row = self._row()
        if row is None:
            self._cells = None
            self._axes_for = None
            self._values = {}
            self._updating = True
            try:
                for p in (self.param.x, self.param.y, self.param.facet):
                    p.objects = [_NONE]
                self.param.update(x=_NONE, y=_NONE, facet=_NONE)
            finally:
                self._updating = False
            self._set(frame=None, sweep_status="", progress="no sweeps in the store yet: start one below "
                      "or run `python -m core.sweep run FILE`")
            return
        st = self._store()
        cells = st.sweep_cells(self.sweep)
        self._cells = cells
        if self._axes_for != self.sweep:  # a sweep shown for the first time: its own axes and metric
            self._setup_axes(row)
            self._axes_for = self.sweep
        self._values = metric_values(st, list(cells["run_id"]), self.metric)
        self._set(sweep_status=str(row["status"]), progress=self._progress_line(row))
        self._compute()

    def _progress_line(self, row: Mapping[str, Any]) -> str:
        failed = int(row["n_error"]) + int(row["n_interrupted"])
        running = int(row["n_running"]) + int(row["n_paused"])
        line = (f"sweep {row['sweep_id']}: {row['status']}, {int(row['n_done'])}/{int(row['n_cells'])} done, "
                f"{running} running, {failed} failed")
        if int(row["n_diverged"]):
            line += f", {int(row['n_diverged'])} diverged"
        if int(row["n_stopped"]):
            line += f", {int(row['n_stopped'])} stopped"
        return line

    # ----------------------------------------------------------- axes
    def varied_keys(self) -> list[str]:
        """Coordinate keys of the shown sweep whose value differs between cells (first the sweep's axes)."""
        cells = self._cells
        if cells is None or not len(cells):
            return []
        keys: list[str] = []
        for c in cells["coords"]:
            keys += [k for k in c if k not in keys]
        multi = [k for k in keys if len({_label(c.get(k)) for c in cells["coords"]}) > 1]
        return multi or keys  # a one-cell sweep still has its keys

    def _setup_axes(self, row: Mapping[str, Any]) -> None:
        keys = self.varied_keys()
        axes = [a for a in (row.get("axes") or []) if a in keys]
        rest = [k for k in keys if k not in axes]
        order = axes + rest
        x = order[0] if order else _NONE
        y = order[1] if len(order) > 1 else _NONE
        metric = row.get("metric") if row.get("metric") in METRICS else self.metric
        self._updating = True  # widgets may set a value as their options change: compute once, after
        try:
            self.param.x.objects = order or [_NONE]
            self.param.y.objects = [_NONE, *order]
            self.param.facet.objects = [_NONE, *order]
            self.param.update(x=x, y=y, facet=_NONE, metric=metric)
        finally:
            self._updating = False

    def _free_key(self, *taken: str) -> str:
        return next((k for k in self.param.x.objects if k and k not in taken), _NONE)

    def _axes_changed(self, *events: Any) -> None:
        if self._updating:
            return
        changed = events[-1].name if events else "x"
        self._updating = True
        try:
            # keep the three keys distinct: the newest choice wins, the others make room
            if changed == "x":
                if self.y and self.y == self.x:
                    self.y = self._free_key(self.x, self.facet)
                if self.facet and self.facet == self.x:
                    self.facet = _NONE
            elif changed == "y":
                if self.y and self.y == self.x:
                    free = self._free_key(self.y, self.facet)
                    if free:
                        self.x = free
                    elif self.facet:  # the facet's key moves to x
                        self.x, self.facet = self.facet, _NONE
                    else:
                        self.y = _NONE
                if self.facet and self.facet == self.y:
                    self.facet = _NONE
            elif changed == "facet" and self.facet:
                if self.facet == self.x:
                    self.x = self._free_key(self.facet, self.y) or self.x
                if self.facet == self.y:
                    self.y = self._free_key(self.facet, self.x)
                if self.facet == self.x:  # nothing else to put on x
                    self.facet = _NONE
        finally:
            self._updating = False
        self._compute()

    @param.depends("agg", watch=True)
    def _agg_changed(self) -> None:
        self._compute()

    @param.depends("metric", watch=True)
    def _metric_changed(self) -> None:
        if self._updating or self._cells is None:
            return
        self._values = metric_values(self._store(), list(self._cells["run_id"]), self.metric)
        self._compute()

    # ----------------------------------------------------------- the grid
    def metric_info(self) -> Any:
        """The :class:`core.sweep.metrics.Metric` shown."""
        return METRICS[self.metric]

    def _compute(self) -> None:
        frame = build_frame(self._cells, self._values, self.x, self.y, self.facet, self.agg, self.metric)
        if frame is None:
            self._set(frame=None)
        elif self.frame is None or not _frames_equal(self.frame, frame):
            self._set(frame=frame)

    def keys_used(self) -> dict[str, str]:
        """``{"x": key, "y": key, "facet": key}`` of the shown grid ('' where unused)."""
        return {"x": self.x, "y": self.y, "facet": self.facet}

    def cell_runs(self, x: str, y: str | None = None, facet: str | None = None) -> list[str]:
        """Run ids of the heat-map cell at labels ``x``, ``y``, ``facet``."""
        df = self.frame
        if df is None or not len(df):
            return []
        sel = df["x"] == str(x)
        if y is not None:
            sel &= df["y"] == str(y)
        if facet is not None:
            sel &= df["facet"] == str(facet)
        ids: list[str] = []
        for r in df.loc[sel, "run_ids"]:
            ids += [i for i in r if i not in ids]
        return ids

    def open_cell(self, x: str, y: str | None = None, facet: str | None = None) -> list[str]:
        """Open the runs of a heat-map cell (through :attr:`open_runs`); returns their ids."""
        ids = self.cell_runs(x, y, facet)
        where = ", ".join(f"{k}={v}" for k, v in (("x", x), ("y", y), ("facet", facet)) if v not in (None, "", ALL))
        if not ids:
            self._set(message=f"no runs in the cell {where} yet")
            return []
        if self.open_runs is not None:
            self._set(message=f"opened {len(ids)} run(s) of {where} in Compare")
            self.open_runs(list(ids))
        return ids

    # ----------------------------------------------------------- start / stop / resume
    def refresh_files(self) -> dict[str, Path]:
        """Re-list the ``*.toml`` files of the sweeps folder (a missing folder has none)."""
        d = self.sweeps_dir
        try:
            files = sorted(p for p in d.glob("*.toml") if p.is_file()) if d.is_dir() else []
        except OSError:
            files = []
        self._files = {p.name: p for p in files}
        names = list(self._files)
        if list(self.param.sweep_file.objects) != names:
            self.param.sweep_file.objects = names
        if self.sweep_file not in names:
            self.sweep_file = names[0] if names else None
        return dict(self._files)

    @property
    def files(self) -> dict[str, Path]:
        """Sweep files offered by Start (name -> path)."""
        return dict(self._files)

    def log_dir(self) -> Path:
        """Where the sweep processes' logs go: ``sweep-logs/`` beside the store."""
        return Path(self._store().path).parent / "sweep-logs"

    def command(self, file: str | os.PathLike[str]) -> list[str]:
        """The command that runs sweep ``file`` into this page's store."""
        cmd = [sys.executable, "-m", "core.sweep", "run", str(file), "--store", str(self._store().path),
               "--no-progress"]
        if self.workers:
            cmd += ["--workers", str(self.workers)]
        return cmd

    def launch(self, file: str | os.PathLike[str]) -> subprocess.Popen[bytes] | None:
        """Start ``python -m core.sweep run FILE`` detached; returns the process (None if it was not started)."""
        from core.sweep.spec import SweepError, load

        path = Path(file)
        try:
            spec = load(path)
        except SweepError as exc:
            self._set(message=f"cannot start: {exc}")
            return None
        name = spec.name
        old = self._procs.get(name)
        if old is not None and old[0].poll() is None:
            self._set(message=f"sweep {name} is already running (pid {old[0].pid})")
            return None
        try:
            self._store().mark_interrupted()  # a sweep whose process was killed is not "running"
        except Exception:  # noqa: BLE001 - a busy store: the engine refuses a second driver anyway
            pass
        row = self._store_row(name)
        if row is not None and row["status"] in _SWEEP_ACTIVE:
            self._set(message=f"sweep {name} is already {row['status']} (another process drives it)")
            return None
        logs = self.log_dir()
        logs.mkdir(parents=True, exist_ok=True)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        log_path = logs / f"{name}-{stamp}.log"
        root = project_root()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(root), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
        env.pop(SWEEPS_DIR_ENV, None)
        cmd = self.command(path)
        with open(log_path, "wb") as log:
            log.write(("$ " + " ".join(cmd) + "\n").encode())
            log.flush()
            try:
                proc = subprocess.Popen(cmd, cwd=str(root), env=env, stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
            except OSError as exc:
                self._set(message=f"cannot start sweep {name}: {exc}")
                return None
        self._procs[name] = (proc, log_path, str(path))
        self._select_when_listed = name
        self._set(message=f"started sweep {name} (pid {proc.pid}, log {log_path})")
        return proc

    def start_sweep(self) -> subprocess.Popen[bytes] | None:
        """Launch the chosen sweep file (:attr:`sweep_file`)."""
        self.refresh_files()
        if not self.sweep_file or self.sweep_file not in self._files:
            self._set(message=f"no sweep file chosen (put .toml files in {self.sweeps_dir})")
            return None
        return self.launch(self._files[self.sweep_file])

    def stop_sweep(self) -> None:
        """Ask the shown sweep's process to stop (running cells end ``stopped``)."""
        if not self.sweep:
            self._set(message="no sweep to stop")
            return
        self._store().request_sweep_stop(self.sweep)
        self._set(message=f"asked sweep {self.sweep} to stop")
        self.refresh()

    def resume_sweep(self) -> subprocess.Popen[bytes] | None:
        """Launch the shown sweep's file again (finished cells are not trained again)."""
        row = self._row()
        if row is None:
            self._set(message="no sweep to resume")
            return None
        source = str(row.get("source") or "")
        if not source or not Path(source).is_file():
            self._set(message=f"cannot resume sweep {self.sweep}: its file {source or '(none)'} is gone")
            return None
        return self.launch(source)

    def processes(self) -> dict[str, subprocess.Popen[bytes]]:
        """The sweep processes this page started that are still known (name -> process)."""
        return {k: v[0] for k, v in self._procs.items()}

    def _store_row(self, name: str) -> dict[str, Any] | None:
        try:
            return self._store().get_sweep(name)
        except KeyError:
            return None

    def _poll_processes(self) -> None:
        for name, (proc, log, _file) in list(self._procs.items()):
            rc = proc.poll()
            if rc is None:
                continue
            del self._procs[name]
            line = _last_error_line(log)
            if rc == 0:
                self._set(message=f"sweep {name}: process finished")
            elif line.startswith("error:"):
                self._set(message=f"sweep {name} failed (exit code {rc}): {line}  (log {log})")
            else:
                self._set(message=f"sweep {name}: process exited with code {rc}: {line}  (log {log})")
                if self._select_when_listed == name:
                    self._select_when_listed = None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, pd.DataFrame) or isinstance(b, pd.DataFrame):
        return isinstance(a, pd.DataFrame) and isinstance(b, pd.DataFrame) and _frames_equal(a, b)
    return bool(a == b) if not (a is None or b is None) else a is b


def _frames_equal(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return False
    try:
        return bool(a.astype(str).equals(b.astype(str)))
    except Exception:  # noqa: BLE001
        return False


def _order(labels: Sequence[str]) -> list[str]:
    out: list[str] = []
    for lab in labels:
        if lab not in out:
            out.append(lab)
    return out


def _summary(statuses: Sequence[str]) -> str:
    s = set(statuses)
    if s & set(_ACTIVE):
        return CellState.RUNNING
    if RunStatus.CREATED.value in s:
        return CellState.PENDING
    if RunStatus.DIVERGED.value in s:
        return CellState.DIVERGED
    if s & set(_FAILED):
        return CellState.FAILED
    if RunStatus.STOPPED.value in s:
        return CellState.STOPPED
    return CellState.DONE


_STATS: dict[str, Callable[[list[float]], float]] = {
    "mean": statistics.fmean, "median": statistics.median, "min": min, "max": max}


def _cell_label(status: str, fmt: str, value: float, n: int, m: int, n_div: int, step: float, total: float) -> str:
    if status == CellState.DONE:
        return fmt.format(value) if n else "-"
    if status == CellState.DIVERGED:
        return "Div." if n_div == m else f"Div. {n_div}/{m}"
    if status == CellState.FAILED:
        return "failed"
    if status == CellState.STOPPED:
        return fmt.format(value) if n else "stopped"
    if status == CellState.RUNNING:
        return f"run {step / total:.0%}" if total > 0 else "running"
    return "..."


def _num(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return 0.0
    return f if f == f else 0.0


def build_frame(cells: pd.DataFrame | None, values: Mapping[str, float], x: str, y: str, facet: str,
                agg: str = "mean", metric: str = "best_test_acc") -> pd.DataFrame | None:
    """The heat map's cells from ``store.sweep_cells(name)`` and the metric per run id.

    The cells sharing the x, y and facet labels are one heat-map cell: its value is ``agg`` of the
    metric over those that are ``done`` (std with ddof=1, NaN for fewer than two), its status the
    :class:`CellState` of their statuses (any running -> running; any queued -> pending; else any
    diverged -> diverged; any error/interrupted -> failed; any stopped -> stopped; else done).
    Plain Python over the rows (no per-group pandas calls): a 1,000-cell grid takes milliseconds.
    """
    if cells is None or not x:
        return None
    fmt = METRICS[metric].fmt
    stat = _STATS[agg]
    keys: list[str] = []
    for c in cells["coords"]:
        keys += [k for k in c if k not in keys]
    used = [k for k in (x, y, facet) if k]
    over_keys = [k for k in keys if k not in used]
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    order: dict[str, dict[str, int]] = {"facet": {}, "y": {}, "x": {}}
    cols = [cells[c] for c in ("coords", "status", "run_id", "config", "error", "step", "total_steps")]
    config_cache: dict[int, str] = {}
    for coords, status, run_id, config, error, step, total in zip(*cols):
        key = (_label(coords.get(facet)) if facet else "", _label(coords.get(y)) if y else ALL,
               _label(coords.get(x)))
        for name, lab in zip(("facet", "y", "x"), key):
            order[name].setdefault(lab, len(order[name]))
        g = groups.get(key)
        if g is None:
            g = groups[key] = {"values": [], "statuses": [], "runs": [], "configs": [], "errors": [],
                               "step": 0.0, "total": 0.0, "over": {k: [] for k in over_keys}}
        rid = run_id if isinstance(run_id, str) and run_id else None
        status = str(status)
        g["statuses"].append(status)
        if rid:
            g["runs"].append(rid)
            if status == RunStatus.DONE.value and rid in values:
                g["values"].append(float(values[rid]))
        summary = config_cache.get(id(config))
        if summary is None:
            summary = config_cache[id(config)] = config_summary(config)
        if summary not in g["configs"]:
            g["configs"].append(summary)
        if isinstance(error, str) and error:
            g["errors"].append(error)
        if status in _ACTIVE:
            g["step"] += _num(step)
            g["total"] += _num(total)
        for k in over_keys:
            lab = _label(coords.get(k))
            if lab not in g["over"][k]:
                g["over"][k].append(lab)
    rows = []
    for (f, yy, xx), g in groups.items():
        vals = g["values"]
        n = len(vals)
        value = float(stat(vals)) if n else math.nan
        std = statistics.stdev(vals) if n > 1 else math.nan
        statuses = g["statuses"]
        status = _summary(statuses)
        counts: dict[str, int] = {}
        for st in statuses:
            counts[st] = counts.get(st, 0) + 1
        m = len(statuses)
        label = _cell_label(status, fmt, value, n, m, counts.get(RunStatus.DIVERGED.value, 0), g["step"], g["total"])
        if n:
            detail = fmt.format(value) + (f" ± {fmt.format(std)}" if n > 1 else "") + f" (n={n})"
        else:
            detail = "- (n=0)"
        ids = g["runs"]
        configs = g["configs"]
        rows.append({
            "facet": f, "y": yy, "x": xx, "value": value, "std": std, "n": n, "cells": m,
            "status": status, "label": label, "detail": detail,
            "counts": ", ".join(f"{k} {s}" for s, k in sorted(counts.items(), key=lambda kv: -kv[1])),
            "over": "; ".join(f"{k}={','.join(v)}" for k, v in g["over"].items()),
            "run_ids": ids, "runs": (", ".join(ids[:6]) + (f" (+{len(ids) - 6})" if len(ids) > 6 else "")) or "-",
            "config": (configs[0] + (f" (+{len(configs) - 1} more)" if len(configs) > 1 else "")) if configs else "",
            "error": g["errors"][0] if g["errors"] else "",
            "ix": order["x"][xx], "iy": order["y"][yy], "ifacet": order["facet"][f]})
    out = pd.DataFrame(rows, columns=list(FRAME_COLUMNS))
    out = out.sort_values(["ifacet", "iy", "ix"], kind="stable").reset_index(drop=True)
    out["n"] = out["n"].astype(int)
    return out


def value_range(frame: pd.DataFrame | None) -> tuple[float, float]:
    """Finite min and max of ``frame.value`` ((0, 1) when there is none)."""
    if frame is None or not len(frame):
        return (0.0, 1.0)
    v = np.asarray(frame["value"], dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return (0.0, 1.0)
    lo, hi = float(v.min()), float(v.max())
    if lo == hi:
        pad = abs(lo) * 0.05 or 0.05
        lo, hi = lo - pad, hi + pad
    return (lo, hi)
