"""IEEE P3109 formats, FNUZ FP8, E8M0 and ml_dtypes' names: bit for bit against ml_dtypes where it has the
format, and against the plain-Python P3109 oracle of tests/naive.py (docs/conformance.md)."""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
import torch

import core
import naive
from test_formats_conformance import dense_sweep

# spec -> (ml_dtypes type, rounding that reproduces ml_dtypes)
ML_NAMES = {
    "fp8_e4m3fnuz": (ml_dtypes.float8_e4m3fnuz, "nearest"),
    "fp8_e5m2fnuz": (ml_dtypes.float8_e5m2fnuz, "nearest"),
    "float8_e4m3fnuz": (ml_dtypes.float8_e4m3fnuz, "nearest"),
    "float8_e5m2fnuz": (ml_dtypes.float8_e5m2fnuz, "nearest"),
    # ml_dtypes rounds ties of E8M0 away (1.5 * 2^e -> 2^(e+1)); core's nearest ties to the even code
    "float8_e8m0fnu": (ml_dtypes.float8_e8m0fnu, "nearest_away"),
    "float8_e4m3fn": (ml_dtypes.float8_e4m3fn, "nearest"),
    "float8_e5m2": (ml_dtypes.float8_e5m2, "nearest"),
    "float8_e4m3": (ml_dtypes.float8_e4m3, "nearest"),
    "float6_e3m2fn": (ml_dtypes.float6_e3m2fn, "nearest"),
    "float6_e2m3fn": (ml_dtypes.float6_e2m3fn, "nearest"),
    "float4_e2m1fn": (ml_dtypes.float4_e2m1fn, "nearest"),
    "bfloat16": (ml_dtypes.bfloat16, "nearest"),
    "float16": (np.float16, "nearest"),
}
CODE_DTYPE = {8: np.uint8, 6: np.uint8, 4: np.uint8, 16: np.uint16}


def _ml(x: np.ndarray, dt) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return x.astype(dt)


@pytest.mark.parametrize("backend", ["numba", "reference"])
@pytest.mark.parametrize("name", list(ML_NAMES))
def test_ml_dtypes_names_match_ml_dtypes_bit_for_bit(name, backend):
    """Every float32 exponent with random mantissas, +-0, subnormals, +-inf, NaN: same values (overflow
    and NaN included: these aliases have ml_dtypes' IEEE overflow) and the same codes."""
    dt, rounding = ML_NAMES[name]
    x = dense_sweep(per_exponent=48)
    fmt = core.parse_format(name)
    if not fmt.has_nan:  # ml_dtypes maps NaN to -0 in NaN-less formats; core keeps NaN (documented)
        x = x[~np.isnan(x)]
    want = _ml(x, dt)
    y = core.quantize(torch.from_numpy(x), fmt, rounding, backend=backend).numpy()
    w32 = want.astype(np.float32)
    assert (np.isnan(y) == np.isnan(w32)).all()
    keep = ~np.isnan(w32)
    np.testing.assert_array_equal(y[keep].view(np.uint32), w32[keep].view(np.uint32))
    # codes: ml_dtypes' bit patterns (where a code exists: NaN has one in every format but FP6/FP4)
    q = core.encode(torch.from_numpy(x), fmt, rounding)
    bits = want.view(np.uint16 if want.dtype.itemsize == 2 else np.uint8).astype(np.int64)
    codes = q.codes.numpy().astype(np.int64) & ((1 << fmt.bits) - 1)
    np.testing.assert_array_equal(codes[keep], bits[keep])
    assert torch.equal(core.decode(q).nan_to_num(7.0), torch.from_numpy(y).nan_to_num(7.0))


@pytest.mark.parametrize("name", ["fp8_e4m3fnuz", "fp8_e5m2fnuz", "float8_e8m0fnu", "float8_e4m3fn",
                                  "float8_e5m2", "float8_e4m3"])
def test_every_code_decodes_like_ml_dtypes(name):
    dt, _ = ML_NAMES[name]
    codes = np.arange(256, dtype=np.uint8)
    want = codes.view(dt).astype(np.float64)
    fmt = core.parse_format(name)
    got = core.decode(core.Encoded(fmt, torch.from_numpy(codes), {}, torch.float64)).numpy()
    assert (np.isnan(got) == np.isnan(want)).all()
    np.testing.assert_array_equal(got[~np.isnan(want)], want[~np.isnan(want)])
    # and every finite code encodes back to itself
    fin = ~np.isnan(want)
    q = core.encode(torch.from_numpy(want[fin]), fmt)
    np.testing.assert_array_equal(q.codes.numpy(), codes[fin] if "fnuz" not in name else
                                  np.where(want[fin] == 0, 0, codes[fin]))


