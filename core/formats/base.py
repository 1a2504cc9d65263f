"""The format protocol: every number format is a frozen dataclass spec.

A spec knows its own short-string form (``str(spec)`` round-trips through
:func:`core.formats.parse_format`), its element grid, how it computes scales,
which rounding modes it supports, and how to encode/decode codes.  The
arithmetic itself lives in :mod:`core.formats.grid` (reference, plain PyTorch)
and :mod:`core.kernels` (Numba).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch

__all__ = [
    "ROUNDING_MODES",
    "GRID_ROUNDINGS",
    "rounding_family",
    "rbits_of",
    "is_stochastic",
    "RBITS_PREFIX",
    "FormatSpec",
    "Encoded",
    "check_rounding",
    "check_input",
    "FAMILIES",
    "ALIASES",
    "family_fields",
    "format_spec_string",
]

#: Rounding modes understood by :func:`core.quantize`.
#: ``nearest`` ties to even (on the code), ``stochastic`` rounds up with probability equal to
#: the fraction of the gap (unbiased, reproducible with ``seed``),
#: ``pseudo_stochastic`` is NITI Alg. 3 (NITI paper, section 3.4), ``truncate``
#: rounds the magnitude toward zero (IEEE roundTowardZero: never overflows to inf/NaN),
#: ``up``/``down`` toward +inf/-inf, ``nearest_away`` ties away from zero (IEEE 754-2019 section 4.3),
#: ``odd`` rounds to odd (truncate, last code bit set when inexact).  Besides these names the parametric
#: ``stochastic_rbits<K>`` (``K`` = 1..31) is stochastic rounding with ``K`` random bits
#: (:func:`core.kernels.modes.mask_word`); a family lists it as ``"stochastic_rbits"`` in ``roundings``.
ROUNDING_MODES: tuple[str, ...] = ("nearest", "stochastic", "pseudo_stochastic", "truncate", "up", "down",
                                   "nearest_away", "odd")
RBITS_PREFIX = "stochastic_rbits"
RBITS_MIN, RBITS_MAX = 1, 31
_RBITS_RE = re.compile(r"^stochastic_rbits(\d+)$")
#: the modes of the elementwise grid kernels (``core.kernels.grid_round``): what float-like families support
GRID_ROUNDINGS: tuple[str, ...] = ("nearest", "stochastic", "truncate", "up", "down", "nearest_away", "odd",
                                   RBITS_PREFIX)


def rbits_of(rounding: str) -> int | None:
    """``K`` of ``stochastic_rbits<K>`` (``ValueError`` outside 1..31), ``None`` for other names."""
    m = _RBITS_RE.match(rounding)
    if m is None:
        return None
    k = int(m.group(1))
    if not RBITS_MIN <= k <= RBITS_MAX:
        raise ValueError(f"rounding {rounding!r}: the number of random bits must be {RBITS_MIN}..{RBITS_MAX} "
                         f"(32 random bits is rounding='stochastic')")
    return k


def is_stochastic(rounding: str) -> bool:
    """Whether a grid mode draws random words (``stochastic``, ``stochastic_rbits<K>``)."""
    return rounding == "stochastic" or rounding.startswith(RBITS_PREFIX)


def rounding_family(rounding: str) -> str:
    """The name a family lists in ``roundings`` for ``rounding``: the mode itself, or
    ``"stochastic_rbits"`` for ``stochastic_rbits<K>``; ``ValueError`` naming the valid modes otherwise."""
    if not isinstance(rounding, str):
        raise ValueError(f"a rounding mode is a string, got {type(rounding).__name__}; "
                         f"valid modes: {', '.join(ROUNDING_MODES)}, {RBITS_PREFIX}<K>")
    if rounding in ROUNDING_MODES:
        return rounding
    if rbits_of(rounding) is not None:  # raises for K out of range
        return RBITS_PREFIX
    raise ValueError(
        f"unknown rounding mode {rounding!r}; valid modes: {', '.join(ROUNDING_MODES)}, "
        f"{RBITS_PREFIX}<K> (K = {RBITS_MIN}..{RBITS_MAX} random bits)"
    )


def check_rounding(spec: "FormatSpec", rounding: str) -> str:
    """Validate ``rounding`` for ``spec``; raise ``ValueError`` naming the valid modes."""
    if rounding_family(rounding) not in spec.roundings:
        raise ValueError(
            f"format {spec} does not support rounding={rounding!r}; "
            f"it supports: {', '.join(spec.roundings)}"
        )
    return rounding


def _quantize_with(spec: "FormatSpec", rounding: str, x: torch.Tensor, seed: "int | None" = None) -> torch.Tensor:
    return spec.quantize(x, rounding, seed)


def check_input(x: Any) -> torch.Tensor:
    """Reject non-tensors and non-floating tensors with a ``TypeError``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"quantization needs a floating-point tensor, got dtype {x.dtype}; "
            "convert it first, e.g. x.float()"
        )
    return x


