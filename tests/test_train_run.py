"""The Run engine: target accuracies, telemetry == core.metrics, live control, determinism,
divergence, checkpoints."""

from __future__ import annotations

import json
import math
import threading

import numpy as np
import pytest
import torch

import core
from core.data import DataConfig, load_dataset
from core.models import ModelConfig, build_model
from core.store import RunStore
from core.train import (
    OptimConfig,
    Run,
    RunConfig,
    TelemetryConfig,
    active_runs,
    get_scheme,
    load_checkpoint,
    quantized_layers,
)
from core.train.qlayers import tensor_seed

from datafiles import T10K  # noqa: E402
MLS21 = "mls(ex=2,mx=1,eg=8,mg=1,group=nc)"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> RunStore:
    return RunStore(tmp_path_factory.mktemp("store") / "runs.sqlite")


def digits_cfg(**kw) -> RunConfig:
    base = dict(model=ModelConfig(name="mlp", hidden=(128, 128)), epochs=15, batch_size=64, seed=0,
                optim=OptimConfig(lr=0.05, schedule="cosine"), telemetry=TelemetryConfig(every=0),
                checkpoint=False, threads=1)
    base.update(kw)
    return RunConfig(**base)


def run_to_end(cfg: RunConfig, store: RunStore) -> Run:
    run = Run(cfg, store).start()
    assert run.wait(timeout=300) == "done", run.error
    return run


# ---------------------------------------------------------------- Done when: accuracies
@pytest.fixture(scope="module")
def fp32_digits(store) -> Run:
    return run_to_end(digits_cfg(scheme=get_scheme("fp32")), store)


def test_fp32_mlp_on_digits_reaches_95_percent(fp32_digits, store):
    assert fp32_digits.result["test_acc"] >= 0.95
    row = store.get_run(fp32_digits.id)
    assert row["status"] == "done" and row["final_test_acc"] == pytest.approx(fp32_digits.result["test_acc"])
    ep = store.epochs(fp32_digits.id)
    assert list(ep["epoch"]) == list(range(15)) and ep["test_acc"].iloc[-1] == row["final_test_acc"]
    sc = store.scalars(fp32_digits.id)
    assert len(sc) == 15 * math.ceil(1438 / 64) and (sc["step_time"] > 0).all()


def test_mls_2_1_nc_within_1_5_points_of_fp32(fp32_digits, store):
    scheme = get_scheme("mls", ex=2, mx=1, eg=8, mg=1, group="nc")  # W/A/E; first/last float (App. B)
    mls = run_to_end(digits_cfg(scheme=scheme), store)
    assert abs(mls.result["test_acc"] - fp32_digits.result["test_acc"]) <= 0.015
    # the middle layer really was quantized, the first and last were not
    q = [layer.quant for _, layer in quantized_layers(mls.model)]
    assert q[0] is None and q[2] is None and q[1].w.fmt == MLS21 and q[1].e.fmt == MLS21


def test_mls_all_layers_still_trains(store):
    run = run_to_end(digits_cfg(scheme=get_scheme("mls", first_last=True), epochs=8), store)
    assert run.result["test_acc"] >= 0.93


@pytest.mark.skipif(not (T10K / "t10k-images-idx3-ubyte.gz").is_file(), reason="MNIST t10k files missing")
@pytest.mark.parametrize("scheme", [get_scheme("fp32"), get_scheme("mls", ex=2, mx=4)], ids=["fp32", "mls24"])
def test_lenet5_trains_on_mnist_t10k_split(scheme, store):
    cfg = RunConfig(data=DataConfig(name="mnist-t10k", root=str(T10K), train_subset=4000, test_subset=1000),
                    model=ModelConfig(name="lenet5"), scheme=scheme, epochs=2, batch_size=32,
                    optim=OptimConfig(lr=0.02), telemetry=TelemetryConfig(every=0), checkpoint=False, threads=1)
    run = run_to_end(cfg, store)
    assert run.result["test_acc"] >= 0.9, run.result  # chance is 0.1


