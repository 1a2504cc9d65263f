"""MLS low-bit conv simulator vs torch conv2d (float32) on a ResNet-20 layer, ratios from one run.

    python benchmarks/bench_arith.py [--repeat 20] [--batch 32]

Layer: batch 32, 16 -> 16 channels, 32x32, 3x3, padding 1 (ResNet-20 stage 1).
Operands MLS <2,4> (eg=8, mg=1, grouping nc), encoded once outside the timing.
Cases: the simulator with a 32-bit accumulator (no overflow possible: exact GEMM path),
and the per-addition accumulator simulation (``path="simulate"``, 16-bit accumulator).
Target: the 32-bit case under 20x the float32 conv2d.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numba
import torch
import torch.nn.functional as F

import core
from core.arith import mls_conv2d


def best_times(fns, repeat: int) -> list[float]:
    """Best-of-``repeat`` times of each function, calls interleaved so all see the same load."""
    for fn in fns:
        fn()  # warm-up / compile
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 16, 32, 32, generator=g).relu()
    w = torch.randn(16, 16, 3, 3, generator=g) * 0.1
    fmt = core.parse_format("mls(ex=2,mx=4,eg=8,mg=1,group=nc)")
    wq, aq = core.encode(w, fmt), core.encode(x, fmt)
    wd, ad = core.decode(wq), core.decode(aq)
    print(f"{platform.machine()} cores={os.cpu_count()} torch={torch.__version__} "
          f"numba={numba.__version__} threads={torch.get_num_threads()}")
    print(f"layer: N={args.batch} 16->16 32x32 3x3 pad 1; operands {fmt}")
    t_ref, t_sim = best_times([lambda: F.conv2d(ad, wd, padding=1),
                               lambda: mls_conv2d(wq, aq, padding=1, acc_bits=32)], args.repeat)
    (t_slow,) = best_times([lambda: mls_conv2d(wq, aq, padding=1, acc_bits=16, path="simulate")], 3)
    r = mls_conv2d(wq, aq, padding=1, acc_bits=32)
    rs = mls_conv2d(wq, aq, padding=1, acc_bits=16, path="simulate")
    print(f"{'case':44s} {'ms':>9s} {'x conv2d fp32':>14s}")
    print(f"{'torch conv2d float32':44s} {t_ref * 1e3:9.2f} {1.0:14.2f}")
    print(f"{'mls_conv2d acc32 (path=' + r.path + ')':44s} {t_sim * 1e3:9.2f} {t_sim / t_ref:14.2f}")
    print(f"{'mls_conv2d acc16 (path=' + rs.path + ')':44s} {t_slow * 1e3:9.2f} {t_slow / t_ref:14.2f}")
    print(f"product_bits={r.product_bits}; acc16 overflow events={int(rs.overflows.sum())}; "
          f"max |sim - conv2d fp32| = {(r.output - F.conv2d(ad, wd, padding=1).double()).abs().max():.2e}")


if __name__ == "__main__":
    main()
