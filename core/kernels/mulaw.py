"""Numba CPU kernel of the mu-law companding quantizer (LogBTQ paper, Eq. 14-16; docs/papers.md#mu8).

Per element: clamp to the range; nearest rounding is decided against the
precomputed x-domain decision thresholds (``thr``, built once in float64: the
code index is the number of thresholds below ``a``, exact ties going to the
even code), found from a bucket table over the float64 bit pattern and at most
a step or two of correction; stochastic/truncate compand
``y = log1p(mu a / R) / log1p(mu) * K`` and round y.

Stochastic rounding (:func:`mulaw_stochastic`) decides most elements without libm's
``log1p`` (~10-20 ns per element, not vectorizable): a vectorizable ``log1p`` with a
bounded error (:func:`log1p_bounded`) gives ``y`` to within ``d``; the reference rounds up
iff ``y >= floor(y) + 1 - r 2^-32`` (``r`` the element's 32-bit random word; exact, see
:func:`mulaw_round_y`), so when ``[y - d, y + d]`` holds one ``floor`` and lies on one side of
that threshold, the code is certain.  The others (a fraction of about ``2 d``, and NaN) take
the exact path.  Same bits as :func:`mulaw_quantize` (tested).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .config import CHUNK, JIT_OPTIONS, SERIAL_BELOW
from .bits import bits_f64, f64_bits
from .grid_round import random_word, seed_key

__all__ = ["mulaw_quantize", "mulaw_stochastic", "log1p_bounded", "LOG1P_TOLERANCE", "mulaw_nearest_f32",
           "f32_threshold_tables", "padded_thresholds", "mulaw_companded", "mulaw_round_y", "bucket_starts",
           "BUCKET_SHIFT"]

_TWO32 = 4294967296.0
_MANT52 = np.uint64((1 << 52) - 1)
_ONE_BITS = np.uint64(0x3FF0000000000000)
_S52 = np.uint64(52)
_SQRT2 = math.sqrt(2.0)
_LN2 = math.log(2.0)
#: relative tolerance of the certain-decision test (the error of ``log1p_bounded``, 2^-40.9 (1 + log1p),
#: plus that of both ``y`` computations stays below 2^-40 (1 + |log1p|) in the same units: a 16x margin;
#: the uncertain fraction that takes the exact path stays ~1e-9)
LOG1P_TOLERANCE = 2.0**-36


@njit(**JIT_OPTIONS)
def mulaw_companded(v, K, mu, lg, rng):
    """(clamped magnitude a, companded y*K) of ``v``; NaN gives (NaN, NaN)."""
    a = abs(v)
    if a > rng:
        a = rng
    return a, math.log1p(mu * (a / rng)) / lg * K


@njit(**JIT_OPTIONS)
def mulaw_round_y(y, K, mode, rword):
    """Code index for stochastic (mode 1) or truncating (mode 2) rounding of y."""
    lo = math.floor(y)
    if lo < 0.0:
        lo = 0.0
    if lo > K:
        lo = float(K)
    c = np.int64(lo)
    if mode == 1 and math.floor((y - lo) * _TWO32) + rword >= _TWO32:
        c += 1
    return K if c > K else c


@njit(**JIT_OPTIONS)
def log1p_bounded(u):
    """``log(1 + u)`` for finite ``u >= 0``, vectorizable (no libm call).

    ``w = fl(1 + u) = m 2^e`` with ``m`` in ``[sqrt(1/2), sqrt(2))``; ``log m = 2 atanh(s)``,
    ``s = (m - 1) / (m + 1)``, ``|s| <= 0.1716``, summed to ``s^13`` (truncation below
    ``2 s^15 / 15 / (1 - s^2) < 2^-40.9``). Absolute error below ``2^-40 (1 + log(1 + u))`` (the rounding
    of ``1 + u`` contributes ``2^-53``; the largest error measured over 6e4 arguments in ``[1e-300, 1e9]``
    was ``2^-41.4 (1 + log(1 + u))``). Only the certain-decision test uses it, with that bound: seven
    terms instead of eleven made stochastic MU8 ~1.25x faster (benchmarks/README.md).
    """
    w = 1.0 + u
    b = f64_bits(w)
    e = np.float64(np.int64(b >> _S52) - 1023)
    m = bits_f64((b & _MANT52) | _ONE_BITS)
    big = m > _SQRT2
    m = m * 0.5 if big else m
    e = e + 1.0 if big else e
    s = (m - 1.0) / (m + 1.0)
    z = s * s
    p = 1.0 / 13.0
    p = p * z + 1.0 / 11.0
    p = p * z + 1.0 / 9.0
    p = p * z + 1.0 / 7.0
    p = p * z + 1.0 / 5.0
    p = p * z + 1.0 / 3.0
    p = p * z + 1.0
    return e * _LN2 + 2.0 * s * p


@njit(**JIT_OPTIONS)
def _certain_codes(xs, idx, lo, K, mu, lg, rng, key):
    """Stochastic code index of ``xs[j]`` (element ``lo + j``) into ``idx[j]`` where the decision is
    certain, else -1 (see the module docstring).  Vectorizable.

    Error budget of ``y' = log1p_bounded(mu / R * a) * fl(K / lg)`` against the reference's
    ``y = fl(fl(log1p(fl(mu fl(a / R)))) / lg) * K`` (same ``lg``): the argument differs by
    ``<= 3 ulp`` (``<= 2^-51`` in the log), ``log1p_bounded`` by ``2^-40 (1 + L)``, libm's
    ``log1p`` by 1 ulp, and each side rounds twice more: ``|y' - y| < 2^-39.9 ((1 + L) K / lg + y')``;
    the test uses ``d = LOG1P_TOLERANCE ((1 + L) K / lg + y')``.
    """
    Kf = np.float64(K)
    scale = Kf / lg
    mur = mu / rng
    for j in range(xs.size):
        v = np.float64(xs[j])
        av = abs(v)
        a = av if av < rng else rng
        L = log1p_bounded(mur * a)
        y = L * scale
        d = LOG1P_TOLERANCE * ((1.0 + L) * scale + y)
        yl = max(y - d, 0.0)  # y >= 0: the reference's floor(y) is 0 below 1
        yh = y + d
        f = np.floor(yl)
        t = f + 1.0 - random_word(key, lo + j) * (1.0 / _TWO32)  # up iff y >= t (exact)
        up = yl >= t
        sat = av >= rng  # clamped (+-inf too): y = lg / lg * K = K exactly, the top code
        ok = ((f == np.floor(yh)) & (up | (yh < t)) & (f <= Kf)) | sat
        c = min(f + 1.0 if up else f, Kf)
        c = Kf if sat else c
        idx[j] = np.int32(c) if ok & (v == v) else np.int32(-1)


@njit(**JIT_OPTIONS)
def _stochastic_range(x, out, lo, hi, codes, K, mu, lg, rng, key):
    """Elements ``lo:hi``: the certain codes, then the exact path for the others (and NaN)."""
    xs, os_ = x[lo:hi], out[lo:hi]
    idx = np.empty(xs.size, dtype=np.int32)
    _certain_codes(xs, idx, lo, K, mu, lg, rng, key)
    for j in range(xs.size):
        v = np.float64(xs[j])
        c = np.int64(idx[j])
        if c < 0:
            if v != v:
                os_[j] = v
                continue
            _, y = mulaw_companded(v, K, mu, lg, rng)
            c = mulaw_round_y(y, K, 1, random_word(key, lo + j))
        os_[j] = math.copysign(codes[c], v)


@njit(**JIT_OPTIONS)
def _stochastic_serial(x, out, codes, K, mu, rng, seed):
    _stochastic_range(x, out, 0, x.size, codes, K, mu, math.log1p(mu), rng, seed_key(seed))


@njit(parallel=True, **JIT_OPTIONS)
def _stochastic_parallel(x, out, codes, K, mu, rng, seed):
    lg = math.log1p(mu)
    key = seed_key(seed)
    ntask = (x.size + CHUNK - 1) // CHUNK
    for t in prange(ntask):
        _stochastic_range(x, out, t * CHUNK, min(x.size, t * CHUNK + CHUNK), codes, K, mu, lg, rng, key)


def mulaw_stochastic(x: np.ndarray, out: np.ndarray, codes: np.ndarray, K: int, mu: float, rng: float,
                     seed: int) -> None:
    """Stochastic mu-law rounding of the flat float32/float64 ``x`` into ``out`` (same dtype):
    the bits of :func:`mulaw_quantize` with ``mode=1``, most decisions without libm (module
    docstring).  Inputs below ``SERIAL_BELOW`` elements run on the calling thread."""
    kernel = _stochastic_serial if x.size < SERIAL_BELOW else _stochastic_parallel
    kernel(x, out, codes, K, mu, rng, seed)


BUCKET_SHIFT = 45  # float64 bits >> 45: exponent + 7 mantissa bits (relative width 2^-7)


def bucket_starts(thr: np.ndarray, rng: float) -> np.ndarray:
    """For every bucket of float64 bit patterns up to ``rng``: the number of
    thresholds below the bucket's lower edge (start of the nearest search)."""
    top = int(np.float64(rng).view(np.uint64)) >> BUCKET_SHIFT
    edges = (np.arange(top + 1, dtype=np.uint64) << np.uint64(BUCKET_SHIFT)).view(np.float64)
    return np.searchsorted(thr, edges, side="left").astype(np.int16)


def padded_thresholds(thr: np.ndarray) -> np.ndarray:
    """Thresholds followed by +inf, so the branch-free search needs no bound checks."""
    return np.append(thr, np.inf)


@njit(**JIT_OPTIONS)
def mulaw_nearest(a, thr_pad, start, K):
    """Nearest code index of a clamped magnitude: the number of decision
    thresholds below ``a``; an exact tie goes to the even code.

    A bucket (exponent + 7 mantissa bits) spans a relative width <= 2^-7 =
    0.781%.  Thresholds ``t_k ~ f((k+1/2)/K)`` with ``f(y) = (1+mu)^y - 1``
    convex and ``f(0) = 0``, so ``f(y)/y`` grows and ``t_{k+1}/t_k >=
    (k+3/2)/(k+1/2) >= 1 + 1/(K-1/2)``: for 8 bits (K = 127) at least 0.787%
    apart, for every mu and range.  A bucket then holds at most one threshold
    inside plus one on its lower edge: two branch-free steps from the bucket
    start always suffice.  Wider formats (K > 127) finish with a loop.
    """
    c = start[np.int64(f64_bits(a) >> np.uint64(BUCKET_SHIFT))]
    c += np.int64(thr_pad[c] < a)
    c += np.int64(thr_pad[c] < a)
    if K > 127:
        while thr_pad[c] < a:
            c += 1
    c += np.int64((thr_pad[c] == a) & (c % 2 == 1))
    return c


@njit(parallel=True, **JIT_OPTIONS)
def mulaw_quantize(x, out, codes, thr, start, K, mu, rng, mode, seed):
    """Mu-law quantization of flat arrays, in parallel (NaN stays NaN,
    +-inf clamps to +-R)."""
    lg = math.log1p(mu)
    key = seed_key(seed)
    for i in prange(x.size):
        v = np.float64(x[i])
        if v != v:
            out[i] = v
            continue
        if mode == 0:
            a = abs(v)
            if a > rng:
                a = rng
            c = mulaw_nearest(a, thr, start, K)
        else:
            a, y = mulaw_companded(v, K, mu, lg, rng)
            c = mulaw_round_y(y, K, mode, random_word(key, i) if mode == 1 else 0.0)
        out[i] = math.copysign(codes[c], v)


# --------------------------------------------------------------- float32 fast path (nearest)
F32_BUCKET_SHIFT = 15  # float32 bits >> 15: exponent + 8 mantissa bits (relative width <= 2^-8)
_NO_THRESHOLD = (1 << F32_BUCKET_SHIFT) + 2  # an in-bucket offset no input reaches


def f32_threshold_tables(thr: np.ndarray, codes: np.ndarray,
                         rng: float) -> tuple[np.ndarray, np.ndarray, np.int64] | None:
    """Tables of the float32 nearest path, built once per codebook (float64 in, exact), or None
    when a bucket would hold two thresholds (then the float64 kernel runs).

    With ``above[k]`` the smallest float32 bit pattern whose value is > ``thr[k]`` (so for a
    float32 magnitude ``a``, ``thr[k] < a`` iff ``bits(a) >= above[k]``), every bucket ``b`` of
    patterns ``[b 2^15, (b+1) 2^15)`` up to ``rng`` gets one uint32 ``start << 17 | exact << 16 |
    off``: ``start`` the number of thresholds with ``above <= b 2^15``, ``off`` the in-bucket
    offset of the one threshold with ``above`` in ``(b 2^15, (b+1) 2^15]`` (or a value no offset
    reaches), ``exact`` whether that threshold is a float32 value (its pattern is then
    ``above - 1``: an input equal to it is a tie, to the even code).  Consecutive thresholds are
    at least ``1 + 1/(K - 1/2)`` apart (:func:`mulaw_nearest`), > 0.78% for ``K <= 127``, and a
    bucket spans at most 2^-8 = 0.39%: one threshold per bucket at most (checked here).
    Returns ``(table, code_bits, rng_bits)``: ``code_bits`` the codes rounded once to float32, as
    bit patterns; ``rng_bits`` the clamp rounded down to a float32 (an input above it is above
    ``rng`` too, since inputs are float32).
    """
    t32 = thr.astype(np.float32)  # round to nearest
    below_or_eq = t32.astype(np.float64) <= thr
    above = t32.view(np.uint32).astype(np.int64) + below_or_eq.astype(np.int64)
    exact = t32.astype(np.float64) == thr
    r32 = np.float32(rng)
    if float(r32) > rng:
        r32 = np.nextafter(r32, np.float32(0))
    rng_bits = int(np.array(r32).view(np.uint32))
    b = np.arange((rng_bits >> F32_BUCKET_SHIFT) + 1, dtype=np.int64)
    lo_edge, hi_edge = b << F32_BUCKET_SHIFT, (b + 1) << F32_BUCKET_SHIFT
    start = np.searchsorted(above, lo_edge, side="right")
    inside = np.searchsorted(above, hi_edge, side="right") - start
    if inside.size and inside.max() > 1:
        return None
    k = np.minimum(start, len(above) - 1)
    has = inside == 1
    off = np.where(has, above[k] - lo_edge, _NO_THRESHOLD)
    table = (start << 17) | ((has & exact[k]).astype(np.int64) << 16) | off
    code_bits = codes.astype(np.float32).view(np.uint32).astype(np.uint32)
    return table.astype(np.uint32), code_bits, np.int64(rng_bits)


@njit(**JIT_OPTIONS)
def _nearest_f32_span(xs, os_, table, code_bits, rng_bits, top_bits):
    """Branch-free (vectorizable) body of :func:`mulaw_nearest_f32` over one slice."""
    rb = np.uint32(rng_bits)
    for j in range(xs.size):
        u = xs[j]
        a = u & np.uint32(0x7FFFFFFF)
        sign = u & np.uint32(0x80000000)
        ac = min(a, rb)
        e = table[ac >> np.uint32(F32_BUCKET_SHIFT)]
        off = e & np.uint32(0xFFFF)
        lo = ac & np.uint32((1 << F32_BUCKET_SHIFT) - 1)
        c = (e >> np.uint32(17)) + np.uint32(lo >= off)
        # an input equal to an exact threshold (lo = off - 1, so c = start) goes to the even code
        c += ((e >> np.uint32(16)) & np.uint32(1)) & np.uint32(lo + np.uint32(1) == off) & c
        r = code_bits[c] | sign
        r = (np.uint32(top_bits) | sign) if a > rb else r
        os_[j] = u if a > np.uint32(0x7F800000) else r


@njit(parallel=True, **JIT_OPTIONS)
def _nearest_f32_parallel(xb, ob, table, code_bits, rng_bits, top_bits):
    n = xb.size
    for t in prange((n + CHUNK - 1) // CHUNK):
        lo = t * CHUNK
        hi = min(n, lo + CHUNK)
        _nearest_f32_span(xb[lo:hi], ob[lo:hi], table, code_bits, rng_bits, top_bits)


def mulaw_nearest_f32(xb: np.ndarray, ob: np.ndarray, table: np.ndarray, code_bits: np.ndarray, rng_bits: int,
                      top_bits: int) -> None:
    """Nearest mu-law rounding of float32 bit patterns ``xb`` into ``ob`` (uint32 views), tables
    from :func:`f32_threshold_tables`.

    The same decision as :func:`mulaw_nearest` (count of float64 thresholds below the clamped
    magnitude, exact ties to the even code) from one table entry per element and integer
    compares; NaN stays NaN, a magnitude above ``rng`` (+-inf included) takes the top code
    ``top_bits``.  Runs over slices of ``CHUNK`` elements (a loop over a slice vectorizes; one
    over ``range(lo, hi)`` of the whole array does not fully).  Same bits as the float64 kernel
    rounded to float32 (tested).  Inputs below ``SERIAL_BELOW`` elements run on the calling thread.
    """
    kernel = _nearest_f32_span if xb.size < SERIAL_BELOW else _nearest_f32_parallel
    kernel(xb, ob, table, code_bits, rng_bits, top_bits)