def test_fnuz_are_the_p3109_finite_k8_formats():
    assert core.parse_format("fp8_e4m3fnuz") == core.parse_format("p3109(k=8,p=4,domain=finite)")
    assert core.parse_format("fp8_e5m2fnuz") == core.parse_format("p3109(k=8,p=3,domain=finite)")
    f = core.parse_format("fp8_e4m3fnuz")
    assert (f.bias, f.max, f.nan_code, f.has_inf) == (8, 240.0, 0x80, False)
    assert core.parse_format("fp8_e5m2fnuz").max == 57344.0


P3109_CASES = [(8, p, s, d) for p in range(1, 8) for s in (True,) for d in ("extended", "finite")]
P3109_CASES += [(8, p, False, d) for p in (1, 3, 4, 8) for d in ("extended", "finite")]
P3109_CASES += [(6, 3, True, "extended"), (4, 2, True, "finite"), (3, 2, True, "finite"), (12, 7, True, "extended")]


def _spec(k, p, signed, domain, saturate=False):
    return core.parse_format(f"p3109(k={k},p={p},signed={str(signed).lower()},domain={domain},"
                             f"saturate={str(saturate).lower()})")


@pytest.mark.parametrize("k,p,signed,domain", P3109_CASES)
def test_p3109_codes_decode_to_the_oracle(k, p, signed, domain):
    fmt = _spec(k, p, signed, domain)
    mags = naive.p3109_magnitudes(k, p, signed, domain)
    assert fmt.max == float(mags[-2][1])
    n = 2**k
    got = core.decode(core.Encoded(fmt, torch.arange(n), {}, torch.float64)).numpy()
    half = 2 ** (k - 1)
    for c in range(n):
        if signed:
            sign, mag = (-1 if c >= half else 1), c % half
            special = "nan" if c == half else "inf" if (domain == "extended" and mag == half - 1) else None
        else:
            sign, mag = 1, c
            special = "nan" if c == n - 1 else "inf" if (domain == "extended" and c == n - 2) else None
        if special == "nan":
            assert math.isnan(got[c]), c
        elif special == "inf":
            assert got[c] == sign * math.inf, c
        else:
            assert got[c] == sign * float(mags[mag][1]), c
    # the codebook is the oracle's finite magnitudes, with exactly one NaN and no -0 code in use
    assert core.codebook(fmt).tolist() == [float(v) for _, v in mags[:-1]]


@pytest.mark.parametrize("k,p,signed,domain", P3109_CASES)
@pytest.mark.parametrize("saturate", [False, True])
def test_p3109_quantize_matches_the_oracle_at_every_probe(k, p, signed, domain, saturate):
    """Codes, midpoints, quarter points and their float64 neighbours, both signs, beyond max: value and
    code of the oracle (gfloat's round_float semantics: saturate -> +-max, else inf / NaN)."""
    fmt = _spec(k, p, signed, domain, saturate)
    mags = naive.p3109_magnitudes(k, p, signed, domain)
    pts = naive.probe_points_signed(mags, limit=300) + [math.inf, -math.inf, 0.0, -0.0]
    x = torch.tensor(pts, dtype=torch.float64)
    y = core.quantize(x, fmt).numpy()
    yr = core.quantize(x, fmt, backend="reference").numpy()
    np.testing.assert_array_equal(np.nan_to_num(y, nan=7.0), np.nan_to_num(yr, nan=7.0))
    for xv, yv in zip(pts, y):
        if not signed and xv < -float(mags[1][1]) / 2:  # rounds to a negative value (ties go to 0)
            assert (yv == 0.0) if saturate else math.isnan(yv), xv  # negative: out of range
            continue
        if math.isinf(xv):
            want = math.copysign(fmt.max, xv) if saturate else (xv if domain == "extended" else math.nan)
        else:
            kind, v = naive.round_mode_oracle(Fraction(xv), mags, "nearest")
            if kind == "overflow":
                want = float(v) * (fmt.max if saturate else math.inf if domain == "extended" else math.nan)
            else:
                want = float(v)
        if math.isnan(want):
            assert math.isnan(yv), xv
        else:
            assert yv == want and not (yv == 0 and math.copysign(1, yv) < 0), (xv, yv, want)


def test_p3109_binary8p3_encodings():
    f = core.parse_format("binary8p3")
    assert (f.k, f.p, f.bias, f.max, f.smallest_subnormal) == (8, 3, 16, 49152.0, 2.0**-17)
    x = torch.tensor([0.0, -0.0, math.nan, math.inf, -math.inf, 49152.0, -49152.0, 1e9, -1e-30, 1.0])
    q = core.encode(x, f)
    assert q.codes.tolist() == [0, 0, 0x80, 0x7F, 0xFF, 0x7E, 0xFE, 0x7F, 0, 0x40]
    y = core.decode(q)
    assert not torch.signbit(y[[0, 1, 8]]).any()  # no negative zero
    assert str(f) == "binary8p3" and str(core.parse_format("p3109(k=8,p=5)")) == "binary8p5"


@pytest.mark.parametrize("bad,match", [("p3109(k=8,p=8)", "p=8 is out of range"), ("p3109(k=1)", "k=1"),
                                       ("p3109(domain=wide)", "valid values: extended, finite"),
                                       ("p3109(k=2,p=1)", "no positive finite value")])
