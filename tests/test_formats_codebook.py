"""Lookup codebooks and QLoRA's NF4: the table, blockwise absmax scaling, nearest entry with ties to the lower
entry; Numba kernel == reference == the exact oracle of tests/naive.py; decode(encode(x)) == quantize(x)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import core
import naive
from core.formats.codebook import CODEBOOKS, codebook_format, register_codebook


def test_nf4_table_is_qlora_s():
    """QLoRA appendix E / bitsandbytes: 16 values from -1 to 1 with an exact 0 (index 7), float32 constants."""
    vals = CODEBOOKS["nf4"]
    assert list(vals) == naive.NF4_TABLE
    assert all(float(np.float32(v)) == v for v in vals)
    f = core.parse_format("nf4")
    assert str(f) == "nf4(block=64)" and f.bits == 4 and f.block == 64
    assert core.parse_format("nf4(block=128)").block == 128


@pytest.mark.parametrize("backend", ["numba", "reference"])
@pytest.mark.parametrize("n,block", [(1000, 64), (64, 64), (130, 64), (77, 16), (50, 0), (1, 64)])
def test_nf4_matches_the_exact_oracle(n, block, backend):
    g = torch.Generator().manual_seed(n + block)
    x = (torch.randn(n, generator=g) * torch.logspace(-3, 2, n)).float()
    fmt = core.parse_format(f"nf4(block={block})")
    codes_want, vals_want = naive.codebook_oracle(x.tolist(), naive.NF4_TABLE, block if block else n)
    y = core.quantize(x, fmt, backend=backend)
    want32 = torch.tensor(vals_want, dtype=torch.float64).float()
    assert torch.equal(y, want32)
    q = core.encode(x, fmt)
    assert q.codes.tolist() == codes_want and q.codes.dtype == torch.uint8
    assert torch.equal(core.decode(q), y)


def test_ties_take_the_lower_entry_and_exact_entries_map_to_themselves():
    vals = torch.tensor(naive.NF4_TABLE, dtype=torch.float64)
    mids = (vals[:-1] + vals[1:]) / 2
    x = torch.cat([vals, mids]).reshape(1, -1)  # absmax 1: scale 1
    for backend in ("numba", "reference"):
        y = core.quantize(x, "nf4(block=0)", backend=backend)[0]
        assert torch.equal(y[:16], vals)
        assert torch.equal(y[16:], vals[:-1])  # each midpoint -> the entry below it
    q = core.encode(x, "nf4(block=0)")
    assert q.codes[0, :16].tolist() == list(range(16)) and q.codes[0, 16:].tolist() == list(range(15))


def test_specials_shapes_and_dtypes():
    x = torch.tensor([[0.0, -0.0, 4.0, -4.0], [math.inf, 1.0, math.nan, 0.0]])
    y = core.quantize(x, "nf4(block=4)")
    assert y[0].tolist() == [0.0, 0.0, 4.0, -4.0]
    assert y[1, 0] == 1.0 and y[1, 1] == 1.0 and math.isnan(y[1, 2])  # inf -> +1 * absmax of the finite
    assert core.quantize(torch.zeros(5), "nf4").tolist() == [0.0] * 5  # all-zero block
    with pytest.raises(ValueError, match="no NaN encoding"):
        core.encode(x, "nf4")
    for t in (torch.zeros(0), torch.tensor(3.0), torch.randn(3, 5, 7)):
        assert core.quantize(t, "nf4").shape == t.shape
        q = core.encode(t, "nf4")
        assert torch.equal(core.decode(q), core.quantize(t, "nf4"))
    for dt in (torch.float16, torch.bfloat16, torch.float64):
        t = torch.randn(300).to(dt)
        assert torch.equal(core.quantize(t, "nf4"), core.quantize(t, "nf4", backend="reference"))
        assert core.quantize(t, "nf4").dtype == dt
    q = core.encode(torch.randn(130), "nf4")
    assert q.storage_bits() == 130 * 4 + 3 * 32  # 4-bit codes + one float32 absmax per block


def test_blocks_of_zero_scale_with_nan_and_inf_agree_with_the_reference():
    """Blocks whose finite absmax is 0 (zeros, NaN, inf): the kernel's branch-free selects give the
    reference's codes and values, signs of zero included."""
    x = torch.tensor([math.nan, 0.0, -0.0, 0.0, math.inf, -math.inf, 0.0, math.nan, 1.0, math.nan, -2.0, 0.5])
    for dt in (torch.float32, torch.float64):
        t = x.to(dt)
        got = core.quantize(t, "nf4(block=4)", backend="numba")
        want = core.quantize(t, "nf4(block=4)", backend="reference")
        assert torch.equal(got.nan_to_num(9.0), want.nan_to_num(9.0))
        assert torch.equal(torch.signbit(got), torch.signbit(want))
        spec = core.parse_format("nf4(block=4)")
        kc, _, _ = spec._codes_values(t, "numba")
        rc, _, _ = spec._codes_values(t, "reference")
        assert torch.equal(kc.to(torch.int64), rc.to(torch.int64))


def test_codebook_format_from_values_round_trips_and_validates():
    f = codebook_format([-1.0, -0.25, 0.0, 0.5, 1.0], block=32)
    assert core.parse_format(str(f)) == f and f.bits == 3
    x = torch.randn(208)
    assert torch.equal(core.quantize(x, f), core.quantize(x, f, backend="reference"))
    assert torch.equal(core.decode(core.encode(x, f)), core.quantize(x, f))
    g = core.parse_format("codebook(book=fp4_e2m1,block=16)")
    y = core.quantize(x, g)
    s = x.reshape(-1, 16).abs().amax(1, keepdim=True).double() / 6
    book = torch.tensor(CODEBOOKS["fp4_e2m1"], dtype=torch.float64)
    r = (y.reshape(-1, 16).double() / s).reshape(-1, 1)
    assert torch.all((r - book).abs().amin(1) < 1e-6)  # every element is an entry times its block scale
    for bad, match in [([1.0, 0.0], "sorted"), ([0.0], "2..256"), ([0.0, math.inf], "finite"),
                       ([0.0, 0.0, 1.0], "sorted")]:
        with pytest.raises(ValueError, match=match):
            register_codebook("bad_book", bad)
    with pytest.raises(ValueError, match="unknown codebook 'nope'; valid: .*nf4"):
        core.parse_format("codebook(book=nope)")
    with pytest.raises(ValueError, match="already registered"):
        register_codebook("nf4", [0.0, 1.0])
    with pytest.raises(ValueError, match="does not support rounding='stochastic'"):
        core.quantize(x, "nf4", "stochastic")


@settings(max_examples=60, deadline=None)
@given(xs=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=1, max_size=150),
       block=st.sampled_from([0, 1, 7, 64]), book=st.sampled_from(["nf4", "fp4_e2m1"]))
def test_codebook_kernel_equals_reference_and_requantizing_changes_nothing(xs, block, book):
    fmt = core.parse_format(f"codebook(book={book},block={block})")
    x = torch.tensor(xs, dtype=torch.float32)
    a = core.quantize(x, fmt)
    b = core.quantize(x, fmt, backend="reference")
    assert torch.equal(a.nan_to_num(7.0).view(torch.int32), b.nan_to_num(7.0).view(torch.int32))
    entries = torch.tensor(CODEBOOKS[book], dtype=torch.float64)
    if book == "nf4" and torch.isfinite(a).all():  # absmax maps to +-1 * absmax: the scales stay, so do the values
        assert torch.equal(core.quantize(a, fmt), a)
    assert entries.numel() == fmt.finite_count()
