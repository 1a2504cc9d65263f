"""Lowbit Explorer core: number formats, quantizers, metrics (no UI code here).

Public API::

    fmt = core.parse_format("mls(ex=2,mx=1,eg=8,mg=1,group=nc)")
    y = core.quantize(x, fmt_or_str, rounding="nearest", seed=None)
    q = core.encode(x, fmt); core.decode(q)        # == y
    v = core.codebook(fmt)
    core.metrics.are(x, y) ...
    y = core.quantize_with_scale(x, "fp8_e4m3", s)   # delayed scaling: s * round(x / s), s given

``import core`` is light (no torch, no Numba): the formats (:mod:`core.formats`, which imports
torch) load on the first use of a name that needs them, and the Numba kernels on the first
quantize of a family, so command lines that only read (``--help``, listings) start fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from . import metrics
    from .formats import (ALIASES, FAMILIES, ROUNDING_MODES, Encoded, FormatSpec, parse_format, quantize_with_scale,
                          scale_from_amax)

__all__ = [
    "parse_format", "quantize", "encode", "decode", "codebook", "code_step", "metrics",
    "FormatSpec", "Encoded", "FAMILIES", "ALIASES", "ROUNDING_MODES", "quantize_with_scale", "scale_from_amax",
]

__version__ = "0.1.0"

#: names loaded on first access: name -> (module, attribute or None for the module itself)
_LAZY = {
    "metrics": (".metrics", None),
    "parse_format": (".formats", "parse_format"),
    "FormatSpec": (".formats", "FormatSpec"),
    "Encoded": (".formats", "Encoded"),
    "FAMILIES": (".formats", "FAMILIES"),
    "ALIASES": (".formats", "ALIASES"),
    "ROUNDING_MODES": (".formats", "ROUNDING_MODES"),
    # delayed scaling: quantize with a scale computed elsewhere (an amax history), and the scale rule
    "quantize_with_scale": (".formats", "quantize_with_scale"),
    "scale_from_amax": (".formats", "scale_from_amax"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'core' has no attribute {name!r}")
    mod, attr = _LAZY[name]
    module = importlib.import_module(mod, __name__)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _parse(fmt: FormatSpec | str) -> FormatSpec:
    from .formats import parse_format

    return parse_format(fmt)


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
        rounding: a mode of ``ROUNDING_MODES`` (``nearest`` | ``stochastic`` | ``pseudo_stochastic`` |
            ``truncate`` | ``up`` | ``down`` | ``nearest_away`` | ``odd``) or ``stochastic_rbits<K>``
            (K = 1..31 random bits); ``fmt.roundings`` lists what a family supports.
        seed: makes stochastic rounding reproducible (same codes on every backend).
        backend: ``auto`` | ``numba`` | ``reference``.
    Raises:
        TypeError: non-tensor or non-floating input.
        ValueError: bad spec or a rounding mode the family does not support.
    """
    return _parse(fmt).quantize(x, rounding, seed, backend)


def encode(x: torch.Tensor, fmt: FormatSpec | str, rounding: str = "nearest",
           seed: int | None = None) -> Encoded:
    """Integer codes plus scales; ``decode(encode(x, f))`` equals ``quantize(x, f)``."""
    return _parse(fmt).encode(x, rounding, seed)


def decode(q: Encoded) -> torch.Tensor:
    """Values of encoded codes, in the dtype of the encoded tensor."""
    return q.spec.decode(q)


def codebook(fmt: FormatSpec | str) -> torch.Tensor:
    """Sorted float64 tensor of all finite non-negative values (element grid for scaled formats)."""
    return _parse(fmt).codebook()


def code_step(x: torch.Tensor, fmt: FormatSpec | str) -> torch.Tensor:
    """Spacing of ``fmt``'s grid at each element of ``x`` (float64, in x's units)."""
    return _parse(fmt).code_step(x)
