"""core.kernels.metrics (the one compiled ARE/SQNR/range/log2-histogram code) vs core.metrics (the plain
reference)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import core
from core.kernels.metrics import (error_metrics, error_metrics_from_sums, error_sums, log2_bins, range_counts,
                                  range_fractions, range_fractions_rows, range_fractions_sat, stats_hist)
from core.train.telemetry import log2_histogram


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b or math.isclose(a, b, rel_tol=1e-12)


PAIRS = {
    "normal": (torch.randn(3000, generator=torch.Generator().manual_seed(0)), "fp8_e4m3"),
    "relu with zeros": (torch.relu(torch.randn(8, 16, 5, 5, generator=torch.Generator().manual_seed(1))), "fp8_e5m2"),
    "non-finite": (torch.tensor([0.0, 1.0, float("inf"), -2.0, float("nan"), 3e-30, -float("inf"), 1e6]), "fp8_e4m3"),
    "all zero": (torch.zeros(40), "fp8_e4m3"),  # x = y = 0: rel_error 0/0 = NaN, SQNR inf
    "empty": (torch.zeros(0), "bf16"),
    "scaled": (torch.randn(16, 64, generator=torch.Generator().manual_seed(2)) * 1e-2, "int(bits=4,scale=channel)"),
}


@pytest.mark.parametrize("name", list(PAIRS))
@pytest.mark.parametrize("chunked", [False, True])
def test_kernel_metrics_equal_core_metrics(name, chunked):
    x, fmt = PAIRS[name]
    y = core.quantize(x, fmt)
    ref = core.metrics.summary(x, y, fmt)
    xn, yn = x.numpy(), y.numpy()
    got = error_metrics_from_sums(error_sums(xn, yn, chunked=chunked)[0])
    big, small = core.parse_format(fmt).range_for(x)
    got["saturation"], got["overflow"], got["underflow"] = range_fractions_sat(
        xn, big.numpy(), small.numpy(), core.metrics.headroom(fmt))
    assert got["saturation"] == range_fractions(xn, big.numpy(), small.numpy())[0] or x.numel() == 0
    assert set(got) == set(ref)
    assert all(_same(got[k], ref[k]) for k in ref), {k: (got[k], ref[k]) for k in ref}
    if not chunked:
        assert error_metrics(xn, yn) == pytest.approx(
            {k: got[k] for k in ("are", "rel_error", "sqnr_db")}, nan_ok=True)


def test_zero_signal_edge_cases_follow_core_metrics():
    """x = 0 everywhere: rel_error inf when y != 0, NaN when exact (core.metrics.rel_error's 0/0)."""
    x, y = torch.zeros(4), torch.tensor([0.0, 1.0, 0.0, 0.0])
    for yy in (y, x):
        ref = core.metrics.summary(x, yy, "fp32")
        got = error_metrics(x.numpy(), yy.numpy())
        assert all(_same(got[k], ref[k]) for k in got), (got, ref)


def test_format_lab_all_zero_tensor_agrees_with_core_metrics():
    """The Format Lab once said rel. error 0 for an all-zero tensor; core.metrics says NaN (0/0)."""
    from explorer.analysis import DataSummary, analyze

    z = torch.zeros(2**12)
    res = analyze(DataSummary.from_tensor(z, "zeros"), "fp8_e4m3")
    ref = core.metrics.summary(z, core.quantize(z, "fp8_e4m3"), "fp8_e4m3")
    assert all(_same(res.metrics[k], ref[k]) for k in ref), (res.metrics, ref)
    assert math.isnan(res.metrics["rel_error"]) and res.metrics["sqnr_db"] == math.inf


def test_range_limits_scalar_per_element_and_per_row_agree():
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(6, 500, generator=g) * torch.logspace(-3, 3, 6).reshape(6, 1)).numpy()
    x[0, :3] = [np.nan, np.inf, 0.0]
    scale = np.array([1e-3, 0.0, 1.0, 2.0, 1e2, 1e3])
    s1 = np.where(scale == 0, 1.0, scale)
    per_el_big = np.repeat(s1 * 448.0, 500)
    per_el_small = np.repeat(s1 * 2.0 ** -9, 500)
    want = range_fractions(x, per_el_big, per_el_small)
    assert range_fractions_rows(x, scale, 448.0, 2.0 ** -9) == want
    a = np.abs(x[np.isfinite(x)])
    assert range_counts(x, 1.0, 0.5) == (a.size, int((a > 1.0).sum()), int(((a > 0) & (a < 0.5)).sum()))
    with pytest.raises(ValueError, match="equal rows"):
        range_counts(x, np.ones(7), np.ones(7))


