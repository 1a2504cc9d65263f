"""Side-by-side comparison of the schemes: ``python -m core.schemes.compare``.

Owns :func:`train` (one small run with fixed seeds, returning the finished :class:`~core.train.Run`),
:func:`default_lineup` (the compared schemes and their settings) and the command line, which trains
every scheme of the line-up on each ``--dataset`` and prints the final test accuracies side by side
with the effective BitOPs. The settings and measured numbers are in docs/schemes.md ("Comparison").
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import core.schemes  # noqa: F401 - registers the schemes
from core.cli import SEED_MAX, ArgumentParser, fail, int_in
from core.train.cost import attach_counter
from core.data import DatasetError, load_dataset
from core.models.base import MAX_HIDDEN
from core.store import RunStore, StoreError
from core.train import DataConfig, ModelConfig, OptimConfig, Run, RunConfig, Scheme, TelemetryConfig, get_scheme

__all__ = ["train", "default_lineup", "build_parser", "main"]


def train(scheme: Scheme, dataset: str = "digits", epochs: int = 3, *, model: str = "mlp",
          hidden: tuple[int, ...] = (64,), lr: float = 0.05, batch_size: int = 32, seed: int = 0,
          store: RunStore | str | None = None, telemetry_every: int = 20, root: str | None = None,
          train_subset: int | None = None, threads: int | None = 1, **run_kw: Any) -> Run:
    """Train ``scheme`` on a small model and wait for the end (in ``store``: default the run store of
    ``$LOWBIT_STORE`` or the user data directory)."""
    if store is None:
        store = RunStore()
    cfg = RunConfig(
        data=DataConfig(name=dataset, root=root, train_subset=train_subset),
        model=ModelConfig(name=model, hidden=hidden),
        scheme=scheme, optim=OptimConfig(name="sgd", lr=lr, momentum=0.9),
        telemetry=TelemetryConfig(every=telemetry_every, sample_every=0, hist=False, stats=False, stagnation=False),
        epochs=epochs, batch_size=batch_size, seed=seed, checkpoint=False, threads=threads, **run_kw)
    run = Run(cfg, store)
    run.prepare()
    if run.model is None:  # pragma: no cover - prepare() always builds the model
        raise RuntimeError("Run.prepare() did not build a model")
    attach_counter(run.model)  # BitOPs for every scheme (the papers' schemes attach their own already)
    run.start()
    run.wait()
    return run


def default_lineup() -> list[tuple[str, Scheme]]:
    """The compared schemes with the settings used in ``docs/schemes.md``: (label, scheme) pairs."""
    return [
        ("fp32", get_scheme("fp32")),
        ("mls", get_scheme("mls", first_last=True)),
        ("logbtq(mu8)", get_scheme("logbtq")),
        ("logbtq(fp8_143)", get_scheme("logbtq", codebook="fp8_143")),
    ] + [(name, get_scheme(name)) for name in ("niti", "sbm", "cpt", "pfq", "dfq")]


_DESCRIPTION = """\
Train every scheme of the line-up (fp32, mls, logbtq with MU8 and with FP8(1-4-3), niti, sbm, cpt,
pfq, dfq) on a small MLP with the same data, seed and optimizer, then print the final test accuracy,
status and wall time of each run side by side for every dataset, followed by the effective BitOPs of
the training forwards (sum over multiply-adds of bits(a) * bits(w)). Runs go to a temporary store.
"""

_EPILOG = """\
examples:
  python -m core.schemes.compare
  python -m core.schemes.compare --dataset digits --dataset mnist-t10k --root path/to/mnist-t10k --epochs 5
  python -m core.schemes.compare --only fp32,mls,niti --epochs 3
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used for ``--help``)."""
    labels = ", ".join(label for label, _ in default_lineup())
    p = ArgumentParser(prog="python -m core.schemes.compare", description=_DESCRIPTION, epilog=_EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", action="append",
                   help="dataset to train on (repeatable; default: digits), e.g. digits, mnist-t10k, mnist1d")
    p.add_argument("--epochs", type=int, default=5, help="training epochs per run (default: 5)")
    p.add_argument("--hidden", type=int_in(1, MAX_HIDDEN), default=64,
                   help="width of the MLP's hidden layer (default: 64)")
    p.add_argument("--seed", type=int_in(0, SEED_MAX), default=0, help="run seed shared by all runs (default: 0)")
    p.add_argument("--root", default=None,
                   help="folder with the dataset files, for datasets other than the embedded digits")
    p.add_argument("--train-subset", type=int_in(1), default=None,
                   help="train on N training examples (a fixed, seeded subset; default: all)")
    p.add_argument("--only", default=None, metavar="LABELS",
                   help=f"comma-separated subset of the line-up to run (labels: {labels})")
    p.add_argument("--store", default=None,
                   help="run store the runs are kept in (default: $LOWBIT_STORE or the user data dir)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; returns the exit status."""
    a = build_parser().parse_args(argv)
    datasets = a.dataset or ["digits"]
    lineup = default_lineup()
    try:
        if a.only is not None:
            keep = [x.strip() for x in a.only.split(",") if x.strip()]
            known = [label for label, _ in lineup]
            unknown = [x for x in keep if x not in known]
            if unknown or not keep:
                raise ValueError(f"--only: unknown label(s) {', '.join(unknown) or '(none given)'}; "
                                 f"labels: {', '.join(known)}")
            lineup = [(label, s) for label, s in lineup if label in keep]
        if a.epochs < 1:
            raise ValueError(f"--epochs must be >= 1, got {a.epochs}")
        from core.data import DATASETS

        bad = [d for d in datasets if d not in DATASETS]
        if bad:
            raise ValueError(f"unknown dataset(s) {', '.join(bad)}; known: {', '.join(sorted(DATASETS))}")
        for d in dict.fromkeys(datasets):  # missing or bad dataset files: reported before any run starts
            try:
                load_dataset(DataConfig(name=d, root=a.root if d != "digits" else None,
                                         train_subset=a.train_subset))
            except (ValueError, OSError) as exc:
                raise ValueError(f"{d}: {exc}") from None
        store = RunStore(a.store)
        store.require_writable()  # a read-only store is refused before any run starts
    except (ValueError, StoreError) as exc:
        return fail(exc)
    results: dict[tuple[str, str], tuple[float | None, str, float, float | None]] = {}
    jobs = [(d, label, s) for d in datasets for label, s in lineup]
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        bar = None
    else:
        bar = tqdm(total=len(jobs), file=sys.stderr, desc="compare")
    for d, label, scheme in jobs:
        if bar is not None:
            bar.set_postfix_str(f"{d}:{label}")
        t0 = time.perf_counter()
        root = a.root if d != "digits" else None
        try:
            run = train(scheme, d, a.epochs, hidden=(a.hidden,), seed=a.seed, store=store, root=root,
                        train_subset=a.train_subset)
        except (ValueError, DatasetError) as exc:
            if bar is not None:
                bar.close()
            return fail(f"{d}: {exc}")
        c = getattr(run.model, "_bitops_counter", None)
        bitops = c.total if c is not None else None
        results[(d, label)] = (run.result.get("test_acc"), run.status, time.perf_counter() - t0, bitops)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    labels = [label for label, _ in lineup]
    w = max((len(label) for label in labels), default=6) + 2
    out = [f"{'scheme':<{w}}" + "".join(f"{d:>22}" for d in datasets)]
    for label in labels:
        cells = []
        for d in datasets:
            acc, status, sec, _ = results[(d, label)]
            cells.append(f"{(f'{acc:.4f}' if acc is not None else 'n/a')} {status[:4]} {sec:5.1f}s".rjust(22))
        out.append(f"{label:<{w}}" + "".join(cells))
    out.append("")
    out.append("effective BitOPs of the training forwards (sum over multiply-adds of bits(a)*bits(w)):")
    for label in labels:
        vals = [results[(d, label)][3] for d in datasets]
        out.append(f"{label:<{w}}" + "".join(f"{(f'{v:.3e}' if v is not None else 'n/a'):>22}" for v in vals))
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
