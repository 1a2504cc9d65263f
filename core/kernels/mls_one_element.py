"""Numba CPU kernels of MLS quantization when every element is its own group (MLS paper, Alg. 1).

Arrays in, arrays out.  ``nc`` grouping of a 2-d tensor (Linear weights, activations and
errors: groups are (dim0, dim1) pairs) makes every element a group, so the group scale is
``Sg = Ceil_G(|x| / St)`` per element and no per-group arrays are needed:

* general path (:func:`_nc_range`): float64 arithmetic per element, the operations of
  :func:`~core.kernels.mls_fused.mls_scales` + :func:`~core.kernels.mls_fused.round_rows_sat`
  for one group (two divisions each);
* float32 path (:func:`_ratio_lane`), for the grids of the MLS format (subnormals,
  ``maxval = 1 - Q``) and ``Mg <= 2``: everything follows from the 24-bit mantissas (see
  below), one float64 division and a few integer compares per element.

Why the float32 path gives the same bits.  Write ``|x| = A 2^(a-23)`` and ``St = S 2^(s-23)``
with integer mantissas ``A, S`` in ``[2^23, 2^24)``.  Then ``q = |x| / St = (A / S) 2^(a-s)``
and the members of G above and below ``q`` are ``rho 2^(a-s)`` with ``rho`` in
``R = {(1 + k/2^Mg) 2^delta, delta in {-1, 0}} U {2}``: ``Sg = rho 2^(a-s)`` for the smallest
``rho`` with ``rho S >= A`` (an integer threshold on ``A``; as ``rho S`` has at most 29
significant bits, the float64 quotient the reference rounds cannot land on a member unless
``q`` is one).  The scale is ``s = St Sg = (rho S) 2^(a-23)`` exactly, so the reference's
``fl(|x| / s) = fl(A / (rho S))``: the same division, on mantissas.  With ``Sg`` not clamped,
``d = A / (rho S)`` lies in ``(1/2, 1]``, where the element grid has one step ``Q``, so the
element is ``min(j, 1/Q - 1) Q`` with ``j`` the rounded ``d / Q`` (nearest-even or the
reference's stochastic rule), and the result ``j Q rho S 2^(a-23)`` is assembled as float32
bits.  NaN, +-inf and non-zero magnitudes ``<= max(St min(G), 2^-120)`` (a clamped scale,
or results near the float32 subnormal range) take the general path.
"""

from __future__ import annotations

import math

import numpy as np
from numba import carray, njit, prange

from .bits import bits_f32, bits_f64, f32_bits, f32_pointer
from .config import CHUNK, JIT_OPTIONS, SERIAL_BELOW
from .grid_round import (group_absmax_rows, nearest_sat_consts, nearest_sat_value, random_word, seed_key,
                         stochastic_sat_value)
from .mls_fused import group_scale_ceil_value

__all__ = ["quantize_one_element_groups", "ratio_serial", "ratio_serial_at", "ratio_constants", "top_quantum"]

_TWO32 = 4294967296.0
_S52 = np.uint64(52)
#: float32 magnitudes below 2^-120 take the general path (results stay clear of subnormals)
_SMALL_F32 = 2.0**-120
#: the ratio lanes cover Mg <= 2: at most 7 thresholds on the mantissa
_MAX_MG = 2
_NO_THRESHOLD = np.int64(1 << 40)  # above every 24-bit mantissa
_ABS32, _INF32, _ONE32 = np.uint32(0x7FFFFFFF), np.uint32(0x7F800000), np.uint32(1)


def top_quantum(m: int, emin: int) -> float:
    """Grid step in ``[1/2, 1)`` of an MLS element grid: ``2^(-1-Mx)`` (fixed point: ``2^-Mx``)."""
    return 2.0 ** (max(-1, emin) - m)


