"""Slow plain-Python oracles (independent of core's arithmetic).

Codebooks are enumerated from the format definitions with ``fractions`` and
rounding is done by exhaustive nearest search, so a bug shared by the
reference path and the kernels cannot hide here.
"""

from __future__ import annotations

import bisect
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


# ------------------------------------------------------------------ scaled / nvfp4 (core.formats.scaled_tensor)
E2M1_BOOK = minifloat_codebook(1, 0, 2, 6.0)  # 0, 0.5, 1, 1.5, 2, 3, 4, 6 (OCP MX v1.0 table 5)
E4M3_BOOK = minifloat_codebook(3, -6, 8, 448.0)  # OCP E4M3: 2^-9 .. 448


def f32_round(v: Fraction) -> Fraction:
    """``v`` rounded to float32 (nearest-even; through float64, exact for the quotients used here)."""
    import numpy as np

    return Fraction(float(np.float32(float(v))))


def signed_round(v: Fraction, book: list[Fraction]) -> Fraction:
    """Nearest-even member of ``book`` (non-negative, saturating) with the sign of ``v``."""
    r = round_nearest_even(abs(v), book)
    return -r if v < 0 else r


def scaled_group_reference(values: list[float], elem_book: list[Fraction], scale: str) -> list[float]:
    """One group of ``scaled(elem=..., scale=fp32|pow2|e4m3)`` from the definition: the scale maps
    the group's amax onto the element max, elements rounded to nearest-even and saturated."""
    top = elem_book[-1]
    amax = max((abs(Fraction(v)) for v in values), default=Fraction(0))
    if amax == 0:
        s = Fraction(1) if scale != "e4m3" else Fraction(1, 64)
    elif scale == "fp32":
        s = f32_round(amax / top)
    elif scale == "pow2":
        e = 0
        while top * Fraction(2) ** e < amax:
            e += 1
        while top * Fraction(2) ** (e - 1) >= amax:
            e -= 1
        s = Fraction(2) ** e
    else:
        s = round_nearest_even(min(max(f32_round(amax / top), Fraction(1, 64)), Fraction(448)), E4M3_BOOK)
    return [float(signed_round(Fraction(v) / s, elem_book) * s) for v in values]


def nvfp4_reference(rows: list[list[float]], tensor_scale: bool = True) -> list[list[float]]:
    """NVFP4 from its definition (NVIDIA; TransformerEngine / torchao): ``St = fp32(amax / 2688)``,
    per 16 consecutive elements of a row ``sb = e4m3(clamp(fp32(fp32(amax_b / 6) / St), 2^-6, 448))``,
    elements ``e2m1(x / (St sb))`` (exact division), decoded ``e2m1 * sb * St``."""
    amax = max(abs(Fraction(v)) for row in rows for v in row)
    st = f32_round(amax / 2688) if tensor_scale and amax > 0 else Fraction(1)
    out = []
    for row in rows:
        o: list[float] = []
        for b in range(0, len(row), 16):
            blk = [Fraction(v) for v in row[b:b + 16]]
            amax_b = max(abs(v) for v in blk)
            r = f32_round(f32_round(amax_b / 6) / st)
            sb = round_nearest_even(min(max(r, Fraction(1, 64)), Fraction(448)), E4M3_BOOK)
            o += [float(signed_round(v / (st * sb), E2M1_BOOK) * st * sb) for v in blk]
        out.append(o)
    return out


# ============================================================ number formats of 2025-26 (P3109, E8M0, NF4)
# and the rounding modes up/down/nearest_away/odd/stochastic_rbits<K>.  Written from the definitions:
# P3109 interim report (gfloat's format_info_p3109: bias floor(2^(k-p-1)) signed, 2^(k-p) unsigned;
# NaN at 0x80 signed / the top code unsigned; extended: +-inf at the top code of each sign), IEEE 754-2019
# section 4.3 (directed roundings, ties away), round to odd (Boldo & Melquiond), QLoRA's NF4 table.


def p3109_magnitudes(k: int, p: int, signed: bool = True, domain: str = "extended") -> list[tuple[int, Fraction]]:
    """(magnitude code, value) of every finite non-negative value, in code order, plus one more entry:
    the grid's continuation above max (the value the next code would have with an unbounded exponent),
    which rounding may reach before overflow is applied."""
    m = p - 1
    bias = 2 ** (k - p - 1) if signed else 2 ** (k - p)
    ncodes = 2 ** (k - 1) if signed else 2**k
    top = ncodes - 1 if signed else ncodes - 2  # unsigned: the top code is NaN
    if domain == "extended":
        top -= 1  # inf

    def value(c: int) -> Fraction:
        ef, mf = c >> m, c % (2**m)
        if ef == 0:
            return Fraction(mf, 2**m) * Fraction(2) ** (1 - bias)
        return (1 + Fraction(mf, 2**m)) * Fraction(2) ** (ef - bias)

    return [(c, value(c)) for c in range(top + 2)]


def float_magnitudes(e: int, m: int, bias: int, top_code: int) -> list[tuple[int, Fraction]]:
    """(magnitude code, value) of IEEE-style sign-magnitude minifloat codes ``0..top_code`` (the largest
    finite code), plus the continuation above max (see :func:`p3109_magnitudes`)."""

    def value(c: int) -> Fraction:
        ef, mf = c >> m, c % (2**m)
        if ef == 0:
            return Fraction(mf, 2**m) * Fraction(2) ** (1 - bias)
        return (1 + Fraction(mf, 2**m)) * Fraction(2) ** (ef - bias)

    return [(c, value(c)) for c in range(top_code + 2)]


