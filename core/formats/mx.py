"""OCP Microscaling (MX) block formats (OCP MX spec v1.0; docs/papers.md#ocp-mx).

Blocks of ``block`` (default 32) consecutive elements along ``axis`` share an
E8M0 power-of-two scale ``X = 2^E``:

* ``scale=floor`` (OCP v1.0): ``E = floor(log2 amax) - emax_elem``;
* ``scale=rceil`` (newer recipes): ``E = ceil(log2(amax / max_elem))``, the
  smallest E for which no element overflows;

clamped to the E8M0 range [-127, 127] (an all-zero block uses -127).  Elements
``x / 2^E`` are rounded to the element format (nearest-even by default) and
saturated at its max.  Element formats: FP8 E4M3/E5M2, FP6 E3M2/E2M3, FP4
E2M1 and INT8 (fixed point ``k/64``, max 127/64).  NaN elements stay NaN
(the E8M0 NaN scale code is not produced).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .dispatch import group_absmax
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
        return ldexp1(e), {"e8m0": (e + 127).to(torch.uint8)}

    def fused_pow2_blocks(self):
        rceil = self.element_grid.maxval if self.scale == "rceil" else 0.0
        return (-self.emax_elem, -127, 127, -127, rceil)

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