# ----------------------------------------------------------------- general path (float64)
@njit(**JIT_OPTIONS)
def _nc_scale(v, st, eg, mg):
    """Scale ``St * Sg`` of an element that is its own group: ``Sg = Ceil_G(|v| / St)`` (NaN counts as
    0 in a group max): the operations of ``mls_scales`` for one group.  A group holding +-inf and no
    finite non-zero value takes the largest group scale ``Sg = 1`` (``core.formats.mls``), so +-inf
    saturates to +-St * max as in every other grouping."""
    a = abs(v)
    if a == math.inf:
        return st
    g = a if a < math.inf else 0.0
    sg, _, _ = group_scale_ceil_value(g / st if st > 0.0 else 0.0, eg, mg)
    return st * sg


@njit(**JIT_OPTIONS)
def _nc_range(x, out, lo, hi, st, eg, mg, m, emin, sub, maxval, mode, key):
    """Elements ``lo:hi``; one loop per mode (a mode test inside the loop stops vectorization)."""
    xs, os_ = x[lo:hi], out[lo:hi]  # slices: indices from 0 need no negative-index handling
    if mode == 0:
        shift, low_mask, up, down, min_biased = nearest_sat_consts(m, emin, sub)
        for j in range(xs.size):
            v = np.float64(xs[j])
            os_[j] = nearest_sat_value(v, _nc_scale(v, st, eg, mg), shift, low_mask, up, down, min_biased, maxval)
    else:
        for j in range(xs.size):
            v = np.float64(xs[j])
            os_[j] = stochastic_sat_value(v, _nc_scale(v, st, eg, mg), m, emin, sub, maxval,
                                          random_word(key, lo + j))


@njit(**JIT_OPTIONS)
def _nc_serial(x, out, st, eg, mg, m, emin, sub, maxval, mode, seed):
    _nc_range(x, out, 0, x.size, st, eg, mg, m, emin, sub, maxval, mode, seed_key(seed))


@njit(parallel=True, **JIT_OPTIONS)
def _nc_parallel(x, out, st, eg, mg, m, emin, sub, maxval, mode, seed):
    key = seed_key(seed)
    ntask = (x.size + CHUNK - 1) // CHUNK
    for t in prange(ntask):
        _nc_range(x, out, t * CHUNK, min(x.size, t * CHUNK + CHUNK), st, eg, mg, m, emin, sub, maxval, mode, key)


# ------------------------------------------------------------- float32 path (mantissa ratios)
@njit(**JIT_OPTIONS)
def _ratio_tables(S, mg):
    """Thresholds and divisors of the ratio lanes for the tensor-scale mantissa ``S``.

    ``R`` ascending without ``1/2`` (``q``'s mantissa ratio ``A/S`` is above it): ``rho_0 <
    ... < rho_(n-1) = 2``, ``n = 2^(Mg+1)``.  ``A`` takes ``rho_t`` with ``t = #{i : A >=
    T_i}``, ``T_i = floor(rho_i S) + 1``; ``B_t = rho_t S`` (exact).  Unused slots: thresholds
    no mantissa reaches, the last divisor repeated.
    """
    T = np.full(7, _NO_THRESHOLD, dtype=np.int64)
    B = np.empty(8, dtype=np.float64)
    one = np.int64(1) << mg
    n = 0
    for half in (1, 0):  # delta = -1: (2^Mg + k) / 2^(Mg+1), k >= 1; delta = 0: (2^Mg + k) / 2^Mg
        for k in range(half, one):
            num = (one + k) * S  # rho S = num / 2^(Mg + half), exact
            if n < 7:
                T[n] = (num >> (mg + half)) + 1
            B[n] = num / float(one << half)
            n += 1
    B[n] = 2.0 * S
    for t in range(n + 1, 8):
        B[t] = B[n]
    return T, B


@njit(**JIT_OPTIONS)
def _step_select(A, T, V):
    """``V[#{i : A >= T_i}]`` for ascending thresholds (tuples, ``len(V) = len(T) + 1``): a monotone
    select chain, unrolled for the tuple length (vectorizable)."""
    v = V[0]
    for i in range(len(T)):
        v = V[i + 1] if A >= T[i] else v
    return v


