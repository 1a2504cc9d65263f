"""Sweep engine: parallel speed-up on local Dask workers, per-cell overhead, and a 1,000-cell scale run.

1. ``--cells`` (16) short digits runs as one sweep on ``--workers`` (2) embedded Dask workers, against
   the same runs one after another in this process (one torch thread each, like a worker); prints the
   wall-time ratio (target <= 0.6 on 2 cores) and the per-cell overhead:
   ``(wall x workers - sum of the runs' own training time) / cells`` (scheduling, store, start-up;
   target <= 0.5 s).
2. ``--scale`` (1000) one-step runs as one sweep: wall time, cells accounted for, store size and an
   integrity check of the store.

    python benchmarks/bench_sweep.py
    python benchmarks/bench_sweep.py --cells 8 --scale 200      # quicker
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SWEEP = """
name = "{name}"
[base]
epochs = {epochs}
max_steps = {steps}
checkpoint = false
[base.model]
name = "mlp"
hidden = [128, 64]
[base.scheme]
name = "mls"
first_last = true
[base.telemetry]
every = {every}
sample_every = 0
[grid]
seed = {seeds}
"""


def _spec(tmp: Path, name: str, cells: int, epochs: int, steps: int, every: int) -> Path:
    p = tmp / f"{name}.toml"
    p.write_text(SWEEP.format(name=name, epochs=epochs, steps=steps, every=every, seeds=list(range(cells))))
    return p


def _run_seconds(store: object, run_ids: list[str]) -> float:
    conn = store.conn  # type: ignore[attr-defined]
    q = ",".join("?" * len(run_ids))
    rows = conn.execute(f"SELECT ended - started FROM runs WHERE run_id IN ({q})", run_ids).fetchall()
    return float(sum(r[0] for r in rows if r[0] is not None))


def _numba_threads() -> int:
    import numba

    return int(numba.get_num_threads())


def speedup(tmp: Path, cells: int, workers: int, epochs: int) -> None:
    import torch

    from core.store import RunStore
    from core.sweep import expand, load, run
    from core.train import Run

    spec_path = _spec(tmp, "speed", cells, epochs, 100_000, 10)
    cfgs = [c.config for c in expand(load(spec_path))]
    serial_store = RunStore(tmp / "serial.sqlite")
    Run(cfgs[0], store=serial_store).start().wait()  # warm the kernels' cache outside the timed region
    t0 = time.perf_counter()
    ids = []
    for cfg in cfgs:  # torch's and Numba's default threads: what running them one by one gives a user
        r = Run(cfg, store=serial_store).start()
        r.wait()
        ids.append(str(r.id))
    serial = time.perf_counter() - t0
    print(f"  (serial with torch threads {torch.get_num_threads()}, numba threads {_numba_threads()})")
    par_store = RunStore(tmp / "parallel.sqlite")
    t0 = time.perf_counter()
    res = run(spec_path, store=par_store, workers=workers)
    wall = time.perf_counter() - t0
    par_ids = [str(x) for x in res.cells["run_id"]]
    trained = _run_seconds(par_store, par_ids)
    overhead = (wall * workers - trained) / cells
    print(f"{cells} runs of {epochs} epochs (digits MLP 64-128-64-10, MLS <2,1> W/A/E, telemetry every 10)")
    per_run = _run_seconds(serial_store, ids) / cells
    print(f"  one after another in one process : {serial:7.2f} s  ({per_run:.2f} s per run)")
    print(f"  sweep on {workers} local Dask workers  : {wall:7.2f} s  ({trained / cells:.2f} s per run in a worker)")
    print(f"  wall-time ratio sweep / serial   : {wall / serial:7.2f}   (target <= 0.6)")
    print(f"  per-cell overhead                : {overhead:7.3f} s (target <= 0.5; start-up of the cluster included)")
    print(f"  cells: {res.counts}")


def scale(tmp: Path, cells: int, workers: int) -> None:
    from core.store import RunStore
    from core.sweep import run

    spec_path = _spec(tmp, "scale", cells, 1, 1, 0)
    path = tmp / "scale.sqlite"
    store = RunStore(path)
    t0 = time.perf_counter()
    res = run(spec_path, store=store, workers=workers)
    wall = time.perf_counter() - t0
    df = store.sweep_cells("scale")
    runs = store.list_runs()
    with sqlite3.connect(path) as c:
        check = c.execute("PRAGMA integrity_check").fetchone()[0]
    size = sum(f.stat().st_size for f in tmp.glob("scale.sqlite*"))
    ok = len(df) == cells and (df["status"] == "done").all() and df["run_id"].notna().all() and len(runs) == cells
    print(f"{cells} one-step runs on {workers} local Dask workers: {wall:.1f} s "
          f"({wall / cells * 1000:.0f} ms per cell)")
    print(f"  every cell accounted for: {ok} ({res.counts}); store {size / 1e6:.1f} MB; integrity_check: {check}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=80, help="epochs per run (digits: 23 steps each)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--scale", type=int, default=1000, help="cells of the scale run (0 = skip)")
    args = ap.parse_args()
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        speedup(tmp, args.cells, args.workers, args.epochs)
        if args.scale:
            scale(tmp, args.scale, args.workers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
