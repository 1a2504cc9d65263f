"""Slow plain-Python oracles (independent of core's arithmetic).

Codebooks are enumerated from the format definitions with ``fractions`` and
rounding is done by exhaustive nearest search, so a bug shared by the
reference path and the kernels cannot hide here.
"""

from __future__ import annotations

import math
from fractions import Fraction


def minifloat_codebook(m: int, emin: int, emax: int, maxval: float, subnormals: bool = True) -> list[Fraction]:
    """All non-negative values, ordered by code (= by value), as Fractions."""
    vals: list[Fraction] = [Fraction(0)]
    if subnormals:
        vals += [Fraction(k, 2**m) * Fraction(2) ** emin for k in range(1, 2**m)]
    for e in range(emin, emax + 1):
        for k in range(2**m):
            v = (1 + Fraction(k, 2**m)) * Fraction(2) ** e
            if v <= Fraction(maxval):
                vals.append(v)
    return vals


def round_nearest_even(a: Fraction, book: list[Fraction], codes: list[int] | None = None) -> Fraction:
    """Nearest codebook value to ``a >= 0``; ties go to the even code (``codes[i]``
    is the code of ``book[i]``; default: the index).  Values above the top code
    return the top code (saturation)."""
    codes = codes if codes is not None else list(range(len(book)))
    if a >= book[-1]:
        return book[-1]
    lo, hi = 0, len(book) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if book[mid] <= a:
            lo = mid
        else:
            hi = mid
    dl, dh = a - book[lo], book[hi] - a
    if dl < dh:
        return book[lo]
    if dh < dl:
        return book[hi]
    return book[lo] if codes[lo] % 2 == 0 else book[hi]


def minifloat_codes(m: int, n: int, subnormals: bool = True) -> list[int]:
    """Codes of the values listed by :func:`minifloat_codebook` (skipping the
    unused subnormal codes when ``subnormals`` is false)."""
    if subnormals:
        return list(range(n))
    return [0] + [i + 2**m - 1 for i in range(1, n)]


def neighbours(a: Fraction, book: list[Fraction]) -> tuple[Fraction, Fraction]:
    """(largest code <= a, smallest code >= a), clipped to the book."""
    lo = max((c for c in book if c <= a), default=book[0])
    hi = min((c for c in book if c >= a), default=book[-1])
    return lo, hi


def probe_points(book: list[Fraction]) -> list[float]:
    """Every code, every midpoint, and one float32 ulp either side of each midpoint."""
    import numpy as np

    pts: list[float] = []
    for c in book:
        pts.append(float(c))
    for a, b in zip(book[:-1], book[1:]):
        mid = np.float32(float((a + b) / 2))
        pts += [float(mid), float(np.nextafter(mid, np.float32(np.inf))),
                float(np.nextafter(mid, np.float32(-np.inf)))]
    top = np.float32(float(book[-1]))
    pts += [float(np.nextafter(top, np.float32(np.inf))), float(top) * 1.5]
    return pts


def mulaw_code_index(a: float, bits: int, mu: float, rng: float) -> float:
    """Unrounded y*K of the mu-law companding (docs/papers.md#mu8), plain math."""
    K = 2 ** (bits - 1) - 1
    a = min(abs(a), rng)
    return math.log1p(mu * a / rng) / math.log1p(mu) * K


def niti_pseudo_stochastic(v: int, bp: int) -> int:
    """NITI Alg. 3 written out with strings of bits (NITI paper, section 3.4)."""
    s = -1 if v < 0 else 1
    a = abs(v)
    if bp == 0:
        return v
    q = a >> bp
    fbits = format(a & ((1 << bp) - 1), f"0{bp}b")
    if bp % 2 == 1:
        fbits = fbits[:-1]
    if not fbits:
        return s * q
    half = len(fbits) // 2
    upper, lower = int(fbits[:half], 2), int(fbits[half:], 2)
    return s * (q + (1 if upper > lower else 0))


# ------------------------------------------------------------------ seeds
_MASK64 = (1 << 64) - 1


_GAMMA = 0x9E3779B97F4A7C15


def mix64(z: int) -> int:
    """splitmix64's output function (Steele, Lea, Flood 2014) on a Python int."""
    z &= _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def splitmix64(z: int) -> int:
    """One step of splitmix64: add the golden gamma, mix."""
    return mix64(z + _GAMMA)


def random_words_reference(seed: int, n: int, offset: int = 0) -> list[int]:
    """Plain-Python definition of ``core.formats.grid.random_bits``: the 32-bit word of element ``i``
    is ``mix64(mix64(seed) + (i + 1) * gamma) >> 32``."""
    key = mix64(seed)
    return [mix64(key + (i + 1) * _GAMMA) >> 32 for i in range(offset, offset + n)]


def tensor_seed_reference(seed: int, step: int, layer: int, code: int) -> int:
    """Plain-Python definition of ``core.train.qlayers.tensor_seed``: splitmix64 chained over
    (seed, step, layer, tensor code), shifted to 63 bits."""
    z = splitmix64(seed & _MASK64)
    z = splitmix64(z ^ (step & _MASK64))
    z = splitmix64(z ^ (layer & _MASK64))
    return splitmix64(z ^ code) >> 1