@njit(**JIT_OPTIONS)
def _short_tables(T):
    """Whether the 7 thresholds ``T`` use at most 3 (``Mg <= 1``, or a nearest step function with at
    most 3 steps): the lanes then select among 4 values (~12% faster)."""
    return T[3] == _NO_THRESHOLD


@njit(**JIT_OPTIONS)
def _with_exponent_of(w, b):
    """float32 bits of ``value(w) * 2^(e - 150)``, ``e`` the biased exponent of the float32 bits
    ``b``, with ``b``'s sign; zero for ``|b| = 0`` (``|x| = A 2^(e - 150)``, see the module docstring)."""
    ab = b & np.uint32(0x7FFFFFFF)
    y = np.int64(w) + ((np.int64(ab >> np.uint32(23)) - 150) << 23)
    y = y if ab != np.uint32(0) else np.int64(0)
    return np.uint32(y) | (b & np.uint32(0x80000000))


@njit(**JIT_OPTIONS)
def _ratio_lane(b, T, B, P, Q, mode, rword):
    """Quantized float32 bits of the float32 bits ``b`` (see the module docstring); ``T``, ``B``:
    threshold and divisor tuples from :func:`_ratio_tables`."""
    A = np.int64((b & np.uint32(0x7FFFFF)) | np.uint32(0x800000))
    rs = _step_select(A, T, B)  # rho S
    qq = (np.float64(A) / rs) * P  # the reference's fl(|x| / s) / Q
    j = np.floor(qq)
    frac = qq - j
    if mode == 0:  # nearest, ties to even
        j = j + 1.0 if (frac > 0.5) | ((frac == 0.5) & ((np.int64(j) & 1) == 1)) else j
    else:  # stochastic: round up iff floor(frac 2^32) + rword >= 2^32 (stochastic_sat_value)
        j = j + 1.0 if np.floor(frac * _TWO32) + rword >= _TWO32 else j
    j = min(j, P - 1.0)  # saturate at maxval = 1 - Q
    return _with_exponent_of(f32_bits(np.float32(j * Q * rs)), b)


@njit(**JIT_OPTIONS)
def _rho_of(A, S, mg):
    """``(num, sh)`` with ``rho S = num / 2^sh`` for the smallest ``rho`` in ``R`` with ``rho S >= A``."""
    one = np.int64(1) << mg
    for half in (1, 0):
        for k in range(half, one):
            num = (one + k) * S
            if num >= A << (mg + half):
                return num, mg + half
    return 2 * S, np.int64(0)


@njit(**JIT_OPTIONS)
def _j_of(A, num, sh, Pi):
    """``min(round_half_even(A P / (rho S)), P - 1)``, exactly, in integers."""
    q, r = divmod(A * Pi << sh, num)
    if 2 * r > num or (2 * r == num and (q & 1) == 1):
        q += 1
    return min(q, Pi - 1)


