"""What the Live Training status line says, against what the run store holds.

* A served page (background store reads) says a run ended only once it shows every row the run
  wrote: at every poll whose status is final, the step curve and the heat-map rows are those of the
  store.
* A new page (a new session, e.g. after the server restarted) opens on the last run in the store,
  also one trained by another process that this server never started.
* While another process holds the store's write lock the run goes on and buffers its rows: the page
  says so while it happens, and afterwards how long the store was locked.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from core.store import RunStore, is_final

from explorer.live import LiveTraining
from explorer.live_state import TENSORS, LiveTrainingState

pytestmark = pytest.mark.timeout(400)


def _status_line(s: LiveTrainingState) -> str:
    """The page's status line (what ``LiveTraining`` renders) for the state's values."""
    return LiveTraining._status_text(s.run_id, s.status, s.step, s.total_steps, s.test_acc, s.message,
                                     s.steps_per_s, s.elapsed, s.eta, s.store_note)


def _store_counts(store: RunStore, run_id: str) -> tuple[list[int], int]:
    """The run's steps with a loss row, and its heat-map rows (one per telemetry step, layer, tensor and
    source with a finite ARE: every telemetry step is one heat-map column of a short run)."""
    sc = store.scalars(run_id)
    are = store.metrics(run_id, name="are")
    are = are[are["role"].isin(["live", "shadow"]) & are["value"].notna()]
    src = are["fmt"].where(are["role"] == "shadow", "live")
    heat = len(are.assign(source=src).drop_duplicates(["step", "layer", "tensor", "source"]))
    return [int(x) for x in sc["step"]], heat


def _finished_run(path: Path, steps: int, seed: int = 0) -> str:
    """A run trained to its end through the core API, before any page exists (this process's explorer
    registry never hears of it: what a restarted server finds in its store)."""
    from core.data import DataConfig
    from core.models import ModelConfig
    from core.train import Run, RunConfig, TelemetryConfig, get_scheme

    cfg = RunConfig(data=DataConfig(name="digits"), model=ModelConfig(name="mlp", hidden=(32,)),
                    scheme=get_scheme("mls", mx=2, first_last=True), telemetry=TelemetryConfig(every=5),
                    epochs=2, max_steps=steps, seed=seed, checkpoint=False, name="earlier-process")
    run = Run(cfg, store=str(path)).start()
    assert run.wait(120) == "done"
    return str(run.id)


# ------------------------------------------------------------------ 1. final status after the last rows
def test_a_served_page_says_done_only_when_it_shows_every_row(tmp_path: Path) -> None:
    # 40 steps (digits: 23 steps an epoch); served mode: the feed reads the store in a background thread
    s = LiveTrainingState(store=str(tmp_path / "runs.sqlite"), attach=False, max_steps=40, every=5, epochs=2,
                          hidden="32", background_reads=True)
    run = s.start_run()
    assert run is not None, s.message
    store = run.store
    finals = 0
    end = time.monotonic() + 240
    while time.monotonic() < end:
        s.poll()
        if is_final(s.status):
            finals += 1
            steps, heat = _store_counts(store, run.id)  # the run has ended: the store holds all of it
            assert len(steps) == 40 and heat > 0
            shown = s.steps.data
            assert list(shown["step"]) == steps, (s.status, len(shown), len(steps))
            assert len(s.heat.data) == heat, (s.status, len(s.heat.data), heat)
            assert sum(len(s.heat_of[t].data) for t in TENSORS) == heat
            assert s.step == 40 and f"**{s.status}** - step 40/40" in _status_line(s)
            if finals >= 5 and s.settled:
                break
        else:  # nor does its message say the run ended before its status does
            assert f"run {run.id}: done" not in _status_line(s), _status_line(s)
        time.sleep(0.01)  # a page polls every 0.3 s; polling faster only looks closer at the race
    assert finals >= 5 and s.status == "done" and s.settled, (finals, s.status)
    assert s.message == f"run {run.id}: done"


def test_the_feed_wakes_the_page_when_the_run_ends_and_one_poll_then_shows_all_of_it(tmp_path: Path) -> None:
    import threading

    s = LiveTrainingState(store=str(tmp_path / "runs.sqlite"), attach=False, max_steps=40, every=5, epochs=2,
                          hidden="32", background_reads=True,
                          redraw_budget=0.0)  # while the run goes: one telemetry plot per poll
    woken: list[tuple[str, str | None, bool]] = []  # (thread, the feed's status, complete) at each call
    s.wake = lambda: woken.append((threading.current_thread().name, s._feed.status, s._feed.complete))
    run = s.start_run()
    assert run is not None, s.message
    end = time.monotonic() + 240
    while not (woken and woken[-1][2]) and time.monotonic() < end:
        s.poll()  # the page's polls start the feed's background reads
        time.sleep(0.05)
    assert woken and woken[-1][2], woken
    # once per status read (the first by the page's own read when it attached to the run), the later ones by
    # the feed's background reader; the last one final, with every row
    assert all(name.startswith("feed-") for name, _, _ in woken[1:]), woken
    statuses = [st for _, st, _ in woken]
    assert len(statuses) == len(set(statuses)) and is_final(str(statuses[-1])), statuses
    s.poll()  # the one poll the page makes at once: every plot's last rows and the final status
    steps, heat = _store_counts(run.store, run.id)
    assert is_final(s.status) and s.settled, (s.status, s._pending_redraws, s._dirty())
    assert list(s.steps.data["step"]) == steps and len(s.heat.data) == heat
    assert sum(len(s.heat_of[t].data) for t in TENSORS) == heat
    s.detach()  # a page that no longer shows the run hears nothing more of it
    n = len(woken)
    s._feed._notify()
    assert len(woken) == n


# ------------------------------------------------------------------ 2. a new page opens on the store's last run
def test_a_new_page_shows_the_last_run_in_the_store(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    _finished_run(path, 10, seed=1)
    last = _finished_run(path, 30, seed=2)
    st = RunStore(path)
    # a queued row nobody trains (a sweep cell waiting for a worker) is not what a page opens on
    st.create_run({}, name="queued", status="created")
    want_steps, want_heat = _store_counts(st, last)
    assert want_heat > 0
    for store in (str(path), RunStore(path)):  # a path (notebooks) or the app's RunStore
        s = LiveTrainingState(store=store)
        assert s.run is not None and s.run_id == last, (s.run_id, s.message)
        assert s.status == "done" and s.step == 30 and s.total_steps == 30 and s.progress == 1.0
        assert list(s.steps.data["step"]) == want_steps and len(s.heat.data) == want_heat
        assert s.max_steps == 30 and s.seed == 2  # the controls show the run's config
        s.poll()
        assert s.settled and s.status == "done"
        line = _status_line(s)
        assert f"run `{last}` **done** - step 30/30" in line and "No run yet" not in line, line


def test_a_new_page_on_an_empty_store_has_no_run(tmp_path: Path) -> None:
    s = LiveTrainingState(store=str(tmp_path / "runs.sqlite"))
    assert s.run is None and "No run yet" in _status_line(s)
    assert not (tmp_path / "runs.sqlite").exists()  # looking created no store file


# ------------------------------------------------------------------ 3. a store locked by another process
def _poll_until(s: LiveTrainingState, cond: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        s.poll()
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}: status {s.status!r}, step {s.step}, "
                         f"note {s.store_note!r}, message {s.message!r}")


def test_the_page_says_when_the_store_is_locked_and_the_run_buffers(tmp_path: Path) -> None:
    db = tmp_path / "runs.sqlite"
    s = LiveTrainingState(store=str(db), attach=False, epochs=400, every=5, hidden="32",
                          background_reads=True)
    run = s.start_run()
    assert run is not None, s.message
    lock: sqlite3.Connection | None = None
    try:
        _poll_until(s, lambda: s.status == "running" and s.step >= 10, 180, "the run to train")
        assert s.store_note == ""
        lock = sqlite3.connect(db, timeout=5, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # another program holds the write lock ...
        at = run.step
        _poll_until(s, lambda: "store busy" in s.store_note, 30, "the page to say the store is busy")
        assert s.status == "running" and "rows buffered, retrying" in s.store_note
        assert "store busy" in _status_line(s)
        time.sleep(1.0)
        s.poll()
        assert "store busy" in s.store_note  # still said while the lock is held
        lock.execute("COMMIT")  # ... and lets it go
        lock.close()
        lock = None
        _poll_until(s, lambda: s.store_note == "" and s.step > at, 90, "the note to go once rows arrive again")
        _poll_until(s, lambda: "was locked" in s.message, 30, "the store_blocked event")
        assert "buffered" in s.message and s.status == "running", s.message
        assert "store busy" not in _status_line(s)
    finally:
        if lock is not None:
            lock.execute("ROLLBACK")
            lock.close()
        s.stop_run()
        run.wait(60)
    _poll_until(s, lambda: s.settled, 60, "the stopped run to be shown")
    assert s.status == "stopped" and s.store_note == ""
    steps, _ = _store_counts(run.store, run.id)
    assert list(s.steps.data["step"]) == steps == list(range(len(steps)))  # nothing lost
