"""Numba kernels of lookup-codebook formats (``core.formats.codebook``: NF4 and named codebooks).

Each element is divided by its block's scale and mapped to the nearest codebook entry: the code is the
number of midpoints (between consecutive sorted entries) strictly below the scaled value, so a value
exactly on a midpoint takes the lower entry (bitsandbytes' ``dQuantizeNF4`` compares ``x > midpoint``).
The value is ``entry * scale``.  Arrays in, arrays out; the per-element rule is :func:`codebook_element`,
which the reference (``torch.bucketize``) and the CUDA twin (``codebook_quantize_cuda``) implement
identically (bit for bit: one float64 division, comparisons, one float64 product).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .config import CHUNK, JIT_OPTIONS

__all__ = ["codebook_index", "codebook_element", "codebook_quantize"]


@njit(**JIT_OPTIONS)
def codebook_index(a, mids):
    """Number of entries of the sorted ``mids`` strictly below ``a`` (NaN -> 0): a branch-free count
    for up to 32 midpoints (vectorizes across elements), a binary search above (the same number)."""
    if mids.size <= 32:
        c = 0
        for j in range(mids.size):
            c += 1 if mids[j] < a else 0
        return c
    lo = 0
    hi = mids.size
    while lo < hi:
        mid = (lo + hi) // 2
        if mids[mid] < a:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(**JIT_OPTIONS)
def codebook_element(v, s, mids):
    """Code of one value ``v`` in a block of scale ``s`` (``s == 0``: the code of 0's nearest entry)."""
    a = v / s if s != 0.0 else 0.0
    return codebook_index(a, mids)


@njit(**JIT_OPTIONS)
def _codebook_span(x, scale, block, mids, values, codes, out, lo, hi):
    """Elements ``lo:hi`` (whole blocks but the last): one block scale per inner loop and no branch
    per element (NaN and a zero scale are selects), so the loop vectorizes; no integer division per
    element."""
    for b in range(lo // block, (hi + block - 1) // block):
        s = scale[b]
        zero = s == 0.0
        d = 1.0 if zero else s
        for i in range(max(lo, b * block), min(hi, (b + 1) * block)):
            v = np.float64(x[i])
            a = 0.0 if zero else v / d
            nan = v != v
            c = 0 if nan else codebook_index(a, mids)
            codes[i] = c
            out[i] = v if nan else values[c] * s


@njit(parallel=True, **JIT_OPTIONS)
def codebook_quantize(x, scale, block, mids, values, codes, out):
    """``codes[i]`` and ``out[i] = values[code] * scale[i // block]`` (float64 product, stored in ``out``'s
    dtype: float32 rounds it once) for a flat float32/float64 ``x``; NaN elements keep NaN in ``out``
    (their code is 0; ``encode`` refuses NaN). The per-element rule is :func:`codebook_element`."""
    n = x.size
    span = max(1, CHUNK // block) * block  # tasks of whole blocks
    ntask = (n + span - 1) // span
    for t in prange(ntask):
        _codebook_span(x, scale, block, mids, values, codes, out, t * span, min(n, t * span + span))
