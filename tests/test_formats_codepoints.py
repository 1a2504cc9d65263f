"""Every code point, every midpoint and one float32 ulp either side of each
midpoint, for every format of 8 bits or fewer, against the plain-Python oracle
(tests/naive.py), on both backends and both signs."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

import core
from naive import minifloat_codebook, minifloat_codes, mulaw_code_index, round_nearest_even, probe_points

BACKENDS = ["numba", "reference"]

# name -> (m, emin, emax, max, subnormals)
FLOAT8 = {
    "fp8_e4m3": (3, -6, 8, 448.0, True),
    "fp8_e5m2": (2, -14, 15, 57344.0, True),
    "fp8_143": (3, -6, 7, 240.0, True),
    "fp8_152": (2, -14, 15, 57344.0, True),
    "fp6_e3m2": (2, -2, 4, 28.0, True),
    "fp6_e2m3": (3, 0, 2, 7.5, True),
    "fp4_e2m1": (1, 0, 2, 6.0, True),
    "float(e=3,m=4,bias=3,inf=true)": (4, -2, 3, 15.5, True),
    "float(e=4,m=3,bias=7,inf=false,nan=none,subnormals=false)": (3, -6, 8, 480.0, False),
    "float(e=2,m=2,bias=1,inf=false,nan=fn)": (2, 0, 2, 6.0, True),
}


def _check(x: np.ndarray, y: torch.Tensor, book: list[Fraction], codes: list[int] | None = None) -> None:
    for xi, yi in zip(x.tolist(), y.tolist()):
        want = float(round_nearest_even(Fraction(abs(xi)), book, codes)) * (1 if xi >= 0 else -1)
        assert yi == want, f"x={xi!r}: got {yi!r}, oracle {want!r}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(FLOAT8))
def test_float_formats_every_code_and_midpoint(name, backend):
    m, emin, emax, mx, sub = FLOAT8[name]
    book = minifloat_codebook(m, emin, emax, mx, sub)
    fmt = core.parse_format(name)
    assert fmt.bits <= 8
    assert [float(v) for v in book] == core.codebook(fmt).tolist()
    pts = np.array(probe_points(book), dtype=np.float32)
    x = np.concatenate([pts, -pts])
    y = core.quantize(torch.from_numpy(x), fmt, backend=backend)
    _check(x, y, book, minifloat_codes(m, len(book), sub))


MLS_ELEMENTS = [(0, 3), (0, 7), (1, 1), (2, 1), (2, 3), (2, 4), (3, 2), (3, 4), (4, 3), (5, 2), (1, 6)]


def mls_book(ex: int, mx: int) -> list[Fraction]:
    if ex == 0:
        return [Fraction(k, 2**mx) for k in range(2**mx)]
    return minifloat_codebook(mx, 1 - 2**ex, -1, (2 - 2**-mx) / 2)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ex,mx", MLS_ELEMENTS)
def test_mls_element_grid_every_code_and_midpoint(ex, mx, backend):
    """With St = Sg = 1 (a 1.0 in the group) MLS rounds |x| onto <Ex,Mx> directly."""
    book = mls_book(ex, mx)
    fmt = core.parse_format(f"mls(ex={ex},mx={mx},eg=8,mg=1,group=nc)")
    assert fmt.bits == 1 + ex + mx <= 8
    assert [float(v) for v in book] == core.codebook(fmt).tolist()
    pts = [p for p in probe_points(book) if p <= 1.0] + [1.0]
    x = np.array(pts + [-p for p in pts], dtype=np.float32)
    y = core.quantize(torch.from_numpy(x).reshape(1, 1, -1), fmt, backend=backend).reshape(-1)
    _check(x, y, book)


def int_book(qmax: int, step: Fraction = Fraction(1)) -> list[Fraction]:
    return [k * step for k in range(qmax + 1)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "spec", ["int(bits=8,scale=tensor)", "niti(bits=8)", "bfp(bits=8,block=4096,axis=-1)",
             "int(bits=4,scale=tensor)", "niti(bits=6)", "bfp(bits=5,block=4096,axis=-1)"]
)
def test_integer_formats_every_code_and_midpoint(spec, backend):
    """amax = qmax makes the scale exactly 1 for int, niti and bfp."""
    fmt = core.parse_format(spec)
    qmax = 2 ** (fmt.bits - 1) - 1
    book = int_book(qmax)
    pts = [p for p in probe_points(book) if p <= qmax] + [float(qmax)]
    x = np.array(pts + [-p for p in pts], dtype=np.float32)
    y = core.quantize(torch.from_numpy(x), fmt, backend=backend)
    _check(x, y, book)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("elem", ["fp8_e4m3", "fp8_e5m2", "fp6_e3m2", "fp6_e2m3", "fp4_e2m1", "int8"])
def test_mx_elements_every_code_and_midpoint(elem, backend):
    """Each block carries the element max, so the E8M0 scale is 2^0 (floor rule)."""
    if elem == "int8":
        book = int_book(127, Fraction(1, 64))
    else:
        m, emin, emax, mx, sub = FLOAT8[elem]
        book = minifloat_codebook(m, emin, emax, mx, sub)
    top = float(book[-1])
    pts = [p for p in probe_points(book) if p <= top]
    pts = pts + [-p for p in pts]
    rows = math.ceil(len(pts) / 31)
    x = np.zeros((rows, 32), dtype=np.float32)
    x[:, 0] = top
    flat = np.array(pts + [0.0] * (rows * 31 - len(pts)), dtype=np.float32)
    x[:, 1:] = flat.reshape(rows, 31)
    y = core.quantize(torch.from_numpy(x), f"mx(elem={elem},block=32)", backend=backend)
    _check(x.reshape(-1), y.reshape(-1), book)


@pytest.mark.parametrize("mu", [255.0, 10.0, 1000.0])
def test_mu8_every_code_and_threshold(mu):
    """Codes map to themselves; one ulp either side of each y-midpoint decision
    threshold rounds to the code on that side (rounding in the companded domain)."""
    fmt = core.parse_format(f"mu8(mu={mu},range=2)")
    book = core.codebook(fmt).numpy()
    K = 127
    assert len(book) == K + 1 and book[0] == 0 and book[-1] == pytest.approx(2.0, rel=1e-15)
    x = torch.from_numpy(book.astype(np.float32))
    y = core.quantize(x, fmt)
    idx_back = [round(mulaw_code_index(v, 8, mu, 2.0)) for v in y.tolist()]
    assert idx_back == list(range(K + 1))
    thr = [2.0 * math.expm1((k + 0.5) / K * math.log1p(mu)) / mu for k in range(K)]
    above = np.nextafter(np.float32(thr), np.float32(np.inf))
    below = np.nextafter(np.float32(thr), np.float32(-np.inf))
    ya = core.quantize(torch.from_numpy(above), fmt).double()
    yb = core.quantize(torch.from_numpy(below), fmt).double()
    for k in range(K):
        if above[k] > thr[k]:
            assert ya[k].item() == pytest.approx(book[k + 1], rel=1e-6), k
        if below[k] < thr[k]:
            assert yb[k].item() == pytest.approx(book[k], rel=1e-6), k
    # the y-domain rounding really is nearest in y: compare with the plain-math index
    xs = torch.linspace(-2.5, 2.5, 20001, dtype=torch.float64)
    ys = core.quantize(xs, fmt)
    for xv, yv in zip(xs.tolist()[::37], ys.tolist()[::37]):
        yk = mulaw_code_index(xv, 8, mu, 2.0)
        want = math.copysign(2.0 * math.expm1(round(yk) / K * math.log1p(mu)) / mu, xv)
        assert yv == pytest.approx(want, rel=1e-12, abs=1e-300)
