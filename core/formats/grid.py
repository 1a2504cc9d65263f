"""Element grids and the reference (plain PyTorch, float64) rounding onto them.

Almost every format of the papers and standards rounds a non-negative magnitude ``a`` onto a
*minifloat grid*: normals ``(1 + k/2^m) 2^e`` for ``e >= emin`` and subnormals
``k/2^m 2^emin`` (or, without subnormals, ``{0, 2^emin}`` below the normals),
saturating at ``maxval``.  Integers and fixed point are the special case where
every value is "subnormal" (``emin = m``).  The quantum (spacing of the grid)
at ``a`` is ``2^k`` with::

    E = floor(log2 a)
    k = E - m                 if E >= emin
    k = emin - m              if E < emin and subnormals
    k = emin                  if E < emin and not subnormals

and rounding works on ``q = a / 2^k`` (exact, a power-of-two scaling).

Stochastic rounding takes explicit 32-bit random words ``r`` (one per
element, from :func:`random_bits`) and rounds up iff
``floor(frac(q) * 2^32) + r >= 2^32``: probability ``frac(q)`` exactly for
inputs with at most 32 fractional bits below the quantum (every float32, fp16
and bf16 input), and within 2^-32 otherwise.  The Numba kernels implement the
very same rule, so CPU, GPU and reference agree bit for bit for a given seed.

This module is the *reference* path; ``core.kernels`` holds the fast twins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..kernels.modes import AWAY, NEAREST, NEAREST_AWAY, ODD, STOCHASTIC, TRUNCATE, magnitude_mode

__all__ = [
    "ElementGrid",
    "random_bits",
    "resolve_seed",
    "kernel_seed",
    "round_grid_reference",
    "code_lsb",
    "ldexp_exact",
    "grid_quantum_exponent",
    "minifloat_fields",
    "minifloat_value",
]

_TWO32 = float(2**32)


@dataclass(frozen=True)
class ElementGrid:
    """A (sign-less) minifloat grid: mantissa bits ``m``, minimum normal exponent
    ``emin``, subnormals on/off and the largest finite value ``maxval``.

    With ``m = 0`` the values do not depend on ``subnormals`` (below ``2^emin`` there are only 0 and
    ``2^emin`` either way); the flag then tells ties-to-even and round-to-odd which code ``2^emin`` has:
    1 (zero is code 0: IEEE-like and P3109 formats, ``subnormals=True``) or 0 (no zero code, E8M0:
    ``subnormals=False``).  See :func:`code_lsb`.
    """

    m: int
    emin: int
    subnormals: bool
    maxval: float

    @property
    def tiny(self) -> float:
        """Smallest normal value ``2^emin``."""
        return math.ldexp(1.0, self.emin)

    @property
    def smallest(self) -> float:
        """Smallest positive value on the grid."""
        return math.ldexp(1.0, self.emin - self.m) if self.subnormals else self.tiny

    def values(self) -> np.ndarray:
        """All non-negative grid values up to ``maxval`` (sorted, float64)."""
        out: list[float] = [0.0]
        step_sub = self.emin - self.m
        if self.subnormals:
            for k in range(1, 2**self.m):
                v = math.ldexp(k, step_sub)
                if v <= self.maxval:
                    out.append(v)
        e = self.emin
        while True:
            base = math.ldexp(1.0, e)
            if base > self.maxval:
                break
            for k in range(2**self.m):
                v = math.ldexp(2**self.m + k, e - self.m)
                if v > self.maxval:
                    break
                out.append(v)
            e += 1
        return np.array(out, dtype=np.float64)


# --------------------------------------------------------------------- random
def resolve_seed(seed: int | None) -> int:
    """A 64-bit seed: ``seed`` itself, or one drawn from torch's global RNG
    (so ``torch.manual_seed`` makes unseeded stochastic rounding repeatable)."""
    if seed is None:
        return int(torch.randint(0, 2**62, (1,), dtype=torch.int64).item())
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
    return int(seed) & 0xFFFFFFFFFFFFFFFF


def kernel_seed(seed: int) -> int:
    """A 64-bit seed as the int64 with the same bits, for passing to kernels.

    Numba types a Python int >= 2^63 as uint64 through a slow path of its dispatcher (~13 us per
    call, measured); the kernels read the bits back with ``np.uint64(seed)``, so the words are
    the same.
    """
    return seed - (1 << 64) if seed >= (1 << 63) else seed


def random_bits(seed: int, n: int, offset: int = 0) -> np.ndarray:
    """Counter-based random 32-bit words for elements ``offset .. offset+n-1``.

    ``r[i] = splitmix64(splitmix64(seed) + (i + 1) * gamma) >> 32``: the word of
    an element depends only on (seed, flat index), never on threads or blocks.
    The words come from the kernels' own generator
    (:func:`core.kernels.grid_round.random_words`, the one splitmix64), so the reference path
    draws exactly what the fast paths draw.  Returns an int64 array (values in ``[0, 2^32)``).
    """
    from ..kernels.grid_round import random_words  # noqa: PLC0415 (``import core`` loads no Numba code)

    out = np.empty(int(n), dtype=np.int64)
    random_words(kernel_seed(int(seed) & 0xFFFFFFFFFFFFFFFF), int(offset), out)
    return out


# ------------------------------------------------------------------ rounding
def grid_quantum_exponent(a: torch.Tensor, grid: ElementGrid) -> torch.Tensor:
    """Exponent ``k`` of the grid spacing ``2^k`` at each magnitude of ``a`` (float64)."""
    _, exp = torch.frexp(a)
    e = exp.to(torch.int64) - 1
    below = grid.emin - grid.m if grid.subnormals else grid.emin
    return torch.where(e >= grid.emin, e - grid.m, torch.full_like(e, below))


def code_lsb(fl: torch.Tensor, e: torch.Tensor, grid: ElementGrid) -> torch.Tensor:
    """Last bit of the code of the grid value ``fl * 2^k`` (``fl`` the integer quotient of
    :func:`round_grid_reference`, ``e = floor(log2 a)``), which ties-to-even and round-to-odd look at.

    It is the last bit of ``fl`` (the mantissa field, or the subnormal count), except on grids without
    mantissa bits (``m = 0``): there ``fl = 1`` in every binade and the code of ``2^e`` is
    ``e - emin + 1`` (the biased exponent ``e + bias``), whose parity alternates with the binade
    (gfloat ``round_float``: ``_isodd(expval + bias)`` for precision 1), or ``e - emin`` on grids without
    a zero code (E8M0, ``subnormals=False``; see :class:`ElementGrid`).
    """
    lsb = torch.remainder(fl, 2.0).to(torch.int64)
    if grid.m == 0:
        z = 1 if grid.subnormals else 0  # m = 0: whether zero has the code below 2^emin (ElementGrid)
        lsb = torch.where(e >= grid.emin, torch.remainder(e - grid.emin + z, 2), lsb)
    return lsb


def _round_up(mode: int, d: torch.Tensor, lsb: torch.Tensor, rbits: torch.Tensor | None) -> torch.Tensor:
    """Whether a magnitude with fractional part ``d`` of its quantum (and code bit ``lsb`` below it)
    rounds up in the magnitude mode ``mode`` (``core.kernels.modes``; the rule of ``round_grid``)."""
    if mode == NEAREST:
        return (d > 0.5) | ((d == 0.5) & (lsb == 1))
    if mode == NEAREST_AWAY:
        return d >= 0.5
    if mode == TRUNCATE:
        return torch.zeros_like(d, dtype=torch.bool)
    if mode == AWAY:
        return d > 0
    if mode == ODD:
        return (d > 0) & (lsb == 0)
    if mode == STOCHASTIC:
        if rbits is None:
            raise ValueError("stochastic rounding needs random bits")
        frac32 = torch.floor(d * _TWO32).to(torch.int64)
        return (frac32 + rbits) >= 2**32
    raise ValueError(f"magnitude mode {mode} is not a grid rounding")  # pragma: no cover


def round_grid_reference(
    a: torch.Tensor,
    grid: ElementGrid,
    rounding: str | int,
    rbits: torch.Tensor | None = None,
    negative: torch.Tensor | None = None,
) -> torch.Tensor:
    """Round non-negative finite float64 magnitudes ``a`` onto ``grid``.

    ``rounding`` is a mode name or kernel code (:mod:`core.kernels.modes`); ``negative`` (bool, same
    shape) is the sign of the values, needed by ``up``/``down``.  No saturation is applied: results may
    exceed ``grid.maxval`` (the caller decides between saturation, inf and NaN).  ``rbits`` (int64 words
    in ``[0, 2^32)``, same shape, already masked for ``stochastic_rbits<K>``) is required for stochastic
    modes.  Ties to even and round to odd look at the code's last bit (:func:`code_lsb`).
    """
    from .dispatch import mode_code  # noqa: PLC0415 (dispatch imports this module)

    code = mode_code(rounding) if isinstance(rounding, str) else int(rounding)
    _, exp = torch.frexp(a)
    e = exp.to(torch.int64) - 1
    k = grid_quantum_exponent(a, grid)
    q = ldexp_exact(a, -k)
    fl = torch.floor(q)
    d = q - fl  # exact
    lsb = code_lsb(fl, e, grid)
    pos, neg = magnitude_mode(code, False), magnitude_mode(code, True)
    up = _round_up(pos, d, lsb, rbits)
    if neg != pos:
        if negative is None:
            raise ValueError(f"rounding {rounding!r} depends on the sign: pass negative=")
        up = torch.where(negative, _round_up(neg, d, lsb, rbits), up)
    return ldexp_exact(fl + up.to(torch.float64), k)


def ldexp_exact(v: torch.Tensor, k: torch.Tensor | int) -> torch.Tensor:
    """``v * 2^k`` for exact results, in two power-of-two steps: ``torch.ldexp`` multiplies by
    ``2.0 ** k``, which is inf for ``k > 1023`` and 0 for ``k < -1074`` (fp64 codes need ``2^1074``)."""
    kt = k if isinstance(k, torch.Tensor) else torch.full_like(v, float(k))
    kt = kt.to(torch.float64)
    half = torch.trunc(kt / 2)
    return torch.ldexp(torch.ldexp(v, half), kt - half)


# ----------------------------------------------------------- minifloat codec
def minifloat_fields(v: torch.Tensor, grid: ElementGrid) -> tuple[torch.Tensor, torch.Tensor]:
    """(biased-exponent field, mantissa field) of grid values ``v >= 0``.

    The exponent field is 0 for subnormals and zero, ``e - emin + 1`` for
    normals.  Works for any ``m``/``emin`` (IEEE-style encodings).
    """
    _, exp = torch.frexp(v)
    e = exp.to(torch.int64) - 1
    normal = (e >= grid.emin) & (v > 0)
    sub_mant = ldexp_exact(torch.where(normal, torch.zeros_like(v), v), grid.m - grid.emin).to(torch.int64)
    e_safe = torch.where(normal, e, torch.full_like(e, grid.emin))
    norm_mant = ldexp_exact(v, grid.m - e_safe).to(torch.int64) - 2**grid.m
    efield = torch.where(normal, e - grid.emin + 1, torch.zeros_like(e))
    mfield = torch.where(normal, norm_mant, sub_mant)
    return efield, mfield


def minifloat_value(efield: torch.Tensor, mfield: torch.Tensor, grid: ElementGrid) -> torch.Tensor:
    """Inverse of :func:`minifloat_fields` (float64)."""
    ef = efield.to(torch.int64)
    mf = mfield.to(torch.float64)
    sub = ldexp_exact(mf, grid.emin - grid.m)
    e = (ef + grid.emin - 1).to(torch.float64)
    norm = ldexp_exact(mf + 2.0**grid.m, e - grid.m)
    return torch.where(ef == 0, sub, norm)
