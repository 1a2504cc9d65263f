"""The integer codes of the rounding modes the grid kernels switch on (``mode == 0`` ...).

One table for every caller that hands a mode to a kernel (``core.formats.dispatch`` and the format
modules); the names are those of ``core.formats.ROUNDING_MODES`` that the grid kernels implement
(``pseudo_stochastic`` has kernels of its own, ``core.kernels.arith_niti``), plus the parametric
``stochastic_rbits<K>`` (stochastic rounding with ``K`` random bits, ``1 <= K <= 31``; its names are
parsed in ``core.formats.base``, the kernels see the code ``RBITS_BASE + K``).

The functions below are plain Python on ints/floats so that the float64 reference
(:mod:`core.formats.grid`) calls them directly and the Numba kernels compile the very same source
(``njit(magnitude_mode)``, :mod:`core.kernels.grid_round`): one definition of each rule.

Kernels round *magnitudes*; a mode whose direction depends on the sign (``up``, ``down``) is turned
into a magnitude mode per element by :func:`magnitude_mode` (IEEE 754-2019 section 4.3.2:
roundTowardPositive of a negative value is a magnitude rounded toward zero, and so on).
"""

from __future__ import annotations

__all__ = ["MODE_CODES", "NEAREST", "STOCHASTIC", "TRUNCATE", "UP", "DOWN", "NEAREST_AWAY", "ODD", "AWAY",
           "RBITS_BASE", "uses_random", "magnitude_mode", "mask_word"]

NEAREST = 0  #: round to nearest, ties to even (on the code)
STOCHASTIC = 1  #: round up iff the element's 32-bit random word says so (``core.formats.grid``)
TRUNCATE = 2  #: round the magnitude toward zero (IEEE roundTowardZero; never overflows)
UP = 3  #: toward +inf (IEEE roundTowardPositive)
DOWN = 4  #: toward -inf (IEEE roundTowardNegative)
NEAREST_AWAY = 5  #: round to nearest, ties away from zero (IEEE roundTiesToAway)
ODD = 6  #: round to odd: truncate, and set the code's last bit when inexact (Boldo & Melquiond 2008)
AWAY = 7  #: magnitude away from zero: a *magnitude* mode only (what ``up``/``down`` become per sign)
#: ``stochastic_rbits<K>`` (the names live in ``core.formats.base``) has the code ``RBITS_BASE + K``
RBITS_BASE = 32

#: rounding-mode name -> kernel code (``stochastic_rbits<K>``: ``core.formats.dispatch.mode_code``)
MODE_CODES: dict[str, int] = {"nearest": NEAREST, "stochastic": STOCHASTIC, "truncate": TRUNCATE, "up": UP,
                              "down": DOWN, "nearest_away": NEAREST_AWAY, "odd": ODD}


def uses_random(mode: int) -> bool:
    """Whether the kernel code draws a random word per element."""
    return mode == STOCHASTIC or mode > RBITS_BASE


def mask_word(rw, mode: int):  # an int (kernels: int64; the reference: int64 tensors)
    """The random word a mode rounds with: ``stochastic_rbits<K>`` keeps the top ``K`` of the 32 bits
    (``(rw >> (32-K)) << (32-K)``), every other mode the whole word.

    Rounding up iff ``floor(frac 2^32) + (r with its low 32-K bits cleared) >= 2^32`` is exactly
    rounding up iff ``floor(frac 2^K) + (r >> (32-K)) >= 2^K`` (the two sides differ by a multiple of
    ``2^(32-K)``): stochastic rounding with K random bits, probability ``floor(frac 2^K) / 2^K``
    (gfloat's ``RoundMode.StochasticFastest`` with ``srnumbits = K``).
    """
    if mode > RBITS_BASE:
        drop = 32 - (mode - RBITS_BASE)
        return (rw >> drop) << drop
    return rw


def magnitude_mode(mode: int, negative: bool) -> int:
    """The magnitude rounding of ``mode`` for a value of the given sign: ``up``/``down`` become
    ``TRUNCATE`` or ``AWAY``, ``stochastic_rbits<K>`` becomes ``STOCHASTIC`` (its words are masked by
    :func:`mask_word`), every other mode is its own magnitude mode."""
    if mode == UP:
        return TRUNCATE if negative else AWAY
    if mode == DOWN:
        return AWAY if negative else TRUNCATE
    if mode > RBITS_BASE:
        return STOCHASTIC
    return mode
