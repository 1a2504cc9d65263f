"""Quantized layers: forward/backward equal the seed-000 Alg. 2 formulas, STE, switches, determinism."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import core
from core.train import LayerInfo, QConv2d, QLinear, QuantConfig, TensorQuant, convert, get_scheme, quantized_layers
from core.train.qlayers import tensor_seed

MLS = "mls(ex=2,mx=1,eg=8,mg=1,group=nc)"


def _layer(model: nn.Module):
    return [m for _, m in quantized_layers(model)][0]


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_fp32_specs_reproduce_float_layer(kind):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 5)) if kind == "linear" else nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1))
    shape = (4, 6) if kind == "linear" else (2, 3, 9, 9)
    q = convert(copy.deepcopy(m), QuantConfig(w="fp32", a="fp32", e="fp32", g="fp32"))
    x1 = torch.randn(*shape, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_()
    m(x1).square().sum().backward()
    q(x2).square().sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(m[0].weight.grad, _layer(q).weight.grad)
    torch.testing.assert_close(m[0].bias.grad, _layer(q).bias.grad)


def test_linear_forward_backward_match_alg2_exactly():
    torch.manual_seed(1)
    lin = nn.Linear(16, 8)
    qc = QuantConfig(w=TensorQuant(MLS, "nearest"), a=TensorQuant("fp8_e4m3"), e=TensorQuant(MLS, "stochastic"),
                     g=TensorQuant("bf16"))
    q = convert(nn.Sequential(copy.deepcopy(lin)), qc, seed=7)
    layer = _layer(q)
    layer.step = 3
    x = torch.randn(5, 16, requires_grad=True)
    y = q(x)
    w, b = lin.weight.detach(), lin.bias.detach()
    wq, xq = core.quantize(w, MLS), core.quantize(x.detach(), "fp8_e4m3")
    assert torch.equal(y.detach(), F.linear(xq, wq, b))
    gy = torch.randn(5, 8)
    y.backward(gy)
    eq = core.quantize(gy, MLS, "stochastic", seed=tensor_seed(7, 3, 0, "e"))
    assert torch.equal(x.grad, eq @ wq)  # grad-input GEMM: qE x qW
    assert torch.equal(layer.weight.grad, core.quantize(eq.t() @ xq, "bf16"))  # G = Q_g(qE^T x qA)
    assert torch.equal(layer.bias.grad, gy.sum(0))  # bias gradient stays float


def test_conv_bifurcated_error_uses_ew_for_weight_gradient():
    torch.manual_seed(2)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    qc = QuantConfig(w="fp8_e4m3", a="fp8_e4m3", e="int(bits=8,scale=tensor)", ew="bf16")
    q = convert(nn.Sequential(copy.deepcopy(conv)), qc)
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    gy = torch.randn(2, 4, 6, 6)
    q(x).backward(gy)
    xq, wq = core.quantize(x.detach(), "fp8_e4m3"), core.quantize(conv.weight.detach(), "fp8_e4m3")
    e8, e16 = core.quantize(gy, "int(bits=8,scale=tensor)"), core.quantize(gy, "bf16")
    gx = torch.nn.grad.conv2d_input(x.shape, wq, e8, padding=1)
    gw = torch.nn.grad.conv2d_weight(xq, conv.weight.shape, e16, padding=1)
    torch.testing.assert_close(x.grad, gx, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(_layer(q).weight.grad, gw, rtol=1e-5, atol=1e-5)


def test_convert_shares_parameters_and_numbers_layers():
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 6 * 6, 10))
    params = [p for p in m.parameters()]
    q = convert(m, None, seed=5)
    assert isinstance(q[0], QConv2d) and isinstance(q[3], QLinear)
    assert [p for p in q.parameters()] == params  # same Parameter objects
    assert [(n, layer.layer_index, layer.seed) for n, layer in quantized_layers(q)] == [("0", 0, 5), ("3", 1, 5)]
    only_linear = convert(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Linear(4, 4)),
                          module_filter_fn=lambda mod, fqn: isinstance(mod, nn.Linear))
    assert type(only_linear[0]) is nn.Conv2d and isinstance(only_linear[1], QLinear)


def test_first_last_switch_of_mls_scheme():
    m = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2))
    q = get_scheme("mls").prepare(m, seed=0)
    quant = [layer.quant for _, layer in quantized_layers(q)]
    assert quant[0] is None and quant[-1] is None  # MLS paper, App. B
    assert quant[1].w.fmt == MLS and quant[1].e.rounding == "stochastic" and quant[1].g is None
    q2 = get_scheme("mls", first_last=True).prepare(copy.deepcopy(m), seed=0)
    assert all(layer.quant is not None for _, layer in quantized_layers(q2))
    info = LayerInfo(index=0, name="x", count=1, kind="Linear")
    assert info.is_first and info.is_last


def test_stochastic_rounding_is_seeded_per_step_and_layer():
    torch.manual_seed(3)
    m = nn.Sequential(nn.Linear(32, 32))
    qc = QuantConfig(a=TensorQuant(MLS, "stochastic"))
    x = torch.randn(8, 32)
    outs = []
    for step in (0, 0, 1):
        q = convert(copy.deepcopy(m), qc, seed=11)
        _layer(q).step = step
        outs.append(q(x).detach())
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[0], outs[2])
    assert tensor_seed(11, 0, 0, "a") != tensor_seed(11, 0, 1, "a") != tensor_seed(12, 0, 0, "a")


def test_straight_through_estimator_passes_gradient():
    q = convert(nn.Sequential(nn.Linear(4, 1, bias=False)), QuantConfig(a="fp8_e4m3", w="fp8_e4m3"))
    with torch.no_grad():
        _layer(q).weight.fill_(1.0)
    x = torch.tensor([[0.1, 0.2, 0.3, 0.4]], requires_grad=True)
    q(x).sum().backward()
    assert torch.equal(x.grad, torch.ones(1, 4))  # d/dx of Q(x) taken as 1


def test_capture_records_float_and_quantized_tensors():
    q = convert(nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2)), QuantConfig(w=MLS, a=MLS, e=MLS))
    for _, layer in quantized_layers(q):
        layer.capture = {}
    q(torch.randn(5, 4)).sum().backward()
    cap = _layer(q).capture
    assert set(cap) == {"w", "wq", "a", "aq", "e", "eq", "g", "gq"}
    assert torch.equal(cap["aq"], core.quantize(cap["a"], MLS))


def test_bad_specs_and_roundings_raise_value_error():
    with pytest.raises(ValueError):
        TensorQuant("mls(ex=2")
    with pytest.raises(ValueError, match="rounding mode 'sideways'"):
        TensorQuant("fp8_e4m3", "sideways")
    with pytest.raises(ValueError, match="does not support rounding='up'"):
        TensorQuant("mls(ex=2,mx=1,eg=8,mg=1,group=nc)", "up")
    assert TensorQuant(" fp8_e4m3 ").fmt == str(core.parse_format("fp8_e4m3"))
    assert QuantConfig(w="none").is_float


def test_compiled_tensor_seed_equals_the_python_definition():
    """The compiled seed chain == the plain-Python splitmix64 chain, including 64-bit seeds and steps."""
    from core.train.qlayers import TENSORS
    from naive import tensor_seed_reference

    for seed in (0, 1, 7, 2**62 + 5, 2**63 + 11, 2**64 - 1, -3):
        for step in (0, 1, 123456, 2**40):
            for layer in (0, 3, 1000):
                for t in TENSORS:
                    assert tensor_seed(seed, step, layer, t) == tensor_seed_reference(seed, step, layer, TENSORS[t])


def test_random_words_equal_the_python_definition():
    """The one splitmix64 (core.kernels.grid_round) behind random_bits == the plain-Python chain."""
    from core.formats.grid import random_bits
    from naive import random_words_reference

    for seed in (0, 1, 7, 2**62 + 5, 2**63 + 11, 2**64 - 1):
        for n, offset in ((0, 0), (9, 0), (50, 3), (5, 2**33)):
            assert random_bits(seed, n, offset).tolist() == random_words_reference(seed, n, offset)


def test_layer_seeds_per_step_equal_tensor_seed():
    """A layer's cached per-step seeds are tensor_seed of each tensor, and follow step changes."""
    from core.train.qlayers import TENSORS, QLinear

    layer = QLinear(3, 2)
    layer.seed, layer.layer_index = 2**63 + 9, 4
    for step in (0, 5, 5, 6):
        layer.step = step
        for t, code in TENSORS.items():
            assert layer._seeds_now()[code] == tensor_seed(layer.seed, step, 4, t)


def test_layer_calls_tensor_quant_subclasses_as_they_are():
    """A TensorQuant subclass with its own __call__ (LogBTQ's ClampQuant clamps before quantizing)
    is what the layer applies, not the bare spec quantizer."""
    from core.schemes.logbtq import ClampQuant
    from core.train.qlayers import QLinear, QuantConfig, assign

    layer = QLinear(4, 3)
    clamp = ClampQuant("fp8_e4m3", clip=0.5)
    assign(layer, QuantConfig(a=clamp))
    x = torch.tensor([[3.0, -2.0, 0.25, 0.1]])
    assert torch.equal(layer._q("a", x), core.quantize(x.clamp(-0.5, 0.5), "fp8_e4m3"))
