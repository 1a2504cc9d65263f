"""NITI integer arithmetic (NITI paper, section 3; docs/papers.md#niti-shift-round).

Every tensor is int8 ``q`` with a shared power-of-two exponent ``s`` (value ``q * 2^s``).
Products are int8 x int8 with int32 accumulation (convolutions through im2col);
the int32 result is brought back to int8 by the effective-bitwidth rule:
``B(V)`` = bits of ``max|v|`` (0 for an all-zero tensor), shift right by
``max(0, B - 7)`` with rounding ``nearest`` (ties away from zero), ``stochastic``
(up with probability ``remainder / 2^shift``, seeded) or ``pseudo_stochastic``
(Alg. 3, :func:`core.formats.pseudo_stochastic_round`), saturate at +-127 (:func:`shift_round`,
the one copy, also used by the ``niti`` training scheme), and
the exponent grows by the shift: ``s_out = s_x + s_w + shift``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..formats import ROUNDING_MODES, pseudo_stochastic_round
from ..kernels.arith_niti import int8_matmul

__all__ = ["NitiResult", "niti_matmul", "effective_bits", "shift_round", "niti_linear",
           "niti_conv2d", "NITI_ROUNDINGS"]

_MAX_K = (2 ** 31 - 1) // (128 * 128)
#: rounding modes of :func:`shift_round` (the modes of ``core.ROUNDING_MODES`` that NITI uses)
NITI_ROUNDINGS: tuple[str, ...] = tuple(m for m in ROUNDING_MODES
                                        if m in ("nearest", "stochastic", "pseudo_stochastic"))


@dataclass
class NitiResult:
    """int8 output with its exponent (value = values * 2^exp).

    Attributes:
        values: int8 tensor.
        exp: int, shared power-of-two exponent of ``values``.
        acc: the int32 accumulator tensor before shift-and-round (exponent ``exp - shift``).
        shift: the right shift applied, ``max(0, B(acc) - 7)``.
    """

    values: torch.Tensor
    exp: int
    acc: torch.Tensor
    shift: int


def _check_int8(t, name, ndim):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype != torch.int8:
        raise ValueError(f"{name} must be int8, got {t.dtype}")
    if t.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(t.shape)}")


def niti_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """int8 (M, K) x int8 (K, N) -> int32 (M, N), int32 accumulation.

    CPU: Numba kernel :func:`core.kernels.arith_niti.int8_matmul`.  CUDA:
    ``torch._int_mm`` (needs M > 16 and K, N multiples of 8; other shapes raise).
    Raises ValueError on non-int8 or non-2-D operands, mismatched inner dimensions,
    different devices, or K > 131071 (int32 accumulation could overflow).
    """
    _check_int8(a, "a", 2)
    _check_int8(b, "b", 2)
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"inner dimension mismatch: a is {tuple(a.shape)}, b is {tuple(b.shape)}")
    if a.device != b.device:
        raise ValueError(f"operands on different devices: {a.device} and {b.device}")
    if a.shape[1] > _MAX_K:
        raise ValueError(f"K={a.shape[1]} > {_MAX_K}: int32 accumulation could overflow")
    if a.device.type == "cuda":
        m, k = a.shape
        n = b.shape[1]
        if m <= 16 or k % 8 or n % 8:
            raise ValueError(f"torch._int_mm needs M > 16 and K, N multiples of 8; got "
                             f"M={m}, K={k}, N={n}")
        return torch._int_mm(a, b)
    if a.device.type != "cpu":
        raise ValueError(f"unsupported device {a.device}")
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.int32)
    if out.size:
        int8_matmul(a.contiguous().numpy(), b.contiguous().numpy(), out)
    return torch.from_numpy(out)


def effective_bits(v: torch.Tensor) -> int:
    """``B(V)``: the number of bits needed for ``max|v|`` (0 for an all-zero or empty tensor).

    NITI paper, section 3.2 ("effective bitwidth ... the minimum number of bits required to fully
    represent the maximum value"); docs/papers.md#niti-shift-round.  ``|v|`` is taken in int64, so
    the most negative int8/int32 value has its true width.
    """
    if v.numel() == 0:
        return 0
    return int(v.to(torch.int64).abs().max()).bit_length()


def shift_round(v: torch.Tensor, rounding: str = "nearest", seed: int | torch.Generator | None = None, *,
                bits: int = 8, dtype: torch.dtype = torch.int8) -> tuple[torch.Tensor, int]:
    """NITI paper, Alg. 1-2 (ShiftAndRound; docs/papers.md#niti-shift-round): shift integer ``v`` right by
    ``max(0, B(v) - (bits - 1))`` bits and round it to ``bits``-bit integers.

    The only copy of NITI's shift-and-round: ``core.arith`` (``niti_linear``/``niti_conv2d``) and the
    ``niti`` training scheme (``core.schemes.niti``) both call it.  Rounding acts on the magnitude and
    the sign is restored afterwards, the form of the paper's Alg. 3 (``q, f <- |q32|[bp+7, bp],
    |q32|[bp-1, 0]`` ... ``q <- q * sgn(q32)``), with ``q`` the magnitude's integer part and ``f`` its
    ``bp = shift`` dropped fraction bits:

    * ``nearest``: ``q + 1`` iff ``f >= 2^(bp-1)`` (the top dropped bit is set): round half away from
      zero.  The paper's "straight-forward round-to-nearest" (section 4.2) is that template with
      the threshold at one half; it names no tie rule and keeps no even/odd state, so
      ``[1020, 1012, 12, 20, -12, -20] >> 3`` gives ``[127, 127, 2, 3, -2, -3]`` (1020 / 8 = 127.5
      -> 128, saturated; 1012 / 8 = 126.5 -> 127; 20 / 8 = 2.5 -> 3).
    * ``stochastic``: ``q + 1`` iff ``r < f`` for ``r`` uniform in ``[0, 2^bp)`` (section 3.4: round up
      with probability ``f 2^-bp``, "comparing f with a random number r", Fig. 2); ``r`` comes from
      ``torch.randint`` with ``seed`` (a ``torch.Generator``, or an int seeding a fresh one; ``None``
      is seed 0).
    * ``pseudo_stochastic``: Alg. 3 (:func:`core.formats.pseudo_stochastic_round`).

    The result saturates at ``+-(2^(bits-1) - 1)`` (127 for int8).

    Args:
        v: integer tensor (an int32 accumulator, or int64 working values).
        rounding: ``nearest``, ``stochastic`` or ``pseudo_stochastic``.
        seed: random source of ``stochastic`` rounding.
        bits: output width (8 in NITI).
        dtype: dtype of the result (``torch.int8`` by default; the training scheme keeps int64).

    Returns:
        ``(values, shift)``: the rounded tensor and the right shift applied (the exponent grows by it).

    Raises:
        ValueError: unknown rounding, non-integer ``v``, or ``bits`` too wide for ``dtype``.
    """
    if rounding not in NITI_ROUNDINGS:
        raise ValueError(f"rounding must be one of {NITI_ROUNDINGS}, got {rounding!r}")
    if v.dtype not in (torch.int32, torch.int64, torch.int16, torch.int8):
        raise ValueError(f"shift_round needs an integer tensor, got {v.dtype}")
    if not 2 <= bits <= torch.iinfo(dtype).bits:
        raise ValueError(f"bits must be in 2..{torch.iinfo(dtype).bits} for {dtype}, got {bits}")
    lim = (1 << (bits - 1)) - 1
    v = v.to(torch.int64)
    shift = max(0, effective_bits(v) - (bits - 1))
    if shift == 0:
        return v.clamp(-lim, lim).to(dtype), 0
    if rounding == "pseudo_stochastic":
        out = pseudo_stochastic_round(v, shift)
    else:
        a = v.abs()
        q = a >> shift
        f = a & ((1 << shift) - 1)
        if rounding == "nearest":
            q = q + (f >= (1 << (shift - 1))).to(torch.int64)
        else:
            g = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(
                0 if seed is None else int(seed))
            r = torch.randint(0, 1 << shift, v.shape, generator=g, dtype=torch.int64)
            q = q + (r < f).to(torch.int64)
        out = torch.where(v < 0, -q, q)
    return out.clamp(-lim, lim).to(dtype), shift


def niti_linear(x: torch.Tensor, x_exp: int, w: torch.Tensor, w_exp: int,
                rounding: str = "nearest", seed: int | None = None) -> NitiResult:
    """``y = x @ w^T`` for int8 x (N, in) and w (out, in); int8 output with exponent bookkeeping."""
    _check_int8(x, "x", 2)
    _check_int8(w, "w", 2)
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"in-feature mismatch: x is {tuple(x.shape)}, w is {tuple(w.shape)}")
    acc = niti_matmul(x, w.t().contiguous())
    vals, shift = shift_round(acc, rounding, seed)
    return NitiResult(vals, int(x_exp) + int(w_exp) + shift, acc, shift)


def niti_conv2d(x: torch.Tensor, x_exp: int, w: torch.Tensor, w_exp: int, stride: int = 1,
                padding: int = 0, rounding: str = "nearest", seed: int | None = None) -> NitiResult:
    """int8 conv2d through im2col and the int8 GEMM; int8 output with exponent bookkeeping.

    x: int8 (N, C, H, W); w: int8 (Cout, C, KH, KW).  Output (N, Cout, OH, OW).
    """
    _check_int8(x, "x", 4)
    _check_int8(w, "w", 4)
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"channel mismatch: x has C={x.shape[1]}, w has Cin={w.shape[1]}")
    if stride < 1 or padding < 0:
        raise ValueError(f"stride must be >= 1 and padding >= 0, got {stride}, {padding}")
    n, c, h, wd = x.shape
    cout, _, kh, kw = w.shape
    oh = (h + 2 * padding - kh) // stride + 1
    ow = (wd + 2 * padding - kw) // stride + 1
    if oh < 1 or ow < 1:
        raise ValueError("kernel larger than the padded input")
    # int8 values are exact in float32; unfold only moves them
    cols = F.unfold(x.to(torch.float32), (kh, kw), padding=padding, stride=stride)  # (N, CKK, L)
    cols = cols.permute(1, 0, 2).reshape(c * kh * kw, n * oh * ow).to(torch.int8)
    acc = niti_matmul(w.reshape(cout, -1).contiguous(), cols.contiguous())     # (Cout, N*L)
    acc = acc.reshape(cout, n, oh, ow).permute(1, 0, 2, 3).contiguous()
    vals, shift = shift_round(acc, rounding, seed)
    return NitiResult(vals, int(x_exp) + int(w_exp) + shift, acc, shift)
