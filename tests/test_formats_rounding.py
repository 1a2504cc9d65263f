"""Rounding modes up / down / nearest_away / odd / stochastic_rbits<K> and the rounding defects fixed with
them: Numba kernel == float64 reference == the plain-Python oracle (tests/naive.py), bit for bit, plus
property tests (docs/conformance.md, "Rounding modes")."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import core
import naive

MODES = ["nearest", "nearest_away", "truncate", "up", "down", "odd", "stochastic", "stochastic_rbits1",
         "stochastic_rbits4", "stochastic_rbits8"]
DIRECTED = ["nearest", "nearest_away", "truncate", "up", "down", "odd"]


def _float_mags(spec: str):
    f = core.parse_format(spec)
    top = int(core.encode(torch.tensor([f.max], dtype=torch.float64), f).codes.to(torch.int64)[0])
    return naive.float_magnitudes(f.e, f.m, f.bias, top)


#: spec -> (oracle magnitudes, what an overflow becomes for +1 / -1, finite-only signed)
CASES = {
    "fp8_e4m3": _float_mags("fp8_e4m3"),  # saturating OCP E4M3
    "float8_e4m3fn": _float_mags("float8_e4m3fn"),  # overflow -> NaN
    "float8_e5m2": _float_mags("float8_e5m2"),  # overflow -> inf
    "fp4_e2m1": _float_mags("fp4_e2m1"),
    "float(e=5,m=0)": _float_mags("float(e=5,m=0)"),
    "float(e=5,m=0,bias=14)": _float_mags("float(e=5,m=0,bias=14)"),
    "binary8p1": naive.p3109_magnitudes(8, 1),
    "binary8p3": naive.p3109_magnitudes(8, 3),
    "fp8_e4m3fnuz": naive.p3109_magnitudes(8, 4, True, "finite"),
}


def _overflow(fmt, sign: float) -> float:
    return sign * float(fmt.overflow_value) if not math.isnan(fmt.overflow_value) else math.nan


@pytest.mark.parametrize("rounding", MODES)
@pytest.mark.parametrize("spec", list(CASES))
def test_modes_match_the_oracle_on_both_backends(spec, rounding):
    """Every value, midpoint, quarter point and their float64 neighbours, both signs, and beyond max."""
    fmt = core.parse_format(spec)
    mags = CASES[spec]
    pts = naive.probe_points_signed(mags, limit=200)
    x = torch.tensor(pts, dtype=torch.float64)
    seed = 11
    y = core.quantize(x, fmt, rounding, seed=seed, backend="numba").numpy()
    yr = core.quantize(x, fmt, rounding, seed=seed, backend="reference").numpy()
    np.testing.assert_array_equal(np.nan_to_num(y, nan=7.0).view(np.uint64), np.nan_to_num(yr, nan=7.0).view(np.uint64))
    words = naive.random_words_reference(seed, len(pts)) if "stochastic" in rounding else [0] * len(pts)
    for xv, yv, w in zip(pts, y, words):
        kind, v = naive.round_mode_oracle(Fraction(xv), mags, rounding, w)
        want = _overflow(fmt, float(v)) if kind == "overflow" else math.copysign(float(v), xv)
        if fmt.family == "p3109" and want == 0:
            want = 0.0  # no negative zero
        if math.isnan(want):
            assert math.isnan(yv), (xv, yv)
        else:
            assert yv == want and math.copysign(1, yv) == math.copysign(1, want), (xv, yv, want)


@pytest.mark.parametrize("rounding", MODES)
def test_float32_fast_paths_equal_the_generic_kernel(rounding):
    """float32 inputs take quantize_f32_flat (nearest/stochastic/truncate) or the generic kernel; both
    equal the reference, for saturating and IEEE formats."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(70_001, generator=g) * torch.logspace(-12, 6, 70_001)
    x[:5] = torch.tensor([math.inf, -math.inf, math.nan, 0.0, -0.0])
    x[5:9] = torch.tensor([65536.0, -65536.0, 65520.0, 1e30])
    x[9:15] = torch.tensor([3.0, 6.0, 12.0, -24.0, 1.5, 0.375])  # m = 0 ties (the code's parity)
    for spec in ["fp8_e4m3", "float8_e5m2", "fp16", "bf16", "binary8p3", "fp8_e5m2fnuz", "e8m0", "binary8p1",
                 "float(e=5,m=0)", "float(e=5,m=0,bias=14)", "float(e=4,m=0,subnormals=false,bias=6)"]:
        a = core.quantize(x, spec, rounding, seed=5)
        b = core.quantize(x, spec, rounding, seed=5, backend="reference")
        assert torch.equal(a.nan_to_num(7.0).view(torch.int32), b.nan_to_num(7.0).view(torch.int32)), spec
        q = core.parse_format(spec).quantizer(rounding)(x, 5)
        assert torch.equal(q.nan_to_num(7.0), a.nan_to_num(7.0)), spec


