"""NITI int8 GEMM / conv with effective-bitwidth shift-and-round (NITI paper; docs/papers.md#niti-shift-round)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from core.arith import effective_bits, niti_conv2d, niti_linear, niti_matmul, shift_round
from core.formats import pseudo_stochastic_round


def rand_i8(g, *shape):
    return torch.randint(-128, 128, shape, generator=g, dtype=torch.int8)


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (3, 5, 7), (17, 64, 33), (0, 4, 3), (64, 300, 48)])
def test_matmul_matches_int64_torch(m, k, n):
    g = torch.Generator().manual_seed(m * 1000 + k + n)
    a, b = rand_i8(g, m, k), rand_i8(g, k, n)
    out = niti_matmul(a, b)
    assert out.dtype == torch.int32 and out.shape == (m, n)
    assert torch.equal(out.to(torch.int64), a.to(torch.int64) @ b.to(torch.int64))


def test_matmul_extremes():
    a = torch.full((2, 1000), -128, dtype=torch.int8)
    b = torch.full((1000, 2), -128, dtype=torch.int8)
    assert int(niti_matmul(a, b)[0, 0]) == 16384000


def test_hand_worked_linear():
    x = torch.tensor([[100, 100]], dtype=torch.int8)
    w = torch.tensor([[100, 100], [1, -3]], dtype=torch.int8)
    r = niti_linear(x, -7, w, -8)
    # acc = [20000, -200]; B(20000) = 15 -> shift 8; 20000/256 = 78.125 -> 78; -200/256 -> -1
    assert r.acc.tolist() == [[20000, -200]]
    assert r.shift == 8 and r.exp == -7 - 8 + 8
    assert r.values.tolist() == [[78, -1]]
    assert r.values.dtype == torch.int8


def test_shift_round_modes_hand_worked():
    v = torch.tensor([200, -200, 129, 131, 3, 0], dtype=torch.int32)
    assert effective_bits(v) == 8
    q, s = shift_round(v, "nearest")  # /2: 100, -100, 64.5->65, 65.5->66, 1.5->2, 0 (ties away from 0)
    assert s == 1 and q.tolist() == [100, -100, 65, 66, 2, 0]
    q, s = shift_round(v, "pseudo_stochastic")
    assert q.tolist() == pseudo_stochastic_round(v.to(torch.int64), 1).tolist()
    assert shift_round(torch.tensor([127, -127, 5], dtype=torch.int32))[0].tolist() == [127, -127, 5]
    assert shift_round(torch.zeros(3, dtype=torch.int32)) [1] == 0
    # 255 / 2 = 127.5 -> 128 -> saturate 127
    assert shift_round(torch.tensor([255, -255], dtype=torch.int32))[0].tolist() == [127, -127]
    # pseudo-stochastic hand case: bp = 4, 0b1011_0110 (182): q=11, frac=0110 -> upper 01 > lower 10? no
    q, s = shift_round(torch.tensor([2047, 182], dtype=torch.int32), "pseudo_stochastic")
    assert s == 4 and q.tolist() == [127, 11]


# NITI paper, Alg. 1-2 / Alg. 3 (docs/papers.md#niti-shift-round): B = 10 -> shift 3 (int8 range);
# round-to-nearest acts on the magnitude, up iff the top dropped bit is set: ties away from zero.
PAPER_VECTOR = [1020, 1012, 12, 20, -12, -20]
PAPER_NEAREST = [127, 127, 2, 3, -2, -3]  # 127.5 -> 128 -> saturated, 126.5 -> 127, 1.5 -> 2, 2.5 -> 3


def test_shift_round_nearest_pins_the_papers_rule():
    v = torch.tensor(PAPER_VECTOR, dtype=torch.int32)
    assert effective_bits(v) == 10
    q, s = shift_round(v, "nearest")
    assert s == 3 and q.dtype == torch.int8 and q.tolist() == PAPER_NEAREST
    # ties (x.5) go away from zero, for both signs; non-ties go to the nearest integer
    ties = torch.tensor([1023, 4, 12, 20, 28, -4, -12, -20, -28, 3, 5, -3, -5], dtype=torch.int32)
    q, s = shift_round(ties, "nearest")  # B(1023) = 10 -> shift 3: /8
    assert s == 3
    assert q.tolist() == [127, 1, 2, 3, 4, -1, -2, -3, -4, 0, 1, 0, -1]
    # saturation at +-127, also of the most negative int32 (its |v| is taken in int64)
    big = torch.tensor([2**31 - 1, -2**31, 2**30, -2**30 - 2**22], dtype=torch.int32)
    q, s = shift_round(big, "nearest")
    assert s == 32 - 7 and q.tolist() == [64, -64, 32, -32]
    q, s = shift_round(torch.tensor([-2**31, 2**24 * 127 + 2**23], dtype=torch.int64), "nearest")
    assert s == 25 and q.tolist() == [-64, 64]
    q, _ = shift_round(torch.tensor([254, -254, 253, -253, 3], dtype=torch.int32), "nearest")
    assert q.tolist() == [127, -127, 127, -127, 2]  # 126.5 -> 127, 127 -> 127, 1.5 -> 2
    q, s = shift_round(torch.tensor([255 * 4 + 2, -(255 * 4 + 2)], dtype=torch.int32), "nearest")
    assert s == 3 and q.tolist() == [127, -127]  # 127.75 -> 128 -> saturated


def test_training_scheme_uses_the_same_shift_round():
    """The NITI scheme has no copy of its own: its int64 working values round like core.arith's."""
    import core.schemes.niti as scheme

    assert scheme.shift_round is shift_round and scheme.effective_bits is effective_bits
    q, s = shift_round(torch.tensor(PAPER_VECTOR), "nearest", dtype=torch.int64)
    assert s == 3 and q.dtype == torch.int64 and q.tolist() == PAPER_NEAREST
    q, s = shift_round(torch.tensor([1000, -1000, 33]), "nearest", bits=4, dtype=torch.int64)
    assert s == 7 and q.tolist() == [7, -7, 0]  # 7.8 -> 8 -> saturated at 2^3 - 1
    with pytest.raises(ValueError, match="bits"):
        shift_round(torch.tensor([1000]), "nearest", bits=9)


