"""Numba kernels of the quantization metrics and tensor statistics (arrays in, arrays out).

The fast twins of :mod:`core.metrics` (the plain PyTorch reference, which defines the numbers; the
tests compare both) and of ``core.train.telemetry.tensor_stats``/``log2_histogram``.  Both the
training telemetry (``core.train.telemetry``) and the Format Lab (``explorer.analysis``) use these,
and nothing else computes them:

* :func:`log2_bin` is the one ``log2|x|`` binning: ``clamp(floor((log2 a - lo) * bins / (hi - lo)),
  0, bins - 1)``, read from the exponent bits when the bins are whole binades of ``per`` bins from an
  integer ``lo`` (mantissas within ``1e-12`` of an edge, where float rounding of log2 could decide, and
  other layouts take ``math.log2``).  :func:`stats_hist` (statistics and histogram in one pass) and
  :func:`log2_bins` (each element's bin and the histogram) use it.
* :func:`error_sums` is the one pass behind ARE, relative error and SQNR (float64 sums over the pairs
  where ``x`` and ``y`` are finite; optionally the relative error per ``log2|x|`` bin), in fixed
  chunks so that the result does not depend on the thread count; :func:`error_metrics_from_sums`
  turns the sums into the metrics with ``core.metrics``' definitions.
* :func:`range_counts` is the one overflow/underflow count (finite elements with ``|x|`` above the
  largest / in ``(0, smallest)``), with one limit, one per element or one per equal row;
  :func:`range_fractions_sat` splits saturation (above the top code) from overflow (above the scale's
  headroom) with it.
* :func:`stagnant_fraction_rows`: updates below half a scaled format's code step.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from .bits import f64_bits
from .config import JIT_OPTIONS, SERIAL_BELOW

__all__ = ["StatsHist", "stats_hist", "log2_bin", "log2_bin_fast", "log2_bin_setup", "log2_bins", "error_sums",
           "error_metrics_from_sums", "error_metrics", "range_counts", "range_fractions",
           "range_fractions_rows", "range_fractions_sat", "range_counts_rows_sat", "range_fractions_rows_sat",
           "stagnant_fraction_rows",
           "METRIC_CHUNKS"]

#: fixed number of partial sums of the parallel passes: results independent of the thread count
METRIC_CHUNKS = 64

_S52 = np.uint64(52)
_EXPMASK = np.uint64(0x7FF)
_MANT = np.uint64((1 << 52) - 1)
_ONE_BITS = np.uint64(0x3FF0000000000000)


# --------------------------------------------------------------------------- log2 bins
@njit(**JIT_OPTIONS)
def _log2_bin_slow(a, lo, scale, bins):
    """``clamp(floor((log2 a - lo) * scale), 0, bins - 1)`` through ``math.log2``."""
    k = math.floor((math.log2(a) - lo) * scale)
    return min(max(k, 0), bins - 1)


@njit(**JIT_OPTIONS)
def log2_bin_setup(lo, hi, bins):
    """Constants of :func:`log2_bin` for ``bins`` equal bins on ``[lo, hi)``: ``(scale, per, fast,
    base, edges)``; ``fast`` when the bins are whole binades of ``per`` bins from an integer ``lo``
    (``edges``: the 52 mantissa bits of ``2^(t/per)``, ``t = 1 .. per-1``, as int64)."""
    scale = bins / (hi - lo)
    per = np.int64(round(scale))
    fast = per == scale and 1 <= per <= 64 and math.floor(lo) == lo and abs(lo) < 1e6
    edges = np.zeros(max(per - 1, 1), dtype=np.int64)
    for t in range(per - 1):
        edges[t] = np.int64(f64_bits(2.0 ** ((t + 1) / per)) & _MANT)
    base = np.int64(lo) if fast else np.int64(0)
    return scale, per, fast, base, edges


#: mantissa units (2^-52) around an edge inside which :func:`log2_bin` asks ``math.log2`` (2^(t/per) is
#: rounded; 4504 units ~ 1e-12 of the binade)
_NEAR = np.int64(4504)


@njit(**JIT_OPTIONS)
def log2_bin_fast(a, bins, per, fast, base, edges):
    """The bin of a finite ``a > 0`` by integer compares of its float64 fields (``a = m 2^e``, whole
    binades: ``per (e - lo) + #{edges <= m}``), or -1 when that is not exact (bins that are not whole
    binades, float64 subnormals, ``m`` within ``_NEAR`` of an edge) and :func:`_log2_bin_slow` must
    decide. Hot loops handle the -1 elements in a second pass: a ``math.log2`` call inside the loop
    costs ~1.5 ns per element even when it is not taken."""
    b = f64_bits(a)
    e = np.int64((b >> _S52) & _EXPMASK) - 1023
    near = (e == -1023) | (not fast)  # no short-circuit branch
    k = per * (e - base)
    mant = np.int64(b & _MANT)
    for t in range(per - 1):
        c = edges[t]
        near |= abs(mant - c) < _NEAR
        k += mant >= c
    if near:
        return -1
    return min(max(k, 0), bins - 1)


@njit(**JIT_OPTIONS)
def log2_bin(a, lo, bins, scale, per, fast, base, edges):
    """The bin of a finite ``a > 0`` (constants from :func:`log2_bin_setup`): :func:`log2_bin_fast`,
    else (bins that are not whole binades, subnormals, values within ``_NEAR`` of an edge) ``math.log2``."""
    k = log2_bin_fast(a, bins, per, fast, base, edges)
    return _log2_bin_slow(a, lo, scale, bins) if k < 0 else k


def _check_bins(lo: float, hi: float, bins: int) -> None:
    if not (hi > lo and bins >= 1 and math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"log2 bins need finite lo < hi and bins >= 1, got lo={lo}, hi={hi}, bins={bins}")


@njit(parallel=True, **JIT_OPTIONS)
def _log2_bins(x, lo, hi, bins, nchunks):
    scale, per, fast, base, edges = log2_bin_setup(lo, hi, bins)
    n = x.size
    idx = np.empty(n, dtype=np.int16)
    chunk = (n + nchunks - 1) // nchunks
    part = np.zeros((nchunks, bins), dtype=np.int64)
    for c in prange(nchunks):
        for i in range(c * chunk, min(n, (c + 1) * chunk)):
            a = abs(np.float64(x[i]))
            if a == 0.0 or not math.isfinite(a):
                idx[i] = -1
                continue
            k = log2_bin(a, lo, bins, scale, per, fast, base, edges)
            idx[i] = k
            part[c, k] += 1
    return idx, part.sum(axis=0)


def log2_bins(x: np.ndarray, lo: float, hi: float, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Each element's ``log2|x|`` bin (int16; -1 for zero or non-finite) and the histogram (int64),
    ``bins`` equal bins on ``[lo, hi)``, values outside in the end bins (at most 32767 bins)."""
    _check_bins(lo, hi, bins)
    if bins > 32767:
        raise ValueError(f"log2_bins: at most 32767 bins (int16 indices), got {bins}")
    return _log2_bins(np.ascontiguousarray(x).reshape(-1), float(lo), float(hi), int(bins), METRIC_CHUNKS)


