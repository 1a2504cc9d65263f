"""Telemetry kernels equal their references: stats/histogram vs PyTorch, fused metrics vs core.metrics."""

from __future__ import annotations

import math

import pytest
import torch

import core
from core.train.telemetry import (
    log2_histogram,
    quant_metrics,
    stagnation_rate,
    stats_and_histogram,
    tensor_stats,
)

CASES = {
    "small normal": torch.randn(1000) * 1e-3,
    "relu conv act": torch.relu(torch.randn(8, 16, 6, 6)) * 50,
    "inf nan zero tiny": torch.tensor([0.0, 1.0, float("inf"), -2.0, float("nan"), 3e-30, -float("inf")]),
    "all zero": torch.zeros(5),
    "bf16": torch.randn(33).bfloat16(),
    "large offset": torch.randn(4096) * 0.01 + 1000.0,
    "outside bins": torch.tensor([2.0 ** -60, 2.0 ** 30, 1.0]),
}


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-300)


@pytest.mark.parametrize("name", list(CASES))
def test_one_pass_kernel_equals_torch_reference(name):
    x = CASES[name]
    stats, hist = stats_and_histogram(x, -40.0, 16.0, 112)
    ref = tensor_stats(x)
    assert set(stats) == set(ref)
    assert all(_same(stats[k], ref[k]) for k in ref), {k: (stats[k], ref[k]) for k in ref}
    assert hist == log2_histogram(x, -40.0, 16.0, 112)


def test_histogram_edges_and_counts_by_hand():
    x = torch.tensor([0.0, 1.0, 1.5, 2.0, -4.0, 2.0 ** -50, 2.0 ** 20])
    counts, zeros, nonfinite = log2_histogram(x, -2.0, 3.0, 5)  # bins [-2,-1) [-1,0) [0,1) [1,2) [2,3)
    assert (counts, zeros, nonfinite) == ([1, 0, 2, 1, 2], 1, 0)
    assert stats_and_histogram(x, -2.0, 3.0, 5)[1] == (counts, zeros, nonfinite)


