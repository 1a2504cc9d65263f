"""Numba CPU kernel of the mu-law companding quantizer (seed 001, Eq. 14-16).

Per element: clamp to the range; nearest rounding is decided against the
precomputed x-domain decision thresholds (``thr``, built once in float64: the
code index is the number of thresholds below ``a``, exact ties going to the
even code), found from a bucket table over the float64 bit pattern and at most
a step or two of correction; stochastic/truncate compand
``y = log1p(mu a / R) / log1p(mu) * K`` and round y.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .config import JIT_OPTIONS
from .bits import f64_bits
from .grid_round import random_word, seed_key

__all__ = ["mulaw_quantize", "mulaw_nearest_f32", "f32_threshold_tables", "padded_thresholds", "mulaw_companded", "mulaw_round_y", "bucket_starts", "BUCKET_SHIFT"]

_TWO32 = 4294967296.0


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
F32_BUCKET_SHIFT = 16  # float32 bits >> 16: exponent + 7 mantissa bits (relative width 2^-7)


def f32_threshold_tables(thr: np.ndarray, codes: np.ndarray, rng: float) -> tuple[np.ndarray, ...]:
    """Integer tables of the float32 nearest path, built once per codebook (float64 in, exact).

    ``above[k]``: the smallest float32 bit pattern whose value is > ``thr[k]`` (so for a float32
    magnitude ``a``, ``thr[k] < a`` iff ``bits(a) >= above[k]``); ``equal[k]``: the bit pattern
    of ``thr[k]`` when it is a float32 value, else a pattern no input has; both padded with one
    never-reached entry.  ``start``: for every bucket of float32 patterns up to ``rng``, the
    number of thresholds below the bucket's lower edge.  ``code_bits``: the codes rounded once to
    float32, as bit patterns.  ``rng_bits``: the clamp, rounded down to a float32 (an input
    above it is above ``rng`` too, since inputs are float32).
    """
    t32 = thr.astype(np.float32)  # round to nearest
    below_or_eq = t32.astype(np.float64) <= thr
    above = t32.view(np.uint32).astype(np.int64) + below_or_eq.astype(np.int64)
    exact = t32.astype(np.float64) == thr
    equal = np.where(exact, t32.view(np.uint32).astype(np.int64), -1)
    never = np.int64(0xFFFFFFFF)
    above = np.append(above, never)
    equal = np.append(equal, -1)
    r32 = np.float32(rng)
    if float(r32) > rng:
        r32 = np.nextafter(r32, np.float32(0))
    rng_bits = int(np.array(r32).view(np.uint32))
    top = rng_bits >> F32_BUCKET_SHIFT
    edges = (np.arange(top + 1, dtype=np.uint32) << np.uint32(F32_BUCKET_SHIFT)).view(np.float32)
    start = np.searchsorted(thr, edges.astype(np.float64), side="left").astype(np.int16)
    code_bits = codes.astype(np.float32).view(np.uint32).astype(np.uint32)
    return above, equal, start, code_bits, np.int64(rng_bits)


@njit(parallel=True, **JIT_OPTIONS)
def mulaw_nearest_f32(xb, ob, above, equal, start, code_bits, rng_bits, K, rng_code_bits):
    """Nearest mu-law rounding of float32 bit patterns ``xb`` into ``ob`` (uint32 views).

    The same decision as :func:`mulaw_nearest` (count of float64 thresholds below the clamped
    magnitude, exact ties to the even code) in integer compares only; NaN stays NaN, a
    magnitude above ``rng`` (+-inf included) takes the top code ``rng_code_bits``.  Same bits
    as the float64 kernel rounded to float32 (tested).
    """
    for i in prange(xb.size):
        u = np.int64(xb[i])
        a = u & 0x7FFFFFFF
        sign = np.uint32(u & 0x80000000)
        if a > 0x7F800000:
            ob[i] = xb[i]
            continue
        if a > rng_bits:
            ob[i] = np.uint32(rng_code_bits) | sign
            continue
        c = np.int64(start[a >> F32_BUCKET_SHIFT])
        c += np.int64(a >= above[c])
        c += np.int64(a >= above[c])
        if K > 127:
            while a >= above[c]:
                c += 1
        c += np.int64((a == equal[c]) & (c % 2 == 1))
        ob[i] = code_bits[c] | sign
