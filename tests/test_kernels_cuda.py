"""Runs the shared CUDA-twin tests (tests/cudasim) in a separate process under
Numba's CUDA simulator, so CI checks the GPU kernels without a GPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import core

ROOT = Path(__file__).resolve().parent.parent


def test_cuda_twins_under_the_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "cudasim")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]


def test_cuda_backend_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="backend 'cuda' needs a CUDA tensor"):
        core.quantize(torch.randn(4), "fp8_e4m3", backend="cuda")


GPU_SPECS = ["fp8_e4m3", "fp8_e5m2", "bf16", "fp4_e2m1", "mls(ex=2,mx=1,eg=8,mg=1,group=nc)",
             "mls(ex=2,mx=4,eg=8,mg=1,group=c)", "mu8", "niti", "mx(elem=fp8_e4m3)", "int(bits=4,scale=channel)",
             "scaled(elem=fp8_e4m3)", "scaled(elem=fp8_e4m3,block=row)", "nvfp4"]  # scaled/nvfp4: torch path


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (runs on the device machine)")
@pytest.mark.parametrize("spec", GPU_SPECS)
@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_quantize_on_cuda_tensors_equals_cpu_bit_for_bit(spec, rounding):
    """End to end on a real GPU: CUDA tensors in, CUDA tensors out, the CPU kernels' bits."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 16, 6, 6, generator=g) * torch.logspace(-4, 4, 6)
    x[0, 0, 0, :3] = torch.tensor([float("nan"), float("inf"), -0.0])
    y_cpu = core.quantize(x, spec, rounding, seed=21)
    y_gpu = core.quantize(x.cuda(), spec, rounding, seed=21)
    assert y_gpu.device.type == "cuda" and y_gpu.dtype == x.dtype
    y_gpu = y_gpu.cpu()
    assert torch.equal(y_gpu.isnan(), y_cpu.isnan())
    assert torch.equal(y_gpu.nan_to_num(0.0), y_cpu.nan_to_num(0.0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (runs on the device machine)")
@pytest.mark.parametrize("chunk", [1, 8])
def test_lowp_matmul_on_cuda_equals_cpu(chunk):
    """The low-precision accumulation simulator on CUDA tensors (numba.cuda twin) == the CPU kernel."""
    from core.arith import lowp_matmul

    g = torch.Generator().manual_seed(chunk)
    a, b = torch.randn(16, 300, generator=g), torch.randn(300, 9, generator=g)
    r_cpu = lowp_matmul(a, b, "bf16", chunk=chunk)
    r_gpu = lowp_matmul(a.cuda(), b.cuda(), "bf16", chunk=chunk)
    assert torch.equal(r_gpu.output.cpu(), r_cpu.output) and r_gpu.swamped == r_cpu.swamped


def test_lowp_matmul_device_mismatch_is_a_clear_error():
    from core.arith import lowp_matmul

    with pytest.raises(ValueError, match="runs on the CPU or a CUDA GPU"):
        lowp_matmul(torch.ones(2, 2, device="meta"), torch.ones(2, 2, device="meta"), "bf16")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (runs on the device machine)")
@pytest.mark.parametrize("spec,rounding", [(s, r) for s in ["binary8p3", "fp8_e4m3fnuz", "e8m0", "float8_e4m3fn",
                                                            "float(e=5,m=0)"]
                                           for r in ["up", "down", "nearest_away", "odd", "stochastic_rbits8",
                                                     "truncate"]] + [("nf4", "nearest"), ("nf4(block=32)", "nearest")])
def test_new_formats_and_modes_on_cuda_equal_cpu_bit_for_bit(spec, rounding):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(64, 16, 6, 6, generator=g) * torch.logspace(-4, 4, 6)
    x[0, 0, 0, :5] = torch.tensor([float("nan"), float("inf"), -0.0, 3.0, 65536.0])
    if spec.startswith("nf4"):
        x[0, 0, 0, 0] = 1.0  # nf4 encodes no NaN; quantize keeps it, but keep the case simple
    y_cpu = core.quantize(x, spec, rounding, seed=21)
    y_gpu = core.quantize(x.cuda(), spec, rounding, seed=21).cpu()
    assert torch.equal(y_gpu.isnan(), y_cpu.isnan())
    assert torch.equal(y_gpu.nan_to_num(0.0), y_cpu.nan_to_num(0.0))
