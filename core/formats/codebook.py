"""Lookup-codebook formats: ``codebook(book=NAME,block=,scale=)`` and QLoRA's ``nf4(block=64)``.

A codebook format stores, per element, the index of a codebook entry, and per block of ``block``
consecutive elements of the flattened tensor (C order, as bitsandbytes does; the last block may be
short) one scale: ``absmax / max|entry|`` (``scale=absmax``; ``block=0``: one block for the whole
tensor) or 1 (``scale=none``).  Quantization is round to nearest entry; a value exactly halfway between
two entries takes the lower entry (toward -inf), as bitsandbytes' ``dQuantizeNF4`` decision tree
(``x > midpoint``) does.  NaN stays NaN (``encode`` refuses it); +-inf map to the end entries.

Codebooks are *named* (the ``key=value`` grammar holds no lists): :data:`CODEBOOKS` holds them,
:func:`register_codebook` adds one, and :func:`codebook_format` builds a format from a list of values
(registered under a content-derived name, so ``str(spec)`` still round-trips in the process).

NF4 (QLoRA paper, Dettmers et al. 2023, section 3 "4-bit NormalFloat Quantization" and appendix E; the
16 values are bitsandbytes' table ``NF4`` / ``dDequantizeNF4``): absmax scaling in blocks of 64.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .base import Encoded, FormatSpec, check_input, check_rounding
from .dispatch import choose_backend, group_absmax, to_dtype
from .registry import check_choice, check_range, register_family

__all__ = ["CODEBOOKS", "CodebookFormat", "NF4Format", "NF4_VALUES", "register_codebook", "codebook_format"]

#: QLoRA NF4 (bitsandbytes ``functional.py`` / ``dDequantizeNF4``), float32 constants, code order
NF4_VALUES: tuple[float, ...] = (
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0,
)

#: codebook name -> sorted distinct float64 entries (code = index)
CODEBOOKS: dict[str, tuple[float, ...]] = {}
SCALES = ("absmax", "none")
MAX_ENTRIES = 256


def register_codebook(name: str, values) -> str:
    """Register sorted distinct finite ``values`` (2..256 entries) under ``name``; returns the name.

    Raises ``ValueError`` for a bad name, unsorted/duplicate/non-finite values, or a name already
    holding other values."""
    import re

    if not isinstance(name, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
        raise ValueError(f"codebook name {name!r} must be an identifier (letters, digits, _)")
    vals = tuple(float(v) for v in values)
    if not 2 <= len(vals) <= MAX_ENTRIES:
        raise ValueError(f"a codebook has 2..{MAX_ENTRIES} entries, got {len(vals)}")
    if not all(math.isfinite(v) for v in vals):
        raise ValueError("codebook values must be finite")
    if any(b <= a for a, b in zip(vals, vals[1:])):
        raise ValueError("codebook values must be sorted ascending and distinct")
    if max(abs(v) for v in vals) == 0:
        raise ValueError("a codebook needs a non-zero entry")
    old = CODEBOOKS.get(name)
    if old is not None and old != vals:
        raise ValueError(f"codebook {name!r} is already registered with other values")
    CODEBOOKS[name] = vals
    return name


register_codebook("nf4", NF4_VALUES)
#: the FP4 E2M1 values (OCP MX v1.0 section 5.3.3) as a codebook (NVFP4-like without scale rounding)
register_codebook("fp4_e2m1", (-6.0, -4.0, -3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0))


@register_family
@dataclass(frozen=True)
class CodebookFormat(FormatSpec):
    """Index into a named codebook, with per-block absmax scales (see the module docstring).

    Args:
        book: name of a registered codebook (:data:`CODEBOOKS`).
        block: elements per scale block of the flattened tensor (0: the whole tensor).
        scale: ``absmax`` (``s = absmax / max|entry|``) or ``none`` (``s = 1``).
    """

    family = "codebook"
    roundings = ("nearest",)

    book: str = field(default="nf4", metadata={"doc": "registered codebook name"})
    block: int = field(default=64, metadata={"range": (0, 1 << 24), "doc": "elements per scale block (0: tensor)"})
    scale: str = field(default="absmax", metadata={"choices": SCALES, "doc": "block scale"})

    def __post_init__(self) -> None:
        if self.book not in CODEBOOKS:
            raise ValueError(f"{self.family}: unknown codebook {self.book!r}; valid: {', '.join(sorted(CODEBOOKS))}")
        check_range(self.family, "block", self.block, 0, 1 << 24)
        check_choice(self.family, "scale", self.scale, SCALES)

    # ---------------------------------------------------------- numbers
    @property
    def values(self) -> np.ndarray:
        """The entries (float64, ascending; code = index)."""
        return np.array(CODEBOOKS[self.book], dtype=np.float64)

    @property
    def midpoints(self) -> np.ndarray:
        v = self.values
        return (v[:-1] + v[1:]) / 2  # exact: halving a float64 sum of two float32-sized values

    @property
    def bits(self) -> int:
        return max(1, math.ceil(math.log2(len(CODEBOOKS[self.book]))))

    @property
    def scaled(self) -> bool:
        return self.scale != "none"

    @property
    def max(self) -> float:
        return float(np.abs(self.values).max())

    @property
    def smallest_subnormal(self) -> float:
        a = np.abs(self.values)
        return float(a[a > 0].min())

    @property
    def tiny(self) -> float:
        return self.smallest_subnormal

    def _book_max(self) -> float:
        return self.max

    # -------------------------------------------------------------- scales
    def scales(self, x: torch.Tensor, backend: str = "auto") -> tuple[torch.Tensor, int]:
        """(float64 per-block scales, block length) of ``x`` (flattened in C order)."""
        n = x.numel()
        block = self.block if self.block > 0 else max(n, 1)
        nb = (n + block - 1) // block
        if self.scale == "none":
            return torch.ones(nb, dtype=torch.float64, device=x.device), block
        flat = x.detach().reshape(-1)
        pad = nb * block - n
        if pad:
            flat = torch.nn.functional.pad(flat, (0, pad))
        amax = group_absmax(flat.reshape(nb, 1, block), backend).reshape(nb)
        return amax / self._book_max(), block

    # ------------------------------------------------------------ behaviour
    def _codes_values(self, x: torch.Tensor, backend: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(codes, values, scales) of flat ``x``: the one quantizer behind quantize/encode (values in
        float64, or float32 for float32 input on the Numba path: the same float64 product rounded once
        by ``to_dtype``)."""
        which = choose_backend(x, backend)
        s, block = self.scales(x, backend)
        flat = x.detach().reshape(-1)
        if which == "numba":
            from ..kernels.codebook import codebook_quantize

            xn = flat.numpy() if flat.dtype in (torch.float32, torch.float64) else flat.to(torch.float64).numpy()
            xn = np.ascontiguousarray(xn)
            codes = np.empty(xn.size, dtype=np.uint8)
            out = np.empty(xn.size, dtype=xn.dtype)  # float32 in, float32 out: the product rounded once
            codebook_quantize(xn, np.ascontiguousarray(s.numpy()), block, self.midpoints, self.values, codes, out)
            return torch.from_numpy(codes), torch.from_numpy(out), s
        if which == "cuda":
            from numba import cuda

            from ..kernels.grid_round_cuda import codebook_quantize_cuda

            xin = flat if flat.dtype in (torch.float32, torch.float64) else flat.to(torch.float64)
            xin = xin.contiguous()
            codes_t = torch.empty(xin.numel(), dtype=torch.int64, device=xin.device)
            out_t = torch.empty(xin.numel(), dtype=torch.float64, device=xin.device)
            sd = s.to(device=xin.device, dtype=torch.float64).contiguous()
            codebook_quantize_cuda(cuda.as_cuda_array(xin), cuda.as_cuda_array(sd), block, self.midpoints,
                                   self.values, cuda.as_cuda_array(codes_t), cuda.as_cuda_array(out_t))
            return codes_t, out_t, s
        codes_r, out_r = self._reference(flat, s, block)
        return codes_r, out_r, s

    def _reference(self, flat: torch.Tensor, s: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Plain-PyTorch reference: ``code = #(midpoints < x / s)`` (``torch.bucketize``, right=False)."""
        v = flat.to(torch.float64)
        idx = torch.arange(v.numel(), device=v.device) // block
        se = s.to(device=v.device, dtype=torch.float64)[idx]
        a = torch.where(se != 0, v / torch.where(se != 0, se, torch.ones_like(se)), torch.zeros_like(v))
        mids = torch.from_numpy(self.midpoints).to(v.device)
        codes = torch.bucketize(a, mids, right=False)
        nan = torch.isnan(v)
        codes = torch.where(nan, torch.zeros_like(codes), codes)
        out = torch.from_numpy(self.values).to(v.device)[codes] * se
        return codes, torch.where(nan, v, out)

    def quantize(self, x, rounding="nearest", seed=None, backend="auto"):
        check_input(x)
        check_rounding(self, rounding)
        _, out, _ = self._codes_values(x, backend)
        return to_dtype(out.reshape(x.shape), x.dtype)

    def encode(self, x, rounding="nearest", seed=None) -> Encoded:
        check_input(x)
        check_rounding(self, rounding)
        if torch.isnan(x).any():
            raise ValueError(f"{self} has no NaN encoding; the input contains NaN")
        codes, _, s = self._codes_values(x, "auto")
        return Encoded(self, codes.reshape(x.shape).to(torch.uint8), {"block": s}, x.dtype)

    def decode(self, q: Encoded) -> torch.Tensor:
        codes = q.codes.to(torch.int64).reshape(-1)
        s = q.scales["block"].to(device=codes.device, dtype=torch.float64)
        nb = s.numel()
        block = (codes.numel() + nb - 1) // nb if nb else 1
        if self.block > 0:
            block = self.block
        se = s[torch.arange(codes.numel(), device=codes.device) // max(block, 1)]
        v = torch.from_numpy(self.values).to(codes.device)[codes] * se
        return to_dtype(v.reshape(q.codes.shape), q.dtype)

    def storage_bits(self, q: Encoded) -> int:
        """Codes at :attr:`bits` each, plus one float32 scale per block (bitsandbytes' absmax)."""
        nscales = 0 if self.scale == "none" else q.scales["block"].numel()
        return q.codes.numel() * self.bits + 32 * nscales

    def codebook(self) -> torch.Tensor:
        """The non-negative entries (the element values, in units of the block scale)."""
        v = self.values
        return torch.from_numpy(v[v >= 0].copy())

    def finite_count(self) -> int:
        return len(CODEBOOKS[self.book])

    def code_step(self, x: torch.Tensor) -> torch.Tensor:
        """Gap between the two entries around each element (in x's units, scales applied)."""
        s, block = self.scales(x)
        flat = x.detach().reshape(-1).to(torch.float64)
        se = s[torch.arange(flat.numel()) // block]
        vals = torch.from_numpy(self.values)
        a = torch.where(se != 0, flat / torch.where(se != 0, se, torch.ones_like(se)), torch.zeros_like(flat))
        hi = torch.bucketize(a, vals).clamp(1, vals.numel() - 1)
        return ((vals[hi] - vals[hi - 1]) * se).reshape(x.shape)

    def range_for(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, block = self.scales(x)
        se = s[torch.arange(x.numel()) // block].reshape(x.shape)
        return se * self.max, se * self.smallest_subnormal


@register_family
@dataclass(frozen=True)
class NF4Format(CodebookFormat):
    """QLoRA's 4-bit NormalFloat: the ``nf4`` codebook with absmax scales per ``block`` elements
    (QLoRA paper section 3; block 64 as in the paper and bitsandbytes' default)."""

    family = "nf4"

    book: str = field(default="nf4", init=False, metadata={"doc": "the NF4 table"})
    block: int = field(default=64, metadata={"range": (0, 1 << 24), "doc": "elements per absmax block"})
    scale: str = field(default="absmax", init=False, metadata={"doc": "absmax"})


def codebook_format(values, block: int = 64, scale: str = "absmax",
                    name: str | None = None) -> CodebookFormat:
    """A :class:`CodebookFormat` for a list of sorted distinct ``values`` (registered under ``name``, or
    ``cb_<hash>`` of the values, so that ``str(spec)`` parses back in this process)."""
    vals = tuple(float(v) for v in values)
    if name is None:
        name = "cb_" + hashlib.sha1(np.array(vals, dtype=np.float64).tobytes()).hexdigest()[:10]
    register_codebook(name, vals)
    return CodebookFormat(book=name, block=block, scale=scale)
