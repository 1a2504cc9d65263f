"""Dispatch of the formats' grid rounding to the reference (PyTorch) or kernel (Numba, CUDA) paths.

The backend layer under the format modules (``core.formats.floats``, ``scaled``, ``integer``,
``mls``, ``mulaw``, ``mx`` import it; it imports only :mod:`core.formats.grid` and
:mod:`core.kernels`, so the arrows point one way: kernels <- grid <- dispatch <- format modules).

Every grid format reduces to one operation on a *blocked view* of the input:
an (A, B, R) view ``x3`` with one float64 scale per (A, B) row::

    y = sign(x) * s * round_grid(|x| / s)       (saturation/inf/NaN rules per spec)

``backend``: ``"auto"`` (Numba on CPU, the reference path on other devices
until the CUDA twins are registered), ``"numba"``, ``"reference"``.
Random words for stochastic rounding are indexed by the flat C-order position
in the blocked view, identically in every backend.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..kernels.modes import MODE_CODES, RBITS_BASE, TRUNCATE, magnitude_mode, mask_word, uses_random
from .base import is_stochastic, rbits_of
from .grid import ElementGrid, kernel_seed, random_bits, resolve_seed, round_grid_reference

__all__ = [
    "BACKENDS",
    "MODE_CODES",
    "mode_code",
    "choose_backend",
    "quantize_elementwise",
    "quantize_blocked",
    "quantize_blocked_reference",
    "group_absmax",
    "register_device_backend",
    "f32_flat_ok",
    "to_dtype",
]

BACKENDS = ("auto", "numba", "reference", "cuda")

#: device type -> callable implementing quantize_blocked for that device (CUDA twins)
_DEVICE_BACKENDS: dict[str, Callable] = {}


def mode_code(rounding: str) -> int:
    """Kernel code (:mod:`core.kernels.modes`) of a grid rounding mode name: ``MODE_CODES[rounding]``, or
    ``RBITS_BASE + K`` for ``stochastic_rbits<K>``; ``ValueError`` listing the valid names otherwise."""
    code = MODE_CODES.get(rounding)
    if code is not None:
        return code
    k = rbits_of(rounding)
    if k is None:
        raise ValueError(f"rounding {rounding!r} is not a grid rounding; valid: {', '.join(MODE_CODES)}, "
                         "stochastic_rbits<K>")
    return RBITS_BASE + k


def register_device_backend(device_type: str, fn: Callable) -> None:
    """Register a kernel implementation of :func:`quantize_blocked` for a device type."""
    _DEVICE_BACKENDS[device_type] = fn


def choose_backend(x: torch.Tensor, backend: str) -> str:
    """The backend that runs ``x``: ``"auto"`` is Numba on CPU, a registered device backend (CUDA)
    or the reference; an explicit backend is checked against the tensor's device."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if backend == "auto":
        if x.device.type == "cpu":
            return "numba"
        if x.device.type == "cuda":
            _register_cuda()
        return x.device.type if x.device.type in _DEVICE_BACKENDS else "reference"
    if backend == "numba" and x.device.type != "cpu":
        raise ValueError(f"backend 'numba' runs on CPU tensors; got a {x.device.type} tensor")
    if backend == "cuda":
        if x.device.type != "cuda":
            raise ValueError(
                f"backend 'cuda' needs a CUDA tensor, got a {x.device.type} tensor "
                "(move it with x.cuda(); no silent fallback)"
            )
        _register_cuda()
    return backend


def _register_cuda() -> None:
    if "cuda" in _DEVICE_BACKENDS:
        return
    from ..kernels.grid_round_cuda import cuda_available

    if not cuda_available():
        raise RuntimeError("a CUDA tensor was given but numba.cuda finds no usable GPU/driver")
    register_device_backend("cuda", _cuda_blocked)


def _cuda_blocked(x3, s2, grid, ovf, infv, rounding, seed):
    """CUDA twin: zero-copy through ``__cuda_array_interface__``."""
    from numba import cuda

    from ..kernels.grid_round_cuda import quantize_grid_3d_cuda

    xin = x3.detach()
    if xin.dtype not in (torch.float32, torch.float64):
        xin = xin.to(torch.float32)
    out_dtype = xin.dtype if x3.dtype in (torch.float32, torch.float64) else torch.float64
    out = torch.empty(xin.shape, dtype=out_dtype, device=xin.device)
    s = s2.detach().to(device=xin.device, dtype=torch.float64).contiguous()
    quantize_grid_3d_cuda(cuda.as_cuda_array(xin), cuda.as_cuda_array(s), cuda.as_cuda_array(out),
                          grid.m, grid.emin, grid.subnormals, grid.maxval, ovf, infv,
                          mode_code(rounding), seed)
    return out


