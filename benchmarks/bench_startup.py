"""Latency a user feels: start-up figures, each in fresh processes, next to a reference from the same run.

    python benchmarks/bench_startup.py [--repeat 3] [--cold-repeat 1] [--no-cold] [--serve] [--commands]

Reference: the wall time of a bare ``python -c "import torch"`` (medians of ``--repeat`` processes).
Measured, each in its own fresh process (medians):

* ``import core``, and the read-only commands: ``--help`` of ``core.train``, ``core.sweep``,
  ``explorer.export``, ``lowbit-explorer``; ``explorer.export --list``; ``core.sweep list`` and
  ``status`` (on a temporary store holding one small sweep);
* the first quantize of each family (1M float32 values, after ``import torch, core``; mu8 also its
  first stochastic call after the nearest one) with the warm Numba cache (filled first by one
  untimed run of each case, as ``python -m core.warm`` does at install) and with a cold one (an empty temporary
  ``NUMBA_CACHE_DIR``: everything compiles); plus the Numba floor: the first call of a tiny cached
  kernel (Numba's own import and start-up, which every first call pays);
* with ``--commands``: only the reference, ``import core`` and the command lines (no quantize, no server);
* with ``--serve``: ``panel serve apps/explorer.py --warm`` (what ``scripts/run.sh`` starts): the
  seconds until it reports ready and the first ``GET /explorer`` (the page's document).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

#: family -> (spec, rounding modes in call order)
FAMILIES = {
    "float (fp8_e4m3)": ("fp8_e4m3", ["nearest"]),
    "mx": ("mx(elem=fp8_e4m3)", ["nearest"]),
    "mls": ("mls(ex=2,mx=1,eg=8,mg=1,group=nc)", ["nearest"]),
    "mu8": ("mu8", ["nearest", "stochastic"]),
    "int (channel)": ("int(bits=8,scale=channel)", ["nearest"]),
    "niti": ("niti", ["nearest"]),
}

_FIRST = r"""
import sys, time
import torch, core
spec, modes = sys.argv[1], sys.argv[2].split(",")
x = torch.randn(1 << 20, generator=torch.Generator().manual_seed(0)).reshape(-1, 64, 16, 16)
out = []
for m in modes:
    t = time.perf_counter()
    core.quantize(x, spec, m, seed=1)
    out.append(time.perf_counter() - t)
print(" ".join(f"{v:.6f}" for v in out))
"""

_FLOOR = r"""
import time
import numpy as np
import torch  # noqa: F401  (as in the quantize case)
t = time.perf_counter()
from core.kernels.grid_round import random_words
random_words(1, 0, np.empty(4, dtype=np.int64))
print(f"{time.perf_counter() - t:.6f}")
"""


def _env(**extra: str) -> dict[str, str]:
    """This environment with the checkout first on the path; Numba's default cache unless ``extra`` names one."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(PYTHONPATH=str(ROOT), **extra)
    return env


def wall(cmd: list[str], env: dict[str, str] | None = None) -> float:
    """Seconds a fresh process takes from start to exit (it must succeed)."""
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, env=env or _env(), capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr[-1500:]}")
    return dt


def median_wall(cmd: list[str], repeat: int, env: dict[str, str] | None = None) -> float:
    return statistics.median(wall(cmd, env) for _ in range(repeat))


