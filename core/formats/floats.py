"""IEEE-like and OCP floating-point formats: ``float(e=,m=,bias=,inf=,nan=,subnormals=,saturate=)``.

Covers fp32/fp16/bf16, OCP FP8 E4M3 ("fn": no inf, NaN = S.1111.111, max 448)
and E5M2 (IEEE-like, max 57344), the IEEE-like FP8(1-4-3)/(1-5-2) that LogBTQ
compares against (LogBTQ paper, section 3.5: max 240 / 57344, smallest subnormals
2^-9 / 2^-16), and the MX element formats FP6 E3M2/E2M3 and FP4 E2M1 (no
inf/NaN).  See docs/papers.md#logbtq-fp8, #ocp-fp8 and #ocp-mx.

Special values:
  * NaN input -> NaN output (for formats without a NaN encoding too; only
    ``encode`` refuses it).
  * ``saturate=True``: finite values beyond ``max`` become +-max; +-inf stays
    +-inf when the format has infinities, else becomes +-max.
  * ``saturate=False`` (IEEE / ml_dtypes behaviour): a value that rounds above
    ``max`` becomes +-inf, or NaN for formats without infinities (``nan=fn``).
  * Formats with neither inf nor NaN (``nan=none``: FP6, FP4) always saturate,
    as the OCP spec and ml_dtypes do (ml_dtypes maps NaN to 0 there; here NaN
    stays NaN so it remains visible, and ``encode`` refuses it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .base import GRID_ROUNDINGS, Encoded, FormatSpec, check_input, check_rounding, is_stochastic
from .dispatch import f32_flat_ok, mode_code, quantize_elementwise, to_dtype
from .grid import ElementGrid, kernel_seed, minifloat_fields, minifloat_value, resolve_seed
from .registry import check_choice, check_range, register_alias, register_family

__all__ = ["FloatFormat"]

NAN_STYLES = ("ieee", "fn", "none")


@register_family
@dataclass(frozen=True)
class FloatFormat(FormatSpec):
    """A sign + ``e``-bit exponent + ``m``-bit mantissa floating-point format.

    Args:
        e: exponent bits (1..11).
        m: mantissa bits (0..52).
        bias: exponent bias (default ``2^(e-1) - 1``).
        inf: the top exponent is reserved for inf/NaN (IEEE-like).
        nan: NaN encoding when ``inf`` is false: ``fn`` (all-ones code, OCP
            E4M3), ``none`` (every code finite, FP6/FP4); ``ieee`` with ``inf``.
        subnormals: gradual underflow; without it values below the smallest
            normal round to 0 or to the smallest normal.
        saturate: clamp overflow to +-max instead of inf/NaN.
    """

    family = "float"
    roundings = GRID_ROUNDINGS

    e: int = field(default=4, metadata={"range": (1, 11), "doc": "exponent bits"})
    m: int = field(default=3, metadata={"range": (0, 52), "doc": "mantissa bits"})
    bias: int | None = field(default=None, metadata={"doc": "exponent bias (default 2^(e-1)-1)"})
    inf: bool = field(default=True, metadata={"doc": "top exponent reserved for inf/NaN"})
    nan: str = field(default="ieee", metadata={"choices": NAN_STYLES, "doc": "NaN encoding"})
    subnormals: bool = field(default=True, metadata={"doc": "gradual underflow"})
    saturate: bool = field(default=True, metadata={"doc": "clamp overflow to max"})

    def __post_init__(self) -> None:
        check_range("float", "e", self.e, 1, 11)
        check_range("float", "m", self.m, 0, 52)
        if self.bias is None:
            object.__setattr__(self, "bias", 2 ** (self.e - 1) - 1)
        check_range("float", "bias", self.bias, -1100, 1100)
        check_choice("float", "nan", self.nan, NAN_STYLES)
        if self.inf and self.nan != "ieee":
            raise ValueError(f"float: nan={self.nan!r} needs inf=false (inf=true implies nan=ieee)")
        if not self.inf and self.nan == "ieee":
            object.__setattr__(self, "nan", "fn")
        if self.inf and self.e < 2:
            raise ValueError("float: inf=true needs e >= 2 (one exponent is reserved)")
        if self.nan == "fn" and self.m == 0 and self.e < 2:
            raise ValueError("float: nan=fn with m=0 needs e >= 2")
        if self.emax < self.emin:
            raise ValueError(f"float: no normal exponents for e={self.e}, bias={self.bias}")
        if self.bits > 64:
            raise ValueError("float: at most 64 bits")
        # values are computed in float64: the format's range must fit it (max finite and smallest step)
        if self.emax > 1023:
            raise ValueError(f"float: e={self.e}, bias={self.bias} reaches 2^{self.emax}: beyond float64's "
                             f"range (largest exponent 1023)")
        if self.emin - self.m < -1074:
            raise ValueError(f"float: e={self.e}, m={self.m}, bias={self.bias} has steps of 2^{self.emin - self.m}: "
                             f"below float64's smallest value 2^-1074, they would round to 0")

    # ---------------------------------------------------------- properties
    @property
    def emin(self) -> int:
        """Exponent of the smallest normal."""
        assert self.bias is not None
        return 1 - self.bias

    @property
    def emax(self) -> int:
        """Exponent of the largest finite binade."""
        assert self.bias is not None
        top = 2**self.e - 1
        if self.inf or (self.nan == "fn" and self.m == 0):
            top -= 1
        return top - self.bias

    @property
    def bits(self) -> int:
        return 1 + self.e + self.m

    @property
    def max(self) -> float:
        mant_top = 2 ** (self.m + 1) - 1
        if self.nan == "fn" and self.m > 0:
            mant_top -= 1  # all-ones mantissa at the top exponent is NaN
        return math.ldexp(mant_top, self.emax - self.m)

    @property
    def tiny(self) -> float:
        return math.ldexp(1.0, self.emin)

    @property
    def smallest_subnormal(self) -> float:
        return math.ldexp(1.0, self.emin - self.m) if self.subnormals else self.tiny

    @property
    def eps(self) -> float:
        """Spacing of values just above 1."""
        return math.ldexp(1.0, -self.m)

    @property
    def has_inf(self) -> bool:
        return self.inf

    @property
    def has_nan(self) -> bool:
        return self.nan != "none"

    @property
    def grid(self) -> ElementGrid:
        # m = 0: no subnormal values either way; subnormals=True says zero has the code below 2^emin
        return ElementGrid(self.m, self.emin, self.subnormals or self.m == 0, self.max)

    @property
    def overflow_value(self) -> float:
        """What a finite value rounding above ``max`` becomes."""
        if self.saturate or not (self.inf or self.has_nan):
            return self.max  # nothing to overflow into: FP6/FP4 always saturate (OCP)
        return math.inf if self.inf else math.nan

    @property
    def inf_value(self) -> float:
        """What an infinite input becomes."""
        if self.inf:
            return math.inf
        return self.max if self.saturate or not self.has_nan else math.nan

    # ----------------------------------------------------------- behaviour
    def quantize(self, x, rounding="nearest", seed=None, backend="auto"):
        check_input(x)
        check_rounding(self, rounding)
        return quantize_elementwise(x, self.grid, self.overflow_value, self.inf_value,
                                    rounding, seed, backend)

    def quantizer(self, rounding: str = "nearest"):
        """``f(x, seed)`` == :meth:`quantize`; contiguous float32 CPU tensors go straight to the
        bit-pattern kernel ``quantize_f32_flat`` when the grid allows it (the conditions of
        ``core.formats.dispatch``'s numba backend, checked here once), skipping the generic path's
        per-call work (~20 us on the tensors of a small training step)."""
        check_rounding(self, rounding)
        g, ovf, infv = self.grid, self.overflow_value, self.inf_value
        if not f32_flat_ok(g, ovf, infv, rounding):
            return super().quantizer(rounding)
        from ..kernels.grid_round import quantize_f32_flat

        m, emin, sub, maxval, mode = g.m, g.emin, g.subnormals, g.maxval, mode_code(rounding)
        stochastic = is_stochastic(rounding)
        spec = self

        def quantize_float32(x: torch.Tensor, seed: int | None = None) -> torch.Tensor:
            if x.dtype is torch.float32 and x.is_cpu and x.is_contiguous():
                seed_ = kernel_seed(resolve_seed(seed)) if stochastic else 0
                y = torch.empty_like(x, memory_format=torch.contiguous_format)
                quantize_f32_flat(x.detach().numpy().reshape(-1).view(np.uint32), y.numpy().reshape(-1).view(np.uint32),
                                  m, emin, sub, maxval, ovf, infv, mode, seed_)
                return y
            return spec.quantize(x, rounding, seed)

        return quantize_float32

    def encode(self, x, rounding="nearest", seed=None) -> Encoded:
        y = self.quantize(x, rounding, seed).to(torch.float64)
        return Encoded(self, self.codes_of(y), {}, x.dtype)

    def codes_of(self, y: torch.Tensor) -> torch.Tensor:
        """Bit patterns (sign | exponent | mantissa) of quantized values ``y``."""
        grid = self.grid
        a = y.abs()
        nan = torch.isnan(y)
        inf = torch.isinf(y)
        if nan.any() and not self.has_nan:
            raise ValueError(f"{self} has no NaN encoding; the input contains NaN")
        finite = torch.where(nan | inf, torch.zeros_like(a), a)
        ef, mf = minifloat_fields(finite, grid)
        code = (ef << self.m) | mf
        top = (2**self.e - 1) << self.m
        if self.inf:
            code = torch.where(inf, torch.full_like(code, top), code)
            qnan = top | (1 << (self.m - 1) if self.m > 0 else 0)
            code = torch.where(nan, torch.full_like(code, qnan), code)
        elif self.has_nan:
            code = torch.where(nan, torch.full_like(code, top | (2**self.m - 1)), code)
        sign = torch.signbit(y).to(torch.int64) << (self.e + self.m)
        code = code | sign
        return code.to(_code_dtype(self.bits))

    def decode(self, q: Encoded) -> torch.Tensor:
        code = q.codes.to(torch.int64) & ((1 << self.bits) - 1) if self.bits < 64 else q.codes.to(torch.int64)
        sign = (code >> (self.e + self.m)) & 1
        mag = code & ((1 << (self.e + self.m)) - 1)
        ef = mag >> self.m
        mf = mag & ((1 << self.m) - 1)
        v = minifloat_value(ef, mf, self.grid)
        top_e = 2**self.e - 1
        if self.inf:
            v = torch.where((ef == top_e) & (mf == 0), torch.full_like(v, math.inf), v)
            v = torch.where((ef == top_e) & (mf != 0), torch.full_like(v, math.nan), v)
        elif self.has_nan:
            v = torch.where(mag == (1 << (self.e + self.m)) - 1, torch.full_like(v, math.nan), v)
        v = torch.where(sign.bool(), -v, v)
        return to_dtype(v, q.dtype)

    def codebook(self) -> torch.Tensor:
        n_codes = 2 ** (self.e + self.m)
        if n_codes > 2**24:
            raise ValueError(
                f"{self} has {n_codes} non-negative codes; codebook() enumerates at most 2^24"
            )
        return torch.from_numpy(self.grid.values())

    def code_step(self, x: torch.Tensor) -> torch.Tensor:
        from .grid import grid_quantum_exponent

        a = x.detach().to(torch.float64).abs()
        k = grid_quantum_exponent(a, self.grid)
        return torch.ldexp(torch.ones_like(a), k.to(torch.float64))


def _code_dtype(bits: int) -> torch.dtype:
    if bits <= 8:
        return torch.uint8
    if bits <= 16:
        return torch.int16 if bits < 16 else torch.int32
    if bits < 32:
        return torch.int32
    return torch.int64


# ------------------------------------------------------------------ aliases
# IEEE formats behave like their torch dtypes by default (overflow -> inf).
register_alias("fp32", FloatFormat(e=8, m=23, saturate=False))
register_alias("fp16", FloatFormat(e=5, m=10, saturate=False))
register_alias("bf16", FloatFormat(e=8, m=7, saturate=False))
register_alias("fp64", FloatFormat(e=11, m=52, saturate=False))
# OCP FP8 (saturating by default, as training recipes use them).
register_alias("fp8_e4m3", FloatFormat(e=4, m=3, inf=False, nan="fn"))
register_alias("fp8_e5m2", FloatFormat(e=5, m=2))
# LogBTQ's IEEE-like FP8(1-4-3) and FP8(1-5-2) (LogBTQ paper, Table 2).
register_alias("fp8_143", FloatFormat(e=4, m=3, bias=7))
# FP8(1-5-2) is the same bit layout as OCP E5M2 (bias 15, max 57344, 2^-16).
register_alias("fp8_152", FloatFormat(e=5, m=2))
# OCP MX element formats.
register_alias("fp6_e3m2", FloatFormat(e=3, m=2, inf=False, nan="none"))
register_alias("fp6_e2m3", FloatFormat(e=2, m=3, inf=False, nan="none"))
register_alias("fp4_e2m1", FloatFormat(e=2, m=1, inf=False, nan="none"))
# ml_dtypes' names, with ml_dtypes' behaviour (IEEE overflow: inf, or NaN without inf; docs/conformance.md).
# Specs equal to one above print as that name (the first alias of a spec is its canonical string).
register_alias("float8_e4m3fn", FloatFormat(e=4, m=3, inf=False, nan="fn", saturate=False))
register_alias("float8_e5m2", FloatFormat(e=5, m=2, saturate=False))
register_alias("float8_e4m3", FloatFormat(e=4, m=3, saturate=False))
register_alias("float6_e3m2fn", FloatFormat(e=3, m=2, inf=False, nan="none"))
register_alias("float6_e2m3fn", FloatFormat(e=2, m=3, inf=False, nan="none"))
register_alias("float4_e2m1fn", FloatFormat(e=2, m=1, inf=False, nan="none"))
register_alias("bfloat16", FloatFormat(e=8, m=7, saturate=False))
register_alias("float16", FloatFormat(e=5, m=10, saturate=False))
register_alias("float32", FloatFormat(e=8, m=23, saturate=False))
register_alias("float64", FloatFormat(e=11, m=52, saturate=False))
