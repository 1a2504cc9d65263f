"""Side-by-side comparison of the schemes (issue 5): ``python -m core.schemes.compare``.

Owns :func:`train` (one small run with fixed seeds, returning the finished :class:`~core.train.Run`)
and the CLI that trains fp32, mls, logbtq(MU8), logbtq(FP8 1-4-3), niti, sbm, cpt and pfq on each
``--dataset`` and prints the final test accuracies side by side with the effective BitOPs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from typing import Any

import core.schemes  # noqa: F401 - registers the schemes
from core.schemes.cost import attach_counter
from core.store import RunStore
from core.train import DataConfig, ModelConfig, OptimConfig, Run, RunConfig, Scheme, TelemetryConfig, get_scheme

__all__ = ["train", "default_lineup", "main"]


def train(scheme: Scheme, dataset: str = "digits", epochs: int = 3, *, model: str = "mlp",
          hidden: tuple[int, ...] = (64,), lr: float = 0.05, batch_size: int = 32, seed: int = 0,
          store: RunStore | str | None = None, telemetry_every: int = 20, root: str | None = None,
          train_subset: int | None = None, threads: int | None = 1, **run_kw: Any) -> Run:
    """Train ``scheme`` on a small model and wait for the end; a temporary store unless given."""
    if store is None:
        store = RunStore(tempfile.mktemp(prefix="lowbit-schemes-", suffix=".sqlite"))
    cfg = RunConfig(
        data=DataConfig(name=dataset, root=root, train_subset=train_subset),
        model=ModelConfig(name=model, hidden=hidden),
        scheme=scheme, optim=OptimConfig(name="sgd", lr=lr, momentum=0.9),
        telemetry=TelemetryConfig(every=telemetry_every, sample_every=0, hist=False, stats=False, stagnation=False),
        epochs=epochs, batch_size=batch_size, seed=seed, checkpoint=False, threads=threads, **run_kw)
    run = Run(cfg, store)
    run.prepare()
    attach_counter(run.model)  # BitOPs for every scheme (the seed schemes attach their own already)
    run.start()
    run.wait()
    return run


def default_lineup() -> list[tuple[str, Scheme]]:
    """The compared schemes with the settings used in ``docs/schemes.md``."""
    return [
        ("fp32", get_scheme("fp32")),
        ("mls", get_scheme("mls", first_last=True)),
        ("logbtq(mu8)", get_scheme("logbtq", k=1)),
        ("logbtq(fp8_143)", get_scheme("logbtq", codebook="fp8_143", k=1)),
    ] + _more()


def _more() -> list[tuple[str, Scheme]]:
    out = []
    for label, name, kw in (("niti", "niti", {}), ("sbm", "sbm", {}), ("cpt", "cpt", {}), ("pfq", "pfq", {}),
                           ("dfq", "dfq", {})):
        try:
            out.append((label, get_scheme(name, **kw)))
        except ValueError:
            pass
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.schemes.compare", description=__doc__)
    p.add_argument("--dataset", action="append", help="digits, mnist-t10k, ... (repeatable)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--root", default=None, help="dataset directory (e.g. /work/shared/datasets/mnist-t10k)")
    p.add_argument("--train-subset", type=int, default=None)
    p.add_argument("--only", default=None, help="comma-separated labels to run")
    a = p.parse_args(argv)
    datasets = a.dataset or ["digits"]
    lineup = default_lineup()
    if a.only:
        keep = set(a.only.split(","))
        lineup = [(l, s) for l, s in lineup if l in keep]
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    store = RunStore(tempfile.mktemp(prefix="lowbit-compare-", suffix=".sqlite"))
    results: dict[tuple[str, str], tuple[float | None, str, float, float | None]] = {}
    jobs = [(d, l, s) for d in datasets for l, s in lineup]
    bar = tqdm(jobs, file=sys.stderr, desc="compare") if tqdm else jobs
    for d, label, scheme in bar:
        if tqdm:
            bar.set_postfix_str(f"{d}:{label}")
        t0 = time.perf_counter()
        root = a.root if d != "digits" else None
        run = train(scheme, d, a.epochs, hidden=(a.hidden,), seed=a.seed, store=store, root=root,
                    train_subset=a.train_subset)
        c = getattr(run.model, "_bitops_counter", None)
        bitops = c.total if c is not None else None
        results[(d, label)] = (run.result.get("test_acc"), run.status, time.perf_counter() - t0, bitops)
    labels = [l for l, _ in lineup]
    w = max(len(l) for l in labels) + 2
    print(f"{'scheme':<{w}}" + "".join(f"{d:>22}" for d in datasets))
    for l in labels:
        cells = []
        for d in datasets:
            acc, status, sec, _ = results[(d, l)]
            cells.append(f"{(f'{acc:.4f}' if acc is not None else 'n/a')} {status[:4]} {sec:5.1f}s".rjust(22))
        print(f"{l:<{w}}" + "".join(cells))
    print()
    print("effective BitOPs of the training forwards (sum over multiply-adds of bits(a)*bits(w)):")
    for l in labels:
        vals = [results[(d, l)][3] for d in datasets]
        print(f"{l:<{w}}" + "".join(f"{(f'{v:.3e}' if v is not None else 'n/a'):>22}" for v in vals))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
