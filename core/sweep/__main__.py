"""``python -m core.sweep``: run a sweep file on Dask, show a sweep's status, list the sweeps.

Examples::

    python -m core.sweep run sweeps/formats_8bit.toml                  # embedded cluster, one worker per core
    python -m core.sweep run sweeps/mls_table3.toml --workers 2 --store runs.sqlite
    python -m core.sweep run sweeps/cpt_bmin.toml --scheduler tcp://127.0.0.1:8786
    python -m core.sweep plan sweeps/mls_table3.toml                   # the cells, without running them
    python -m core.sweep status mls-table3
    python -m core.sweep list

Running a finished sweep again trains nothing; an interrupted one trains only what is missing.
Exit status: 0 when every cell ended (done or diverged), 1 when some failed or the sweep was
stopped, 2 for bad input (a malformed file, an unknown key, an unreachable scheduler).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any, Sequence

from core.cli import ArgumentParser, fail, int_in

__all__ = ["main", "build_parser"]

#: the most embedded workers a sweep may start (each is a process with torch: ~0.4 GB)
MAX_WORKERS = 4 * (os.cpu_count() or 1)


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m core.sweep",
                                description="Grids of training runs on a Dask cluster; every cell is a run in "
                                            "the store.")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    r = sub.add_parser("run", help="train every unfinished cell of a sweep file")
    r.add_argument("file", help="sweep TOML file (see docs/sweeps.md)")
    r.add_argument("--workers", type=int_in(1, MAX_WORKERS),
                   help=f"embedded Dask workers, one thread each (default: one per core; at most {MAX_WORKERS})")
    r.add_argument("--scheduler", help="address of a running dask scheduler, e.g. tcp://127.0.0.1:8786")
    r.add_argument("--store", help="run store file (default: $LOWBIT_STORE or the user data dir)")
    r.add_argument("--rerun-failed", action="store_true", help="also train again the cells that ended with an error")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    pl = sub.add_parser("plan", help="print the cells of a sweep file without running anything")
    pl.add_argument("file")
    s = sub.add_parser("status", help="a sweep's cells and their results")
    s.add_argument("name")
    s.add_argument("--store")
    s.add_argument("--metric", help="metric to show (default: the sweep's own)")
    ls = sub.add_parser("list", help="the sweeps in the store")
    ls.add_argument("--store")
    st = sub.add_parser("stop", help="ask a running sweep to stop (its running cells end 'stopped')")
    st.add_argument("name")
    st.add_argument("--store")
    return p


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _table(name: str, store: Any, metric: str | None = None) -> str:
    """The grid as text: one row per cell with its coordinates, status and metric."""
    from .metrics import METRICS, metric_values
    from .spec import value_label

    sw = store.get_sweep(name)
    metric = metric or sw["metric"]
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    m = METRICS[metric]
    cells = store.sweep_cells(name)
    values = metric_values(store, list(cells["run_id"]), metric)
    keys: list[str] = []
    for c in cells["coords"]:
        keys += [k for k in c if k not in keys]
    rows = [[value_label(c.get(k)) for k in keys]
            + [s, m.fmt.format(values[r]) if r in values else "-", r if isinstance(r, str) else "-"]
            for c, s, r in zip(cells["coords"], cells["status"], cells["run_id"])]
    head = keys + ["status", metric, "run"]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda xs: "  ".join(str(x).ljust(w) for x, w in zip(xs, widths))  # noqa: E731
    return "\n".join([line(head), line("-" * w for w in widths), *(line(r) for r in rows)])


def _progress_bar(enabled: bool) -> tuple[Any, Any]:
    if not enabled:
        return None, None
    from tqdm import tqdm

    bar = tqdm(total=0, unit="cell", file=sys.stderr, dynamic_ncols=True)

    def on(p: Any) -> None:
        if bar.total != p.todo:
            bar.total = p.todo
        bar.update(p.done + p.failed - bar.n)
        bar.set_postfix(done=p.done, failed=p.failed, running=p.running, refresh=False)
        bar.refresh()

    return bar, on


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the sweep like Ctrl-C: running cells end 'stopped'


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("distributed").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    from core.store import RunStore, StoreError

    try:
        if args.cmd == "plan":
            from .spec import expand, load

            spec = load(args.file)
            cells = expand(spec)
            _out(f"sweep {spec.name}: {len(cells)} cells, metric {spec.metric}, axes {', '.join(spec.default_axes)}")
            for c in cells:
                _out(f"  {c.index:4d}  {c.key}  {c.label}")
            return 0
        if args.cmd == "list":
            store = RunStore(args.store)
            df = store.list_sweeps()
            if not len(df):
                _out(f"no sweeps in {store.path}")
                return 0
            for r in df.itertuples(index=False):
                _out(f"{r.sweep_id}  {r.status}  {r.n_done}/{r.n_cells} done, {r.n_diverged} diverged, "
                     f"{r.n_error + r.n_interrupted} failed, {r.n_running + r.n_paused} running  ({r.source})")
            return 0
        if args.cmd == "status":
            store = RunStore(args.store)
            try:
                sw = store.get_sweep(args.name)
            except KeyError:
                raise ValueError(f"no sweep {args.name!r} in {store.path}") from None
            _out(f"sweep {args.name}: {sw['status']} on {sw['engine'] or '?'}  ({sw['source']})")
            _out(_table(args.name, store, args.metric))
            return 0
        if args.cmd == "stop":
            store = RunStore(args.store)
            try:
                store.get_sweep(args.name)
            except KeyError:
                raise ValueError(f"no sweep {args.name!r} in {store.path}") from None
            store.request_sweep_stop(args.name)
            _out(f"asked sweep {args.name} to stop")
            return 0
        # run
        from .engine import EngineError
        from .runner import run
        from .spec import expand, load

        spec = load(args.file)
        expand(spec)  # every cell is checked before a cluster starts
        store = RunStore(args.store)
        store.require_writable()  # a read-only store is refused before a cluster starts
        bar, on = _progress_bar(not args.no_progress)
        old = signal.signal(signal.SIGTERM, _sigterm)
        try:
            res = run(spec, store=store, workers=args.workers, scheduler=args.scheduler,
                      rerun_failed=args.rerun_failed, on_progress=on)
        except KeyboardInterrupt:
            if bar is not None:
                bar.close()
            sys.stderr.write(f"sweep {spec.name} stopped; run the same command to continue\n")
            return 1
        except EngineError as exc:
            return fail(exc)
        finally:
            signal.signal(signal.SIGTERM, old)
        if bar is not None:
            bar.close()
        _out(_table(spec.name, store))
        counts = ", ".join(f"{v} {k}" for k, v in sorted(res.counts.items()))
        _out(f"sweep {spec.name} {res.status}: {res.trained} cells trained in {res.seconds:.1f} s ({counts}); "
             f"store {res.store}")
        ok = res.status == "done" and all(k in ("done", "diverged") for k in res.counts)
        return 0 if ok else 1
    except (ValueError, StoreError, RuntimeError) as exc:
        return fail(exc)


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `... | head` ends quietly
    raise SystemExit(main())
