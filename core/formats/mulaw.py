"""Mu-law companded codebooks: MU8 of LogBTQ (LogBTQ paper, Eq. 14-16;
docs/papers.md#mu8).

``x = clamp(z, -R, R) / R``; ``y = sgn(x) ln(1 + mu|x|) / ln(1 + mu)``; ``y`` is
rounded to ``k/K`` (``K = 2^(bits-1) - 1``; ``k in -K..K``) *in the companded
domain* (nearest: ties to even k; stochastic: up with probability equal to
the fraction of the y-gap, Eq. 15); ``x' = sgn(y)((1+mu)^|y| - 1)/mu``;
``z' = R x'``.  MU8 is ``bits=8`` (255 codes) with ``R = 2``.  The paper does
not state mu: the default is 255, the telephony value; it is the knob.

Nearest rounding is decided on the x side against the precomputed decision
thresholds ``R((1+mu)^((k+1/2)/K) - 1)/mu`` (identical in every backend); the
stochastic fraction uses ``log1p`` in float64.  +-inf clamps to +-R; NaN stays
NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from .base import Encoded, FormatSpec, check_input, check_rounding
from .dispatch import choose_backend, to_dtype
from .grid import kernel_seed, random_bits, resolve_seed
from .registry import check_range, register_family

__all__ = ["MuLawFormat", "MU8Format"]


@lru_cache(maxsize=64)
def _starts(bits: int, mu: float, rng: float) -> np.ndarray:
    from ..kernels.mulaw import bucket_starts

    return bucket_starts(_tables(bits, mu, rng)[1], rng)


@lru_cache(maxsize=64)
def _padded(bits: int, mu: float, rng: float) -> np.ndarray:
    from ..kernels.mulaw import padded_thresholds

    return padded_thresholds(_tables(bits, mu, rng)[1])


@lru_cache(maxsize=64)
def _f32_tables(bits: int, mu: float, rng: float) -> tuple[np.ndarray, np.ndarray, np.int64] | None:
    from ..kernels.mulaw import f32_threshold_tables

    codes, thr = _tables(bits, mu, rng)
    return f32_threshold_tables(thr, codes, rng)


#: outputs at least this large are NumPy allocations (huge pages: fewer first-touch page faults than
#: torch's allocator, ~20% of a 16M-element quantize); smaller ones come from torch
_NUMPY_OUTPUT_FROM = 1 << 16


def _empty(n: int, dtype: torch.dtype) -> torch.Tensor:
    """An uninitialized flat CPU float32/float64 tensor of ``n`` elements."""
    if n >= _NUMPY_OUTPUT_FROM:
        return torch.from_numpy(np.empty(n, dtype=np.float32 if dtype == torch.float32 else np.float64))
    return torch.empty(n, dtype=dtype)


@lru_cache(maxsize=64)
def _tables(bits: int, mu: float, rng: float) -> tuple[np.ndarray, np.ndarray]:
    K = 2 ** (bits - 1) - 1
    k = np.arange(K + 1, dtype=np.float64)
    lg = math.log1p(mu)
    codes = rng * np.expm1(k / K * lg) / mu
    codes[0] = 0.0
    thresholds = rng * np.expm1((k[:-1] + 0.5) / K * lg) / mu
    return codes, thresholds


@register_family
@dataclass(frozen=True)
class MuLawFormat(FormatSpec):
    """Sign + (bits-1)-bit mu-law code over the range [-range, range]."""

    family = "mulaw"

    bits: int = field(default=8, metadata={"range": (2, 16), "doc": "bits including sign"})
    mu: float = field(default=255.0, metadata={"range": (1e-6, 1e9), "doc": "companding strength mu"})
    range: float = field(default=2.0, metadata={"range": (1e-30, 1e30), "doc": "clamp range R"})

    def __post_init__(self) -> None:
        check_range(self.family, "bits", self.bits, 2, 16)
        if not (isinstance(self.mu, (int, float)) and self.mu > 0 and math.isfinite(self.mu)):
            raise ValueError(f"{self.family}: mu={self.mu!r} is out of range; valid: mu > 0")
        if not (isinstance(self.range, (int, float)) and self.range > 0 and math.isfinite(self.range)):
            raise ValueError(f"{self.family}: range={self.range!r} is out of range; valid: range > 0")
        object.__setattr__(self, "mu", float(self.mu))
        object.__setattr__(self, "range", float(self.range))

    @property
    def K(self) -> int:
        return 2 ** (self.bits - 1) - 1

    @property
    def max(self) -> float:
        return float(self.range)

    @property
    def tiny(self) -> float:
        return float(_tables(self.bits, self.mu, self.range)[0][1])

    @property
    def smallest_subnormal(self) -> float:
        return self.tiny

    def codebook(self) -> torch.Tensor:
        return torch.from_numpy(_tables(self.bits, self.mu, self.range)[0].copy())

    def _indices(self, x: torch.Tensor, rounding: str, seed: int | None) -> torch.Tensor:
        codes, thr = _tables(self.bits, self.mu, self.range)
        v = x.detach().to(torch.float64)
        a = torch.nan_to_num(v.abs(), nan=0.0, posinf=self.range).clamp(max=self.range)
        c = torch.from_numpy(codes).to(a.device)
        if rounding == "nearest":
            t = torch.from_numpy(thr).to(a.device)
            idx = torch.searchsorted(t, a, right=False)  # count of thresholds < a
            tie = (idx < len(thr)) & (t[idx.clamp(max=len(thr) - 1)] == a) & (idx % 2 == 1)
            idx = idx + tie.to(idx.dtype)
        else:
            y = torch.log1p(self.mu * (a / self.range)) / math.log1p(self.mu) * self.K
            lo = torch.floor(y).clamp(0, self.K)
            if rounding == "truncate":
                idx = lo
            else:
                seed_ = resolve_seed(seed)
                r = torch.from_numpy(random_bits(seed_, v.numel())).reshape(v.shape).to(a.device)
                frac32 = torch.floor((y - lo) * 2.0**32).to(torch.int64)
                idx = lo + ((frac32 + r) >= 2**32).to(torch.float64)
            idx = idx.clamp(0, self.K).to(torch.int64)
        _ = c
        return idx

    def quantize(self, x, rounding="nearest", seed=None, backend="auto"):
        check_input(x)
        check_rounding(self, rounding)
        which = choose_backend(x, backend)
        if which in ("numba", "cuda"):
            return self._kernel(x, rounding, seed, which)
        idx = self._indices(x, rounding, seed)
        codes = torch.from_numpy(_tables(self.bits, self.mu, self.range)[0]).to(x.device)
        y = torch.copysign(codes[idx], x.to(torch.float64))
        y = torch.where(torch.isnan(x), x.to(torch.float64), y)
        return to_dtype(y, x.dtype)

    def _kernel(self, x, rounding, seed, which):
        codes, thr = _tables(self.bits, self.mu, self.range)
        f32 = None
        if which == "numba" and rounding == "nearest" and x.dtype == torch.float32 and self.K <= 127 \
                and thr[0] >= 2.0**-126:
            f32 = _f32_tables(self.bits, self.mu, self.range)
        if f32 is not None:
            from ..kernels.mulaw import mulaw_nearest_f32

            table, code_bits, rng_bits = f32
            xin = x.detach().reshape(-1).contiguous()
            out = _empty(xin.numel(), torch.float32)
            mulaw_nearest_f32(xin.numpy().view(np.uint32), out.numpy().view(np.uint32), table, code_bits,
                              rng_bits, code_bits[self.K])
            return out.reshape(x.shape)
        mode = {"nearest": 0, "stochastic": 1, "truncate": 2}[rounding]
        seed_ = resolve_seed(seed) if rounding == "stochastic" else 0
        half = x.dtype not in (torch.float32, torch.float64)
        xin = (x.detach().to(torch.float32) if half else x.detach()).reshape(-1).contiguous()
        if which == "numba":
            out = _empty(xin.numel(), torch.float64 if half else xin.dtype)
        else:
            out = torch.empty(xin.shape, dtype=torch.float64 if half else xin.dtype, device=x.device)
        if which == "numba" and mode == 1:
            from ..kernels.mulaw import mulaw_stochastic

            mulaw_stochastic(xin.numpy(), out.numpy(), codes, self.K, self.mu, self.range, kernel_seed(seed_))
        elif which == "numba":  # no random words: the seed is 0
            from ..kernels.mulaw import mulaw_quantize

            mulaw_quantize(xin.numpy(), out.numpy(), codes, _padded(self.bits, self.mu, self.range),
                           _starts(self.bits, self.mu, self.range), self.K, self.mu, self.range, mode, 0)
        else:
            from ..kernels.grid_round_cuda import mulaw_quantize_cuda

            from numba import cuda

            mulaw_quantize_cuda(cuda.as_cuda_array(xin), cuda.as_cuda_array(out), codes,
                                _padded(self.bits, self.mu, self.range),
                                _starts(self.bits, self.mu, self.range), self.K, self.mu,
                                self.range, mode, seed_)
        return to_dtype(out.reshape(x.shape), x.dtype)

    def encode(self, x, rounding="nearest", seed=None) -> Encoded:
        check_input(x)
        check_rounding(self, rounding)
        if torch.isnan(x).any():
            raise ValueError(f"{self} has no NaN encoding; the input contains NaN")
        idx = self._indices(x, rounding, seed)
        k = torch.where(torch.signbit(x), -idx, idx).to(torch.int16)
        return Encoded(self, k, {}, x.dtype)

    def decode(self, q: Encoded) -> torch.Tensor:
        codes = torch.from_numpy(_tables(self.bits, self.mu, self.range)[0]).to(q.codes.device)
        k = q.codes.to(torch.int64)
        return to_dtype(torch.copysign(codes[k.abs()], k.to(torch.float64)), q.dtype)

    def code_step(self, x: torch.Tensor) -> torch.Tensor:
        codes = torch.from_numpy(_tables(self.bits, self.mu, self.range)[0]).to(x.device)
        a = x.detach().to(torch.float64).abs().clamp(max=self.range)
        i = torch.searchsorted(codes, a, right=True).clamp(1, self.K)
        return codes[i] - codes[i - 1]


@register_family
@dataclass(frozen=True)
class MU8Format(MuLawFormat):
    """MU8 (LogBTQ paper, Eq. 14-16): the 8-bit mu-law codebook over [-2, 2]."""

    family = "mu8"

    bits: int = field(default=8, init=False, metadata={"doc": "fixed at 8"})
    mu: float = field(default=255.0, metadata={"range": (1e-6, 1e9), "doc": "companding strength mu"})
    range: float = field(default=2.0, metadata={"range": (1e-30, 1e30), "doc": "clamp range R"})
