"""Low-precision accumulation (LogBTQ paper, Table 1 "acc 8"; Wang et al. 2018 chunk-based
accumulation; docs/papers.md#logbtq-acc8)."""

from __future__ import annotations

import math

import pytest
import torch

from core.arith import lowp_matmul
from naive_arith import lowp_dot


@pytest.mark.parametrize("spec", ["fp8_143", "fp8_152", "bf16", "fp16"])
@pytest.mark.parametrize("chunk", [1, 3, 8])
def test_matches_python_loop_with_core_quantize(spec, chunk):
    g = torch.Generator().manual_seed(len(spec) * 10 + chunk)
    a = torch.randn(3, 20, generator=g) * 4
    b = torch.randn(20, 2, generator=g)
    a[0, :5] = 0.0  # zero addends are never swamped
    a[1, 3] = 1e-6  # tiny addend, swamped
    r = lowp_matmul(a, b, spec, chunk=chunk)
    rt = lowp_matmul(a, b, spec, chunk=chunk, backend="torch")
    assert torch.equal(r.output, rt.output) and torch.equal(r.swamped_per_output, rt.swamped_per_output)
    total = 0
    for i in range(3):
        for j in range(2):
            s, sw = lowp_dot(a[i].tolist(), b[:, j].tolist(), spec, chunk)
            assert r.output[i, j].item() == s
            assert r.swamped_per_output[i, j].item() == sw
            total += sw
    assert r.swamped == total


def test_overflow_follows_format_rule():
    a = torch.full((1, 4), 200.0)
    b = torch.ones(4, 1)
    assert lowp_matmul(a, b, "fp8_143").output.item() == 240.0  # E4M3-style saturation
    assert math.isinf(lowp_matmul(a * 1e3, b, "fp16").output.item())


def test_chunking_reduces_swamping_on_long_sum():
    a = torch.full((1, 4096), 0.01)
    b = torch.ones(4096, 1)
    exact = 4096 * float(torch.tensor(0.01, dtype=torch.float32))
    plain = lowp_matmul(a, b, "bf16")
    chunked = lowp_matmul(a, b, "bf16", chunk=64)
    assert chunked.swamped < plain.swamped
    assert plain.swamped > 1000
    assert abs(chunked.output.item() - exact) < abs(plain.output.item() - exact) / 10
    ones = lowp_matmul(torch.ones(1, 4096), torch.ones(4096, 1), "bf16")
    assert ones.output.item() == 256.0 and ones.swamped == 4096 - 256
    assert lowp_matmul(torch.ones(1, 4096), torch.ones(4096, 1), "bf16", chunk=64).output.item() == 4096


def test_non_float_format_uses_torch_loop():
    a, b = torch.randn(3, 5), torch.randn(5, 2)
    r = lowp_matmul(a, b, "int(bits=8,scale=tensor)")
    assert r.output.shape == (3, 2)
    with pytest.raises(ValueError, match="float format"):
        lowp_matmul(a, b, "int(bits=8,scale=tensor)", backend="numba")


def test_bad_input():
    a = torch.randn(2, 3)
    with pytest.raises(ValueError, match="inner dimension"):
        lowp_matmul(a, torch.randn(2, 2), "bf16")
    with pytest.raises(ValueError, match="dtype mismatch"):
        lowp_matmul(a, torch.randn(3, 2, dtype=torch.float64), "bf16")
    with pytest.raises(ValueError, match="floating"):
        lowp_matmul(a.to(torch.int32), torch.zeros(3, 2, dtype=torch.int32), "bf16")
    with pytest.raises(ValueError, match="chunk"):
        lowp_matmul(a, torch.randn(3, 2), "bf16", chunk=0)
    with pytest.raises(ValueError, match="2-D"):
        lowp_matmul(a[0], torch.randn(3, 2), "bf16")
    with pytest.raises(ValueError):
        lowp_matmul(a, torch.randn(3, 2), "nosuchformat")
