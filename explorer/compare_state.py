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

from .comparison import EPOCH_METRICS, STEP_METRICS, Comparison, flatten_config, load_comparison, run_label
from .export import export_comparison

__all__ = ["CompareState", "GRID_VALUES", "RUN_TABLE_COLUMNS"]

#: columns of the runs table (:meth:`CompareState.runs_table`)
RUN_TABLE_COLUMNS: tuple[str, ...] = ("run", "label", "scheme", "dataset", "model", "name", "status",
                                      "test acc", "created")

#: summary columns that the grid heat map can show
GRID_VALUES: tuple[str, ...] = ("final_test_acc", "best_test_acc", "final_loss")
_NONE = ""


class CompareState(param.Parameterized):
    """State of the Compare page."""

    selected = param.ListSelector(default=[], objects=[], doc="Runs to compare (ids from the run store).")
    metric: param.Selector[str] = param.Selector(default="loss", objects=list(STEP_METRICS + EPOCH_METRICS),
                                                 doc="First curve metric.")
    metric2: param.Selector[str] = param.Selector(default="test_acc", objects=list(STEP_METRICS + EPOCH_METRICS),
                                                  doc="Second curve metric.")
    smooth = param.Integer(default=1, bounds=(1, 200), doc="Rolling-mean window for per-step curves.")
    grid_x: param.Selector[str] = param.Selector(default=_NONE, objects=[_NONE],
                                                 doc="Config key for the grid heat map's x axis (keys that vary).")
    grid_y: param.Selector[str] = param.Selector(default=_NONE, objects=[_NONE],
                                                 doc="Config key for the grid heat map's y axis.")
    grid_value: param.Selector[str] = param.Selector(default="final_test_acc", objects=list(GRID_VALUES),
                                                     doc="Value shown in the grid heat map.")
    # param's stubs type an Action as taking no argument; it is called with the instance
    export = param.Action(default=lambda self: self.export_files(),  # type: ignore[arg-type, misc]
                          doc="Write PNG, SVG and HTML of this comparison.")
    refresh = param.Action(default=lambda self: self.refresh_runs(),  # type: ignore[arg-type, misc]
                           doc="Re-read the run list from the store.")

    runs = param.DataFrame(default=None, allow_None=True, constant=True, doc="All runs in the store (read-only).")
    comparison = param.ClassSelector(class_=Comparison, default=None, allow_None=True, constant=True,
                                     doc="Loaded data of the selected runs (read-only).")
    exported = param.List(default=[], constant=True, doc="Files written by the last export (read-only).")
    message = param.String(default="", constant=True, doc="Status line (read-only).")

    def __init__(self, store: Any = None, export_dir: str | Path | None = None, **params: Any) -> None:
        super().__init__(**params)
        self._grid_chosen = False  # the user picked a grid axis: keep it while it still varies
        self._picking = False
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
        out: dict[str, str] = {}
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

    def runs_table(self) -> pd.DataFrame:
        """Every stored run as a row of the page's runs table (newest first; one row per entry of
        ``param.selected.objects``, same order): short id, label, scheme, dataset, model, name,
        status, final test accuracy and when it was created."""
        df = self.runs
        if df is None or not len(df):
            return pd.DataFrame({c: pd.Series(dtype=object) for c in RUN_TABLE_COLUMNS})
        st = self._store()

        def label(rid: str) -> str:  # what the other columns do not say: the scheme and its fields
            try:
                return run_label(rid, {**st.get_run(rid)["config"], "name": ""}).split(" ", 1)[-1]
            except Exception:  # noqa: BLE001 - a damaged row still gets a row
                return "?"

        acc = pd.to_numeric(df["final_test_acc"], errors="coerce") if "final_test_acc" in df else float("nan")
        out = pd.DataFrame({
            "run": [str(r)[:6] for r in df["run_id"]],
            "label": [label(str(r)) for r in df["run_id"]],
            "scheme": df["scheme"].fillna("").astype(str), "dataset": df["dataset"].fillna("").astype(str),
            "model": df["model"].fillna("").astype(str), "name": df["name"].fillna("").astype(str),
            "status": df["status"].astype(str), "test acc": acc,
            "created": [_dt.datetime.fromtimestamp(float(t)).strftime("%Y-%m-%d %H:%M") for t in df["created"]],
        })
        return out[list(RUN_TABLE_COLUMNS)].reset_index(drop=True)

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
        # the default axes: the keys that differ across these runs, best first; y only among keys every
        # run has (a field of one scheme would put the others in a "nan" row)
        flat = [flatten_config(comp.configs[r]) for r in comp.run_ids] if comp is not None else []
        everywhere = [k for k in keys if all(k in f for f in flat)]
        for p in (self.param.grid_x, self.param.grid_y):
            p.objects = [_NONE, *keys]
        self._picking = True
        try:
            with param.parameterized.batch_call_watchers(self):
                if self.grid_x not in keys or not self._grid_chosen:
                    self.grid_x = keys[0] if keys else _NONE
                if self.grid_y not in keys or self.grid_y == self.grid_x or not self._grid_chosen:
                    self.grid_y = next((k for k in everywhere if k != self.grid_x), _NONE)
        finally:
            self._picking = False
            with param.edit_constant(self):
                self.comparison = comp
                self.message = msg or (f"{len(self.selected)} run(s) selected" if self.selected else "select runs")

    @param.depends("grid_x", "grid_y", watch=True)
    def _on_grid_axis(self) -> None:
        if not self._picking:
            self._grid_chosen = True

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
