"""MLS low-bit conv/matmul simulator (MLS paper, Eq. 5-8; docs/papers.md#mls-arithmetic)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import core
from core.arith import aligned_integers, mls_conv2d, mls_matmul, product_bits
from naive_arith import mls_conv_overflows

FMTS = ["mls(ex=2,mx=4,eg=8,mg=1,group=nc)", "mls(ex=1,mx=2,eg=4,mg=0,group=nc)",
        "mls(ex=0,mx=3,eg=8,mg=1,group=nc)", "mls(ex=3,mx=1,eg=8,mg=1,group=n)"]


def deq(q):
    """Dequantized operand in float64: St * Sg * element (exact)."""
    s = q.codes.shape
    v = q.spec.element_values(q.codes.reshape(s[0], s[1], -1))
    return (q.scales["tensor"].double() * q.scales["group"][:, :, None] * v).reshape(s)


def pow2_tensor(g, shape, k):
    """Random tensor whose max |x| is exactly 2^k (so St is a power of two)."""
    x = torch.randn(shape, generator=g, dtype=torch.float32)
    x = x / x.abs().max()
    x.view(-1)[0] = 1.0
    return x * 2.0 ** k


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), fi=st.integers(0, 3), n=st.integers(1, 3),
       cin=st.integers(1, 4), cout=st.integers(1, 4), k=st.integers(1, 3),
       hw=st.integers(3, 7), stride=st.integers(1, 2), pad=st.integers(0, 2))
def test_wide_accumulator_equals_float_conv_exactly(seed, fi, n, cin, cout, k, hw, stride, pad):
    g = torch.Generator().manual_seed(seed)
    fmt = core.parse_format(FMTS[fi])
    wq = core.encode(pow2_tensor(g, (cout, cin, k, k), -2), fmt)
    aq = core.encode(pow2_tensor(g, (n, cin, hw, hw), 3), fmt)
    ref = F.conv2d(deq(aq), deq(wq), stride=stride, padding=pad)
    r = mls_conv2d(wq, aq, stride=stride, padding=pad, acc_bits=64)
    assert r.path == "gemm"
    assert r.output.dtype == torch.float64
    assert torch.equal(r.output, ref)
    assert int(r.overflows.sum()) == 0
    rs = mls_conv2d(wq, aq, stride=stride, padding=pad, acc_bits=64, path="simulate")
    assert torch.equal(rs.output, ref)
    assert int(rs.overflows.sum()) == 0


def test_general_scales_close_and_paths_identical():
    g = torch.Generator().manual_seed(1)
    fmt = core.parse_format(FMTS[0])
    wq = core.encode(torch.randn(5, 4, 3, 3, generator=g), fmt)
    aq = core.encode(torch.randn(2, 4, 8, 8, generator=g) * 3.7, fmt)
    ref = F.conv2d(deq(aq), deq(wq), padding=1)
    a = mls_conv2d(wq, aq, padding=1, acc_bits=64)
    b = mls_conv2d(wq, aq, padding=1, acc_bits=64, path="simulate")
    assert torch.equal(a.output, b.output)  # same stated order on both paths
    torch.testing.assert_close(a.output, ref, rtol=1e-14, atol=1e-14)


def test_decode_matches_aligned_integers():
    fmt = core.parse_format(FMTS[0])
    q = core.encode(torch.randn(3, 2, 5), fmt)
    v = fmt.element_values(q.codes.reshape(3, 2, 5))
    assert torch.equal(v, aligned_integers(q.codes, 2, 4).reshape(3, 2, 5).double() * 2.0 ** -7)
    assert product_bits(2, 4) == 14
    assert mls_conv2d(core.encode(torch.randn(1, 1, 1, 1), fmt),
                      core.encode(torch.randn(1, 1, 2, 2), fmt)).product_bits == 14


@pytest.mark.parametrize("overflow", ["wrap", "saturate"])
@pytest.mark.parametrize("acc_bits,fi,seed", [(12, 0, 0), (14, 0, 1), (15, 0, 2), (6, 1, 3),
                                              (4, 1, 4), (5, 2, 5), (8, 3, 6), (2, 1, 7)])
def test_overflow_counts_match_python_reference(overflow, acc_bits, fi, seed):
    g = torch.Generator().manual_seed(seed)
    fmt = core.parse_format(FMTS[fi])
    wq = core.encode(torch.randn(3, 2, 3, 3, generator=g), fmt)
    aq = core.encode(torch.randn(2, 2, 4, 4, generator=g), fmt)
    counts, sums = mls_conv_overflows(wq, aq, 1, 1, acc_bits, overflow)
    r = mls_conv2d(wq, aq, padding=1, acc_bits=acc_bits, overflow=overflow, path="simulate")
    assert r.overflows.tolist() == counts
    # output from the reference partial sums in the stated order
    sgw, sga = wq.scales["group"], aq.scales["group"]
    sw, sa = wq.spec, aq.spec
    emin = lambda ex: 0 if ex == 0 else 1 - 2 ** ex  # noqa: E731
    scale = (float(wq.scales["tensor"]) * float(aq.scales["tensor"])
             * 2.0 ** (emin(sw.ex) - sw.mx + emin(sa.ex) - sa.mx))
    out = torch.empty_like(r.output)
    for (n, co, oh, ow, ci), _ in sums.items():
        if ci == 0:
            z = 0.0
            for c in range(2):
                z = z + (float(sgw[co, c]) * float(sga[n, c])) * float(sums[(n, co, oh, ow, c)])
            out[n, co, oh, ow] = scale * z
    assert torch.equal(r.output, out)
    if r.path == "simulate" and sum(counts) == 0:
        assert torch.equal(r.output, mls_conv2d(wq, aq, padding=1, acc_bits=64).output)


def test_auto_path_uses_gemm_only_when_safe():
    g = torch.Generator().manual_seed(3)
    fmt = core.parse_format(FMTS[0])
    wq = core.encode(torch.randn(2, 2, 3, 3, generator=g), fmt)
    aq = core.encode(torch.randn(1, 2, 5, 5, generator=g), fmt)
    assert mls_conv2d(wq, aq, acc_bits=32).path in ("gemm", "gemm_per_group")
    assert mls_conv2d(wq, aq, acc_bits=8).path == "simulate"
    with pytest.raises(ValueError, match="overflow"):
        mls_conv2d(wq, aq, acc_bits=8, path="gemm")


def test_matmul_exact_and_overflow():
    g = torch.Generator().manual_seed(4)
    fmt = core.parse_format(FMTS[0])
    wq = core.encode(pow2_tensor(g, (5, 7), 0), fmt)
    aq = core.encode(pow2_tensor(g, (3, 7), 1), fmt)
    r = mls_matmul(wq, aq, acc_bits=64)
    assert r.output.shape == (3, 5)
    assert torch.equal(r.output, deq(aq) @ deq(wq).T)
    # one product per group: 14-bit magnitudes overflow a 10-bit accumulator
    r2 = mls_matmul(wq, aq, acc_bits=10, overflow="saturate")
    counts, _ = mls_conv_overflows(
        core.Encoded(wq.spec, wq.codes[:, :, None, None], wq.scales),
        core.Encoded(aq.spec, aq.codes[:, :, None, None], aq.scales), 1, 0, 10, "saturate")
    assert r2.overflows.tolist() == counts


def test_bad_input():
    fmt = core.parse_format(FMTS[0])
    wq = core.encode(torch.randn(2, 3, 3, 3), fmt)
    aq = core.encode(torch.randn(1, 4, 5, 5), fmt)
    with pytest.raises(ValueError, match="channel mismatch"):
        mls_conv2d(wq, aq)
    aq = core.encode(torch.randn(1, 3, 5, 5), fmt)
    for bad in (1, 65, 0, 2.5):
        with pytest.raises(ValueError, match="acc_bits"):
            mls_conv2d(wq, aq, acc_bits=bad)
    with pytest.raises(ValueError, match="overflow"):
        mls_conv2d(wq, aq, overflow="clip")
    with pytest.raises(ValueError, match="MLS"):
        mls_conv2d(wq, core.encode(torch.randn(1, 3, 5, 5), "fp8_143"))
    with pytest.raises(ValueError, match="4-D"):
        mls_conv2d(wq, core.encode(torch.randn(3, 5), fmt))
    with pytest.raises(TypeError):
        mls_conv2d(wq, torch.randn(1, 3, 5, 5))
    with pytest.raises(ValueError, match="inner dimension"):
        mls_matmul(core.encode(torch.randn(2, 3), fmt), core.encode(torch.randn(2, 4), fmt))
    with pytest.raises(ValueError, match="larger than"):
        mls_conv2d(core.encode(torch.randn(1, 3, 7, 7), fmt), aq)


def test_per_group_gemm_path_on_wide_scale_range():
    """Group scales 2^-60 apart: a single GEMM would round, the per-group path keeps the order."""
    g = torch.Generator().manual_seed(5)
    fmt = core.parse_format("mls(ex=2,mx=4,eg=8,mg=1,group=nc)")
    w = torch.randn(3, 4, 3, 3, generator=g)
    w[:, 1] *= 2.0 ** -60
    a = torch.randn(2, 4, 5, 5, generator=g)
    a[:, 2] *= 2.0 ** -40
    wq, aq = core.encode(w, fmt), core.encode(a, fmt)
    r = mls_conv2d(wq, aq, padding=1, acc_bits=64)
    assert r.path == "gemm_per_group"
    s = mls_conv2d(wq, aq, padding=1, acc_bits=64, path="simulate")
    assert torch.equal(r.output, s.output)
    torch.testing.assert_close(r.output, F.conv2d(deq(aq), deq(wq), padding=1), rtol=1e-12, atol=1e-13)


def test_64bit_accumulator_wrap_and_saturate():
    from core.kernels.arith_mls import _acc_add

    lo, hi = -(2 ** 63), 2 ** 63 - 1
    s, o = _acc_add(hi - 5, 10, 64, 0, lo, hi, -1, 0)
    assert o and s == lo + 4  # two's complement wrap
    s, o = _acc_add(hi - 5, 10, 64, 1, lo, hi, -1, 0)
    assert o and s == hi
    s, o = _acc_add(lo + 5, -10, 64, 1, lo, hi, -1, 0)
    assert o and s == lo
    s, o = _acc_add(-7, 3, 64, 0, lo, hi, -1, 0)
    assert not o and s == -4
    # 4-bit accumulator: 7 + 1 wraps to -8, saturates to 7
    assert tuple(_acc_add(7, 1, 4, 0, -8, 7, 15, 8)) == (-8, True)
    assert tuple(_acc_add(7, 1, 4, 1, -8, 7, 15, 8)) == (7, True)
    assert tuple(_acc_add(-8, -3, 4, 0, -8, 7, 15, 8)) == (5, True)
