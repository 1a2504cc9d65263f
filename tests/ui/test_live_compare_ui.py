"""Browser tests of the Live Training and Compare layouts: ``panel serve apps/explorer.py`` (own store
of six short runs of five schemes, long names) driven by Playwright in Chromium.

At 1280 and 1400 px wide neither page scrolls sideways (the rows of controls wrap, the plots shrink);
Stop is neutral while there is no run to stop; the data-folder field is there on a loopback page;
Compare picks runs by ticking rows of a filterable table, lists their colours under the curves
(no legend stretches the page) and writes the grid's cell values. Screenshots:
``live-training-1280`` and ``compare-1280``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from .conftest import col_len, deep_text, screenshot, serve_explorer, settle, wait_until

pytestmark = [pytest.mark.ui, pytest.mark.timeout(400)]

WIDTHS = (1280, 1400)
_WIDE_JS = "() => [document.documentElement.scrollWidth, window.innerWidth]"


def _seed(path: Path) -> list[str]:
    """Five short runs of four schemes with long names, then an MLS run with filled heat maps (last, so the
    Live page opens on it)."""
    from core.data import DataConfig
    from core.models import ModelConfig
    from core.train import Run, RunConfig, TelemetryConfig, get_scheme

    ids = []
    # the last run quantizes both layers of the MLP (first_last: MLS keeps them float otherwise) and trains its
    # 60 steps (3 epochs of 23), so the heat maps of the page opened on it fill
    plan = [("fp32", {}, 4), ("mls", {"mx": 1}, 4), ("custom", {}, 4), ("niti", {}, 4), ("mls", {"mx": 3}, 4),
            ("mls", {"mx": 2, "first_last": True}, 60)]
    for i, (scheme, fields, steps) in enumerate(plan):
        cfg = RunConfig(data=DataConfig(name="digits"), model=ModelConfig(name="mlp", hidden=(32,)),
                        scheme=get_scheme(scheme, **fields), telemetry=TelemetryConfig(every=5), epochs=3,
                        max_steps=steps, seed=i, name=f"ui-layout-a-rather-long-run-name-number-{i}")
        run = Run(cfg, store=str(path)).start()
        assert run.wait(120) == "done"
        ids.append(run.id)
    return ids


@pytest.fixture(scope="module")
def layout_explorer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    d = tmp_path_factory.mktemp("ui-layout")
    store = d / "runs.sqlite"
    ids = _seed(store)
    with serve_explorer(d / "panel-serve.log", LOWBIT_STORE=str(store)) as url:
        yield {"url": url, "runs": ids, "store": store}


def _open(browser: Any, url: str, name: str, width: int) -> Any:
    ctx = browser.new_context(viewport={"width": width, "height": 900})
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    page.goto(f"{url}?page={name}", timeout=120_000)
    page.wait_for_selector("canvas", timeout=120_000)
    return page


def _red(css: str) -> bool:
    """A CSS ``rgb(r, g, b)`` colour that reads as red (bootstrap's danger is rgb(217, 83, 79))."""
    r, g, b = (int(float(v)) for v in css[css.index("(") + 1:css.index(")")].split(",")[:3])
    return r > 180 and g < 130 and b < 130


def _fits(page: Any) -> tuple[int, int]:
    scroll, inner = page.evaluate(_WIDE_JS)
    assert scroll <= inner, f"page is {scroll} px wide in a {inner} px window"
    return scroll, inner


@pytest.mark.parametrize("width", WIDTHS)
def test_live_training_fits_the_window_and_stop_is_neutral_without_a_run(browser: Any,
                                                                        layout_explorer: dict[str, Any],
                                                                        width: int) -> None:
    page = _open(browser, layout_explorer["url"], "live", width)
    try:
        status = page.locator(".run-status")
        stop = page.locator(".btn-stop button")
        if "No run yet" in deep_text(status):
            # no run to stop: Stop is disabled and not red (bootstrap's danger is rgb(220, 53, 69))
            assert stop.is_disabled()
            idle_bg = stop.evaluate("(b) => getComputedStyle(b).backgroundColor")
            assert not _red(idle_bg), idle_bg
            _fits(page)
            max_steps = page.locator(".live-training input").nth(6)  # hidden, lr, epochs, seed, every, shadow, max
            max_steps.fill("300")
            max_steps.press("Enter")
            wait_until(lambda: page.locator(".live-training input").nth(6).input_value() == "300",
                       message="max steps")
            page.locator(".btn-start button").click()
            wait_until(lambda: "running" in deep_text(status) or "done" in deep_text(status), timeout=120,
                       message="the run to start")
            if "running" in deep_text(status):
                wait_until(lambda: _red(stop.evaluate("(b) => getComputedStyle(b).backgroundColor")),
                           message="Stop red while the run goes")
        wait_until(lambda: "done" in deep_text(status), timeout=120, message="the run to end")
        wait_until(lambda: col_len(page, "log10 ARE") > 0, timeout=60, message="heat maps drawn")
        settle(page)
        _fits(page)
        assert stop.is_disabled() and not _red(stop.evaluate("(b) => getComputedStyle(b).backgroundColor"))
        # the scheme-signal selector is on screen
        box = page.locator(".live-extras select").last.bounding_box()
        assert box is not None and box["x"] + box["width"] <= width
        assert "steps/s" in deep_text(status) and "elapsed" in deep_text(status)
        assert page.locator(".data-root input").count() == 1  # served on 127.0.0.1: the folder field
        # one colour range per tensor kind: whole decades
        ranges = page.evaluate("""() => {
            const out = [];
            for (const doc of window.Bokeh.documents) for (const m of doc.all_models)
                if (m.palette !== undefined && m.low !== undefined) out.push([m.low, m.high, m.palette[0]]);
            return out; }""")
        viridis = [(lo, hi) for lo, hi, first in ranges if first.lower() == "#440154"]
        assert len(viridis) == 4 and all(float(lo).is_integer() and float(hi).is_integer() and hi > lo
                                         for lo, hi in viridis), ranges
        if width == 1280:
            screenshot(page, "live-training-1280", full_page=True)
        assert page.errors == []
    finally:
        page.context.close()


def _tick(page: Any, n: int) -> None:
    rows = page.locator(".run-table .tabulator-row")
    wait_until(lambda: rows.count() >= n, timeout=60, message="runs listed")
    for i in range(n):  # one at a time: each tick is answered (its colour listed) before the next
        rows.nth(i).locator("input[type='checkbox']").click()
        wait_until(lambda: page.locator(".run-legend .swatch").count() == i + 1, timeout=60,
                   message=f"{i + 1} run(s) compared")


@pytest.mark.parametrize("width", WIDTHS)
def test_compare_fits_with_many_runs_picked_in_the_table(browser: Any, layout_explorer: dict[str, Any],
                                                         width: int) -> None:
    page = _open(browser, layout_explorer["url"], "compare", width)
    try:
        rows = page.locator(".run-table .tabulator-row")
        # the seeded runs, and the Live test's run when it ran first
        wait_until(lambda: rows.count() >= len(layout_explorer["runs"]), timeout=60, message="every run listed")
        # the header filter finds runs by name
        name_filter = page.locator(".run-table .tabulator-col[tabulator-field='name'] input")
        name_filter.press_sequentially("number-3")
        wait_until(lambda: rows.count() == 1, message="one row left by the filter")
        assert "niti" in deep_text(rows.first)
        name_filter.fill("")
        name_filter.press("Backspace")
        wait_until(lambda: rows.count() >= len(layout_explorer["runs"]), message="filter cleared")
        _tick(page, 5)
        legend = page.locator(".run-legend .swatch")
        wait_until(lambda: legend.count() == 5, timeout=60, message="five runs with their colours")
        wait_until(lambda: col_len(page, "loss") > 0, timeout=60, message="overlaid curves")
        wait_until(lambda: col_len(page, "text") >= 4, timeout=60, message="grid cell values")
        settle(page)
        _fits(page)
        height = page.evaluate("() => document.documentElement.scrollHeight")
        assert height < 2500, height  # no legend of five long labels stretching the page
        assert page.locator(".compare select").nth(2).input_value() == "scheme.name"  # Grid x: what differs
        if width == 1280:
            screenshot(page, "compare-1280", full_page=True)
        assert page.errors == []
    finally:
        page.context.close()


def test_a_new_page_opens_on_the_last_run_a_previous_process_wrote(browser: Any,
                                                                    layout_explorer: dict[str, Any]) -> None:
    """The seeded runs were trained by the test process before the server started (as by a server before a
    restart): a new Live page shows the store's last run, its id and status, not "No run yet"."""
    import contextlib
    import sqlite3

    with contextlib.closing(sqlite3.connect(layout_explorer["store"])) as c:  # the last run that began training
        rid, status = c.execute("SELECT run_id, status FROM runs WHERE status != 'created' "
                                "ORDER BY created DESC LIMIT 1").fetchone()
        steps = c.execute("SELECT count(*) FROM metrics WHERE run_id=? AND name='loss'", (rid,)).fetchone()[0]
    page = _open(browser, layout_explorer["url"], "live", 1280)
    try:
        status_line = page.locator(".run-status")
        wait_until(lambda: f"run {rid} {status} - step" in deep_text(status_line), timeout=60,
                   message=f"the page to show run {rid} {status}")
        assert "No run yet" not in deep_text(status_line)
        if status == "done":  # ended: the page shows all of it
            assert rid == layout_explorer["runs"][-1]
            wait_until(lambda: f"step {steps}/{steps}" in deep_text(status_line), message="its last step")
            wait_until(lambda: col_len(page, "loss") == steps, timeout=60, message="the run's whole loss curve")
        assert page.errors == []
    finally:
        page.context.close()
