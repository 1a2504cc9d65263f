"""The bit-layout logic (explorer.bitlayout) against ml_dtypes (IEEE-like types) and the plain-Python
oracles of tests/naive.py (P3109, the rounding modes, scaled groups)."""

from __future__ import annotations

import math
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import core
from explorer.bitlayout import bit_layout, code_fields, element_layout, neighbours

import naive

#: our alias -> the ml_dtypes type with the same encoding
ML = {
    "fp8_e4m3": ml_dtypes.float8_e4m3fn, "fp8_e5m2": ml_dtypes.float8_e5m2, "fp6_e3m2": ml_dtypes.float6_e3m2fn,
    "fp6_e2m3": ml_dtypes.float6_e2m3fn, "fp4_e2m1": ml_dtypes.float4_e2m1fn, "bf16": ml_dtypes.bfloat16,
    "fp16": np.float16, "fp8_e4m3fnuz": ml_dtypes.float8_e4m3fnuz, "fp8_e5m2fnuz": ml_dtypes.float8_e5m2fnuz,
}


def _ml_table(dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """(sorted finite values, their codes) of an ml_dtypes/NumPy type by enumerating every code."""
    bits = np.dtype(dtype).itemsize * 8
    width = {ml_dtypes.float6_e3m2fn: 6, ml_dtypes.float6_e2m3fn: 6, ml_dtypes.float4_e2m1fn: 4}.get(dtype, bits)
    utype = np.uint16 if bits == 16 else np.uint8
    codes = np.arange(2**width, dtype=utype)
    vals = codes.view(dtype).astype(np.float64)  # sub-byte types: one code per byte, low bits
    ok = np.isfinite(vals)
    return vals[ok], codes[ok].astype(np.int64)


def _ml_code(dtype: type, x: float) -> int:
    bits = np.dtype(dtype).itemsize * 8
    return int(np.array([x], dtype=np.float32).astype(dtype).view(np.uint16 if bits == 16 else np.uint8)[0])


@pytest.mark.parametrize("alias", sorted(ML))
@settings(max_examples=60, deadline=None)
@given(u=st.floats(-1.0, 1.0, allow_nan=False, width=32))
def test_ieee_like_codes_and_neighbours_match_ml_dtypes(alias: str, u: float) -> None:
    dtype = ML[alias]
    f = core.parse_format(alias)
    x = float(np.float32(u * f.max * 0.999))
    if x == 0.0:
        return
    vals, codes = _ml_table(dtype)
    L = bit_layout(alias, x)
    assert L.code == _ml_code(dtype, x), (alias, x)
    width = sum(w for _, w in element_layout(alias))
    assert "".join(fl.bits for fl in L.fields) == format(L.code, f"0{width}b")
    lo, hi = float(vals[vals <= x].max()), float(vals[vals >= x].min())
    assert (L.lower, L.upper) == (lo, hi)
    # a zero neighbour of a negative x is -0 (the directed modes keep the sign): match the sign bit too
    for v, c in ((L.lower, L.lower_code), (L.upper, L.upper_code)):
        assert c == int(codes[(vals == v) & (np.signbit(vals) == np.signbit(v))][0]), (x, v, c)


def test_e8m0_layout_and_neighbours_match_ml_dtypes() -> None:
    vals = np.arange(255, dtype=np.uint8).view(ml_dtypes.float8_e8m0fnu).astype(np.float64)
    for x in (0.3, 1.0, 3.0, 1e-30, 2.0**100 * 1.5):
        L = bit_layout("float8_e8m0fnu", x)
        assert [f.name for f in L.fields if f.bits] == ["exponent"] and L.fields[1].value == L.code
        assert (L.lower, L.upper) == (float(vals[vals <= x].max()), float(vals[vals >= x].min()))
        assert float(np.array([L.code], dtype=np.uint8).view(ml_dtypes.float8_e8m0fnu)[0]) == next(
            r.value for r in L.roundings if r.mode == "nearest")


P3109 = [(8, 3, True, "extended"), (8, 4, True, "finite"), (6, 2, False, "finite"), (5, 1, True, "extended"),
         (7, 5, False, "extended")]
DETERMINISTIC = ("nearest", "nearest_away", "truncate", "up", "down", "odd")


@pytest.mark.parametrize("k, p, signed, domain", P3109)
@settings(max_examples=50, deadline=None)
@given(u=st.floats(0.0, 1.0, allow_nan=False))
def test_p3109_neighbours_and_every_mode_match_the_naive_oracle(k: int, p: int, signed: bool, domain: str,
                                                                 u: float) -> None:
    spec = f"p3109(k={k},p={p},signed={str(signed).lower()},domain={domain})"
    f = core.parse_format(spec)
    mags = naive.p3109_magnitudes(k, p, signed, domain)
    x = u * f.max * 0.999 * (-1 if (signed and u > 0.5) else 1)
    x = float(x)
    L = bit_layout(spec, x)
    vals = sorted({float(v) for _, v in mags[:-1]} | ({-float(v) for _, v in mags[:-1]} if signed else set()))
    assert L.lower == max(v for v in vals if v <= x) and L.upper == min(v for v in vals if v >= x)
    layout = dict(element_layout(spec))
    assert layout["sign"] == int(signed) and layout["mantissa"] == p - 1 and sum(layout.values()) == k
    for r in L.roundings:
        if r.mode not in DETERMINISTIC:
            continue
        kind, want = naive.round_mode_oracle(Fraction(x), mags, r.mode)
        assert kind == "value" and r.value == float(want), (spec, x, r)
        assert r.direction == ("exact" if r.value == x else "lower" if r.value == L.lower else "upper")


def test_tie_rule_is_explained_and_followed() -> None:
    # 0.296875 is halfway between fp8_e4m3 0.28125 (code 41, odd) and 0.3125 (code 42, even)
    L = bit_layout("fp8_e4m3", 0.296875)
    by = {r.mode: r for r in L.roundings}
    assert L.d_lower == L.d_upper
    assert by["nearest"].value == 0.3125 and "tie: to the even code (upper" in by["nearest"].reason
    assert by["nearest_away"].value == 0.3125 and "away from zero" in by["nearest_away"].reason
    assert by["odd"].value == 0.28125 and by["truncate"].value == 0.28125
    neg = {r.mode: r for r in bit_layout("fp8_e4m3", -0.296875).roundings}
    assert neg["up"].value == -0.28125 and neg["down"].value == -0.3125 and neg["nearest_away"].value == -0.3125


@settings(max_examples=40, deadline=None)
@given(x=st.floats(1e-3, 5.0, allow_nan=False), k=st.integers(1, 31))
def test_stochastic_probabilities(x: float, k: int) -> None:
    L = bit_layout("fp8_e4m3", x, rbits=k)
    by = {r.mode: r for r in L.roundings}
    if L.lower == L.upper:
        return
    frac = (x - L.lower) / (L.upper - L.lower)
    assert math.isclose(by["stochastic"].p_upper, frac)
    assert by[f"stochastic_rbits{k}"].p_upper == math.floor(frac * 2**k) / 2**k
    assert by["stochastic"].value in (L.lower, L.upper)


@pytest.mark.parametrize("scale", ["fp32", "pow2", "e4m3"])
@settings(max_examples=30, deadline=None)
@given(x=st.floats(-4.0, 4.0, allow_nan=False, width=32), amax=st.floats(4.0, 100.0, width=32))
def test_scaled_block_neighbours_and_nearest_match_the_naive_group(scale: str, x: float, amax: float) -> None:
    spec = f"scaled(elem=fp4_e2m1,block=16,scale={scale})"
    L = bit_layout(spec, x, amax=amax)
    book = naive.minifloat_codebook(1, 0, 2, 6.0)  # E2M1: 0, 0.5 .. 6
    want = naive.scaled_group_reference([x, amax], book, scale)[0]
    nearest = next(r for r in L.roundings if r.mode == "nearest")
    assert math.isclose(nearest.value, want, rel_tol=1e-6, abs_tol=0)
    assert L.lower <= x <= L.upper
    assert min(abs(nearest.value - L.lower), abs(nearest.value - L.upper)) <= 1e-6 * max(1.0, abs(want))
    assert [f.name for f in L.fields] == ["sign", "exponent", "mantissa"]
    assert L.scale_fields and "block scale" in L.scale_name


def test_scale_codes_are_shown_for_e8m0_and_e4m3_scales() -> None:
    L = bit_layout("mx(elem=fp4_e2m1,block=32,axis=-1,scale=floor)", 0.3, amax=6.0)
    assert "E8M0" in L.scale_name and L.scale == 1.0 and L.scale_fields[1].bits == "01111111"
    N = bit_layout("nvfp4", 0.3, amax=6.0)
    assert "E4M3" in N.scale_name and [f.name for f in N.scale_fields] == ["sign", "exponent", "mantissa"]


def test_integer_and_codebook_fields() -> None:
    assert [f.bits for f in code_fields("int8", -1)] == ["11111111"]
    assert [(f.name, f.bits) for f in code_fields("mu8", -5)] == [("sign", "1"), ("index", "0000101")]
    L = bit_layout("nf4", 0.3, amax=1.0)
    table = sorted(naive.NF4_TABLE)
    assert (L.lower, L.upper) == (max(v for v in table if v <= 0.3), min(v for v in table if v >= 0.3))
    assert L.fields[0].name == "index" and L.fields[0].value == table.index(L.upper)  # 0.3379 is nearer
    with pytest.raises(ValueError, match="finite"):
        bit_layout("fp8_e4m3", math.inf)


def test_neighbours_beyond_the_largest_value() -> None:
    assert neighbours("fp8_e4m3", 1000.0) == (448.0, 448.0)  # saturating: up/down both clamp
    lo, hi = neighbours("binary8p3", 1e6)  # extended domain: +inf above max
    assert lo == core.parse_format("binary8p3").max and hi == math.inf
