"""Scaled formats by composition: ``scaled(elem=,block=,axis=,scale=)`` and ``nvfp4(tensor_scale=)``.

``scaled``: any element float format (a registered alias: ``fp8_e4m3``, ``fp8_e5m2``,
``fp4_e2m1``, ``bf16`` ...) times a data-dependent scale per group, the recipe of per-tensor
FP8 training (NVIDIA TransformerEngine ``Float8CurrentScaling``; torchao
``float8_scaling_utils``: ``scale = max_elem / amax``, here its inverse ``s = amax / max_elem``
so that ``y = s * round(x / s)``), of row-/column-wise FP8 and of DeepSeek-V3-style 128x128 tiles.

Granularity (``block``):

* ``tensor`` (default): one scale;
* ``row``: one per index of dim 0 (amax over the rest), ``col``: one per index of dim 1
  (amax over every other dim; the ``n``/``c`` of MLS and ``int(scale=channel)``);
* ``N`` (an integer): 1-D blocks of N consecutive elements along ``axis`` (default the last);
  the last block of a row may be partial (never padded);
* ``RxC``: 2-D tiles of R rows x C columns over the last two dims (partial tiles at the edges).

Scale format (``scale``), from the group's finite amax and the element max ``M``:

* ``fp32``: ``fp32(amax / M)`` (within ``[2^-149, FLT_MAX]``);
* ``pow2``: ``2^ceil(log2(amax / M))`` (the smallest power of two with ``M 2^e >= amax``, so no
  element overflows; e in [-1022, 1023]);
* ``e8m0``: the same exponent in the E8M0 range [-127, 127] (OCP MX v1.0 section 5.4 scale
  type, with the rceil rule of NVIDIA's MXFP8 recipe);
* ``e4m3``: UE4M3 (positive E4M3), ``e4m3(clamp(fp32(amax / M), 2^-6, 448))`` round-to-nearest-even,
  as torchao's ``nvfp4_quantize`` (the clamp is its ``E4M3_EPS = finfo(float8_e4m3fn).tiny``).

Elements ``x / s`` are rounded onto the element grid (nearest-even, stochastic with the
project's counter-based words by flat index, or truncate) and saturated at ``M``.

``nvfp4`` (NVIDIA NVFP4; TransformerEngine's NVFP4 recipe, torchao ``NVFP4Tensor``): FP4 E2M1
elements in 16-element blocks along the last axis with UE4M3 block scales and an FP32 tensor scale
``St = amax / (448 * 6)`` (two-level): block scale ``sb = e4m3(clamp(fp32(fp32(amax_b / 6) / St),
2^-6, 448))``, elements ``x / (St * sb)``, decoded ``e2m1 * sb * St``. ``nvfp4(tensor_scale=false)``
is single-level (``St = 1``), the same as ``scaled(elem=fp4_e2m1,block=16,scale=e4m3)``.

Special values (the policy of OCP MX v1.0 section 6.3 and its reference implementation
microxcaling, applied to every group): a group containing inf or NaN gets a NaN scale
(E8M0 code 0xFF, E4M3 code 0x7F, fp32 NaN) and decodes entirely to NaN; a group of zeros gets
scale 1 (fp32, pow2), ``2^-127`` (e8m0) or ``2^-6`` (e4m3) and decodes to zeros.  The NVFP4 tensor
amax is over the finite values (one inf poisons its block, not the tensor); a tensor without a
finite non-zero value has ``St = 1``.

:func:`quantize_with_scale` is the precomputed-scale entry for delayed scaling (TransformerEngine
``DelayedScaling``: the scale from an amax history), :func:`scale_from_amax` the family's scale rule
for a given amax.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field

import numpy as np
import torch

from .base import ALIASES, GRID_ROUNDINGS, Encoded, FormatSpec, check_input, check_rounding, is_stochastic
from .dispatch import mode_code, quantize_blocked, quantize_blocked_reference, to_dtype
from .floats import FloatFormat
from .grid import ElementGrid, grid_quantum_exponent, kernel_seed, resolve_seed
from .registry import check_choice, check_range, register_family

__all__ = ["ScaledTensorFormat", "NVFP4Format", "quantize_with_scale", "scale_from_amax", "SCALE_FORMATS",
           "tile_layout"]

SCALE_FORMATS = ("fp32", "pow2", "e8m0", "e4m3")
_SCALE_KIND = {"fp32": 0, "pow2": 1, "e8m0": 2, "e4m3": 3}
_BLOCK_PATTERN = r"tensor|row|col|\d+|\d+x\d+"
_MAX_BLOCK = 1 << 20
_F32_TINY = 2.0**-149
_F32_MAX = float(np.finfo(np.float32).max)


_ELEMENT_API = ("grid", "overflow_value", "inf_value", "codes_of", "decode", "bits", "max")


def _is_element(f: object) -> bool:
    """An unscaled float-like format: a grid, overflow/inf rules and bit-pattern codes (FloatFormat,
    P3109 ...)."""
    return isinstance(f, FormatSpec) and not f.scaled and all(hasattr(f, a) for a in _ELEMENT_API)


@functools.lru_cache(maxsize=None)
def _has_negative_zero(f: FormatSpec) -> bool:
    """Whether the element format keeps -0 (FloatFormat does; P3109 and FNUZ formats have one zero)."""
    return bool(torch.signbit(f.quantize(torch.tensor([-0.0]), "nearest", None, "reference"))[0])


def _element(elem: str, family: str) -> FloatFormat:
    """The element format of an alias (typed as FloatFormat: the API of :data:`_ELEMENT_API`)."""
    f = ALIASES.get(elem)
    if not _is_element(f):
        valid = sorted(k for k, v in ALIASES.items() if _is_element(v))
        raise ValueError(f"{family}: elem={elem!r} is not an element float format; valid: {', '.join(valid)}")
    return f  # type: ignore[return-value]


def tile_layout(shape: tuple[int, ...], block: str, axis: int = -1) -> tuple[int, int, int, int, int]:
    """``(P, H, W, tr, tc)``: the tensor as ``P`` matrices of ``H x W`` (C order) and the group tile
    ``tr x tc`` of granularity ``block`` (see the module docstring)."""
    shape = tuple(shape) if len(shape) else (1,)
    n = math.prod(shape)
    if block == "tensor":
        return 1, 1, n, 1, max(n, 1)
    if block == "row":
        rest = math.prod(shape[1:])
        return 1, shape[0], rest, 1, max(rest, 1)
    if block == "col":
        d0 = shape[0]
        d1 = shape[1] if len(shape) >= 2 else 1
        rest = math.prod(shape[2:])
        return 1, d0, d1 * rest, max(d0, 1), max(rest, 1)
    if "x" in block:
        r, c = (int(v) for v in block.split("x"))
        if len(shape) == 1:
            return 1, 1, shape[0], r, c
        return math.prod(shape[:-2]), shape[-2], shape[-1], r, c
    nb = int(block)
    if not -len(shape) <= axis < len(shape):
        raise ValueError(f"axis={axis} is out of range for a {len(shape)}-d tensor")
    ax = axis % len(shape)
    if ax == len(shape) - 1:
        return 1, n // shape[-1] if shape[-1] else 0, shape[-1], 1, nb
    return math.prod(shape[:ax]), shape[ax], math.prod(shape[ax + 1:]), nb, 1


def _tile_index(P: int, H: int, W: int, tr: int, tc: int, device: torch.device) -> torch.Tensor:
    """Flat tile index of every element of the (P, H, W) view (int64, reference path only)."""
    nbh, nbw = -(-H // tr), -(-W // tc)
    p = torch.arange(P, device=device).view(P, 1, 1) * (nbh * nbw)
    i = (torch.arange(H, device=device) // tr).view(1, H, 1) * nbw
    j = (torch.arange(W, device=device) // tc).view(1, 1, W)
    return (p + i + j).reshape(-1)


def _f32(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float32).to(torch.float64)


def _ceil_pow2_exponent(amax: torch.Tensor, maxval: float) -> torch.Tensor:
    """Smallest e with ``maxval 2^e >= amax`` (amax > 0; products exact)."""
    _, e = torch.frexp(amax / maxval)
    e = e.to(torch.int64) - 1
    one = torch.ones_like(amax)
    e = torch.where(maxval * torch.ldexp(one, e.to(torch.float64)) < amax, e + 1, e)
    return torch.where(maxval * torch.ldexp(one, (e - 1).to(torch.float64)) >= amax, e - 1, e)


def tile_scale_reference(amax: torch.Tensor, scale: str, maxval: float, st: float = 1.0) -> torch.Tensor:
    """float64 element scales from group amaxes (``inf``: a non-finite group -> NaN); the rules of
    :func:`core.kernels.scaled_tiles.tile_scale`, in torch."""
    a = amax.to(torch.float64)
    bad = ~torch.isfinite(a)
    zero = a == 0
    safe = torch.where(bad | zero, torch.ones_like(a), a)
    if scale == "fp32":
        s = _f32(safe / maxval).clamp(_F32_TINY, _F32_MAX)
        s = torch.where(zero, torch.ones_like(s), s)
    elif scale in ("pow2", "e8m0"):
        lo, hi = (-1022, 1023) if scale == "pow2" else (-127, 127)
        e = _ceil_pow2_exponent(safe, maxval).clamp(lo, hi)
        e = torch.where(zero, torch.full_like(e, 0 if scale == "pow2" else -127), e)
        s = torch.ldexp(torch.ones_like(a), e.to(torch.float64))
    else:
        r = _f32(_f32(torch.where(zero, torch.zeros_like(a), safe) / maxval) / st).clamp(2.0**-6, 448.0)
        s = st * r.to(torch.float32).to(torch.float8_e4m3fn).to(torch.float64)
    return torch.where(bad, torch.full_like(s, math.nan), s)


class _TiledScaledFormat(FormatSpec):
    """Shared machinery: an element float format, a tiling and a scale rule (module docstring)."""

    # set by subclasses
    def _elem(self) -> FloatFormat:
        raise NotImplementedError

    def _layout(self, shape: tuple[int, ...]) -> tuple[int, int, int, int, int]:
        raise NotImplementedError

    _scale_format = "fp32"
    _two_level = False
    #: every grid rounding (core.kernels.scaled_tiles and the reference implement them all)
    roundings = GRID_ROUNDINGS

    @property
    def scaled(self) -> bool:
        return True

    @property
    def bits(self) -> int:
        return self._elem().bits

    @property
    def max(self) -> float:
        return self._elem().max

    @property
    def tiny(self) -> float:
        return self._elem().tiny

    @property
    def smallest_subnormal(self) -> float:
        return self._elem().smallest_subnormal

    @property
    def element_grid(self) -> ElementGrid:
        return self._elem().grid

    def codebook(self) -> torch.Tensor:
        return self._elem().codebook()

    # ---------------------------------------------------------------- scales
    def _tensor_scale(self, amax_t: float) -> float:
        """FP32 second-level scale ``fp32(amax_t / (448 M))`` (1 without a finite non-zero value)."""
        if not self._two_level or not amax_t > 0 or not math.isfinite(amax_t):
            return 1.0
        return float(min(max(float(np.float32(amax_t / (448.0 * self.max))), _F32_TINY), _F32_MAX))

    def _reference_scales(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(tile scales (P, nbh, nbw) float64, flat tile index per element, St): the torch reference."""
        P, H, W, tr, tc = self._layout(tuple(x.shape))
        v = x.detach().reshape(-1).to(torch.float64).abs()
        idx = _tile_index(P, H, W, tr, tc, v.device)
        nt = P * -(-H // tr) * -(-W // tc)
        a = torch.where(torch.isfinite(v), v, torch.full_like(v, math.inf))
        amax = torch.zeros(nt, dtype=torch.float64, device=v.device).scatter_reduce(0, idx, a, "amax")
        finite = v[torch.isfinite(v)]
        st = self._tensor_scale(float(finite.max()) if finite.numel() else 0.0)
        s = tile_scale_reference(amax, self._scale_format, self.max, st)
        return s.reshape(P, -(-H // tr), -(-W // tc)), idx, st

    def group_scales(self, x: torch.Tensor) -> torch.Tensor:
        """The float64 element scale of every group, shape ``(P, ceil(H/tr), ceil(W/tc))`` of
        :func:`tile_layout` (NaN for a group holding inf/NaN)."""
        check_input(x)
        return self._reference_scales(x)[0]

    # ------------------------------------------------------------- quantize
    def _kernel_ok(self, x: torch.Tensor, backend: str) -> bool:
        if backend not in ("auto", "numba", "reference", "cuda"):
            raise ValueError(f"unknown backend {backend!r}; valid: auto, numba, reference, cuda")
        if backend == "numba" and x.device.type != "cpu":
            raise ValueError(f"backend 'numba' runs on CPU tensors; got a {x.device.type} tensor")
        g = self.element_grid  # the kernels' branch-free lanes need m <= 51, emin - m >= -1000, max < 2^1000
        lanes_ok = g.m <= 51 and g.emin - g.m >= -1000 and g.maxval < 2.0**1000
        return backend in ("auto", "numba") and x.device.type == "cpu" and x.numel() > 0 and lanes_ok

    def quantize(self, x, rounding="nearest", seed=None, backend="auto"):
        check_input(x)
        check_rounding(self, rounding)
        if x.numel() == 0:
            return x.detach().clone()
        if self._kernel_ok(x, backend):
            y = self._quantize_numba(x, rounding, seed)[0]
        elif x.device.type == "cuda" and backend in ("auto", "cuda"):
            y = self._quantize_cuda(x, rounding, seed)
        elif backend == "cuda":
            raise ValueError(f"backend 'cuda' needs a CUDA tensor, got a {x.device.type} tensor "
                             "(move it with x.cuda(); no silent fallback)")
        else:
            y = self._quantize_reference(x, rounding, seed)[0]
        if not _has_negative_zero(self._elem()):  # P3109/FNUZ elements: one zero, +0 (as their own quantize)
            y = torch.where(y == 0, torch.zeros_like(y), y)
        return y

    def _quantize_cuda(self, x: torch.Tensor, rounding: str, seed: int | None) -> torch.Tensor:
        """Scales by the torch reference on the device, elements by the CUDA twin of the rounding kernel."""
        from numba import cuda

        from ..kernels.grid_round_cuda import cuda_available
        from ..kernels.scaled_tiles_cuda import round_tiles_cuda

        if not cuda_available():
            raise RuntimeError("a CUDA tensor was given but numba.cuda finds no usable GPU/driver")
        s, _, _ = self._reference_scales(x)
        xin = x.detach()
        if xin.dtype not in (torch.float32, torch.float64):
            xin = xin.to(torch.float32)
        xin = xin.contiguous().reshape(-1)
        out = torch.empty(xin.shape, dtype=xin.dtype if x.dtype in (torch.float32, torch.float64) else torch.float64,
                          device=x.device)
        P, H, W, tr, tc = self._layout(tuple(x.shape))
        g = self.element_grid
        seed_ = kernel_seed(resolve_seed(seed)) if is_stochastic(rounding) else 0
        round_tiles_cuda(cuda.as_cuda_array(xin), cuda.as_cuda_array(out), P, H, W, tr, tc,
                         cuda.as_cuda_array(s.contiguous()), g.m, g.emin, g.subnormals, g.maxval,
                         mode_code(rounding), seed_)
        return to_dtype(out.reshape(x.shape), x.dtype)

    def _quantize_numba(self, x: torch.Tensor, rounding: str, seed: int | None):
        from ..kernels.grid_round import group_absmax_rows
        from ..kernels.scaled_tiles import quantize_tiles

        xc = x.detach()
        if xc.dtype not in (torch.float32, torch.float64):
            xc = xc.to(torch.float32)  # fp16/bf16 are exact in float32
        xc = xc.contiguous()
        flat = xc.numpy().reshape(-1)
        out_dtype = flat.dtype if x.dtype in (torch.float32, torch.float64) else np.float64
        out = np.empty(flat.shape, dtype=out_dtype)
        P, H, W, tr, tc = self._layout(tuple(x.shape))
        st = self._tensor_scale(float(group_absmax_rows(flat, 1)[0])) if self._two_level else 1.0
        g = self.element_grid
        seed_ = kernel_seed(resolve_seed(seed)) if is_stochastic(rounding) else 0
        s = quantize_tiles(flat, out, P, H, W, tr, tc, _SCALE_KIND[self._scale_format], self.max, st,
                           g.m, g.emin, g.subnormals, g.maxval, mode_code(rounding), seed_)
        y = torch.from_numpy(out).reshape(x.shape)
        return to_dtype(y, x.dtype), torch.from_numpy(s), st

    def _quantize_reference(self, x: torch.Tensor, rounding: str, seed: int | None, elements: bool = False):
        s, idx, st = self._reference_scales(x)
        se = s.reshape(-1)[idx]
        bad = torch.isnan(se)
        g = self.element_grid
        seed_ = resolve_seed(seed) if is_stochastic(rounding) else 0
        y = quantize_blocked_reference(x.detach().reshape(-1, 1, 1), torch.where(bad, torch.ones_like(se), se)
                                       .reshape(-1, 1), g, g.maxval, g.maxval, rounding, seed_, elements=elements)
        y = torch.where(bad.reshape(-1, 1, 1), torch.full_like(y, math.nan), y).reshape(x.shape)
        return (y if elements else to_dtype(y, x.dtype)), s, st

    # ---------------------------------------------------------- encode/decode
    def encode(self, x, rounding="nearest", seed=None) -> Encoded:
        check_input(x)
        check_rounding(self, rounding)
        r, s, st = self._quantize_reference(x, rounding, seed, elements=True)
        r = torch.where(torch.isnan(r), torch.zeros_like(r), r)  # NaN groups: the scale carries the NaN
        codes = self._elem().codes_of(r)
        return Encoded(self, codes, self._named_scales(s, st, tuple(x.shape)), x.dtype)

    def _named_scales(self, s: torch.Tensor, st: float, shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
        named: dict[str, torch.Tensor] = {"_s2": s}
        fmt = self._scale_format
        if fmt == "fp32":
            named["scale"] = s.to(torch.float32)
        elif fmt in ("pow2", "e8m0"):
            _, e = torch.frexp(torch.where(torch.isnan(s), torch.ones_like(s), s))
            e = e.to(torch.int64) - 1
            if fmt == "e8m0":
                named["e8m0"] = torch.where(torch.isnan(s), torch.full_like(e, 255), e + 127).to(torch.uint8)
            else:
                named["exponent"] = e
        else:
            sb = (s / st).to(torch.float32).to(torch.float8_e4m3fn)  # exact: s = St * sb
            named["e4m3"] = sb.view(torch.uint8)
            named["tensor"] = torch.tensor(st, dtype=torch.float32)
        return named

    def decode(self, q: Encoded) -> torch.Tensor:
        shape = tuple(q.codes.shape)
        P, H, W, tr, tc = self._layout(shape)
        r = self._elem().decode(Encoded(self._elem(), q.codes, {}, torch.float64))
        s = q.scales["_s2"]
        se = s.reshape(-1)[_tile_index(P, H, W, tr, tc, s.device)].reshape(shape)
        return to_dtype(r * se, q.dtype)

    def storage_bits(self, q: Encoded) -> int:
        nscale = q.scales["_s2"].numel()
        per = {"fp32": 32, "pow2": 8, "e8m0": 8, "e4m3": 8}[self._scale_format]
        return q.codes.numel() * self.bits + nscale * per + (32 if self._two_level else 0)

    # ------------------------------------------------------------- metrics
    def _scale_per_element(self, x: torch.Tensor) -> torch.Tensor:
        s, idx, _ = self._reference_scales(x)
        se = s.reshape(-1)[idx].reshape(x.shape)
        return torch.where(torch.isfinite(se), se, torch.ones_like(se))

    def range_for(self, x):
        s = self._scale_per_element(x)
        return s * self.max, s * self.smallest_subnormal

    def code_step(self, x: torch.Tensor) -> torch.Tensor:
        s = self._scale_per_element(x)
        k = grid_quantum_exponent(x.detach().to(torch.float64).abs() / s, self.element_grid)
        return torch.ldexp(s, k.to(torch.float64))


@register_family
@dataclass(frozen=True)
class ScaledTensorFormat(_TiledScaledFormat):
    """An element float format with a data-dependent scale per group (module docstring).

    Args:
        elem: element format, a registered float alias (``fp8_e4m3``, ``fp8_e5m2``, ``fp4_e2m1`` ...).
        block: granularity ``tensor`` | ``row`` | ``col`` | ``N`` (1-D blocks along ``axis``) | ``RxC``.
        axis: blocking axis of 1-D blocks.
        scale: scale format ``fp32`` | ``pow2`` | ``e8m0`` | ``e4m3``.
    """

    family = "scaled"

    elem: str = field(default="fp8_e4m3", metadata={"doc": "element format (a float alias)"})
    block: str = field(default="tensor", metadata={
        "pattern": _BLOCK_PATTERN, "pattern_doc": "tensor, row, col, N or RxC (e.g. 16, 128x128)",
        "doc": "scale granularity: tensor | row | col | N | RxC"})
    axis: int = field(default=-1, metadata={"range": (-8, 7), "doc": "blocking axis of 1-D blocks"})
    scale: str = field(default="fp32", metadata={"choices": SCALE_FORMATS, "doc": "scale format"})

    def __post_init__(self) -> None:
        _element(self.elem, "scaled")
        if not isinstance(self.block, str) or not re.fullmatch(_BLOCK_PATTERN, self.block):
            raise ValueError(f"scaled: block={self.block!r} is not valid; valid: tensor, row, col, N or RxC")
        for v in re.findall(r"\d+", self.block):
            check_range("scaled", "block", int(v), 1, _MAX_BLOCK)
        object.__setattr__(self, "block", "x".join(str(int(v)) for v in self.block.split("x"))
                           if self.block[0].isdigit() else self.block)
        check_range("scaled", "axis", self.axis, -8, 7)
        check_choice("scaled", "scale", self.scale, SCALE_FORMATS)
        object.__setattr__(self, "_scale_format", self.scale)

    def _elem(self) -> FloatFormat:
        return _element(self.elem, "scaled")

    def _layout(self, shape):
        return tile_layout(shape, self.block, self.axis)


@register_family
@dataclass(frozen=True)
class NVFP4Format(_TiledScaledFormat):
    """NVIDIA NVFP4: E2M1 elements, 16-element blocks along the last axis, UE4M3 block scales and
    (``tensor_scale=true``) an FP32 tensor scale ``amax / (448 * 6)`` (module docstring)."""

    family = "nvfp4"

    tensor_scale: bool = field(default=True, metadata={"doc": "two-level: FP32 per-tensor scale"})

    _scale_format = "e4m3"

    def __post_init__(self) -> None:
        object.__setattr__(self, "_two_level", bool(self.tensor_scale))

    def _elem(self) -> FloatFormat:
        return _element("fp4_e2m1", "nvfp4")

    def _layout(self, shape):
        return tile_layout(shape, "16", -1)

    def storage_bits(self, q: Encoded) -> int:
        return q.codes.numel() * 4 + q.scales["_s2"].numel() * 8 + (32 if self.tensor_scale else 0)


def scale_from_amax(amax: float | torch.Tensor, elem: str = "fp8_e4m3", scale: str = "fp32") -> torch.Tensor:
    """The element scale (float64) the ``scaled`` family derives from a group amax (a float or a
    tensor of them; ``inf``/NaN -> NaN): for delayed scaling, pass ``max(amax_history)`` and feed
    the result to :func:`quantize_with_scale`."""
    check_choice("scale_from_amax", "scale", scale, SCALE_FORMATS)
    a = amax.detach().to(torch.float64) if isinstance(amax, torch.Tensor) else torch.tensor(float(amax),
                                                                                             dtype=torch.float64)
    a = torch.where(torch.isnan(a), torch.full_like(a, math.inf), a.abs())
    return tile_scale_reference(a, scale, _element(elem, "scale_from_amax").max)


def quantize_with_scale(x: torch.Tensor, elem: str | FloatFormat, scale: float | torch.Tensor,
                        rounding: str = "nearest", seed: int | None = None, backend: str = "auto") -> torch.Tensor:
    """``s * round(x / s)`` on the element format ``elem`` with a precomputed scale ``s`` (delayed
    scaling: TransformerEngine's ``DelayedScaling`` keeps ``scale = max / amax_history``; pass its
    inverse).  ``scale`` is a positive finite float or a tensor broadcastable to ``x``; the element
    format's own overflow and inf rules apply (``fp8_e4m3`` saturates; ``fp8_e5m2`` keeps +-inf).
    Same shape and dtype as ``x``."""
    check_input(x)
    f = _element(elem, "quantize_with_scale") if isinstance(elem, str) else elem
    if not _is_element(f):
        raise ValueError(f"quantize_with_scale: elem must be a float format, got {f}")
    check_rounding(f, rounding)
    if isinstance(scale, torch.Tensor):
        s = scale.detach().to(device=x.device, dtype=torch.float64)
        if s.numel() == 1:
            s = s.reshape(1, 1)
        else:
            s = torch.broadcast_to(s, x.shape).reshape(-1, 1)
    else:
        s = torch.tensor([[float(scale)]], dtype=torch.float64, device=x.device)
    if not bool((torch.isfinite(s) & (s > 0)).all()):
        raise ValueError("quantize_with_scale: scale must be positive and finite")
    x3 = x.reshape(1, 1, -1) if s.numel() == 1 else x.reshape(-1, 1, 1)
    y = quantize_blocked(x3, s, f.grid, f.overflow_value, f.inf_value, rounding, seed, backend)
    return to_dtype(y.reshape(x.shape), x.dtype)
