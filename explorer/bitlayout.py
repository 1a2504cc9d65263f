"""The bit layout of one value in one format (Panel-free): its code's fields, its two neighbours, and
where every rounding mode sends it and why, in the manner of Float Toy / float.exposed.

Everything numeric comes from the format itself (one truth): the code from :meth:`FormatSpec.encode`,
the neighbours from :func:`core.quantize` with ``rounding="down"``/``"up"`` where the family has the
directed modes (IEEE 754-2019 section 4.3; floats, P3109, E8M0) and from the element
:meth:`FormatSpec.codebook` times the element's block scale otherwise, and every mode's result from
:func:`core.quantize`.  This module only splits codes into fields and words the reasons.

Field layouts: IEEE-style floats are ``1 | e | m`` (sign, exponent, mantissa); P3109 ``binary{k}p{p}``
is ``1 | k-p | p-1`` signed and ``0 | k-p+1 | p-1`` unsigned (P3109 interim report, section 3); E8M0
is ``0 | 8 | 0`` (OCP MX v1.0 section 5.4.1); MLS elements are ``1 | Ex | Mx`` (MLS paper, section 3.1);
integer families are two's-complement words, mu-law a sign and a level index, codebooks (NF4) an index.

For a scaled format the value is encoded in a block whose largest magnitude is ``amax`` (default
``|x|``: the value is the block's maximum), so its block scale is what the format computes for that
block; the block scale's own code is shown when the format stores one (E8M0, E4M3, FP32).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

import core
from core.formats import FormatSpec
from core.formats.base import RBITS_PREFIX, rbits_of

__all__ = ["Field", "RoundingChoice", "BitLayout", "element_layout", "code_fields", "neighbours", "bit_layout",
           "ROUNDING_REASONS"]

#: what each rounding mode does at a value between two neighbours (the rule, not a second implementation)
ROUNDING_REASONS: dict[str, str] = {
    "nearest": "the nearer neighbour; a tie goes to the even code",
    "nearest_away": "the nearer neighbour; a tie goes away from zero",
    "truncate": "toward zero",
    "up": "toward +inf",
    "down": "toward -inf",
    "odd": "toward zero, then the odd code of the two when inexact",
    "stochastic": "random: upper with probability (x - lower) / (upper - lower)",
    "pseudo_stochastic": "NITI Alg. 3: the dropped bits decide (deterministic)",
}


@dataclass(frozen=True)
class Field:
    """One field of a code: ``name`` (sign, exponent, mantissa, integer, index ...), its ``bits`` as a
    string (most significant first) and their unsigned value."""

    name: str
    bits: str
    value: int


@dataclass(frozen=True)
class RoundingChoice:
    """Where one rounding mode sends the value: ``value`` (from :func:`core.quantize`), ``direction``
    (``exact``, ``lower``, ``upper`` or ``other`` for inf/NaN/saturation) and the ``reason``."""

    mode: str
    value: float
    direction: str
    reason: str
    p_upper: float | None = None


@dataclass(frozen=True)
class BitLayout:
    """A value ``x`` in format ``spec`` (see the module docstring)."""

    spec: str
    x: float
    scale: float
    code: int | None
    width: int
    fields: tuple[Field, ...]
    scale_name: str
    scale_fields: tuple[Field, ...]
    lower: float
    upper: float
    lower_code: int | None
    upper_code: int | None
    roundings: tuple[RoundingChoice, ...]

    @property
    def d_lower(self) -> float:
        """Distance from ``x`` to the lower neighbour."""
        return self.x - self.lower

    @property
    def d_upper(self) -> float:
        """Distance from ``x`` to the upper neighbour."""
        return self.upper - self.x

    @property
    def bit_string(self) -> str:
        """All fields' bits, separated by ``|``."""
        return "|".join(f.bits for f in self.fields if f.bits)


# ------------------------------------------------------------------------------------ layouts
def _element_spec(spec: FormatSpec) -> FormatSpec | None:
    """The element format of a scaled float family (scaled, MX, NVFP4), else None."""
    fam = spec.family
    if fam in ("scaled", "mx"):
        elem = core.parse_format(str(getattr(spec, "elem")))
        return elem if elem.family in ("float", "p3109") else None
    if fam == "nvfp4":
        return core.parse_format("fp4_e2m1")
    return None


def element_layout(spec: FormatSpec | str) -> tuple[tuple[str, int], ...]:
    """(field name, width) of the element code of ``spec``, most significant first.

    >>> element_layout("fp8_e4m3")
    (('sign', 1), ('exponent', 4), ('mantissa', 3))
    """
    f = core.parse_format(spec)
    fam = f.family
    if fam == "float":
        return (("sign", 1), ("exponent", int(getattr(f, "e"))), ("mantissa", int(getattr(f, "m"))))
    if fam == "p3109":
        k, p, signed = int(getattr(f, "k")), int(getattr(f, "p")), bool(getattr(f, "signed"))
        return (("sign", int(signed)), ("exponent", k - p + (0 if signed else 1)), ("mantissa", p - 1))
    if fam == "e8m0":
        return (("sign", 0), ("exponent", 8), ("mantissa", 0))
    if fam == "mls":
        return (("sign", 1), ("exponent", int(getattr(f, "ex"))), ("mantissa", int(getattr(f, "mx"))))
    elem = _element_spec(f)
    if elem is not None:
        return element_layout(elem)
    if fam in ("mulaw", "mu8"):
        return (("sign", 1), ("index", f.bits - 1))
    if fam in ("nf4", "codebook"):
        return (("index", f.bits),)
    if fam == "mx":  # MX with int8 elements
        return (("integer", 8),)
    return (("integer", f.bits),)


