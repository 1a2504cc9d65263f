"""CUDA twins vs the CPU kernels and the float64 reference, bit for bit.

Runs under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, set before numba
is imported: the main suite starts this module in a separate pytest process,
see tests/test_kernels_cuda.py) and for real on a GPU machine.  Small arrays
and a small THREADS_PER_BLOCK keep the simulator fast.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import core
from core.kernels import config
from core.kernels.grid_round import group_absmax_3d, quantize_grid_3d
from core.kernels.grid_round_cuda import cuda_available, group_absmax_3d_cuda, quantize_grid_3d_cuda
from core.formats.dispatch import quantize_blocked_reference as _reference

pytestmark = pytest.mark.skipif(not cuda_available(), reason="needs a GPU or NUMBA_ENABLE_CUDASIM=1")

SPECS = ["fp8_e4m3", "fp8_e5m2", "bf16", "fp4_e2m1", "mls(ex=2,mx=1,eg=8,mg=1,group=nc)",
         "mx(elem=fp8_e4m3,block=8)", "niti(bits=8)", "int(bits=4,scale=channel)"]


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setattr(config, "THREADS_PER_BLOCK", 32)


def _case(spec: str, dtype=np.float32):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((2, 3, 16)) * 10).astype(dtype)
    x[0, 0, :4] = [0.0, -0.0, np.nan, np.inf]
    fmt = core.parse_format(spec)
    if fmt.scaled:
        view = fmt.view(torch.from_numpy(x))
        x3 = view.to_x3(torch.from_numpy(x)).contiguous()
        s2, _ = fmt.scales(x3, "reference")
        g = fmt.element_grid
        ovf = infv = g.maxval
    else:
        x3 = torch.from_numpy(x)
        s2 = torch.ones((2, 3), dtype=torch.float64)
        g = fmt.grid
        ovf, infv = fmt.overflow_value, fmt.inf_value
    return x3, s2.contiguous(), g, ovf, infv


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("rounding", ["nearest", "stochastic", "truncate"])
def test_cuda_kernel_equals_cpu_kernel_and_reference(spec, rounding):
    mode = {"nearest": 0, "stochastic": 1, "truncate": 2}[rounding]
    x3, s2, g, ovf, infv = _case(spec)
    xn, sn = x3.numpy(), s2.numpy()
    out_gpu = np.empty_like(xn)
    quantize_grid_3d_cuda(xn, sn, out_gpu, g.m, g.emin, g.subnormals, g.maxval, ovf, infv, mode, 9)
    out_cpu = np.empty_like(xn)
    quantize_grid_3d(xn, sn, out_cpu, g.m, g.emin, g.subnormals, g.maxval, ovf, infv, mode, 9)
    ref = _reference(x3, s2, g, ovf, infv, rounding, 9).to(torch.float32).numpy()
    np.testing.assert_array_equal(out_gpu.view(np.uint32), out_cpu.view(np.uint32))
    np.testing.assert_array_equal(np.isnan(out_gpu), np.isnan(ref))
    np.testing.assert_array_equal(np.nan_to_num(out_gpu), np.nan_to_num(ref))


def test_cuda_absmax_equals_cpu():
    x3, *_ = _case("fp8_e4m3")
    xn = x3.numpy()
    out = np.zeros(xn.shape[:2])
    group_absmax_3d_cuda(xn, out)
    np.testing.assert_array_equal(out, group_absmax_3d(xn))


@pytest.mark.parametrize("rounding", ["nearest", "stochastic", "truncate"])
def test_cuda_mulaw_equals_cpu(rounding):
    from core.formats.mulaw import _padded, _starts, _tables
    from core.kernels.grid_round_cuda import mulaw_quantize_cuda
    from core.kernels.mulaw import mulaw_quantize

    mode = {"nearest": 0, "stochastic": 1, "truncate": 2}[rounding]
    codes, _ = _tables(8, 255.0, 2.0)
    thr = _padded(8, 255.0, 2.0)
    x = (np.random.default_rng(2).standard_normal(96) * 1.5).astype(np.float32)
    x[:3] = [np.nan, np.inf, -0.0]
    a, b = np.empty_like(x), np.empty_like(x)
    st = _starts(8, 255.0, 2.0)
    mulaw_quantize_cuda(x, a, codes, thr, st, 127, 255.0, 2.0, mode, 4)
    mulaw_quantize(x, b, codes, thr, st, 127, 255.0, 2.0, mode, 4)
    np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("rounding", ["nearest", "stochastic", "truncate"])
@pytest.mark.parametrize("group", ["nc", "none"])
def test_cuda_fused_mls_twins_equal_cpu_kernels(rounding, group):
    """Group scales and the row rounding of the fused MLS path: GPU twin == CPU kernel, bit for bit."""
    from core.kernels.grid_round_cuda import mls_group_scales_cuda, round_rows_sat_cuda
    from core.kernels.grid_round import group_absmax_rows
    from core.kernels.mls_fused import GROUP_CODES, mls_scales, round_rows_sat

    mode = {"nearest": 0, "stochastic": 1, "truncate": 2}[rounding]
    fmt = core.parse_format(f"mls(ex=2,mx=1,eg=4,mg=1,group={group})")
    g = fmt.element_grid
    x = (np.random.default_rng(3).standard_normal((4, 3, 5)) * np.logspace(-5, 2, 5)).astype(np.float32)
    x[0, 0, :3] = [np.nan, np.inf, -0.0]
    flat = x.reshape(-1)
    gmax = group_absmax_rows(flat, 12).reshape(4, 3)
    s2, sg = np.empty((4, 3)), np.empty((4, 3))
    ge, gk = np.empty((4, 3), np.int64), np.empty((4, 3), np.int64)
    st = mls_scales(gmax, GROUP_CODES[group], fmt.eg, fmt.mg, s2, sg, ge, gk)
    red = gmax if group == "nc" else np.full_like(gmax, st)
    d = [np.empty(12), np.empty(12), np.empty(12, np.int64), np.empty(12, np.int64)]
    mls_group_scales_cuda(red.reshape(-1), st, fmt.eg, fmt.mg, *d)
    for a, b in zip(d, (s2, sg, ge, gk)):
        np.testing.assert_array_equal(a, b.reshape(-1))
    out_cpu, out_gpu = np.empty_like(flat), np.empty_like(flat)
    round_rows_sat(flat, s2.reshape(-1), out_cpu, g.m, g.emin, g.subnormals, g.maxval, mode, 7)
    round_rows_sat_cuda(flat, s2.reshape(-1), out_gpu, g.m, g.emin, g.subnormals, g.maxval, mode, 7)
    np.testing.assert_array_equal(out_gpu.view(np.uint32), out_cpu.view(np.uint32))


@pytest.mark.parametrize("seed", [0, 1, 7, 9, 2**31 - 1, 2**62 + 5])
def test_cuda_stochastic_words_equal_cpu_for_every_seed(seed):
    """Regression: keys below 2^63 reached the kernels as int64 and the random words were computed
    in float64 (int64 + uint64 promotion), so GPU and CPU disagreed for about half of the seeds."""
    x3, s2, g, ovf, infv = _case("fp8_e4m3")
    xn, sn = x3.numpy(), s2.numpy()
    a, b = np.empty_like(xn), np.empty_like(xn)
    quantize_grid_3d_cuda(xn, sn, a, g.m, g.emin, g.subnormals, g.maxval, ovf, infv, 1, seed)
    quantize_grid_3d(xn, sn, b, g.m, g.emin, g.subnormals, g.maxval, ovf, infv, 1, seed)
    np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))
    ref = _reference(x3, s2, g, ovf, infv, "stochastic", seed).to(torch.float32).numpy()
    np.testing.assert_array_equal(np.nan_to_num(a), np.nan_to_num(ref))


@pytest.mark.parametrize("acc_bits, mode", [(10, 0), (10, 1), (64, 0), (64, 1), (20, 0)])
def test_cuda_mls_conv_accumulator_twin_equals_cpu(acc_bits, mode):
    """Per-addition MLS accumulator simulation (MLS paper, Eq. 5-8): outputs and per-channel overflow
    counts of the GPU twin == the CPU kernel (wrap and saturate, narrow and 64-bit accumulators)."""
    from core.kernels.arith_cuda import mls_conv_accumulate_cuda
    from core.kernels.arith_mls import mls_conv_accumulate

    rng = np.random.default_rng(acc_bits + mode)
    big = {10: 60, 20: 2000, 64: 2**61}[acc_bits]
    small = 4 if acc_bits == 64 else big
    iw = rng.integers(-big, big, (3, 2, 3, 3), dtype=np.int64)
    ia = rng.integers(-small, small, (2, 2, 5, 5), dtype=np.int64)
    sgw = rng.uniform(0.1, 1, (3, 2))
    sga = rng.uniform(0.1, 1, (2, 2))
    for stride, padding in ((1, 1), (2, 0)):
        oh = (5 + 2 * padding - 3) // stride + 1
        a, b = np.zeros((2, 3, oh, oh)), np.zeros((2, 3, oh, oh))
        oa, ob = np.zeros(3, np.int64), np.zeros(3, np.int64)
        mls_conv_accumulate_cuda(iw, ia, sgw, sga, stride, padding, acc_bits, mode, a, oa)
        mls_conv_accumulate(iw, ia, sgw, sga, stride, padding, acc_bits, mode, b, ob)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(oa, ob)
        assert ob.sum() > 0  # the case really overflows


@pytest.mark.parametrize("chunk", [1, 3])
def test_cuda_lowp_accumulation_twin_equals_cpu(chunk):
    """Low-precision running sums (LogBTQ 'acc 8', chunked accumulation): GPU twin == CPU kernel,
    outputs and swamping counts."""
    from core.kernels.arith_cuda import lowp_matmul_grid_cuda
    from core.kernels.arith_lowp import lowp_matmul_grid

    fmt = core.parse_format("fp8_143")
    g = fmt.grid
    rng = np.random.default_rng(chunk)
    a = rng.standard_normal((4, 40)) * np.logspace(-3, 1, 40)
    b = rng.standard_normal((40, 5))
    args = (chunk, g.m, g.emin, g.subnormals, g.maxval, float(fmt.overflow_value), float(fmt.inf_value))
    o1, o2 = np.zeros((4, 5)), np.zeros((4, 5))
    s1, s2 = np.zeros((4, 5), np.int64), np.zeros((4, 5), np.int64)
    lowp_matmul_grid_cuda(a, b, *args, o1, s1)
    lowp_matmul_grid(a, b, *args, o2, s2)
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(s1, s2)
    assert s2.sum() > 0  # swamping happens


# ---------------------------------------------- new formats and rounding modes (P3109, FNUZ, E8M0, NF4)
NEW_ELEMENT_SPECS = ["binary8p3", "binary8p1", "fp8_e4m3fnuz", "e8m0", "float(e=5,m=0)", "float8_e4m3fn", "fp16"]
NEW_MODES = ["up", "down", "nearest_away", "odd", "stochastic_rbits5", "truncate", "nearest"]


@pytest.mark.parametrize("spec", NEW_ELEMENT_SPECS)
@pytest.mark.parametrize("rounding", NEW_MODES)
def test_cuda_kernel_new_modes_equal_cpu_kernel_and_reference(spec, rounding):
    from core.formats.dispatch import mode_code

    mode = mode_code(rounding)
    x3, s2, g, ovf, infv = _case(spec)
    x3 = x3.clone()
    x3[1, 2, :6] = torch.tensor([3.0, -6.0, 12.0, 65536.0, -1e30, 1.5])  # m = 0 ties, overflow
    xn, sn = x3.numpy(), s2.numpy()
    out_gpu, out_cpu = np.empty_like(xn), np.empty_like(xn)
    quantize_grid_3d_cuda(xn, sn, out_gpu, g.m, g.emin, g.subnormals, g.maxval, ovf, infv, mode, 9)
    quantize_grid_3d(xn, sn, out_cpu, g.m, g.emin, g.subnormals, g.maxval, ovf, infv, mode, 9)
    ref = _reference(x3, s2, g, ovf, infv, rounding, 9).to(torch.float32).numpy()
    np.testing.assert_array_equal(out_gpu.view(np.uint32), out_cpu.view(np.uint32))
    np.testing.assert_array_equal(np.isnan(out_gpu), np.isnan(ref))
    np.testing.assert_array_equal(np.nan_to_num(out_gpu).view(np.uint32), np.nan_to_num(ref).view(np.uint32))


@pytest.mark.parametrize("block", [16, 7])
def test_cuda_codebook_twin_equals_cpu_kernel(block):
    from core.formats.codebook import CodebookFormat
    from core.kernels.codebook import codebook_quantize
    from core.kernels.grid_round_cuda import codebook_quantize_cuda

    fmt = CodebookFormat(book="nf4", block=block)
    x = (np.random.default_rng(block).standard_normal(100) * 3).astype(np.float32)
    x[:4] = [np.nan, np.inf, -0.0, 0.0]
    s, blk = fmt.scales(torch.from_numpy(x), "numba")
    sn = s.numpy()
    c1, c2 = np.empty(100, np.int64), np.empty(100, np.int64)
    o1, o2 = np.empty(100), np.empty(100)
    codebook_quantize(x, sn, blk, fmt.midpoints, fmt.values, c1, o1)
    codebook_quantize_cuda(x, sn, blk, fmt.midpoints, fmt.values, c2, o2)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(np.nan_to_num(o1).view(np.uint64), np.nan_to_num(o2).view(np.uint64))
