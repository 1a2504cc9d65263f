"""Slow pure-Python references for core.arith (loops, Python ints; tiny cases only)."""

from __future__ import annotations

import core


def element_int(code: int, ex: int, mx: int) -> int:
    """Signed aligned integer of one MLS element code (value * 2^(Mx - emin))."""
    mant = code & ((1 << mx) - 1)
    e = (code >> mx) & ((1 << ex) - 1)
    mag = ((1 << mx) + mant) << (e - 1) if e > 0 else mant
    return -mag if (code >> (ex + mx)) & 1 else mag


def mls_conv_overflows(w_q, a_q, stride, padding, acc_bits, overflow):
    """Overflow events per output channel and the integer partial sums P[n][co][oh][ow][ci].

    Order: (n, co, oh, ow), ci ascending, window row-major, padded taps skipped.
    """
    sw, sa = w_q.spec, a_q.spec
    wc = w_q.codes.tolist()
    ac = a_q.codes.tolist()
    cout, cin, kh_, kw_ = w_q.codes.shape
    n_, _, h, w = a_q.codes.shape
    oh_ = (h + 2 * padding - kh_) // stride + 1
    ow_ = (w + 2 * padding - kw_) // stride + 1
    lo, hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
    counts = [0] * cout
    sums = {}
    for n in range(n_):
        for co in range(cout):
            for oh in range(oh_):
                for ow in range(ow_):
                    for ci in range(cin):
                        acc = 0
                        for kh in range(kh_):
                            for kw in range(kw_):
                                ih, iw = oh * stride - padding + kh, ow * stride - padding + kw
                                if not (0 <= ih < h and 0 <= iw < w):
                                    continue
                                p = (element_int(wc[co][ci][kh][kw], sw.ex, sw.mx)
                                     * element_int(ac[n][ci][ih][iw], sa.ex, sa.mx))
                                acc += p
                                if acc > hi or acc < lo:
                                    counts[co] += 1
                                    if overflow == "saturate":
                                        acc = hi if acc > hi else lo
                                    else:
                                        acc = (acc - lo) % (1 << acc_bits) + lo
                        sums[(n, co, oh, ow, ci)] = acc
    return counts, sums


def lowp_dot(a_row, b_col, spec, chunk=1):
    """Running sum re-quantized with core.quantize after every addition (float64 tensors).

    chunk == 1: s = Q(s + p).  chunk > 1: inner t = Q(t + p) over each chunk (t from 0),
    outer s = Q(s + t).  Returns (sum, swamped count).
    """
    import torch

    def q(v):
        return float(core.quantize(torch.tensor([v], dtype=torch.float64), spec)[0])

    prods = [float(x) * float(y) for x, y in zip(a_row, b_col)]
    swamped = 0
    s = 0.0
    if chunk == 1:
        for p in prods:
            new = q(s + p)
            if p != 0.0 and new == s:
                swamped += 1
            s = new
        return s, swamped
    for start in range(0, len(prods), chunk):
        t = 0.0
        for p in prods[start:start + chunk]:
            new = q(t + p)
            if p != 0.0 and new == t:
                swamped += 1
            t = new
        new = q(s + t)
        if t != 0.0 and new == s:
            swamped += 1
        s = new
    return s, swamped
