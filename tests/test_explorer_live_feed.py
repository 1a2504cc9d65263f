"""The Live Training feed: bounded aggregates (thinned curves, merged heat-map bins) against naive
recomputations from every row, and one store read shared by every page on a run."""

from __future__ import annotations

import math
import types
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from explorer.live_feed import MAX_CURVE_STEPS, HeatGrid, RunFeed, Thinned
from explorer.live_frames import MAX_COLUMNS


def _naive_thinned(steps: list[float], capacity: int) -> tuple[list[float], int]:
    """Keep the k-th distinct step while k % stride == 0, doubling the stride until <= capacity kept."""
    distinct = list(dict.fromkeys(steps))
    stride = 1
    while len(distinct[::stride]) > capacity:
        stride *= 2
    return distinct[::stride], stride


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=30), st.integers(2, 50), st.integers(1, 3))
def test_thinned_keeps_an_evenly_spaced_subset_and_a_reader_follows_it(chunks: list[int], capacity: int,
                                                                       repeat: int) -> None:
    t = Thinned(["step", "v"], capacity)
    buf: list[pd.DataFrame] = []
    gen, pos, step = -1, 0, 0
    for n in chunks:
        steps = np.repeat(np.arange(step, step + n, dtype=float), repeat)  # rows share a step (layers)
        step += n
        t.add(pd.DataFrame({"step": steps, "v": steps * 2}))
        rows, restart = t.since(gen, pos)
        if restart:
            buf, pos = [], 0
        buf.append(rows)
        gen, pos = t.generation, pos + len(rows)
    want, stride = _naive_thinned([float(s) for s in range(step)], capacity)
    got = t.frame
    assert list(dict.fromkeys(got["step"])) == want
    assert (got.groupby("step").size() == repeat).all()  # every row of a kept step is kept
    assert t.stride == stride and t.generation == int(math.log2(stride))
    followed = pd.concat(buf, ignore_index=True)
    pd.testing.assert_frame_equal(followed.reset_index(drop=True), got.reset_index(drop=True))


def test_thinned_refuses_a_capacity_below_two() -> None:
    with pytest.raises(ValueError, match="capacity"):
        Thinned(["step"], 1)


