"""Browser test of the Sweeps page: ``panel serve apps/explorer.py`` driven by Playwright in Chromium.

The server's ``LOWBIT_SWEEPS_DIR`` holds one sweep file (2 x 2: scheme.mx x diverge_loss, where
``diverge_loss = 0.01`` diverges at step 0). Pressing Start launches it as a separate process;
the heat map (read from the page's Bokeh document) fills in live from pending to four finished
cells, the diverged ones labelled "Div." and hatched; clicking a done cell opens its run in Compare.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from .conftest import deep_text, screenshot, settle, wait_until

pytestmark = [pytest.mark.ui, pytest.mark.timeout(420)]

# Columns of the heat map's source (the one with a 'status' column) and of its labels' source.
_GRID_JS = """
() => {
  const col = (d, k) => { const c = d instanceof Map ? d.get(k) : d[k]; return c ? Array.from(c).map(String) : []; };
  let cells = null, labels = null;
  for (const doc of window.Bokeh.documents) {
    for (const m of doc.all_models) {
      const d = m.data;
      if (!d || m.selected === undefined) continue;
      const keys = d instanceof Map ? [...d.keys()] : Object.keys(d);
      if (keys.includes('status') && keys.includes('hatch')) {
        cells = {x: col(d, 'x'), y: col(d, 'y'), status: col(d, 'status'), hatch: col(d, 'hatch'),
                 runs: col(d, 'runs')};
      } else if (keys.includes('label') && keys.includes('text_color')) {
        labels = {x: col(d, 'x'), y: col(d, 'y'), label: col(d, 'label')};
      }
    }
  }
  return {cells, labels};
}
"""

# Screen position of each figure's frame and its categorical factors.
_GEOMETRY_JS = """
() => {
  const out = [];
  const walk = (v) => {
    if (!v) return;
    if (v.model && v.model.type === 'Figure' && v.frame) {
      const f = v.frame.bbox, r = v.el.getBoundingClientRect();
      out.push({left: r.left + f.left, top: r.top + f.top, width: f.width, height: f.height,
                x: [...v.model.x_range.factors], y: [...v.model.y_range.factors]});
    }
    for (const k of (v.child_views ? [...v.child_views] : [])) walk(k);
  };
  for (const v of Object.values(window.Bokeh.index)) walk(v);
  return out;
}
"""

def _text(locator: Any) -> str:
    return deep_text(locator) if locator.count() else ""


def _grid(page: Any) -> dict[str, Any]:
    if not page.evaluate("() => window.Bokeh !== undefined && window.Bokeh.documents.length > 0"):
        return {"cells": None, "labels": None}
    return page.evaluate(_GRID_JS)


def test_sweep_started_from_the_page_fills_the_heat_map_live(page: Any, sweeps_explorer: dict[str, Any]) -> None:
    from core.store import RunStore

    t0 = time.monotonic()
    lap = lambda what: print(f"{what}: {time.monotonic() - t0:.1f} s")  # noqa: E731
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{sweeps_explorer['url']}?page=sweeps", timeout=120_000)
    page.wait_for_selector(".btn-sweep-start button", timeout=120_000)
    wait_until(lambda: "No sweep to show yet" in _text(page.locator(".sweeps-heatmap")), message="empty page hint")
    wait_until(lambda: "ui-sweep.toml" in _text(page.locator(".sweep-file")), message="sweep file listed")
    lap("page loaded")

    page.locator(".btn-sweep-start button").click()
    wait_until(lambda: "started sweep ui-sweep" in _text(page.locator(".sweeps-message")), timeout=30,
               message="start message")
    # the grid appears with its four cells before they are all finished, then fills in
    snapshots: list[tuple[str, ...]] = []

    def finished() -> bool:
        cells = _grid(page)["cells"]
        if cells is None:
            return False
        st = tuple(cells["status"])
        if not snapshots or snapshots[-1] != st:
            snapshots.append(st)
            lap(f"grid {st}")
        return len(st) == 4 and all(s in ("done", "diverged") for s in st)

    wait_until(finished, timeout=240, interval=0.25, message="4 finished cells in the heat map")
    assert any(len(s) == 4 and not all(x in ("done", "diverged") for x in s) for s in snapshots), \
        f"the grid never showed unfinished cells: {snapshots}"
    grid = _grid(page)
    cells, labels = grid["cells"], grid["labels"]
    by_cell = {(x, y): (s, h) for x, y, s, h in zip(cells["x"], cells["y"], cells["status"], cells["hatch"])}
    assert by_cell == {("1", "0.01"): ("diverged", "/"), ("2", "0.01"): ("diverged", "/"),
                       ("1", "100.0"): ("done", " "), ("2", "100.0"): ("done", " ")}
    text = dict(zip(zip(labels["x"], labels["y"]), labels["label"]))
    assert text[("1", "0.01")] == text[("2", "0.01")] == "Div."
    assert text[("1", "100.0")].endswith("%") and text[("2", "100.0")].endswith("%")

    # the values are the store's
    store = RunStore(sweeps_explorer["store"])
    sc = store.sweep_cells("ui-sweep")
    done = {str(c["scheme.mx"]): (r, acc) for c, s, r, acc in
            zip(sc["coords"], sc["status"], sc["run_id"], sc["best_test_acc"]) if s == "done"}
    for mx, (rid, acc) in done.items():
        assert text[(mx, "100.0")] == f"{acc:.2%}"
    wait_until(lambda: "sweep ui-sweep: done, 2/4 done, 0 running, 0 failed, 2 diverged"
               in _text(page.locator(".sweeps-progress")), timeout=30, message="progress line")
    wait_until(lambda: "process finished" in _text(page.locator(".sweeps-message")), timeout=60,
               message="the sweep process to end")
    assert _text(page.locator(".sweeps-table")).count("diverged") == 2
    settle(page)  # the last redraw has reached the page
    shot = screenshot(page, "sweeps", full_page=True)
    assert shot.exists()
    lap("screenshot")

    # clicking a cell opens its run in Compare
    geom = page.evaluate(_GEOMETRY_JS)
    assert len(geom) == 1
    g = geom[0]
    i, j = g["x"].index("2"), g["y"].index("100.0")
    page.mouse.click(g["left"] + (i + 0.5) * g["width"] / len(g["x"]),
                     g["top"] + (len(g["y"]) - j - 0.5) * g["height"] / len(g["y"]))
    wait_until(lambda: _text(page.locator(".bk-tab.bk-active")) == "Compare", timeout=30, message="Compare tab")
    wait_until(lambda: "1 run(s) selected" in _text(page.locator(".compare-status")), timeout=30,
               message="the cell's run selected")
    # the cell's run is the one ticked row of Compare's runs table, and the one run in its legend
    chosen = page.locator(".run-table .tabulator-row.tabulator-selected")
    wait_until(lambda: chosen.count() == 1, timeout=30, message="one ticked row")
    assert done["2"][0][:6] in deep_text(chosen.first), deep_text(chosen.first)
    wait_until(lambda: done["2"][0][:6] in _text(page.locator(".run-legend")), timeout=30,
               message="the cell's run in the legend")
    lap("opened in Compare")
    assert page.console_log.errors() == []