# ---------------------------------------------------------------- Done when: telemetry == core.metrics
def test_telemetry_equals_direct_core_metrics(store):
    seed, shadow = 5, "fp8_e4m3"
    scheme = get_scheme("mls", first_last=True)  # stochastic W/A/E in every layer
    cfg = digits_cfg(model=ModelConfig(name="mlp", hidden=(32,)), scheme=scheme, seed=seed, max_steps=1, epochs=1,
                     telemetry=TelemetryConfig(every=1, shadow=(shadow,), sample_every=1, sample_size=100),
                     checkpoint=True, optim=OptimConfig(lr=0.1))
    run = run_to_end(cfg, store)
    m = store.metrics(run.id, since_step=0)
    m = m[m.step == 0]

    def val(layer, tensor, role, name, fmt=None):
        sel = m[(m.layer == layer) & (m.tensor == tensor) & (m.role == role) & (m.name == name)]
        if fmt is not None:
            sel = sel[sel.fmt == fmt]
        assert len(sel) == 1, (layer, tensor, role, name)
        v = sel.value.iloc[0]
        return math.nan if v is None else float(v)

    # rebuild the initial weights and the first batch independently of the engine
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        ref = build_model(cfg.model, (1, 8, 8), 10)
    w0 = ref[1].weight.detach()
    data = load_dataset(cfg.data)
    idx = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(seed))[:cfg.batch_size]
    a0 = data.train.batch(idx)[0].flatten(1)
    for tensor, x in (("w", w0), ("a", a0)):
        xq = core.quantize(x, MLS21, "stochastic", seed=tensor_seed(seed, 0, 0, tensor))
        for name, ref_v in core.metrics.summary(x, xq, MLS21).items():
            assert val("1", tensor, "live", name, MLS21) == pytest.approx(ref_v, rel=1e-12, abs=1e-15), (tensor, name)
        xs = core.quantize(x, shadow)
        for name, ref_v in core.metrics.summary(x, xs, shadow).items():
            assert val("1", tensor, "shadow", name, str(core.parse_format(shadow))) == pytest.approx(
                ref_v, rel=1e-12, abs=1e-15)
        assert val("1", tensor, "stat", "amax") == pytest.approx(float(x.abs().max()))
        assert val("1", tensor, "stat", "std") == pytest.approx(float(x.double().std()))
        assert val("1", tensor, "stat", "min") == pytest.approx(float(x.min()))

    # histogram of log2|w| on the fixed bins equals NumPy's
    h = store.histograms(run.id, layer="1", tensor="w")
    h = h[h.step == 0].iloc[0]
    t = cfg.telemetry
    lw = np.log2(np.abs(w0.numpy().astype(np.float64)))
    ref_counts, _ = np.histogram(np.clip(lw, t.hist_lo, np.nextafter(t.hist_hi, -np.inf)), bins=t.hist_bins,
                                 range=(t.hist_lo, t.hist_hi))
    assert h["counts"].tolist() == ref_counts.tolist() and h["zeros"] == 0

    # stagnation: weights after the one step come from the final checkpoint
    ck = load_checkpoint(store.checkpoints(run.id).path.iloc[-1])
    w1 = ck["model"]["1.weight"]
    step_size = core.code_step(w0, MLS21)
    ref_stag = float(((w1.double() - w0.double()).abs() < step_size / 2).double().mean())
    assert val("1", "w", "live", "stagnation", MLS21) == pytest.approx(ref_stag)

    # E and G of the last layer: every telemetry value equals core.metrics of the tensors the layer used
    e_rows = m[(m.layer == "3") & (m.tensor == "e") & (m.role == "live")]
    assert set(e_rows.name) == {"are", "rel_error", "sqnr_db", "saturation", "overflow", "underflow"}
    assert set(m[m.role == "stat"].tensor) == {"w", "a", "e", "g"}

    # a stored tensor sample is a subset of the real weights
    sample = store.load_sample(run.id, "1", "w", step=0)
    shape = json.loads(store.samples(run.id, layer="1", tensor="w")["shape"].iloc[0])
    assert sample.size <= 100 and len(shape) == 2 and math.prod(shape) == sample.size
    assert np.isin(sample, w0.numpy()).all()
    # whole rows of a random subset of output and input channels (the MLS grouping survives)
    rows = sample.reshape(shape)
    assert all(np.isin(r, w0.numpy()).all() for r in rows)