def _naive_heat(rows: pd.DataFrame, origin: float, width: float) -> pd.DataFrame:
    b = rows.assign(step=origin + ((rows["step"] - origin) // width) * width)
    return b.groupby(["step", "layer", "tensor", "source"], as_index=False)["value"].mean()


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3000), st.sampled_from([1, 5, 10]), st.integers(1, 7), st.integers(0, 2**31 - 1))
def test_heat_grid_is_the_mean_per_bin_of_every_row(n_steps: int, every: int, chunks: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    steps = np.arange(n_steps) * every + 3 * every
    rows = pd.DataFrame({
        "step": np.repeat(steps, 4).astype(float),
        "layer": np.tile(["l0", "l1", "l0", "l1"], n_steps),
        "tensor": np.tile(["w", "w", "a", "a"], n_steps),
        "source": np.tile(["live", "live", "live", "fp8_e4m3"], n_steps),
        "value": rng.random(4 * n_steps),
    })
    grid = HeatGrid(every, columns=16)
    for idx in np.array_split(np.arange(len(rows)), chunks):
        part = rows.iloc[idx]
        grid.add(part["step"].to_numpy(), part["layer"].tolist(), part["tensor"].tolist(), part["source"].tolist(),
                 part["value"].to_numpy())
    # the bin width is the period doubled just often enough for every step to fit in 16 bins
    width = float(every)
    while (steps.max() - steps.min()) // width >= 16:
        width *= 2
    assert grid.width == width and grid.origin == steps.min()
    got = grid.frame().sort_values(["step", "layer", "tensor", "source"]).reset_index(drop=True)
    want = _naive_heat(rows, float(steps.min()), width).sort_values(["step", "layer", "tensor", "source"])
    want = want.reset_index(drop=True)
    assert len(got) <= 3 * 2 * 16
    assert list(got["step"]) == list(want["step"]) and list(got["layer"]) == list(want["layer"])
    assert list(got["source"]) == list(want["source"])
    np.testing.assert_allclose(got["value"], want["value"], rtol=1e-12)  # sums in another order
    assert (got["width"] == width).all()


def test_heat_grid_skips_nan_values_and_refuses_odd_columns() -> None:
    g = HeatGrid(1, columns=4)
    g.add(np.array([0.0, 1.0]), ["a", "a"], ["w", "w"], ["live", "live"], np.array([np.nan, 2.0]))
    f = g.frame()
    assert list(f["value"]) == [2.0] and list(f["step"]) == [1.0]
    with pytest.raises(ValueError, match="even"):
        HeatGrid(1, columns=5)


class _FakeStore:
    """A store holding one long run's rows, counting the reads."""

    def __init__(self, tables: dict[str, pd.DataFrame]) -> None:
        self.tables = tables
        self.reads = 0
        self.path = "fake"

    def layers(self, run_id: str) -> pd.DataFrame:
        return pd.DataFrame({"idx": [0, 1], "name": ["l0", "l1"]})

    def get_run(self, run_id: str) -> dict[str, Any]:
        return {"started": 1000.0, "ended": 1100.0, "heartbeat": 1100.0, "step": 50_000}

    def changes(self, run_id: str, cursor: Any) -> tuple[dict[str, pd.DataFrame], Any]:
        self.reads += 1
        if cursor:
            return {k: v.iloc[0:0] for k, v in self.tables.items()}, cursor
        return self.tables, {"done": 1}


def _long_run(n_steps: int, every: int = 10) -> Any:
    steps = np.arange(n_steps)
    scal = pd.DataFrame({"step": np.repeat(steps, 2), "epoch": 0, "layer": "", "tensor": "", "fmt": "", "role": "",
                         "name": np.tile(["loss", "train_acc"], n_steps), "value": 1.0})
    ts = steps[::every]
    tele = pd.DataFrame({"step": np.repeat(ts, 4), "epoch": 0, "layer": np.tile(["l0", "l1"], 2 * len(ts)),
                         "tensor": np.tile(["w", "w", "a", "a"], len(ts)), "fmt": "", "role": "live",
                         "name": "are", "value": 0.5})
    hist = pd.DataFrame({"step": ts, "layer": "l0", "tensor": "w", "kind": "x", "lo": -8.0, "hi": 0.0, "zeros": 0,
                         "counts": [[1, 2, 3, 4]] * len(ts)})
    ev = pd.DataFrame({"step": [n_steps - 1], "kind": ["done"], "payload": [{}]})
    store = _FakeStore({"metrics": pd.concat([scal, tele], ignore_index=True), "histograms": hist, "events": ev})
    cfg = types.SimpleNamespace(telemetry=types.SimpleNamespace(every=every))
    return types.SimpleNamespace(id="r1", store=store, config=cfg, refresh=lambda max_age=None: {"status": "done"})


def test_a_long_run_feeds_bounded_frames_read_once() -> None:
    run = _long_run(50_000)
    feed = RunFeed(run)
    assert feed.refresh() > 0 and feed.complete
    assert feed.refresh(force=True) == 0 and run.store.reads == 1  # an ended run is read once
    assert len(feed.steps) <= MAX_CURVE_STEPS and feed.steps.frame["step"].iloc[0] == 0
    heat = feed.heat_frame()
    assert len(heat) <= 2 * 2 * MAX_COLUMNS and heat["step"].max() + heat["width"].iloc[0] >= 49_990
    assert feed.heat_frame() is heat  # computed once per version
    whist = feed.weight_hists("l0")
    assert len(whist) <= MAX_COLUMNS and whist[0][0] == 0
    assert feed.events == ["run r1: done"]
    speed = feed.speed(50_000)  # from the run row: 50,000 steps in 100 s
    assert speed.steps_per_s == pytest.approx(500.0) and speed.elapsed == pytest.approx(100.0) and speed.eta == 0.0


class _ChunkedStore(_FakeStore):
    """Hands out the rows of its tables ``chunk`` rows of each table per read."""

    def __init__(self, tables: dict[str, pd.DataFrame], chunk: int) -> None:
        super().__init__(tables)
        self.chunk = chunk

    def changes(self, run_id: str, cursor: Any) -> tuple[dict[str, pd.DataFrame], Any]:
        self.reads += 1
        at = int(cursor or 0)
        return {k: v.iloc[at:at + self.chunk] for k, v in self.tables.items()}, at + self.chunk


@pytest.mark.parametrize("chunk", [1, 7])
def test_histograms_read_at_once_or_in_pieces_give_the_same_feed(chunk: int) -> None:
    """A long run's first read folds thousands of histogram rows in at once (one batch per layer); the
    result equals reading them a few rows at a time, as a page does while the run goes: the same thinned
    weight histograms of each layer (steps, counts, ranges) and each layer's last activation histogram."""
    rng = np.random.default_rng(0)
    ts = np.arange(0, 3 * MAX_COLUMNS * 10, 10)  # thinned twice
    n = len(ts)
    hist = pd.DataFrame({"step": np.repeat(ts, 4), "layer": np.tile(["l0", "l1", "l0", "l1"], n),
                         "tensor": np.tile(["w", "w", "a", "a"], n), "kind": "x",
                         "lo": np.tile([-8.0, -6.0, -4.0, -2.0], n), "hi": 0.0, "zeros": np.arange(4 * n) % 3,
                         "counts": [list(rng.integers(0, 9, 5)) for _ in range(4 * n)]})
    empty = pd.DataFrame({c: [] for c in ("step", "epoch", "layer", "tensor", "fmt", "role", "name", "value")})
    tables = {"metrics": empty, "histograms": hist, "events": pd.DataFrame({"step": [], "kind": [], "payload": []})}

    def feed_of(store: Any) -> RunFeed:
        cfg = types.SimpleNamespace(telemetry=types.SimpleNamespace(every=10))
        run = types.SimpleNamespace(id="r1", store=store, config=cfg,
                                    refresh=lambda max_age=None: {"status": "running"})
        feed = RunFeed(run)
        for _ in range(math.ceil(len(hist) / store.chunk) if isinstance(store, _ChunkedStore) else 1):
            feed.refresh(force=True)
        return feed

    whole, pieces = feed_of(_FakeStore(tables)), feed_of(_ChunkedStore(tables, chunk))
    for layer in ("l0", "l1"):
        a, b = whole.weight_hists(layer), pieces.weight_hists(layer)
        assert 0 < len(a) <= MAX_COLUMNS and [h[0] for h in a] == [h[0] for h in b]
        assert all(np.array_equal(x[1], y[1]) and x[2:] == y[2:] for x, y in zip(a, b))
        last = hist[(hist["layer"] == layer) & (hist["tensor"] == "a")].iloc[-1]
        for feed in (whole, pieces):
            counts, lo, hi, zeros = feed.a_hists[layer]
            assert list(counts) == list(last["counts"]) and (lo, hi, zeros) == (last["lo"], last["hi"], last["zeros"])
        # the kept steps: the feed's thinning of the layer's weight snapshots (the k-th kept when k % stride == 0)
        stride = whole.whist[layer].stride
        assert stride == 4 and [h[0] for h in a] == list(ts[::stride])


def test_a_recipe_run_feeds_its_scale_telemetry_as_scheme_signals(tmp_path) -> None:
    """A real fp8 (delayed scaling) run: its role ``scale`` rows (core.schemes.recipes) reach the page's
    scheme-signal selector."""
    from core.train import Run, RunConfig, TelemetryConfig, get_scheme
    from core.data import DataConfig
    from core.models import ModelConfig

    cfg = RunConfig(data=DataConfig(name="digits"), model=ModelConfig(name="mlp", hidden=(32,)), epochs=1,
                    scheme=get_scheme("fp8", first_last=True), telemetry=TelemetryConfig(every=5), max_steps=12,
                    checkpoint=False)
    run = Run(cfg, store=str(tmp_path / "runs.sqlite")).start()
    assert run.wait(120) == "done"
    from core.store import RunStore

    view = types.SimpleNamespace(id=run.id, store=RunStore(str(tmp_path / "runs.sqlite")), config=cfg,
                                 refresh=lambda max_age=None: {"status": "done"})
    feed = RunFeed(view)
    feed.refresh(force=True)
    scale = [n for n in feed.signal_names if n.startswith("scale.")]
    assert scale, feed.signal_names


def test_a_failed_read_of_an_ended_run_is_read_again() -> None:
    """A store read that fails (a hiccup) leaves the feed incomplete, its status unknown: the next refresh
    reads every row (a page would otherwise say the run ended with none of its rows)."""
    import sqlite3

    run = _long_run(100)
    read = run.store.changes
    calls: list[int] = []

    def flaky(run_id: str, cursor: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise sqlite3.OperationalError("disk I/O error")
        return read(run_id, cursor)

    run.store.changes = flaky
    feed = RunFeed(run)
    assert feed.refresh() == 0 and not feed.complete and feed.status is None
    assert feed.refresh() > 0 and feed.complete and feed.status == "done"
    assert list(feed.steps.frame["step"]) == list(range(100))


def test_the_runs_store_blocked_event_is_a_message() -> None:
    feed = RunFeed(_long_run(10))
    feed._add_events(pd.DataFrame({"step": [5], "kind": ["store_blocked"],
                                   "payload": [{"seconds": 3.3, "retries": 3}]}))
    assert feed.events == ["run r1: the run store was locked by another process for 3.3 s; the run kept training, "
                           "buffered its rows and wrote them once the store was free"]
    assert feed.store_busy is None  # nothing blocks it now
