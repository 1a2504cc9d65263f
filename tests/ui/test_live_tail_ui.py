"""Browser test of the Live Training tail plot (``panel serve apps/explorer.py`` in Chromium, one server with
an empty store for the module and one 30-step digits run started from the page).

The tail plot's legend never covers its data: once the run has drawn measured tails, no legend of the figure
(a Bokeh ``Legend`` anywhere in it, or the HTML legend of :class:`explorer.live_lines.TailPlot`) overlaps the
plot frame, where the data is drawn. The frame's box comes from the figure's BokehJS view, so a legend placed
inside it (Bokeh's default for ``legend_label=`` glyphs) fails the test wherever it sits. Screenshot:
``live-tail-1280``.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from .conftest import ARTIFACTS, deep_text, serve_explorer, settle, wait_until

pytestmark = [pytest.mark.ui, pytest.mark.timeout(400)]

#: the series the legend names (explorer.plots.TAIL_LEGEND)
SERIES = ("P(|A| >= 2)", "overflow of A (format)", "LogBTQ bound per layer", "bound averaged over L",
          "E1/(4L(1-u))")

# The tail figure as its BokehJS view lays it out: the frame (where glyphs draw) and every Legend model of the
# figure with the panel it sits in and its box, in page px; the plotted measured tails.
_TAIL_JS = """() => {
  let fig = null;
  for (const doc of window.Bokeh.documents) for (const m of doc.all_models)
    if (m.css_classes && m.css_classes.includes('plot-tail')) fig = m;
  if (fig === null) return null;
  const view = window.Bokeh.index.find_one(fig);
  if (!view || !view.frame) return null;
  const el = view.el.getBoundingClientRect();
  const page = (b) => ({x: el.left + window.scrollX + b.x0, y: el.top + window.scrollY + b.y0,
                        width: b.x1 - b.x0, height: b.y1 - b.y0});
  const legends = [];
  for (const side of ['center', 'left', 'right', 'above', 'below'])
    for (const r of fig[side] || []) if (r.type === 'Legend') {
      const lv = view.renderer_view ? view.renderer_view(r) : window.Bokeh.index.find_one(r);
      const b = lv && lv.bbox;
      legends.push({side, visible: r.visible, items: r.items.length,
                    box: b && b.width > 0 && b.height > 0 ? page(b) : null});
    }
  const data = fig.renderers[0].data_source.data;
  const measured = data instanceof Map ? data.get('measured') : data['measured'];
  return {frame: page(view.frame.bbox), legends, measured: [...(measured || [])], canvas: page(view.bbox)};
}"""


def _overlap(a: dict[str, float], b: dict[str, float]) -> float:
    """Area of the intersection of two boxes (page px)."""
    w = min(a["x"] + a["width"], b["x"] + b["width"]) - max(a["x"], b["x"])
    h = min(a["y"] + a["height"], b["y"] + b["height"]) - max(a["y"], b["y"])
    return max(w, 0.0) * max(h, 0.0)


def _page_box(locator: Any) -> dict[str, float]:
    box = locator.evaluate("(e) => { const r = e.getBoundingClientRect(); return {x: r.left + window.scrollX, "
                           "y: r.top + window.scrollY, width: r.width, height: r.height}; }")
    assert box["width"] > 0 and box["height"] > 0, box
    return box


@pytest.fixture(scope="module")
def tail_run(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A server whose Live page shows a finished 30-step run (telemetry every 10 steps: three measured
    tails); a new page attaches to it (the run started last). Yields ``{"url", "status"}``."""
    d = tmp_path_factory.mktemp("ui-live-tail")
    with serve_explorer(d / "panel-serve.log", LOWBIT_STORE=str(d / "runs.sqlite")) as url:
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        try:
            page = ctx.new_page()
            page.goto(f"{url}?page=live", timeout=120_000)
            page.wait_for_selector(".plot-tail canvas", timeout=120_000)
            status = page.locator(".run-status")
            wait_until(lambda: "No run yet" in deep_text(status), timeout=60, message="the idle Live page")
            steps = page.locator(".live-training .bk-input-group").filter(has_text="Max steps").locator("input")
            steps.fill("30")
            steps.press("Enter")
            wait_until(lambda: steps.input_value() == "30", message="max steps")
            page.locator(".btn-start button").click()
            wait_until(lambda: "done" in deep_text(status), timeout=240, interval=0.5, message="the run to end")
            done = deep_text(status)
        finally:
            ctx.close()
        yield {"url": url, "status": done}


def test_tail_plot_legend_does_not_cover_the_data(browser: Any, tail_run: dict[str, Any]) -> None:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{tail_run['url']}?page=live", timeout=120_000)
        page.wait_for_selector(".plot-tail canvas", timeout=120_000)
        wait_until(lambda: "done" in deep_text(page.locator(".run-status")), timeout=60, message="the finished run")

        def drawn() -> Any:
            t = page.evaluate(_TAIL_JS)
            return t if t and sum(v > 1e-7 for v in t["measured"]) >= 2 else None  # 1e-7: the log axis' floor

        wait_until(drawn, timeout=90, interval=0.5, message="measured tails in the tail plot")
        settle(page)
        tail = page.evaluate(_TAIL_JS)
        frame = tail["frame"]
        assert frame["width"] > 200 and frame["height"] > 150, tail
        # no Bokeh legend over the frame: none in the centre panel (drawn inside the frame), none overlapping it
        for lg in tail["legends"]:
            assert lg["side"] != "center" or not lg["visible"] or lg["items"] == 0, f"a legend inside the frame: {lg}"
            assert lg["box"] is None or _overlap(lg["box"], frame) == 0, f"a legend over the frame: {lg}, {frame}"
        # the HTML legend names the five series, below the figure, on screen
        legend = page.locator(".tail-legend")
        wait_until(lambda: all(s in deep_text(legend) for s in SERIES), message="the tail legend")
        assert "n/a" not in deep_text(legend), deep_text(legend)  # the bound's averages are known
        box = _page_box(legend)
        assert _overlap(box, frame) == 0 and box["y"] >= frame["y"] + frame["height"], (box, frame)
        assert box["x"] + box["width"] <= 1280, box
        plot = _page_box(page.locator(".plot-tail"))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "live-tail-1280.png"), full_page=True,
                        clip={"x": plot["x"], "y": plot["y"], "width": plot["width"],
                              "height": box["y"] + box["height"] - plot["y"]})
        assert errors == []
    finally:
        ctx.close()