# ------------------------------------------------------------------ reference
def quantize_blocked_reference(x3, s2, grid, ovf, infv, rounding, seed, elements=False):
    """Float64 reference; with ``elements`` returns the signed element values r (unscaled)."""
    v = x3.to(torch.float64)
    s = s2.to(device=v.device, dtype=torch.float64).unsqueeze(-1).expand_as(v)
    a = v.abs()
    finite = torch.isfinite(v)
    safe_s = torch.where(s == 0, torch.ones_like(s), s)
    a_s = torch.where(finite & (s != 0), a / safe_s, torch.zeros_like(a))
    code = mode_code(rounding)
    rbits = None
    if uses_random(code):
        rbits = mask_word(torch.from_numpy(random_bits(seed, v.numel())).reshape(v.shape).to(v.device), code)
    negative = v < 0
    r = round_grid_reference(a_s, grid, code, rbits, negative)
    # rounding toward zero never leaves the finite range (IEEE 754-2019 section 7.4): +-max, not ovf
    toward_zero = _toward_zero(code, negative)
    r = torch.where(r > grid.maxval, torch.where(toward_zero, torch.full_like(r, grid.maxval),
                                                 torch.full_like(r, ovf)), r)
    r = torch.where(torch.isinf(v), torch.full_like(r, infv), r)
    r = torch.where(s == 0, torch.zeros_like(r), r)
    if elements:
        return torch.where(torch.isnan(v), v, torch.copysign(r, v))
    scale_it = (s != 0) & (s != 1)
    r = torch.where(scale_it, r * s, r)
    r = torch.copysign(r, v)
    return torch.where(torch.isnan(v), v, r)


def _toward_zero(code: int, negative: torch.Tensor) -> torch.Tensor:
    """Per element: whether the magnitude mode of ``code`` rounds toward zero (those saturate)."""
    pos, neg = magnitude_mode(code, False) == TRUNCATE, magnitude_mode(code, True) == TRUNCATE
    return torch.where(negative, torch.full_like(negative, neg), torch.full_like(negative, pos))


def _to_numpy_float(x: torch.Tensor) -> np.ndarray:
    if x.dtype in (torch.float32, torch.float64):
        return x.detach().numpy()
    return x.detach().to(torch.float32).numpy()


def _rows_nearest_ok(grid: ElementGrid, ovf: float, infv: float, rounding: str) -> bool:
    """Whether ``quantize_rows_nearest_sat`` (nearest, saturating) covers this grid and rounding."""
    return rounding == "nearest" and ovf == grid.maxval == infv and 1 <= grid.m <= 51  # m = 0: round_grid


def f32_flat_ok(grid: ElementGrid, ovf: float, infv: float, rounding: str) -> bool:
    """Whether unscaled float32 data on this grid takes ``quantize_f32_flat`` (the bit-pattern
    kernel): ``m <= 22``, ``emin >= -126``, ``maxval`` and ``ovf`` float32 values; coarse grids with
    nearest saturating rounding take the rows kernel instead."""
    return (not (_rows_nearest_ok(grid, ovf, infv, rounding) and grid.emin > -4)
            and grid.m <= 22
            and grid.emin >= -126
            and float(np.float32(grid.maxval)) == grid.maxval
            and bool(np.isnan(ovf) or np.float32(ovf) == ovf))