def test_telemetry_cadence_and_layers_table(store):
    run = run_to_end(digits_cfg(scheme=get_scheme("mls"), epochs=1, telemetry=TelemetryConfig(every=5)), store)
    m = store.metrics(run.id, name="are", role="live")
    assert sorted(set(m.step)) == list(range(0, 23, 5))
    layers = store.layers(run.id)
    assert list(layers.name) == ["1", "3", "5"] and list(layers.kind) == ["Linear"] * 3
    assert layers["shape"].iloc[0] == (128, 64)


# ---------------------------------------------------------------- live control
def test_pause_update_resume_stop_and_subscribe(store):
    cfg = digits_cfg(scheme=get_scheme("mls"), epochs=50, optim=OptimConfig(lr=0.05),
                     telemetry=TelemetryConfig(every=10))
    run = Run(cfg, store)
    seen: dict[str, list] = {"step": [], "telemetry": [], "epoch": [], "event": [], "status": []}
    paused = threading.Event()

    def cb(p):
        seen[p["type"]].append(p)
        if p["type"] == "step" and p["step"] == 5:
            run.update({"optim.lr": 0.01, "scheme.mx": 3})
        if p["type"] == "step" and p["step"] == 30:
            run.pause()
        if p["type"] == "status" and p["status"] == "paused":
            paused.set()

    unsubscribe = run.subscribe(cb)
    run.start()
    assert run.id in active_runs()
    assert paused.wait(120)
    assert run.status == "paused"
    step_at_pause = run.step
    threading.Event().wait(0.3)
    assert run.step == step_at_pause  # nothing moves while paused
    run.resume()
    for _ in range(6000):
        if run.step >= step_at_pause + 5:
            break
        threading.Event().wait(0.01)
    run.stop()
    assert run.wait(60) == "stopped"
    unsubscribe()
    assert run.id not in active_runs()

    sc = store.scalars(run.id).set_index("step")
    assert sc.loc[5, "lr"] == pytest.approx(0.05) and sc.loc[6, "lr"] == pytest.approx(0.01)  # next step
    ev = store.events(run.id)
    upd = ev[ev.kind == "update"].iloc[0]
    assert upd.step == 6 and upd.payload["changes"] == {"optim.lr": 0.01, "scheme.mx": 3}
    assert run.config.scheme.mx == 3
    live = store.metrics(run.id, name="are", role="live", layer="3", tensor="w")
    fmt_by_step = dict(zip(live.step, live.fmt))
    assert fmt_by_step[0] == MLS21 and fmt_by_step[10] == "mls(ex=2,mx=3,eg=8,mg=1,group=nc)"
    assert list(ev.kind[:1]) == ["start"] and {"pause", "resume", "stopped"} <= set(ev.kind)
    assert store.get_run(run.id)["status"] == "stopped"
    assert [p["step"] for p in seen["step"]] == list(range(len(seen["step"])))
    assert seen["telemetry"][0]["rows"] and seen["telemetry"][0]["histograms"]
    assert seen["status"][-1]["status"] == "stopped" and seen["epoch"]
    with pytest.raises(RuntimeError, match="has ended"):
        run.update(lr=0.1)


def test_bad_live_update_changes_nothing(store):
    run = Run(digits_cfg(epochs=1), store)
    with pytest.raises(ValueError):
        run.update({"scheme.mx": 1})  # fp32 has no mx
    with pytest.raises(ValueError, match="cannot change while a run is going"):
        run.update({"data.name": "mnist"})
    with pytest.raises(ValueError):
        run.update({"telemetry.shadow": "mls(ex=2"})
    assert run.config == digits_cfg(epochs=1)


def test_divergence_ends_run_with_status_diverged(store):
    cfg = digits_cfg(optim=OptimConfig(lr=50.0, momentum=0.9), epochs=3, diverge_loss=20.0)
    run = Run(cfg, store).start()
    assert run.wait(120) == "diverged"
    assert store.get_run(run.id)["status"] == "diverged"
    ev = store.events(run.id)
    assert "diverged" in set(ev.kind)
    loss = ev[ev.kind == "diverged"].payload.iloc[0]["loss"]
    assert loss == "nan" or loss == "inf" or float(loss) > 20.0


def test_same_seed_is_deterministic_including_stochastic_rounding(store):
    cfg = digits_cfg(scheme=get_scheme("mls", first_last=True), epochs=1, max_steps=12)
    a, b = run_to_end(cfg, store), run_to_end(cfg, store)
    la, lb = store.scalars(a.id)["loss"].tolist(), store.scalars(b.id)["loss"].tolist()
    assert la == lb and len(la) == 12
    c = run_to_end(cfg.with_changes({"seed": 1}), store)
    assert store.scalars(c.id)["loss"].tolist() != la


