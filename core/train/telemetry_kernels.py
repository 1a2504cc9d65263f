"""One-pass Numba kernels for the telemetry: tensor statistics with the log2|x| histogram, and the
quantization-error sums behind ``core.metrics`` (ARE, relative error, SQNR, overflow/underflow).

Owns :func:`stats_hist`, which reads a float32/float64 array once and returns the finite values' min,
max, mean, std (float64 sums of values shifted by the first finite one), max |x|, smallest non-zero
|x|, the zero/non-finite counts and the histogram of ``log2|x|`` on ``bins`` equal bins over
``[lo, hi)`` (values outside go to the end bins). The plain-PyTorch twins (``telemetry.tensor_stats``/
``log2_histogram`` on the reference path) define the same numbers; the tests compare both.
:func:`error_metrics` and :func:`range_fractions` follow ``core.metrics``'s definitions (float64 sums;
only the summation order differs).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from core.kernels.bits import bits_f64, f64_bits

__all__ = ["StatsHist", "stats_hist", "error_metrics", "range_fractions", "range_fractions_rows",
           "stagnant_fraction_rows"]


_S52 = np.uint64(52)
_EXPMASK = np.uint64(0x7FF)
_MANT = np.uint64((1 << 52) - 1)
_ONE_BITS = np.uint64(0x3FF0000000000000)


@njit(cache=True, fastmath=False, nogil=True)
def _log2_bin_slow(a, lo, scale, bins):  # type: ignore[no-untyped-def]
    """``clamp(floor((log2 a - lo) * scale), 0, bins - 1)`` through ``math.log2``."""
    k = math.floor((math.log2(a) - lo) * scale)
    return min(max(k, 0), bins - 1)


@njit(cache=True, fastmath=False, nogil=True)
def _stats_hist(v, lo, hi, bins):  # type: ignore[no-untyped-def]
    """One pass; the log2 bin of ``a = m 2^e`` (float64 normal) is ``per (e - lo) + #{edges <= m}``
    when the bins are whole binades of ``per`` bins from an integer ``lo`` (``edges = 2^(t/per)``);
    mantissas within ``1e-12`` of an edge, where float rounding of log2 could decide, and other
    layouts take ``math.log2``."""
    lanes = np.zeros((4, bins), dtype=np.int64)  # 4 interleaved histograms: no store-to-load chain per bin
    n = 0
    zeros = 0
    nonfinite = 0
    shift = 0.0
    for i in range(v.size):  # shift by the first finite value: keeps the sum-of-squares variance accurate
        if math.isfinite(np.float64(v[i])):
            shift = np.float64(v[i])
            break
    s1 = 0.0
    s2 = 0.0
    vmin = math.inf
    vmax = -math.inf
    amax = 0.0
    amin_nz = math.inf
    scale = bins / (hi - lo)
    per = np.int64(round(scale))
    fast = per == scale and 1 <= per <= 64 and math.floor(lo) == lo and abs(lo) < 1e6
    edges = np.empty(max(per - 1, 1), dtype=np.float64)
    for t in range(per - 1):
        edges[t] = 2.0 ** ((t + 1) / per)
    base = np.int64(lo) if fast else np.int64(0)
    for i in range(v.size):
        x = np.float64(v[i])
        if not math.isfinite(x):
            nonfinite += 1
            continue
        n += 1
        d = x - shift
        s1 += d
        s2 += d * d
        if x < vmin:
            vmin = x
        if x > vmax:
            vmax = x
        a = abs(x)
        if a == 0.0:
            zeros += 1
            continue
        if a > amax:
            amax = a
        if a < amin_nz:
            amin_nz = a
        b = f64_bits(a)
        e = np.int64((b >> _S52) & _EXPMASK) - 1023
        near = not fast or e == -1023
        k = per * (e - base)
        if not near:
            m = bits_f64((b & _MANT) | _ONE_BITS)
            for t in range(per - 1):
                c = edges[t]
                if abs(m - c) < 1e-12:
                    near = True
                if m >= c:
                    k += 1
        if near:
            k = _log2_bin_slow(a, lo, scale, bins)
        else:
            k = min(max(k, 0), bins - 1)
        lanes[i & 3, k] += 1
    mean = shift + s1 / n if n > 0 else 0.0
    std = math.sqrt(max(0.0, (s2 - s1 * s1 / n) / (n - 1))) if n > 1 else 0.0
    counts = lanes[0] + lanes[1] + lanes[2] + lanes[3]
    return counts, n, zeros, nonfinite, mean, std, vmin, vmax, amax, amin_nz


class StatsHist(NamedTuple):
    """Result of :func:`stats_hist` (statistics over the ``n`` finite values)."""

    counts: np.ndarray
    n: int
    zeros: int
    nonfinite: int
    mean: float
    std: float
    min: float
    max: float
    amax: float
    amin_nz: float


def stats_hist(v: np.ndarray, lo: float, hi: float, bins: int) -> StatsHist:
    """Statistics and histogram of a 1-D float array in one pass (see module docstring)."""
    counts, n, zeros, nonfinite, mean, std, vmin, vmax, amax, amin_nz = _stats_hist(
        np.ascontiguousarray(v).reshape(-1), float(lo), float(hi), int(bins))
    return StatsHist(counts, int(n), int(zeros), int(nonfinite), float(mean), float(std), float(vmin), float(vmax),
                     float(amax), float(amin_nz) if amin_nz != math.inf else 0.0)


@njit(cache=True, fastmath=False, nogil=True)
def _error_sums(x, y):  # type: ignore[no-untyped-def]
    n = 0
    n_nz = 0
    rel_sum = 0.0
    sig = 0.0
    noise = 0.0
    for i in range(x.size):
        xi = np.float64(x[i])
        yi = np.float64(y[i])
        if not (math.isfinite(xi) and math.isfinite(yi)):
            continue
        n += 1
        d = yi - xi
        sig += xi * xi
        noise += d * d
        if xi != 0.0:
            n_nz += 1
            rel_sum += abs(d) / abs(xi)
    return n, n_nz, rel_sum, sig, noise


@njit(cache=True, fastmath=False, nogil=True)
def _range_counts(x, big, small):  # type: ignore[no-untyped-def]
    n = 0
    over = 0
    under = 0
    for i in range(x.size):
        a = abs(np.float64(x[i]))
        if not math.isfinite(a):
            continue
        n += 1
        if a > big[i]:
            over += 1
        if a > 0.0 and a < small[i]:
            under += 1
    return n, over, under


def error_metrics(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """ARE, relative error and SQNR (dB) of ``y`` against ``x`` in one float64 pass.

    Same definitions as ``core.metrics.are/rel_error/sqnr_db`` (elements where x or y is not finite are
    excluded; NaN for an empty selection; SQNR inf when exact)."""
    n, n_nz, rel_sum, sig, noise = _error_sums(np.ascontiguousarray(x).reshape(-1), np.ascontiguousarray(y).reshape(-1))
    nan = math.nan
    are = rel_sum / n_nz if n_nz else nan
    if n == 0:
        return {"are": nan, "rel_error": nan, "sqnr_db": nan}
    if sig == 0:
        rel = math.inf if noise > 0 else 0.0 * math.inf
        sq = math.inf if noise == 0 else -math.inf
    else:
        rel = math.sqrt(noise) / math.sqrt(sig)
        sq = math.inf if noise == 0 else 10.0 * math.log10(sig / noise)
    return {"are": are, "rel_error": rel, "sqnr_db": sq}


@njit(cache=True, fastmath=False, nogil=True)
def _range_counts_rows(x, scale, big_mult, small_mult):  # type: ignore[no-untyped-def]
    rows = scale.size
    R = x.size // rows if rows else 0
    n = 0
    over = 0
    under = 0
    for r in range(rows):
        s = scale[r] if scale[r] != 0.0 else 1.0  # a zero scale counts as 1 (ScaledFormat.range_for)
        big = s * big_mult
        small = s * small_mult
        for i in range(r * R, r * R + R):
            a = abs(np.float64(x[i]))
            if not math.isfinite(a):
                continue
            n += 1
            if a > big:
                over += 1
            if a > 0.0 and a < small:
                under += 1
    return n, over, under


def range_fractions_rows(x: np.ndarray, scale: np.ndarray, big_mult: float,
                         small_mult: float) -> tuple[float, float]:
    """:func:`range_fractions` with the limits ``scale[row] * big_mult`` / ``scale[row] * small_mult``
    of equal rows of a flat ``x`` (one scale per row: a scaled format's groups; a zero scale counts as
    1), without per-element limit arrays."""
    n, over, under = _range_counts_rows(np.ascontiguousarray(x).reshape(-1), np.ascontiguousarray(scale).reshape(-1),
                                        float(big_mult), float(small_mult))
    return (over / n, under / n) if n else (math.nan, math.nan)


@njit(cache=True, fastmath=False, nogil=True)
def _stagnant_rows(before, after, scale, m, emin, below):  # type: ignore[no-untyped-def]
    rows = scale.size
    R = before.size // rows if rows else 0
    count = 0
    for r in range(rows):
        s = scale[r] if scale[r] != 0.0 else 1.0  # a zero scale counts as 1 (ScaledFormat.code_step)
        for i in range(r * R, r * R + R):
            b = np.float64(before[i])
            _, ex = math.frexp(abs(b) / s)
            e = ex - 1
            k = e - m if e >= emin else below
            if abs(np.float64(after[i]) - b) < math.ldexp(s, k) / 2:
                count += 1
    return count


def stagnant_fraction_rows(before: np.ndarray, after: np.ndarray, scale: np.ndarray, m: int, emin: int,
                           sub: bool) -> float:
    """Fraction of elements whose update ``|after - before|`` is below half the code step of a scaled
    format at ``before``: step ``s 2^k``, ``s = scale[row]`` (0 counts as 1), ``k`` the grid quantum
    exponent of ``|before| / s`` (``ScaledFormat.code_step``'s definitions; equal rows of flat arrays)."""
    b = np.ascontiguousarray(before).reshape(-1)
    if b.size == 0:
        return math.nan
    below = emin - m if sub else emin
    return _stagnant_rows(b, np.ascontiguousarray(after).reshape(-1), np.ascontiguousarray(scale).reshape(-1),
                          int(m), int(emin), int(below)) / b.size


def range_fractions(x: np.ndarray, big: np.ndarray, small: np.ndarray) -> tuple[float, float]:
    """Overflow and underflow fractions of the finite elements of ``x`` (limits broadcast to x)."""
    n, over, under = _range_counts(np.ascontiguousarray(x).reshape(-1), np.ascontiguousarray(big).reshape(-1),
                                   np.ascontiguousarray(small).reshape(-1))
    return (over / n, under / n) if n else (math.nan, math.nan)