@njit(**JIT_OPTIONS)
def _nearest_table(S, mg, P):
    """Nearest rounding as a step function of the mantissa ``A`` in ``[2^23, 2^24)``.

    Returns ``(T, W, ok)``: the element's float32 bits (before the exponent of ``|x|`` is added)
    are ``W[t]`` with ``t = #{i : A >= T_i}``.  The walk follows ``A`` upwards from ``2^23``,
    stopping at the next member threshold of ``rho`` or the next rounding midpoint, whichever
    comes first (exact integer arithmetic); ``ok`` is False when more than 7 steps would be
    needed (many element mantissa bits), and the division lanes are used instead.
    """
    T = np.full(7, _NO_THRESHOLD, dtype=np.int64)
    W = np.zeros(8, dtype=np.uint32)
    Pi = np.int64(P)
    A = np.int64(1) << 23
    end = np.int64(1) << 24
    num, sh = _rho_of(A, S, mg)
    j = _j_of(A, num, sh, Pi)
    W[0] = f32_bits(np.float32(j * (num / (P * float(np.int64(1) << sh)))))
    n = 0
    while True:
        gamma_next = (num >> sh) + 1  # first A above rho S: the next rho
        mid_next = end
        if j < Pi - 1:  # first A rounding to j + 1 under this rho (ties to even)
            L = (2 * j + 1) * num
            R = (2 * Pi) << sh
            mid_next = L // R + 1
            if L % R == 0 and ((j + 1) & 1) == 0:
                mid_next = L // R
        A = min(gamma_next, mid_next)
        if A >= end:
            return T, W, True
        num, sh = _rho_of(A, S, mg)
        j = _j_of(A, num, sh, Pi)
        w = f32_bits(np.float32(j * (num / (P * float(np.int64(1) << sh)))))
        if w != W[n]:
            if n == 7:
                return T, W, False
            T[n] = A
            W[n + 1] = w
            n += 1
        elif n < 7:  # same value on both sides: no step (keep unused slots consistent)
            W[n + 1] = w


@njit(**JIT_OPTIONS)
def _table_lane(b, T, W):
    """Nearest: quantized float32 bits of ``b`` from the :func:`_nearest_table` step function
    (tuples; integer compares and selects only)."""
    A = np.int64((b & np.uint32(0x7FFFFF)) | np.uint32(0x800000))
    return _with_exponent_of(_step_select(A, T, W), b)


@njit(**JIT_OPTIONS)
def _flagged(v, tiny):
    """Elements the ratio lanes do not cover: NaN, +-inf, non-zero magnitudes ``<= tiny``."""
    a = abs(v)
    return not (a < np.inf) or (a != 0.0 and a <= tiny)


@njit(**JIT_OPTIONS)
def _tiny(st, eg):
    """``max(St * min(G), 2^-120)``: the flagged magnitude bound."""
    return max(st * bits_f64(np.uint64(1023 + 1 - (1 << eg)) << _S52), _SMALL_F32)


@njit(**JIT_OPTIONS)
def _needs_general_path(xb, lo, hi, tiny_bits):
    """Whether any of the float32 bit patterns ``xb[lo:hi]`` is flagged (NaN, inf, or a non-zero
    magnitude with bits ``<= tiny_bits``): two integer reductions, which vectorize."""
    top = np.uint32(0)
    low = np.uint32(0xFFFFFFFF)
    xs = xb[lo:hi]
    for j in range(xs.size):  # np.uint32 casts keep 32-bit lanes (else Numba widens to 64 bits)
        a = np.uint32(xs[j] & _ABS32)
        top = np.uint32(max(top, a))
        low = np.uint32(min(low, np.uint32(a - _ONE32)))  # zero wraps: the smallest non-zero |x| - 1
    return top >= np.uint32(0x7F800000) or low < tiny_bits


@njit(**JIT_OPTIONS)
def _tiny_bits(st, eg):
    """float32 bit bound for :func:`_needs_general_path` (rounding up: never misses a flag)."""
    return np.uint32(f32_bits(np.float32(_tiny(st, eg)))) + np.uint32(1)


@njit(**JIT_OPTIONS)
def _table_loop(xb, ob, lo, hi, T, W):
    """Nearest through the :func:`_nearest_table` step function (tables as tuples: in registers)."""
    if _short_tables(T):
        _table_loop_of(xb, ob, lo, hi, (T[0], T[1], T[2]), (W[0], W[1], W[2], W[3]))
    else:
        _table_loop_of(xb, ob, lo, hi, (T[0], T[1], T[2], T[3], T[4], T[5], T[6]),
                       (W[0], W[1], W[2], W[3], W[4], W[5], W[6], W[7]))


@njit(**JIT_OPTIONS)
def _table_loop_of(xb, ob, lo, hi, T, W):
    xs, os_ = xb[lo:hi], ob[lo:hi]  # slices: indices from 0 need no negative-index handling
    for j in range(xs.size):
        os_[j] = _table_lane(xs[j], T, W)


