"""Fixtures of the browser tier: a ``panel serve`` of the Explorer and Playwright with Debian's Chromium.

The server runs ``apps/explorer.py`` on 127.0.0.1 on a free port, with ``LOWBIT_STORE`` pointing at a
temporary store seeded with two short digits runs (so Compare and the stored-tensor source have data).
Screenshots go to ``test-artifacts/screenshots/``; with ``LOWBIT_UPDATE_SCREENSHOTS=1`` they are also
copied into ``docs/screenshots/`` for the README.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"
DOCS_SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]

# console messages that are not errors of the page (Chromium's software GL chatter)
_IGNORED = ("GL Driver Message", "GPU stall", "WebGL")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(fn: Any, timeout: float = 20.0, interval: float = 0.2, message: str = "condition") -> Any:
    """Poll ``fn`` until it returns a truthy value (like panel.tests.util.wait_until)."""
    end = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < end:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message} (last value {last!r})")


# Summary of every ColumnDataSource in the page: {column: [length, sum of finite numbers]}.
_CDS_JS = """
() => {
  const out = {};
  for (const doc of window.Bokeh.documents) {
    for (const m of doc.all_models) {
      const data = m.data;
      if (data === undefined || data === null || typeof data !== 'object' || m.selected === undefined) continue;
      const keys = data instanceof Map ? [...data.keys()] : Object.keys(data);
      for (const k of keys) {
        const col = data instanceof Map ? data.get(k) : data[k];
        if (!col || col.length === undefined) continue;
        let s = 0;
        for (let i = 0; i < col.length; i++) { const v = Number(col[i]); if (isFinite(v)) s += v; }
        const prev = out[k] || [0, 0];
        out[k] = [prev[0] + col.length, prev[1] + s];
      }
    }
  }
  return out;
}
"""


# Rendered text of an element, descending into shadow roots.
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


def deep_text(locator: Any) -> str:
    return " ".join(locator.evaluate(_TEXT_JS).split())


def cds(page: Any) -> dict[str, list[float]]:
    return page.evaluate(_CDS_JS)


def col_len(page: Any, column: str) -> int:
    """Rows in all sources' columns named ``column`` (HoloViews turns spaces into underscores)."""
    data = cds(page)
    return int(sum(v[0] for k, v in data.items() if k in (column, column.replace(" ", "_"))))


def settle(page: Any, timeout: float = 30.0) -> dict[str, list[float]]:
    """The page's plotted data once it stops changing (two reads 0.3 s apart agree): what a test waits on
    before a screenshot or before asserting that nothing changed."""
    last: list[Any] = [None]

    def same() -> Any:
        now = cds(page)
        ok = now == last[0]
        last[0] = now
        return now if ok else None

    return wait_until(same, timeout=timeout, interval=0.3, message="plotted data to settle")


def _seed_store(path: Path) -> list[str]:
    """Two short MLS runs on digits (Mx = 1 and 2) with tensor samples."""
    from core.data import DataConfig
    from core.models import ModelConfig
    from core.train import Run, RunConfig, TelemetryConfig, get_scheme

    ids = []
    for mx in (1, 2):
        cfg = RunConfig(data=DataConfig(name="digits"), model=ModelConfig(name="mlp", hidden=(32,)),
                        scheme=get_scheme("mls", mx=mx, first_last=True),
                        telemetry=TelemetryConfig(every=10, sample_every=20), epochs=1, seed=0, name="ui-seed")
        run = Run(cfg, store=str(path)).start()
        assert run.wait(120) == "done"
        ids.append(run.id)
    return ids


@pytest.fixture(scope="session")
def ui_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A fresh run store with two finished runs."""
    d = tmp_path_factory.mktemp("ui-store")
    path = d / "runs.sqlite"
    ids = _seed_store(path)
    return {"path": path, "dir": d, "runs": ids}


@contextlib.contextmanager
def serve_explorer(log_path: Path, **env: str) -> Iterator[str]:
    """``panel serve apps/explorer.py`` on a free 127.0.0.1 port with ``env`` added; yields its URL once it
    answers, stops it afterwards."""
    port = _free_port()
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), **env)
    log = open(log_path, "w")
    cmd = [sys.executable, "-m", "panel", "serve", str(ROOT / "apps" / "explorer.py"), "--address", "127.0.0.1",
           "--port", str(port), f"--allow-websocket-origin=127.0.0.1:{port}"]
    proc = subprocess.Popen(cmd, cwd=str(ROOT), env=full_env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/explorer"

    def up() -> bool:
        # the first page is built inside this request (15 s and more on a loaded machine): a short timeout
        # would give up on it and queue another page build behind it, again and again
        try:
            with urllib.request.urlopen(url, timeout=120) as r:
                return r.status == 200
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(f"panel serve exited: {log_path.read_text()[-2000:]}")
            return False

    try:
        wait_until(up, timeout=180, interval=0.5, message="panel serve to answer")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def explorer_url(ui_store: dict[str, Any]) -> Iterator[str]:
    """Serve ``apps/explorer.py`` with ``panel serve`` and yield its URL."""
    with serve_explorer(ui_store["dir"] / "panel-serve.log", LOWBIT_STORE=str(ui_store["path"])) as url:
        yield url


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (no browser download)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class ConsoleLog:
    """Console messages and page errors of one page."""

    def __init__(self, page: Any) -> None:
        self.messages: list[tuple[str, str]] = []
        page.on("console", lambda m: self.messages.append((m.type, m.text)))
        page.on("pageerror", lambda e: self.messages.append(("pageerror", str(e))))

    def errors(self) -> list[str]:
        return [f"{t}: {m}" for t, m in self.messages
                if t in ("error", "pageerror") and not any(s in m for s in _IGNORED)]


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context and page (a new Panel session per test)."""
    ctx = browser.new_context(viewport={"width": 1440, "height": 1000})
    pg = ctx.new_page()
    pg.console_log = ConsoleLog(pg)
    yield pg
    ctx.close()


def screenshot(page: Any, name: str, full_page: bool = False) -> Path:
    """Save a screenshot under test-artifacts/screenshots (and docs/screenshots when asked)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    if os.environ.get("LOWBIT_UPDATE_SCREENSHOTS") == "1":
        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS_SHOTS / path.name)
    return path


# ----------------------------------------------------------------- the Sweeps page
#: a 2 x 2 sweep of 5-step digits runs (MLP [16]); the cells with ``diverge_loss = 0.01`` diverge at step 0
UI_SWEEP = """name = "ui-sweep"
description = "scheme.mx x diverge_loss, 5 steps"
metric = "best_test_acc"
axes = ["scheme.mx", "diverge_loss"]
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
[grid]
"scheme.mx" = [1, 2]
diverge_loss = [0.01, 100.0]
"""


@pytest.fixture(scope="session")
def sweeps_explorer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``panel serve apps/explorer.py`` with an empty store and ``LOWBIT_SWEEPS_DIR`` holding ``ui-sweep.toml``.

    Yields ``{"url", "store" (path), "dir", "sweeps" (folder)}``.
    """
    d = tmp_path_factory.mktemp("ui-sweeps")
    sweeps = d / "sweeps"
    sweeps.mkdir()
    (sweeps / "ui-sweep.toml").write_text(UI_SWEEP)
    store = d / "runs.sqlite"
    with serve_explorer(d / "panel-serve.log", LOWBIT_STORE=str(store), LOWBIT_SWEEPS_DIR=str(sweeps)) as url:
        yield {"url": url, "store": store, "dir": d, "sweeps": sweeps}
