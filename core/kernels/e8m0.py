"""Numba CPU kernel: the last step of E8M0 quantization of float32 data (OCP MX v1.0, section 5.4.1).

Arrays in, arrays out. E8M0 has no zero and no sign: after the unscaled grid rounding of every
element (done by the float32 bit-pattern kernel on the grid with ``emin = -126``, which rounds
every float32 from 2^-125 up exactly as the E8M0 grid does), zero and negative inputs take the
out-of-range value. Magnitudes below 2^-125 are where the two grids differ: the kernel counts them,
and the caller takes the general path when there are any.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .config import JIT_OPTIONS

__all__ = ["e8m0_finish_f32"]


@njit(**JIT_OPTIONS)
def e8m0_finish_f32(x, y, below):
    """Set ``y[i] = below`` where ``x[i] <= 0`` (zeros of either sign, negatives, -inf); return the
    number of inputs with ``0 < |x| < 2^-125``. ``x`` and ``y`` are flat float32
    arrays; NaN inputs keep their (NaN) result."""
    sub = 0
    tiny = np.float32(2.0**-125)
    b = np.float32(below)
    for i in range(x.size):
        v = x[i]
        a = abs(v)
        sub += (a < tiny) & (a > 0)
        if v <= 0:
            y[i] = b
    return sub
