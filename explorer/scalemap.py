"""The per-block scales of a scaled format over a 2-D tensor, as a log2 image (Panel-free).

For ``scaled(..., block=RxC)`` (DeepSeek-V3-style tiles, docs/papers.md), NVFP4 (1x16 blocks with an
E4M3 scale, NVIDIA NVFP4 note), MX (OCP MX v1.0, 1x32 blocks) and every other scaled family the scale
of each element is what the format itself computes: ``range_for(x)[0] / max`` (scale * max over max,
:meth:`core.formats.FormatSpec.range_for`), so the image is one truth with the quantizer.  Large
tensors are reduced to at most ``max_side`` pixels a side by taking the largest log2 scale of each
pixel's patch (a tile never disappears between pixels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

import core
from core.formats import FormatSpec

__all__ = ["ScaleMap", "as_matrix", "scale_map"]


@dataclass(frozen=True)
class ScaleMap:
    """log2 of the per-element block scale over a 2-D tensor (``image``: reduced, rows top to bottom)."""

    spec: str
    shape: tuple[int, int]
    image: np.ndarray
    lo: float
    hi: float
    distinct: int


def as_matrix(x: torch.Tensor) -> torch.Tensor:
    """A weight-like 2-D view of ``x``: dim 0 by the rest (``(16, 64, 32, 32)`` -> ``(16, 65536)`` would be
    too flat, so NCHW tensors become ``(N*C, H*W)``); 1-D tensors raise ``ValueError``."""
    if x.dim() < 2:
        raise ValueError(f"a 1-D tensor of {x.numel()} elements has no 2-D tiles")
    if x.dim() == 4:
        return x.reshape(x.shape[0] * x.shape[1], -1)
    return x.reshape(x.shape[0], -1)


def scale_map(spec: FormatSpec | str, x: torch.Tensor, max_side: int = 128) -> ScaleMap:
    """The log2 block scale of every element of the 2-D tensor ``x`` under ``spec``, reduced by patch max.

    Raises:
        ValueError: ``spec`` has no data-dependent scales, or ``x`` is not 2-D.
    """
    f = core.parse_format(spec)
    if not f.scaled:
        raise ValueError(f"{f} has no per-block scales (not a scaled format)")
    if x.dim() != 2:
        raise ValueError(f"need a 2-D tensor, got shape {tuple(x.shape)}")
    big = f.range_for(x.float())[0].double()
    s = (big / float(f.max)).numpy() if f.max else big.numpy()
    with np.errstate(divide="ignore"):
        ls = np.log2(np.where(s > 0, s, np.nan))
    r, c = ls.shape
    pr, pc = max(1, math.ceil(r / max_side)), max(1, math.ceil(c / max_side))
    nr, nc = math.ceil(r / pr), math.ceil(c / pc)
    pad = np.full((nr * pr, nc * pc), -np.inf)
    pad[:r, :c] = np.where(np.isfinite(ls), ls, -np.inf)
    img = pad.reshape(nr, pr, nc, pc).max(axis=(1, 3))
    img[~np.isfinite(img)] = np.nan
    fin = ls[np.isfinite(ls)]
    lo, hi = (float(fin.min()), float(fin.max())) if fin.size else (math.nan, math.nan)
    return ScaleMap(str(f), (r, c), img, lo, hi, int(np.unique(fin).size))
