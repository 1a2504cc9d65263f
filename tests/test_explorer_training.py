"""Live Training state (drives core.train.Run), Compare state, exports and the export CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import param
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import core
from core.store import is_active

from explorer.compare_state import CompareState
from explorer.export import load_comparison, main, run_label
from core.schemes import tail_bound
from explorer.live_state import LiveTrainingState, scheme_knob_class, spec_fields, tail_fraction

ROOT = Path(__file__).resolve().parents[1]


def _finished_run(store: Path, mx: int) -> str:
    from core.data import DataConfig
    from core.models import ModelConfig
    from core.train import Run, RunConfig, TelemetryConfig, get_scheme

    cfg = RunConfig(data=DataConfig(name="digits"), model=ModelConfig(name="mlp", hidden=(32,)),
                    scheme=get_scheme("mls", mx=mx, first_last=True), telemetry=TelemetryConfig(every=10),
                    epochs=1, seed=0)
    run = Run(cfg, store=str(store)).start()
    assert run.wait(120) == "done"
    return str(run.id)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("explorer-store")
    path = d / "runs.sqlite"
    ids = [_finished_run(path, mx) for mx in (1, 2)]
    return {"path": path, "dir": d, "runs": ids}


def _drain(state: LiveTrainingState, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while is_active(state.run.status) and time.monotonic() < end:
        state.poll()
        time.sleep(0.05)
    state.run.wait(10)
    state.poll(force=True)


# ------------------------------------------------------------------ live training
def test_scheme_knobs_come_from_the_scheme_dataclass() -> None:
    from core.train import SCHEMES

    knobs = scheme_knob_class("mls")()
    assert knobs.param["ex"].bounds == (0, 5) and knobs.param["mx"].bounds == (0, 10)  # from the mls family
    assert knobs.param["group"].objects == ["none", "n", "c", "nc"]
    assert spec_fields(SCHEMES["custom"]) == ["w", "a", "e", "ew", "g", "update"]
    assert "g" in spec_fields(SCHEMES["mls"])
    for name in SCHEMES:
        k = scheme_knob_class(name)()
        for p in set(k.param.values()) - {"name"}:
            assert k.param[p].doc


def test_short_run_streams_everything(store: dict[str, Any]) -> None:
    s = LiveTrainingState(store=str(store["path"]), attach=False, max_steps=40, every=5, epochs=2)
    run = s.start_run()
    assert run is not None and s.running, s.message
    _drain(s)
    assert s.status == "done" and s.step == 40 and s.progress == 1.0
    steps = s.steps.data
    assert list(steps["step"]) == list(range(40))
    sc = run.store.scalars(run.id)
    assert steps["loss"].tolist() == pytest.approx(sc["loss"].tolist())
    assert s.layers == ["1", "3", "5"]  # module paths of the MLP's Linear layers (hidden 128,64)
    heat = s.heat.data
    assert set(heat["tensor"]) >= {"w", "a", "e", "g"} and len(heat) > 0 and (heat["value"] > 0).all()
    live = run.store.metrics(run.id, name="are", role="live")
    assert (heat["source"] == "live").sum() == len(live) and set(heat["source"]) == {"live", "fp8_e4m3"}
    tail = s.tail.data
    assert tail["layers"] == s.layers and len(tail["measured"]) == 3
    assert tail["average"] == pytest.approx(tail_bound(tail["e1"], 3, 0.1).average)
    assert len(s.whist.data) > 0 and len(s.epoch_rows.data) >= 1
    g_shadow = heat[(heat["tensor"] == "g")]
    assert len(g_shadow) and set(g_shadow["source"]) == {"fp8_e4m3"}  # G is float in mls: shadow only


def test_live_update_marks_steps_then_stop_and_reattach(store: dict[str, Any]) -> None:
    s = LiveTrainingState(store=str(store["path"]), attach=False, epochs=400, every=5)
    run = s.start_run()
    try:
        end = time.monotonic() + 60
        while run.step < 5 and time.monotonic() < end:
            s.poll()
            time.sleep(0.05)
        # a second session started now reattaches to the active run
        other = LiveTrainingState(store=str(store["path"]))
        assert other.run is run and other.running and other.knobs is not s.knobs
        s.knobs.mx = 3
        assert "scheme.mx=3" in s.message
        s.lr = 0.05
        end = time.monotonic() + 60
        while not (s.markers and run.config.scheme.mx == 3 and run.config.optim.lr == 0.05) \
                and time.monotonic() < end:
            s.poll()
            time.sleep(0.05)
        assert len(s.markers) >= 1 and run.config.scheme.mx == 3 and run.config.optim.lr == 0.05
        assert s.start_run() is None and "stop it first" in s.message
        s.toggle_pause()
        end = time.monotonic() + 30
        while run.status != "paused" and time.monotonic() < end:
            time.sleep(0.05)
        paused_at = run.step
        time.sleep(0.5)
        s.poll()
        assert s.status == "paused" and run.step == paused_at
        s.toggle_pause()
        while run.status != "running" and time.monotonic() < end:
            time.sleep(0.05)
    finally:
        s.stop_run()
        _drain(s)
    assert s.status == "stopped"
    other.poll(force=True)
    again = LiveTrainingState(store=str(store["path"]), attach=False)
    again.attach(run)
    again.poll(force=True)
    assert again.steps.data["step"].tolist() == s.steps.data["step"].tolist()
    assert again.markers == s.markers and len(again.heat.data) == len(s.heat.data)
    assert again.heat.data.sort_values(["step", "layer", "tensor", "source"]).reset_index(drop=True).equals(
        s.heat.data.sort_values(["step", "layer", "tensor", "source"]).reset_index(drop=True))
    assert again.knobs.mx == 3  # the controls show the run's current config


def test_bad_config_is_reported(store: dict[str, Any]) -> None:
    s = LiveTrainingState(store=str(store["path"]), attach=False)
    s.hidden = "12,x"
    assert s.start_run() is None and "hidden sizes" in s.message
    s.hidden = "32"
    s.shadow = "mls(ex=99)"
    assert s.start_run() is None and "out of range" in s.message


def test_logbtq_bound_matches_the_paper() -> None:
    """LogBTQ paper, section 3.3: E(1) = 1, L = 50, u = 0.1 -> "under 2.3%" (core.schemes.tail_bound,
    the one copy the page's tail plot uses)."""
    b = tail_bound(1.0, 50, 0.1)
    assert b.average == pytest.approx(0.021, abs=0.001)  # "about 2.1%", the paper's "under 2.3%"
    assert b.approx == pytest.approx(0.0056, abs=0.0001)  # closed form 0.56%
    assert b.per_layer[0] == 1.0 and len(b.per_layer) == 50
    # bins of log2|x|: [-2,-1) [-1,0) [0,1) [1,2); |x| >= 2 is the last one
    assert tail_fraction([1, 1, 2, 4], lo=-2.0, hi=2.0) == pytest.approx(4 / 8)
    assert tail_fraction([1, 1, 2, 4], lo=-2.0, hi=2.0, zeros=8) == pytest.approx(4 / 16)
    assert math.isnan(tail_fraction([0, 0], 0.0, 1.0))


def test_live_model_tier_streams_into_bokeh(store: dict[str, Any]) -> None:
    from bokeh.document import Document
    from bokeh.models import ColumnDataSource

    from explorer import LiveTraining

    s = LiveTrainingState(store=str(store["path"]), attach=False, max_steps=15, every=5)
    view = LiveTraining(s)
    root = view.__panel__().get_root(Document())
    s.start_run()
    _drain(s)
    view.poll(force=True)  # the curves stream what the state took (explorer.live_curves)

    def rows(col: str) -> int:
        return sum(len(m.data[col]) for m in root.select({"type": ColumnDataSource}) if col in m.data)

    assert rows("loss") == 15
    assert rows("log10_ARE") > 0


# ------------------------------------------------------------------ compare + export
def test_compare_state_and_grid(store: dict[str, Any], tmp_path: Path) -> None:
    s = CompareState(store=str(store["path"]), export_dir=tmp_path / "out")
    ids = [i for i in store["runs"]]
    s.selected = ids
    comp = s.comparison
    assert comp is not None and comp.run_ids == ids
    assert "scheme.mx" in comp.varying_keys() and s.grid_x == "scheme.mx" and s.grid == ("scheme.mx", "")
    assert set(comp.summary["scheme.mx"]) == {1, 2}
    # the cost columns: the runs' last BitOPs and App. E energy rows (core.train.cost)
    from core.store import RunStore

    st = RunStore(str(store["path"]))
    for rid, e, b in zip(comp.summary["run_id"], comp.summary["energy"], comp.summary["bitops"]):
        last = st.metrics(rid, role="cost")
        assert e == last[last.name == "energy"].value.iloc[-1] > 0
        assert b == last[last.name == "bitops"].value.iloc[-1] > 0
    assert (comp.summary["energy_ratio"] >= 1).all()
    files = s.export_files()
    assert [f.suffix for f in files] == [".png", ".svg", ".html", ".json"] and s.exported
    assert run_label(ids[0], comp.configs[ids[0]]).startswith(ids[0][:6] + " mls(")


def test_export_files_carry_configs_and_work_offline(store: dict[str, Any], tmp_path: Path) -> None:
    import explorer

    ids = store["runs"]
    files = explorer.export(ids, tmp_path, store=str(store["path"]), grid=("scheme.mx", "seed"),
                            metrics=("loss", "train_acc", "test_acc"))
    png, svg, html, side = files
    from PIL import Image

    desc = json.loads(Image.open(png).text["Description"])
    assert [r["run_id"] for r in desc["runs"]] == ids and desc["runs"][0]["config"]["scheme"]["name"] == "mls"
    svg_text = svg.read_text()
    assert "<metadata" in svg_text and ids[0] in svg_text
    page = html.read_text()
    import re

    tags = re.findall(r"<(?:script|link)\b[^>]*>", page)
    assert tags and not [t for t in tags if re.search(r'(?:src|href)="', t)]  # every resource inline
    assert "Bokeh" in page and len(page) > 1_000_000
    assert all(i in page for i in ids) and "run-configs" in page
    meta = json.loads(side.read_text())
    assert meta["files"] == ["comparison.png", "comparison.svg", "comparison.html"]


def test_export_cli(store: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    st = str(store["path"])
    assert main(["--store", st, "--runs", *[i[:6] for i in store["runs"]], "--out", str(tmp_path / "a"),
                 "--formats", "png", "html"]) == 0
    out = capsys.readouterr().out.split()
    assert [Path(p).name for p in out] == ["comparison.png", "comparison.html", "comparison.json"]
    assert main(["--store", st, "--last", "2", "--out", str(tmp_path / "b"), "--grid", "scheme.mx", "seed"]) == 0
    assert (tmp_path / "b" / "comparison.svg").exists()
    assert main(["--store", st, "--runs", "nosuchrun", "--out", str(tmp_path / "c")]) == 2
    assert "not in the store" in capsys.readouterr().err
    assert main(["--store", st, "--list"]) == 0 and store["runs"][0] in capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown metric"):
        load_comparison(store["runs"], st) and __import__("explorer").export(store["runs"], tmp_path, st,
                                                                            metrics=("nope",))


def test_export_module_runs_as_script(store: dict[str, Any], tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "explorer.export", "--store", str(store["path"]), "--runs",
                        store["runs"][0], "--out", str(tmp_path), "--formats", "png"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "comparison.png").exists() and "RuntimeWarning" not in r.stderr


def test_format_lab_reads_a_stored_tensor(store: dict[str, Any]) -> None:
    from explorer.lab_state import FormatLabState

    lab = FormatLabState(store=str(store["path"]), size="16K")
    lab.source = "stored run"  # picks the newest run that has tensor samples
    assert lab.run_id == lab.param.run_id.objects[1] and lab.layer == "1"
    shape = json.loads(str(lab.store.samples(lab.run_id, layer="1", tensor="w")["shape"].iloc[-1]))
    # samples are stored with their own shape: whole tensors, or channel subsets of larger ones
    sample_size = lab.store.get_run(lab.run_id)["config"]["telemetry"]["sample_size"]
    assert lab.data.key.startswith(f"run:{lab.run_id}:1:w:") and list(lab.data.x.shape) == shape
    assert math.prod(shape) <= sample_size and lab.data.x.dim() == 2
    lab.run_id = store["runs"][0]
    assert tuple(lab.data.x.shape) == (32, 64)  # W of the first Linear layer of the 64-32-10 MLP
    lab.tensor = "a"
    assert ":1:a:" in lab.data.key and lab.results[0].metrics["are"] > 0
    steps = [s for s in lab.param.step.objects if s is not None]
    assert steps and lab.message.startswith(f"run {lab.run_id}")
    lab.step = steps[0]
    assert lab.data.key.endswith(f":{steps[0]}")


def test_every_scheme_can_be_picked_and_started_from_its_knobs(tmp_path: Path) -> None:
    """Switching the page to any registered scheme rebuilds its knobs (tuple fields as "3,4,6,8"
    text) and yields a valid run config; edited tuple text comes back as a tuple."""
    from core.train import get_scheme, list_schemes

    s = LiveTrainingState(store=str(tmp_path / "runs.sqlite"), attach=False)
    for name in list_schemes():
        s.scheme = name
        cfg = s.run_config()
        assert cfg.scheme.name == name
        base = get_scheme(name)  # the page starts from the scheme's defaults, as the CLI does
        for k, v in base.to_dict().items():  # spec strings compare as formats ('mu8' == 'mu8(mu=255.0,...)')
            got = cfg.scheme.to_dict()[k]
            if isinstance(v, str) and isinstance(got, str) and v != got:
                assert core.parse_format(v) == core.parse_format(got), (name, k)
            else:
                assert got == v, (name, k)
    s.scheme = "pfq"
    assert s.knobs.fw_levels == "3,4,6,8"
    s.knobs.fw_levels = "2, 4,8"
    s.knobs.bw_levels = "6,8,8"
    assert s.run_config().scheme.fw_levels == (2, 4, 8)


def test_scheme_signals_stream_and_backfill(tmp_path: Path) -> None:
    """The schemes' own telemetry (DFQ bits per layer, BitOPs ...) is plotted as a 'scheme signal',
    live and after a reattach from the store (same rows)."""
    s = LiveTrainingState(store=str(tmp_path / "runs.sqlite"), attach=False, max_steps=30, every=5, epochs=2)
    s.scheme = "dfq"
    run = s.start_run()
    assert run is not None, s.message
    _drain(s)
    assert s.status == "done"
    assert s.signal == "dfq.bits_mean" and {"cost.bitops", "dfq.relative_cost"} <= set(s.param.signal.objects)
    live = s.signal_frame()
    layers = {n.rsplit(".branches.", 1)[0] for n in s.layers}
    assert set(live["series"]) == layers and list(live["step"].unique()) == [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]
    assert live["value"].between(3, 8).all()
    other = LiveTrainingState(store=str(tmp_path / "runs.sqlite"), attach=False)
    other.attach(run)
    assert other.signal == "dfq.bits_mean"
    pd.testing.assert_frame_equal(other.signal_frame(), live)
    other.signal = "cost.bitops"
    b = other.signal_frame()
    assert list(b["series"].unique()) == ["bitops"] and b["value"].is_monotonic_increasing


def test_logbtq_bound_counts_dfq_branches_as_one_layer(tmp_path: Path) -> None:
    s = LiveTrainingState(store=str(tmp_path / "runs.sqlite"), attach=False, max_steps=12, every=5, epochs=1)
    s.scheme = "dfq"
    assert s.start_run() is not None
    _drain(s)
    d = s.tail_data()
    blocks = {n.split(".branches.")[0] for n in s.layers}
    assert len(s.layers) == 4 * len(blocks) and d["depth"] == len(blocks)
    assert len(d["per_layer"]) == len(s.layers) and d["per_layer"] == sorted(d["per_layer"], reverse=True)
    assert d["average"] == pytest.approx(tail_bound(d["e1"], len(blocks), d["u"]).average)


def test_niti_run_tail_legends_never_say_nan(tmp_path: Path) -> None:
    """A NITI run has no float quantized layers to measure: the tail plot's legend and title say n/a, not
    nan%; with layers but no activation statistics the bound uses E1 = 1 (finite)."""
    from explorer.plots import tail_legend, tail_title

    s = LiveTrainingState(store=str(tmp_path / "runs.sqlite"), attach=False, max_steps=8, every=4, epochs=1)
    s.scheme = "niti"
    heat_sends: list[tuple[str, int]] = []  # (status, rows) at each heat-map update
    s.heat.add_subscriber(lambda data: heat_sends.append((s.status, len(data))))
    assert s.start_run() is not None
    _drain(s)
    # the heat maps are redrawn once the run has ended, so their titles can say "none logged"
    assert heat_sends and heat_sends[-1] == ("done", 0), heat_sends
    def texts(d: Any) -> list[str]:  # the legend's labels (which carry the two averages) and the title
        return [label for label, _, _ in tail_legend(d)] + [tail_title(d)]

    labels = texts(s.tail_data())
    assert labels and not any("nan" in lab for lab in labels), labels
    empty = texts({"layers": ["a"], "average": math.nan, "approx": math.nan})
    assert sum("n/a" in lab for lab in empty) == 2 and not any("nan" in lab for lab in empty), empty
    s._stats[("x", "a.mean")], s._stats[("x", "a.std")] = math.nan, math.nan
    with param.edit_constant(s):
        s.layers = ["x"]
    d = s.tail_data()
    assert d["e1"] == 1.0 and math.isfinite(d["average"]) and math.isfinite(d["approx"])


# ------------------------------------------------------------------ live page: speed, colour ranges, empty plots
def test_run_speed_is_the_rate_over_the_last_window() -> None:
    from explorer.live_frames import duration_text, run_speed

    samples = [(100.0, 0), (101.0, 10), (102.0, 20), (115.0, 150), (120.0, 200)]
    sp = run_speed(samples, started=99.0, ended=None, total=1000, window=10.0)
    # oldest sample of the last 10 s (t >= 110) is (115, 150): (200 - 150) / (120 - 115)
    assert sp.steps_per_s == pytest.approx(10.0) and sp.elapsed == pytest.approx(21.0)
    assert sp.eta == pytest.approx((1000 - 200) / 10.0)
    wide = run_speed(samples, started=99.0, ended=None, total=1000, window=100.0)
    assert wide.steps_per_s == pytest.approx(200 / 20) and wide.eta == pytest.approx(80.0)
    done = run_speed(samples, started=99.0, ended=121.0, total=200)
    assert done.eta == 0.0 and done.elapsed == pytest.approx(22.0) and done.steps_per_s == pytest.approx(200 / 22)
    one = run_speed([(5.0, 0)], started=4.0, ended=None, total=10)
    assert one.steps_per_s is None and one.eta is None and one.elapsed == pytest.approx(1.0)
    stalled = run_speed([(5.0, 3), (8.0, 3)], started=4.0, ended=None, total=10)
    assert stalled.steps_per_s == 0.0 and stalled.eta is None  # paused: no ETA rather than infinity
    assert run_speed([], None, None, 10).elapsed is None
    assert [duration_text(x) for x in (None, 4.4, 65, 3 * 3600 + 7 * 60)] == ["?", "4 s", "1 min 05 s", "3 h 07 min"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=1e-9, max_value=1e3, allow_nan=False), min_size=1, max_size=30))
