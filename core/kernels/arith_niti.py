"""Numba CPU kernel: int8 x int8 -> int32 GEMM (NITI paper, section 3.2; docs/papers.md#niti-gemm).

Arrays in, arrays out.  Accumulation is in int32 (two's complement, like the
hardware); callers bound K so that it cannot overflow (|a*b| <= 2^14).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .config import JIT_OPTIONS

__all__ = ["int8_matmul", "pseudo_stochastic_magnitude", "pseudo_stochastic_quantize"]


@njit(parallel=True, **JIT_OPTIONS)
def int8_matmul(a, b, out):
    """``out[i, j] = sum_k a[i, k] * b[k, j]`` with int8 inputs and int32 accumulation.

    Args:
        a: int8 (M, K); b: int8 (K, N); out: int32 (M, N), overwritten.
    """
    m, k_ = a.shape
    n = b.shape[1]
    for i in prange(m):
        row = np.zeros(n, dtype=np.int32)
        for k in range(k_):
            av = np.int32(a[i, k])
            if av == 0:
                continue
            for j in range(n):
                row[j] += av * np.int32(b[k, j])
        for j in range(n):
            out[i, j] = row[j]


@njit(**JIT_OPTIONS)
def pseudo_stochastic_magnitude(fixed, bp):
    """NITI Alg. 3 on one non-negative fixed-point magnitude with ``bp`` fraction bits: drop the
    lowest bit when ``bp`` is odd, then round up iff the upper half of the fraction bits, read as
    an integer, is greater than the lower half (no random number generator)."""
    q = fixed >> bp
    frac = fixed & ((np.int64(1) << bp) - 1)
    if bp % 2 == 1:
        frac >>= 1
        bp -= 1
    if bp == 0:
        return q
    h = bp // 2
    return q + np.int64((frac >> h) > (frac & ((np.int64(1) << h) - 1)))


@njit(parallel=True, **JIT_OPTIONS)
def pseudo_stochastic_quantize(x, out, s, qmax, bp):
    """``out = sign(x) * s * min(qmax, Alg3(floor(|x| / s * 2^bp)))`` element-wise for a flat float
    array and one power-of-two scale ``s`` (NITI's shared exponent); NaN stays NaN, +-inf takes
    +-qmax.  Same values as :meth:`core.formats.integer.NitiFormat.quantize` with
    ``rounding="pseudo_stochastic"`` on the reference path (tested)."""
    scale_bp = 2.0**bp
    for i in prange(x.size):
        v = np.float64(x[i])
        if v != v:
            out[i] = v
            continue
        a = abs(v)
        if a == np.inf:
            mag = qmax
        else:
            mag = pseudo_stochastic_magnitude(np.int64(np.floor(a / s * scale_bp)), bp)
            if mag > qmax:
                mag = qmax
        out[i] = math.copysign(np.float64(mag) * s, v)