@pytest.mark.parametrize("rounding", MODES)
def test_e8m0_modes_match_the_oracle(rounding):
    """E8M0 (no zero, no sign): positive probes inside 2^-127 .. 2^128 against the oracle."""
    mags = naive.e8m0_magnitudes()
    pts = [p for p in naive.probe_points_signed(mags, limit=300) if p >= 2.0**-127]
    x = torch.tensor(pts, dtype=torch.float64)
    y = core.quantize(x, "e8m0", rounding, seed=4).numpy()
    yr = core.quantize(x, "e8m0", rounding, seed=4, backend="reference").numpy()
    np.testing.assert_array_equal(np.nan_to_num(y, nan=7.0), np.nan_to_num(yr, nan=7.0))
    words = naive.random_words_reference(4, len(pts))
    for xv, yv, w in zip(pts, y, words):
        kind, v = naive.round_mode_oracle(Fraction(xv), mags, rounding, w)
        if kind == "overflow":
            assert math.isnan(yv), xv
        else:
            assert yv == float(v), (xv, yv, float(v))


# ------------------------------------------------------------------ defects (regressions)
@pytest.mark.parametrize("backend", ["numba", "reference"])
def test_m0_ties_go_to_the_even_code_on_every_backend(backend):
    """Defect: float(e=5,m=0) gave [2, 8, 8, 32] on Numba and [4, 8, 16, 32] on the reference. Ties go to
    the even code: 2 = code 16, 4 = 17, 8 = 18, 16 = 19, 32 = 20 (bias 15)."""
    x = torch.tensor([3.0, 6.0, 12.0, 24.0, -3.0])
    assert core.quantize(x, "float(e=5,m=0)", backend=backend).tolist() == [2.0, 8.0, 8.0, 32.0, -2.0]
    # bias 14 shifts the parity: 4 = code 16, 16 = code 18
    assert core.quantize(x, "float(e=5,m=0,bias=14)", backend=backend).tolist() == [4.0, 4.0, 16.0, 16.0, -4.0]
    assert core.quantize(x.double(), "float(e=5,m=0)", backend=backend).tolist() == [2.0, 8.0, 8.0, 32.0, -2.0]


def test_fp64_codes_are_the_float64_bit_patterns():
    """Defect: core.encode(x, "fp64") gave wrong codes for 0 and for |x| below about 2^-971."""
    x = np.array([0.0, -0.0, 5e-324, -5e-324, 2.0**-1022, 2.0**-1000, 2.0**-971, 2.0**-972, 1e-300,
                  1.0, -2.5, 1.7976931348623157e308, np.inf, -np.inf], dtype=np.float64)
    rng = np.random.default_rng(0)
    x = np.concatenate([x, rng.standard_normal(500) * 2.0 ** rng.integers(-1074, 1000, 500)])
    q = core.encode(torch.from_numpy(x), "fp64")
    np.testing.assert_array_equal(q.codes.numpy(), x.view(np.int64))
    assert torch.equal(core.decode(q), torch.from_numpy(x))


@pytest.mark.parametrize("backend", ["numba", "reference"])
def test_truncate_never_overflows(backend):
    """Defect: rounding="truncate" turned finite values into inf/NaN on non-saturating formats
    (fp16: 65536 -> inf). Toward zero stays finite (IEEE 754-2019 section 7.4): 65536 -> 65504."""
    x = torch.tensor([65536.0, -65536.0, 1e30, -1e30, math.inf, -math.inf])
    y = core.quantize(x, "fp16", "truncate", backend=backend)
    assert y.tolist() == [65504.0, -65504.0, 65504.0, -65504.0, math.inf, -math.inf]
    for spec in ["float8_e4m3fn", "float8_e5m2", "fp8_e4m3fnuz", "binary8p3", "float8_e4m3"]:
        fmt = core.parse_format(spec)
        y = core.quantize(x[:4], fmt, "truncate", backend=backend)
        assert y.tolist() == [fmt.max, -fmt.max, fmt.max, -fmt.max], spec
        # the directed modes: toward the finite side saturates, away overflows
        up = core.quantize(x[:4], fmt, "up", backend=backend).tolist()
        assert up[1] == -fmt.max and up[3] == -fmt.max and not math.isfinite(up[0]), spec
        down = core.quantize(x[:4], fmt, "down", backend=backend).tolist()
        assert down[0] == fmt.max and not math.isfinite(down[1]), spec


