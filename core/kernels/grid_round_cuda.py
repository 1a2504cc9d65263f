"""CUDA twins of :mod:`core.kernels.grid_round` (numba.cuda; also runs under
Numba's CUDA simulator with ``NUMBA_ENABLE_CUDASIM=1``).

The kernels call the very same ``@njit`` element functions
(:func:`~core.kernels.grid_round.quantize_value`,
:func:`~core.kernels.grid_round.random_word`) as the CPU kernels, so CPU, GPU
and the float64 reference agree bit for bit for a given seed (the random word
of an element depends only on ``(seed, flat index)``).  Arrays in, arrays out:
host NumPy arrays or device arrays (anything with ``__cuda_array_interface__``,
e.g. torch CUDA tensors, zero-copy).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import config as numba_config
from numba import cuda

from . import config
from .grid_round import mask_word, quantize_value, random_word, seed_key, stochastic_sat_value, uses_random
from .mls_fused import group_scale_ceil_value
from .mulaw import mulaw_companded, mulaw_round_y
from .bits import f64_bits as _f64_bits_intrinsic
from .mulaw import BUCKET_SHIFT

f64_bits: Any  # a Numba intrinsic on the GPU, a Python function under the simulator
# numba.config sets ENABLE_CUDASIM from $NUMBA_ENABLE_CUDASIM at import; its stub does not declare it
if getattr(numba_config, "ENABLE_CUDASIM", 0):  # the simulator runs kernel bodies as Python

    def f64_bits(a):
        return np.float64(a).view(np.uint64)

else:
    f64_bits = _f64_bits_intrinsic

__all__ = ["quantize_grid_3d_cuda", "group_absmax_3d_cuda", "mulaw_quantize_cuda", "mls_group_scales_cuda",
           "round_rows_sat_cuda", "cuda_available", "codebook_quantize_cuda"]


def cuda_available() -> bool:
    """True on a machine with a usable GPU or under the CUDA simulator."""
    try:
        return bool(cuda.is_available())
    except Exception:  # pragma: no cover - driver errors
        return False


@cuda.jit
def _quantize_kernel(x, scale, out, m, emin, sub, maxval, ovf, infv, mode, key):
    i = cuda.grid(1)
    A, B, R = x.shape
    if i < A * B * R:
        r = i % R
        row = i // R
        ib = row % B
        ia = row // B
        rw = 0.0
        if uses_random(mode):
            rw = np.float64(mask_word(np.int64(random_word(key, i)), mode))
        out[ia, ib, r] = quantize_value(
            np.float64(x[ia, ib, r]), scale[ia, ib], m, emin, sub, maxval, ovf, infv, mode, rw
        )


@cuda.jit
def _absmax_kernel(x, out):
    row = cuda.grid(1)
    A, B, R = x.shape
    if row < A * B:
        ia = row // B
        ib = row % B
        best = 0.0
        for r in range(R):
            a = abs(np.float64(x[ia, ib, r]))
            if a > best and a != math.inf:
                best = a
        out[ia, ib] = best


def _blocks(n: int) -> tuple[int, int]:
    tpb = config.THREADS_PER_BLOCK
    return max(1, (n + tpb - 1) // tpb), tpb


def quantize_grid_3d_cuda(x, scale, out, m, emin, sub, maxval, ovf, infv, mode, seed) -> None:
    """GPU twin of :func:`core.kernels.grid_round.quantize_grid_3d` (same arguments)."""
    n = int(np.prod(x.shape))
    if n == 0:
        return
    grid, tpb = _blocks(n)
    key = np.uint64(seed_key(np.uint64(seed)))  # njit returns a Python int: re-type it as uint64
    _quantize_kernel[grid, tpb](x, scale, out, m, emin, sub, maxval, ovf, infv, mode, key)


def group_absmax_3d_cuda(x, out) -> None:
    """GPU twin of :func:`core.kernels.grid_round.group_absmax_3d` (writes ``out``)."""
    rows = int(x.shape[0] * x.shape[1])
    if rows == 0:
        return
    grid, tpb = _blocks(rows)
    _absmax_kernel[grid, tpb](x, out)


@cuda.jit
def _mulaw_kernel(x, out, codes, thr, start, K, mu, lg, rng, mode, key):
    i = cuda.grid(1)
    if i < x.size:
        v = np.float64(x[i])
        if v != v:
            out[i] = v
            return
        if mode == 0:
            # twin of core.kernels.mulaw.mulaw_nearest (device arrays cannot
            # enter a CPU @njit function under the simulator)
            a = abs(v)
            if a > rng:
                a = rng
            c = start[np.int64(f64_bits(a) >> np.uint64(BUCKET_SHIFT))]
            while thr[c] < a:  # thr is padded with +inf
                c += 1
            if thr[c] == a and c % 2 == 1:
                c += 1
        else:
            rw = 0.0
            if mode == 1:
                rw = random_word(key, i)
            a, y = mulaw_companded(v, K, mu, lg, rng)
            c = mulaw_round_y(y, K, mode, rw)
        out[i] = math.copysign(codes[c], v)


def mulaw_quantize_cuda(x, out, codes, thr, start, K, mu, rng, mode, seed) -> None:
    """GPU twin of :func:`core.kernels.mulaw.mulaw_quantize` (flat arrays)."""
    n = int(np.prod(x.shape))
    if n == 0:
        return
    grid, tpb = _blocks(n)
    d = [cuda.to_device(np.ascontiguousarray(t)) for t in (codes, thr, start)]
    key = np.uint64(seed_key(np.uint64(seed)))  # njit returns a Python int: re-type it as uint64
    _mulaw_kernel[grid, tpb](x, out, d[0], d[1], d[2], K, mu, math.log1p(mu), rng, mode, key)


# ------------------------------------------------------------------ fused MLS twins
@cuda.jit
def _mls_scale_kernel(red, st, eg, mg, s2, sg, ge, gk):
    i = cuda.grid(1)
    if i < red.size:
        sgf = red[i] / st if st > 0.0 else 0.0
        v, e, k = group_scale_ceil_value(sgf, eg, mg)
        sg[i] = v
        ge[i] = e
        gk[i] = k
        s2[i] = st * v


@cuda.jit
def _round_rows_kernel(x, scale, out, R, m, emin, sub, maxval, mode, key):
    i = cuda.grid(1)
    if i < x.size:
        s = scale[i // R]
        v = np.float64(x[i])
        if mode == 1:
            out[i] = stochastic_sat_value(v, s, m, emin, sub, maxval, random_word(key, i))
        else:  # nearest / truncate: the generic element rule (== nearest_sat_value for mode 0)
            out[i] = quantize_value(v, s, m, emin, sub, maxval, maxval, maxval, mode, 0.0)


def mls_group_scales_cuda(red, st, eg, mg, s2, sg, ge, gk) -> None:
    """GPU twin of the per-group part of :func:`core.kernels.mls_fused.mls_scales`: ``red`` is
    the flat float64 group max after the grouping reduction, ``st`` the tensor scale (a float);
    writes ``s2 = St * Sg``, ``Sg``, its exponent and mantissa (flat arrays)."""
    n = int(red.size)
    if n == 0:
        return
    grid, tpb = _blocks(n)
    _mls_scale_kernel[grid, tpb](red, float(st), eg, mg, s2, sg, ge, gk)


def round_rows_sat_cuda(x, scale, out, m, emin, sub, maxval, mode, seed) -> None:
    """GPU twin of :func:`core.kernels.mls_fused.round_rows_sat` (flat arrays, same arguments)."""
    n = int(x.size)
    if n == 0:
        return
    grid, tpb = _blocks(n)
    R = n // int(scale.size)
    key = np.uint64(seed_key(np.uint64(seed)))  # njit returns a Python int: re-type it as uint64
    _round_rows_kernel[grid, tpb](x, scale, out, R, m, emin, sub, maxval, mode, key)


# ------------------------------------------------------------------ lookup codebooks (NF4)
@cuda.jit
def _codebook_kernel(x, scale, block, mids, values, codes, out):
    i = cuda.grid(1)
    if i < x.size:
        v = np.float64(x[i])
        if v != v:
            codes[i] = 0
            out[i] = v
            return
        s = scale[i // block]
        a = v / s if s != 0.0 else 0.0
        # twin of core.kernels.codebook.codebook_index (device arrays cannot enter a CPU @njit function
        # under the simulator): the number of midpoints strictly below a
        lo = 0
        hi = mids.size
        while lo < hi:
            mid = (lo + hi) // 2
            if mids[mid] < a:
                lo = mid + 1
            else:
                hi = mid
        codes[i] = lo
        out[i] = values[lo] * s


def codebook_quantize_cuda(x, scale, block, mids, values, codes, out) -> None:
    """GPU twin of :func:`core.kernels.codebook.codebook_quantize` (flat arrays, same arguments)."""
    n = int(np.prod(x.shape))
    if n == 0:
        return
    grid, tpb = _blocks(n)
    d = [cuda.to_device(np.ascontiguousarray(t)) for t in (mids, values)]
    _codebook_kernel[grid, tpb](x, scale, int(block), d[0], d[1], codes, out)
