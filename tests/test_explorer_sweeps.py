"""The Sweeps page's state (Panel-free) against real sweeps trained into a temporary store.

Two tiny sweeps (digits, MLP [16], 5 steps, telemetry every 2 steps) run once per module on one
two-worker engine: ``tiny`` is scheme.mx x seed (2 x 2 cells), ``div`` has one cell with a tiny
``diverge_loss`` (diverges at step 0) next to a normal one. The tests check the heat-map frame
against the store (``metric_values``, the runs' ``best_test_acc``) and pandas, the Div. and
pending/running cells, facets, opening a cell, and the Start/Stop/Resume actions (the sweep
process is a real ``python -m core.sweep run`` subprocess).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

pytest.importorskip("distributed")

from core.store import RunStatus, RunStore, SweepStatus  # noqa: E402
from core.sweep import METRICS, Engine, load, metric_values, run  # noqa: E402
from explorer.sweeps_state import ALL, CellState, SweepsState, build_frame, config_summary  # noqa: E402

pytestmark = pytest.mark.timeout(300)

BASE = """
[base]
epochs = 1
max_steps = 5
[base.model]
name = "mlp"
hidden = [16]
[base.scheme]
name = "mls"
first_last = true
[base.telemetry]
every = 2
"""

TINY = 'name = "tiny"\nmetric = "best_test_acc"\naxes = ["scheme.mx", "seed"]\n' + BASE + """
[grid]
"scheme.mx" = [1, 2]
seed = [0, 1]
"""

DIV = 'name = "div"\n' + BASE + """
[grid]
diverge_loss = [0.01, 100.0]
"""


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("sweeps-state")
    (d / "tiny.toml").write_text(TINY)
    (d / "div.toml").write_text(DIV)
    store = RunStore(d / "runs.sqlite")
    with Engine(workers=2) as eng:
        res = {name: run(load(d / f"{name}.toml"), store=store, engine=eng) for name in ("tiny", "div")}
    assert res["tiny"].counts == {"done": 4}
    assert res["div"].counts == {"done": 1, "diverged": 1}
    return {"dir": d, "store": store, "path": d / "runs.sqlite"}


def _state(swept: dict[str, Any], sweep: str = "tiny", **kw: Any) -> SweepsState:
    s = SweepsState(store=swept["store"], sweeps_dir=swept["dir"], **kw)
    s.sweep = sweep
    return s


def _cells(swept: dict[str, Any], name: str = "tiny") -> pd.DataFrame:
    cells = swept["store"].sweep_cells(name)
    for k in ("scheme.mx", "seed", "diverge_loss"):
        cells[k] = [str(c.get(k)) for c in cells["coords"]]
    return cells


def test_frame_has_one_row_per_cell_with_the_stores_values(swept: dict[str, Any]) -> None:
    s = _state(swept)
    assert (s.x, s.y, s.facet, s.metric) == ("scheme.mx", "seed", "", "best_test_acc")  # the sweep's axes/metric
    df = s.frame
    assert len(df) == 4
    assert sorted(zip(df["x"], df["y"])) == [("1", "0"), ("1", "1"), ("2", "0"), ("2", "1")]
    cells = _cells(swept)
    by_coord = {(r["scheme.mx"], r["seed"]): r for _, r in cells.iterrows()}
    expected = metric_values(swept["store"], list(cells["run_id"]), "best_test_acc")
    assert len(expected) == 4
    for r in df.itertuples(index=False):
        cell = by_coord[(r.x, r.y)]
        assert r.run_ids == [cell["run_id"]]
        assert r.value == pytest.approx(expected[cell["run_id"]], abs=0)
        assert r.value == pytest.approx(cell["best_test_acc"], abs=0)
        assert (r.status, r.n, r.cells) == (CellState.DONE, 1, 1)
        assert r.label == METRICS["best_test_acc"].fmt.format(r.value)
        assert math.isnan(r.std)
        assert r.runs == cell["run_id"]
        assert r.config == config_summary(cell["config"]) and "digits / mlp[16] / mls" in r.config
    assert s.progress == "sweep tiny: done, 4/4 done, 0 running, 0 failed"
    assert s.sweep_status == SweepStatus.DONE


def test_metric_choice_reads_that_metric(swept: dict[str, Any]) -> None:
    s = _state(swept)
    cells = _cells(swept)
    for metric in ("final_test_acc", "final_loss", "seconds"):
        s.metric = metric
        expected = metric_values(swept["store"], list(cells["run_id"]), metric)
        got = {r.run_ids[0]: r.value for r in s.frame.itertuples(index=False)}
        assert got == pytest.approx(expected), metric


def test_aggregation_over_seeds_matches_pandas(swept: dict[str, Any]) -> None:
    s = _state(swept)
    s.y = ""  # seed is now aggregated
    df = s.frame
    assert len(df) == 2 and set(df["y"]) == {ALL}
    cells = _cells(swept)
    g = cells.groupby("scheme.mx")["best_test_acc"]
    want = pd.DataFrame({"mean": g.mean(), "std": g.std(), "n": g.count(), "max": g.max()})
    for r in df.itertuples(index=False):
        assert r.value == pytest.approx(want.loc[r.x, "mean"])
        assert r.std == pytest.approx(want.loc[r.x, "std"])
        assert r.n == want.loc[r.x, "n"] == 2
        assert r.over == "seed=0,1"
        assert len(r.run_ids) == 2
        assert "±" in r.detail and "(n=2)" in r.detail
    s.agg = "max"
    assert dict(zip(s.frame["x"], s.frame["value"])) == pytest.approx(want["max"].to_dict())


def test_diverged_cell_shows_div(swept: dict[str, Any]) -> None:
    s = _state(swept, sweep="div")
    assert s.x == "diverge_loss" and s.y == ""
    df = s.frame.set_index("x")
    assert df.loc["0.01", "status"] == CellState.DIVERGED
    assert df.loc["0.01", "label"] == "Div."
    assert math.isnan(df.loc["0.01", "value"]) and df.loc["0.01", "n"] == 0
    assert df.loc["100.0", "status"] == CellState.DONE and df.loc["100.0", "value"] > 0
    assert s.progress == "sweep div: done, 1/2 done, 0 running, 0 failed, 1 diverged"


def test_facet_splits_the_frame(swept: dict[str, Any]) -> None:
    s = _state(swept)
    s.facet = "seed"  # seed leaves y for the facet
    assert (s.x, s.y, s.facet) == ("scheme.mx", "", "seed")
    df = s.frame
    assert sorted(df["facet"].unique()) == ["0", "1"]
    cells = _cells(swept)
    for f, sub in df.groupby("facet"):
        assert sorted(sub["x"]) == ["1", "2"] and (sub["n"] == 1).all()
        want = cells[cells["seed"] == f].set_index("scheme.mx")["best_test_acc"]
        assert dict(zip(sub["x"], sub["value"])) == pytest.approx(want.to_dict())
    s.y = "scheme.mx"  # y takes x's key: x gets the facet's
    assert (s.x, s.y, s.facet) == ("seed", "scheme.mx", "")


def test_open_cell_passes_its_runs(swept: dict[str, Any]) -> None:
    opened: list[list[str]] = []
    s = _state(swept, open_runs=opened.append)
    cells = _cells(swept)
    want = cells[(cells["scheme.mx"] == "2") & (cells["seed"] == "1")]["run_id"].tolist()
    assert s.open_cell("2", "1") == want and opened == [want]
    s.y = ""
    both = s.open_cell("1")
    assert sorted(both) == sorted(cells[cells["scheme.mx"] == "1"]["run_id"]) and len(opened) == 2


def test_pending_and_running_cells_and_stop(tmp_path: Path) -> None:
    """Cells of a sweep being driven (rows written as the engine does, nothing trained)."""
    store = RunStore(tmp_path / "runs.sqlite")
    cfg = {"scheme": {"name": "mls"}, "data": {"name": "digits"}, "model": {"name": "mlp"}}
    store.begin_sweep("fake", [("k1", {"scheme.mx": 1}, cfg), ("k2", {"scheme.mx": 2}, cfg)],
                      axes=["scheme.mx"], source=str(tmp_path / "fake.toml"))
    rid = store.create_run(cfg, status=RunStatus.CREATED.value)
    store.adopt_run(rid)
    store.update_run(rid, step=3, total_steps=10)
    store.update_cell("fake", "k1", status=RunStatus.RUNNING.value, run_id=rid)
    s = SweepsState(store=store, sweeps_dir=tmp_path / "missing")
    assert s.sweep == "fake" and s.files == {} and s.sweep_file is None
    df = s.frame.set_index("x")
    assert df.loc["1", "status"] == CellState.RUNNING and df.loc["1", "label"] == "run 30%"
    assert df.loc["2", "status"] == CellState.PENDING and math.isnan(df.loc["2", "value"])
    assert s.progress == "sweep fake: running, 0/2 done, 1 running, 0 failed"
    s.stop_sweep()
    assert store.get_sweep("fake")["stop_requested"] and s.sweep_status == SweepStatus.STOPPING
    assert "asked sweep fake to stop" in s.message
    assert s.start_sweep() is None and "no sweep file" in s.message
    # a build_frame of cells that all ended in errors says failed
    cells = store.sweep_cells("fake")
    cells["status"] = RunStatus.INTERRUPTED.value
    f = build_frame(cells, {}, "scheme.mx", "", "")
    assert list(f["status"]) == [CellState.FAILED] * 2 and list(f["label"]) == ["failed"] * 2


def _wait_process(s: SweepsState, name: str, timeout: float = 120.0) -> None:
    proc = s.processes()[name]
    proc.wait(timeout)
    s.refresh()
    assert name not in s.processes()


def test_start_reports_the_process_failure(tmp_path: Path, swept: dict[str, Any]) -> None:
    d = tmp_path / "sweeps"
    d.mkdir()
    (d / "bad.toml").write_text(TINY.replace('name = "mlp"', 'name = "no-such-model"').replace('"tiny"', '"bad"'))
    s = SweepsState(store=tmp_path / "runs.sqlite", sweeps_dir=d)
    assert s.files == {"bad.toml": d / "bad.toml"} and s.sweep_file == "bad.toml"
    proc = s.start_sweep()
    assert proc is not None and "started sweep bad" in s.message
    _wait_process(s, "bad")
    assert proc.returncode == 2
    assert s.message.startswith("sweep bad failed (exit code 2): error:") and "no-such-model" in s.message
    logs = list((tmp_path / "sweep-logs").glob("bad-*.log"))
    assert len(logs) == 1 and "--no-progress" in logs[0].read_text().splitlines()[0]


def test_resume_launches_the_sweeps_file_again(swept: dict[str, Any]) -> None:
    s = _state(swept)
    before = _cells(swept)
    t0 = time.monotonic()
    proc = s.resume_sweep()
    assert proc is not None
    _wait_process(s, "tiny")
    assert proc.returncode == 0 and s.message == "sweep tiny: process finished", s.message
    after = _cells(swept)
    assert list(after["run_id"]) == list(before["run_id"])  # finished cells are not trained again
    assert (after["status"] == RunStatus.DONE.value).all()
    assert time.monotonic() - t0 < 120