@pytest.mark.parametrize("lo, hi, bins", [(-40.0, 16.0, 112), (-3.0, 5.0, 32), (-2.5, 3.0, 11)])
def test_one_log2_binning(lo, hi, bins):
    """Per-element bins (the Format Lab), the one-pass histogram (telemetry) and the PyTorch reference
    are one binning."""
    g = torch.Generator().manual_seed(4)
    x = torch.cat([torch.randn(20000, generator=g) * 5, torch.tensor([0.0, float("nan"), 2.0 ** -60, 2.0 ** 30])])
    idx, counts = log2_bins(x.numpy(), lo, hi, bins)
    ref, zeros, nonfinite = log2_histogram(x, lo, hi, bins)
    assert counts.tolist() == ref == stats_hist(x.numpy(), lo, hi, bins).counts.tolist()
    assert np.bincount(idx[idx >= 0], minlength=bins).tolist() == ref
    assert int((idx < 0).sum()) == zeros + nonfinite
    with pytest.raises(ValueError):
        log2_bins(x.numpy(), 1.0, 1.0, 4)


@pytest.mark.parametrize("lo, hi, bins", [(-40.0, 16.0, 112), (-3.0, 5.0, 64), (-2.0, 2.0, 4)])
def test_log2_binning_at_the_bin_edges(lo, hi, bins):
    """Values on, just below and just above every bin edge 2^(lo + t/per) and float64 subnormals. The
    kernels' integer fast path is exact (the plain-Python oracle compares ``|x|^per`` with ``2^(per lo + j)``
    in exact rationals); within ~1e-12 of an irrational edge 2^(t/per) they bin as ``math.log2`` does."""
    import math
    from fractions import Fraction

    per = round(bins / (hi - lo))
    edges = np.array([2.0 ** (lo + t / per) for t in range(bins + 1)])
    x64 = np.concatenate([edges, np.nextafter(edges, 0), np.nextafter(edges, np.inf), edges * (1 + 1e-13),
                          edges * (1 - 1e-13), -edges, [5e-324, 1e-310, 2.0 ** -1022, 3.0, 0.7]])

    def exact_bin(v):
        p = Fraction(abs(v)) ** per
        j = math.floor(math.log2(abs(v)) * per - lo * per) + 2  # an upper guess, then step down
        while Fraction(2) ** int(per * lo + j) > p:
            j -= 1
        return min(max(j, 0), bins - 1)

    def near_irrational_edge(v):
        t = (math.log2(abs(v)) - lo) * per
        return abs(t - round(t)) < 1e-9 and round(t) % per != 0

    for x in (x64, x64.astype(np.float32)):
        want = [0] * bins
        for v in x.tolist():
            if v != 0 and math.isfinite(v):
                k = (min(max(math.floor((math.log2(abs(v)) - lo) * per), 0), bins - 1) if near_irrational_edge(v)
                     else exact_bin(v))
                want[k] += 1
        assert stats_hist(x, lo, hi, bins).counts.tolist() == want
        assert log2_bins(x, lo, hi, bins)[1].tolist() == want


def test_binned_error_sums_match_direct_computation():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(5000, generator=g)
    y = core.quantize(x, "fp8_e4m3")
    idx, _ = log2_bins(x.numpy(), -10.0, 4.0, 56)
    sums, bsum, bcnt = error_sums(x.numpy(), y.numpy(), idx, 56, chunked=True)
    r = ((y.double() - x.double()).abs() / x.double().abs()).numpy()
    for b in np.unique(idx[idx >= 0]):
        assert bcnt[b] == (idx == b).sum() and math.isclose(bsum[b], r[idx == b].sum(), rel_tol=1e-12)
    assert sums[4] == bcnt.sum() and math.isclose(sums[3], bsum.sum(), rel_tol=1e-12)


@pytest.mark.parametrize("n, rows", [(3000, 1), (3000, 3000), (3000, 6), (70_000, 70_000), (70_000, 7)])
@pytest.mark.parametrize("headroom", [1.0, 4.0 / 3.0])
def test_one_pass_row_limits_equal_the_limit_arrays(n, rows, headroom):
    """``range_fractions_rows_sat``'s one pass == ``range_fractions_sat`` on the per-element limit arrays it
    used to build (zero scales count as 1; NaN/inf/zero/tiny elements; serial and parallel sizes)."""
    from core.kernels.metrics import range_counts_rows_sat, range_fractions_rows_sat

    rng = np.random.default_rng(n + rows)
    x = (rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 3, n)).astype(np.float32)
    x[::17] = 0.0
    x[5], x[9], x[11] = np.nan, np.inf, -np.inf
    scale = np.abs(rng.standard_normal(n // rows)) * 2.0 ** rng.integers(-6, 6, n // rows)
    scale[:: max(1, scale.size // 5)] = 0.0
    s = np.where(scale == 0.0, 1.0, scale)
    big, small = np.repeat(s * 0.75, rows), np.repeat(s * 0.125, rows)
    want = range_fractions_sat(x, big, small, headroom)
    assert range_fractions_rows_sat(x, scale, 0.75, 0.125, headroom) == want
    fin = np.abs(x[np.isfinite(x)].astype(np.float64))
    assert range_counts_rows_sat(x, scale, 0.75, 0.125, headroom)[0] == fin.size
    assert math.isnan(range_fractions_rows_sat(np.full(4, np.nan, np.float32), np.ones(2), 1.0, 0.5)[0])
    with pytest.raises(ValueError, match="equal rows"):
        range_counts_rows_sat(x, np.ones(11), 1.0, 0.5)
