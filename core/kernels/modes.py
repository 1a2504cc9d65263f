"""The integer codes of the rounding modes the grid kernels switch on (``mode == 0`` ...).

One table for every caller that hands a mode to a kernel (``core.formats.dispatch`` and the format
modules); the names are those of ``core.formats.ROUNDING_MODES`` that the grid kernels implement
(``pseudo_stochastic`` has kernels of its own, ``core.kernels.arith_niti``).
"""

from __future__ import annotations

__all__ = ["MODE_CODES", "NEAREST", "STOCHASTIC", "TRUNCATE"]

NEAREST = 0  #: round to nearest, ties to even
STOCHASTIC = 1  #: round up iff the element's 32-bit random word says so (``core.formats.grid``)
TRUNCATE = 2  #: round the magnitude toward zero

#: rounding-mode name -> kernel code
MODE_CODES: dict[str, int] = {"nearest": NEAREST, "stochastic": STOCHASTIC, "truncate": TRUNCATE}
