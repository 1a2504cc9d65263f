"""Numba CPU kernel: matmul with a low-precision running sum (Wang et al. 2018 chunking).

Arrays in, arrays out.  Every re-quantization is
:func:`core.kernels.grid_round.quantize_value` with scale 1 and nearest-even
rounding (mode 0), i.e. ``core.quantize`` semantics of a float format.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .config import JIT_OPTIONS
from .grid_round import quantize_value

__all__ = ["lowp_matmul_grid"]


@njit(parallel=True, **JIT_OPTIONS)
def lowp_matmul_grid(a, b, chunk, m, emin, sub, maxval, ovf, infv, out, swamped):
    """``out[i, j]`` = low-precision sum over k of ``a[i, k] * b[k, j]`` (float64 products).

    chunk == 1: ``s = Q(s + p)`` for k ascending.  chunk > 1: each run of ``chunk``
    products is summed as ``t = Q(t + p)`` from ``t = 0``, then ``s = Q(s + t)``.
    ``swamped[i, j]`` counts additions whose addend is non-zero but leave the sum unchanged
    (inner and outer additions).
    """
    mm, kk = a.shape
    nn = b.shape[1]
    for t in prange(mm * nn):
        i = t // nn
        j = t % nn
        s = 0.0
        cnt = np.int64(0)
        if chunk == 1:
            for k in range(kk):
                p = a[i, k] * b[k, j]
                new = quantize_value(s + p, 1.0, m, emin, sub, maxval, ovf, infv, 0, 0.0)
                if p != 0.0 and new == s:
                    cnt += 1
                s = new
        else:
            for k0 in range(0, kk, chunk):
                tt = 0.0
                for k in range(k0, min(k0 + chunk, kk)):
                    p = a[i, k] * b[k, j]
                    new = quantize_value(tt + p, 1.0, m, emin, sub, maxval, ovf, infv, 0, 0.0)
                    if p != 0.0 and new == tt:
                        cnt += 1
                    tt = new
                new = quantize_value(s + tt, 1.0, m, emin, sub, maxval, ovf, infv, 0, 0.0)
                if tt != 0.0 and new == s:
                    cnt += 1
                s = new
        out[i, j] = s
        swamped[i, j] = cnt
