"""CUDA twin of :func:`core.kernels.scaled_tiles.round_tiles` (numba.cuda; also runs under Numba's
CUDA simulator with ``NUMBA_ENABLE_CUDASIM=1``).

Arrays in, arrays out (host arrays or anything with ``__cuda_array_interface__``, e.g. torch CUDA
tensors, zero-copy).  One thread per element: its tile's scale, then the same ``@njit`` element
functions as the CPU kernel (:func:`~core.kernels.grid_round.quantize_value` for nearest and
truncate, which equals the CPU kernel's branch-free nearest, and
:func:`~core.kernels.grid_round.stochastic_sat_value` with the word of the flat index), so CPU, GPU
and the float64 reference agree bit for bit.  The tile scales come from the caller (the torch
reference of :mod:`core.formats.scaled_tensor` computes them on the device).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from . import config
from .grid_round import mask_word, quantize_value, random_word, seed_key, stochastic_sat_value, uses_random

__all__ = ["round_tiles_cuda"]


@cuda.jit
def _round_tiles_kernel(x, scale, out, H, W, tr, tc, m, emin, sub, maxval, mode, key):
    i = cuda.grid(1)
    if i < x.size:
        j = i % W
        row = i // W
        p = row // H
        s = scale[p, (row - p * H) // tr, j // tc]
        v = np.float64(x[i])
        if s != s:
            out[i] = math.nan
        elif mode == 1:
            out[i] = stochastic_sat_value(v, s, m, emin, sub, maxval, random_word(key, i))
        else:
            rw = np.float64(mask_word(np.int64(random_word(key, i)), mode)) if uses_random(mode) else 0.0
            out[i] = quantize_value(v, s, m, emin, sub, maxval, maxval, maxval, mode, rw)


def round_tiles_cuda(x, out, P: int, H: int, W: int, tr: int, tc: int, scale, m: int, emin: int, sub: bool,
                     maxval: float, mode: int, seed: int) -> None:
    """GPU twin of :func:`core.kernels.scaled_tiles.round_tiles` (same arguments; flat ``x``/``out``)."""
    n = int(P * H * W)
    if n == 0:
        return
    tpb = config.THREADS_PER_BLOCK
    key = np.uint64(seed_key(np.uint64(seed)))  # njit returns a Python int: re-type it as uint64
    _round_tiles_kernel[(n + tpb - 1) // tpb, tpb](x, scale, out, H, W, tr, tc, m, emin, sub, maxval, mode, key)