@dataclass(frozen=True)
class Encoded:
    """Integer codes plus the scales needed to decode them.

    Attributes:
        spec: the format the codes belong to.
        codes: integer tensor with the shape of the input; the meaning is
            family-specific (bit patterns for floats, signed integers for
            integer formats, sign-magnitude element codes for MLS).
        scales: named scale tensors (e.g. ``{"tensor": St, "group": Sg}``).
        dtype: dtype of the tensor that was encoded; ``decode`` returns it.
    """

    spec: "FormatSpec"
    codes: torch.Tensor
    scales: dict[str, torch.Tensor] = field(default_factory=dict)
    dtype: torch.dtype = torch.float32

    @property
    def shape(self) -> torch.Size:
        return self.codes.shape

    def storage_bits(self) -> int:
        """Bits to store the codes and the scales (scales counted at their format's width)."""
        return self.spec.storage_bits(self)


@dataclass(frozen=True)
class FormatSpec:
    """Base class of all format specs (frozen dataclasses).

    Subclasses set ``family`` (the short name used in spec strings) and
    implement :meth:`quantize_reference`, :meth:`encode`, :meth:`decode`,
    :meth:`codebook` and the derived properties.  Field order is the order in
    which keys are printed in ``str(spec)``.
    """

    family: ClassVar[str] = ""
    #: rounding modes this family implements
    roundings: ClassVar[tuple[str, ...]] = ("nearest", "stochastic", "truncate")

    # ----------------------------------------------------------------- text
    def __str__(self) -> str:
        return format_spec_string(self)

    def params(self) -> dict[str, Any]:
        """The spec's fields as a plain dict (what the dashboards bind widgets to)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> "FormatSpec":
        """A copy with some fields changed (validated like a new spec)."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------ derived numbers
    @property
    def bits(self) -> int:
        """Storage bits per element (sign included; shared scales not counted)."""
        raise NotImplementedError

    @property
    def max(self) -> float:
        """Largest finite representable magnitude (in units of the scale for scaled formats)."""
        raise NotImplementedError

    @property
    def tiny(self) -> float:
        """Smallest positive normal magnitude (``np.finfo.tiny`` analogue)."""
        raise NotImplementedError

    @property
    def smallest_subnormal(self) -> float:
        """Smallest positive representable magnitude."""
        raise NotImplementedError

    @property
    def scaled(self) -> bool:
        """True when values carry data-dependent scales (MLS, MX, int, ...)."""
        return False

    # ------------------------------------------------------------ behaviour
    def quantize(
        self, x: torch.Tensor, rounding: str = "nearest", seed: int | None = None,
        backend: str = "auto",
    ) -> torch.Tensor:
        raise NotImplementedError

    def quantizer(self, rounding: str = "nearest") -> Callable[[torch.Tensor, "int | None"], torch.Tensor]:
        """``f(x, seed)``: :meth:`quantize` with this rounding, the mode checked once (for callers
        that quantize many tensors, like the training loop); families may hoist more per-call work."""
        check_rounding(self, rounding)
        return functools.partial(_quantize_with, self, rounding)

    def encode(self, x: torch.Tensor, rounding: str = "nearest", seed: int | None = None) -> Encoded:
        raise NotImplementedError

    def decode(self, q: Encoded) -> torch.Tensor:
        raise NotImplementedError

    def codebook(self) -> torch.Tensor:
        """Sorted float64 tensor of all finite non-negative representable values
        (element values, in units of the scale, for scaled formats)."""
        raise NotImplementedError

    def code_step(self, x: torch.Tensor) -> torch.Tensor:
        """Spacing of the format's grid at each element of ``x`` (float64, in x's units)."""
        raise NotImplementedError

    def finite_count(self) -> int:
        """Number of distinct finite values (element values for scaled formats): the non-negative
        :meth:`codebook` mirrored for sign-symmetric formats (unsigned and asymmetric ones override)."""
        return 2 * (len(self.codebook()) - 1) + 1

    def storage_bits(self, q: Encoded) -> int:
        return q.codes.numel() * self.bits

    # Helpers for metrics: the representable range for values of ``x``.
    def range_for(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-element (largest, smallest positive) representable magnitude for ``x``.

        For unscaled formats these are constants; scaled formats return the
        tensor of scale * max and scale * smallest_subnormal for each element.
        """
        big = torch.full_like(x, self.max, dtype=torch.float64)
        small = torch.full_like(x, self.smallest_subnormal, dtype=torch.float64)
        return big, small


# ------------------------------------------------------------------ names
# The tables of the registry (filled by ``core.formats.registry.register_family``/``register_alias``) and
# the canonical spec string: here, below the registry, so that FormatSpec.__str__ needs no import of it.

#: family name -> spec class
FAMILIES: dict[str, type[FormatSpec]] = {}
#: alias name -> spec instance
ALIASES: dict[str, FormatSpec] = {}


def family_fields(cls: type[FormatSpec]) -> list[dataclasses.Field]:
    """The parameter fields of a family, in spec-string order."""
    return [f for f in dataclasses.fields(cls) if f.init]


def _fmt_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def format_spec_string(spec: FormatSpec) -> str:
    """Canonical string of ``spec``: its alias if it has one, else ``family(k=v,...)``."""
    for name, aliased in ALIASES.items():
        if aliased == spec and type(aliased) is type(spec):
            return name
    parts = [f"{f.name}={_fmt_value(getattr(spec, f.name))}" for f in family_fields(type(spec))]
    return f"{spec.family}({','.join(parts)})"
