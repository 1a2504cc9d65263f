"""OCP Microscaling (MX) block formats (OCP MX spec v1.0; docs/papers.md#ocp-mx).

Blocks of ``block`` (default 32) consecutive elements along ``axis`` share an
E8M0 power-of-two scale ``X = 2^E``:

* ``scale=floor`` (OCP v1.0): ``E = floor(log2 amax) - emax_elem``;
* ``scale=rceil`` (newer recipes): ``E = ceil(log2(amax / max_elem))``, the
  smallest E for which no element overflows;

clamped to the E8M0 range [-127, 127] (an all-zero block uses -127).  Elements
``x / 2^E`` are rounded to the element format (nearest-even by default) and
saturated at its max.  Element formats: FP8 E4M3/E5M2, FP6 E3M2/E2M3, FP4
E2M1 and INT8 (fixed point ``k/64``, max 127/64).

Special values (OCP MX v1.0 section 6.3 and its reference implementation microxcaling): a block
holding inf or NaN gets the NaN scale (E8M0 code 0xFF) and decodes entirely to NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

import numpy as np

from .base import check_input, check_rounding
from .dispatch import MODE_CODES, group_absmax
from .grid import kernel_seed, resolve_seed
from .grid import ElementGrid
from .registry import ALIASES, check_choice, check_range, register_family
from .scaled import ScaledFormat, block_view, ldexp1, pow2_floor_log2

__all__ = ["MXFormat", "MX_ELEMENTS"]

#: element name -> (grid, emax_elem, storage bits)
MX_ELEMENTS = ("fp8_e4m3", "fp8_e5m2", "fp6_e3m2", "fp6_e2m3", "fp4_e2m1", "int8")


def _element(elem: str) -> tuple[ElementGrid, int, int]:
    if elem == "int8":
        return ElementGrid(7, 1, True, 127.0 / 64.0), 0, 8
    f = ALIASES[elem]
    return f.grid, f.emax, f.bits  # type: ignore[attr-defined]


@register_family
@dataclass(frozen=True)
class MXFormat(ScaledFormat):
    """MX block format: element format + block size + E8M0 shared scale."""

    family = "mx"
    element_code_kind = "minifloat"

    elem: str = field(default="fp8_e4m3", metadata={"choices": MX_ELEMENTS, "doc": "element format"})
    block: int = field(default=32, metadata={"range": (1, 4096), "doc": "block size"})
    axis: int = field(default=-1, metadata={"range": (-8, 7), "doc": "blocking axis"})
    scale: str = field(default="floor", metadata={"choices": ("floor", "rceil"), "doc": "shared-scale rule"})

    def __post_init__(self) -> None:
        check_choice("mx", "elem", self.elem, MX_ELEMENTS)
        check_range("mx", "block", self.block, 1, 4096)
        check_range("mx", "axis", self.axis, -8, 7)
        check_choice("mx", "scale", self.scale, ("floor", "rceil"))
        if self.elem == "int8":
            object.__setattr__(self, "element_code_kind", "int")

    @property
    def bits(self) -> int:
        return _element(self.elem)[2]

    @property
    def element_grid(self) -> ElementGrid:
        return _element(self.elem)[0]

    @property
    def emax_elem(self) -> int:
        return _element(self.elem)[1]

    def view(self, x):
        return block_view(x, self.block, self.axis)

    def scales(self, x3, backend="auto"):
        """(2^E per block, {"e8m0": E + 127}); a block holding inf or NaN: NaN scale, code 0xFF."""
        amax = group_absmax(x3, backend).to(x3.device)
        pos = amax > 0
        safe = torch.where(pos, amax, torch.ones_like(amax))
        if self.scale == "floor":
            e = pow2_floor_log2(safe) - self.emax_elem
        else:
            mx = self.element_grid.maxval
            e = pow2_floor_log2(safe / mx)
            # smallest e with mx * 2^e >= amax (products are exact)
            e = torch.where(mx * ldexp1(e) < safe, e + 1, e)
            e = torch.where(mx * ldexp1(e - 1) >= safe, e - 1, e)
        e = torch.where(pos, e, torch.full_like(e, -127)).clamp(-127, 127)
        bad = ~torch.isfinite(x3).all(dim=-1) if x3.shape[-1] else torch.zeros_like(pos)
        s2 = torch.where(bad, torch.full_like(amax, float("nan")), ldexp1(e))
        return s2, {"e8m0": torch.where(bad, torch.full_like(e, 255), e + 127).to(torch.uint8)}

    def quantize(self, x, rounding="nearest", seed=None, backend="auto"):
        """Contiguous float32/float64 CPU tensors blocked along their last axis take the fused
        kernel of :mod:`core.kernels.scaled_tiles` (block amax, E8M0 scale, NaN blocks and rounding
        in one pass); everything else the generic scaled-format path (same bits, tested)."""
        check_input(x)
        check_rounding(self, rounding)
        view = self.view(x)
        if (backend in ("auto", "numba") and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
                and x.dim() >= 1 and view.pad == 0 and view.axis == x.dim() - 1 and x.is_contiguous()
                and x.numel() > 0 and rounding in ("nearest", "stochastic", "truncate")):
            from ..kernels.scaled_tiles import SCALE_KINDS, quantize_tiles

            g = self.element_grid
            flat = x.detach().numpy().reshape(-1)
            out = np.empty_like(flat)
            rceil = self.scale == "rceil"
            seed_ = kernel_seed(resolve_seed(seed)) if rounding == "stochastic" else 0
            quantize_tiles(flat, out, 1, flat.size // view.block, view.block, 1, view.block,
                           SCALE_KINDS["e8m0" if rceil else "e8m0_floor"],
                           g.maxval if rceil else 2.0**self.emax_elem, 1.0, g.m, g.emin, g.subnormals, g.maxval,
                           MODE_CODES[rounding], seed_)
            return torch.from_numpy(out).reshape(x.shape)
        return super().quantize(x, rounding, seed, backend)

    def element_codes(self, r):
        if self.elem == "int8":
            return torch.round(r * 64).to(torch.int8)
        return super().element_codes(r).to(torch.uint8)

    def element_values(self, codes):
        if self.elem == "int8":
            return codes.to(torch.float64) / 64.0
        return super().element_values(codes)

    def storage_bits(self, q) -> int:
        return q.codes.numel() * self.bits + q.scales["e8m0"].numel() * 8
