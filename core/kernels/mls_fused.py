"""Numba CPU kernels of the fused MLS quantizer (MLS paper, Alg. 1; docs/papers.md#mls-format).

Arrays in, arrays out.  Three calls replace the torch scale arithmetic and the
generic rounding loop of the MLS format on contiguous CPU data:

1. :func:`~core.kernels.grid_round.group_absmax_rows`: max |x| per (dim0, dim1) group;
2. :func:`mls_scales`: the grouping reduction (``none``/``n``/``c``/``nc``), the
   tensor scale ``St`` and the group scales ``Sg = Ceil_G(gmax / St)``, written
   into ``s2 = St * Sg`` (all float64, exact: the same operations as
   :func:`core.formats.mls.group_scale_ceil`);
3. :func:`round_rows_sat`: every element rounded onto the element grid with its
   row's scale, saturating (nearest-even vectorized, stochastic through the
   branch-light :func:`stochastic_sat_value`, truncate through the generic path).

Bit-identical to the reference path (tests compare them).
"""

from __future__ import annotations


import numpy as np
from numba import njit, prange

from .bits import bits_f64, f64_bits
from .config import CHUNK, JIT_OPTIONS, SERIAL_BELOW
from .grid_round import group_absmax_rows as group_absmax_rows  # used through this module
from .grid_round import (nearest_sat_consts, nearest_sat_value, quantize_value, random_word,
                         rows_per_task, seed_key, stochastic_sat_lane,
                         stochastic_sat_value)

__all__ = ["GROUP_CODES", "group_scale_ceil_value", "mls_scales", "round_rows_sat"]

#: grouping name -> integer code used by the kernels
GROUP_CODES = {"none": 0, "n": 1, "c": 2, "nc": 3}

_S52 = np.uint64(52)
_EXPMASK = np.uint64(0x7FF)
_MANT = np.uint64((1 << 52) - 1)


@njit(**JIT_OPTIONS)
def group_scale_ceil_value(sgf, eg, mg):
    """Smallest member ``(1 + k/2^mg) 2^e`` (``e in [1-2^eg, 0]``) of G that is >= ``sgf``.

    Values below the smallest member (and 0) take the smallest member; values above 1 take 1.
    Integer arithmetic on the float64 bit pattern: ``k`` is the ceiling of the top ``mg``
    mantissa bits (a carry moves to the next binade) and the value is assembled from its bits.
    Returns (value, e, k).
    """
    emin = np.int64(1) - (np.int64(1) << eg)
    b = f64_bits(sgf)
    e = np.int64((b >> _S52) & _EXPMASK) - 1023  # -1023 for 0 and subnormals: below emin
    drop = np.uint64(52 - mg)
    k = np.int64(((b & _MANT) + (np.uint64(1) << drop) - np.uint64(1)) >> drop)
    carry = k >> mg  # 1 when the ceiling reaches the next binade
    e = e + carry
    k = k & ((np.int64(1) << mg) - 1)
    if e < emin:
        e = emin
        k = 0
    if e >= 0:
        e = 0
        k = 0
    v = bits_f64((np.uint64(e + 1023) << _S52) | (np.uint64(k) << drop))
    return v, e, k


@njit(**JIT_OPTIONS)
def mls_scales(gmax, group, eg, mg, s2, sg, ge, gk):
    """Fill ``s2 = St * Sg`` (and ``Sg``, its exponent and mantissa) per (dim0, dim1) group.

    ``gmax`` is the (d0, d1) float64 max |x| per group; ``group`` a :data:`GROUP_CODES` value.
    Returns ``St = max|X|``.
    """
    d0, d1 = gmax.shape
    st = 0.0
    for i in range(d0):
        for j in range(d1):
            if gmax[i, j] > st:
                st = gmax[i, j]
    red = gmax
    if group == 0:
        red = np.empty((d0, d1), dtype=np.float64)
        red[:, :] = st
    elif group == 1:
        red = np.empty((d0, d1), dtype=np.float64)
        for i in range(d0):
            m = 0.0
            for j in range(d1):
                m = max(m, gmax[i, j])
            red[i, :] = m
    elif group == 2:
        red = np.empty((d0, d1), dtype=np.float64)
        for j in range(d1):
            m = 0.0
            for i in range(d0):
                m = max(m, gmax[i, j])
            red[:, j] = m
    for i in range(d0):
        for j in range(d1):
            sgf = red[i, j] / st if st > 0.0 else 0.0
            v, e, k = group_scale_ceil_value(sgf, eg, mg)
            sg[i, j] = v
            ge[i, j] = e
            gk[i, j] = k
            s2[i, j] = st * v
    return st