FORMATS = ["mls(ex=2,mx=1,eg=8,mg=1,group=nc)", "fp8_e4m3", "fp8_e5m2", "bf16", "int(bits=8,scale=tensor)",
           "mu8(mu=255,range=2)", "mx(elem=fp8_e4m3,block=32,axis=-1)", "niti(bits=8)", "fp32"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_fused_metrics_equal_core_metrics(fmt):
    torch.manual_seed(0)
    for x in (torch.randn(64, 32) * 1e-3, torch.relu(torch.randn(16, 8, 4, 4)) * 100, torch.zeros(3, 32),
              torch.tensor([[1e-30, 1.0, 5.0] * 32])):
        y = core.quantize(x, fmt, "stochastic" if fmt.startswith("mls") else "nearest", seed=3)
        got, ref = quant_metrics(x, y, core.parse_format(fmt)), core.metrics.summary(x, y, fmt)
        assert set(got) == set(ref)
        for k in ref:
            same = (math.isnan(got[k]) and math.isnan(ref[k])) or got[k] == pytest.approx(ref[k], rel=1e-12)
            assert same, (k, x.shape)


def test_stagnation_rate_by_hand():
    before = torch.tensor([1.0, 1.0, 1.0, 1.0])
    # fp8_e4m3 spacing at 1.0 is 2^-3: updates below 2^-4 are rounded away
    after = before + torch.tensor([0.0, 0.05, 0.07, -0.2])
    assert stagnation_rate(before, after, "fp8_e4m3") == 0.5


@pytest.mark.parametrize("shape, k", [((64, 32), 500), ((8, 16, 5, 5), 1000), ((2, 3, 40, 40), 700),
                                      ((5000,), 300), ((6, 4), 100)])
def test_structured_sample_keeps_whole_groups(shape, k):
    """A stored sample keeps (dim0, dim1, rest) groups whole, so grouped formats see real groups."""
    from core.train.telemetry import structured_sample

    x = torch.arange(math.prod(shape), dtype=torch.float32).reshape(shape)
    s = structured_sample(x, k, torch.Generator().manual_seed(0))
    assert s.numel() <= k and s.dim() == (x.dim() if math.prod(shape[2:] or (1,)) <= k else 3)
    if x.numel() <= k:
        assert torch.equal(s, x)
    elif x.dim() >= 2 and math.prod(shape[2:] or (1,)) <= k:
        # each (i, j) block of the sample is a whole (i', j') block of x
        inner = math.prod(shape[2:] or (1,))
        blocks = {tuple(b.reshape(-1).tolist()) for b in x.reshape(shape[0], shape[1], -1).reshape(-1, inner)}
        for b in s.reshape(-1, math.prod(shape[2:] or (1,))):
            assert tuple(b.tolist()) in blocks
        assert s.shape[0] * s.shape[1] * math.prod(shape[2:] or (1,)) > k // 2  # uses most of the budget
    assert torch.isin(s, x).all()


GROUPED = ["mls(ex=2,mx=1,eg=8,mg=1,group=nc)", "mls(ex=2,mx=3,eg=4,mg=1,group=n)", "int(bits=8,scale=tensor)",
           "mx(elem=fp8_e4m3,block=32,axis=-1)", "mx(elem=fp4_e2m1,block=32,axis=0)", "niti(bits=8)",
           "bfp(bits=8,block=16)"]


@pytest.mark.parametrize("fmt", GROUPED)
def test_grouped_stagnation_pass_equals_the_code_step_definition(fmt):
    """The one-pass stagnation count over a scaled format's groups == ``|dw| < code_step(w) / 2``
    computed with core.code_step (padding blocks and tiny/zero weights included)."""
    torch.manual_seed(1)
    for before in (torch.randn(64, 48) * 0.1, torch.randn(16, 8, 3, 3), torch.tensor([[0.0, 1e-30, 2.0, -3.0]]),
                   torch.randn(7, 33)):
        after = before - torch.randn_like(before) * torch.exp2(torch.randint(-14, -2, before.shape).float())
        want = float(((after.double() - before.double()).abs() < core.code_step(before, fmt) / 2).double().mean())
        assert stagnation_rate(before, after, fmt) == want, (fmt, tuple(before.shape))


@pytest.mark.parametrize("per, lo", [(1, -40.0), (2, -40.0), (3, -10.0), (4, -3.0)])
def test_histogram_binning_from_exponent_bits_equals_log2(per, lo):
    """Whole binades of ``per`` bins: the exponent-bit binning == floor((log2|x| - lo) * per), also at
    every bin edge's float32 neighbours and exact powers of two."""
    bins = per * 30
    edges = torch.tensor([2.0 ** (e + t / per) for e in range(-12, 12) for t in range(per)], dtype=torch.float64)
    x32 = edges.float()
    x = torch.cat([x32, torch.nextafter(x32, torch.zeros(1)), torch.nextafter(x32, torch.full((1,), 1e9)),
                   torch.randn(5000) * 7, -x32])
    assert stats_and_histogram(x, lo, lo + 30, bins)[1] == log2_histogram(x, lo, lo + 30, bins)


def test_metric_row_dict_has_every_field():
    import dataclasses

    from core.train.context import MetricRow

    r = MetricRow("1", "w", "fp8_e4m3", "live", "are", 0.25)
    assert r.to_dict() == dataclasses.asdict(r)


MLS_GROUPINGS = ["mls(ex=2,mx=1,eg=8,mg=1,group=nc)", "mls(ex=2,mx=1,eg=8,mg=1,group=n)",
                 "mls(ex=2,mx=3,eg=4,mg=1,group=c)", "mls(ex=3,mx=2,eg=8,mg=2,group=none)"]


@pytest.mark.parametrize("fmt", MLS_GROUPINGS + ["mx(elem=fp8_e4m3,block=32,axis=-1)", "int(bits=8,scale=channel)"])
def test_row_scales_fast_path_equals_blocked_scales(fmt):
    """The telemetry's per-row scales (MLS without the inf-only-group pass when the tensor is finite) are
    ``spec.blocked_scales``' bit for bit; with +-inf in the tensor the full path runs (finite=False)."""
    from core.train.telemetry import _row_scales

    spec = core.parse_format(fmt)
    g = torch.Generator().manual_seed(4)
    relu = torch.relu(torch.randn(32, 24, generator=g))
    relu[3] = 0.0  # whole zero rows and columns: groups whose max is 0
    relu[:, 5] = 0.0
    inf = relu.clone()
    inf[3, 2] = float("inf")  # an inf-only group (its other values are zero)
    for x, finite in ((relu, True), (relu, False), (torch.zeros(4, 8), True), (inf, False),
                      (torch.randn(6, 5, 3, 3, generator=g), True)):
        x3, s2, view = spec.blocked_scales(x)
        got = _row_scales(spec, x, finite)
        if view.pad:
            assert got is None
            continue
        assert got is not None
        assert got[1].dtype == s2.numpy().dtype and got[1].tobytes() == s2.numpy().tobytes(), (fmt, finite)
        assert got[0].tobytes() == x3.contiguous().numpy().tobytes()


@pytest.mark.parametrize("fmt", MLS_GROUPINGS + ["fp8_e4m3", "mx(elem=fp8_e4m3,block=32,axis=-1)"])
def test_quant_metrics_finite_hint_and_reused_scales_change_nothing(fmt):
    """``quant_metrics(..., finite=True)`` on a finite tensor and ``stagnation_rate`` given the weight's scales
    return exactly the values computed without them."""
    from core.train.telemetry import _quant_metrics

    spec = core.parse_format(fmt)
    g = torch.Generator().manual_seed(5)
    for x in (torch.relu(torch.randn(64, 32, generator=g)) * 1e-2, torch.randn(10, 128, generator=g)):
        y = core.quantize(x, fmt)
        plain = quant_metrics(x, y, spec)
        fast, s2 = _quant_metrics(x, y, spec, True)
        assert repr(fast) == repr(plain)
        after = x - torch.randn_like(x) * 1e-4
        want = stagnation_rate(x, after, spec)
        if s2 is not None:
            assert stagnation_rate(x, after, spec, s2) == want