def _numba(x3, s2, grid, ovf, infv, rounding, seed):
    from ..kernels.grid_round import quantize_f32_flat, quantize_grid_3d

    seed = kernel_seed(seed)

    xn = _to_numpy_float(x3)
    out_dtype = xn.dtype if x3.dtype in (torch.float32, torch.float64) else np.float64
    mode = mode_code(rounding)
    unscaled = bool((s2 == 1).all()) if s2.numel() <= 1 else False
    vec_ok = _rows_nearest_ok(grid, ovf, infv, rounding)
    if unscaled and xn.dtype == np.float32 and out_dtype == np.float32 and f32_flat_ok(grid, ovf, infv, rounding):
        flat = np.ascontiguousarray(xn).reshape(-1)
        out = np.empty_like(flat)
        quantize_f32_flat(flat.view(np.uint32), out.view(np.uint32), grid.m, grid.emin,
                          grid.subnormals, grid.maxval, ovf, infv, mode, seed)
        return torch.from_numpy(out).reshape(x3.shape)
    out = np.empty(xn.shape, dtype=out_dtype)
    sn = np.asarray(s2.detach().to(torch.float64).numpy())
    if xn.flags.c_contiguous and vec_ok:
        from ..kernels.grid_round import quantize_rows_nearest_sat

        quantize_rows_nearest_sat(xn.reshape(-1), np.ascontiguousarray(sn).reshape(-1),
                                  out.reshape(-1), grid.m, grid.emin, grid.subnormals, grid.maxval)
        return torch.from_numpy(out)
    quantize_grid_3d(xn, sn, out, grid.m, grid.emin, grid.subnormals, grid.maxval,
                     ovf, infv, mode, seed)
    return torch.from_numpy(out)


def quantize_blocked(
    x3: torch.Tensor,
    s2: torch.Tensor,
    grid: ElementGrid,
    ovf: float,
    infv: float,
    rounding: str,
    seed: int | None,
    backend: str = "auto",
) -> torch.Tensor:
    """Quantize an (A, B, R) view with per-(A, B) scales; returns float64 or x3's
    float32/float64 dtype (cast to the caller's dtype by the caller)."""
    which = choose_backend(x3, backend)
    seed_ = resolve_seed(seed) if is_stochastic(rounding) else 0
    if which == "numba":
        return _numba(x3, s2, grid, ovf, infv, rounding, seed_)
    if which == "reference":
        return quantize_blocked_reference(x3, s2, grid, ovf, infv, rounding, seed_)
    return _DEVICE_BACKENDS[which](x3, s2, grid, ovf, infv, rounding, seed_)


_HALF_GRIDS = {
    torch.float16: (ElementGrid(10, -14, True, 65504.0), float("inf")),
    torch.bfloat16: (ElementGrid(7, -126, True, float(torch.finfo(torch.bfloat16).max)), float("inf")),
}


def to_dtype(y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Cast float64 results to ``dtype`` with ONE correctly rounded step.

    torch's float64 -> float16/bfloat16 casts go through float32 (double
    rounding); here the value is first rounded onto the half grid in float64
    (ties to even, IEEE overflow to inf), after which the cast is exact.
    """
    if y.dtype == dtype:
        return y
    if dtype in _HALF_GRIDS and y.dtype == torch.float64:
        grid, inf = _HALF_GRIDS[dtype]
        y = quantize_blocked(y.reshape(1, 1, -1), torch.ones((1, 1), dtype=torch.float64),
                             grid, inf, inf, "nearest", 0).reshape(y.shape)
    return y.to(dtype)


def quantize_elementwise(
    x: torch.Tensor,
    grid: ElementGrid,
    ovf: float,
    infv: float,
    rounding: str,
    seed: int | None,
    backend: str = "auto",
) -> torch.Tensor:
    """Unscaled grid quantization of any-shaped ``x``; same shape and dtype."""
    x3 = x.reshape(1, 1, -1)
    s2 = torch.ones((1, 1), dtype=torch.float64)
    y = quantize_blocked(x3, s2, grid, ovf, infv, rounding, seed, backend)
    return to_dtype(y.reshape(x.shape), x.dtype)


def group_absmax(x3: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """float64 (A, B) max of |x| over the last axis, ignoring NaN and inf."""
    which = choose_backend(x3, backend)
    if which == "numba":
        from ..kernels.grid_round import group_absmax_3d, group_absmax_rows

        xn = _to_numpy_float(x3)
        A, B = xn.shape[0], xn.shape[1]
        if xn.flags.c_contiguous and A * B > 0:  # vectorized integer max over the bit patterns
            return torch.from_numpy(group_absmax_rows(xn.reshape(-1), A * B).reshape(A, B))
        return torch.from_numpy(group_absmax_3d(xn))
    a = x3.detach().to(torch.float64).abs()
    a = torch.where(torch.isfinite(a), a, torch.zeros_like(a))
    if a.shape[-1] == 0:
        return torch.zeros(a.shape[:-1], dtype=torch.float64, device=a.device)
    return a.amax(dim=-1)