def child_times(code: str, args: list[str], env: dict[str, str]) -> list[float]:
    r = subprocess.run([PY, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{args} failed: {r.stderr[-1500:]}")
    return [float(v) for v in r.stdout.split()]


def _store_with_sweep(tmp: Path) -> Path:
    path = tmp / "runs.sqlite"
    code = ("import sys; from core.store import RunStore; s = RunStore(sys.argv[1]); "
            "s.begin_sweep('bench', [('a', {'lr': 0.1}, {}), ('b', {'lr': 0.2}, {})], axes=['lr'], source='bench')")
    subprocess.run([PY, "-c", code, str(path)], cwd=ROOT, env=_env(), check=True)
    return path


def serve(repeat: int) -> tuple[float, float]:
    """(ready, first GET) medians of ``panel serve apps/explorer.py --warm`` on a free port."""
    ready, first = [], []
    for _ in range(repeat):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        tmp = tempfile.mkdtemp()
        t0 = time.perf_counter()
        p = subprocess.Popen([str(Path(PY).parent / "panel"), "serve", "apps/explorer.py", "--address", "127.0.0.1",
                              "--port", str(port), "--warm", f"--allow-websocket-origin=127.0.0.1:{port}"], cwd=ROOT,
                             env=_env(LOWBIT_STORE=str(Path(tmp) / "runs.sqlite")), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            assert p.stdout is not None
            for line in p.stdout:
                if "running at" in line:
                    break
            t1 = time.perf_counter()
            urllib.request.urlopen(f"http://127.0.0.1:{port}/explorer", timeout=300).read()
            t2 = time.perf_counter()
        finally:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(30)
            shutil.rmtree(tmp, ignore_errors=True)
        ready.append(t1 - t0)
        first.append(t2 - t1)
    return statistics.median(ready), statistics.median(first)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3, help="fresh processes per warm figure (median)")
    ap.add_argument("--cold-repeat", type=int, default=1, help="fresh processes per cold-cache figure")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-cache figures (they compile everything)")
    ap.add_argument("--serve", action="store_true", help="also time panel serve --warm and its first page")
    ap.add_argument("--commands", action="store_true",
                    help="only the reference, import core and the command lines (no quantize, no server)")
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES), metavar="FAMILY")
    args = ap.parse_args()
    import numba
    import torch

    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, python "
          f"{platform.python_version()}, torch {torch.__version__}, numba {numba.__version__}; medians of "
          f"{args.repeat} fresh processes (cold: {args.cold_repeat})")
    ref = median_wall([PY, "-c", "import torch"], args.repeat)
    print(f"{'case':52s} {'seconds':>9s} {'x import torch':>15s}")

    def row(name: str, sec: float) -> None:
        print(f"{name:52s} {sec:9.3f} {sec / ref:15.2f}", flush=True)

    row("reference: python -c 'import torch' (process)", ref)
    row("python -c 'import core' (process)", median_wall([PY, "-c", "import core"], args.repeat))
    tmp = Path(tempfile.mkdtemp())
    try:
        store = _store_with_sweep(tmp)
        exe = Path(PY).parent / "lowbit-explorer"
        cli = [
            ("python -m core.train --help", [PY, "-m", "core.train", "--help"]),
            ("python -m core.sweep --help", [PY, "-m", "core.sweep", "--help"]),
            ("python -m explorer.export --help", [PY, "-m", "explorer.export", "--help"]),
            ("lowbit-explorer --help", [str(exe), "--help"] if exe.exists() else [PY, "-m", "explorer", "--help"]),
            ("python -m explorer.export --list", [PY, "-m", "explorer.export", "--list", "--store", str(store)]),
            ("python -m core.sweep list", [PY, "-m", "core.sweep", "list", "--store", str(store)]),
            ("python -m core.sweep status NAME", [PY, "-m", "core.sweep", "status", "bench", "--store", str(store)]),
        ]
        for name, cmd in cli:
            row(f"{name} (process)", median_wall(cmd, args.repeat))
        if args.commands:
            return

        # first quantize per family: warm cache (filled first by one run of each case), then cold (empty cache)
        child_times(_FLOOR, [], _env())
        for fam in args.families:
            child_times(_FIRST, [FAMILIES[fam][0], ",".join(FAMILIES[fam][1])], _env())
        caches = [("warm", None, args.repeat)] + ([] if args.no_cold else [("cold", "cold", args.cold_repeat)])
        for label, cold, rep in caches:
            floor = []
            for _ in range(rep):
                env = _env(NUMBA_CACHE_DIR=tempfile.mkdtemp(dir=tmp)) if cold else _env()
                floor.append(child_times(_FLOOR, [], env)[0])
            row(f"Numba floor: first call of a tiny kernel, {label} cache", statistics.median(floor))
            for fam in args.families:
                spec, modes = FAMILIES[fam]
                runs = []
                for _ in range(rep):
                    env = _env(NUMBA_CACHE_DIR=tempfile.mkdtemp(dir=tmp)) if cold else _env()
                    runs.append(child_times(_FIRST, [spec, ",".join(modes)], env))
                for i, m in enumerate(modes):
                    what = "first quantize" if i == 0 else f"then first {m}"
                    row(f"{fam} {what}, {label} cache", statistics.median(r[i] for r in runs))
        if args.serve:
            ready, first = serve(args.repeat)
            row("panel serve --warm: until ready", ready)
            row("panel serve --warm: first GET /explorer after ready", first)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
