"""IEEE P3109 binary formats ``p3109(k=,p=,signed=,domain=,saturate=)``, the FNUZ FP8 formats and E8M0.

IEEE P3109 (interim report v3, sections 3-4; gfloat's ``format_info_p3109`` is the executable reading
followed here, graphcore-research/gfloat ``src/gfloat/formats.py``): a ``k``-bit format of precision ``p``
(significand bits including the implicit one, so ``m = p - 1`` stored mantissa bits) with

  * signed: 1 sign bit, ``k - p`` exponent bits, bias ``floor(2^(k-p-1))``; unsigned: no sign bit,
    ``k - p + 1`` exponent bits, bias ``2^(k-p)``;
  * subnormals always, no negative zero: the code of -0 (``0x80`` for k = 8) is the single NaN of a
    signed format; an unsigned format's NaN is the top code (``0xFF``);
  * domain ``extended``: the top code of each sign (``0x7F``/``0xFF`` signed, ``0xFE`` unsigned) is
    +-inf; ``finite``: every other code is a finite value.

``binary8p3`` etc. are the signed extended K8 formats (P3109's names).  ``fp8_e4m3fnuz`` /
``fp8_e5m2fnuz`` (ml_dtypes ``float8_e4m3fnuz`` / ``float8_e5m2fnuz``: bias 8 / 16, no inf, NaN = 0x80,
no -0) are exactly ``p3109(k=8,p=4,domain=finite)`` / ``p3109(k=8,p=3,domain=finite)``.

Overflow (``saturate``): false (gfloat ``round_float(sat=False)``, P3109 "OvfInf"): a value rounding
above ``max`` becomes +-inf, or NaN in the finite domain, except that rounding toward zero (``truncate``
and the directed mode toward the finite side) gives +-max; true (P3109 "SatFinite"): +-max, and +-inf
inputs become +-max too.  Unsigned formats: a value that rounds to a negative number is out of range
(NaN; 0 when saturating); -0 becomes +0.

``e8m0`` (OCP MX v1.0 section 5.4.1, ml_dtypes ``float8_e8m0fnu``): unsigned, 8 exponent bits, bias 127,
no mantissa, no zero, NaN = 0xFF; values ``2^-127 .. 2^127``.  Zero and negative inputs are NaN (as in
ml_dtypes), magnitudes below ``2^-127`` become ``2^-127``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .base import GRID_ROUNDINGS, Encoded, FormatSpec, check_input, check_rounding
from .dispatch import f32_flat_ok, quantize_elementwise, to_dtype
from .floats import _code_dtype
from .grid import ElementGrid, grid_quantum_exponent, minifloat_fields, minifloat_value
from .registry import check_choice, check_range, register_alias, register_family

__all__ = ["P3109Format", "E8M0Format", "DOMAINS"]

DOMAINS = ("extended", "finite")


def _code_step(x: torch.Tensor, grid: ElementGrid) -> torch.Tensor:
    a = x.detach().to(torch.float64).abs()
    k = grid_quantum_exponent(a, grid)
    return torch.ldexp(torch.ones_like(a), k.to(torch.float64))


@register_family
@dataclass(frozen=True)
class P3109Format(FormatSpec):
    """An IEEE P3109 binary format (see the module docstring for the encoding).

    Args:
        k: width in bits (2..16).
        p: precision in bits, implicit bit included (1..k-1 signed, 1..k unsigned).
        signed: a sign bit (signed formats) or none (unsigned).
        domain: ``extended`` (+-inf at the top codes) or ``finite``.
        saturate: clamp overflow (and inf inputs) to +-max instead of inf/NaN.
    """

    family = "p3109"
    roundings = GRID_ROUNDINGS

    k: int = field(default=8, metadata={"range": (2, 16), "doc": "width in bits"})
    p: int = field(default=3, metadata={"range": (1, 16), "doc": "precision (significand bits incl. implicit)"})
    signed: bool = field(default=True, metadata={"doc": "sign bit"})
    domain: str = field(default="extended", metadata={"choices": DOMAINS, "doc": "extended (+-inf) or finite"})
    saturate: bool = field(default=False, metadata={"doc": "clamp overflow and inf to max"})

    def __post_init__(self) -> None:
        check_range("p3109", "k", self.k, 2, 16)
        top_p = self.k - 1 if self.signed else self.k
        check_range("p3109", "p", self.p, 1, top_p)
        check_choice("p3109", "domain", self.domain, DOMAINS)
        if not self.max > 0:
            raise ValueError(f"p3109: k={self.k}, p={self.p}, domain={self.domain} has no positive finite value")

    # ------------------------------------------------------------ layout
    @property
    def m(self) -> int:
        """Stored mantissa bits ``p - 1``."""
        return self.p - 1

    @property
    def ebits(self) -> int:
        return self.k - self.p + (0 if self.signed else 1)

    @property
    def bias(self) -> int:
        """P3109 bias: ``floor(2^(k-p-1))`` signed, ``2^(k-p)`` unsigned."""
        return 2 ** (self.k - self.p - 1) if self.signed else 2 ** (self.k - self.p)

    @property
    def emin(self) -> int:
        return 1 - self.bias

    @property
    def mag_codes(self) -> int:
        """Number of magnitude codes (``2^(k-1)`` signed, ``2^k`` unsigned)."""
        return 2 ** (self.k - 1) if self.signed else 2**self.k

    @property
    def nan_code(self) -> int:
        return 2 ** (self.k - 1) if self.signed else 2**self.k - 1

    @property
    def inf_mag_code(self) -> int | None:
        """Magnitude code of inf (extended domain), else ``None``."""
        if self.domain != "extended":
            return None
        return self.mag_codes - 1 if self.signed else self.mag_codes - 2

    @property
    def top_finite_code(self) -> int:
        top = self.mag_codes - 1 if self.signed else self.mag_codes - 2  # unsigned: the top code is NaN
        return top - 1 if self.domain == "extended" else top

    def _value_of(self, c: int) -> float:
        ef, mf = c >> self.m, c & ((1 << self.m) - 1)
        if ef == 0:
            return math.ldexp(mf, self.emin - self.m)
        return math.ldexp((1 << self.m) + mf, ef - self.bias - self.m)

    # ---------------------------------------------------- derived numbers
    @property
    def bits(self) -> int:
        return self.k

    @property
    def max(self) -> float:
        return self._value_of(self.top_finite_code)

    @property
    def tiny(self) -> float:
        return math.ldexp(1.0, self.emin)

    @property
    def smallest_subnormal(self) -> float:
        return math.ldexp(1.0, self.emin - self.m)

    @property
    def has_inf(self) -> bool:
        return self.domain == "extended"

    @property
    def has_nan(self) -> bool:
        return True

    @property
    def grid(self) -> ElementGrid:
        return ElementGrid(self.m, self.emin, True, self.max)

    @property
    def overflow_value(self) -> float:
        if self.saturate:
            return self.max
        return math.inf if self.has_inf else math.nan

    @property
    def inf_value(self) -> float:
        return self.overflow_value

    # ------------------------------------------------------------ behaviour
    def quantize(self, x, rounding="nearest", seed=None, backend="auto"):
        check_input(x)
        check_rounding(self, rounding)
        y = quantize_elementwise(x, self.grid, self.overflow_value, self.inf_value, rounding, seed, backend)
        if not self.signed:
            y = torch.where(y < 0, torch.full_like(y, 0.0 if self.saturate else math.nan), y)
        return y.add_(0.0)  # no negative zero: -0 + 0 = +0 (in place: y is this call's own tensor)

    def encode(self, x, rounding="nearest", seed=None) -> Encoded:
        y = self.quantize(x, rounding, seed).to(torch.float64)
        return Encoded(self, self.codes_of(y), {}, x.dtype)

    def codes_of(self, y: torch.Tensor) -> torch.Tensor:
        """Codes of quantized values ``y`` (sign bit | magnitude code; NaN at :attr:`nan_code`)."""
        nan, inf = torch.isnan(y), torch.isinf(y)
        a = torch.where(nan | inf, torch.zeros_like(y), y.abs())
        ef, mf = minifloat_fields(a, self.grid)
        code = (ef << self.m) | mf
        if self.inf_mag_code is not None:
            code = torch.where(inf, torch.full_like(code, self.inf_mag_code), code)
        if self.signed:
            code = code | ((y < 0).to(torch.int64) << (self.k - 1))
        code = torch.where(nan, torch.full_like(code, self.nan_code), code)
        return code.to(_code_dtype(self.k))

    def decode(self, q: Encoded) -> torch.Tensor:
        code = q.codes.to(torch.int64) & ((1 << self.k) - 1)
        if self.signed:
            neg = (code >> (self.k - 1)).bool()
            mag = code & (self.mag_codes - 1)
        else:
            neg = torch.zeros_like(code, dtype=torch.bool)
            mag = code
        v = minifloat_value(mag >> self.m, mag & ((1 << self.m) - 1), self.grid)
        if self.inf_mag_code is not None:
            v = torch.where(mag == self.inf_mag_code, torch.full_like(v, math.inf), v)
        v = torch.where(neg, -v, v)
        v = torch.where(code == self.nan_code, torch.full_like(v, math.nan), v)
        return to_dtype(v, q.dtype)

    def codebook(self) -> torch.Tensor:
        return torch.from_numpy(self.grid.values())

    def finite_count(self) -> int:
        n = len(self.codebook())
        return 2 * (n - 1) + 1 if self.signed else n

    def code_step(self, x: torch.Tensor) -> torch.Tensor:
        return _code_step(x, self.grid)


@register_family
@dataclass(frozen=True)
class E8M0Format(FormatSpec):
    """The OCP MX scale format E8M0 (ml_dtypes ``float8_e8m0fnu``): ``2^(c - 127)`` for codes
    ``c = 0..254``, NaN = 255, no zero, no sign (OCP MX v1.0, section 5.4.1).

    Args:
        saturate: out-of-range values (overflow, inf, zero, negatives) become the nearest end of the
            range instead of NaN (ml_dtypes: NaN).
    """

    family = "e8m0"
    roundings = GRID_ROUNDINGS

    saturate: bool = field(default=False, metadata={"doc": "clamp out-of-range values instead of NaN"})

    @property
    def bits(self) -> int:
        return 8

    @property
    def max(self) -> float:
        return math.ldexp(1.0, 127)

    @property
    def tiny(self) -> float:
        return math.ldexp(1.0, -127)

    @property
    def smallest_subnormal(self) -> float:
        return self.tiny

    @property
    def has_inf(self) -> bool:
        return False

    @property
    def has_nan(self) -> bool:
        return True

    @property
    def grid(self) -> ElementGrid:
        return ElementGrid(0, -127, False, self.max)

    @property
    def overflow_value(self) -> float:
        return self.max if self.saturate else math.nan

    @property
    def inf_value(self) -> float:
        return self.overflow_value

    def quantize(self, x, rounding="nearest", seed=None, backend="auto"):
        check_input(x)
        check_rounding(self, rounding)
        fast = self._quantize_f32(x, rounding, seed, backend)
        if fast is not None:
            return fast
        y = quantize_elementwise(x, self.grid, self.overflow_value, self.inf_value, rounding, seed, backend)
        out = self.tiny if self.saturate else math.nan
        y = torch.where(x <= 0, torch.full_like(y, out), y)  # no zero, no sign
        return y.clamp_(min=self.tiny)  # below 2^-127: the smallest value (NaN stays NaN)

    def _quantize_f32(self, x, rounding, seed, backend):
        """Contiguous float32 CPU data without magnitudes below 2^-125: the float32 bit-pattern kernel
        on the grid from 2^-125 (above it every float32 rounds there as on the E8M0 grid: same quantum
        per binade, same element index for the stochastic draws, and an exponent offset of two, so the
        same parity for the ties-to-even and round-to-odd rules) plus one pass for zero and negative
        inputs (:func:`core.kernels.e8m0.e8m0_finish_f32`); None where that does not hold."""
        if not (backend in ("auto", "numba") and x.dtype == torch.float32 and x.device.type == "cpu"
                and x.is_contiguous() and x.numel() > 0):
            return None
        g = ElementGrid(0, -125, False, self.max)
        if not f32_flat_ok(g, self.overflow_value, self.inf_value, rounding):
            return None
        from ..kernels.e8m0 import e8m0_finish_f32

        y = quantize_elementwise(x, g, self.overflow_value, self.inf_value, rounding, seed, "numba")
        below = self.tiny if self.saturate else math.nan
        if e8m0_finish_f32(x.detach().numpy().reshape(-1), y.numpy().reshape(-1), below):
            return None  # inputs below 2^-125: the general path
        return y

    def encode(self, x, rounding="nearest", seed=None) -> Encoded:
        y = self.quantize(x, rounding, seed).to(torch.float64)
        nan = torch.isnan(y)
        _, exp = torch.frexp(torch.where(nan, torch.ones_like(y), y))
        code = torch.where(nan, torch.full_like(exp, 255, dtype=torch.int64), exp.to(torch.int64) - 1 + 127)
        return Encoded(self, code.to(torch.uint8), {}, x.dtype)

    def decode(self, q: Encoded) -> torch.Tensor:
        c = q.codes.to(torch.int64) & 0xFF
        v = torch.ldexp(torch.ones_like(c, dtype=torch.float64), (c - 127).to(torch.float64))
        return to_dtype(torch.where(c == 255, torch.full_like(v, math.nan), v), q.dtype)

    def codebook(self) -> torch.Tensor:
        return torch.from_numpy(self.grid.values()[1:])  # no zero

    def finite_count(self) -> int:
        return 255

    def code_step(self, x: torch.Tensor) -> torch.Tensor:
        return _code_step(x, self.grid)


# ------------------------------------------------------------------ aliases
# P3109's names for the signed extended 8-bit formats: binary8p1 .. binary8p7.
for _p in range(1, 8):
    register_alias(f"binary8p{_p}", P3109Format(k=8, p=_p))
# FNUZ FP8 (ml_dtypes float8_e4m3fnuz / float8_e5m2fnuz; AMD/Graphcore FP8) = P3109 K8 finite formats.
register_alias("fp8_e4m3fnuz", P3109Format(k=8, p=4, domain="finite"))
register_alias("fp8_e5m2fnuz", P3109Format(k=8, p=3, domain="finite"))
register_alias("float8_e4m3fnuz", P3109Format(k=8, p=4, domain="finite"))
register_alias("float8_e5m2fnuz", P3109Format(k=8, p=3, domain="finite"))
register_alias("float8_e8m0fnu", E8M0Format())
