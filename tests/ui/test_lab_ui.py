"""Browser tests of the Format Lab: the bit-layout view, rejected specs and knob values, the 1280 px layout,
and which data sources a knob move re-sends (``panel serve apps/explorer.py`` in Chromium)."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from typing import Any

import ml_dtypes
import numpy as np
import pytest

from .conftest import ARTIFACTS, DOCS_SHOTS, deep_text, settle, wait_until

pytestmark = [pytest.mark.ui, pytest.mark.timeout(400)]

# Per ColumnDataSource (by model id): a digest of its data, so a test can count the sources that changed.
_SOURCES_JS = """
() => {
  const out = {};
  for (const doc of window.Bokeh.documents) {
    for (const m of doc.all_models) {
      const data = m.data;
      if (data === undefined || data === null || typeof data !== 'object' || m.selected === undefined) continue;
      const keys = data instanceof Map ? [...data.keys()] : Object.keys(data);
      let s = 0, n = 0;
      for (const k of keys) {
        const col = data instanceof Map ? data.get(k) : data[k];
        if (!col || col.length === undefined) continue;
        n += col.length;
        for (let i = 0; i < col.length; i++) { const v = Number(col[i]); if (isFinite(v)) s += v * (1 + (i % 7)); }
      }
      out[m.id] = [n, s];
    }
  }
  return out;
}
"""


def sources(page: Any) -> dict[str, list[float]]:
    return page.evaluate(_SOURCES_JS)


def open_lab(page: Any, url: str) -> None:
    page.goto(f"{url}?page=lab", timeout=120_000)
    page.wait_for_selector("canvas", timeout=120_000)
    wait_until(lambda: page.evaluate("() => window.Bokeh !== undefined && window.Bokeh.documents.length > 0"),
               message="Bokeh document")
    wait_until(lambda: "mls(ex=2,mx=1" in page.locator(".spec-builder").first.locator(".spec-input input")
               .input_value(), message="MLS spec in card 1")


def _e4m3_bits(x: float) -> str:
    """The FP8 E4M3 (OCP 'fn') code of x by ml_dtypes, as sign|exponent|mantissa."""
    code = int(np.array([x], dtype=ml_dtypes.float8_e4m3fn).view(np.uint8)[0])
    b = format(code, "08b")
    return f"{b[0]} {b[1:5]} {b[5:]}"


def test_bit_layout_view_shows_fields_neighbours_and_roundings(page: Any, explorer_url: str) -> None:
    open_lab(page, explorer_url)
    settle(page)
    view = page.locator(".bit-layout-view")
    wait_until(lambda: "lower neighbour" in deep_text(view), message="bit layout")
    # slot 2 is fp8_e4m3; the slot slider is the bit layout's second control
    slot = page.locator(".format-lab .bit-layout-slot .noUi-handle")
    slot.focus()
    page.keyboard.press("ArrowRight")
    probe = page.locator(".probe-input input")
    probe.fill("0.3")
    probe.press("Enter")
    wait_until(lambda: "fp8_e4m3" in deep_text(view), message="fp8_e4m3 bit layout")
    text = deep_text(view)
    want = _e4m3_bits(0.3)  # 0 0101 010 (0.3125)
    bits = [c for c in text.split() if set(c) <= {"0", "1"}]
    assert " ".join(bits[:3]) == want, (bits, want)
    assert "0.28125" in text and "0.3125" in text  # both neighbours
    for mode in ("nearest", "up", "down", "truncate", "nearest_away", "odd", "stochastic_rbits8"):
        assert mode in text, mode
    # a tie: 0.296875 is halfway between 0.28125 (code 41) and 0.3125 (code 42): nearest goes to the even code
    probe.fill("0.296875")
    probe.press("Enter")
    wait_until(lambda: "tie: to the even code" in deep_text(view), message="tie explained")
    assert page.console_log.errors() == []


def test_rejected_spec_and_knob_value_show_the_reason(page: Any, explorer_url: str) -> None:
    open_lab(page, explorer_url)
    card = page.locator(".spec-builder").first
    spec = card.locator(".spec-input input")
    err = card.locator(".spec-error")
    table = page.locator(".metrics-table")
    settled = settle(page)
    for bad, reason in (("mu8(mu=1e300)", "outside the knob's range"), ("mulaw(range=1e-31)", "outside the knob"),
                        ("float(e=11,m=52,bias=-2)", "beyond float64's range")):
        spec.fill(bad)
        spec.press("Enter")
        wait_until(lambda: err.is_visible() and reason in deep_text(err), message=f"reason for {bad}")
        assert "still showing mls(ex=2,mx=1,eg=8,mg=1,group=nc)" in deep_text(err)
        assert settle(page) == settled  # nothing recomputed under a spec that is not shown
        assert "mls(ex=2,mx=1,eg=8,mg=1,group=nc)" in deep_text(table)
    # a good spec is shown in canonical form and computed
    spec.fill(" MU8( mu = 100 ) ")
    spec.press("Enter")
    wait_until(lambda: spec.input_value() == "mu8(mu=100.0,range=2.0)", message="canonical spec")
    wait_until(lambda: "mu8(mu=100.0,range=2.0)" in deep_text(table), message="table follows")
    wait_until(lambda: not err.is_visible(), message="error cleared")
    # an out-of-range knob value (mu = -3) shows the reason instead of silently keeping the old spec
    mu = card.locator(".knobs input").first
    mu.fill("-3")
    mu.press("Enter")
    wait_until(lambda: err.is_visible() and "mu=-3" in deep_text(err), message="knob rejection")
    assert "still showing mu8(mu=100.0,range=2.0)" in deep_text(err)
    # the spec box shows the spec in effect (on a busy machine the box's own change event, sent when focus left
    # it, can arrive after the knob's and is answered with the canonical form a moment later)
    wait_until(lambda: spec.input_value() == "mu8(mu=100.0,range=2.0)", message="the spec in effect")
    assert page.console_log.errors() == []


# figure title -> the labels of its legend's visible entries, from the page's Bokeh documents
_LEGENDS_JS = """() => {
  const out = {};
  for (const doc of window.Bokeh.documents) for (const m of doc.all_models) {
    if (m.constructor.__name__ !== "Plot" && m.constructor.__name__ !== "Figure") continue;
    for (const r of m.center.concat(m.right, m.left, m.above, m.below)) {
      if (r.constructor.__name__ !== "Legend" || m.title == null) continue;
      const labels = r.items.filter((it) => it.visible)
        .map((it) => (it.label && typeof it.label === "object") ? it.label.value : it.label);
      out[m.title.text] = (out[m.title.text] || []).concat(labels);
    }
  }
  return out;
}"""


@pytest.mark.parametrize("width", [1280, 1400])
def test_layout_fits_without_sideways_scroll(browser: Any, explorer_url: str, width: int) -> None:
    ctx = browser.new_context(viewport={"width": width, "height": 1000})
    page = ctx.new_page()
    try:
        open_lab(page, explorer_url)
        count = page.locator(".format-lab .noUi-handle").first  # Formats slider
        count.focus()
        page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowRight")
        wait_until(lambda: page.locator(".spec-builder").nth(3).is_visible(), message="four cards")
        settle(page)
        wait_until(lambda: page.evaluate("() => document.documentElement.scrollWidth") <= width,
                   timeout=10, message=f"no sideways scroll at {width} px")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"format-lab-{width}.png"
        page.screenshot(path=str(path), full_page=True)
        if width == 1280 or os.environ.get("LOWBIT_UPDATE_SCREENSHOTS") == "1":
            DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, DOCS_SHOTS / path.name)
        # every plot has a legend naming the slots (the four shown, in the page's own Bokeh models; the data
        # histogram's grey bars too), and the scale view draws an image
        legends = page.evaluate(_LEGENDS_JS)
        slots = [f"Format {i}" for i in range(1, 5)]
        assert sorted(legends) == sorted(["Codebook (log x; scaled formats: element values)",
                                          "Code density per binade", "Relative error vs |x|",
                                          "Data histogram with codes (data units)"]), legends
        for title, labels in legends.items():
            assert [v for v in labels if v != "data |x|"] == slots, (title, labels)
        assert "data |x|" in legends["Data histogram with codes (data units)"], legends
        assert page.locator(".plot-codebook").count() == 1 and page.locator(".plot-scales canvas").count() >= 1
    finally:
        ctx.close()


# In the page's clock: the keydown's timeStamp (when the key reached the page) and the second animation
# frame after the first data source changed (the frame that shows it has been painted).
_KNOB_CLOCK_JS = """() => {
  window.__knob = {};
  for (const doc of window.Bokeh.documents) for (const m of doc.all_models) {
    if (m.data === undefined || m.selected === undefined) continue;
    m.properties.data.change.connect(() => {
      const k = window.__knob;
      if (k.key == null || k.data != null) return;
      k.data = performance.now();
      requestAnimationFrame(() => requestAnimationFrame(() => { k.painted = performance.now(); }));
    });
  }
  document.addEventListener('keydown', (e) => { window.__knob = {key: e.timeStamp}; }, true);
}"""


def test_knob_move_resends_only_the_changed_slot(page: Any, explorer_url: str) -> None:
    """Time from a knob move to the plotted data changing, and how many data sources changed."""
    open_lab(page, explorer_url)
    card = page.locator(".spec-builder").nth(1)  # slot 2: fp8_e4m3 (not the scale-map slot)
    spec = card.locator(".spec-input input")
    wait_until(lambda: spec.input_value() == "fp8_e4m3", message="fp8 in card 2")
    settle(page)
    page.evaluate(_KNOB_CLOCK_JS)
    handle = card.locator(".noUi-handle").nth(1)  # e, m: the mantissa slider
    times, in_page, changed = [], [], []
    for key in ("ArrowLeft", "ArrowLeft", "ArrowRight", "ArrowRight", "ArrowLeft"):
        before = sources(page)
        text = spec.input_value()
        handle.focus()
        t0 = time.monotonic()
        page.keyboard.press(key)
        # waits on a flag first: polling the sources would take the page's main thread from its renders
        clock = wait_until(lambda: page.evaluate("() => window.__knob.painted != null && window.__knob"),
                           interval=0.02, message="the changed plots painted")
        times.append(time.monotonic() - t0)
        in_page.append((clock["painted"] - clock["key"]) / 1000.0)
        assert spec.input_value() != text  # the spec follows the slider
        wait_until(lambda: sources(page) != before, message="plotted data to change")
        after = settle(page) and sources(page)
        changed.append(sum(1 for k, v in after.items() if before.get(k) != v))
    total = len(sources(page))
    ARTIFACTS.parent.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS.parent / "format-lab-ui-latency.json").write_text(json.dumps(
        {"knob_to_data_s": times, "median_s": statistics.median(times), "knob_to_painted_in_page_s": in_page,
         "median_in_page_s": statistics.median(in_page), "sources_changed": changed, "sources_total": total},
        indent=1))
    # one slot's codebook, density, error and rug sources (4), never the other slots' ones
    assert max(changed) <= 4 < total, (changed, total)


_TOOLTIPS_JS = """() => {
  const out = [];
  const walk = (n) => {
    if (!n) return;
    if (n.nodeType === 1 && typeof n.className === 'string' && n.className.includes('bk-Tooltip')) {
      const r = n.getBoundingClientRect();
      if (r.width > 0 && r.height > 0 && getComputedStyle(n).visibility !== 'hidden') out.push(n.className);
    }
    if (n.shadowRoot) [...n.shadowRoot.childNodes].forEach(walk);
    [...(n.childNodes || [])].forEach(walk);
  };
  walk(document.body);
  return out;
}"""


def test_knob_tooltips_never_stay_over_the_knobs(page: Any, explorer_url: str) -> None:
    """A knob's help ("?") shows on hover and goes when the user clicks a knob and moves on; a help
    pinned by clicking its "?" (Bokeh's closable tooltip) goes with the next click elsewhere."""
    open_lab(page, explorer_url)

    def shown() -> list[str]:
        return list(page.evaluate(_TOOLTIPS_JS))

    icons = page.locator(".spec-builder .bk-description")
    wait_until(lambda: icons.count() > 1, message="the knobs' help icons")
    icons.nth(1).hover()
    wait_until(lambda: len(shown()) == 1, message="the help on hover")
    page.locator(".spec-builder .spec-input input").nth(0).click()  # a knob of the same card
    page.mouse.move(5, 700)
    wait_until(lambda: shown() == [], message="no help left over the knobs after a click on a knob")
    icons.nth(0).click()  # pins the help (closable)
    page.mouse.move(5, 700)
    wait_until(lambda: any("bk-closable" in c for c in shown()), message="the pinned help")
    page.mouse.click(700, 20)
    wait_until(lambda: shown() == [], message="the pinned help closed by a click elsewhere")
    assert page.console_log.errors() == []
