"""Quantizer throughput on 16M float32 values, as ratios from one run.

    python benchmarks/bench_formats.py [--n 16777216] [--repeat 5]

References measured in the same run: a float32 copy, torch's own
``x.to(torch.float8_e4m3fn).float()`` and ml_dtypes' cast round trip.
Prints M elements/s (best of --repeat) and the ratio to torch's fp8 cast.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

import core


def best_time(fn, repeat: int) -> float:
    fn()  # warm-up / compile
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1 << 24)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--all", action="store_true", help="every family, not just the issue's three")
    ap.add_argument("--only", default="", help="comma-separated substrings: run only the matching cases "
                    "(the torch fp8 cast, the ratios' reference, always runs)")
    args = ap.parse_args()
    import ml_dtypes

    n = args.n
    x = torch.randn(n, generator=torch.Generator().manual_seed(0))
    x4 = x.reshape(-1, 64, 16, 16)
    xn = x.numpy()
    cases = [
        ("float32 copy", lambda: x.clone()),
        ("torch fp8_e4m3fn cast", lambda: x.to(torch.float8_e4m3fn).float()),
        ("ml_dtypes e4m3fn cast", lambda: xn.astype(ml_dtypes.float8_e4m3fn).astype(np.float32)),
        ("fp8_e4m3 nearest", lambda: core.quantize(x, "fp8_e4m3")),
        ("fp8_e4m3 stochastic", lambda: core.quantize(x, "fp8_e4m3", "stochastic", seed=1)),
        ("mls(ex=2,mx=1,eg=8,mg=1,group=nc)", lambda: core.quantize(x4, "mls(ex=2,mx=1,eg=8,mg=1,group=nc)")),
    ]
    # scaling recipes of 2025-26 (per-tensor / per-row / 128x128 FP8, NVFP4, MXFP4) on a (4096, 4096) matrix
    xm = x.reshape(-1, 4096)
    for spec in ["scaled(elem=fp8_e4m3)", "scaled(elem=fp8_e4m3,block=row)", "scaled(elem=fp8_e4m3,block=128x128)",
                 "nvfp4", "mx(elem=fp4_e2m1)", "scaled(elem=fp4_e2m1,block=32,scale=e8m0)"]:
        for rnd in ("nearest", "stochastic"):
            cases.append((f"{spec} {rnd}", lambda s=spec, r=rnd: core.quantize(xm, s, r, seed=1)))
    # element formats and rounding modes of 2025-26: IEEE P3109, FNUZ FP8, E8M0, NF4 (absmax blocks of 64)
    cases.append(("ml_dtypes e4m3fnuz cast", lambda: xn.astype(ml_dtypes.float8_e4m3fnuz).astype(np.float32)))
    for spec in ["binary8p3", "binary8p4", "fp8_e4m3fnuz", "fp8_e5m2fnuz", "e8m0"]:
        for rnd in ("nearest", "stochastic"):
            cases.append((f"{spec} {rnd}", lambda s=spec, r=rnd: core.quantize(x, s, r, seed=1)))
    for rnd in ("up", "nearest_away", "odd", "stochastic_rbits8"):
        cases.append((f"fp8_e4m3 {rnd}", lambda r=rnd: core.quantize(x, "fp8_e4m3", r, seed=1)))
    cases.append(("nf4 nearest", lambda: core.quantize(x, "nf4")))
    from core.formats.hadamard import RandomHadamard

    rht = RandomHadamard(16, seed=1)
    cases.append(("hadamard(block=16) forward", lambda: rht.forward(xm)))
    cases.append(("hadamard(block=16) + nvfp4", lambda: core.quantize(rht.forward(xm), "nvfp4")))
    if args.all:
        for spec in ["bf16", "fp8_e5m2", "fp4_e2m1", "mu8", "niti", "mx(elem=fp8_e4m3)",
                     "mx(elem=fp4_e2m1)", "int(bits=8,scale=channel)", "bfp(bits=8,block=16)"]:
            xs = x if spec.startswith(("mx", "bfp")) else x4  # blocks along a long last axis
            cases.append((spec, lambda s=spec, xs=xs: core.quantize(xs, s)))
        for spec, rnd in [("mls(ex=2,mx=1,eg=8,mg=1,group=nc)", "stochastic"), ("mu8", "stochastic"),
                          ("niti", "pseudo_stochastic"), ("mx(elem=fp8_e4m3)", "stochastic")]:
            xs = x if spec.startswith("mx") else x4
            cases.append((f"{spec} {rnd}", lambda s=spec, r=rnd, xs=xs: core.quantize(xs, s, r, seed=1)))
        x2 = x.reshape(-1, 4096)  # a Linear layer's tensor: with nc grouping every element is a group
        for rnd in ("nearest", "stochastic"):
            cases.append((f"mls <2,1> nc 2-d {rnd}",
                          lambda r=rnd: core.quantize(x2, "mls(ex=2,mx=1,eg=8,mg=1,group=nc)", r, seed=1)))
    if args.only:
        keys = [k for k in args.only.split(",") if k]
        cases = [c for c in cases if c[0] == "torch fp8_e4m3fn cast" or any(k in c[0] for k in keys)]
    torch_ref = None
    print(f"# {n} float32 elements, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(f"{'case':48s} {'M elem/s':>10s} {'x torch fp8 cast':>17s} {'ns/elem':>8s}")
    results = {}
    for name, fn in cases:
        t = best_time(fn, args.repeat)
        rate = n / t / 1e6
        results[name] = rate
        if name == "torch fp8_e4m3fn cast":
            torch_ref = rate
        ratio = rate / torch_ref if torch_ref else float("nan")
        print(f"{name:48s} {rate:10.1f} {ratio:17.2f} {t / n * 1e9:8.2f}")
    if "ml_dtypes e4m3fn cast" in results and "fp8_e4m3 nearest" in results:
        ml = results["ml_dtypes e4m3fn cast"]
        print(f"fp8_e4m3 nearest vs ml_dtypes: {results['fp8_e4m3 nearest'] / ml:.1f}x")


if __name__ == "__main__":
    main()
