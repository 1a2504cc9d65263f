"""A scheme that quantizes no layer: the run's ``warning`` event, the CLI's ``warning:`` line and the Live
feed's message; one ``first_last`` default for the CLI and the Live page; and the MLS doc's statement
that with ``group=nc`` on 2-d tensors (Linear layers) Ex has no effect (a property test of the format)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import core
from core.models import ModelConfig
from core.store import RunStore
from core.train import SCHEMES, Run, RunConfig, TelemetryConfig, get_scheme, list_schemes
from core.train.qlayers import quantized_layers

ROOT = Path(__file__).resolve().parents[1]


def _cfg(scheme, hidden=(32,), **kw):
    return RunConfig(model=ModelConfig(hidden=hidden), scheme=scheme, telemetry=TelemetryConfig(every=0),
                     threads=1, checkpoint=False, **kw)


def _warnings(store: RunStore, run_id: str) -> list[str]:
    ev = store.events(run_id)
    return [p["message"] for k, p in zip(ev.kind, ev.payload) if k == "warning"]


def test_mls_on_a_one_hidden_layer_mlp_warns_once_in_the_store(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    run = Run(_cfg(get_scheme("mls", ex=1, mx=1), epochs=1, max_steps=3), store).prepare()
    layers = [layer for _, layer in quantized_layers(run.model)]
    assert len(layers) == 2 and all(layer.quant is None for layer in layers)  # both float: first and last
    msg = run.quantization_warning()
    assert msg is not None and msg.startswith("scheme mls quantizes no layer: first_last=false") and "\n" not in msg
    run.start()
    assert run.wait(120) == "done"
    assert _warnings(store, run.id) == [msg]


@pytest.mark.parametrize("scheme,hidden", [(get_scheme("mls", first_last=True), (32,)),
                                           (get_scheme("mls"), (32, 32)),  # the middle layer is quantized
                                           (get_scheme("fp32"), (32,)),  # float by design: nothing to say
                                           (get_scheme("niti"), (32,))])  # an integer net, not QLinear layers
def test_no_warning_when_a_layer_is_quantized_or_the_scheme_is_float(tmp_path, scheme, hidden):
    store = RunStore(tmp_path / "runs.sqlite")
    run = Run(_cfg(scheme, hidden=hidden, epochs=1, max_steps=2), store).prepare()
    assert run.quantization_warning() is None
    run.start()
    assert run.wait(120) == "done"
    assert _warnings(store, run.id) == []


def test_a_live_switch_to_a_scheme_that_quantizes_nothing_warns(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    run = Run(_cfg(get_scheme("mls", first_last=True), epochs=10_000), store).start()
    try:
        deadline = time.monotonic() + 60
        while run.step < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        run.update({"scheme.first_last": False})
        deadline = time.monotonic() + 60
        while not _warnings(store, run.id) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        run.stop()
        run.wait(60)
    got = _warnings(store, run.id)
    assert len(got) == 1 and "quantizes no layer" in got[0]


def test_the_cli_prints_one_warning_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    base = [sys.executable, "-m", "core.train", "--scheme", "mls", "--ex", "1", "--mx", "1", "--max-steps", "2",
            "--epochs", "1", "--no-progress", "--store", str(tmp_path / "runs.sqlite")]
    r = subprocess.run(base, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: scheme mls quantizes no layer: ") and "--first-last" in \
        lines[0], r.stderr
    run_id = r.stdout.split()[1]
    with RunStore(tmp_path / "runs.sqlite") as s:
        assert _warnings(s, run_id) == [lines[0][len("warning: "):]]  # one text: the CLI's and the event's
    r = subprocess.run(base + ["--first-last"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_the_live_feed_shows_the_warning(tmp_path):
    from core.sweep.remote import RemoteRun
    from explorer.live_feed import RunFeed

    store = RunStore(tmp_path / "runs.sqlite")
    run = Run(_cfg(get_scheme("mls"), epochs=1, max_steps=2), store).start()
    assert run.wait(120) == "done"
    feed = RunFeed(RemoteRun(store, run.id))
    assert feed.refresh(force=True) > 0
    msg = _warnings(store, run.id)[0]
    assert f"run {run.id}: warning: {msg}" in feed.events
    assert feed.events[-1] == f"run {run.id}: done"


def test_the_cli_and_the_live_page_start_from_the_same_first_last(tmp_path):
    """Both take the scheme's own default (MLS: first and last layer float, App. B)."""
    from core.train.__main__ import build_parser, config_from_args
    from explorer.live_state import LiveTrainingState

    page = LiveTrainingState(store=str(tmp_path / "runs.sqlite"), attach=False)
    for name in list_schemes():
        if "first_last" not in {f.name for f in dataclasses.fields(SCHEMES[name])}:
            continue
        page.scheme = name
        cli = config_from_args(build_parser().parse_args(["--scheme", name]))
        default = next(f.default for f in dataclasses.fields(SCHEMES[name]) if f.name == "first_last")
        assert page.run_config().scheme.first_last == cli.scheme.first_last == default, name
    page.scheme = "mls"
    assert page.run_config().scheme.first_last is False