@njit(**JIT_OPTIONS)
def _stats_hist(v, lo, hi, bins):
    """Statistics of the finite values of ``v`` and their :func:`log2_bin` histogram."""
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
    slow = 0
    scale, per, fast, base, edges = log2_bin_setup(lo, hi, bins)
    for i in range(v.size):
        x = np.float64(v[i])
        if not math.isfinite(x):
            nonfinite += 1
            continue
        n += 1
        d = x - shift
        s1 += d
        s2 += d * d
        vmin = x if x < vmin else vmin  # selects, not branches: ReLU tensors are half zeros
        vmax = x if x > vmax else vmax
        a = abs(x)
        if a == 0.0:
            zeros += 1
            continue
        amax = a if a > amax else amax
        amin_nz = a if a < amin_nz else amin_nz
        # log2_bin_fast, written out: as a call the loop runs at ~4.7 ns per element instead of ~2.5
        b = f64_bits(a)
        e = np.int64((b >> _S52) & _EXPMASK) - 1023
        near = (e == -1023) | (not fast)
        k = per * (e - base)
        mant = np.int64(b & _MANT)
        for t in range(per - 1):
            c = edges[t]
            near |= abs(mant - c) < _NEAR
            k += mant >= c
        if near:
            slow += 1
            continue
        lanes[i & 3, min(max(k, 0), bins - 1)] += 1
    if slow:  # the few elements whose bin needs math.log2 (see log2_bin_fast)
        for i in range(v.size):
            a = abs(np.float64(v[i]))
            if a == 0.0 or not math.isfinite(a):
                continue
            if log2_bin_fast(a, bins, per, fast, base, edges) < 0:
                lanes[0, _log2_bin_slow(a, lo, scale, bins)] += 1
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
    """Statistics and ``log2|x|`` histogram of a float32/float64 array in one pass: the finite values'
    min, max, mean, std (float64 sums of values shifted by the first finite one), max |x|, smallest
    non-zero |x|, the zero/non-finite counts and the histogram of :func:`log2_bin` (``bins`` equal
    bins over ``[lo, hi)``, values outside in the end bins)."""
    _check_bins(lo, hi, bins)
    counts, n, zeros, nonfinite, mean, std, vmin, vmax, amax, amin_nz = _stats_hist(
        np.ascontiguousarray(v).reshape(-1), float(lo), float(hi), int(bins))
    return StatsHist(counts, int(n), int(zeros), int(nonfinite), float(mean), float(std), float(vmin), float(vmax),
                     float(amax), float(amin_nz) if amin_nz != math.inf else 0.0)


