"""NITI (NITI paper; docs/papers.md#niti-format): integer-only step (float trap), Alg. 3, integer CE gradient,
training."""

from __future__ import annotations

import tempfile

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import core.schemes  # noqa: F401
from core.formats import pseudo_stochastic_round
from core.models import ModelConfig, build_model
from core.schemes.compare import train
from core.arith import effective_bits, shift_round
from core.schemes.niti import NitiNet, integer_ce_grad, psr_bits_hist, quantize_input
from core.train import get_scheme


@pytest.fixture(autouse=True)
def _stores_in_tmp(tmp_path, monkeypatch):
    """compare.train() puts each run store in tempfile's directory: keep them in tmp_path."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


# (value, bp, expected) worked by hand from Alg. 3 (bits written out)
ALG3_CASES = [
    (0b1011_0110, 4, 0b1011),      # frac 0110: upper 01 = 1 <= lower 10 = 2 -> truncate (11)
    (0b1011_1001, 4, 0b1100),      # frac 1001: upper 10 = 2 > lower 01 = 1 -> round up (12)
    (-0b1011_1001, 4, -0b1100),    # sign restored
    (0b10111, 3, 0b10),            # bp odd: drop lowest bit, frac 11: upper 1 == lower 1 -> 2
    (0b10101, 3, 0b11),            # bp odd: frac 10: upper 1 > lower 0 -> 3
    (0b11, 1, 0b1),                # bp = 1: the only fraction bit is dropped -> truncate
    (0b1111_0000, 4, 0b1111),      # frac 0000 -> 15
    (0b111_1100_0001, 6, 0b11111), # frac 000001: upper 000 = 0, lower 001 = 1 -> truncate (31)
    (0b111_1110_0001, 6, 0b100000),# frac 100001: upper 100 = 4 > lower 001 -> 32
    (5, 0, 5),
]


@pytest.mark.parametrize("v,bp,want", ALG3_CASES)
def test_alg3_hand_cases(v, bp, want):
    assert int(pseudo_stochastic_round(torch.tensor([v]), bp)[0]) == want


def test_effective_bits_and_shift_round():
    assert effective_bits(torch.zeros(3, dtype=torch.int64)) == 0
    assert effective_bits(torch.tensor([-128, 3])) == 8
    q, sh = shift_round(torch.tensor([1000, -1000, 127]), "nearest", dtype=torch.int64)
    assert sh == 3 and q.tolist() == [125, -125, 16]
    assert psr_bits_hist(torch.tensor([0b1011_1001]), 4, bins=4) == [0, 1, 0, 0]


class FloatTrap(TorchDispatchMode):
    """Fails on any kernel that reads or writes a floating-point tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        for t in tree_flatten((args, kwargs, out))[0]:
            if isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex()):
                raise AssertionError(f"floating-point kernel {func} in the integer step")
        self.ops.append(str(func))
        return out


@pytest.mark.parametrize("model", ["mlp", "lenet5", "vgg7"])
def test_no_float_kernel_in_training_step(model):
    torch.manual_seed(0)
    x = torch.randn(16, 1, 8, 8)
    y = torch.randint(0, 10, (16,))
    net = NitiNet(build_model(ModelConfig(name=model, hidden=(32,), width=0.125), (1, 8, 8), 10), seed=0)
    q, s = quantize_input(x)  # the float step: before the trap
    w_before = [op.w.clone() for op in net.layers()]
    with FloatTrap() as trap:
        logits, s_l = net.integer_step(q, s, y, m_u=3, step=0)
    assert len(trap.ops) > 10 and any("mm" in o for o in trap.ops)
    assert logits.dtype == torch.int64 and int(logits.abs().max()) <= 127
    assert any(bool((op.w != w0).any()) for op, w0 in zip(net.layers(), w_before))
    assert all(int(op.w.abs().max()) <= 127 for op in net.layers())


@pytest.mark.parametrize("s_a", [-4, -2, -8, -10])
def test_integer_ce_grad_sign_and_order(s_a):
    g = torch.Generator().manual_seed(1)
    a = torch.randint(-127, 128, (64, 10), generator=g)
    y = torch.randint(0, 10, (64,), generator=g)
    e, raw = integer_ce_grad(a, s_a, y, torch.Generator().manual_seed(2))
    ref = torch.softmax(a.double() * 2.0 ** s_a, 1) - torch.nn.functional.one_hot(y, 10).double()
    # sign: the target entry is negative, the others positive (raw) / non-negative (rounded)
    assert bool((torch.sign(raw) == torch.sign(ref)).all())
    tgt = torch.nn.functional.one_hot(y, 10).bool()
    assert bool((e[tgt] <= 0).all()) and bool((e[~tgt] >= 0).all())
    assert int(e.abs().max()) <= 127
    # order: among the non-target entries of a row, larger float gradient -> larger-or-equal int one
    for r in range(a.shape[0]):
        idx = [i for i in range(10) if i != int(y[r])]
        fr, ir = ref[r, idx], raw[r, idx]
        order = torch.argsort(fr)
        assert bool((ir[order][1:] >= ir[order][:-1]).all())


@pytest.mark.parametrize("model", ["mlp", "lenet5"])
def test_arith_gemm_matches_torch_gemm(model):
    torch.manual_seed(0)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    nets = [NitiNet(build_model(ModelConfig(name=model, hidden=(32,)), (1, 8, 8), 10), seed=0, gemm=g)
            for g in ("torch", "arith")]
    q, s = quantize_input(x)
    outs = [n.integer_step(q, s, y, m_u=3, step=0) for n in nets]
    assert torch.equal(outs[0][0], outs[1][0]) and outs[0][1] == outs[1][1]
    assert all(torch.equal(a.w, b.w) for a, b in zip(nets[0].layers(), nets[1].layers()))


def test_niti_trains_digits():
    r = train(get_scheme("niti"), epochs=3)
    assert r.status == "done"
    assert r.result["test_acc"] > 0.85
    names = set(r.store.metrics(r.id, role="niti").name)
    assert {"s_a", "s_w", "B_acc", "B_g", "sat_w", "psr_bin00"} <= names


@pytest.mark.parametrize("kw", [dict(m_u=0), dict(m_u=8), dict(m_u_schedule="10:9"), dict(m_u_schedule="x"),
                                dict(gemm="float")])
def test_bad_input(kw):
    with pytest.raises(ValueError):
        get_scheme("niti", **kw)
