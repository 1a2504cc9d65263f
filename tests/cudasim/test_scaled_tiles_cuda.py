"""CUDA twin of the ``scaled``/``nvfp4`` rounding kernel vs the CPU kernel, bit for bit (simulator or GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import core
from core.kernels import config
from core.kernels.grid_round_cuda import cuda_available
from core.kernels.scaled_tiles import round_tiles
from core.kernels.scaled_tiles_cuda import round_tiles_cuda

pytestmark = pytest.mark.skipif(not cuda_available(), reason="needs a GPU or NUMBA_ENABLE_CUDASIM=1")


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setattr(config, "THREADS_PER_BLOCK", 32)


@pytest.mark.parametrize("spec", ["scaled(elem=fp8_e4m3,block=row)", "scaled(elem=fp8_e5m2,block=2x3,scale=pow2)",
                                  "nvfp4", "scaled(elem=fp4_e2m1,block=4,axis=0,scale=e8m0)"])
@pytest.mark.parametrize("rounding", ["nearest", "stochastic", "truncate", "up", "down", "nearest_away", "odd",
                                      "stochastic_rbits5"])
def test_cuda_round_tiles_equals_cpu_kernel(spec, rounding):
    from core.formats.dispatch import mode_code

    mode = mode_code(rounding)
    fmt = core.parse_format(spec)
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((5, 7)) * np.logspace(-3, 3, 7)).astype(np.float32)
    x[0, :3] = [0.0, -0.0, np.inf]
    s = fmt.group_scales(torch.from_numpy(x)).numpy()
    P, H, W, tr, tc = fmt._layout(x.shape)
    g = fmt.element_grid
    flat = x.reshape(-1)
    a, b = np.empty_like(flat), np.empty_like(flat)
    round_tiles_cuda(flat, a, P, H, W, tr, tc, s, g.m, g.emin, g.subnormals, g.maxval, mode, 5)
    round_tiles(flat, b, P, H, W, tr, tc, s, g.m, g.emin, g.subnormals, g.maxval, mode, 5)
    np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))
    assert np.isnan(a).any()  # the group holding inf
