"""CUDA twins of the arithmetic simulators (:mod:`core.kernels.arith_mls`, :mod:`core.kernels.arith_lowp`).

numba.cuda kernels (they also run under Numba's CUDA simulator with ``NUMBA_ENABLE_CUDASIM=1``): one
thread per output element, calling the very same ``@njit`` element functions as the CPU kernels
(:func:`~core.kernels.arith_mls._acc_add`, :func:`~core.kernels.grid_round.quantize_value`) in the same
order, so outputs, overflow counts and swamping counts are bit-identical to the CPU kernels. Arrays in,
arrays out: host NumPy arrays or device arrays (``__cuda_array_interface__``, e.g. torch CUDA tensors).

The loops over one output's additions are restated here rather than shared with the CPU kernels:
a shared ``@njit`` helper would take the operand arrays, and under the simulator (where CI runs these
twins) device arrays cannot enter a CPU ``@njit`` function (as in ``grid_round_cuda``'s mu-law twin).
Only scalar element functions are shared; the tests compare the twins with the CPU kernels bit for bit.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from . import config
from .arith_mls import _acc_add
from .grid_round import quantize_value

__all__ = ["mls_conv_accumulate_cuda", "lowp_matmul_grid_cuda"]


def _launch(n: int) -> tuple[int, int]:
    tpb = config.THREADS_PER_BLOCK
    return max(1, (n + tpb - 1) // tpb), tpb


@cuda.jit
def _mls_conv_kernel(iw, ia, sgw, sga, stride, padding, acc_bits, mode, lo, hi, mask, half, out, ovf):
    t = cuda.grid(1)
    n_, cout, oh_, ow_ = out.shape
    if t < n_ * cout * oh_ * ow_:
        ow = t % ow_
        r = t // ow_
        oh = r % oh_
        r = r // oh_
        co = r % cout
        n = r // cout
        cin, kh_, kw_ = iw.shape[1], iw.shape[2], iw.shape[3]
        h, w = ia.shape[2], ia.shape[3]
        count = 0
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
                    p = np.int64(iw[co, ci, kh, kw]) * np.int64(ia[n, ci, ih, iw_])
                    acc, o = _acc_add(acc, p, acc_bits, mode, lo, hi, mask, half)
                    if o:
                        count += 1
            z = z + (sgw[co, ci] * sga[n, ci]) * np.float64(acc)
        out[n, co, oh, ow] = z
        if count:
            cuda.atomic.add(ovf, co, count)


def mls_conv_accumulate_cuda(iw, ia, sgw, sga, stride, padding, acc_bits, mode, out, ovf) -> None:
    """GPU twin of :func:`core.kernels.arith_mls.mls_conv_accumulate` (same arguments; ``ovf`` must
    be zero on entry, the per-channel counts are added atomically)."""
    n = int(np.prod(out.shape))
    if n == 0:
        return
    if acc_bits >= 64:
        lo, hi, mask, half = np.int64(-(2**63)), np.int64(2**63 - 1), np.int64(-1), np.int64(0)
    else:
        half = np.int64(1) << np.int64(acc_bits - 1)
        lo, hi, mask = -half, half - np.int64(1), (np.int64(1) << np.int64(acc_bits)) - np.int64(1)
    grid, tpb = _launch(n)
    _mls_conv_kernel[grid, tpb](iw, ia, sgw, sga, int(stride), int(padding), int(acc_bits), int(mode),
                                lo, hi, mask, half, out, ovf)


@cuda.jit
def _lowp_kernel(a, b, chunk, m, emin, sub, maxval, ovf, infv, out, swamped):
    t = cuda.grid(1)
    mm, kk = a.shape
    nn = b.shape[1]
    if t < mm * nn:
        i = t // nn
        j = t % nn
        s = 0.0
        cnt = 0
        if chunk == 1:
            for k in range(kk):
                p = a[i, k] * b[k, j]
                new = quantize_value(s + p, 1.0, m, emin, sub, maxval, ovf, infv, 0, 0.0)
                if p != 0.0 and new == s:
                    cnt += 1
                s = new
        else:
            for k0 in range(0, kk, chunk):
                tt = 0.0
                for k in range(k0, min(k0 + chunk, kk)):
                    p = a[i, k] * b[k, j]
                    new = quantize_value(tt + p, 1.0, m, emin, sub, maxval, ovf, infv, 0, 0.0)
                    if p != 0.0 and new == tt:
                        cnt += 1
                    tt = new
                new = quantize_value(s + tt, 1.0, m, emin, sub, maxval, ovf, infv, 0, 0.0)
                if tt != 0.0 and new == s:
                    cnt += 1
                s = new
        out[i, j] = s
        swamped[i, j] = cnt


def lowp_matmul_grid_cuda(a, b, chunk, m, emin, sub, maxval, ovf, infv, out, swamped) -> None:
    """GPU twin of :func:`core.kernels.arith_lowp.lowp_matmul_grid` (same arguments)."""
    n = int(out.shape[0] * out.shape[1])
    if n == 0:
        return
    grid, tpb = _launch(n)
    _lowp_kernel[grid, tpb](a, b, int(chunk), int(m), int(emin), bool(sub), float(maxval), float(ovf),
                            float(infv), out, swamped)
