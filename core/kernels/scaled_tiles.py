"""Numba CPU kernels of the ``scaled`` and ``nvfp4`` formats: fused group amax, scale and rounding.

Arrays in, arrays out (no torch, no specs).  The input is a flat C-contiguous float32/float64
array read as a ``(P, H, W)`` block of matrices; a *group* is a ``tr x tc`` tile of one matrix
(the last tile of a row or column of tiles may be partial: nothing is padded).  Every
granularity of :mod:`core.formats.scaled_tensor` is such a tiling: per tensor ``(1, 1, n)`` with
one ``1 x n`` tile, per row ``(1, d0, rest)`` with ``1 x rest`` tiles, 1-D blocks of ``N`` along
the last axis ``1 x N`` tiles, blocks along another axis ``N x 1`` tiles, 2-D ``R x C`` tiles.

Three passes:

1. :func:`tile_amax`: max |x| per tile (an integer max over the float bit patterns, which
   vectorizes); a tile holding inf or NaN gets ``+inf`` (the caller's "non-finite group");
2. :func:`tile_scales`: the float64 element scale of every tile from its amax
   (:func:`tile_scale`, the rules of the scale format: fp32, pow2, e8m0, UE4M3 with an
   optional fp32 tensor scale);
3. :func:`round_tiles`: every element rounded onto the element grid with its tile's scale and
   saturated (nearest-even vectorized, stochastic with the word of its flat index, truncate
   through the generic per-value path); a tile with a NaN scale is all NaN.

Bit-identical to the float64 reference of :mod:`core.formats.scaled_tensor` (tests compare them).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .bits import bits_f32, bits_f64, f64_bits
from .config import CHUNK, JIT_OPTIONS
from .grid_round import (_magnitude_bits, floor_log2, nearest_sat_consts, nearest_sat_value, pow2,
                         mask_word, quantize_value, random_word, seed_key, stochastic_sat_value, uses_random)

__all__ = ["SCALE_KINDS", "tile_scale", "tile_amax", "tile_scales", "round_tiles", "quantize_tiles"]

#: scale-format name -> kernel code
SCALE_KINDS = {"fp32": 0, "pow2": 1, "e8m0": 2, "e4m3": 3, "e8m0_floor": 4}

_F32_TINY = 2.0**-149  # smallest positive float32
_F32_MAX = float(np.finfo(np.float32).max)
_E4M3_MIN = 2.0**-6  # torchao's E4M3_EPS = finfo(float8_e4m3fn).tiny: UE4M3 scales never below it
_E4M3_MAX = 448.0
_E4M3_SHIFT = np.uint64(52 - 3)
_E4M3_LOW = np.uint64((1 << 49) - 1)
_E4M3_HALF = np.uint64((1 << 48) - 1)


@njit(**JIT_OPTIONS)
def _ceil_pow2_exponent(amax, maxval):
    """Smallest ``e`` with ``maxval * 2^e >= amax`` (the products are exact)."""
    e = floor_log2(amax / maxval)
    if maxval * pow2(e) < amax:
        e += 1
    if maxval * pow2(e - 1) >= amax:
        e -= 1
    return e


@njit(**JIT_OPTIONS)
def tile_scale(amax, kind, maxval, st):
    """Element scale (float64) of a group with finite max ``amax`` (``inf``: the group holds
    inf/NaN -> NaN scale).

    kind 0 fp32: ``fp32(amax / maxval)`` within ``[2^-149, FLT_MAX]``, 1 for a zero group;
    kind 1 pow2: ``2^e``, the smallest e with ``maxval 2^e >= amax``, e in [-1022, 1023], 1 for a
    zero group; kind 2 e8m0: the same with e in [-127, 127], ``2^-127`` for a zero group;
    kind 4 e8m0 floor (OCP MX v1.0 section 6.3; ``maxval`` is ``2^emax_elem``): ``2^(floor(log2 amax) -
    emax_elem)`` in [-127, 127], ``2^-127`` for a zero group;
    kind 3 UE4M3 (times the fp32 tensor scale ``st``, 1 for single-level scaling):
    ``st * e4m3(clamp(fp32(fp32(amax / maxval) / st), 2^-6, 448))`` (torchao's NVFP4 algorithm).
    """
    if amax == math.inf or amax != amax:
        return math.nan
    if kind == 0:
        if amax == 0.0:
            return 1.0
        s = np.float64(np.float32(amax / maxval))
        return min(max(s, _F32_TINY), _F32_MAX)
    if kind == 4:
        if amax == 0.0:
            return pow2(-127)
        return pow2(max(-127, min(127, floor_log2(amax / maxval))))  # exact: maxval is a power of two
    if kind == 1 or kind == 2:
        lo, hi = (-1022, 1023) if kind == 1 else (-127, 127)
        if amax == 0.0:
            return 1.0 if kind == 1 else pow2(-127)
        e = _ceil_pow2_exponent(amax, maxval)
        return pow2(max(lo, min(hi, e)))
    r = np.float64(np.float32(np.float64(np.float32(amax / maxval)) / st))
    r = min(max(r, _E4M3_MIN), _E4M3_MAX)  # a normal of E4M3: nearest-even on the float64 bits
    b = f64_bits(r)
    b = (b + _E4M3_HALF + ((b >> _E4M3_SHIFT) & np.uint64(1))) & ~_E4M3_LOW
    return st * bits_f64(b)


@njit(**JIT_OPTIONS)
def _seg_max(xb, lo, hi, absmask, infbits):
    """max |x| over ``xb[lo:hi]`` as float64 bit-pattern max; ``+inf`` when inf or NaN is there."""
    T = xb.dtype.type
    best = T(0)
    xs = xb[lo:hi]
    for j in range(xs.size):
        a = T(xs[j] & absmask)
        best = a if a > best else best
    if best >= infbits:
        return math.inf
    if xb.itemsize == 4:
        return np.float64(bits_f32(np.uint32(best)))
    return bits_f64(np.uint64(best))


@njit(**JIT_OPTIONS)
def _plan(W, tc):
    """Pieces of a row: ``(nbw, k, sub, per_row)``: ``nbw`` tile columns; a piece covers ``k``
    whole tile columns (``tc < CHUNK``) or one ``1/sub`` part of one (``tc >= CHUNK``)."""
    nbw = (W + tc - 1) // tc if W > 0 else 0
    if tc >= CHUNK:
        sub = (tc + CHUNK - 1) // CHUNK
        return nbw, 1, sub, nbw * sub
    k = max(1, CHUNK // tc)
    return nbw, k, 1, (nbw + k - 1) // k


@njit(parallel=True, **JIT_OPTIONS)
def _amax_rows(xb, absmask, infbits, rows, W, tc, part):
    """tr == 1: ``part[(row * nbw + bj) * sub + s]`` = max over piece ``s`` of tile ``bj`` of ``row``."""
    nbw, k, sub, per_row = _plan(W, tc)
    for t in prange(rows * per_row):
        row = t // per_row
        q = t - row * per_row
        base = row * W
        if sub > 1:
            bj = q // sub
            s = q - bj * sub
            j0 = bj * tc + s * CHUNK
            j1 = min(W, bj * tc + min(tc, (s + 1) * CHUNK))
            part[(row * nbw + bj) * sub + s] = _seg_max(xb, base + j0, base + j1, absmask, infbits)
        else:
            for bj in range(q * k, min(nbw, q * k + k)):
                part[row * nbw + bj] = _seg_max(xb, base + bj * tc, base + min(W, bj * tc + tc), absmask, infbits)


#: columns per task of :func:`_amax_tiles` (whole tiles)
_COLS = 2048


@njit(parallel=True, **JIT_OPTIONS)
def _amax_tiles(xb, absmask, infbits, P, H, W, tr, tc, amax):
    """tr > 1: one task per row of tiles and run of about ``_COLS`` columns (whole tiles), maxima
    into ``amax[p, bi, bj]``; one-column tiles (``col``, blocks along a leading axis) as a
    vectorized integer max per column."""
    nbh = (H + tr - 1) // tr
    nbw = (W + tc - 1) // tc
    kt = max(1, _COLS // tc)
    nct = (nbw + kt - 1) // kt
    T = xb.dtype.type
    for t in prange(P * nbh * nct):
        p = t // (nbh * nct)
        rem = t - p * nbh * nct
        bi = rem // nct
        c = rem - bi * nct
        b0 = c * kt
        b1 = min(nbw, b0 + kt)
        if tc == 1:
            best = np.zeros(b1 - b0, dtype=xb.dtype)
            for i in range(bi * tr, min(H, bi * tr + tr)):
                xs = xb[(p * H + i) * W + b0:(p * H + i) * W + b1]
                for j in range(xs.size):
                    a = T(xs[j] & absmask)
                    best[j] = a if a > best[j] else best[j]
            for j in range(b1 - b0):
                if best[j] >= infbits:
                    amax[p, bi, b0 + j] = math.inf
                elif xb.itemsize == 4:
                    amax[p, bi, b0 + j] = np.float64(bits_f32(np.uint32(best[j])))
                else:
                    amax[p, bi, b0 + j] = bits_f64(np.uint64(best[j]))
            continue
        for bj in range(b0, b1):
            amax[p, bi, bj] = 0.0
        for i in range(bi * tr, min(H, bi * tr + tr)):
            base = (p * H + i) * W
            for bj in range(b0, b1):
                m = _seg_max(xb, base + bj * tc, base + min(W, bj * tc + tc), absmask, infbits)
                if m > amax[p, bi, bj]:
                    amax[p, bi, bj] = m


def tile_amax(x: np.ndarray, P: int, H: int, W: int, tr: int, tc: int) -> np.ndarray:
    """``(P, ceil(H/tr), ceil(W/tc))`` float64 max |x| per tile of a flat contiguous float32/float64
    ``x`` (``+inf`` for a tile holding inf or NaN)."""
    xb, absmask, infbits = _magnitude_bits(x)
    nbh = -(-H // tr) if H else 0
    nbw = -(-W // tc) if W else 0
    if tr == 1:
        nbw_, k, sub, per_row = _plan(W, tc)
        part = np.zeros(P * H * nbw * sub, dtype=np.float64)
        _amax_rows(xb, absmask, infbits, P * H, W, tc, part)
        return part.reshape(P, H, nbw, sub).max(axis=3) if sub > 1 else part.reshape(P, H, nbw)
    amax = np.zeros((P, nbh, nbw), dtype=np.float64)
    _amax_tiles(xb, absmask, infbits, P, H, W, tr, tc, amax)
    return amax


@njit(**JIT_OPTIONS)
def tile_scales(amax, kind, maxval, st, out):
    """``out[i] = tile_scale(amax[i], kind, maxval, st)`` over flat arrays."""
    for i in range(amax.size):
        out[i] = tile_scale(amax[i], kind, maxval, st)


@njit(**JIT_OPTIONS)
def _round_seg(x, out, lo, hi, s, m, emin, sub, maxval, mode, key, shift, low_mask, up, down, min_biased):
    xs, os_ = x[lo:hi], out[lo:hi]
    if s != s:
        for j in range(xs.size):
            os_[j] = math.nan
    elif mode == 0:
        for j in range(xs.size):
            os_[j] = nearest_sat_value(np.float64(xs[j]), s, shift, low_mask, up, down, min_biased, maxval)
    elif mode == 1:
        for j in range(xs.size):
            os_[j] = stochastic_sat_value(np.float64(xs[j]), s, m, emin, sub, maxval, random_word(key, lo + j))
    else:
        rnd = uses_random(mode)
        for j in range(xs.size):
            rw = np.float64(mask_word(np.int64(random_word(key, lo + j)), mode)) if rnd else 0.0
            os_[j] = quantize_value(np.float64(xs[j]), s, m, emin, sub, maxval, maxval, maxval, mode, rw)


@njit(**JIT_OPTIONS)
def _round_cols(x, out, lo, hi, ss, m, emin, sub, maxval, mode, key, shift, low_mask, up, down, min_biased):
    """Elements ``lo:hi`` with the per-element scales ``ss`` (NaN scale -> NaN)."""
    xs, os_ = x[lo:hi], out[lo:hi]
    if mode == 0:
        for j in range(xs.size):
            s = ss[j]
            y = nearest_sat_value(np.float64(xs[j]), s, shift, low_mask, up, down, min_biased, maxval)
            os_[j] = math.nan if s != s else y
    elif mode == 1:
        for j in range(xs.size):
            s = ss[j]
            y = stochastic_sat_value(np.float64(xs[j]), s, m, emin, sub, maxval, random_word(key, lo + j))
            os_[j] = math.nan if s != s else y
    else:
        rnd = uses_random(mode)
        for j in range(xs.size):
            s = ss[j]
            rw = np.float64(mask_word(np.int64(random_word(key, lo + j)), mode)) if rnd else 0.0
            y = quantize_value(np.float64(xs[j]), s, m, emin, sub, maxval, maxval, maxval, mode, rw)
            os_[j] = math.nan if s != s else y


@njit(parallel=True, **JIT_OPTIONS)
def round_tiles(x, out, P, H, W, tr, tc, scale, m, emin, sub, maxval, mode, seed):
    """``out = sign * s * round(|x| / s)`` (saturating at ``maxval``) with ``s = scale[p, i // tr,
    j // tc]`` for the element ``(p, i, j)`` of the flat ``(P, H, W)`` arrays; random words by
    flat index.  Tasks: pieces of rows of about ``CHUNK`` elements."""
    key = seed_key(seed)
    shift, low_mask, up, down, min_biased = nearest_sat_consts(m, emin, sub)
    nbw, k, nsub, per_row = _plan(W, tc)
    rows = P * H
    for t in prange(rows * per_row):
        row = t // per_row
        q = t - row * per_row
        p = row // H
        bi = (row - p * H) // tr
        base = row * W
        if nsub > 1:
            bj = q // nsub
            s_ = q - bj * nsub
            j0 = bj * tc + s_ * CHUNK
            j1 = min(W, bj * tc + min(tc, (s_ + 1) * CHUNK))
            _round_seg(x, out, base + j0, base + j1, scale[p, bi, bj], m, emin, sub, maxval, mode, key,
                       shift, low_mask, up, down, min_biased)
        elif tc == 1:  # one scale per column: contiguous scale loads, one loop per mode
            j0 = q * k
            _round_cols(x, out, base + j0, base + min(W, j0 + k), scale[p, bi, j0:min(W, j0 + k)], m, emin, sub,
                        maxval, mode, key, shift, low_mask, up, down, min_biased)
        else:
            for bj in range(q * k, min(nbw, q * k + k)):
                _round_seg(x, out, base + bj * tc, base + min(W, bj * tc + tc), scale[p, bi, bj], m, emin, sub,
                           maxval, mode, key, shift, low_mask, up, down, min_biased)


@njit(parallel=True, **JIT_OPTIONS)
def _fused_rows(x, xb, absmask, infbits, out, rows, W, tc, kind, elem_max, st, scale, m, emin, sub, maxval,
                mode, seed):
    """One pass for ``tr == 1`` and ``tc < CHUNK`` (1-D blocks, short rows): per tile its amax, its
    scale and its elements while the tile is in cache; ``scale`` is the flat (rows * nbw) output."""
    key = seed_key(seed)
    shift, low_mask, up, down, min_biased = nearest_sat_consts(m, emin, sub)
    nbw, k, nsub, per_row = _plan(W, tc)
    for t in prange(rows * per_row):
        row = t // per_row
        q = t - row * per_row
        base = row * W
        for bj in range(q * k, min(nbw, q * k + k)):
            lo = base + bj * tc
            hi = base + min(W, bj * tc + tc)
            s = tile_scale(_seg_max(xb, lo, hi, absmask, infbits), kind, elem_max, st)
            scale[row * nbw + bj] = s
            _round_seg(x, out, lo, hi, s, m, emin, sub, maxval, mode, key, shift, low_mask, up, down, min_biased)


@njit(parallel=True, **JIT_OPTIONS)
def _tile_scales_parallel(amax, kind, maxval, st, out):
    for i in prange(amax.size):
        out[i] = tile_scale(amax[i], kind, maxval, st)


def quantize_tiles(x: np.ndarray, out: np.ndarray, P: int, H: int, W: int, tr: int, tc: int, kind: int,
                   elem_max: float, st: float, m: int, emin: int, sub: bool, maxval: float, mode: int,
                   seed: int) -> np.ndarray:
    """The three passes: returns the ``(P, nbh, nbw)`` float64 element scales; ``out`` is written."""
    nbh, nbw = -(-H // tr), -(-W // tc)
    if tr == 1 and tc < CHUNK:
        xb, absmask, infbits = _magnitude_bits(x)
        scale = np.empty((P, nbh, nbw), dtype=np.float64)
        _fused_rows(x, xb, absmask, infbits, out, P * H, W, tc, kind, elem_max, st, scale.reshape(-1), m, emin,
                    sub, maxval, mode, seed)
        return scale
    amax = tile_amax(x, P, H, W, tr, tc)
    scale = np.empty_like(amax)
    (_tile_scales_parallel if amax.size >= 4096 else tile_scales)(amax.reshape(-1), kind, elem_max, st,
                                                                   scale.reshape(-1))
    round_tiles(x, out, P, H, W, tr, tc, scale, m, emin, sub, maxval, mode, seed)
    return scale