@njit(**JIT_OPTIONS)
def _ratio_loop(xb, ob, lo, hi, T, B, P, Q, mode, key):
    """:func:`_ratio_lane` over ``lo:hi`` (tables as tuples: in registers)."""
    if _short_tables(T):
        _ratio_loop_of(xb, ob, lo, hi, (T[0], T[1], T[2]), (B[0], B[1], B[2], B[3]), P, Q, mode, key)
    else:
        _ratio_loop_of(xb, ob, lo, hi, (T[0], T[1], T[2], T[3], T[4], T[5], T[6]),
                       (B[0], B[1], B[2], B[3], B[4], B[5], B[6], B[7]), P, Q, mode, key)


@njit(**JIT_OPTIONS)
def _ratio_loop_of(xb, ob, lo, hi, T, B, P, Q, mode, key):
    """One loop per mode (a mode test inside stops vectorization)."""
    xs, os_ = xb[lo:hi], ob[lo:hi]  # slices: indices from 0 need no negative-index handling
    if mode == 0:
        for j in range(xs.size):
            os_[j] = _ratio_lane(xs[j], T, B, P, Q, 0, 0.0)
    else:  # indexed form: measured faster than slices here (the random-word index strength-reduces)
        for i in range(lo, hi):
            ob[i] = _ratio_lane(xb[i], T, B, P, Q, 1, random_word(key, i))


@njit(**JIT_OPTIONS)
def _ratio_range(x, out, lo, hi, st, eg, mg, m, emin, maxval, mode, key, P, Q, check):
    """Elements ``lo:hi`` of float32 ``x`` into ``out``: nearest through the :func:`_nearest_table`
    step function when it has at most 7 steps, else through :func:`_ratio_lane`; with ``check``,
    the flagged elements again through the general :func:`_nc_range`."""
    xb = x.view(np.uint32)
    ob = out.view(np.uint32)
    S = np.int64((f32_bits(np.float32(st)) & np.uint32(0x7FFFFF)) | np.uint32(0x800000))
    done = False
    if mode == 0:
        T, W, done = _nearest_table(S, mg, P)
        if done:
            _table_loop(xb, ob, lo, hi, T, W)
    if not done:
        T, B = _ratio_tables(S, mg)
        _ratio_loop(xb, ob, lo, hi, T, B, P, Q, mode, key)
    if not check:
        return
    tiny = _tiny(st, eg)
    for i in range(lo, hi):
        if _flagged(np.float64(x[i]), tiny):
            _nc_range(x, out, i, i + 1, st, eg, mg, m, emin, True, maxval, mode, key)


@njit(**JIT_OPTIONS)
def ratio_serial(x, out, eg, mg, m, emin, maxval, mode, seed, P, Q):
    """St, the flag check and the lanes in one call (one pass for St and the check); returns St."""
    xb = x.view(np.uint32)
    top = np.uint32(0)
    best = np.uint32(0)
    low = np.uint32(0xFFFFFFFF)
    for i in range(xb.size):  # np.uint32 casts keep 32-bit lanes (else Numba widens to 64 bits)
        a = np.uint32(xb[i] & _ABS32)
        top = np.uint32(max(top, a))
        best = np.uint32(max(best, a if a < _INF32 else np.uint32(0)))
        low = np.uint32(min(low, np.uint32(a - _ONE32)))  # zero wraps to the largest word
    st = np.float64(bits_f32(np.uint32(best)))
    key = seed_key(seed)
    if st == 0.0:  # no finite non-zero value: every scale is 0 (NaN stays NaN)
        _nc_range(x, out, 0, x.size, st, eg, mg, m, emin, True, maxval, mode, key)
        return st
    check = top >= np.uint32(0x7F800000) or (low != np.uint32(0xFFFFFFFF) and
                                             np.float64(bits_f32(np.uint32(low + np.uint32(1)))) <= _tiny(st, eg))
    _ratio_range(x, out, 0, x.size, st, eg, mg, m, emin, maxval, mode, key, P, Q, check)
    return st


