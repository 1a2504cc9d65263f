"""What a user waits for on the Live Training page, early and late in a long run, with several tabs open.

Starts ``panel serve apps/explorer.py`` on 127.0.0.1 (a temporary run store), drives Debian's Chromium
with Playwright, starts a long digits run from the page and measures, at step ~100 and again near the
end of the run:

* page load: a new tab until it shows the run and its loss curve;
* a knob change (learning rate) until the run's answer is on the page, and Pause / Resume until the
  page shows the new status;
* the server's CPU (share of one core) and memory over a window;

then, when the run ends, the time from the run's final commit (its ``ended`` time) to every tab showing
the run done with every plot's last rows (noted in each browser tab as it happens), and the server's CPU
once the run is over. The reference, taken in the same run, is the
load of the Live page before any run exists (ratios are against it for page loads).

    python benchmarks/bench_ui.py                 # 50,000 steps, 3 tabs
    python benchmarks/bench_ui.py --steps 5000    # quicker
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run", "--disable-quic"]

_STATUS = re.compile(r"run (\w+) (\w+) - step (\d+)/(\d+)")
# rendered text of an element, descending into shadow roots (Panel renders its panes in them)
_TEXT_JS = """
(e) => {
  const text = (n) => {
    if (n.nodeType === 3) return n.textContent;
    if (n.nodeType !== 1 && n.nodeType !== 11) return '';
    if (n.nodeName === 'STYLE' || n.nodeName === 'SCRIPT') return '';
    const kids = n.shadowRoot ? [...n.shadowRoot.childNodes] : [...n.childNodes];
    return kids.map(text).join(' ');
  };
  return text(e);
}
"""
_MAX_X_JS = """
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

# installed in a tab before its run ends: notes (Date.now(), the machine's clock like the run's ``ended``) the
# moment the page says the run is done, and the moments its curves and heat maps hold their last rows
_WATCH_END_JS = """
([last, lastTele]) => {
  const models = () => window.Bokeh.documents.flatMap((doc) => [...doc.all_models]);
  const maxOf = (all, col) => { let best = -Infinity;
    for (const m of all) {
      const d = m.data; if (!d || typeof d !== 'object' || m.selected === undefined) continue;
      const c = d instanceof Map ? d.get(col) : d[col]; if (!c || c.length === undefined) continue;
      for (let i = 0; i < c.length; i++) { const v = Number(c[i]); if (isFinite(v) && v > best) best = v; } }
    return best; };
  const seen = window.__runEnd = {};
  const timer = setInterval(() => {
    const all = models();
    // Panel sends a Markdown pane's HTML escaped: strip tags in either form before matching
    const plain = (t) => t.replace(/&lt;.*?&gt;|<[^>]*>/g, '');
    if (!seen.done && all.some((m) => typeof m.text === 'string' && plain(m.text).includes('done - step')))
      seen.done = Date.now();
    if (!seen.step && maxOf(all, 'step') >= last - 16) seen.step = Date.now();  // curves are thinned: stride <= 16
    if (!seen.x1 && maxOf(all, 'x1') >= lastTele) seen.x1 = Date.now();
    if (seen.done && seen.step && seen.x1) clearInterval(timer);
  }, 20);
}
"""


def wait(fn: Callable[[], Any], timeout: float = 120.0, interval: float = 0.02, what: str = "condition",
         page: Any = None) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = fn()
        if v:
            return v
        time.sleep(interval)
    seen = f" (the page says {status_text(page)!r})" if page is not None else ""
    raise SystemExit(f"error: timed out after {timeout:.0f} s waiting for {what}{seen}")


def status_text(page: Any) -> str:
    return " ".join(page.locator(".run-status").evaluate(_TEXT_JS).split())


