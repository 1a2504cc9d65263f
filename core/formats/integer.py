"""Integer-like formats: symmetric ``int``, ``fixed`` point, ``niti`` and ``bfp``.

* ``int(bits=,scale=tensor|channel)``: symmetric linear quantization,
  ``s = amax / (2^(bits-1) - 1)`` (float64) per tensor or per dim-0 channel,
  codes in ``[-(2^(bits-1)-1), 2^(bits-1)-1]`` (the GEMMLOWP/SBM-style uniform
  quantizer of SBM, docs/papers.md#sbm).
* ``fixed(bits=,frac=)``: two's-complement-range fixed point with ``frac``
  fractional bits, saturating (symmetric range).
* ``niti(bits=8)``: NITI's int8 tensor with a shared power-of-two exponent
  (NITI paper, section 3.2; docs/papers.md#niti-format): ``s = 2^(B(amax) - (bits-1))``, i.e.
  the value shifted right by ``max(0, B - 7)`` for int8, then rounded and
  saturated at 127.  ``pseudo_stochastic`` is Alg. 3 applied to the
  magnitude with 16 fractional bits below the int8 LSB (truncated), since a
  float input has no integer accumulator to shift.
* ``bfp(bits=,block=,axis=)``: block floating point; each block of ``block``
  elements shares ``2^(floor(log2 amax) - bits + 2)``, elements are signed
  ``bits``-bit integers (sign included).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .base import check_input
from .dispatch import group_absmax, to_dtype
from .grid import ElementGrid
from .registry import check_choice, check_range, register_alias, register_family
from .scaled import ScaledFormat, block_view, flat_view, group_view, ldexp1, pow2_floor_log2

__all__ = ["IntFormat", "FixedFormat", "NitiFormat", "BFPFormat", "pseudo_stochastic_round"]


def _int_grid(bits: int) -> ElementGrid:
    return ElementGrid(bits - 1, bits - 1, True, float(2 ** (bits - 1) - 1))


@register_family
@dataclass(frozen=True)
class IntFormat(ScaledFormat):
    """Symmetric ``bits``-bit integers with a float64 scale per tensor or per channel."""

    family = "int"

    bits: int = field(default=8, metadata={"range": (2, 32), "doc": "bits including sign"})
    scale: str = field(default="tensor", metadata={"choices": ("tensor", "channel"),
                                                   "doc": "scale granularity"})

    def __post_init__(self) -> None:
        check_range("int", "bits", self.bits, 2, 32)
        check_choice("int", "scale", self.scale, ("tensor", "channel"))

    @property
    def element_grid(self) -> ElementGrid:
        return _int_grid(self.bits)

    def view(self, x):
        return group_view(x) if self.scale == "channel" else flat_view(x)

    def scales(self, x3, backend="auto"):
        amax = group_absmax(x3, backend).to(x3.device)
        if self.scale == "channel" and amax.numel():
            amax = amax.amax(dim=1, keepdim=True).expand_as(amax)
        s2 = amax / float(2 ** (self.bits - 1) - 1)
        return s2, {"scale": s2}


@register_family
@dataclass(frozen=True)
class FixedFormat(ScaledFormat):
    """Fixed point: ``k * 2^-frac`` with ``|k| <= 2^(bits-1) - 1``, saturating."""

    family = "fixed"

    bits: int = field(default=8, metadata={"range": (2, 32), "doc": "bits including sign"})
    frac: int = field(default=4, metadata={"range": (-64, 64), "doc": "fractional bits"})

    def __post_init__(self) -> None:
        check_range("fixed", "bits", self.bits, 2, 32)
        check_range("fixed", "frac", self.frac, -64, 64)

    @property
    def scaled(self) -> bool:
        return False

    @property
    def element_grid(self) -> ElementGrid:
        return _int_grid(self.bits)

    def view(self, x):
        return flat_view(x)

    def scales(self, x3, backend="auto"):
        s2 = torch.full(x3.shape[:2], math.ldexp(1.0, -self.frac), dtype=torch.float64,
                        device=x3.device)
        return s2, {}

    @property
    def max(self) -> float:
        return math.ldexp(2 ** (self.bits - 1) - 1, -self.frac)

    @property
    def tiny(self) -> float:
        return math.ldexp(1.0, -self.frac)

    @property
    def smallest_subnormal(self) -> float:
        return math.ldexp(1.0, -self.frac)

    def codebook(self):
        if self.bits > 25:  # as FloatFormat.codebook: at most 2^24 non-negative codes are enumerated
            raise ValueError(f"{self} has 2^{self.bits - 1} non-negative codes; codebook() enumerates at most 2^24")
        return torch.arange(0, 2 ** (self.bits - 1), dtype=torch.float64) * math.ldexp(1.0, -self.frac)


def pseudo_stochastic_round(v: torch.Tensor, bp: int) -> torch.Tensor:
    """NITI Alg. 3 (NITI paper, section 3.4; docs/papers.md#niti-pseudo-stochastic): drop ``bp``
    fractional bits of int ``v``.

    If ``bp`` is odd the lowest bit is dropped first; the remaining fraction's
    upper half (read as an integer) is compared with its lower half and the
    magnitude is rounded up iff upper > lower.  Sign restored afterwards; no
    random number generator.  Saturation is the caller's business.
    """
    v = v.to(torch.int64)
    if bp <= 0:
        return v << (-bp) if bp < 0 else v
    sign = torch.sign(v)
    a = v.abs()
    q = a >> bp
    frac = a & ((1 << bp) - 1)
    if bp % 2 == 1:
        frac = frac >> 1
        bp -= 1
    if bp == 0:
        return sign * q
    h = bp // 2
    upper = frac >> h
    lower = frac & ((1 << h) - 1)
    return sign * (q + (upper > lower).to(torch.int64))


@register_family
@dataclass(frozen=True)
class NitiFormat(ScaledFormat):
    """NITI int8 (``bits``) with one shared power-of-two exponent per tensor."""

    family = "niti"
    roundings = ("nearest", "stochastic", "pseudo_stochastic", "truncate")

    bits: int = field(default=8, metadata={"range": (2, 16), "doc": "bits including sign"})

    def __post_init__(self) -> None:
        check_range("niti", "bits", self.bits, 2, 16)

    @property
    def element_grid(self) -> ElementGrid:
        return _int_grid(self.bits)

    def view(self, x):
        return flat_view(x)

    def scales(self, x3, backend="auto"):
        amax = group_absmax(x3, backend).to(x3.device)
        pos = amax > 0
        e = pow2_floor_log2(torch.where(pos, amax, torch.ones_like(amax)))
        exp = torch.where(pos, e - (self.bits - 2), torch.zeros_like(e))
        return ldexp1(exp), {"exponent": exp}

    def quantize(self, x, rounding="nearest", seed=None, backend="auto"):
        if rounding != "pseudo_stochastic":
            return super().quantize(x, rounding, seed, backend)
        check_input(x)
        view = self.view(x)
        x3 = view.to_x3(x)
        s2, _ = self.scales(x3, backend)
        if backend in ("auto", "numba") and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
            from ..kernels.arith_niti import pseudo_stochastic_quantize

            xin = x.detach().contiguous().reshape(-1)
            out = torch.empty_like(xin)
            pseudo_stochastic_quantize(xin.numpy(), out.numpy(), float(s2.reshape(-1)[0]) if s2.numel() else 1.0,
                                       2 ** (self.bits - 1) - 1, self._PS_FRAC)
            return out.reshape(x.shape)
        r = self._pseudo_stochastic_elements(x3, s2)
        y = torch.where(torch.isnan(x3), x3.to(torch.float64), r * s2.unsqueeze(-1))
        return to_dtype(view.from_x3(y), x.dtype)

    _PS_FRAC = 16

    def _pseudo_stochastic_elements(self, x3, s2):
        v = x3.to(torch.float64)
        finite = torch.isfinite(v)
        qmax = 2 ** (self.bits - 1) - 1
        fixed = torch.floor(torch.ldexp(v.abs() / s2.unsqueeze(-1), torch.tensor(float(self._PS_FRAC))))
        fixed = torch.where(finite, fixed, torch.full_like(fixed, float(qmax) * 2**self._PS_FRAC))
        mag = pseudo_stochastic_round(fixed.to(torch.int64), self._PS_FRAC).clamp(max=qmax)
        return torch.copysign(mag.to(torch.float64), v)

    def encode(self, x, rounding="nearest", seed=None):
        if rounding != "pseudo_stochastic":
            return super().encode(x, rounding, seed)
        from .base import Encoded

        check_input(x)
        view = self.view(x)
        x3 = view.to_x3(x)
        s2, named = self.scales(x3, "reference")
        r = self._pseudo_stochastic_elements(x3, s2)
        named = dict(named)
        named["_s2"] = s2
        return Encoded(self, view.from_x3(self.element_codes(r)), named, x.dtype)

    def storage_bits(self, q) -> int:
        return q.codes.numel() * self.bits + 8


@register_family
@dataclass(frozen=True)
class BFPFormat(ScaledFormat):
    """Block floating point: shared exponent per block along ``axis``."""

    family = "bfp"

    bits: int = field(default=8, metadata={"range": (2, 24), "doc": "element bits incl. sign"})
    block: int = field(default=16, metadata={"range": (1, 4096), "doc": "block size"})
    axis: int = field(default=-1, metadata={"range": (-8, 7), "doc": "blocking axis"})

    def __post_init__(self) -> None:
        check_range("bfp", "bits", self.bits, 2, 24)
        check_range("bfp", "block", self.block, 1, 4096)
        check_range("bfp", "axis", self.axis, -8, 7)

    @property
    def element_grid(self) -> ElementGrid:
        return _int_grid(self.bits)

    def view(self, x):
        return block_view(x, self.block, self.axis)

    def scales(self, x3, backend="auto"):
        amax = group_absmax(x3, backend).to(x3.device)
        pos = amax > 0
        e = pow2_floor_log2(torch.where(pos, amax, torch.ones_like(amax)))
        exp = torch.where(pos, e - self.bits + 2, torch.zeros_like(e))
        return ldexp1(exp), {"exponent": exp}

    def fused_pow2_blocks(self):
        return (2 - self.bits, -(2**62), 2**62, 0, 0.0)

    def storage_bits(self, q) -> int:
        return q.codes.numel() * self.bits + q.scales["exponent"].numel() * 8


register_alias("int8", IntFormat(bits=8))
register_alias("int4", IntFormat(bits=4))
