"""Random Hadamard transform (RHT): a seeded, orthonormal rotation of blocks along the last axis.

``y = H_b diag(d) x / sqrt(b)`` per block of ``b`` (a power of two, default 16) consecutive
elements of the last axis, ``H_b`` the Sylvester Hadamard matrix (``scipy.linalg.hadamard``) and
``d`` a seeded +-1 vector: the transform that spreads outliers before low-precision rounding in
NVIDIA's NVFP4 training recipe (TransformerEngine ``RandomHadamardTransform``, 16-element
blocks for the weight-gradient GEMM) and QuaRot/QuIP#.  ``H_b / sqrt(b)`` is symmetric and
orthogonal, so :meth:`RandomHadamard.inverse` is ``diag(d) H_b y / sqrt(b)``: the transform is its
own inverse up to the signs.

Signs: ``d_j = 1 - 2 * (w_j >> 31)`` with ``w_j`` the project's counter-based 32-bit random word
of index ``j`` for ``seed`` (:func:`core.formats.grid.random_bits`): the same on every backend.
Arithmetic: float64 inside, each result rounded once to the input's dtype.  Backends: ``numba``
(butterflies, :mod:`core.kernels.hadamard`) and ``reference`` (explicit matrix product, any
device); they agree to the last float32 bit but for rare one-ulp differences (summation order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .base import check_input
from .dispatch import to_dtype
from .grid import random_bits

__all__ = ["RandomHadamard", "hadamard_transform", "hadamard_matrix"]


def hadamard_matrix(block: int) -> torch.Tensor:
    """The ``block x block`` Sylvester Hadamard matrix (entries +-1, float64)."""
    _check_block(block)
    h = torch.ones((1, 1), dtype=torch.float64)
    while h.shape[0] < block:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


def _check_block(block: int) -> None:
    if isinstance(block, bool) or not isinstance(block, int) or block < 1 or block & (block - 1) or block > 1 << 16:
        raise ValueError(f"hadamard: block={block!r} must be a power of two in 1..65536")


@dataclass(frozen=True)
class RandomHadamard:
    """The blocked random Hadamard transform with block size ``block`` and sign seed ``seed``."""

    block: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        _check_block(self.block)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"hadamard: seed must be an int, got {self.seed!r}")

    def signs(self) -> torch.Tensor:
        """The +-1 sign vector ``d`` (float64, length ``block``)."""
        w = random_bits(self.seed & 0xFFFFFFFFFFFFFFFF, self.block)
        return torch.from_numpy(1.0 - 2.0 * ((w >> 31) & 1).astype(np.float64))

    def matrix(self) -> torch.Tensor:
        """``M = H diag(d) / sqrt(block)`` (float64): a block ``x`` maps to ``M @ x``."""
        return hadamard_matrix(self.block) * self.signs() / math.sqrt(self.block)

    def __call__(self, x: torch.Tensor, backend: str = "auto") -> torch.Tensor:
        return self.forward(x, backend)

    def forward(self, x: torch.Tensor, backend: str = "auto") -> torch.Tensor:
        """``H diag(d) x / sqrt(b)`` per block of the last axis (same shape and dtype)."""
        return self._apply(x, backend, inverse=False)

    def inverse(self, x: torch.Tensor, backend: str = "auto") -> torch.Tensor:
        """``diag(d) H x / sqrt(b)`` per block: ``inverse(forward(x)) == x`` up to rounding."""
        return self._apply(x, backend, inverse=True)

    def _apply(self, x: torch.Tensor, backend: str, inverse: bool) -> torch.Tensor:
        check_input(x)
        if backend not in ("auto", "numba", "reference"):
            raise ValueError(f"unknown backend {backend!r}; valid: auto, numba, reference")
        n = x.shape[-1] if x.dim() else 1
        if n % self.block:
            raise ValueError(f"hadamard: the last dimension ({n}) is not a multiple of block={self.block}")
        if x.numel() == 0:
            return x.detach().clone()
        if backend == "numba" and x.device.type != "cpu":
            raise ValueError(f"backend 'numba' runs on CPU tensors; got a {x.device.type} tensor")
        if backend in ("auto", "numba") and x.device.type == "cpu":
            from ..kernels.hadamard import fwht_blocks

            xc = x.detach()
            if xc.dtype not in (torch.float32, torch.float64):
                xc = xc.to(torch.float32)  # fp16/bf16 are exact in float32; results rounded once below
            flat = xc.contiguous().numpy().reshape(-1)
            out = np.empty(flat.shape, dtype=flat.dtype if x.dtype in (torch.float32, torch.float64) else np.float64)
            fwht_blocks(flat, out, self.block, self.signs().numpy(), inverse)
            return to_dtype(torch.from_numpy(out).reshape(x.shape), x.dtype)
        m = self.matrix().to(x.device)
        v = x.detach().to(torch.float64).reshape(-1, self.block)
        y = v @ (m if inverse else m.T)
        return to_dtype(y.reshape(x.shape), x.dtype)


def hadamard_transform(x: torch.Tensor, block: int = 16, seed: int = 0, inverse: bool = False,
                       backend: str = "auto") -> torch.Tensor:
    """:class:`RandomHadamard` ``(block, seed)`` applied to ``x`` (or its inverse)."""
    t = RandomHadamard(block, seed)
    return t.inverse(x, backend) if inverse else t.forward(x, backend)