def test_stochastic_rounding_is_floor_or_ceil_unbiased_and_seeded():
    g = torch.Generator().manual_seed(0)
    v = torch.randint(-30000, 30000, (20000,), generator=g, dtype=torch.int32)
    q1, s = shift_round(v, "stochastic", seed=3)
    q2, _ = shift_round(v, "stochastic", seed=3)
    q3, _ = shift_round(v, "stochastic", torch.Generator().manual_seed(3))
    assert torch.equal(q1, q2) and torch.equal(q1, q3)
    # sign-magnitude: -v rounds to -q with the same random numbers
    assert torch.equal(shift_round(-v, "stochastic", seed=3)[0], -q1)
    exact = v.double() / 2 ** s
    assert bool(((q1.double() - exact).abs() < 1).all())
    assert abs(float((q1.double() - exact).mean())) < 0.02


@pytest.mark.parametrize("stride,pad", [(1, 0), (1, 1), (2, 1)])
def test_conv_matches_integer_conv(stride, pad):
    g = torch.Generator().manual_seed(stride * 10 + pad)
    x, w = rand_i8(g, 2, 3, 7, 6), rand_i8(g, 4, 3, 3, 3)
    r = niti_conv2d(x, -4, w, -6, stride=stride, padding=pad, rounding="pseudo_stochastic")
    ref = F.conv2d(x.double(), w.double(), stride=stride, padding=pad).to(torch.int64)
    assert torch.equal(r.acc.to(torch.int64), ref)
    q, s = shift_round(ref, "pseudo_stochastic")
    assert torch.equal(r.values, q) and r.shift == s and r.exp == -10 + s


def test_bad_input():
    a = torch.zeros(2, 3, dtype=torch.int8)
    with pytest.raises(ValueError, match="int8"):
        niti_matmul(a.to(torch.int16), torch.zeros(3, 2, dtype=torch.int8))
    with pytest.raises(ValueError, match="inner dimension"):
        niti_matmul(a, torch.zeros(2, 2, dtype=torch.int8))
    with pytest.raises(ValueError, match="2-D"):
        niti_matmul(a[0], a)
    with pytest.raises(ValueError, match="channel mismatch"):
        niti_conv2d(torch.zeros(1, 2, 4, 4, dtype=torch.int8), 0,
                    torch.zeros(1, 3, 3, 3, dtype=torch.int8), 0)
    with pytest.raises(ValueError, match="rounding"):
        shift_round(torch.tensor([300]), "truncate")
    with pytest.raises(ValueError, match="int32 accumulation"):
        niti_matmul(torch.zeros(1, 200000, dtype=torch.int8), torch.zeros(200000, 1, dtype=torch.int8))
