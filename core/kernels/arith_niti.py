"""Numba CPU kernel: int8 x int8 -> int32 GEMM (NITI, seed 002; SPEC-NOTES section 3).

Arrays in, arrays out.  Accumulation is in int32 (two's complement, like the
hardware); callers bound K so that it cannot overflow (|a*b| <= 2^14).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .config import JIT_OPTIONS

__all__ = ["int8_matmul"]


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
