"""The accumulator width the MLS intra-group partial sums need (MLS paper, section 4.2, Eq. 6-7;
docs/papers.md#mls-acc-bits), against a hand count and the plain-Python per-addition reference."""

from __future__ import annotations

import pytest
import torch

import core
from core.arith import accumulator_bits, mls_conv2d, signed_bits
from naive_arith import mls_conv_overflows

MLS24 = core.parse_format("mls(ex=2,mx=4,eg=8,mg=1,group=nc)")


def test_signed_bits():
    assert [signed_bits(v) for v in (0, 1, -1, 2, -2, 3, 127, 128, -128, -129)] == [1, 2, 1, 3, 2, 3, 8, 9, 8, 9]


def test_all_top_codes_need_19_bits_by_hand():
    """<2,4>: the top element is (16 + 15) << (3 - 1) = 124 on the common point; a 3x3 window of top x top
    products sums to 9 * 124^2 = 138,384 > 2^17: 18 magnitude bits and a sign, more than the paper's 16."""
    w = core.encode(torch.full((2, 3, 3, 3), 0.5), MLS24)  # every element is St * Sg * top code
    a = core.encode(torch.full((1, 3, 4, 4), 2.0), MLS24)
    assert w.codes.max() == a.codes.max() == (1 << 6) - 1
    assert accumulator_bits(w, a, padding=1) == 19
    assert int(mls_conv2d(w, a, padding=1, acc_bits=19).overflows.sum()) == 0
    assert int(mls_conv2d(w, a, padding=1, acc_bits=18, path="simulate").overflows.sum()) > 0
    assert accumulator_bits(w, a, padding=0) == 19
    # a 2-D product (mls_matmul) is a window of one product: 124^2 = 15,376 -> 15 bits
    w2, a2 = core.encode(torch.full((2, 3), 0.5), MLS24), core.encode(torch.full((4, 3), 1.0), MLS24)
    assert accumulator_bits(w2, a2) == 15


@pytest.mark.parametrize("seed,stride,padding", [(0, 1, 1), (1, 1, 1), (2, 1, 1), (3, 2, 1), (4, 2, 0), (5, 1, 0)])
def test_running_sums_match_the_python_reference(seed, stride, padding):
    """The width is the smallest acc_bits at which the per-addition reference counts no overflow (mixed signs:
    a running sum can exceed the final one)."""
    g = torch.Generator().manual_seed(seed)
    w = core.encode(torch.randn(3, 2, 3, 3, generator=g), MLS24)
    a = core.encode(torch.randn(2, 2, 5, 5, generator=g), MLS24)
    bits = accumulator_bits(w, a, stride=stride, padding=padding)
    counts, _ = mls_conv_overflows(w, a, stride, padding, bits, "wrap")
    assert sum(counts) == 0
    counts, _ = mls_conv_overflows(w, a, stride, padding, bits - 1, "wrap")
    assert sum(counts) > 0


def test_telemetry_logs_the_width_of_each_mls_layer():
    """A conv layer trained with MLS W and A logs ``acc_bits``: the width of its own operands (the codes the
    layer used: decode(encode) equals the captured quantized tensors), on the first ``acc_bits`` inputs."""
    from torch import nn

    from core.formats import Encoded
    from core.train import QuantConfig, TelemetryConfig, TensorQuant, convert
    from core.train.telemetry import Telemetry
    from core.train.qlayers import tensor_seed

    tq = TensorQuant("mls(ex=2,mx=4,eg=8,mg=1,group=nc)", "stochastic")
    model = convert(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)),
                    QuantConfig(w=tq, a=tq), seed=7)
    tel = Telemetry(TelemetryConfig(every=1, tensors=("w", "a"), shadow=(), hist=False, acc_bits=2), seed=7)
    tel.arm(model)
    x = torch.randn(5, 3, 6, 6, generator=torch.Generator().manual_seed(3))
    model(x).sum().backward()
    conv = model[0]
    cap = dict(conv.capture)
    rows, _, _ = tel.collect(model, 0)
    got = {r.layer: r.value for r in rows if r.name == "acc_bits"}
    assert set(got) == {"0", "2"}
    wq = core.encode(cap["w"], tq.spec, "stochastic", tensor_seed(conv.seed, 0, conv.layer_index, "w"))
    aq = core.encode(cap["a"], tq.spec, "stochastic", tensor_seed(conv.seed, 0, conv.layer_index, "a"))
    assert torch.equal(core.decode(wq), cap["wq"]) and torch.equal(core.decode(aq), cap["aq"])
    a2 = Encoded(aq.spec, aq.codes[:2], {"tensor": aq.scales["tensor"], "group": aq.scales["group"][:2]}, aq.dtype)
    assert got["0"] == accumulator_bits(wq, a2, 1, 1)
    assert 2 <= got["2"] <= 15  # a linear layer: windows of one product, at most 14 magnitude bits


def test_acc_bits_is_measured_every_acc_bits_every_steps():
    from torch import nn

    from core.train import QuantConfig, TelemetryConfig, TensorQuant, convert
    from core.train.telemetry import Telemetry

    tq = TensorQuant("mls(ex=2,mx=4,eg=8,mg=1,group=nc)", "nearest")
    model = convert(nn.Sequential(nn.Linear(6, 4), nn.Linear(4, 3)), QuantConfig(w=tq, a=tq), seed=0)
    tel = Telemetry(TelemetryConfig(every=2, tensors=("w",), hist=False, acc_bits=1, acc_bits_every=6))
    measured = []
    for step in range(0, 14, 2):
        tel.arm(model)
        model(torch.randn(3, 6)).sum().backward()
        rows, _, _ = tel.collect(model, step)
        if any(r.name == "acc_bits" for r in rows):
            measured.append(step)
    assert measured == [0, 6, 12]
    with pytest.raises(ValueError, match="acc_bits_every"):
        TelemetryConfig(acc_bits_every=0)


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_the_telemetry_encodes_the_head_of_the_batch_as_the_whole_batch(rounding):
    """acc_bits telemetry encodes only the first k inputs (plus one holding the batch's max): the codes and
    scales of those inputs equal the encoding of the whole batch."""
    from core.train.telemetry import _head_with_tensor_max

    g = torch.Generator().manual_seed(7)
    a = torch.randn(16, 3, 5, 5, generator=g) * torch.linspace(0.1, 4, 16).reshape(16, 1, 1, 1)
    full = core.encode(a, MLS24, rounding, 123)
    head = core.encode(_head_with_tensor_max(a, 4), MLS24, rounding, 123)
    assert torch.equal(full.codes[:4], head.codes[:4])
    assert torch.equal(full.scales["tensor"], head.scales["tensor"])
    assert torch.equal(full.scales["group"][:4], head.scales["group"][:4])