# ------------------------------------------------------------------ properties
SPECS_PROP = ["fp8_e4m3", "float8_e5m2", "fp16", "binary8p3", "binary8p5", "fp8_e4m3fnuz", "fp4_e2m1",
              "float(e=5,m=0)", "p3109(k=8,p=4,signed=false)"]
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=32)


@pytest.mark.parametrize("spec", SPECS_PROP)
@settings(max_examples=60, deadline=None)
@given(xs=st.lists(finite, min_size=1, max_size=40), seed=st.integers(0, 2**40))
def test_directed_modes_bracket_x_and_odd_is_odd(spec, xs, seed):
    fmt = core.parse_format(spec)
    x = torch.tensor(xs, dtype=torch.float32)
    if fmt.family == "p3109" and not fmt.signed:
        x = x.abs()  # negative values are out of an unsigned format's range (NaN)
    lo = core.quantize(x, fmt, "down").double()
    hi = core.quantize(x, fmt, "up").double()
    xd = x.double()
    fin = lo.isfinite() & hi.isfinite() & (xd.abs() <= fmt.max)  # beyond max: saturation / overflow
    assert torch.all(lo[fin] <= xd[fin]) and torch.all(xd[fin] <= hi[fin])
    tz = core.quantize(x, fmt, "truncate").double()
    assert torch.all(tz.abs() <= xd.abs()) and tz.isfinite().all()
    for mode in ["nearest", "nearest_away", "odd", "stochastic", "stochastic_rbits3"]:
        y = core.quantize(x, fmt, mode, seed=seed).double()
        ok = fin & y.isfinite()
        assert torch.all((y[ok] == lo[ok]) | (y[ok] == hi[ok])), mode
    # nearest and nearest_away differ only on exact ties, and then by less than one step each way
    ne, na = core.quantize(x, fmt, "nearest").double(), core.quantize(x, fmt, "nearest_away").double()
    diff = (ne != na) & ne.isfinite() & na.isfinite()
    assert torch.all((xd[diff] - ne[diff]).abs() == (xd[diff] - na[diff]).abs())
    assert torch.all(na[diff].abs() > ne[diff].abs())
    # round to odd: an inexact result has an odd code (sign bit aside)
    od = core.quantize(x, fmt, "odd")
    inexact = (od.double() != xd) & od.isfinite() & (xd.abs() <= fmt.max)  # beyond max: saturated
    if inexact.any():
        codes = core.encode(od[inexact], fmt).codes.to(torch.int64)
        mag = codes & ((1 << (fmt.bits - 1)) - 1) if (fmt.family != "p3109" or fmt.signed) else codes
        assert torch.all(mag % 2 == 1)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_stochastic_rbits_probability_is_floor_frac_2k_over_2k(k):
    """With K random bits the probability of rounding up is floor(frac 2^K) / 2^K (gfloat's
    StochasticFastest): frac 0.3 with K = 1 never rounds up, with K = 2 a quarter of the time."""
    fmt = core.parse_format("fp8_e5m2")
    n = 40_000
    x = torch.full((n,), 1.0 + 0.3 * 0.25)  # frac 0.3 of the gap 0.25 above 1
    y = core.quantize(x, fmt, f"stochastic_rbits{k}", seed=9)
    p_up = (y > 1).double().mean().item()
    want = math.floor(0.3 * 2**k) / 2**k
    assert abs(p_up - want) < 0.01
    # unbiased up to that truncation for a float32 32-bit stochastic: p ~= 0.3
    assert abs((core.quantize(x, fmt, "stochastic", seed=9) > 1).double().mean().item() - 0.3) < 0.01


def test_stochastic_rbits_reproducible_and_error_messages():
    x = torch.randn(1000)
    a = core.quantize(x, "binary8p4", "stochastic_rbits6", seed=1)
    assert torch.equal(a, core.quantize(x, "binary8p4", "stochastic_rbits6", seed=1))
    assert not torch.equal(a, core.quantize(x, "binary8p4", "stochastic_rbits6", seed=2))
    for bad, match in [("stochastic_rbits0", "1..31"), ("stochastic_rbits32", "1..31"),
                       ("sideways", "valid modes: nearest")]:
        with pytest.raises(ValueError, match=match):
            core.quantize(x, "fp8_e4m3", bad)
    with pytest.raises(ValueError, match="does not support rounding='odd'"):
        core.quantize(x, "niti", "odd")


def test_training_config_accepts_the_new_modes():
    from core.train.qlayers import TensorQuant

    assert TensorQuant("fp8_e4m3", "stochastic_rbits8").rounding == "stochastic_rbits8"
    with pytest.raises(ValueError, match="1..31"):
        TensorQuant("fp8_e4m3", "stochastic_rbits40")