# --------------------------------------------------------------------------- error sums
@njit(**JIT_OPTIONS)
def _error_span(x, y, bins, nbins, lo, hi, g, bs, bc, c):
    """Sums of elements ``lo .. hi-1`` into row ``c`` of ``g`` = [sum x^2, sum (y-x)^2, pairs, sum of
    |y-x|/|x| over x != 0, their count] and of the per-bin ``bs``/``bc`` (when ``nbins``)."""
    for i in range(lo, hi):
        xv = np.float64(x[i])
        yv = np.float64(y[i])
        if not (math.isfinite(xv) and math.isfinite(yv)):
            continue
        d = yv - xv
        g[c, 0] += xv * xv
        g[c, 1] += d * d
        g[c, 2] += 1.0
        if xv != 0.0:
            r = abs(d) / abs(xv)
            g[c, 3] += r
            g[c, 4] += 1.0
            if nbins:
                b = bins[i]
                if b >= 0:
                    bs[c, b] += r
                    bc[c, b] += 1.0


@njit(**JIT_OPTIONS)
def _error_sums_serial(x, y, bins, nbins):
    g = np.zeros((1, 5), dtype=np.float64)
    bs = np.zeros((1, nbins), dtype=np.float64)
    bc = np.zeros((1, nbins), dtype=np.float64)
    _error_span(x, y, bins, nbins, 0, x.size, g, bs, bc, 0)
    return g[0].copy(), bs[0].copy(), bc[0].copy()


@njit(parallel=True, **JIT_OPTIONS)
def _error_sums_parallel(x, y, bins, nbins, nchunks):
    n = x.size
    chunk = (n + nchunks - 1) // nchunks
    g = np.zeros((nchunks, 5), dtype=np.float64)
    bs = np.zeros((nchunks, nbins), dtype=np.float64)
    bc = np.zeros((nchunks, nbins), dtype=np.float64)
    for c in prange(nchunks):
        _error_span(x, y, bins, nbins, c * chunk, min(n, (c + 1) * chunk), g, bs, bc, c)
    return g.sum(axis=0), bs.sum(axis=0), bc.sum(axis=0)