def test_decade_range_is_the_smallest_span_of_whole_decades(values: list[float]) -> None:
    from explorer.plots import decade_range

    lo, hi = decade_range(values)
    logs = [math.log10(max(v, 1e-7)) for v in values]  # are_cells' floor
    assert lo == math.floor(min(logs)) and hi == max(math.ceil(max(logs)), lo + 1)
    assert lo <= min(logs) and max(logs) <= hi and float(lo).is_integer() and float(hi).is_integer()


def test_decade_range_of_noise_within_a_decade_is_that_decade() -> None:
    from explorer.plots import decade_range

    assert decade_range([10 ** -0.92, 10 ** -0.85, 10 ** -0.82]) == (-1.0, 0.0)
    assert decade_range([0.01]) == (-2.0, -1.0) and decade_range([]) is None
    assert decade_range([float("nan")]) is None


def _mappers(pane: Any) -> list[Any]:
    from bokeh.models import LinearColorMapper

    return [m for model, _ in pane._models.values() for m in model.select({"type": LinearColorMapper})]


def _colorbars(pane: Any) -> list[bool]:
    from bokeh.models import ColorBar

    return [c.visible for model, _ in pane._models.values() for c in model.select({"type": ColorBar})]


def test_live_page_colour_ranges_speed_and_empty_plots(tmp_path: Path) -> None:
    """One decade-rounded colour range per tensor kind (from the store's ARE rows of every source), a
    fixed range when asked; steps/s, elapsed time and ETA from the run row; Stop red only while a run
    goes; then a NITI run after it: no colour bar left from the MLS run, and the tail and weight
    histogram plots say why they are empty."""
    from bokeh.document import Document
    from bokeh.models import ColumnDataSource

    from explorer import LiveTraining
    from explorer.plots import decade_range

    store = str(tmp_path / "runs.sqlite")
    s = LiveTrainingState(store=store, attach=False, max_steps=30, every=5)
    view = LiveTraining(s)
    root = view.__panel__().get_root(Document())
    assert view._stop.color == "light"  # no run: Stop is disabled and neutral
    run = s.start_run()
    _drain(s)
    assert view._stop.color == "light" and s.status == "done"
    for status, color in (("created", "danger"), ("running", "danger"), ("paused", "danger"), ("stopped", "light")):
        with param.edit_constant(s):
            s.status = status
        assert view._stop.color == color, status  # red exactly while there is a run to stop
    are = run.store.metrics(run.id, name="are")
    are = are[are["role"].isin(["live", "shadow"])]
    for t, pane in zip("waeg", view._heat_panes):
        want = decade_range(are.loc[are["tensor"] == t, "value"])  # every source of the tensor: one scale
        assert want is not None and s.heat_clim(t) == want
        assert [(m.low, m.high) for m in _mappers(pane)] == [want], t
    s.heat_scale = "fixed"
    s.heat_range = (-5.0, -1.0)
    for pane in view._heat_panes:
        assert [(m.low, m.high) for m in _mappers(pane)] == [(-5.0, -1.0)]
    s.heat_scale = "auto"
    row = run.store.get_run(run.id)
    assert s.elapsed == pytest.approx(row["ended"] - row["started"]) and s.eta == 0.0
    assert s.steps_per_s == pytest.approx(row["step"] / (row["ended"] - row["started"]))  # its average
    text = view._status_text(s.run_id, s.status, s.step, s.total_steps, s.test_acc, s.message, s.steps_per_s,
                             s.elapsed, s.eta)
    assert "steps/s" in text and "elapsed" in text and "ETA" not in text  # no ETA for an ended run
    assert "ETA 40 s" in view._status_text("r1", "running", 10, 50, None, "", 1.0, 12.0, 40.0)
    assert s.tail_note() == "" and s.whist_note() == ""

    s.scheme = "niti"
    s.max_steps = 8
    s.every = 4
    assert s.start_run() is not None
    _drain(s)
    assert s.status == "done"
    for pane in view._heat_panes:
        assert _colorbars(pane) == [False]  # the MLS run's scale is not left on an empty map
    notes = [m.data["text"][0] for m in root.select({"type": ColumnDataSource}) if "text" in m.data
             and len(m.data["text"])]
    assert len(notes) == 2 and all("niti" in n and "no float quantized layer" in n for n in notes), notes
    assert "activation histograms" in s.tail_note() and "weight histograms" in s.whist_note()


