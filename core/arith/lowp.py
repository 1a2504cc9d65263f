"""Low-precision accumulation: matmul with a re-quantized running sum (LogBTQ paper, Table 1 "acc 8";
docs/papers.md#logbtq-acc8).

The running sum of ``a[i, k] * b[k, j]`` (products exact in float64 for inputs of
fp32 or narrower) is re-quantized to ``acc_format`` after every addition
(``chunk=1``), or with Wang et al. (2018) chunk-based accumulation (``chunk > 1``):
each run of ``chunk`` products is summed in the low format starting from 0, and the
chunk sums are accumulated into the outer sum, also in the low format.  Every
re-quantization has ``core.quantize`` semantics (nearest-even, the format's own
overflow/saturation rule) applied to the float64 sum ``s + p``.  An addend is
*swamped* when it is non-zero but leaves the sum unchanged; inner and outer
additions are counted.  Float formats run in a Numba kernel
(:func:`core.kernels.arith_lowp.lowp_matmul_grid`); any other spec runs a torch loop
over k that quantizes the whole (M, N) sum tensor with ``core.quantize`` per step
(so a scaled format shares its scale across the outputs at each step).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..formats import FormatSpec, parse_format
from ..formats.floats import FloatFormat
from ..kernels.arith_lowp import lowp_matmul_grid

__all__ = ["LowpResult", "lowp_matmul"]


@dataclass
class LowpResult:
    """Output of :func:`lowp_matmul`.

    Attributes:
        output: float64 (M, N), values in the accumulator format.
        swamped_per_output: int64 (M, N) swamped-addend counts.
        swamped: total swamped addends (int).
    """

    output: torch.Tensor
    swamped_per_output: torch.Tensor
    swamped: int


def _kernel_format(fmt: FormatSpec) -> FloatFormat | None:
    """``fmt`` when the Numba kernels can accumulate in it (an unscaled float grid), else None."""
    return fmt if isinstance(fmt, FloatFormat) else None


def lowp_matmul(a: torch.Tensor, b: torch.Tensor, acc_format: FormatSpec | str, chunk: int = 1,
                backend: str = "auto") -> LowpResult:
    """``a @ b`` with the running sum kept in ``acc_format``.

    Args:
        a: floating (M, K); b: floating (K, N), same dtype and device (CPU: Numba kernel; CUDA:
            its numba.cuda twin, zero-copy, same results).
        acc_format: any core spec (e.g. ``"fp8_143"``, ``"bf16"``).
        chunk: 1 = re-quantize after every addition; c > 1 = chunk-based accumulation.
        backend: ``auto`` (Numba for float formats), ``numba`` or ``torch``.
    Raises:
        ValueError: shapes/dtypes mismatch, chunk < 1, bad backend, or ``numba`` for a
            non-float format.
    """
    for t, nm in ((a, "a"), (b, "b")):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{nm} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise ValueError(f"{nm} must be floating point, got {t.dtype}")
        if t.dim() != 2:
            raise ValueError(f"{nm} must be 2-D, got shape {tuple(t.shape)}")
        if t.device.type not in ("cpu", "cuda"):
            raise ValueError(f"{nm} is on {t.device}; lowp_matmul runs on the CPU or a CUDA GPU")
    if a.device != b.device:
        raise ValueError(f"device mismatch: a is on {a.device}, b is on {b.device}")
    if a.dtype != b.dtype:
        raise ValueError(f"dtype mismatch: a is {a.dtype}, b is {b.dtype}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"inner dimension mismatch: a is {tuple(a.shape)}, b is {tuple(b.shape)}")
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk must be an int >= 1, got {chunk!r}")
    if backend not in ("auto", "numba", "torch"):
        raise ValueError(f"backend must be auto, numba or torch, got {backend!r}")
    fmt = parse_format(acc_format)
    kfmt = _kernel_format(fmt)
    if backend == "numba" and kfmt is None:
        raise ValueError(f"backend='numba' needs a float format, got {fmt}")
    a64 = a.to(torch.float64).contiguous()
    b64 = b.to(torch.float64).contiguous()
    m, n = a.shape[0], b.shape[1]
    if kfmt is not None and backend != "torch" and a.device.type == "cuda":
        from numba import cuda

        from ..kernels.arith_cuda import lowp_matmul_grid_cuda

        grid = kfmt.grid
        out_t = torch.zeros((m, n), dtype=torch.float64, device=a.device)
        sw_t = torch.zeros((m, n), dtype=torch.int64, device=a.device)
        lowp_matmul_grid_cuda(cuda.as_cuda_array(a64), cuda.as_cuda_array(b64), int(chunk), grid.m, grid.emin,
                              bool(grid.subnormals), float(grid.maxval), float(kfmt.overflow_value),
                              float(kfmt.inf_value), cuda.as_cuda_array(out_t), cuda.as_cuda_array(sw_t))
    elif kfmt is not None and backend != "torch":
        grid = kfmt.grid
        out = np.zeros((m, n), dtype=np.float64)
        sw = np.zeros((m, n), dtype=np.int64)
        if out.size:
            lowp_matmul_grid(a64.numpy(), b64.numpy(), int(chunk), grid.m, grid.emin,
                             bool(grid.subnormals), float(grid.maxval), float(kfmt.overflow_value),
                             float(kfmt.inf_value), out, sw)
        out_t, sw_t = torch.from_numpy(out), torch.from_numpy(sw)
    else:
        out_t, sw_t = _lowp_torch(a64, b64, fmt, int(chunk))
    return LowpResult(out_t, sw_t, int(sw_t.sum()))


def _lowp_torch(a, b, fmt, chunk):
    """Reference loop over k with ``core.quantize`` on the whole (M, N) sum per step."""
    m, k_ = a.shape
    n = b.shape[1]
    s = torch.zeros(m, n, dtype=torch.float64, device=a.device)
    cnt = torch.zeros(m, n, dtype=torch.int64, device=a.device)

    def step(acc, p):
        new = fmt.quantize(acc + p)
        return new, ((p != 0) & (new == acc)).to(torch.int64)

    if chunk == 1:
        for k in range(k_):
            s, c = step(s, a[:, k:k + 1] * b[k:k + 1, :])
            cnt += c
        return s, cnt
    for k0 in range(0, k_, chunk):
        t = torch.zeros(m, n, dtype=torch.float64, device=a.device)
        for k in range(k0, min(k0 + chunk, k_)):
            t, c = step(t, a[:, k:k + 1] * b[k:k + 1, :])
            cnt += c
        s, c = step(s, t)
        cnt += c
    return s, cnt
