"""Bit-faithful low-bit arithmetic simulators (docs/papers.md#mls-arithmetic, #niti-gemm, #logbtq-acc8).

* :func:`mls_conv2d`, :func:`mls_matmul`: MLS low-bit convolution (MLS paper, Eq. 5-8) with
  integer intra-group accumulators of configurable width and overflow counting;
  :func:`accumulator_bits`: the width a pair of operands actually needs.
* :func:`niti_matmul`, :func:`niti_linear`, :func:`niti_conv2d`: NITI int8 x int8 -> int32 with
  effective-bitwidth shift-and-round and exponent bookkeeping (NITI paper, section 3).
* :func:`lowp_matmul`: matmul with the running sum re-quantized to a low-precision format after
  every addition or every ``chunk`` additions, counting swamped addends.
"""

from __future__ import annotations

from .lowp import LowpResult, lowp_matmul
from .mls import MLSResult, accumulator_bits, aligned_integers, mls_conv2d, mls_matmul, product_bits, signed_bits
from .niti import (NitiResult, effective_bits, niti_conv2d, niti_linear, niti_matmul,
                   shift_round)

__all__ = ["MLSResult", "accumulator_bits", "aligned_integers", "mls_conv2d", "mls_matmul", "product_bits",
           "signed_bits",
           "NitiResult", "effective_bits", "niti_conv2d", "niti_linear", "niti_matmul",
           "shift_round", "LowpResult", "lowp_matmul"]