@njit(**JIT_OPTIONS)
def _round_span(x, out, lo, hi, s, m, emin, sub, maxval, mode, key, shift, low_mask, up, down, min_biased):
    """Elements ``lo:hi`` with one scale ``s``, one loop per mode, over slices (indices from 0 need
    no negative-index handling, so the loops vectorize fully)."""
    xs, os_ = x[lo:hi], out[lo:hi]
    if mode == 0:
        for j in range(xs.size):
            os_[j] = nearest_sat_value(np.float64(xs[j]), s, shift, low_mask, up, down, min_biased, maxval)
    elif mode == 1 and s > 0.0:  # the select form vectorizes
        for j in range(xs.size):
            os_[j] = stochastic_sat_lane(np.float64(xs[j]), s, m, emin, sub, maxval, random_word(key, lo + j))
    elif mode == 1:
        for j in range(xs.size):
            os_[j] = stochastic_sat_value(np.float64(xs[j]), s, m, emin, sub, maxval, random_word(key, lo + j))
    else:
        for j in range(xs.size):
            os_[j] = quantize_value(np.float64(xs[j]), s, m, emin, sub, maxval, maxval, maxval, mode, 0.0)


@njit(**JIT_OPTIONS)
def _round_task(t, x, scale, out, R, per, nchunk, m, emin, sub, maxval, mode, key,
                shift, low_mask, up, down, min_biased):
    """Task ``t`` of :func:`round_rows_sat`: a run of ``per`` whole rows, or (``per == 1``)
    chunk ``t % nchunk`` of row ``t // nchunk``."""
    rows = scale.size
    r0 = t * per
    r1 = min(rows, t * per + per)
    if R == 1 and mode != 2:  # one element per row (MLS nc of a 2-d tensor): flat loops
        xs, os_, ss = x[r0:r1], out[r0:r1], scale[r0:r1]
        if mode == 0:  # vectorizable
            for j in range(xs.size):
                os_[j] = nearest_sat_value(np.float64(xs[j]), ss[j], shift, low_mask, up, down, min_biased, maxval)
        else:
            for j in range(xs.size):
                os_[j] = stochastic_sat_value(np.float64(xs[j]), ss[j], m, emin, sub, maxval,
                                              random_word(key, r0 + j))
        return
    c0 = 0
    if per == 1:
        r0 = t // nchunk
        r1 = r0 + 1
        c0 = (t - r0 * nchunk) * CHUNK
    for row in range(r0, r1):
        lo = row * R + c0
        hi = min(row * R + R, lo + CHUNK) if per == 1 else row * R + R
        _round_span(x, out, lo, hi, scale[row], m, emin, sub, maxval, mode, key, shift, low_mask, up, down,
                    min_biased)


@njit(**JIT_OPTIONS)
def _round_setup(x, scale, m, emin, sub, seed):
    """Task plan and loop constants shared by the serial and the parallel driver."""
    rows = scale.size
    R = x.size // rows if rows else 0
    per = rows_per_task(rows, R)
    nchunk = (R + CHUNK - 1) // CHUNK
    ntask = rows * nchunk if per == 1 else (rows + per - 1) // per
    return R, per, nchunk, ntask, seed_key(seed), nearest_sat_consts(m, emin, sub)


@njit(parallel=True, **JIT_OPTIONS)
def _round_rows_parallel(x, scale, out, m, emin, sub, maxval, mode, seed):
    R, per, nchunk, ntask, key, (shift, low_mask, up, down, min_biased) = _round_setup(x, scale, m, emin, sub, seed)
    for t in prange(ntask):
        _round_task(t, x, scale, out, R, per, nchunk, m, emin, sub, maxval, mode, key,
                    shift, low_mask, up, down, min_biased)


@njit(**JIT_OPTIONS)
def _round_rows_serial(x, scale, out, m, emin, sub, maxval, mode, seed):
    R, per, nchunk, ntask, key, (shift, low_mask, up, down, min_biased) = _round_setup(x, scale, m, emin, sub, seed)
    for t in range(ntask):
        _round_task(t, x, scale, out, R, per, nchunk, m, emin, sub, maxval, mode, key,
                    shift, low_mask, up, down, min_biased)


def round_rows_sat(x, scale, out, m, emin, sub, maxval, mode, seed) -> None:
    """``out[i] = sign * s * round(|x[i]| / s)`` with saturation at ``maxval``, for a
    C-contiguous flat ``x`` of ``scale.size`` rows with one float64 scale per row.

    mode 0 nearest-even, 1 stochastic (random word of flat index ``i``), 2 truncate.
    Tasks are runs of whole rows of about ``CHUNK`` elements, or chunks of one row when
    rows are longer than that; inputs below :data:`SERIAL_BELOW` elements run on the calling
    thread (a parallel region costs more than the work there).
    """
    kernel = _round_rows_serial if x.size < SERIAL_BELOW else _round_rows_parallel
    kernel(x, scale, out, m, emin, sub, maxval, mode, seed)