@njit(**JIT_OPTIONS)
def ratio_serial_at(x_address, out_address, n, eg, mg, m, emin, maxval, mode, seed, P, Q):
    """:func:`ratio_serial` on ``n`` contiguous float32 values at ``x_address`` into ``out_address``.

    The training loop's entry (a tensor's ``data_ptr()``): it skips the tensor-to-array
    conversions of every call (~2 us each, on tensors of a few thousand elements).  The caller
    checks that both buffers are contiguous float32 CPU memory of ``n`` elements and keeps them
    alive for the call.
    """
    return ratio_serial(carray(f32_pointer(x_address), n), carray(f32_pointer(out_address), n),
                        eg, mg, m, emin, maxval, mode, seed, P, Q)


@njit(parallel=True, **JIT_OPTIONS)
def _ratio_parallel(x, out, st, eg, mg, m, emin, maxval, mode, seed, P, Q):
    key = seed_key(seed)
    if st == 0.0:
        _nc_range(x, out, 0, x.size, st, eg, mg, m, emin, True, maxval, mode, key)
        return
    xb = x.view(np.uint32)
    tiny_bits = _tiny_bits(st, eg)
    ntask = (x.size + CHUNK - 1) // CHUNK
    for t in prange(ntask):
        lo = t * CHUNK
        hi = min(x.size, lo + CHUNK)
        _ratio_range(x, out, lo, hi, st, eg, mg, m, emin, maxval, mode, key, P, Q,
                     _needs_general_path(xb, lo, hi, tiny_bits))


def quantize_one_element_groups(x: np.ndarray, out: np.ndarray, eg: int, mg: int, m: int, emin: int,
                                sub: bool, maxval: float, mode: int, seed: int) -> float:
    """MLS quantization of a flat float32/float64 ``x`` in which every element is its own group,
    nearest (mode 0) or stochastic (mode 1), into ``out`` (same dtype).  Returns ``St``.

    Same bits as ``mls_scales`` + ``round_rows_sat`` (tests compare them): float32 data on an
    MLS element grid with ``Mg <= 2`` takes the ratio lanes (St and the flag check in one
    pass, then one pass of lanes), everything else the general per-element path.  Inputs below
    ``SERIAL_BELOW`` elements run on the calling thread.
    """
    pq = ratio_constants(m, emin, sub, maxval, mg, mode)
    if x.dtype != np.float32 or out.dtype != np.float32:
        pq = None  # the ratio lanes are float32 only
    if pq is not None and x.size < SERIAL_BELOW:
        return float(ratio_serial(x, out, eg, mg, m, emin, maxval, mode, seed, pq[0], pq[1]))
    st = float(group_absmax_rows(x, 1)[0])
    if pq is not None:
        _ratio_parallel(x, out, st, eg, mg, m, emin, maxval, mode, seed, pq[0], pq[1])
        return st
    kernel = _nc_serial if x.size < SERIAL_BELOW else _nc_parallel
    kernel(x, out, st, eg, mg, m, emin, sub, maxval, mode, seed)
    return st


def ratio_constants(m: int, emin: int, sub: bool, maxval: float, mg: int, mode: int) -> tuple[float, float] | None:
    """``(P, Q)`` for :func:`ratio_serial` when the ratio lanes cover this grid, Mg and mode, else None.

    The training loop calls :func:`ratio_serial_at` directly for float32 inputs below
    ``SERIAL_BELOW`` elements (one Python frame less per tensor) and
    :func:`quantize_one_element_groups` otherwise.
    """
    Q = top_quantum(m, emin)
    if sub and mode in (0, 1) and mg <= _MAX_MG and maxval == 1.0 - Q and m <= 20:
        return 1.0 / Q, Q
    return None
