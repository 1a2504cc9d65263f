"""Lowbit Explorer core: number formats, quantizers, metrics (no UI code here).

Public API::

    fmt = core.parse_format("mls(ex=2,mx=1,eg=8,mg=1,group=nc)")
    y = core.quantize(x, fmt_or_str, rounding="nearest", seed=None)
    q = core.encode(x, fmt); core.decode(q)        # == y
    v = core.codebook(fmt)
    core.metrics.are(x, y) ...
"""

from __future__ import annotations

import torch

from . import metrics
from .formats import ALIASES, FAMILIES, ROUNDING_MODES, Encoded, FormatSpec, parse_format

__all__ = [
    "parse_format", "quantize", "encode", "decode", "codebook", "code_step", "metrics",
    "FormatSpec", "Encoded", "FAMILIES", "ALIASES", "ROUNDING_MODES",
]

__version__ = "0.1.0"


def quantize(
    x: torch.Tensor,
    fmt: FormatSpec | str,
    rounding: str = "nearest",
    seed: int | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Fake-quantize ``x`` into ``fmt``: same shape, dtype and device.

    Args:
        x: floating-point tensor (fp16/bf16/fp32/fp64; any shape, 0-d and empty too).
        fmt: a spec or spec string.
        rounding: ``nearest`` | ``stochastic`` | ``pseudo_stochastic`` | ``truncate``.
        seed: makes stochastic rounding reproducible (same codes on every backend).
        backend: ``auto`` | ``numba`` | ``reference``.
    Raises:
        TypeError: non-tensor or non-floating input.
        ValueError: bad spec or a rounding mode the family does not support.
    """
    return parse_format(fmt).quantize(x, rounding, seed, backend)


def encode(x: torch.Tensor, fmt: FormatSpec | str, rounding: str = "nearest",
           seed: int | None = None) -> Encoded:
    """Integer codes plus scales; ``decode(encode(x, f))`` equals ``quantize(x, f)``."""
    return parse_format(fmt).encode(x, rounding, seed)


def decode(q: Encoded) -> torch.Tensor:
    """Values of encoded codes, in the dtype of the encoded tensor."""
    return q.spec.decode(q)


def codebook(fmt: FormatSpec | str) -> torch.Tensor:
    """Sorted float64 tensor of all finite non-negative values (element grid for scaled formats)."""
    return parse_format(fmt).codebook()


def code_step(x: torch.Tensor, fmt: FormatSpec | str) -> torch.Tensor:
    """Spacing of ``fmt``'s grid at each element of ``x`` (float64, in x's units)."""
    return parse_format(fmt).code_step(x)