def test_checkpoint_resume_matches_uninterrupted_run(store):
    cfg = digits_cfg(scheme=get_scheme("mls", first_last=True), epochs=4, checkpoint=True, checkpoint_every=2,
                     optim=OptimConfig(lr=0.05, schedule="cosine"))
    full = run_to_end(cfg, store)
    cks = store.checkpoints(full.id)
    assert len(cks) == 2  # after epoch 2 and the final one
    ck = load_checkpoint(cks.path.iloc[0])
    assert ck["next_epoch"] == 2 and ck["step"] == 2 * 23 and isinstance(ck["config"], dict)
    assert ck["quant"][0]["quant"]["w"]["fmt"] == MLS21
    resumed = Run.from_checkpoint(cks.path.iloc[0], store).start()
    assert resumed.wait(120) == "done"
    assert resumed.result["test_acc"] == full.result["test_acc"]
    full_loss = store.scalars(full.id).set_index("step")["loss"]
    res_loss = store.scalars(resumed.id).set_index("step")["loss"]
    assert res_loss.index.min() == 46 and (res_loss == full_loss.loc[res_loss.index]).all()


def test_checkpoint_loader_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    p = tmp_path / "evil.pt"
    torch.save({"model": Evil()}, p)
    with pytest.raises(ValueError, match="not a loadable checkpoint"):
        load_checkpoint(p)
    with pytest.raises(ValueError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_amp_and_custom_schemes_run(store):
    amp = run_to_end(digits_cfg(scheme=get_scheme("amp"), epochs=3, telemetry=TelemetryConfig(every=10)), store)
    assert amp.result["test_acc"] > 0.85
    custom = get_scheme("custom", w="fp8_e4m3", a="fp8_e4m3", e="fp8_e5m2", g="bf16", update="bf16",
                        e_rounding="stochastic")
    run = run_to_end(digits_cfg(scheme=custom, epochs=3, telemetry=TelemetryConfig(every=10)), store)
    assert run.result["test_acc"] > 0.85
    g = store.metrics(run.id, name="are", role="live", tensor="g")
    assert set(g.fmt) == {"bf16"} and len(g) > 0


def test_error_in_worker_is_recorded(store, tmp_path):
    cfg = digits_cfg(data=DataConfig(name="mnist", root=str(tmp_path)))
    run = Run(cfg, store).start()
    assert run.wait(60) == "error"
    assert "not found" in str(run.error)
    row = store.get_run(run.id)
    assert row["status"] == "error" and "DatasetError" in row["error"]
    with pytest.raises(RuntimeError, match="already started"):
        run.start()


def test_unknown_names_fail_at_construction(store):
    with pytest.raises(ValueError, match="unknown dataset"):
        Run(digits_cfg(data=DataConfig(name="imagenet")), store)
    with pytest.raises(ValueError, match="unknown model"):
        Run(digits_cfg(model=ModelConfig(name="alexnet")), store)


@pytest.mark.parametrize("scheme", ["dfq", "logbtq", "cpt", "sbm", "pfq", "niti"])
def test_every_seed_scheme_resumes_bit_identically(scheme, tmp_path):
    """A run resumed from its mid-run checkpoint logs the same losses as the uninterrupted run: the
    schemes' own random state is part of the checkpoint (DFQ's Gumbel generators, LogBTQ's chunked
    accumulator step counter)."""
    st = RunStore(tmp_path / "r.sqlite")
    kw = {"k": 3} if scheme == "logbtq" else {}
    cfg = digits_cfg(scheme=get_scheme(scheme, **kw), epochs=4, checkpoint=True, checkpoint_every=2)
    full = run_to_end(cfg, st)
    resumed = Run.from_checkpoint(st.checkpoints(full.id).path.iloc[0], st).start()
    assert resumed.wait(300) == "done", resumed.error
    full_loss = st.scalars(full.id).set_index("step")["loss"]
    res_loss = st.scalars(resumed.id).set_index("step")["loss"]
    assert res_loss.index.min() == 46 and (res_loss == full_loss.loc[res_loss.index]).all()
    assert resumed.result["test_acc"] == full.result["test_acc"]
