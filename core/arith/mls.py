"""MLS low-bit convolution / matmul simulator (MLS paper, Eq. 5-8; docs/papers.md#mls-arithmetic).

Each MLS element is ``+-m * 2^e`` with ``m`` an (Mx+1)-bit integer.  Aligned to
the common point ``2^(emin - Mx)`` of its format (``emin = 1 - 2^Ex``; 0 for
``Ex = 0``) an element is the signed integer ``I = +-(m << (E - 1))`` for an
exponent field ``E > 0`` and ``I = +-mant`` for ``E = 0``, of at most
``Mx + 2^Ex - 1`` magnitude bits.  A product ``Iw * Ia`` then needs
``2Mx + 2^(Ex+1) - 2`` magnitude bits (14 for <2,4>), the width the paper
derives; it is an (Mx+1)x(Mx+1)-bit multiply plus a shift of the exponent sum.

Arithmetic (the stated accumulation order):

1. Intra-group partial sums ``P[n,co,ci]`` over the KxK window are integer
   accumulations in a signed ``acc_bits`` accumulator, products added in
   row-major ``(kh, kw)`` order (padded taps skipped), each addition checked;
   an out-of-range sum is one overflow event of channel ``co`` and wraps
   (two's complement) or saturates.
2. Inter-group sum (Eq. 8): ``z = z + (Sg_w[co,ci] * Sg_a[n,ci]) * P`` in
   float64, ``ci`` ascending from ``z = 0.0``.  ``Sg_w * Sg_a`` is an
   ``<E, 2Mg>`` value (at most two shifts and an add for Mg = 1), exact in
   float64, as is its product with ``P`` when ``P`` has < 50 bits.
3. ``Z = (St_w * St_a * 2^(common-point exponents)) * z`` (one float64 multiply;
   ``St_w * St_a`` of two fp32 values is exact in float64).

Fast paths: if no partial sum can leave the accumulator range (bound from the
operands: ``max_ci max_co sum_k |Iw| * max_n max_k |Ia|`` below ``2^(acc_bits-1)``
and ``2^50``), no overflow can happen and the arithmetic rides on float64 GEMMs
(im2col).  ``path="gemm"``: when every partial sum of the scale-folded products
``(Sg_w Iw) * (Sg_a Ia)`` is exact in float64 (all are multiples of the smallest
scale lsb and bounded well below 2^52 of it), a single GEMM gives the exact
value, which is also what the stated order gives.  ``path="gemm_per_group"``:
otherwise the integer sums ``P`` come from per-``ci`` GEMMs (exact integers) and
step 2-3 run in the stated order.  Both are bit-identical to the simulation.  Otherwise the Numba kernel
:func:`core.kernels.arith_mls.mls_conv_accumulate` simulates every addition.

With a wide accumulator the output equals ``conv2d`` of the dequantized
operands (``St * Sg * element``, float64) exactly whenever that float64
convolution is itself exact (e.g. power-of-two ``St`` and a moderate dynamic
range); otherwise they agree to float64 rounding of the inter-group sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..formats import Encoded
from ..formats.mls import MLSFormat
from ..kernels.arith_mls import (MODE_SATURATE, MODE_WRAP, im2col_f64, mls_align_fold, partial_sum_range,
                                 mls_conv_accumulate)

__all__ = ["MLSResult", "mls_conv2d", "mls_matmul", "aligned_integers", "product_bits", "accumulator_bits",
           "signed_bits"]

_OVERFLOW_MODES = {"wrap": MODE_WRAP, "saturate": MODE_SATURATE}


@dataclass
class MLSResult:
    """Result of an MLS low-bit product.

    Attributes:
        output: float64 tensor (N, Cout, OH, OW) for conv, (N, Cout) for matmul.
        overflows: int64 tensor (Cout,), accumulator overflow events per output channel.
        product_bits: magnitude bits of an aligned product, ``2Mx + 2^(Ex+1) - 2``
            for equal operand formats (sum of the operands' aligned widths otherwise).
        acc_bits: accumulator width used.
        path: ``"gemm"`` (single exact GEMM), ``"gemm_per_group"`` (integer GEMM per
            input channel, ordered inter-group sum) or ``"simulate"`` (per addition).
    """

    output: torch.Tensor
    overflows: torch.Tensor
    product_bits: int
    acc_bits: int
    path: str


def _emin(ex: int) -> int:
    return 0 if ex == 0 else 1 - 2 ** ex


def _mag_bits(ex: int, mx: int) -> int:
    """Magnitude bits of an aligned element: ``Mx + 2^Ex - 1``."""
    return mx + 2 ** ex - 1


def product_bits(ex: int, mx: int) -> int:
    """The paper's product width ``2Mx + 2^(Ex+1) - 2`` (MLS paper, section 4.2)."""
    return 2 * mx + 2 ** (ex + 1) - 2


def aligned_integers(codes: torch.Tensor, ex: int, mx: int) -> torch.Tensor:
    """Signed int64 integers of MLS element codes on the common point ``2^(emin - Mx)``.

    Code layout: sign bit at ``ex + mx``, exponent field ``E`` (0 = subnormal),
    ``mx`` mantissa bits.  ``E > 0``: ``(2^Mx + mant) << (E - 1)``; ``E = 0``: ``mant``.
    """
    c = codes.to(torch.int64)
    mant = c & ((1 << mx) - 1)
    e = (c >> mx) & ((1 << ex) - 1)
    sign = (c >> (ex + mx)) & 1
    mag = torch.where(e > 0, ((1 << mx) + mant) << (e - 1).clamp(min=0), mant)
    return torch.where(sign == 1, -mag, mag)


def _check_operand(q: Encoded, name: str, ndim: int) -> MLSFormat:
    if not isinstance(q, Encoded):
        raise TypeError(f"{name} must be a core.Encoded (from core.encode), got {type(q).__name__}")
    spec = q.spec
    if not isinstance(spec, MLSFormat):
        raise ValueError(f"{name} must be MLS-encoded, got family {getattr(spec, 'family', None)!r}")
    if q.codes.dim() != ndim:
        raise ValueError(f"{name} codes must be {ndim}-D, got shape {tuple(q.codes.shape)}")
    if q.codes.dtype not in (torch.int16, torch.int32, torch.int64):
        raise ValueError(f"{name} codes must be an integer tensor, got {q.codes.dtype}")
    if q.codes.device.type != "cpu":
        raise ValueError(f"{name} is on {q.codes.device}; the MLS simulator runs on the CPU")
    sg = q.scales["group"]
    if tuple(sg.shape) != tuple(q.codes.shape[:2]):
        raise ValueError(f"{name} group scales have shape {tuple(sg.shape)}, expected "
                         f"{tuple(q.codes.shape[:2])} (dim0 x dim1)")
    mbits = _mag_bits(spec.ex, spec.mx)
    if mbits > 31:
        raise ValueError(f"{name}: aligned elements need {mbits} bits (> 31); format too wide")
    return spec


def _check_acc(acc_bits, overflow):
    if isinstance(acc_bits, bool) or not isinstance(acc_bits, (int, np.integer)):
        raise ValueError(f"acc_bits must be an int in 2..64, got {acc_bits!r}")
    if not 2 <= int(acc_bits) <= 64:
        raise ValueError(f"acc_bits must be in 2..64, got {acc_bits}")
    if overflow not in _OVERFLOW_MODES:
        raise ValueError(f"overflow must be 'wrap' or 'saturate', got {overflow!r}")
    return int(acc_bits), _OVERFLOW_MODES[overflow]


def _align(q):
    """Aligned integers, group-scale-folded float64 values, per-group sum and max of |I|."""
    c = q.codes
    a, b = c.shape[0], c.shape[1]
    c3 = c.reshape(a, b, -1).contiguous().numpy()
    ints = np.empty(c3.shape, dtype=np.int64)
    folded = np.empty(c3.shape, dtype=np.float64)
    gsum = np.empty((a, b), dtype=np.int64)
    gmax = np.empty((a, b), dtype=np.int64)
    sg = q.scales["group"].to(torch.float64).contiguous().numpy()
    mls_align_fold(c3, sg, q.spec.ex, q.spec.mx, ints, folded, gsum, gmax)
    return (torch.from_numpy(ints), torch.from_numpy(folded), torch.from_numpy(gsum),
            torch.from_numpy(gmax))


def _im2col(x, kh, kw, stride, padding, oh, ow):
    """``F.unfold`` layout in a serial Numba kernel (torch's float64 im2col fights Numba's
    OpenMP pool on small machines)."""
    out = np.empty((x.shape[0], x.shape[1] * kh * kw, oh * ow), dtype=np.float64)
    im2col_f64(x.contiguous().numpy(), kh, kw, int(stride), int(padding), oh, ow, out)
    return torch.from_numpy(out)


def _folded_gemm(x, wmat, kh, kw, stride, padding, oh, ow):
    """``W' @ im2col(A')`` in at most ~4 batch chunks (im2col buffer <= 16 MiB, reused).

    Few chunks keep the number of torch thread-pool barriers small: on a loaded 2-core
    machine each barrier can wait a scheduler slice.
    """
    n, c = x.shape[0], x.shape[1]
    rows, cols_n = c * kh * kw, oh * ow
    nb = max(1, min(-(-n // 4), (1 << 21) // max(1, rows * cols_n)))
    xn = x.contiguous().numpy()
    out = torch.empty(n, wmat.shape[0], cols_n, dtype=torch.float64)
    buf = np.empty((nb, rows, cols_n), dtype=np.float64)
    for n0 in range(0, n, nb):
        n1 = min(n, n0 + nb)
        b = buf[: n1 - n0]
        im2col_f64(xn[n0:n1], kh, kw, int(stride), int(padding), oh, ow, b)
        torch.matmul(wmat, torch.from_numpy(b), out=out[n0:n1])
    return out.reshape(n, wmat.shape[0], oh, ow)


def _lsb_exp(sg: torch.Tensor, live: torch.Tensor, mg: int) -> int | None:
    """Smallest exponent of the lowest set bit of the group scales of non-empty groups."""
    if not bool(live.any()):
        return None
    _, e = torch.frexp(sg[live])  # sg = f * 2^e, f in [0.5, 1): (Mg+1)-bit mantissa
    return int(e.min()) - 1 - mg


def _single_gemm_exact(sgw, sga, wsum, amax, mgw, mga) -> bool:
    """True when every partial sum of the folded products is exact in float64.

    All terms are multiples of ``2^lsb`` and every partial sum (any order) is
    bounded by ``U = sum_ci max_co(Sg_w sum|Iw|) * max_n(Sg_a max|Ia|)``; if
    ``U < 2^(lsb + 52)`` (one bit of margin) a float64 GEMM is exact and equals the
    stated order.
    """
    lw = _lsb_exp(sgw, wsum > 0, mgw)
    la = _lsb_exp(sga, amax > 0, mga)
    if lw is None or la is None:
        return True  # all products are zero
    u = float(((sgw * wsum.to(torch.float64)).amax(dim=0)
               * (sga * amax.to(torch.float64)).amax(dim=0)).sum())
    return u < 2.0 ** (lw + la + 52)


def _conv_core(w_q, a_q, stride, padding, acc_bits, overflow, path):
    acc_bits, mode = _check_acc(acc_bits, overflow)
    if path not in ("auto", "gemm", "simulate"):
        raise ValueError(f"path must be 'auto', 'gemm' or 'simulate', got {path!r}")
    sw = w_q.spec
    sa = a_q.spec
    for v, nm in ((stride, "stride"), (padding, "padding")):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{nm} must be an int, got {v!r}")
    if stride < 1 or padding < 0:
        raise ValueError(f"stride must be >= 1 and padding >= 0, got stride={stride}, padding={padding}")
    cout, cin, kh, kw = w_q.codes.shape
    n, cin_a, h, w = a_q.codes.shape
    if cin != cin_a:
        raise ValueError(f"channel mismatch: weights have Cin={cin}, activations C={cin_a}")
    oh = (h + 2 * padding - kh) // stride + 1
    ow = (w + 2 * padding - kw) // stride + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"kernel {kh}x{kw} larger than padded input {h + 2 * padding}x{w + 2 * padding}")
    pbits = _mag_bits(sw.ex, sw.mx) + _mag_bits(sa.ex, sa.mx)
    iw, fw, wsum, _ = _align(w_q)
    ia, fa, _, amax = _align(a_q)
    sgw = w_q.scales["group"].to(torch.float64)
    sga = a_q.scales["group"].to(torch.float64)
    scale = (float(w_q.scales["tensor"]) * float(a_q.scales["tensor"])
             * 2.0 ** (_emin(sw.ex) - sw.mx + _emin(sa.ex) - sa.mx))
    # bound on any partial sum: sum_k |Iw| * max|Ia|, per ci, maxed over co and n
    if iw.numel() and ia.numel():
        bound = int((wsum.amax(dim=0) * amax.amax(dim=0)).max())
    else:
        bound = 0
    limit = min(2 ** (acc_bits - 1) - 1, 2 ** 50)
    if path == "gemm" and bound > limit:
        raise ValueError(f"path='gemm' needs a partial-sum bound <= {limit}, got {bound} "
                         f"(acc_bits={acc_bits} can overflow)")
    ovf = torch.zeros(cout, dtype=torch.int64)
    if path == "gemm" or (path == "auto" and bound <= limit):
        if _single_gemm_exact(sgw, sga, wsum, amax, w_q.spec.mg, a_q.spec.mg):
            # every partial sum in any order is exact in float64: one GEMM == stated order
            path = "gemm"
            z = _folded_gemm(fa.reshape(n, cin, h, w), fw.reshape(cout, cin * kh * kw),
                             kh, kw, stride, padding, oh, ow)
        else:
            path = "gemm_per_group"
            cols = _im2col(ia.reshape(n, cin, h, w).to(torch.float64), kh, kw, stride, padding,
                           oh, ow)
            cols = cols.reshape(n, cin, kh * kw, oh * ow)                        # (N, Cin, KK, L)
            wm = iw.to(torch.float64).reshape(cout, cin, kh * kw).permute(1, 0, 2)  # (Cin, Cout, KK)
            p = torch.matmul(wm.unsqueeze(0), cols)                              # (N, Cin, Cout, L)
            g = sga.unsqueeze(1) * sgw.unsqueeze(0)                              # (N, Cout, Cin)
            z = torch.zeros(n, cout, oh * ow, dtype=torch.float64)
            for ci in range(cin):
                z = z + g[:, :, ci:ci + 1] * p[:, ci]
            z = z.reshape(n, cout, oh, ow)
    else:
        path = "simulate"
        zn = np.zeros((n, cout, oh, ow), dtype=np.float64)
        on = np.zeros(cout, dtype=np.int64)
        mls_conv_accumulate(iw.reshape(cout, cin, kh, kw).numpy(), ia.reshape(n, cin, h, w).numpy(),
                            sgw.numpy(), sga.numpy(), int(stride), int(padding), acc_bits, mode, zn, on)
        z = torch.from_numpy(zn)
        ovf = torch.from_numpy(on)
    zn = z.contiguous().numpy()
    np.multiply(zn, scale, out=zn)  # step 3, in place (serial; z is a fresh buffer)
    return MLSResult(output=torch.from_numpy(zn), overflows=ovf, product_bits=pbits,
                     acc_bits=acc_bits, path=path)


def mls_conv2d(w_q: Encoded, a_q: Encoded, stride: int = 1, padding: int = 0,
               acc_bits: int = 32, overflow: str = "wrap", path: str = "auto") -> MLSResult:
    """Low-bit convolution of MLS-encoded weights and activations (MLS paper, Eq. 5-8).

    Args:
        w_q: ``core.encode`` of weights (Cout, Cin, KH, KW), MLS (grouping nc: Cout x Cin;
            any grouping works, the scales are per (dim0, dim1)).
        a_q: ``core.encode`` of activations (N, Cin, H, W), MLS.
        stride, padding: as ``torch.nn.functional.conv2d`` (square).
        acc_bits: signed accumulator width for the intra-group sums, 2..64.
        overflow: ``"wrap"`` (two's complement) or ``"saturate"`` (clamp).
        path: ``"auto"`` (GEMM when no overflow is possible), ``"gemm"`` (error if an
            overflow is possible) or ``"simulate"`` (always the per-addition kernel).
    Returns:
        :class:`MLSResult` with the float64 output (N, Cout, OH, OW), overflow events
        per output channel and ``product_bits``.  Accumulation order: see module doc.
    Raises:
        TypeError: operands not ``Encoded``.
        ValueError: non-MLS operands, shape mismatch, bad acc_bits/overflow/stride/padding.
    """
    sw = _check_operand(w_q, "w_q", 4)
    _check_operand(a_q, "a_q", 4)
    del sw
    return _conv_core(w_q, a_q, stride, padding, acc_bits, overflow, path)


def mls_matmul(w_q: Encoded, a_q: Encoded, acc_bits: int = 32, overflow: str = "wrap",
               path: str = "auto") -> MLSResult:
    """``A @ W^T`` of MLS-encoded W (Cout, Cin) and A (N, Cin): output (N, Cout).

    Same arithmetic as :func:`mls_conv2d` with a 1x1 kernel: with nc grouping every
    group is one element, so ``P[n,co,ci]`` is a single product and the inter-group
    sum over ``ci`` (ascending, float64) carries the reduction.
    """
    _check_operand(w_q, "w_q", 2)
    _check_operand(a_q, "a_q", 2)
    if w_q.codes.shape[1] != a_q.codes.shape[1]:
        raise ValueError(f"inner dimension mismatch: W is {tuple(w_q.codes.shape)}, "
                         f"A is {tuple(a_q.codes.shape)}")
    w4 = Encoded(w_q.spec, w_q.codes[:, :, None, None], w_q.scales, w_q.dtype)
    a4 = Encoded(a_q.spec, a_q.codes[:, :, None, None], a_q.scales, a_q.dtype)
    r = _conv_core(w4, a4, 1, 0, acc_bits, overflow, path)
    r.output = r.output[:, :, 0, 0]
    return r


def signed_bits(v: int) -> int:
    """Bits of the smallest two's-complement integer that holds ``v`` (0 and -1: 1 bit)."""
    v = int(v)
    return (v if v >= 0 else -v - 1).bit_length() + 1


def accumulator_bits(w_q: Encoded, a_q: Encoded, stride: int = 1, padding: int = 0) -> int:
    """The signed accumulator width that the intra-group partial sums of ``mls_conv2d(w_q, a_q)`` need
    (MLS paper, section 4.2, Eq. 6-7; docs/papers.md#mls-acc-bits): the fewest bits for which no running
    sum ``P`` of any ``(n, co, ci)`` window, products added in the stated row-major ``(kh, kw)`` order,
    leaves ``[-2^(b-1), 2^(b-1) - 1]`` (so ``mls_conv2d(..., acc_bits=b)`` counts no overflow and
    ``b - 1`` does). 2-D operands (``mls_matmul``) are windows of one product.

    Computed exactly on the aligned int64 integers by one Numba kernel
    (:func:`core.kernels.arith_mls.partial_sum_range`).

    Raises:
        TypeError / ValueError: as :func:`mls_conv2d`; operands whose sums could leave int64.
    """
    nd = w_q.codes.dim()
    if nd not in (2, 4):
        raise ValueError(f"w_q codes must be 2-D or 4-D, got shape {tuple(w_q.codes.shape)}")
    sw = _check_operand(w_q, "w_q", nd)
    sa = _check_operand(a_q, "a_q", nd)
    iw = aligned_integers(w_q.codes, sw.ex, sw.mx)
    ia = aligned_integers(a_q.codes, sa.ex, sa.mx)
    if nd == 2:
        iw, ia, stride, padding = iw[:, :, None, None], ia[:, :, None, None], 1, 0
    cout, cin, kh, kw = iw.shape
    if ia.shape[1] != cin:
        raise ValueError(f"channel mismatch: weights have Cin={cin}, activations C={ia.shape[1]}")
    kk = kh * kw
    if _mag_bits(sw.ex, sw.mx) + _mag_bits(sa.ex, sa.mx) + kk.bit_length() > 62:
        raise ValueError("accumulator_bits: operands too wide for an exact int64 measurement")
    out = np.zeros(2, dtype=np.int64)
    partial_sum_range(np.ascontiguousarray(iw.numpy()), np.ascontiguousarray(ia.numpy()), int(stride),
                      int(padding), out)
    lo, hi = int(out[0]), int(out[1])
    return max(signed_bits(int(hi)), signed_bits(int(lo)))