def e8m0_magnitudes() -> list[tuple[int, Fraction]]:
    """E8M0 (OCP MX v1.0 section 5.4.1): code c is 2^(c-127) for c = 0..254, plus the continuation 2^128."""
    return [(c, Fraction(2) ** (c - 127)) for c in range(256)]


def round_mode_oracle(x: Fraction, mags: list[tuple[int, Fraction]], mode: str, rword: int = 0) -> tuple[str, Fraction]:
    """Round the exact value ``x`` onto a sign-symmetric format with magnitudes ``mags`` (code order; the
    last entry is the continuation above max).  Returns ``("value", v)`` or ``("overflow", sign)`` when
    the result is the continuation (the caller maps it to inf/NaN/max).  Modes: nearest (ties to the even
    code), nearest_away, truncate, up, down, odd (the odd code of the two neighbours unless exact),
    stochastic / stochastic_rbits<K> with the element's 32-bit word ``rword`` (up iff
    ``floor(frac 2^K) + (rword >> (32-K)) >= 2^K``).  Rounding toward zero never overflows: it returns
    +-max."""
    neg = x < 0
    a = -x if neg else x
    vals = [v for _, v in mags]
    codes = [c for c, _ in mags]
    top = len(vals) - 1  # the continuation
    if a >= vals[top]:
        i = j = top
    else:
        i = bisect.bisect_right(vals, a) - 1  # toward zero: the largest value <= a
        j = i if vals[i] == a else i + 1  # away from zero
    if i == j:
        pick = i
    else:
        lo, hi = vals[i], vals[j]
        frac = (a - lo) / (hi - lo)
        toward_pos = not neg  # magnitude up means toward +inf for positive values
        if mode == "nearest":
            up = frac > Fraction(1, 2) or (frac == Fraction(1, 2) and codes[i] % 2 == 1)
        elif mode == "nearest_away":
            up = frac >= Fraction(1, 2)
        elif mode == "truncate":
            up = False
        elif mode == "up":
            up = toward_pos
        elif mode == "down":
            up = not toward_pos
        elif mode == "odd":
            up = codes[i] % 2 == 0
        elif mode == "stochastic" or mode.startswith("stochastic_rbits"):
            kbits = 32 if mode == "stochastic" else int(mode[len("stochastic_rbits"):])
            up = math.floor(frac * 2**kbits) + (rword >> (32 - kbits)) >= 2**kbits
        else:
            raise ValueError(mode)
        pick = j if up else i
    if pick == top:
        toward_zero = mode == "truncate" or (mode == "up" and neg) or (mode == "down" and not neg)
        if toward_zero and a > vals[top - 1]:
            v = vals[top - 1]
            return "value", -v if neg else v
        return "overflow", Fraction(-1 if neg else 1)
    v = vals[pick]
    return "value", -v if neg else v


def probe_points_signed(mags: list[tuple[int, Fraction]], limit: int = 400) -> list[float]:
    """Float64 probes of a format: every value, every midpoint and quarter point between neighbours,
    one float64 ulp either side of each midpoint, both signs (thinned to about ``limit`` intervals)."""
    import numpy as np

    vals = [v for _, v in mags]
    step = max(1, (len(vals) - 1) // limit)
    pts: list[float] = []
    for n in range(0, len(vals) - 1, step):
        a, b = vals[n], vals[n + 1]
        for t in (a, (3 * a + b) / 4, (a + b) / 2, (a + 3 * b) / 4):
            f = float(t)
            pts += [f, float(np.nextafter(f, np.inf)), float(np.nextafter(f, -np.inf))]
    pts += [float(vals[-1]), float(vals[-1]) * 4]
    return pts + [-p for p in pts]


#: QLoRA NF4 (Dettmers et al. 2023, appendix E; bitsandbytes create_normal_map), written out here again
NF4_TABLE = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
             -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
             0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
             0.7229568362236023, 1.0]


def codebook_oracle(xs: list[float], table: list[float], block: int) -> tuple[list[int], list[float]]:
    """Blockwise absmax codebook quantization by exhaustive search in exact arithmetic: per block of
    ``block`` consecutive values, ``s = absmax / max|entry|``; the code minimises ``|x/s - entry|``, ties
    to the lower entry (bitsandbytes' ``x > midpoint``).  Returns (codes, values = entry * s as float64)."""
    book = [Fraction(t) for t in table]
    bmax = max(abs(t) for t in book)
    codes: list[int] = []
    out: list[float] = []
    for start in range(0, len(xs), block):
        chunk = xs[start:start + block]
        amax = max((abs(Fraction(v)) for v in chunk if math.isfinite(v)), default=Fraction(0))
        s = amax / bmax
        for v in chunk:
            a = Fraction(v) / s if s != 0 else Fraction(0)
            best = min(range(len(book)), key=lambda n: (abs(a - book[n]), n))  # ties: the lower code
            codes.append(best)
            out.append(float(Fraction(table[best]) * s))
    return codes, out