def test_p3109_bad_specs_are_clear_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        core.parse_format(bad)


def test_e8m0_specials_and_ties():
    f = core.parse_format("e8m0")
    x = torch.tensor([0.0, -0.0, -2.0, 1e-45, 3.0, 6.0, 1.5, math.inf, 3e38, 2.0**127, math.nan])
    y = core.quantize(x, f).tolist()
    assert math.isnan(y[0]) and math.isnan(y[1]) and math.isnan(y[2])  # no zero, no sign
    assert y[3] == 2.0**-127  # below the range: the smallest value
    # nearest ties to the even code: 3 = 1.5 * 2^1 -> 2 (code 128), 6 -> 8 (code 130), 1.5 -> 2 (code 128)
    assert y[4:7] == [2.0, 8.0, 2.0]
    assert core.quantize(x[4:7], f, "nearest_away").tolist() == [4.0, 8.0, 2.0]  # ml_dtypes' ties
    assert math.isnan(y[7]) and math.isnan(y[8]) and y[9] == 2.0**127 and math.isnan(y[10])
    assert core.quantize(x[[0, 7, 8]], "e8m0(saturate=true)").tolist() == [2.0**-127, 2.0**127, 2.0**127]
    q = core.encode(x, f)
    assert q.codes.tolist()[3:7] == [0, 128, 130, 128]
    assert core.codebook(f).numel() == 255 and f.bits == 8


@pytest.mark.parametrize("spec", ["binary8p1", "binary8p4", "binary8p7", "p3109(k=8,p=3,signed=false)",
                                  "p3109(k=6,p=3,saturate=true)", "fp8_e4m3fnuz", "fp8_e5m2fnuz", "e8m0",
                                  "e8m0(saturate=true)", "float8_e4m3fn", "float8_e4m3", "float8_e5m2",
                                  "float6_e3m2fn", "float4_e2m1fn", "bfloat16", "float16", "float8_e8m0fnu"])
def test_new_specs_round_trip(spec):
    f = core.parse_format(spec)
    assert core.parse_format(str(f)) == f
    x = torch.randn(300) * 4
    q = core.encode(x, f)
    assert torch.equal(core.decode(q).nan_to_num(3.0), core.quantize(x, f).nan_to_num(3.0))


def test_ml_dtypes_names_overflow_where_the_project_aliases_saturate():
    """fp8_e4m3 / fp8_143 saturate by default (training recipes); ml_dtypes' names give ml_dtypes'
    inf / NaN (docs/conformance.md)."""
    x = torch.tensor([1e6, -1e6])
    assert core.quantize(x, "fp8_143").tolist() == [240.0, -240.0]
    assert core.quantize(x, "float8_e4m3").tolist() == [math.inf, -math.inf]
    assert core.quantize(x, "fp8_e4m3").tolist() == [448.0, -448.0]
    assert core.quantize(x, "float8_e4m3fn").isnan().all()


@pytest.mark.parametrize("spec,n", [("binary8p3", 253), ("fp8_e4m3fnuz", 255), ("p3109(k=8,p=3,signed=false)", 254),
                                    ("p3109(k=8,p=3,signed=false,domain=finite)", 255), ("e8m0", 255),
                                    ("nf4", 16), ("fp8_e4m3", 253)])
def test_finite_count_counts_distinct_finite_values(spec, n):
    """One NaN, +-inf (extended), no -0: the distinct finite values the codes hold."""
    assert core.parse_format(spec).finite_count() == n


@pytest.mark.parametrize("spec", ["e8m0", "e8m0(saturate=true)"])
@pytest.mark.parametrize("with_subnormals", [False, True])
def test_e8m0_float32_fast_path_equals_reference(spec, with_subnormals):
    """The float32 fast path (grid from 2^-125 plus the zero/sign pass) gives the reference's bits in
    every rounding mode, stochastic draws and ties included; with inputs below 2^-125 it hands over to
    the general path."""
    from core.formats.base import GRID_ROUNDINGS

    f = core.parse_format(spec)
    bits = np.random.default_rng(3).integers(0, 1 << 32, 20000, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32).copy()
    if not with_subnormals:
        x[(np.abs(x) < 2.0**-125) & (x != 0)] = 1.0
    x[:8] = [0.0, -0.0, 2.0**127, 1.5 * 2.0**127, 2.0**-125, -2.0**-125, 1.5 * 2.0**-125, 3.0]
    t = torch.from_numpy(x)
    for mode in [*GRID_ROUNDINGS, "stochastic_rbits4"]:
        if mode == "stochastic_rbits":
            continue
        fast = core.quantize(t, f, mode, seed=11)
        ref = core.quantize(t, f, mode, seed=11, backend="reference")
        assert torch.equal(fast.view(torch.int32), ref.view(torch.int32)) or \
            torch.equal(fast.nan_to_num(7.0), ref.nan_to_num(7.0)), mode