_NO_BINS = np.empty(0, dtype=np.int16)


def error_sums(x: np.ndarray, y: np.ndarray, bins: np.ndarray | None = None, nbins: int = 0,
               chunked: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float64 sums of ``y`` against ``x`` over the pairs where both are finite:
    ``[sum x^2, sum (y-x)^2, pairs, sum |y-x|/|x| (x != 0), count of x != 0]``, and per ``log2|x|`` bin
    (``bins[i]`` in ``0 .. nbins-1``, -1 skipped) the sums and counts of ``|y-x|/|x|``.

    ``chunked=False`` sums in element order on the calling thread; ``chunked=True`` in
    :data:`METRIC_CHUNKS` fixed chunks in parallel (the same result for any thread count; only the
    summation order differs from the serial pass).
    """
    xf = np.ascontiguousarray(x).reshape(-1)
    yf = np.ascontiguousarray(y).reshape(-1)
    if xf.size != yf.size:
        raise ValueError(f"error_sums: x has {xf.size} elements, y {yf.size}")
    b = _NO_BINS if bins is None or not nbins else np.ascontiguousarray(bins, dtype=np.int16).reshape(-1)
    if nbins and b.size != xf.size:
        raise ValueError(f"error_sums: {b.size} bin indices for {xf.size} elements")
    if chunked:
        return _error_sums_parallel(xf, yf, b, int(nbins), METRIC_CHUNKS)
    return _error_sums_serial(xf, yf, b, int(nbins))


def error_metrics_from_sums(sums: np.ndarray) -> dict[str, float]:
    """``are``, ``rel_error``, ``sqnr_db`` from :func:`error_sums`' sums, with ``core.metrics``'
    definitions: NaN for no finite pair (ARE: no finite non-zero ``x``); relative error
    ``sqrt(sum (y-x)^2) / sqrt(sum x^2)``, with ``x = 0`` everywhere inf when ``y != x`` and NaN when
    exact (0/0); SQNR inf when exact, -inf for a zero signal."""
    sig, noise, pairs, rel_sum, n_nz = (float(v) for v in sums)
    nan = math.nan
    if pairs == 0:
        return {"are": nan, "rel_error": nan, "sqnr_db": nan}
    are = rel_sum / n_nz if n_nz else nan
    if sig == 0:
        rel = math.inf if noise > 0 else nan
        sq = math.inf if noise == 0 else -math.inf
    else:
        rel = math.sqrt(noise) / math.sqrt(sig)
        sq = math.inf if noise == 0 else 10.0 * math.log10(sig / noise)
    return {"are": are, "rel_error": rel, "sqnr_db": sq}


def error_metrics(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """ARE, relative error and SQNR (dB) of ``y`` against ``x`` in one serial float64 pass (the same
    definitions as ``core.metrics.are/rel_error/sqnr_db``; only the summation order differs)."""
    return error_metrics_from_sums(error_sums(x, y)[0])


# --------------------------------------------------------------------------- range counts
@njit(**JIT_OPTIONS)
def _range_span(x, big, small, R, lo, hi):
    """(finite, over, under) of elements ``lo .. hi-1``; element ``i`` uses the limits of row ``i // R``."""
    n = 0
    over = 0
    under = 0
    if hi <= lo:
        return n, over, under
    r = lo // R
    end = (r + 1) * R
    bg = big[r]
    sm = small[r]
    for i in range(lo, hi):
        if i == end:
            r += 1
            end += R
            bg = big[r]
            sm = small[r]
        a = abs(np.float64(x[i]))
        if not math.isfinite(a):
            continue
        n += 1
        if a > bg:
            over += 1
        if a > 0.0 and a < sm:
            under += 1
    return n, over, under


@njit(**JIT_OPTIONS)
def _range_counts_serial(x, big, small, R):
    return _range_span(x, big, small, R, 0, x.size)


@njit(parallel=True, **JIT_OPTIONS)
def _range_counts_parallel(x, big, small, R, nchunks):
    n = x.size
    chunk = (n + nchunks - 1) // nchunks
    part = np.zeros((nchunks, 3), dtype=np.int64)
    for c in prange(nchunks):
        a, b, d = _range_span(x, big, small, R, c * chunk, min(n, (c + 1) * chunk))
        part[c, 0] = a
        part[c, 1] = b
        part[c, 2] = d
    return part[:, 0].sum(), part[:, 1].sum(), part[:, 2].sum()


def range_counts(x: np.ndarray, big: np.ndarray | float, small: np.ndarray | float) -> tuple[int, int, int]:
    """``(finite, overflow, underflow)`` counts of ``x``: finite elements with ``|x| > big`` and with
    ``0 < |x| < small``.  ``big``/``small`` hold one limit, one per element, or one per equal row of
    the flat ``x`` (``x.size`` a multiple of their size)."""
    xf = np.ascontiguousarray(x).reshape(-1)
    bg = np.ascontiguousarray(big, dtype=np.float64).reshape(-1)
    sm = np.ascontiguousarray(small, dtype=np.float64).reshape(-1)
    if bg.size != sm.size:
        raise ValueError(f"range_counts: {bg.size} upper and {sm.size} lower limits")
    if xf.size == 0:
        return 0, 0, 0
    if bg.size == 0 or xf.size % bg.size:
        raise ValueError(f"range_counts: {bg.size} limits do not split {xf.size} elements into equal rows")
    R = xf.size // bg.size
    if xf.size < SERIAL_BELOW:
        n, over, under = _range_counts_serial(xf, bg, sm, R)
    else:
        n, over, under = _range_counts_parallel(xf, bg, sm, R, METRIC_CHUNKS)
    return int(n), int(over), int(under)


def range_fractions(x: np.ndarray, big: np.ndarray | float, small: np.ndarray | float) -> tuple[float, float]:
    """Overflow and underflow fractions of the finite elements of ``x`` (:func:`range_counts`; NaN when
    none is finite), ``core.metrics.overflow_fraction``/``underflow_fraction``'s definitions."""
    n, over, under = range_counts(x, big, small)
    return (over / n, under / n) if n else (math.nan, math.nan)


def range_fractions_rows(x: np.ndarray, scale: np.ndarray, big_mult: float,
                         small_mult: float) -> tuple[float, float]:
    """:func:`range_fractions` with the limits ``scale[row] * big_mult`` / ``scale[row] * small_mult``
    of equal rows of a flat ``x`` (one scale per row: a scaled format's groups; a zero scale counts as
    1, as in ``ScaledFormat.range_for``)."""
    s = np.array(scale, dtype=np.float64).reshape(-1)
    s[s == 0.0] = 1.0
    return range_fractions(x, s * float(big_mult), s * float(small_mult))


def range_fractions_sat(x: np.ndarray, big: np.ndarray | float, small: np.ndarray | float,
                        headroom: float = 1.0) -> tuple[float, float, float]:
    """``(saturation, overflow, underflow)`` fractions of the finite elements of ``x``: saturation counts
    ``|x| > big`` (clipped to the top code), overflow ``|x| > big * headroom`` (beyond the range the
    format's scale reserves; ``headroom = 1`` for unscaled formats, where the two coincide),
    ``core.metrics.saturation_fraction``/``overflow_fraction``'s definitions (docs/papers.md#mls-saturation)."""
    sat, under = range_fractions(x, big, small)
    if headroom == 1.0:
        return sat, sat, under
    over, _ = range_fractions(x, np.asarray(big, dtype=np.float64) * float(headroom), small)
    return sat, over, under


@njit(**JIT_OPTIONS)
def _rows_sat_span(x, scale, R, big_mult, small_mult, headroom, lo, hi):
    """(finite, saturated, overflowed, underflowed) of elements ``lo .. hi-1``; element ``i`` uses the
    limits of row ``i // R``: ``s = scale[row]`` (0 counts as 1), ``s * big_mult``, ``(s * big_mult) *
    headroom`` and ``s * small_mult``, the same float64 products as :func:`range_fractions_rows_sat`'s
    limit arrays (no temporaries)."""
    n = 0
    sat = 0
    over = 0
    under = 0
    if hi <= lo:
        return n, sat, over, under
    r = lo // R
    end = (r + 1) * R
    s = scale[r] if scale[r] != 0.0 else 1.0
    bg = s * big_mult
    bo = bg * headroom
    sm = s * small_mult
    for i in range(lo, hi):
        if i == end:
            r += 1
            end += R
            s = scale[r] if scale[r] != 0.0 else 1.0
            bg = s * big_mult
            bo = bg * headroom
            sm = s * small_mult
        a = abs(np.float64(x[i]))
        if not math.isfinite(a):
            continue
        n += 1
        if a > bg:
            sat += 1
        if a > bo:
            over += 1
        if a > 0.0 and a < sm:
            under += 1
    return n, sat, over, under


@njit(**JIT_OPTIONS)
def _rows_sat_serial(x, scale, R, big_mult, small_mult, headroom):
    return _rows_sat_span(x, scale, R, big_mult, small_mult, headroom, 0, x.size)


@njit(parallel=True, **JIT_OPTIONS)
def _rows_sat_parallel(x, scale, R, big_mult, small_mult, headroom, nchunks):
    n = x.size
    chunk = (n + nchunks - 1) // nchunks
    part = np.zeros((nchunks, 4), dtype=np.int64)
    for c in prange(nchunks):
        a, b, d, e = _rows_sat_span(x, scale, R, big_mult, small_mult, headroom, c * chunk, min(n, (c + 1) * chunk))
        part[c, 0] = a
        part[c, 1] = b
        part[c, 2] = d
        part[c, 3] = e
    return part[:, 0].sum(), part[:, 1].sum(), part[:, 2].sum(), part[:, 3].sum()


def range_counts_rows_sat(x: np.ndarray, scale: np.ndarray, big_mult: float, small_mult: float,
                          headroom: float = 1.0) -> tuple[int, int, int, int]:
    """``(finite, saturated, overflowed, underflowed)`` counts of a flat ``x`` split into equal rows, one
    ``scale`` per row (0 counts as 1): finite elements with ``|x| > s big_mult``, ``|x| > (s big_mult)
    headroom`` and ``0 < |x| < s small_mult``, in one pass without limit arrays."""
    xf = np.ascontiguousarray(x).reshape(-1)
    sc = np.ascontiguousarray(scale, dtype=np.float64).reshape(-1)
    if xf.size == 0:
        return 0, 0, 0, 0
    if sc.size == 0 or xf.size % sc.size:
        raise ValueError(f"range_counts_rows_sat: {sc.size} scales do not split {xf.size} elements into equal rows")
    R = xf.size // sc.size
    args = (xf, sc, R, float(big_mult), float(small_mult), float(headroom))
    n, sat, over, under = _rows_sat_serial(*args) if xf.size < SERIAL_BELOW else \
        _rows_sat_parallel(*args, METRIC_CHUNKS)
    return int(n), int(sat), int(over), int(under)


def range_fractions_rows_sat(x: np.ndarray, scale: np.ndarray, big_mult: float, small_mult: float,
                             headroom: float = 1.0) -> tuple[float, float, float]:
    """:func:`range_fractions_sat` with the per-row limits of :func:`range_fractions_rows` (``scale[row]
    * big_mult``, times ``headroom`` for overflow; ``scale[row] * small_mult``; a zero scale counts as 1),
    counted in one pass (:func:`range_counts_rows_sat`); NaN when no element is finite."""
    n, sat, over, under = range_counts_rows_sat(x, scale, big_mult, small_mult, headroom)
    return (sat / n, over / n, under / n) if n else (math.nan, math.nan, math.nan)


# --------------------------------------------------------------------------- stagnation
@njit(**JIT_OPTIONS)
def _stagnant_rows(before, after, scale, m, emin, below):
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
