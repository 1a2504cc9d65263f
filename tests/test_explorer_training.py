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
        base = get_scheme(name, first_last=True) if name not in ("fp32", "amp") else get_scheme(name)
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
    """A NITI run has no float quantized layers to measure: the tail plot's legends say n/a, not
    nan%; with layers but no activation statistics the bound uses E1 = 1 (finite)."""
    from explorer.plots import tail_plot

    s = LiveTrainingState(store=str(tmp_path / "runs.sqlite"), attach=False, max_steps=8, every=4, epochs=1)
    s.scheme = "niti"
    heat_sends: list[tuple[str, int]] = []  # (status, rows) at each heat-map update
    s.heat.add_subscriber(lambda data: heat_sends.append((s.status, len(data))))
    assert s.start_run() is not None
    _drain(s)
    # the heat maps are redrawn once the run has ended, so their titles can say "none logged"
    assert heat_sends and heat_sends[-1] == ("done", 0), heat_sends
    labels = [el.label for el in tail_plot(s.tail_data())]
    assert labels and not any("nan" in lab for lab in labels), labels
    empty = [el.label for el in tail_plot({"layers": ["a"], "average": math.nan, "approx": math.nan})]
    assert any("n/a" in lab for lab in empty) and not any("nan" in lab for lab in empty)
    s._stats[("x", "a.mean")], s._stats[("x", "a.std")] = math.nan, math.nan
    with param.edit_constant(s):
        s.layers = ["x"]
    d = s.tail_data()
    assert d["e1"] == 1.0 and math.isfinite(d["average"]) and math.isfinite(d["approx"])
