"""Numba CPU kernel of the blocked random Hadamard transform (fast Walsh-Hadamard butterflies).

Arrays in, arrays out.  Every block of ``block`` consecutive elements (a power of two) of a flat
C-contiguous float32/float64 array is mapped to ``H (d * x) / sqrt(block)`` (forward) or
``d * (H x) / sqrt(block)`` (inverse), ``H`` the Sylvester-ordered Hadamard matrix
(``scipy.linalg.hadamard``), ``d`` a +-1 sign vector.  The butterflies run in float64 on a
transposed buffer of ``GROUP`` blocks (each butterfly a vectorizable loop over the blocks) and each
result is rounded once to the output dtype.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .config import CHUNK, JIT_OPTIONS

__all__ = ["fwht_blocks"]


#: blocks transformed together: the butterflies run over a (block, GROUP) buffer, each step a
#: contiguous, vectorizable loop over the GROUP blocks
GROUP = 64


@njit(**JIT_OPTIONS)
def _group(x, out, lo, g, block, signs, inverse, norm, T):
    """Blocks ``lo/block .. lo/block + g`` through the transposed buffer ``T[j, r]``."""
    for r in range(g):
        base = lo + r * block
        for j in range(block):
            T[j, r] = np.float64(x[base + j]) if inverse else np.float64(x[base + j]) * signs[j]
    h = 1
    while h < block:
        for i in range(0, block, 2 * h):
            for j in range(i, i + h):
                a = T[j]
                b = T[j + h]
                for r in range(g):
                    u = a[r]
                    v = b[r]
                    a[r] = u + v
                    b[r] = u - v
        h *= 2
    for r in range(g):
        base = lo + r * block
        for j in range(block):
            out[base + j] = T[j, r] * norm * signs[j] if inverse else T[j, r] * norm


@njit(parallel=True, **JIT_OPTIONS)
def _fwht_parallel(x, out, block, signs, inverse):
    nb = x.size // block
    G = max(1, min(GROUP, CHUNK // block))
    ngroups = (nb + G - 1) // G
    per = max(1, CHUNK // (G * block))
    ntask = (ngroups + per - 1) // per
    norm = 1.0 / math.sqrt(block)
    for t in prange(ntask):
        T = np.empty((block, G), dtype=np.float64)
        for q in range(t * per, min(ngroups, t * per + per)):
            b0 = q * G
            _group(x, out, b0 * block, min(G, nb - b0), block, signs, inverse, norm, T)


def fwht_blocks(x: np.ndarray, out: np.ndarray, block: int, signs: np.ndarray, inverse: bool) -> None:
    """The blocked random Hadamard transform of flat ``x`` into ``out`` (``x.size % block == 0``,
    ``block`` a power of two, ``signs`` a float64 array of +-1 of length ``block``)."""
    if block < 1 or block & (block - 1) or x.size % block:
        raise ValueError(f"block={block} must be a power of two dividing the {x.size} elements")
    _fwht_parallel(x, out, block, np.ascontiguousarray(signs, dtype=np.float64), bool(inverse))
