"""Compile the Numba kernels ahead of their first use: ``python -m core.warm [--jobs N]``.

Every kernel is ``cache=True`` (:data:`core.kernels.config.JIT_OPTIONS`): the machine code of each
specialization (argument types and array layouts) is written next to the kernel's source, in
``core/kernels/__pycache__`` (an editable install or a writable site-packages; Numba falls back to a
per-user cache directory, and ``NUMBA_CACHE_DIR`` overrides both). A process that finds it loads it
instead of compiling, so the first quantize of a family in a fresh process costs milliseconds plus
Numba's own start-up, not seconds of compilation.

:func:`warm` calls the public API on small tensors of every family, rounding mode, dtype and the
layouts the dispatch distinguishes (flat, 2-d rows, 4-d channels; below and above the serial
threshold), plus the metric kernels the Format Lab uses, so every specialization a user meets is
compiled once. ``scripts/run.sh`` and ``scripts/test.sh`` run it after installing; with a warm cache
it takes a few seconds, and Numba recompiles on its own whatever source changed since.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Sequence

__all__ = ["CASES", "warm", "main"]

#: one spec per kernel path (the grid parameters are run-time arguments: one compile serves every
#: format of a path); ``mulaw(bits=10)`` takes the wide-codebook loop, ``group=none`` the MLS group path
CASES: tuple[str, ...] = (
    "fp8_e4m3", "fp8_e5m2", "bf16", "fp16", "fp4_e2m1",
    "mx(elem=fp8_e4m3)", "mx(elem=fp4_e2m1)", "bfp(bits=8,block=16)", "scaled(elem=fp8_e4m3)", "nvfp4",
    "scaled(elem=fp8_e4m3,block=128x128)", "scaled(elem=fp8_e4m3,block=row)", "binary8p3", "e8m0", "nf4",
    "mls(ex=2,mx=1,eg=8,mg=1,group=nc)", "mls(ex=2,mx=1,eg=8,mg=1,group=c)", "mls(ex=2,mx=1,eg=8,mg=1,group=none)",
    "mu8", "mulaw(bits=10)",
    "int8", "int(bits=8,scale=channel)", "fixed(bits=8,frac=4)", "niti",
)
#: shapes: flat below the serial threshold (``SERIAL_BELOW`` = 65536), and 2-d rows / 4-d channels above it
SHAPES: tuple[tuple[int, ...], ...] = ((1000,), (128, 520), (17, 16, 16, 16))


def _modes(spec: object) -> list[str]:
    return [m for m in getattr(spec, "roundings", ("nearest",)) if not m.startswith("stochastic_")]


def warm(cases: Sequence[str] = CASES, metrics: bool = True) -> int:
    """Quantize small tensors through every kernel path of ``cases`` (and the metric kernels);
    returns the number of calls made. Errors of a family propagate (a kernel that does not compile
    is a bug)."""
    import numpy as np
    import torch

    from .formats import parse_format

    gen = torch.Generator().manual_seed(0)
    base = {s: torch.randn(s, generator=gen) for s in SHAPES}
    calls = 0
    for case in cases:
        spec = parse_format(case)
        for shape, x32 in base.items():
            # half inputs run the float32/float64 kernels (plus the rounding back): no 4-d case for them
            halves = (torch.float16, torch.bfloat16) if len(shape) < 4 else ()
            for dtype in (torch.float32, torch.float64, *halves):
                x = x32.to(dtype)
                for mode in _modes(spec):
                    try:
                        spec.quantize(x, mode, 1)
                    except ValueError:  # a mode this spec/dtype does not take (validated elsewhere)
                        continue
                    calls += 1
    if metrics:
        from .kernels.metrics import error_metrics_from_sums, error_sums, log2_bins, range_fractions, stats_hist

        for dt in (np.float32, np.float64):
            for n in (1000, 1 << 18):
                x64 = np.random.default_rng(0).standard_normal(n)
                xf, yf = x64.astype(dt), (x64 * 1.01).astype(dt)
                bins, _ = log2_bins(xf, -20.0, 4.0, 24 * 16)
                sums, _, _ = error_sums(xf, yf, bins, 24 * 16, chunked=True)
                error_metrics_from_sums(sums)
                error_sums(xf, yf)
                range_fractions(xf, np.array([448.0]), np.array([2.0**-9]))
                range_fractions(xf, np.full(n, 448.0), np.full(n, 2.0**-9))
                stats_hist(xf, -20.0, 4.0, 96)
                calls += 7
        from .kernels.arith_mls import partial_sum_range  # the acc_bits telemetry

        partial_sum_range(np.ones((2, 2, 3, 3), np.int64), np.ones((1, 2, 4, 4), np.int64), 1, 1,
                          np.zeros(2, np.int64))
        calls += 1
    return calls


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.warm",
                                description="Compile the Numba kernels into their cache (once per install; "
                                            "seconds when the cache is already warm).")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                   help="processes compiling side by side (default: min(2, cores))")
    p.add_argument("--cases", nargs="+", default=None, help="spec strings (default: one per kernel path)")
    p.add_argument("--no-metrics", action="store_true", help="skip the metric kernels")
    p.add_argument("--quiet", action="store_true", help="print nothing")
    args = p.parse_args(argv)
    cases = list(args.cases or CASES)
    t0 = time.perf_counter()
    if args.jobs > 1 and len(cases) > 1:
        # the slowest families first, spread round-robin; Numba's cache writes are atomic (rename)
        parts = [cases[i::args.jobs] for i in range(args.jobs)]
        procs = [subprocess.Popen([sys.executable, "-m", "core.warm", "--jobs", "1", "--quiet", "--cases", *part]
                                  + (["--no-metrics"] if i or args.no_metrics else []))
                 for i, part in enumerate(parts) if part]
        rc = max(pr.wait() for pr in procs)
        calls = -1
    else:
        calls = warm(cases, metrics=not args.no_metrics)
        rc = 0
    if not args.quiet:
        what = f"{calls} calls" if calls >= 0 else f"{len(cases)} formats in {args.jobs} processes"
        sys.stdout.write(f"core.warm: Numba kernels compiled/loaded ({what}) in {time.perf_counter() - t0:.1f} s\n")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
