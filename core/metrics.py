"""Quantization error metrics (MLS paper, Fig. 3; docs/papers.md#mls-are).

* ``are``: mean over finite ``x != 0`` of ``|Q(x) - x| / |x|`` (the MLS paper's ARE).
* ``rel_error``: norm-wise ``||Q(X) - X|| / ||X||``.
* ``sqnr_db``: ``10 log10(sum x^2 / sum (Q(x) - x)^2)`` (inf when exact).
* ``saturation_fraction``: fraction of finite elements with ``|x|`` above the top code's
  magnitude (per element for scaled formats, i.e. ``scale * max``): they are clipped to the
  top code (or, for a float without saturation, become inf).
* ``overflow_fraction``: fraction of finite elements with ``|x|`` beyond the largest value the
  format can represent *including the scale's headroom*: ``scale * headroom(fmt) * max``. A scaled
  format's scale maps the group maximum into a reserved range whose top is the power of two at or
  above the top code (MLS: ``x / (St Sg) <= 1`` while the top code of ``<2,1>`` is 0.75, MLS paper
  section 3, Alg. 1; MX: the top binade), so with max-based scales nothing overflows while up to all
  of that range's top saturates. Unscaled formats have headroom 1: overflow = saturation (for
  LogBTQ's MU8 this is the tail outside [-2, 2]). See docs/papers.md#mls-saturation.
* ``underflow_fraction``: fraction of finite non-zero elements with ``|x|`` below the
  smallest positive representable magnitude.

Elements where ``x`` or ``Q(x)`` is not finite are excluded from ARE/rel. error/SQNR.
All functions return Python floats (NaN for an empty selection).
"""

from __future__ import annotations

import math

import torch

from .formats.base import FormatSpec
from .formats.registry import parse_format

__all__ = ["are", "rel_error", "sqnr_db", "overflow_fraction", "saturation_fraction", "underflow_fraction",
           "headroom", "summary"]


def _pair(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch: x {tuple(x.shape)} vs y {tuple(y.shape)}")
    xd = x.detach().to(torch.float64).reshape(-1)
    yd = y.detach().to(torch.float64).reshape(-1).to(xd.device)
    ok = torch.isfinite(xd) & torch.isfinite(yd)
    return xd[ok], yd[ok]


def are(x: torch.Tensor, y: torch.Tensor) -> float:
    """Average relative error over finite non-zero ``x``."""
    xd, yd = _pair(x, y)
    nz = xd != 0
    if not bool(nz.any()):
        return math.nan
    return float(((yd[nz] - xd[nz]).abs() / xd[nz].abs()).mean())


def rel_error(x: torch.Tensor, y: torch.Tensor) -> float:
    """``||y - x||_2 / ||x||_2``."""
    xd, yd = _pair(x, y)
    nx = float(torch.linalg.vector_norm(xd))
    if nx == 0:
        return math.nan if xd.numel() == 0 else float(torch.linalg.vector_norm(yd - xd) > 0) * math.inf
    return float(torch.linalg.vector_norm(yd - xd)) / nx


def sqnr_db(x: torch.Tensor, y: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio in dB."""
    xd, yd = _pair(x, y)
    sig = float((xd * xd).sum())
    noise = float(((yd - xd) ** 2).sum())
    if xd.numel() == 0:
        return math.nan
    if noise == 0:
        return math.inf
    if sig == 0:
        return -math.inf
    return 10.0 * math.log10(sig / noise)


def _limits(x: torch.Tensor, fmt: FormatSpec | str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    spec = parse_format(fmt)
    xd = x.detach()
    big, small = spec.range_for(xd)
    a = xd.to(torch.float64).abs()
    return a, big.to(a.device), small.to(a.device)


def headroom(fmt: FormatSpec | str) -> float:
    """Scale headroom of a format: ``2^ceil(log2 top) / top`` for a scaled format's element grid with top
    code ``top`` (MLS ``<2,1>``: 1 / 0.75; MX E4M3: 512 / 448), 1 for unscaled formats (module doc)."""
    spec = parse_format(fmt)
    grid = getattr(spec, "element_grid", None) if getattr(spec, "scaled", False) else None
    top = float(getattr(grid, "maxval", 0.0) or 0.0)
    if not (top > 0 and math.isfinite(top)):
        return 1.0
    return math.ldexp(1.0, math.ceil(math.log2(top))) / top


def saturation_fraction(x: torch.Tensor, fmt: FormatSpec | str) -> float:
    """Fraction of finite elements whose magnitude exceeds the top code (``scale * max``): clipped to it."""
    a, big, _ = _limits(x, fmt)
    fin = torch.isfinite(a)
    n = int(fin.sum())
    return math.nan if n == 0 else float(((a > big) & fin).sum()) / n


def overflow_fraction(x: torch.Tensor, fmt: FormatSpec | str) -> float:
    """Fraction of finite elements beyond the representable range including the scale's headroom
    (``scale * headroom * max``; unscaled formats: ``max``)."""
    a, big, _ = _limits(x, fmt)
    fin = torch.isfinite(a)
    n = int(fin.sum())
    return math.nan if n == 0 else float(((a > big * headroom(fmt)) & fin).sum()) / n


def underflow_fraction(x: torch.Tensor, fmt: FormatSpec | str) -> float:
    """Fraction of finite elements with ``0 < |x| <`` the smallest positive value."""
    a, _, small = _limits(x, fmt)
    fin = torch.isfinite(a)
    n = int(fin.sum())
    return math.nan if n == 0 else float(((a > 0) & (a < small) & fin).sum()) / n


def summary(x: torch.Tensor, y: torch.Tensor, fmt: FormatSpec | str) -> dict[str, float]:
    """All metrics at once (what the CLI and dashboards show)."""
    return {
        "are": are(x, y),
        "rel_error": rel_error(x, y),
        "sqnr_db": sqnr_db(x, y),
        "overflow": overflow_fraction(x, fmt),
        "saturation": saturation_fraction(x, fmt),
        "underflow": underflow_fraction(x, fmt),
    }