@settings(max_examples=40, deadline=None)
@given(mx=st.integers(0, 4), eg=st.integers(3, 8), mg=st.integers(0, 2), rows=st.integers(1, 9),
       cols=st.integers(1, 9), seed=st.integers(0, 2**31), rounding=st.sampled_from(["nearest", "stochastic"]))
def test_ex_has_no_effect_on_2d_tensors_with_nc_grouping(mx, eg, mg, rows, cols, seed, rounding):
    """What the MLS scheme's ``ex``/``group`` docs say: with ``group=nc`` a 2-d tensor has one group per
    element; wherever the group scale reaches (|X|/St >= 2^(1-2^Eg), every element with Eg = 8)
    |X|/(St*Sg) lies in (1/2, 1], the element grid's top binade, so every Ex >= 1 gives the same values.
    (Hypothesis found the reach condition: with Eg = 3 an element 2^-8 below the tensor max differs.)"""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, cols, generator=g) * torch.exp2(torch.randint(-12, 12, (rows, cols), generator=g).float())
    reach = x.abs() >= x.abs().max() * 2.0 ** (1 - 2**eg)
    ys = [core.quantize(x, f"mls(ex={ex},mx={mx},eg={eg},mg={mg},group=nc)", rounding=rounding, seed=seed)
          for ex in (1, 2, 3, 5)]
    for y in ys[1:]:
        assert torch.equal(y[reach], ys[0][reach])
    if eg == 8:
        assert bool(reach.all())


def test_ex_matters_on_4d_tensors_so_the_note_is_about_linear_layers():
    x = torch.randn(8, 4, 5, 5, generator=torch.Generator().manual_seed(0))
    y1, y3 = (core.quantize(x, f"mls(ex={ex},mx=1,eg=8,mg=1,group=nc)", rounding="nearest") for ex in (1, 3))
    assert not torch.equal(y1, y3)


def test_the_ex_note_is_in_the_field_docs_and_the_live_tooltips():
    from explorer.knobs import scheme_knob_class

    docs = {d["name"]: d["doc"] for d in SCHEMES["mls"].describe()}
    assert "group=nc" in docs["ex"] and "Eg = 8" in docs["ex"] and "Ex >= 1" in docs["ex"]
    assert "Ex has no effect" in docs["group"]
    knobs = scheme_knob_class("mls")()
    assert knobs.param["ex"].doc == docs["ex"] and knobs.param["group"].doc == docs["group"]
    from core.formats.mls import MLSFormat

    assert "one group per element" in next(f.metadata["doc"] for f in dataclasses.fields(MLSFormat)
                                           if f.name == "group")
