"""Shared machinery of scaled formats: blocked views, element codes, encode/decode.

A scaled format splits ``x`` into an (A, B, R) view with one float64 scale per
(A, B) row (MLS groups, MX/BFP blocks, integer channels) and rounds
``|x| / s`` onto an :class:`~core.formats.grid.ElementGrid`.  Subclasses give
the view, the scales and the element grid; this module does the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .base import Encoded, FormatSpec, check_input, check_rounding
from .dispatch import quantize_blocked, quantize_blocked_reference, to_dtype
from .grid import ElementGrid, grid_quantum_exponent, minifloat_fields, minifloat_value, resolve_seed

__all__ = ["ScaledFormat", "BlockView", "block_view", "group_view", "flat_view"]


@dataclass(frozen=True)
class BlockView:
    """How a tensor maps to an (A, B, R) view and back."""

    shape: torch.Size
    axis: int | None = None  # moved-to-last axis for block formats
    block: int | None = None
    pad: int = 0
    flat: bool = False

    def to_x3(self, x: torch.Tensor) -> torch.Tensor:
        if self.flat:
            return x.reshape(1, 1, -1)
        if self.block is None or self.axis is None:
            d0 = x.shape[0] if x.dim() >= 1 else 1
            d1 = x.shape[1] if x.dim() >= 2 else 1
            return x.reshape(d0, d1, -1) if x.numel() else x.reshape(d0, d1, 0)
        t = x.movedim(self.axis, -1) if x.dim() else x.reshape(1)
        if self.pad:
            t = torch.nn.functional.pad(t, (0, self.pad))
        return t.reshape(-1, 1, self.block)

    def from_x3(self, y3: torch.Tensor) -> torch.Tensor:
        if self.flat or self.block is None or self.axis is None:
            return y3.reshape(self.shape)
        moved = list(self.shape) if len(self.shape) else [1]
        if len(self.shape):
            moved.append(moved.pop(self.axis))
        t = y3.reshape(*moved[:-1], moved[-1] + self.pad)
        if self.pad:
            t = t[..., : moved[-1]]
        t = t.movedim(-1, self.axis) if len(self.shape) else t
        return t.reshape(self.shape).contiguous()  # a padded or moved view would keep its big base alive


def group_view(x: torch.Tensor) -> BlockView:
    """(dim0, dim1, rest) view used by MLS grouping and per-channel scales."""
    return BlockView(x.shape)


def flat_view(x: torch.Tensor) -> BlockView:
    """The whole tensor as one row (per-tensor scales)."""
    return BlockView(x.shape, flat=True)


def block_view(x: torch.Tensor, block: int, axis: int) -> BlockView:
    """Blocks of ``block`` consecutive elements along ``axis``; a block never extends past the end of
    its row: an axis of ``n < block`` elements is one block of ``n`` (same scales as a zero-padded
    block, no padding), otherwise only the last partial block is zero padded (the view is then at
    most twice the input; it was ``block / n`` times the input, 1365x for ``bfp(block=4096)`` on a
    3x3 kernel axis)."""
    if x.dim() == 0:
        return BlockView(x.shape, 0, 1, 0)
    if not -x.dim() <= axis < x.dim():
        raise ValueError(f"axis={axis} is out of range for a {x.dim()}-d tensor")
    ax = axis % x.dim()
    n = x.shape[ax]
    eff = max(1, min(block, n))
    return BlockView(x.shape, ax, eff, (-n) % eff)


class ScaledFormat(FormatSpec):
    """Mixin for formats with data-dependent scales.  Subclasses implement
    ``element_grid``, ``view`` and ``scales`` (returning the (A, B) float64 scale
    tensor and a dict of named scale tensors to store)."""

    @property
    def scaled(self) -> bool:
        return True

    @property
    def element_grid(self) -> ElementGrid:
        raise NotImplementedError

    def view(self, x: torch.Tensor) -> BlockView:
        raise NotImplementedError

    def scales(self, x3: torch.Tensor, backend: str = "auto") -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    # element codes: signed integers by default (int grids); minifloat grids override
    element_code_kind: str = "int"

    @property
    def max(self) -> float:
        return self.element_grid.maxval

    @property
    def tiny(self) -> float:
        return self.element_grid.tiny

    @property
    def smallest_subnormal(self) -> float:
        return self.element_grid.smallest

    # ------------------------------------------------------------ quantize
    def fused_pow2_blocks(self) -> tuple[int, int, int, int, float] | None:
        """(offset, elo, ehi, ezero, rceil_max) when the shared scale is ``2^e``
        with ``e = floor(log2 amax) + offset`` (or the rceil rule): lets the
        fused Numba kernel do amax, scale and rounding in one pass."""
        return None

    def _fused(self, x, rounding, seed):
        """One-pass kernel for power-of-two block scales along a contiguous last axis."""
        from ..kernels.grid_round import quantize_pow2_blocks
        from .grid import kernel_seed, resolve_seed as _rs

        params = self.fused_pow2_blocks()
        block = self.view(x).block  # rows shorter than the block are one (shorter) block
        xn = x.detach().numpy()
        out = np.empty_like(xn).reshape(-1)
        exps = np.empty(xn.size // block, dtype=np.int64)
        g = self.element_grid
        mode = {"nearest": 0, "stochastic": 1, "truncate": 2}[rounding]
        seed_ = kernel_seed(_rs(seed)) if rounding == "stochastic" else 0
        quantize_pow2_blocks(xn.reshape(-1), out, exps, block, *params, g.m, g.emin, g.subnormals,
                             g.maxval, mode, seed_)
        return torch.from_numpy(out).reshape(x.shape)

    def quantize(self, x, rounding="nearest", seed=None, backend="auto"):
        check_input(x)
        check_rounding(self, rounding)
        view = self.view(x)
        if (
            self.fused_pow2_blocks() is not None
            and backend in ("auto", "numba")
            and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.float64)
            and x.dim() >= 1
            and view.pad == 0
            and view.axis == x.dim() - 1
            and x.is_contiguous()
            and x.numel() > 0
        ):
            return self._fused(x, rounding, seed)
        x3 = view.to_x3(x)
        s2, _ = self.scales(x3, backend)
        g = self.element_grid
        y3 = quantize_blocked(x3, s2, g, g.maxval, g.maxval, rounding, seed, backend)
        nan_rows = torch.isnan(s2)  # a NaN scale (MX: a block holding inf/NaN) makes its whole row NaN
        if bool(nan_rows.any()):
            y3 = torch.where(nan_rows.to(y3.device).unsqueeze(-1), torch.full_like(y3, float("nan")), y3)
        return to_dtype(view.from_x3(y3), x.dtype)

    def encode(self, x, rounding="nearest", seed=None) -> Encoded:
        check_input(x)
        check_rounding(self, rounding)
        view = self.view(x)
        x3 = view.to_x3(x)
        s2, named = self.scales(x3, "reference")
        g = self.element_grid
        seed_ = resolve_seed(seed) if rounding == "stochastic" else 0
        r = quantize_blocked_reference(x3, s2, g, g.maxval, g.maxval, rounding, seed_, elements=True)
        nan_rows = torch.isnan(s2).unsqueeze(-1)
        if bool(nan_rows.any()):  # the NaN scale carries the NaN of the row: its element codes are 0
            r = torch.where(nan_rows, torch.zeros_like(r), r)
        if torch.isnan(r).any():
            raise ValueError(f"{self} has no NaN encoding; the input contains NaN")
        codes = self.element_codes(r)
        named = dict(named)
        named["_s2"] = s2
        return Encoded(self, view.from_x3(codes) if self._codes_follow_view else codes, named, x.dtype)

    _codes_follow_view = True

    def element_codes(self, r: torch.Tensor) -> torch.Tensor:
        g = self.element_grid
        if self.element_code_kind == "int":
            return r.to(torch.int64).to(torch.int32)
        ef, mf = minifloat_fields(r.abs(), g)
        nbits = self.bits - 1
        code = (ef << g.m) | mf
        code = code | (torch.signbit(r).to(torch.int64) << nbits)
        return code.to(torch.int16)

    def element_values(self, codes: torch.Tensor) -> torch.Tensor:
        g = self.element_grid
        if self.element_code_kind == "int":
            return codes.to(torch.float64)
        c = codes.to(torch.int64)
        nbits = self.bits - 1
        mag = c & ((1 << nbits) - 1)
        v = minifloat_value(mag >> g.m, mag & ((1 << g.m) - 1), g)
        return torch.where(((c >> nbits) & 1).bool(), -v, v)

    def decode(self, q: Encoded) -> torch.Tensor:
        shape = q.codes.shape
        view = self.view(torch.empty(shape, device="meta"))
        r = self.element_values(view.to_x3(q.codes.reshape(shape)) if self._codes_follow_view else q.codes)
        s2 = q.scales["_s2"].unsqueeze(-1)
        scaled = (s2 != 0) & (s2 != 1)
        y3 = torch.where(scaled, r * s2, r)
        return to_dtype(view.from_x3(y3), q.dtype)

    def codebook(self) -> torch.Tensor:
        if self.bits > 25:  # as FloatFormat.codebook: at most 2^24 non-negative codes are enumerated
            raise ValueError(f"{self} has 2^{self.bits - 1} non-negative codes; codebook() enumerates at most 2^24")
        return torch.from_numpy(self.element_grid.values())

    # ------------------------------------------------------------- metrics
    def blocked_scales(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, BlockView]:
        """``(x3, s2, view)``: the (A, B, R) view of ``x`` and the float64 scale of each (A, B) row.
        The metrics count a zero scale as 1: :meth:`range_for` and :meth:`code_step` are these
        scales per element, zeros replaced by 1."""
        view = self.view(x)
        x3 = view.to_x3(x)
        s2, _ = self.scales(x3, "auto")
        return x3, s2.to(torch.float64), view

    def _scale_per_element(self, x: torch.Tensor) -> torch.Tensor:
        x3, s2, view = self.blocked_scales(x)
        s2 = torch.where(s2 == 0, torch.ones_like(s2), s2)
        return view.from_x3(s2.unsqueeze(-1).expand(x3.shape))

    def range_for(self, x):
        s = self._scale_per_element(x)
        g = self.element_grid
        return s * g.maxval, s * g.smallest

    def code_step(self, x: torch.Tensor) -> torch.Tensor:
        s = self._scale_per_element(x)
        a = x.detach().to(torch.float64).abs() / s
        k = grid_quantum_exponent(a, self.element_grid)
        return torch.ldexp(s, k.to(torch.float64))


def pow2_floor_log2(a: torch.Tensor) -> torch.Tensor:
    """floor(log2 a) for a > 0 (exact, via frexp); int64."""
    _, e = torch.frexp(a)
    return e.to(torch.int64) - 1


def ldexp1(e: torch.Tensor) -> torch.Tensor:
    return torch.ldexp(torch.ones_like(e, dtype=torch.float64), e.to(torch.float64))


