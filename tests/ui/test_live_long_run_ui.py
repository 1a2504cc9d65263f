"""Browser test: the Live Training page's cost does not grow with a run's length. A 100-step run is stretched to
10,000 and to 100,000 steps (its rows repeated at later steps, each in a store of its own) and each is opened on a
fresh page: the curves and heat maps arrive thinned and binned (bounded points), and the data the browser receives
for 100,000 steps is within the caps' factor of two of what it receives for 10,000, not ten times it."""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any, Iterator

import pytest

from .conftest import col_len, deep_text, serve_explorer, settle, wait_until

pytestmark = [pytest.mark.ui, pytest.mark.timeout(600)]

STRETCHES = (100, 1000)

# the largest value of column ``col`` over the page's data sources
_MAX_JS = """
(col) => {
  let best = -Infinity;
  for (const doc of window.Bokeh.documents) for (const m of doc.all_models) {
    const d = m.data; if (!d || typeof d !== 'object' || m.selected === undefined) continue;
    const c = d instanceof Map ? d.get(col) : d[col]; if (!c || c.length === undefined) continue;
    for (let i = 0; i < c.length; i++) { const v = Number(c[i]); if (isFinite(v) && v > best) best = v; }
  }
  return best;
}
"""


def _short_run(path: Path) -> tuple[str, int]:
    """One 100-step MLS run (both layers quantized: its heat maps fill), telemetry every 25 steps."""
    from core.data import DataConfig
    from core.models import ModelConfig
    from core.train import Run, RunConfig, TelemetryConfig, get_scheme

    cfg = RunConfig(data=DataConfig(name="digits"), model=ModelConfig(name="mlp", hidden=(32,)),
                    scheme=get_scheme("mls", mx=2, first_last=True), telemetry=TelemetryConfig(every=25),
                    epochs=20, max_steps=100, seed=0, threads=1, checkpoint=False, name="ui-long-run")
    run = Run(cfg, store=str(path)).start()
    assert run.wait(180) == "done"
    return str(run.id), 100


def _stretch(path: Path, run_id: str, steps: int, times: int) -> int:
    """Repeat the run's metric and histogram rows ``times`` times at steps ``+ k * steps`` (in step order, as a run
    writes them) and make its row say it trained ``steps * times`` steps; returns that total."""
    with contextlib.closing(sqlite3.connect(path)) as c, c:
        epochs = c.execute("SELECT max(epoch) + 1 FROM metrics WHERE run_id=?", (run_id,)).fetchone()[0]
        k = f"WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < {times - 1}) "
        c.execute(k + "INSERT INTO metrics SELECT m.run_id, m.step + k.i * ?, m.epoch + k.i * ?, m.layer, m.tensor, "
                  "m.fmt, m.role, m.name, m.value FROM k, metrics m WHERE m.run_id=? ORDER BY k.i, m.rowid",
                  (steps, epochs, run_id))
        c.execute(k + "INSERT INTO histograms SELECT h.run_id, h.step + k.i * ?, h.epoch + k.i * ?, h.layer, h.tensor, "
                  "h.kind, h.lo, h.hi, h.bins, h.zeros, h.nonfinite, h.counts FROM k, histograms h WHERE h.run_id=? "
                  "ORDER BY k.i, h.rowid", (steps, epochs, run_id))
        total = steps * times
        cfg = json.loads(c.execute("SELECT config FROM runs WHERE run_id=?", (run_id,)).fetchone()[0])
        cfg["max_steps"], cfg["epochs"] = total, epochs * times
        c.execute("UPDATE runs SET step=?, total_steps=?, epoch=?, config=? WHERE run_id=?",
                  (total, total, epochs * times, json.dumps(cfg), run_id))
    return total


@pytest.fixture(scope="module")
def two_stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    d = tmp_path_factory.mktemp("ui-long-run")
    short = d / "runs.sqlite"
    run_id, steps = _short_run(short)
    with contextlib.closing(sqlite3.connect(short)) as c:  # one file (the WAL merged) to copy
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    stores = []
    for times in STRETCHES:
        path = d / f"x{times}" / "runs.sqlite"
        path.parent.mkdir()
        shutil.copyfile(short, path)
        stores.append((path, _stretch(path, run_id, steps, times)))
    with serve_explorer(d / "mid.log", LOWBIT_STORE=str(stores[0][0])) as mid_url, \
            serve_explorer(d / "long.log", LOWBIT_STORE=str(stores[1][0])) as long_url:
        yield {"run": run_id, "mid": (mid_url, stores[0][1]), "long": (long_url, stores[1][1])}


def _open_on_run(browser: Any, url: str, run_id: str, total: int) -> dict[str, Any]:
    """A fresh Live page until it shows the whole ended run; what it received over its websocket, its data."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    received = [0]

    def on_socket(ws: Any) -> None:
        ws.on("framereceived", lambda payload: received.__setitem__(0, received[0] + len(payload)))

    page.on("websocket", on_socket)
    try:
        page.goto(f"{url}?page=live", timeout=120_000)
        status = page.locator(".run-status")
        wait_until(lambda: f"run {run_id} done - step {total}/{total}" in " ".join(deep_text(status).split()),
                   timeout=240, message=f"the page to show run {run_id} done at step {total}")
        # the last loss point and the last heat-map column are there (the curves are thinned: stride <= 16)
        wait_until(lambda: page.evaluate(_MAX_JS, "step") >= total - 16 and page.evaluate(_MAX_JS, "x1") > 0,
                   timeout=240, message="the run's last rows on the page")
        settle(page, timeout=120)
        return {"bytes": received[0], "loss": col_len(page, "loss"), "x1": col_len(page, "x1"),
                "last_step": page.evaluate(_MAX_JS, "step")}
    finally:
        ctx.close()


def test_a_long_run_costs_the_page_what_a_shorter_one_does(browser: Any, two_stores: dict[str, Any]) -> None:
    from explorer.live_feed import MAX_CURVE_STEPS

    run_id = two_stores["run"]
    (mid_url, mid_steps), (long_url, long_steps) = two_stores["mid"], two_stores["long"]
    mid = _open_on_run(browser, mid_url, run_id, mid_steps)
    long = _open_on_run(browser, long_url, run_id, long_steps)
    print(f"{mid_steps} steps: {mid}; {long_steps} steps: {long}")
    # the loss curve arrives thinned to at most MAX_CURVE_STEPS points, evenly (its last step kept: stride <= 16)
    for got, steps in ((mid, mid_steps), (long, long_steps)):
        assert MAX_CURVE_STEPS // 4 <= got["loss"] <= MAX_CURVE_STEPS and got["last_step"] >= steps - 16, got
    # The feed keeps between half and all of its cap (a thinning halves the kept points, a binning the columns), so
    # whatever the run's length, the page gets at most twice what it gets for any run past the caps; without the
    # caps, 10x the rows would be 10x the data. Measured: 1.25x the cells, 1.42x the bytes.
    assert 0 < long["x1"] <= 2 * mid["x1"], (mid, long)
    assert long["bytes"] <= 2 * mid["bytes"], (mid, long)