def test_a_change_that_reaches_an_ended_run_is_refused_and_undone(tmp_path: Path) -> None:
    """The page still shows the run going when a change arrives, but the run has ended: the page says
    the change was not applied and its control shows the run's value again; once the page shows the
    run ended, a change is the next run's setting and stays."""
    s = LiveTrainingState(store=str(tmp_path / "runs.sqlite"), attach=False, max_steps=3, every=5)
    run = s.start_run()
    assert run is not None and run.wait(120) == "done"
    if not is_active(s.status):  # a warm worker can end 3 steps before the page first reads the run
        with param.edit_constant(s):
            s.status = "running"
    assert is_active(s.status)  # not polled since: the page is behind, it still shows the run going
    s.lr = 0.05
    assert "not applied" in s.message and "ended" in s.message and "optim.lr=0.05" in s.message
    assert s.lr == run.config.optim.lr == 0.1 and s.status == "done"
    said = s.message
    s.lr = 0.05  # the page shows the run ended: a setting for the next run
    assert s.lr == 0.05 and s.message == said
    with param.edit_constant(s):
        s.status = "running"  # a page behind again, for a scheme knob and a format card
    s.knobs.mx = 4
    assert "not applied" in s.message and "scheme.mx=4" in s.message and s.knobs.mx == run.config.scheme.mx
    with param.edit_constant(s):
        s.status = "running"
    s.specs["g"].set_spec("fp8_e4m3")
    assert "not applied" in s.message and "scheme.g=fp8_e4m3" in s.message
    s.check_answers()  # the page's 100 ms callback: the card is set back after its own update
    assert s.specs["g"].value is None and not s.specs["g"].enabled  # G stays float, as in the run


