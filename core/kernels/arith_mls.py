"""Numba CPU kernel: MLS low-bit convolution with a simulated integer accumulator.

Arrays in, arrays out (no torch, no specs).  MLS paper, Eq. 5-8
(docs/papers.md#mls-arithmetic).  Operands are signed aligned
integers (element magnitude ``m << shift`` on the common point of the format,
see :mod:`core.arith.mls`); products are exact int64 multiplies.

Accumulation order (the one overflow counts depend on):
for every output position ``(n, co, oh, ow)`` and every input channel ``ci``
in ascending order, the partial sum ``P`` starts at 0 and the products of the
KxK window are added in row-major ``(kh, kw)`` order, skipping padded taps.
After each addition the accumulator is checked against the signed
``acc_bits`` range; an out-of-range sum is one overflow event of channel
``co`` and is wrapped (two's complement) or clamped (saturate).  The
inter-group sum is then ``z = z + (sgw[co,ci] * sga[n,ci]) * P`` in float64,
``ci`` ascending, starting from ``z = 0.0``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .config import JIT_OPTIONS

__all__ = ["mls_conv_accumulate", "partial_sum_range", "MODE_WRAP", "MODE_SATURATE"]

MODE_WRAP = 0
MODE_SATURATE = 1


@njit(**JIT_OPTIONS)
def _acc_add(acc, p, bits, mode, lo, hi, mask, half):
    """Add ``p`` to ``acc`` in a ``bits``-bit signed accumulator; return (sum, overflowed)."""
    if bits == 64:
        # add in uint64 (defined wrap-around; a signed add is ``nsw`` in LLVM, so an
        # overflow check on it could be optimized away), overflow iff the sign of the
        # result differs from the signs of both operands
        s = np.int64(np.uint64(acc) + np.uint64(p))
        ovf = ((acc ^ s) & (p ^ s)) < 0
        if ovf and mode == 1:
            s = hi if p > 0 else lo
        return s, ovf
    s = acc + p  # |acc| < 2^62 and |p| < 2^62: exact in int64
    if s > hi or s < lo:
        if mode == 1:
            s = hi if s > hi else lo
        else:
            u = s & mask
            if u >= half:
                u -= mask + 1
            s = u
        return s, True
    return s, False


@njit(parallel=True, **JIT_OPTIONS)
def mls_conv_accumulate(iw, ia, sgw, sga, stride, padding, acc_bits, mode, out, ovf):
    """Slow path: per-addition accumulator simulation.

    Args:
        iw: int64 (Cout, Cin, KH, KW) signed aligned weight integers.
        ia: int64 (N, Cin, H, W) signed aligned activation integers.
        sgw: float64 (Cout, Cin) weight group scales; sga: float64 (N, Cin).
        stride, padding: ints; acc_bits: 2..64; mode: 0 wrap, 1 saturate.
        out: float64 (N, Cout, OH, OW), written with the inter-group sums
            (before the tensor scales and the common-point factor).
        ovf: int64 (Cout,), written with the overflow events per channel.
    """
    cout, cin, kh_, kw_ = iw.shape
    n_, _, h, w = ia.shape
    oh_ = out.shape[2]
    ow_ = out.shape[3]
    if acc_bits >= 64:
        lo = np.int64(-9223372036854775807 - 1)
        hi = np.int64(9223372036854775807)
        mask = np.int64(-1)
        half = np.int64(0)
    else:
        half = np.int64(1) << np.int64(acc_bits - 1)
        lo = -half
        hi = half - np.int64(1)
        mask = (np.int64(1) << np.int64(acc_bits)) - np.int64(1)
    for co in prange(cout):
        count = np.int64(0)
        for n in range(n_):
            for oh in range(oh_):
                for ow in range(ow_):
                    z = 0.0
                    for ci in range(cin):
                        acc = np.int64(0)
                        for kh in range(kh_):
                            ih = oh * stride - padding + kh
                            if ih < 0 or ih >= h:
                                continue
                            for kw in range(kw_):
                                iw_ = ow * stride - padding + kw
                                if iw_ < 0 or iw_ >= w:
                                    continue
                                p = iw[co, ci, kh, kw] * ia[n, ci, ih, iw_]
                                acc, o = _acc_add(acc, p, acc_bits, mode, lo, hi, mask, half)
                                if o:
                                    count += 1
                        z = z + (sgw[co, ci] * sga[n, ci]) * np.float64(acc)
                    out[n, co, oh, ow] = z
        ovf[co] = count


@njit(**JIT_OPTIONS)
def partial_sum_range(iw, ia, stride, padding, out):
    """The smallest and largest running intra-group sum of the MLS convolution (the accumulation order
    of :func:`mls_conv_accumulate`: per ``(n, co, oh, ow, ci)`` window the products added in row-major
    ``(kh, kw)`` order, padded taps skipped), exact in int64, no accumulator limit.

    Args:
        iw: int64 (Cout, Cin, KH, KW) signed aligned weight integers.
        ia: int64 (N, Cin, H, W) signed aligned activation integers.
        stride, padding: ints.
        out: int64 (2,), written with ``(min, max)`` over every running sum and 0.
    """
    cout, cin, kh_, kw_ = iw.shape
    n_, _, h, w = ia.shape
    oh_ = (h + 2 * padding - kh_) // stride + 1
    ow_ = (w + 2 * padding - kw_) // stride + 1
    lo = np.int64(0)
    hi = np.int64(0)
    # serial on purpose (see mls_align_fold): telemetry calls it between torch's OpenMP GEMMs
    for n in range(n_):
        for co in range(cout):
            for ci in range(cin):
                for oh in range(oh_):
                    for ow in range(ow_):
                        acc = np.int64(0)
                        for kh in range(kh_):
                            ih = oh * stride - padding + kh
                            if ih < 0 or ih >= h:
                                continue
                            for kw in range(kw_):
                                iw_ = ow * stride - padding + kw
                                if iw_ < 0 or iw_ >= w:
                                    continue
                                acc += iw[co, ci, kh, kw] * ia[n, ci, ih, iw_]
                                if acc > hi:
                                    hi = acc
                                elif acc < lo:
                                    lo = acc
    out[0] = lo
    out[1] = hi


@njit(**JIT_OPTIONS)
def mls_align_fold(codes, sg, ex, mx, ints, folded, gsum, gmax):
    """Decode MLS element codes to aligned integers and fold in the group scale.

    Args:
        codes: integer (A, B, R) sign-magnitude element codes (sign bit at ``ex + mx``).
        sg: float64 (A, B) group scales.
        ints: int64 (A, B, R) out: ``+-(2^mx + mant) << (E - 1)`` (E > 0) or ``+-mant``.
        folded: float64 (A, B, R) out: ``sg[a, b] * ints`` (exact).
        gsum, gmax: int64 (A, B) out: sum and max of ``|ints|`` per group.
    """
    A, B, R = codes.shape
    mmask = (1 << mx) - 1
    emask = (1 << ex) - 1
    # serial on purpose: a Numba parallel region right before torch's OpenMP im2col/GEMM
    # makes the two thread pools fight (measured 500 ms instead of 8 ms on 2 cores)
    for t in range(A * B):
        a = t // B
        b = t % B
        s = sg[a, b]
        tot = np.int64(0)
        mxv = np.int64(0)
        for r in range(R):
            c = np.int64(codes[a, b, r])
            mant = c & mmask
            e = (c >> mx) & emask
            if e > 0:
                mag = ((np.int64(1) << mx) + mant) << (e - 1)
            else:
                mag = mant
            tot += mag
            if mag > mxv:
                mxv = mag
            if (c >> (ex + mx)) & 1:
                mag = -mag
            ints[a, b, r] = mag
            folded[a, b, r] = s * np.float64(mag)
        gsum[a, b] = tot
        gmax[a, b] = mxv


@njit(**JIT_OPTIONS)
def im2col_f64(x, kh_, kw_, stride, padding, oh_, ow_, out):
    """``out[n, (c*KH + kh)*KW + kw, oh*OW + ow] = x[n, c, oh*s - p + kh, ow*s - p + kw]`` (0 outside).

    Same layout as ``torch.nn.functional.unfold``; serial (see :func:`mls_align_fold`).
    """
    n_, c_, h, w = x.shape
    for n in range(n_):
        for c in range(c_):
            for kh in range(kh_):
                for kw in range(kw_):
                    row = (c * kh_ + kh) * kw_ + kw
                    for oh in range(oh_):
                        ih = oh * stride - padding + kh
                        base = oh * ow_
                        if ih < 0 or ih >= h:
                            for ow in range(ow_):
                                out[n, row, base + ow] = 0.0
                            continue
                        for ow in range(ow_):
                            iw = ow * stride - padding + kw
                            if iw < 0 or iw >= w:
                                out[n, row, base + ow] = 0.0
                            else:
                                out[n, row, base + ow] = x[n, c, ih, iw]
