"""Numba CPU kernels: rounding onto a minifloat grid, optionally per-group scaled.

Arrays in, arrays out (no torch, no specs).  The per-element math is written
once as plain ``@njit`` functions (:func:`round_grid`, :func:`quantize_value`,
:func:`random_word`) so that the CUDA twins call exactly the same code.  The
rules are those of :mod:`core.formats.grid` (the float64 reference).

Rounding mode codes: :mod:`core.kernels.modes` (0 nearest-even, 1 stochastic, 2 truncate, 3 up,
4 down, 5 nearest-away, 6 odd, ``RBITS_BASE + K`` stochastic with K random bits); the per-sign
magnitude mode and the masked random word come from the functions there, compiled here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit, prange

from . import modes as _modes
from .bits import bits_f32, bits_f64, f32_bits, f64_bits
from .config import CHUNK, JIT_OPTIONS, SERIAL_BELOW

__all__ = [
    "magnitude_mode",
    "mask_word",
    "uses_random",
    "code_lsb_flip",
    "random_words",
    "round_grid",
    "quantize_value",
    "random_word",
    "seed_key",
    "chained_seed",
    "chained_seeds",
    "quantize_grid_3d",
    "group_absmax_3d",
    "quantize_f32_flat",
    "quantize_rows_nearest_sat",
    "stochastic_sat_value",
    "stochastic_sat_lane",
    "group_absmax_rows",
    "rows_per_task",
]

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S32 = np.uint64(32)
_TWO32 = 4294967296.0
_TWO52 = 4503599627370496.0
_S52 = np.uint64(52)
_EXPMASK = np.uint64(0x7FF)


# the rules of core.kernels.modes, compiled from the same source (one definition for reference and kernels)
magnitude_mode = njit(**JIT_OPTIONS)(_modes.magnitude_mode)
mask_word = njit(**JIT_OPTIONS)(_modes.mask_word)
uses_random = njit(**JIT_OPTIONS)(_modes.uses_random)


@njit(**JIT_OPTIONS)
def code_lsb_flip(m, emin, sub):
    """1 when the last bit of a float64 bit pattern rounded to ``m`` mantissa bits is NOT the last bit
    of the target's code.  Only grids without mantissa bits (``m = 0``) can differ: there the kept last
    bit is float64's exponent bit, of parity ``e + 1023``, while the code of ``2^e`` is
    ``e - emin + z``, ``z = 1`` when zero has the code below ``2^emin`` (``sub``), ``z = 0`` without a
    zero code (E8M0); see ``core.formats.grid.ElementGrid`` and ``code_lsb``."""
    if m != 0:
        return 0
    z = 1 if sub else 0
    return (emin + z + 1) & 1


@njit(**JIT_OPTIONS)
def _mix(z):
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(**JIT_OPTIONS)
def seed_key(seed):
    """splitmix64 of the seed: the key of the counter-based generator."""
    return _mix(np.uint64(seed))


@njit(**JIT_OPTIONS)
def _layer_key(seed, step, layer):
    """``splitmix64`` chained over ``(seed, step, layer)`` (uint64 views of the int64 arguments)."""
    z = _mix(np.uint64(seed) + _GAMMA)
    z = _mix((z ^ np.uint64(step)) + _GAMMA)
    return _mix((z ^ np.uint64(layer)) + _GAMMA)


@njit(**JIT_OPTIONS)
def _code_seed(z, code):
    return np.int64(_mix((z ^ np.uint64(code)) + _GAMMA) >> np.uint64(1))


@njit(**JIT_OPTIONS)
def chained_seed(seed, step, layer, code):
    """``splitmix64`` chained over ``(seed, step, layer, code)``, shifted to 63 bits: the rounding
    seed of one tensor of one layer at one step (``core.train.qlayers.tensor_seed``)."""
    return _code_seed(_layer_key(seed, step, layer), code)


@njit(**JIT_OPTIONS)
def chained_seeds(seed, step, layer):
    """:func:`chained_seed` for the codes 0..7 at once (one call per layer and step)."""
    z = _layer_key(seed, step, layer)
    return (_code_seed(z, 0), _code_seed(z, 1), _code_seed(z, 2), _code_seed(z, 3), _code_seed(z, 4),
            _code_seed(z, 5), _code_seed(z, 6), _code_seed(z, 7))


@njit(**JIT_OPTIONS)
def random_word(key, index):
    """32-bit random word of element ``index`` (as float64 in [0, 2^32)).

    ``key`` is re-typed as uint64 first: a key that arrives as int64 (a Python int below 2^63
    passed into a kernel) would otherwise turn the sum into float64 arithmetic (Numba's
    int64 + uint64 promotion) and give other words than the CPU kernels.
    """
    z = _mix(np.uint64(key) + (np.uint64(index) + np.uint64(1)) * _GAMMA)
    # through int64 (exact below 2^32): a signed conversion is one instruction, an unsigned one not
    return np.float64(np.int64(z >> _S32))


@njit(**JIT_OPTIONS)
def random_words(seed, offset, out):
    """``out[i] = random_word(seed_key(seed), offset + i)`` as int64: the words the rounding kernels
    draw for the elements ``offset, offset + 1, ...`` (``core.formats.grid.random_bits``)."""
    key = seed_key(seed)
    for i in range(out.size):
        out[i] = np.int64(random_word(key, offset + i))


@njit(**JIT_OPTIONS)
def pow2(k):
    """2.0**k for integer k, exact (bit construction in the normal range)."""
    if -1022 <= k <= 1023:
        return bits_f64(np.uint64(k + 1023) << _S52)
    return math.ldexp(1.0, k)


@njit(**JIT_OPTIONS)
def quantum_exponent(e, m, emin, sub):
    """Exponent k of the grid step ``2^k`` at a value of binade ``e``: ``e - m`` for normals,
    ``emin - m`` below the normal range with subnormals, ``emin`` without (rounds to 0 or 2^emin)."""
    if e >= emin:
        return e - m
    if sub:
        return emin - m
    return emin


@njit(**JIT_OPTIONS)
def round_grid(a, m, emin, sub, mode, rword):
    """Round a non-negative finite float64 ``a`` onto the grid (no saturation).

    ``mode`` is a *magnitude* mode (:func:`magnitude_mode`: 0 nearest-even, 1 stochastic, 2 toward
    zero, 5 nearest-away, 6 odd, 7 away from zero).  Implements
    :func:`core.formats.grid.round_grid_reference` for one value.  Results that are normals of the
    grid (``e >= emin``, ``m <= 51``) are rounded on the float64 bit pattern: add half-ulp-minus-one
    plus the code's last bit (nearest-even), half an ulp (nearest-away), ulp-minus-one (away), the
    random word aligned below the kept bits (stochastic: up iff ``floor(frac * 2^32) + r >= 2^32``),
    or set the last code bit when inexact (odd), then mask.  Below the grid's normals the quotient
    ``q = a / 2^k`` is rounded with the same rules.
    """
    if a == 0.0:
        return 0.0
    b = f64_bits(a)
    e = np.int64((b >> _S52) & _EXPMASK) - 1023
    if e >= emin and m <= 51:
        shift = np.uint64(52 - m)
        one = np.uint64(1)
        low_mask = (one << shift) - one
        lsb = ((b >> shift) & one) ^ np.uint64(code_lsb_flip(m, emin, sub))
        if mode == 0:
            b = b + (low_mask >> one) + lsb
        elif mode == 1:
            r = np.uint64(rword)
            if shift >= _S32:
                b = b + (r << (shift - _S32))
            else:
                b = b + (r >> (_S32 - shift))
        elif mode == 5:
            b = b + (one << (shift - one))
        elif mode == 7:
            b = b + low_mask
        elif mode == 6:
            if (b & low_mask) != 0 and lsb == 0:
                b = (b & ~low_mask) + (one << shift)
        return bits_f64(b & ~low_mask)
    k = quantum_exponent(e, m, emin, sub)
    if -1022 <= k <= 1022:
        q = a * pow2(-k)
    else:
        q = math.ldexp(a, -k)
    if mode == 0 and m > 0:
        if q < _TWO52:
            fl = (q + _TWO52) - _TWO52  # round half to even in the FP unit (the code's bit is fl's here)
        else:
            fl = q
    else:
        fl = np.floor(q)
        d = q - fl  # exact
        odd = fl % 2.0 == 1.0  # below the normals the code's last bit is fl's (0 or 2^emin for m = 0)
        if mode == 0:
            up = d > 0.5 or (d == 0.5 and odd)
        elif mode == 1:
            up = math.floor(d * _TWO32) + rword >= _TWO32
        elif mode == 5:
            up = d >= 0.5
        elif mode == 7:
            up = d > 0.0
        elif mode == 6:
            up = d > 0.0 and not odd
        else:
            up = False
        if up:
            fl += 1.0
    if -1022 <= k <= 1023:
        return fl * pow2(k)
    return math.ldexp(fl, k)


@njit(**JIT_OPTIONS)
def quantize_value(v, s, m, emin, sub, maxval, ovf, infv, mode, rword):
    """Quantize one value ``v`` with scale ``s`` (``y = sign * s * round(|v|/s)``).

    NaN stays NaN; ``s == 0`` (a group with no finite non-zero value) gives a
    signed zero; +-inf becomes +-``infv * s``; a rounded magnitude above
    ``maxval`` becomes ``ovf``, or ``maxval`` when the magnitude was rounded toward zero
    (IEEE 754-2019 section 7.4: roundTowardZero and the directed modes toward the finite side never
    overflow).  ``mode`` is a kernel code of :mod:`core.kernels.modes` (the caller masks ``rword``
    with :func:`mask_word`).
    """
    if v != v:
        return v
    if s == 0.0:
        return math.copysign(0.0, v)
    a = abs(v)
    if a == math.inf:
        r = infv
    else:
        if s != 1.0:
            a = a / s
        mm = magnitude_mode(mode, v < 0.0)
        r = round_grid(a, m, emin, sub, mm, rword)
        if r > maxval:
            r = maxval if mm == 2 else ovf
    if s != 1.0 and s != 0.0:
        r = r * s
    return math.copysign(r, v)


@njit(parallel=True, **JIT_OPTIONS)
def quantize_grid_3d(x, scale, out, m, emin, sub, maxval, ovf, infv, mode, seed):
    """``out[a,b,r] = quantize_value(x[a,b,r], scale[a,b], ...)`` in parallel.

    ``x``/``out`` are (A, B, R) arrays (float32 or float64; any strides),
    ``scale`` an (A, B) float64 array.  Random words are indexed by the flat
    C-order position in (A, B, R).
    """
    A, B, R = x.shape
    nchunk = (R + CHUNK - 1) // CHUNK
    key = seed_key(seed)
    for t in prange(A * B * nchunk):
        row = t // nchunk
        c = t - row * nchunk
        ia = row // B
        ib = row - ia * B
        s = scale[ia, ib]
        lo = c * CHUNK
        hi = min(R, lo + CHUNK)
        base = row * R
        for r in range(lo, hi):
            rw = 0.0
            if uses_random(mode):
                rw = np.float64(mask_word(np.int64(random_word(key, base + r)), mode))
            out[ia, ib, r] = quantize_value(
                np.float64(x[ia, ib, r]), s, m, emin, sub, maxval, ovf, infv, mode, rw
            )


@njit(parallel=True, **JIT_OPTIONS)
def group_absmax_3d(x):
    """Max of |x| over the last axis of an (A, B, R) array, ignoring NaN and inf."""
    A, B, R = x.shape
    nchunk = (R + CHUNK - 1) // CHUNK
    part = np.zeros(A * B * nchunk, dtype=np.float64)
    for t in prange(A * B * nchunk):
        row = t // nchunk
        c = t - row * nchunk
        ia = row // B
        ib = row - ia * B
        best = 0.0
        for r in range(c * CHUNK, min(R, c * CHUNK + CHUNK)):
            a = abs(np.float64(x[ia, ib, r]))
            if a > best and a != math.inf:
                best = a
        part[t] = best
    out = np.zeros((A, B), dtype=np.float64)
    for row in range(A * B):
        ia = row // B
        ib = row - ia * B
        best = 0.0
        for c in range(nchunk):
            if part[row * nchunk + c] > best:
                best = part[row * nchunk + c]
        out[ia, ib] = best
    return out


def quantize_f32_flat(xb: np.ndarray, ob: np.ndarray, m: int, emin: int, sub: bool, maxval: float, ovf: float,
                      infv: float, mode: int, seed: int) -> None:
    """Fast path of :func:`quantize_grid_3d` for unscaled, contiguous float32 data.

    ``xb``/``ob`` are the uint32 bit views of the float32 input and output.  Requires ``m <= 22``,
    ``emin >= -126`` and a float32-representable ``maxval`` (and ``ovf``).  Every finite value is
    rounded without branches (:func:`_f32_lane`): normals of the target on the bit pattern, values
    below the target's normal range (zeros, ReLU outputs, small gradients) with the fixed quantum
    there; NaN and +-inf take the generic path afterwards.  Bit-identical to the generic kernel
    (the tests compare them).  Inputs below ``SERIAL_BELOW`` elements run on the calling thread.
    """
    kernel = _f32_flat_serial if xb.size < SERIAL_BELOW else _f32_flat_parallel
    kernel(xb, ob, m, emin, sub, maxval, ovf, infv, mode, seed)


@njit(**JIT_OPTIONS)
def _f32_flat_serial(xb, ob, m, emin, sub, maxval, ovf, infv, mode, seed):
    _f32_flat_range(xb, ob, 0, xb.size, m, emin, sub, maxval, ovf, infv, mode, seed_key(seed))


@njit(parallel=True, **JIT_OPTIONS)
def _f32_flat_parallel(xb, ob, m, emin, sub, maxval, ovf, infv, mode, seed):
    key = seed_key(seed)
    ntask = (xb.size + CHUNK - 1) // CHUNK
    for t in prange(ntask):
        _f32_flat_range(xb, ob, t * CHUNK, min(xb.size, t * CHUNK + CHUNK), m, emin, sub, maxval, ovf, infv, mode, key)


@njit(**JIT_OPTIONS)
def _f32_lane(u, shift, half_m1, mask, min_biased, max_bits, ovf_bits, inv_q, q, mm, rw, flip):
    """float32 bits of the finite float32 with bits ``u`` on the grid (see :func:`round_grid`), in the
    magnitude mode ``mm`` (:func:`magnitude_mode`; ``rw`` the masked random word, ``flip`` from
    :func:`code_lsb_flip`).

    Both candidates are computed and one is selected (no branch on the value, so the loop vectorizes
    when ``mm`` is a loop constant): the bit-pattern rounding, right for normals of the target (and
    zero), and the rounding to the fixed quantum ``q`` below the target's normal range
    (``2^(emin - m)``, or ``2^emin`` without subnormals), exact in float64 (power-of-two scalings).
    Then overflow to ``ovf`` (to max when rounding toward zero).
    """
    a = u & 0x7FFFFFFF
    low = (np.int64(1) << shift) - 1
    lsb = ((a >> shift) & 1) ^ flip  # the code's last bit
    if mm == 0:  # nearest, ties to even
        an = (a + half_m1 + lsb) & mask
    elif mm == 1:  # stochastic: the random word's top bits below the kept ones
        an = (a + (np.int64(rw) >> (32 - shift))) & mask
    elif mm == 5:  # nearest, ties away
        an = (a + half_m1 + 1) & mask
    elif mm == 7:  # away from zero
        an = (a + low) & mask
    elif mm == 6:  # odd: set the code's last bit when inexact
        an = (a & mask) + ((np.int64(1) << shift) if ((a & low) != 0 and lsb == 0) else 0)
    else:
        an = a & mask
    t = np.float64(bits_f32(np.uint32(a))) * inv_q
    if mm == 0:
        fl = (t + _TWO52) - _TWO52  # ties to even in the FP unit (t < 2^52 here; the code's bit is fl's)
    else:
        fl = np.floor(t)
        d = t - fl
        if mm == 1:
            fl = fl + 1.0 if np.floor(d * _TWO32) + rw >= _TWO32 else fl
        elif mm == 5:
            fl = fl + 1.0 if d >= 0.5 else fl
        elif mm == 7:
            fl = fl + 1.0 if d > 0.0 else fl
        elif mm == 6:
            fl = fl + 1.0 if (d > 0.0 and fl % 2.0 == 0.0) else fl
    r = np.int64(f32_bits(np.float32(fl * q))) if (a >> 23) < min_biased else an
    r = (max_bits if mm == 2 else ovf_bits) if r > max_bits else r
    return np.uint32(r | (u & 0x80000000))


@njit(**JIT_OPTIONS)
def _f32_flat_range(xb, ob, lo, hi, m, emin, sub, maxval, ovf, infv, mode, key):
    """Elements ``lo:hi`` of :func:`quantize_f32_flat`: one branch-free loop per sign-independent mode
    (nearest, stochastic, truncate), one loop for the others (the magnitude mode per element's sign),
    then the generic path for NaN and +-inf when the loop saw any."""
    shift = np.int64(23 - m)
    half_m1 = (np.int64(1) << (shift - 1)) - 1
    mask = np.int64(0x7FFFFFFF) - ((np.int64(1) << shift) - 1)
    min_biased = np.int64(emin + 127)
    max_bits = np.int64(f32_bits(np.float32(maxval)))
    ovf_bits = np.int64(f32_bits(np.float32(ovf)))
    flip = np.int64(code_lsb_flip(m, emin, sub))
    kq = emin - m if sub else emin
    q, inv_q = pow2(kq), pow2(-kq)
    xs, os_ = xb[lo:hi], ob[lo:hi]  # slices: indices from 0 need no negative-index handling
    top = np.int64(0)
    if mode == 1:
        for j in range(xs.size):
            u = np.int64(xs[j])
            top = max(top, u & 0x7FFFFFFF)
            os_[j] = _f32_lane(u, shift, half_m1, mask, min_biased, max_bits, ovf_bits, inv_q, q, 1,
                               random_word(key, lo + j), flip)
    elif mode == 0:
        for j in range(xs.size):
            u = np.int64(xs[j])
            top = max(top, u & 0x7FFFFFFF)
            os_[j] = _f32_lane(u, shift, half_m1, mask, min_biased, max_bits, ovf_bits, inv_q, q, 0, 0.0, flip)
    elif mode == 2:
        for j in range(xs.size):
            u = np.int64(xs[j])
            top = max(top, u & 0x7FFFFFFF)
            os_[j] = _f32_lane(u, shift, half_m1, mask, min_biased, max_bits, ovf_bits, inv_q, q, 2, 0.0, flip)
    elif mode == 5:
        for j in range(xs.size):
            u = np.int64(xs[j])
            top = max(top, u & 0x7FFFFFFF)
            os_[j] = _f32_lane(u, shift, half_m1, mask, min_biased, max_bits, ovf_bits, inv_q, q, 5, 0.0, flip)
    elif mode == 6:
        for j in range(xs.size):
            u = np.int64(xs[j])
            top = max(top, u & 0x7FFFFFFF)
            os_[j] = _f32_lane(u, shift, half_m1, mask, min_biased, max_bits, ovf_bits, inv_q, q, 6, 0.0, flip)
    elif mode == 3 or mode == 4:  # up / down: both magnitude candidates (constant modes), selected by sign
        away_if_neg = mode == 4  # magnitude_mode: up rounds positives away, down rounds negatives away
        for j in range(xs.size):
            u = np.int64(xs[j])
            top = max(top, u & 0x7FFFFFFF)
            ra = _f32_lane(u, shift, half_m1, mask, min_biased, max_bits, ovf_bits, inv_q, q, 7, 0.0, flip)
            rz = _f32_lane(u, shift, half_m1, mask, min_biased, max_bits, ovf_bits, inv_q, q, 2, 0.0, flip)
            os_[j] = ra if (((u >> 31) & 1) == 1) == away_if_neg else rz
    else:  # stochastic_rbits<K>: stochastic with the masked word
        for j in range(xs.size):
            u = np.int64(xs[j])
            top = max(top, u & 0x7FFFFFFF)
            os_[j] = _f32_lane(u, shift, half_m1, mask, min_biased, max_bits, ovf_bits, inv_q, q, 1,
                               np.float64(mask_word(np.int64(random_word(key, lo + j)), mode)), flip)
    if top < 0x7F800000:
        return
    for j in range(xs.size):  # NaN and +-inf
        u = np.int64(xs[j])
        if (u & 0x7FFFFFFF) >= 0x7F800000:
            rw = np.float64(mask_word(np.int64(random_word(key, lo + j)), mode)) if uses_random(mode) else 0.0
            r = quantize_value(np.float64(bits_f32(np.uint32(u))), 1.0, m, emin, sub, maxval, ovf, infv, mode, rw)
            os_[j] = f32_bits(np.float32(r))


@njit(**JIT_OPTIONS)
def nearest_sat_consts(m, emin, sub):
    """Loop constants of :func:`nearest_sat_value` for a grid."""
    shift = np.uint64(52 - m)
    low_mask = (np.uint64(1) << shift) - np.uint64(1)
    kmin = (emin - m) if sub else emin
    return shift, low_mask, pow2(-kmin), pow2(kmin), np.uint64(emin + 1023)


@njit(**JIT_OPTIONS)
def nearest_sat_value(v, s, shift, low_mask, up, down, min_biased, maxval):
    """Branch-free nearest-even rounding with saturation of one value with
    scale ``s`` (``ovf = infv = maxval``); identical results to
    :func:`quantize_value` in that case, but vectorizable."""
    s_div = s if s != 0.0 else 1.0
    a = abs(v) / s_div
    b = f64_bits(a)
    # m = 0 (shift 52): the code's last bit is the exponent bit flipped when emin (= log2 down) is odd
    # (code_lsb_flip for grids with a zero code, sub = true: the only m = 0 grids of the scaled families)
    flip = np.uint64(1) if shift == _S52 and ((f64_bits(down) >> _S52) & np.uint64(1)) == 0 else np.uint64(0)
    bn = (b + (low_mask >> np.uint64(1)) + (((b >> shift) & np.uint64(1)) ^ flip)) & ~low_mask
    rs = ((a * up + _TWO52) - _TWO52) * down
    r = bits_f64(bn) if ((b >> _S52) & _EXPMASK) >= min_biased else rs
    r = maxval if not (r <= maxval) else r
    y = math.copysign(r * s if s != 1.0 else r, v)
    return v if v != v else y


@njit(parallel=True, **JIT_OPTIONS)
def quantize_rows_nearest_sat(x, scale, out, m, emin, sub, maxval):
    """Branch-free, vectorizable special case of :func:`quantize_grid_3d` for
    C-contiguous data flattened to (rows * R,) with one scale per row, for
    round-to-nearest-even with saturation (``ovf = infv = maxval``), the mode
    every scaled format uses for its forward pass.  Bit-identical to the
    generic path (tested)."""
    rows = scale.size
    n = x.size
    R = n // rows if rows else 0
    nchunk = (R + CHUNK - 1) // CHUNK
    shift, low_mask, up, down, min_biased = nearest_sat_consts(m, emin, sub)
    for t in prange(rows * nchunk):
        row = t // nchunk
        c = t - row * nchunk
        s = scale[row]
        lo = row * R + c * CHUNK
        hi = min(row * R + R, lo + CHUNK)
        xs, os_ = x[lo:hi], out[lo:hi]  # slices: indices from 0 need no negative-index handling
        for j in range(xs.size):
            os_[j] = nearest_sat_value(np.float64(xs[j]), s, shift, low_mask, up, down, min_biased, maxval)


@njit(**JIT_OPTIONS)
def floor_log2(a):
    """floor(log2 a) of a positive normal float64, from its exponent bits."""
    return np.int64((f64_bits(a) >> _S52) & _EXPMASK) - 1023


@njit(**JIT_OPTIONS)
def stochastic_sat_lane(v, s, m, emin, sub, maxval, rword):
    """:func:`stochastic_sat_value` for a scale ``s > 0``, written with selects (vectorizes in row
    loops, where ``s == 0`` rows are handled apart); the arithmetic of both."""
    a = abs(v) / s  # exact for s == 1
    e = floor_log2(a)  # -1023 for 0 and float64 subnormals, 1024 for inf
    k = min(quantum_exponent(e, m, emin, sub), 1000)  # a >= 2^1000 saturates in any case
    q = a * bits_f64(np.uint64(1023 - k) << _S52)  # a * 2^-k, exact
    fl = np.floor(q)  # float floor (math.floor returns an int64 in Numba)
    fl = fl + 1.0 if np.floor((q - fl) * _TWO32) + rword >= _TWO32 else fl
    r = fl * bits_f64(np.uint64(1023 + k) << _S52)
    r = maxval if not (r <= maxval) or a == math.inf else r
    y = math.copysign(r * s, v)  # r * 1 == r
    return v if v != v else y


@njit(**JIT_OPTIONS)
def stochastic_sat_value(v, s, m, emin, sub, maxval, rword):
    """Stochastic rounding with saturation of one value with scale ``s``.

    Same results as :func:`~core.kernels.grid_round.quantize_value` in mode 1 with
    ``ovf = infv = maxval``: the quantum is ``2^k``, ``k = max(e, emin) - m``
    (``emin`` when the grid has no subnormals and ``e < emin``); ``q = a 2^-k`` is
    rounded up iff ``floor(frac(q) 2^32) + rword >= 2^32``.  That is the bit-pattern
    rule of ``round_grid`` for normals (a carry out of the dropped bits) written
    as float arithmetic, so one formula covers normals and subnormals.  Requires
    ``emin - m >= -1000`` and ``maxval < 2^1000`` (checked by the caller), so both
    powers of two are built from their bit patterns without range branches.
    """
    if v != v:
        return v
    if s == 0.0:
        return math.copysign(0.0, v)
    return stochastic_sat_lane(v, s, m, emin, sub, maxval, rword)


def quantize_pow2_blocks(x: np.ndarray, out: np.ndarray, exps: np.ndarray, block: int, offset: int, elo: int,
                         ehi: int, ezero: int, rceil_max: float, m: int, emin: int, sub: bool, maxval: float,
                         mode: int, seed: int) -> None:
    """Fused block-floating-point quantizer (MX, BFP) on contiguous blocks of a flat float32/float64
    ``x`` (see :func:`_quantize_pow2_blocks`; the block amax is an integer max over the bit
    patterns)."""
    xb, absmask, infbits = _magnitude_bits(x)
    _quantize_pow2_blocks(x, xb, absmask, infbits, out, exps, block, offset, elo, ehi, ezero, rceil_max,
                          m, emin, sub, maxval, mode, seed)


@njit(parallel=True, **JIT_OPTIONS)
def _quantize_pow2_blocks(x, xb, absmask, infbits, out, exps, block, offset, elo, ehi, ezero, rceil_max,
                          m, emin, sub, maxval, mode, seed):
    """Fused block-floating-point quantizer (MX, BFP) on contiguous blocks.

    For each block of ``block`` consecutive elements of the flat array: amax
    over finite values; shared exponent ``e = floor(log2 amax) + offset``
    (or, when ``rceil_max > 0``, the smallest e with ``rceil_max * 2^e >=
    amax``), clamped to [elo, ehi], ``ezero`` for an all-zero block; then
    every element is rounded onto the grid with scale ``2^e`` and saturated.
    ``exps`` receives the exponents.  Same results as the unfused path
    (block amax -> scales -> :func:`quantize_grid_3d`), tested.
    """
    nblocks = x.size // block
    key = seed_key(seed)
    shift, low_mask, up, down, min_biased = nearest_sat_consts(m, emin, sub)
    for b in prange(nblocks):
        lo = b * block
        amax = _finite_absmax(xb, lo, lo + block, absmask, infbits)
        if amax > 0.0:
            if rceil_max > 0.0:
                e = floor_log2(amax / rceil_max)
                if rceil_max * pow2(e) < amax:
                    e += 1
                if rceil_max * pow2(e - 1) >= amax:
                    e -= 1
            else:
                e = floor_log2(amax) + offset
            e = max(elo, min(ehi, e))
        else:
            e = ezero
        exps[b] = e
        s = pow2(e)
        xs, os_ = x[lo:lo + block], out[lo:lo + block]
        if mode == 0:
            for j in range(block):
                os_[j] = nearest_sat_value(np.float64(xs[j]), s, shift, low_mask, up, down, min_biased, maxval)
            continue
        if mode == 1:
            for j in range(block):
                os_[j] = stochastic_sat_value(np.float64(xs[j]), s, m, emin, sub, maxval, random_word(key, lo + j))
            continue
        for j in range(block):
            os_[j] = quantize_value(np.float64(xs[j]), s, m, emin, sub, maxval, maxval, maxval, mode, 0.0)


# ------------------------------------------------ group max over runs of rows (bit patterns)
@njit(**JIT_OPTIONS)
def rows_per_task(rows, R):
    """Whole rows per parallel task, about ``CHUNK`` elements each (at least one row)."""
    per = CHUNK // R if R > 0 else rows
    return max(1, per)


@njit(**JIT_OPTIONS)
def _bits_max(xb, lo, hi, absmask, infbits):
    """Max of the magnitude bit patterns in ``xb[lo:hi]``, inf and NaN counted as 0.

    For IEEE floats the order of magnitude bit patterns is the order of the magnitudes, so
    this is max |x| as an integer reduction, which the compiler vectorizes (a float max
    with NaN/inf tests does not vectorize without fastmath)."""
    T = xb.dtype.type
    best = T(0)
    zero = T(0)
    xs = xb[lo:hi]  # a slice: indices from 0 need no negative-index handling (vectorizes better)
    for j in range(xs.size):
        a = T(xs[j] & absmask)  # the cast keeps int32 lanes (Numba widens int32 arithmetic to int64)
        a = a if a < infbits else zero
        best = a if a > best else best
    return best


@njit(**JIT_OPTIONS)
def _finite_absmax(xb, lo, hi, absmask, infbits):
    """max |x| over ``lo:hi`` of the float32/float64 bit view ``xb`` (NaN and inf count as 0), as float64."""
    b = _bits_max(xb, lo, hi, absmask, infbits)
    if xb.itemsize == 4:
        return np.float64(bits_f32(np.uint32(b)))
    return bits_f64(np.uint64(b))


@njit(parallel=True, **JIT_OPTIONS)
def _absmax_bits_rows(xb, rows, absmask, infbits):
    out = np.zeros(rows, dtype=xb.dtype)
    R = xb.size // rows if rows else 0
    per = rows_per_task(rows, R)
    if per > 1 or R <= CHUNK:  # runs of short rows per task
        ntask = (rows + per - 1) // per
        for t in prange(ntask):
            for row in range(t * per, min(rows, t * per + per)):
                out[row] = _bits_max(xb, row * R, row * R + R, absmask, infbits)
        return out
    nchunk = (R + CHUNK - 1) // CHUNK  # long rows: partial maxima per chunk, then per row
    part = np.zeros(rows * nchunk, dtype=xb.dtype)
    for t in prange(rows * nchunk):
        row = t // nchunk
        lo = row * R + (t - row * nchunk) * CHUNK
        part[t] = _bits_max(xb, lo, min(row * R + R, lo + CHUNK), absmask, infbits)
    for row in range(rows):
        best = part[row * nchunk]
        for c in range(1, nchunk):
            if part[row * nchunk + c] > best:
                best = part[row * nchunk + c]
        out[row] = best
    return out


@njit(**JIT_OPTIONS)
def _absmax_bits_rows_serial(xb, rows, absmask, infbits):
    out = np.zeros(rows, dtype=xb.dtype)
    R = xb.size // rows if rows else 0
    if R == 1:  # one-element rows (MLS nc groups of a 2-d tensor): a flat, vectorizable loop
        T = xb.dtype.type
        zero = T(0)
        for i in range(rows):
            a = T(xb[i] & absmask)  # int32 lanes (see _bits_max)
            out[i] = a if a < infbits else zero
        return out
    for row in range(rows):
        out[row] = _bits_max(xb, row * R, row * R + R, absmask, infbits)
    return out


def group_absmax_rows(x: np.ndarray, rows: int) -> np.ndarray:
    """Max of |x| per row (float64) of a C-contiguous flat float32/float64 ``x`` of ``rows``
    equal rows, ignoring NaN and inf.  Integer max over the bit patterns (vectorized);
    tasks are runs of whole rows of about ``CHUNK`` elements (tiny rows, such as MLS ``nc``
    groups of a Linear layer, cost no task each) or chunks of one long row."""
    kernel = _absmax_bits_rows_serial if x.size < SERIAL_BELOW else _absmax_bits_rows
    xb, absmask, infbits = _magnitude_bits(x)
    return kernel(xb, rows, absmask, infbits).view(x.dtype).astype(np.float64)


def _magnitude_bits(x: np.ndarray) -> tuple[np.ndarray, Any, Any]:
    """``(bit view, magnitude mask, +inf pattern)`` of a float32/float64 array, as signed integers
    (the order of magnitude bit patterns is the order of the magnitudes)."""
    if x.dtype == np.float32:
        return x.view(np.int32), np.int32(0x7FFFFFFF), np.int32(0x7F800000)
    if x.dtype == np.float64:
        return x.view(np.int64), np.int64(0x7FFFFFFFFFFFFFFF), np.int64(0x7FF0000000000000)
    raise TypeError(f"expected a float32 or float64 array, got {x.dtype}")