def code_fields(spec: FormatSpec | str, code: int) -> tuple[Field, ...]:
    """Split an element ``code`` (as :meth:`encode` returns it) into the fields of :func:`element_layout`.

    Sign-magnitude codes (floats, P3109, MLS) are bit patterns; mu-law codes are signed level indices
    (shown as a sign and ``|code|``); integer codes are two's-complement words of the element width.
    """
    layout = element_layout(spec)
    width = sum(w for _, w in layout)
    names = [n for n, _ in layout]
    if names[:2] == ["sign", "index"]:
        word = (int(code < 0) << (width - 1)) | abs(int(code))
    else:
        word = int(code) & ((1 << width) - 1)
    out = []
    shift = width
    for name, w in layout:
        shift -= w
        v = (word >> shift) & ((1 << w) - 1) if w else 0
        out.append(Field(name, format(v, f"0{w}b") if w else "", v))
    return tuple(out)


# ------------------------------------------------------------------------------------ blocks
def _block(spec: FormatSpec, x: float, amax: float | None) -> torch.Tensor:
    """A float64 tensor holding ``x`` (element 0) in the same scale block as a value of magnitude ``amax``."""
    a = abs(x) if amax is None or amax <= 0 else max(float(amax), abs(x))
    vals = [x, a]
    if spec.family == "scaled" and getattr(spec, "block") == "col":
        return torch.tensor(vals, dtype=torch.float64).reshape(2, 1)
    if spec.family == "mls":
        return torch.tensor(vals, dtype=torch.float64).reshape(1, 1, 2)
    return torch.tensor(vals, dtype=torch.float64).reshape(1, 2)


def _scale_of(spec: FormatSpec, t: torch.Tensor) -> float:
    """The block scale of element 0 of ``t`` (1 for unscaled formats): ``range_for`` = scale * max."""
    if not spec.scaled:
        return 1.0
    big = spec.range_for(t)[0].reshape(-1)
    return float(big[0]) / float(spec.max) if spec.max else 1.0


def _signed_grid(spec: FormatSpec) -> np.ndarray:
    """The sorted finite element values (negative ones mirrored for sign-symmetric formats)."""
    cb = spec.codebook().numpy().astype(np.float64)
    layout = dict(element_layout(spec))
    if layout.get("sign", 1) == 0:
        return np.unique(cb)
    return np.unique(np.concatenate([-cb, cb]))


def _directed(spec: FormatSpec) -> bool:
    return not spec.scaled and {"up", "down"} <= set(spec.roundings)


def neighbours(spec: FormatSpec | str, x: float, amax: float | None = None) -> tuple[float, float]:
    """(largest representable value <= x, smallest representable value >= x) in data units.

    Directed-rounding families take them from :func:`core.quantize` (``down``, ``up``); the others from
    the element codebook times the block scale (see the module docstring for ``amax``).  Beyond the
    largest finite value the neighbour on that side is ``inf`` (or the saturation value that ``up``/``down``
    return).
    """
    f = core.parse_format(spec)
    t = _block(f, float(x), amax)
    if _directed(f):
        lo = float(core.quantize(t, f, rounding="down").reshape(-1)[0])
        hi = float(core.quantize(t, f, rounding="up").reshape(-1)[0])
        return lo, hi
    s = _scale_of(f, t)
    g = _signed_grid(f)
    u = float(x) / s if s else 0.0
    below, above = g[g <= u], g[g >= u]
    lo = float(below[-1]) * s if below.size else -math.inf
    hi = float(above[0]) * s if above.size else math.inf
    return lo, hi


# ------------------------------------------------------------------------------------ codes
def _element_code(spec: FormatSpec, value: float, scale: float) -> int | None:
    """The element code of the representable ``value`` (data units) at block scale ``scale``."""
    if not math.isfinite(value):
        return None
    elem = _element_spec(spec)
    if elem is not None:
        return int(elem.encode(torch.tensor([value / scale], dtype=torch.float64)).codes[0])
    if not spec.scaled:
        try:
            return int(spec.encode(torch.tensor([value], dtype=torch.float64)).codes.reshape(-1)[0])
        except (ValueError, TypeError, NotImplementedError):
            return None
    if element_layout(spec)[0][0] == "integer":
        return int(round(value / scale))
    return None


#: scale entries of :class:`core.formats.Encoded` that hold codes of a named format
_SCALE_CODES = {"e8m0": "float8_e8m0fnu", "e4m3": "fp8_e4m3"}


