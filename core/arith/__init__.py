"""Bit-faithful low-bit arithmetic simulators (issue 3; SPEC-NOTES sections 1 and 3).

* :func:`mls_conv2d`, :func:`mls_matmul`: MLS low-bit convolution (seed 000 Eq. 5-8) with
  integer intra-group accumulators of configurable width and overflow counting.
"""

from __future__ import annotations

from .mls import MLSResult, aligned_integers, mls_conv2d, mls_matmul, product_bits

__all__ = ["MLSResult", "aligned_integers", "mls_conv2d", "mls_matmul", "product_bits"]
