"""Compare state (Panel-free): pick stored runs, overlay curves, tabulate, grid heat map, export.

Runs are chosen by id from the run store (``store.list_runs``); exports are written into a
directory decided on the server (``export_dir``, default ``<store dir>/exports/<timestamp>``),
never a path typed on the page.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import pandas as pd
import param

from .comparison import EPOCH_METRICS, STEP_METRICS, Comparison, load_comparison, run_label
from .export import export_comparison

__all__ = ["CompareState", "GRID_VALUES"]

#: summary columns that the grid heat map can show
GRID_VALUES: tuple[str, ...] = ("final_test_acc", "best_test_acc", "final_loss")
_NONE = ""


class CompareState(param.Parameterized):
    """State of the Compare page."""

    selected = param.ListSelector(default=[], objects=[], doc="Runs to compare (ids from the run store).")
    metric = param.Selector(default="loss", objects=list(STEP_METRICS + EPOCH_METRICS), doc="First curve metric.")
    metric2 = param.Selector(default="test_acc", objects=list(STEP_METRICS + EPOCH_METRICS), doc="Second curve metric.")
    smooth = param.Integer(default=1, bounds=(1, 200), doc="Rolling-mean window for per-step curves.")
    grid_x = param.Selector(default=_NONE, objects=[_NONE],
                            doc="Config key for the grid heat map's x axis (keys that vary).")
    grid_y = param.Selector(default=_NONE, objects=[_NONE], doc="Config key for the grid heat map's y axis.")
    grid_value = param.Selector(default="final_test_acc", objects=list(GRID_VALUES),
                                doc="Value shown in the grid heat map.")
    export = param.Action(default=lambda self: self.export_files(), doc="Write PNG, SVG and HTML of this comparison.")
    refresh = param.Action(default=lambda self: self.refresh_runs(), doc="Re-read the run list from the store.")

    runs = param.DataFrame(default=None, allow_None=True, constant=True, doc="All runs in the store (read-only).")
    comparison = param.ClassSelector(class_=Comparison, default=None, allow_None=True, constant=True,
                                     doc="Loaded data of the selected runs (read-only).")
    exported = param.List(default=[], constant=True, doc="Files written by the last export (read-only).")
    message = param.String(default="", constant=True, doc="Status line (read-only).")

    def __init__(self, store: Any = None, export_dir: str | Path | None = None, **params: Any) -> None:
        super().__init__(**params)
        self.store = store
        self.export_dir = export_dir
        self.refresh_runs()

    def _store(self) -> Any:
        from core.store import RunStore

        if not isinstance(self.store, RunStore):
            self.store = RunStore(self.store)
        return self.store

    # ----------------------------------------------------------- actions
    def labels(self) -> dict[str, str]:
        """Display label per run id ('<id6> scheme(...) status acc')."""
        out = {}
        df = self.runs
        if df is None or not len(df):
            return out
        st = self._store()
        for r in df.itertuples(index=False):
            rid = str(r.run_id)
            try:
                cfg = st.get_run(rid)["config"]
                lab = run_label(rid, cfg)
            except Exception:  # noqa: BLE001 - a damaged row still gets a label
                lab = rid[:6]
            acc = getattr(r, "final_test_acc", None)
            acc_s = f" {acc:.1%}" if isinstance(acc, float) and acc == acc else ""
            out[rid] = f"{lab} [{r.status}]{acc_s}"
        return out

    def refresh_runs(self) -> pd.DataFrame:
        """Re-read the store's run list (newest first); keeps the selection where possible."""
        df = self._store().list_runs()
        ids = [str(r) for r in df["run_id"]]
        keep = [r for r in self.selected if r in ids]
        self.param.selected.objects = ids
        with param.edit_constant(self):
            self.runs = df
        if keep != list(self.selected):
            self.selected = keep
        else:
            self._load()
        return df

    def select_latest(self, n: int = 4) -> list[str]:
        """Select the ``n`` most recent runs."""
        ids = list(self.param.selected.objects)[:n]
        self.selected = ids
        return ids

    @param.depends("selected", watch=True)
    def _load(self) -> None:
        comp = None
        msg = ""
        if self.selected:
            try:
                comp = load_comparison(list(self.selected), self._store())
            except ValueError as exc:
                msg = str(exc)
        keys = comp.varying_keys() if comp is not None else []
        for p in (self.param.grid_x, self.param.grid_y):
            p.objects = [_NONE, *keys]
        with param.parameterized.batch_call_watchers(self):
            if self.grid_x not in keys:
                self.grid_x = keys[0] if keys else _NONE
            if self.grid_y not in keys or self.grid_y == self.grid_x:
                self.grid_y = next((k for k in keys if k != self.grid_x), _NONE)
            with param.edit_constant(self):
                self.comparison = comp
                self.message = msg or (f"{len(self.selected)} run(s) selected" if self.selected else "select runs")

    @property
    def grid(self) -> tuple[str, str] | None:
        """The grid heat map's axes (y may be '' for a single row), or None without an x key."""
        if self.grid_x and self.comparison is not None and self.grid_x != self.grid_y:
            return (self.grid_x, self.grid_y)
        return None

    def export_files(self) -> list[Path]:
        """Export the comparison (PNG, SVG, HTML, JSON) into the server-side export directory."""
        if not self.selected:
            with param.edit_constant(self):
                self.message = "select runs to export"
            return []
        out = self.export_dir
        if out is None:
            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
            out = Path(self._store().path).parent / "exports" / stamp
        try:
            files = export_comparison(list(self.selected), out, self._store(), metrics=(self.metric, self.metric2),
                                       grid=self.grid, value=self.grid_value, smooth=self.smooth)
        except (ValueError, OSError) as exc:
            with param.edit_constant(self):
                self.message = f"export failed: {exc}"
            return []
        with param.edit_constant(self):
            self.exported = [str(f) for f in files]
            self.message = f"exported {len(files)} files to {Path(files[0]).parent}"
        return files