def test_data_folder_reaches_the_run_config_only_on_a_local_page(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from bokeh.document import Document

    import explorer.live as live
    from explorer.live import local_request

    s = LiveTrainingState(store=str(tmp_path / "runs.sqlite"), attach=False)
    s.dataset = "mnist-t10k"
    assert s.run_config().data.root is None
    s.data_root = str(tmp_path)
    assert s.run_config().data.root == str(tmp_path) and s.run_config().data.name == "mnist-t10k"
    s.data_root = str(tmp_path / "missing")
    with pytest.raises(ValueError, match="not a folder"):
        s.run_config()
    assert s.start_run() is None and "not a folder" in s.message
    s.data_root = str(tmp_path)
    with param.edit_constant(s):
        s.local_paths = False
    with pytest.raises(ValueError, match="LOWBIT_DATA"):
        s.run_config()

    assert local_request("127.0.0.1:5006", "127.0.0.1") and local_request("localhost:5006", "::1")
    assert local_request("[::1]:5006", None) and local_request("localhost", "127.0.0.2")
    for host, ip in (("myhost.lan:5006", "127.0.0.1"), ("127.0.0.1:5006", "192.168.1.5"),
                     ("0.0.0.0:5006", "127.0.0.1"), ("10.0.0.2:5006", "10.0.0.7"), (None, None), ("", "127.0.0.1")):
        assert not local_request(host, ip), (host, ip)

    def inputs(view: Any) -> tuple[list[str], str]:
        from bokeh.models import Markup, TextInput

        root = view.__panel__().get_root(Document())
        return ([w.title for w in root.select({"type": TextInput})],
                " ".join(str(d.text) for d in root.select({"type": Markup}) if d.visible))

    titles, _ = inputs(live.LiveTraining(LiveTrainingState(store=str(tmp_path / "runs.sqlite"), attach=False)))
    assert any(t.startswith("Data folder") for t in titles)  # Jupyter / a loopback page
    monkeypatch.setattr(live, "served_locally", lambda: False)
    remote = LiveTrainingState(store=str(tmp_path / "runs.sqlite"), attach=False)
    remote.data_root = str(tmp_path)
    titles, text = inputs(live.LiveTraining(remote))
    assert not any(t.startswith("Data folder") for t in titles) and "LOWBIT_DATA" in text
    assert remote.data_root == "" and remote.local_paths is False


def test_a_float_format_card_shows_no_knobs() -> None:
    from explorer.builder import SpecBuilder
    from explorer.widgets import OptionalSpecBuilderView

    b = SpecBuilder(None, optional=True)
    view = OptionalSpecBuilderView(b, title="G format (optional)")
    knobs = view._knobs(b.knobs)
    assert not b.enabled and knobs.visible is False
    b.set_spec("mls(ex=2,mx=3)")
    assert b.enabled and knobs.visible is True
    b.set_spec(None)
    assert knobs.visible is False


# ------------------------------------------------------------------ compare: grid axes, labels, runs table
def _short_run(store: Path, scheme: str, name: str = "", **fields: Any) -> str:
    from core.data import DataConfig
    from core.models import ModelConfig
    from core.train import Run, RunConfig, TelemetryConfig, get_scheme

    cfg = RunConfig(data=DataConfig(name="digits"), model=ModelConfig(name="mlp", hidden=(16,)),
                    scheme=get_scheme(scheme, **fields), telemetry=TelemetryConfig(every=2), epochs=1,
                    max_steps=4, seed=0, name=name)
    run = Run(cfg, store=str(store)).start()
    assert run.wait(120) == "done"
    return str(run.id)


def test_compare_grid_defaults_to_the_keys_that_differ_and_writes_cell_values(tmp_path: Path) -> None:
    """Four runs of four schemes: the grid's x is ``scheme.name`` (not a field that only one scheme
    has), one cell per scheme with its value written on it; labels keep the keys that differ (a value
    at its default too) and the runs' names."""
    import holoviews as hv

    from explorer.export import grid_plot

    path = tmp_path / "runs.sqlite"
    schemes = ["fp32", "mls", "custom", "niti"]
    ids = [_short_run(path, sch, name=f"grid-{sch}") for sch in schemes]
    mx3 = _short_run(path, "mls", name="grid-mls3", mx=3)
    s = CompareState(store=str(path))
    s.selected = [ids[1], mx3]  # two MLS runs: their axis is mx
    assert s.grid_x == "scheme.mx"
    s.selected = ids  # four schemes: the default follows what differs now
    comp = s.comparison
    from explorer.comparison import flatten_config

    assert s.grid_x == "scheme.name"
    assert s.grid_y == "" or all(s.grid_y in flatten_config(c) for c in comp.configs.values())  # no "nan" row
    plot = grid_plot(comp, s.grid_x, s.grid_y, "final_test_acc")
    heat = plot.get(0)
    labels = plot.get(1)
    assert isinstance(heat, hv.HeatMap) and isinstance(labels, hv.Labels)
    assert sorted(heat.dimension_values(0)) == sorted(schemes)  # one cell per scheme
    from core.store import RunStore

    st = RunStore(str(path))
    want = {st.get_run(r)["scheme"]: f"{st.get_run(r)['final_test_acc']:.3g}" for r in ids}
    got = dict(zip(labels.dimension_values(0), labels.dimension_values("text")))
    assert got == want
    for rid, sch in zip(ids, schemes):
        assert comp.labels[rid].startswith(f"{rid[:6]} {sch}") and f'"grid-{sch}"' in comp.labels[rid]
    assert len(set(comp.labels.values())) == 4
    assert all(len(lab) < 60 for lab in comp.labels.values()), comp.labels  # no other scheme's fields
    s.grid_x = "scheme.mx"  # the user's axis stays while it still varies
    s.selected = [*ids, mx3]
    assert s.grid_x == "scheme.mx"


def test_compare_labels_keep_a_varying_key_at_its_default(store: dict[str, Any]) -> None:
    comp = load_comparison(store["runs"], str(store["path"]))
    one, two = (comp.labels[r] for r in store["runs"])
    assert "mx=1" in one and "mx=2" in two  # mx=1 is the MLS default: still named, it is what differs
    assert run_label("abcdef12", {"scheme": {"name": "mls", "mx": 1}, "optim": {"lr": 0.05}, "name": "a"},
                     vary=["optim.lr"]) == 'abcdef mls lr=0.05 "a"'


def test_compare_runs_table_selects_by_checkbox_and_lists_colours(store: dict[str, Any]) -> None:
    from html import escape

    from explorer.compare import Compare, legend_html
    from explorer.plots import RUN_COLORS

    s = CompareState(store=str(store["path"]))
    view = Compare(s)
    table = view._table
    assert table.selectable == "checkbox" and table.header_filters and table.pagination == "local"
    rows = table.value
    ids = list(s.param.selected.objects)
    assert len(rows) == len(ids) and list(rows["run"]) == [r[:6] for r in ids]
    table.selection = [1, 0]
    assert set(s.selected) == set(ids[:2]) and s.comparison is not None
    html = legend_html(s.comparison)
    for i, rid in enumerate(s.selected):
        assert RUN_COLORS[i] in html and escape(s.comparison.labels[rid]) in html
    assert html.index(RUN_COLORS[0]) < html.index(RUN_COLORS[1])
    s.selected = [ids[1]]
    assert table.selection == [1]


def test_exported_html_collapses_the_run_configs(store: dict[str, Any], tmp_path: Path) -> None:
    import re

    import panel as pn

    import explorer

    pn.extension("tabulator")  # as in a server whose Compare page shows its runs table (a CDN stylesheet)
    files = explorer.export(store["runs"], tmp_path, store=str(store["path"]), formats=["html"],
                            grid=("scheme.mx", ""))
    page = files[0].read_text()
    tags = re.findall(r"<(?:script|link)\b[^>]*>", page)
    assert not [t for t in tags if re.search(r'(?:src|href)="', t)], tags  # every resource inline: opens offline
    details = re.findall(r"<details class='run-config'>.*?</details>", page.replace("&lt;", "<").replace("&gt;", ">")
                         .replace("&#x27;", "'").replace('\\"', '"'), flags=re.S)
    text = page.replace("&lt;", "<").replace("&gt;", ">").replace("&#x27;", "'")
    assert text.count("<details class='run-config'>") == 2 and len(details) == 2
    assert all("<pre style=" in d for d in details) and text.count("<pre style=") == 2  # each in its <details>
    legends = re.findall(r'"name":"Legend","id":"\w+","attributes":\{"items":\[(.*?)\]', page)
    assert legends and all(items == "" for items in legends)  # the header lists the runs' colours instead
    assert '"name":"Text"' in page  # the grid's cell values
