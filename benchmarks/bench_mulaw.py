"""MU8 quantize against torch's fp8 cast on the same data, as medians of interleaved pairs.

    python benchmarks/bench_mulaw.py [--n 16777216] [--pairs 9]

Each pair times torch's ``x.to(torch.float8_e4m3fn).to(torch.float32)`` and then one MU8 quantize
(nearest or stochastic) right after it, so both see the same load; the printed figure is the median
of the per-pair ratios (cast time / MU8 time: above 1 means MU8 is faster). The data is the
``bench_formats.py`` tensor (randn, viewed (N/16384, 64, 16, 16)).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

import core


def _seconds(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1 << 24)
    ap.add_argument("--pairs", type=int, default=9)
    args = ap.parse_args()
    x = torch.randn(args.n, generator=torch.Generator().manual_seed(0)).reshape(-1, 64, 16, 16)
    ref = lambda: x.to(torch.float8_e4m3fn).to(torch.float32)  # noqa: E731
    cases = {"mu8 nearest": lambda: core.quantize(x, "mu8"),
             "mu8 stochastic": lambda: core.quantize(x, "mu8", "stochastic", seed=1)}
    print(f"# {args.n} float32 elements, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    for name, fn in cases.items():
        ref()
        fn()  # compile / load, first-touch
        ratios, ms = [], []
        for _ in range(args.pairs):
            tr = _seconds(ref)
            tk = _seconds(fn)
            ratios.append(tr / tk)
            ms.append(tk * 1e3)
        print(f"{name:16s} {statistics.median(ms):8.1f} ms  {statistics.median(ratios):5.2f}x torch fp8 cast "
              f"(pairs: {' '.join(f'{r:.2f}' for r in ratios)})")


if __name__ == "__main__":
    main()