def _scale_fields(spec: FormatSpec, t: torch.Tensor, scale: float) -> tuple[str, tuple[Field, ...]]:
    """The block scale's name and code fields (E8M0/E4M3 codes as stored, other scales as FP32 bits)."""
    if not spec.scaled:
        return "", ()
    try:
        scales = spec.encode(t.float()).scales
    except (ValueError, TypeError, NotImplementedError):
        scales = {}
    for key, fmt in _SCALE_CODES.items():
        if key in scales:
            code = int(scales[key].reshape(-1)[0])
            return f"block scale ({key.upper()} code, value {scale:.6g})", code_fields(fmt, code)
    word = int(np.array([scale], dtype=np.float32).view(np.uint32)[0])
    return f"block scale (FP32, value {scale:.6g})", code_fields("fp32", word)


# ------------------------------------------------------------------------------------ roundings
def _modes(spec: FormatSpec, rbits: int) -> list[str]:
    out = []
    for m in spec.roundings:
        out.append(f"{RBITS_PREFIX}{rbits}" if m == RBITS_PREFIX else m)
    return out


def _p_upper(mode: str, frac: float) -> float | None:
    if mode == "stochastic":
        return frac
    k = rbits_of(mode)
    if k is not None:  # up iff floor(frac 2^K) + r >= 2^K, r uniform on 0..2^K-1 (core.kernels.modes.mask_word)
        return math.floor(frac * 2**k) / 2**k
    return None


def _reason(mode: str, x: float, lo: float, hi: float, lo_code: int | None, hi_code: int | None,
            p: float | None) -> str:
    if lo == hi:
        return "exact: x is representable" if lo == x else "beyond the largest value"
    dl, du = x - lo, hi - x
    dist = f"x - lower = {dl:.4g}, upper - x = {du:.4g}"
    rule = ROUNDING_REASONS.get(mode, "")
    if mode.startswith(RBITS_PREFIX):
        rule = f"random with {rbits_of(mode)} bits"
    if mode in ("nearest", "nearest_away"):
        if dl == du:
            if mode == "nearest_away":
                rule = "tie: away from zero"
            elif lo_code is not None and hi_code is not None:
                even = "lower" if lo_code % 2 == 0 else "upper"
                rule = f"tie: to the even code ({even}, codes {lo_code} / {hi_code})"
            else:
                rule = "tie: to the even code"
        else:
            rule = "the lower is nearer" if dl < du else "the upper is nearer"
    if mode == "odd" and lo_code is not None and hi_code is not None:
        rule += f" (codes {lo_code} / {hi_code})"
    if p is not None:
        rule += f": P(upper) = {p:.4g}"
    return f"{dist}; {rule}" if rule else dist


def bit_layout(spec: FormatSpec | str, x: float, amax: float | None = None, rbits: int = 8,
               seed: int = 0) -> BitLayout:
    """The bit layout of ``x`` in ``spec``: code fields (of the nearest-rounded value), block scale fields,
    the two neighbours with their codes, and every supported rounding mode's result and reason.

    Args:
        spec: format or spec string.
        x: the value (data units).
        amax: magnitude of the largest element of ``x``'s block (scaled formats; default ``|x|``).
        rbits: ``K`` of the family's ``stochastic_rbits<K>`` mode.
        seed: seed of the stochastic modes' single draw.

    Raises:
        ValueError: bad spec, or ``x`` is not finite.
    """
    f = core.parse_format(spec)
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"x must be a finite number, got {x!r}")
    t = _block(f, x, amax)
    scale = _scale_of(f, t)
    lo, hi = neighbours(f, x, amax)
    enc = f.encode(t.float() if f.scaled else t)
    code = int(enc.codes.reshape(-1)[0])
    fields = code_fields(f, code)
    width = sum(w for _, w in element_layout(f))
    scale_name, scale_fields = _scale_fields(f, t, scale)
    lo_code, hi_code = _element_code(f, lo, scale), _element_code(f, hi, scale)
    frac = (x - lo) / (hi - lo) if hi > lo and math.isfinite(hi - lo) else 0.0
    choices = []
    for mode in _modes(f, rbits):
        try:
            v = float(core.quantize(t, f, rounding=mode, seed=seed).reshape(-1)[0])
        except ValueError:
            continue
        if v == x:
            d = "exact"
        elif v == lo:
            d = "lower"
        elif v == hi:
            d = "upper"
        elif math.isclose(v, lo, rel_tol=1e-6):  # float32 products of scale * element
            d = "lower"
        elif math.isclose(v, hi, rel_tol=1e-6):
            d = "upper"
        else:
            d = "other"
        p = _p_upper(mode, frac) if hi > lo else None
        choices.append(RoundingChoice(mode, v, d, _reason(mode, x, lo, hi, lo_code, hi_code, p), p))
    return BitLayout(str(f), x, scale, code, width, fields, scale_name, scale_fields, lo, hi, lo_code, hi_code,
                     tuple(choices))