def status(page: Any) -> tuple[str, str, int, int] | None:
    m = _STATUS.search(status_text(page))
    return (m.group(1), m.group(2), int(m.group(3)), int(m.group(4))) if m else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def open_live(browser: Any, url: str, run_id: str | None) -> tuple[Any, float]:
    """A new tab on the Live page; seconds until it shows ``run_id`` and a loss curve (or, without a
    run, its controls and first plot)."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    t0 = time.monotonic()
    page.goto(f"{url}?page=live")
    page.wait_for_selector(".run-status", timeout=120_000)
    if run_id is None:
        page.wait_for_selector(".plot-loss canvas", timeout=120_000)
    else:
        wait(lambda: (st := status(page)) is not None and st[0] == run_id, what="the run on a new tab")
        wait(lambda: page.evaluate(_MAX_X_JS, "step") > 0 and page.evaluate(_MAX_X_JS, "x1") > 0,
             what="the loss curve and heat maps on a new tab", page=page)
    return page, time.monotonic() - t0


def answer_times(page: Any, store: Any, run_id: str) -> dict[str, float]:
    """A learning-rate change until the run's answer is on the page: the first on a new tab, then the
    median of three more, and of those the part until the server wrote the command (the store's
    timestamp); then Pause and Resume until the page shows the new status."""
    out: dict[str, float] = {}
    took, to_server = [], []
    for value in ("0.031", "0.032", "0.033", "0.034"):
        box = page.locator(".live-training input").nth(1)
        t0, w0 = time.monotonic(), time.time()
        box.fill(value)
        box.press("Enter")
        wait(lambda: f"optim.lr={value}" in (t := status_text(page)) and "applied" in t, timeout=60,
             what=f"lr={value}", page=page)
        took.append(time.monotonic() - t0)
        sent = store.conn.execute("SELECT max(time) FROM commands WHERE run_id=?", (run_id,)).fetchone()[0]
        to_server.append(float(sent) - w0)
    out["knob: first change on the new tab"] = took[0]
    out["knob: median of the next 3"] = statistics.median(took[1:])
    out["knob: of which browser -> server"] = statistics.median(to_server[1:])
    for label, want in (("pause", "paused"), ("resume", "running")):
        t0 = time.monotonic()
        page.locator(".btn-pause button").click()
        wait(lambda: (st := status(page)) is not None and st[1] == want, timeout=60, what=want, page=page)
        out[label] = time.monotonic() - t0
    return out


def server_load(proc: Any, seconds: float, tabs: Sequence[Any] = ()) -> tuple[float, float, list[float]]:
    """The server's CPU (percent of one core, children excluded) over ``seconds``, its RSS in MB, and
    how busy each of ``tabs``' main thread was meanwhile (percent: Chromium's ``TaskDuration``)."""
    def task_s(cdp: Any) -> float:
        return float(next(m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]
                          if m["name"] == "TaskDuration"))

    cdps = [page.context.new_cdp_session(page) for page in tabs]
    for cdp in cdps:
        cdp.send("Performance.enable")
    before = [task_s(cdp) for cdp in cdps]
    proc.cpu_percent(None)
    t0 = time.monotonic()
    time.sleep(seconds)
    cpu = proc.cpu_percent(None)
    busy = [100.0 * (task_s(cdp) - b) / (time.monotonic() - t0) for cdp, b in zip(cdps, before)]
    for cdp in cdps:
        cdp.detach()
    return cpu, proc.memory_info().rss / 2**20, busy


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=50_000, help="steps of the run (default 50000)")
    ap.add_argument("--tabs", type=int, default=3, help="tabs open on the run (default 3)")
    ap.add_argument("--every", type=int, default=10, help="telemetry period in steps (default 10)")
    ap.add_argument("--window", type=float, default=10.0, help="seconds of each CPU measurement (default 10)")
    args = ap.parse_args(argv)
    if args.steps < 500 or args.tabs < 1:
        print("error: --steps must be at least 500 and --tabs at least 1", file=sys.stderr)
        return 2
    if not Path(CHROMIUM).exists():
        print(f"error: {CHROMIUM} is missing (apt-get install chromium)", file=sys.stderr)
        return 2
    import psutil
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), LOWBIT_STORE=str(tmp / "runs.sqlite"))
    log = open(tmp / "serve.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "panel", "serve", str(ROOT / "apps" / "explorer.py"),
                               "--address", "127.0.0.1", "--port", str(port),
                               f"--allow-websocket-origin=127.0.0.1:{port}"], cwd=ROOT, env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/explorer"
    rows: list[tuple[str, str, str]] = []
    try:
        def up() -> bool:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    return r.status == 200
            except OSError:
                return False

        wait(up, timeout=120, interval=0.5, what="panel serve")
        proc = psutil.Process(server.pid)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            first, ref = open_live(browser, url, None)
            rows.append(("page load, no run (reference)", f"{ref:.2f} s", "1.00"))
            inputs = first.locator(".live-training input")  # hidden, lr, epochs, seed, every, shadow, max steps
            for i, v in ((2, "10000"), (4, str(args.every)), (6, str(args.steps))):
                inputs.nth(i).fill(v)
                inputs.nth(i).press("Enter")
            first.locator(".btn-start button").click()
            st = wait(lambda: s if (s := status(first)) and s[1] == "running" and s[3] else None, timeout=180,
                      what="the run to start")
            run_id, total = st[0], st[3]
            from core.store import RunStore

            store = RunStore(str(tmp / "runs.sqlite"))
            if total != args.steps:
                raise SystemExit(f"error: the run takes {total} steps, not {args.steps}: the page's inputs moved")
            tabs = [first]
            # late: with 40% of the run left, so a slow page still measures while the run trains
            for phase, at in (("early", 100), ("late", int(args.steps * 0.6))):
                wait(lambda: (s := status(first)) is not None and s[2] >= at, timeout=24 * 3600,
                     interval=0.5, what=f"step {at}")
                step_now = status(first)[2]  # type: ignore[index]
                page, load = open_live(browser, url, run_id)
                tabs.append(page)
                while len(tabs) < args.tabs:
                    tabs.append(open_live(browser, url, run_id)[0])
                rows.append((f"{phase} (step {step_now}): page load", f"{load:.2f} s", f"{load / ref:.2f}"))
                print(*rows[-1], flush=True)  # as it goes: a run that ends early still leaves its rows
                for k, v in answer_times(page, store, run_id).items():
                    rows.append((f"{phase}: {k}", f"{v:.2f} s", ""))
                    print(*rows[-1], flush=True)
                cpu, rss, busy = server_load(proc, args.window, tabs)
                rows.append((f"{phase}: server CPU, RSS ({len(tabs)} tabs)", f"{cpu:.0f} %, {rss:.0f} MB", ""))
                rows.append((f"{phase}: each tab's main thread busy", " / ".join(f"{b:.0f}" for b in busy) + " %",
                             ""))
                for extra in tabs[args.tabs:]:
                    extra.close()
                tabs = tabs[: args.tabs]
            last = max(0, args.steps - 1)
            last_tele = (last // args.every) * args.every
            for page in tabs:  # each tab notes when it shows the end, in the browser (no polling from here)
                page.evaluate(_WATCH_END_JS, [last, last_tele])
            wait(lambda: store.get_run(run_id)["status"] == "done", timeout=24 * 3600, interval=0.05,
                 what="the run to end")
            ended = float(store.get_run(run_id)["ended"])  # the run's clock (time.time()) at its final commit
            arrived = "() => { const s = window.__runEnd; return s.done && s.step && s.x1 ? s : null; }"
            shown = []
            for page in tabs:
                try:
                    shown.append(wait(lambda: page.evaluate(arrived), timeout=120, interval=0.2,
                                      what="the last rows", page=page))
                except SystemExit as exc:  # say which of the end's marks the tab never reached
                    seen = page.evaluate("() => window.__runEnd")
                    have = {c: page.evaluate(_MAX_X_JS, c) for c in ("step", "x1")}
                    raise SystemExit(f"{exc} (marks {seen}; want step >= {last - 16}, x1 >= {last_tele}; "
                                     f"the page holds {have})") from None
            lag = [max(t.values()) / 1000.0 - ended for t in shown]
            rows.append((f"run end -> every plot's last rows ({len(tabs)} tabs)", f"{max(lag):.2f} s",
                         "tabs " + " / ".join(f"{x:.2f}" for x in lag)))
            cpu, rss, _ = server_load(proc, args.window)
            rows.append(("after the run: server CPU, RSS", f"{cpu:.0f} %, {rss:.0f} MB", ""))
            # the same page and rows with no training beside it: what the run's load adds to a page load
            load = open_live(browser, url, run_id)[1]
            rows.append(("after the run: page load", f"{load:.2f} s", f"{load / ref:.2f}"))
            browser.close()
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>16}  ratio to reference")
    for name, value, ratio in rows:
        print(f"{name:<{width}}  {value:>16}  {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
