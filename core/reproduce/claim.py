"""A claim of the seed papers, what a test of it returns, and the context the tests run in.

Owns :class:`Claim` (one registry entry: id, paper, where in the paper, the paper's value, and the
``run(ctx) -> Result`` function), :class:`Result` (verdict, our value, the checks, the exact command,
the run ids, plots, tables), :class:`Profile` (how big the runs are: ``quick`` on the 2-core VM,
``full`` with the papers' epochs and CIFAR-10 where it is available) and :class:`Context` (the run
store, one shared Dask engine, data roots, where plots go; :meth:`Context.sweep` trains a sweep once
per report and hands every claim that reads it the same cells).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .verdict import Check, Table, Verdict, combine

if TYPE_CHECKING:
    import pandas as pd

    from core.store import RunStore
    from core.sweep import Engine, SweepSpec

__all__ = ["Claim", "Result", "Profile", "Context", "PROFILES", "find_mnist_t10k", "find_cifar10"]

#: the repository root (sweep files are read from ``sweeps/`` there)
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    """What testing one claim gave.

    Attributes:
        ours: our value or ordering, one line.
        checks: the comparisons (:class:`~core.reproduce.verdict.Check`); the verdict combines them.
        command: the exact command(s) that produce the runs or numbers.
        run_ids: the runs in the report's store the result is read from.
        sweeps: names of the sweeps in that store.
        data: which data was used.
        notes: caveats, one paragraph each.
        tables: small tables for the report.
        plots: image paths relative to the report's folder.
        verdict: set from the checks unless given (e.g. cannot test here).
        why: the reason for "cannot test here".
    """

    ours: str
    checks: list[Check] = field(default_factory=list)
    command: str = ""
    run_ids: list[str] = field(default_factory=list)
    sweeps: list[str] = field(default_factory=list)
    data: str = ""
    notes: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    verdict: Verdict | None = None
    why: str = ""
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.verdict is None:
            self.verdict = combine(self.checks)


def cannot(why: str, **kw: Any) -> Result:
    """A result for a claim that cannot be tested here, and why."""
    return Result(ours="-", verdict=Verdict.CANNOT_TEST, why=why, **kw)


@dataclass(frozen=True)
class Claim:
    """One claim of a seed paper, as one registry entry.

    Attributes:
        id: short stable name (``mls-table1``), used by ``--only``.
        paper: which paper (``MLS``, ``LogBTQ``, ``NITI``, ``survey (CPT)``, ...).
        where: where in the paper (``Table 1``, ``section 5.1, Fig. 3``).
        paper_value: the paper's number or ordering, quoted.
        run: tests it: ``run(ctx) -> Result``.
    """

    id: str
    paper: str
    where: str
    paper_value: str
    run: Callable[["Context"], Result]

    @property
    def doc(self) -> str:
        """The first paragraph of the test function's docstring."""
        return " ".join((self.run.__doc__ or "").strip().split("\n\n")[0].split())


@dataclass(frozen=True)
class Profile:
    """How big the training runs of a report are.

    Attributes:
        name: ``quick`` (digits, MNIST-t10k, small models, few seeds and epochs) or ``full``.
        seeds: seeds of the report's own sweeps (the shipped sweep files keep theirs).
        niti_epochs: epochs of the NITI vs fp32 runs (the paper: 20).
        fig3_epochs: epochs of the run whose tensors the Fig. 3 ARE is measured on.
        acc_epochs: epochs of the accumulator-width run.
        max_steps: cap on every run of the report's own sweeps (None: no cap; tests use a small one).
        shipped: train the shipped sweep files (sweeps/*.toml) the claims read.
        cifar: run the CIFAR-10 claims when the data is there.
    """

    name: str
    seeds: tuple[int, ...] = (0, 1, 2)
    niti_epochs: int = 5
    fig3_epochs: int = 10
    acc_epochs: int = 3
    max_steps: int | None = None
    shipped: bool = True
    cifar: bool = False


PROFILES: dict[str, Profile] = {
    "quick": Profile("quick", seeds=(0, 1), niti_epochs=5, fig3_epochs=10, acc_epochs=3),
    "full": Profile("full", seeds=(0, 1, 2), niti_epochs=20, fig3_epochs=30, acc_epochs=10, cifar=True),
}


def _first_dir(candidates: list[Path | None], probe: Callable[[Path], bool]) -> Path | None:
    for c in candidates:
        if c is not None and probe(c):
            return c
    return None


def find_mnist_t10k(root: str | os.PathLike[str] | None = None) -> Path | None:
    """The folder with the MNIST t10k IDX files: ``root``, ``$LOWBIT_MNIST_T10K``, the catalogue cache
    (``core.data.catalogue.cache_dir``), ``../shared/datasets/mnist-t10k`` beside the checkout or
    ``/work/shared/datasets/mnist-t10k``; None when none has them."""
    from core.data.catalogue import cache_dir
    from core.data.mnist import find_mnist_file

    env = os.environ.get("LOWBIT_MNIST_T10K")
    cands: list[Path | None] = [Path(root) if root else None, Path(env) if env else None, cache_dir("mnist-t10k"),
                                REPO.parent / "shared" / "datasets" / "mnist-t10k",
                                Path("/work/shared/datasets/mnist-t10k")]
    if root:
        cands = cands[:1]
    return _first_dir(cands, lambda p: find_mnist_file(p, "t10k-images-idx3-ubyte.gz") is not None)


def find_cifar10(root: str | os.PathLike[str] | None = None) -> Path | None:
    """The folder with CIFAR-10's python batches (``cifar-10-batches-py/`` or the tarball): ``root`` or the
    catalogue cache; None when neither has them."""
    from core.data.catalogue import cache_dir

    def has(p: Path) -> bool:
        return (p / "cifar-10-batches-py" / "data_batch_1").is_file() or (p / "cifar-10-python.tar.gz").is_file() \
            or (p / "data_batch_1").is_file()

    cands: list[Path | None] = [Path(root)] if root else [cache_dir("cifar10")]
    return _first_dir(cands, has)


class Context:
    """Where a report's claims run: the store, the engine, the data, the output folder.

    Args:
        out: the report's folder (created); plots go to ``out/reproduction/``.
        store: the run store path (default ``out/runs.sqlite``).
        profile: a :class:`Profile`.
        workers: Dask workers of the shared embedded engine (started at the first sweep).
        mnist_root, cifar_root: data folders (see :func:`find_mnist_t10k`, :func:`find_cifar10`).
        download: let CIFAR-10 be downloaded when it is missing.
        log: where per-claim and per-sweep status lines go (default stderr).
    """

    ASSETS = "reproduction"

    def __init__(self, out: str | os.PathLike[str], *, store: str | os.PathLike[str] | None = None,
                 profile: Profile = PROFILES["quick"], workers: int = 2, mnist_root: str | None = None,
                 cifar_root: str | None = None, download: bool = False,
                 log: Callable[[str], None] | None = None) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.assets = self.out / self.ASSETS
        self.assets.mkdir(exist_ok=True)
        self.store_path = Path(store) if store else self.out / "runs.sqlite"
        self.profile = profile
        self.workers = workers
        self.mnist_root = find_mnist_t10k(mnist_root)
        self.cifar_root = find_cifar10(cifar_root)
        self.download = download
        self.log = log or (lambda s: sys.stderr.write(s + "\n"))
        self._store: RunStore | None = None
        self._engine: Engine | None = None
        self._sweeps: dict[str, pd.DataFrame] = {}

    @property
    def store(self) -> RunStore:
        """The run store (opened on first use)."""
        if self._store is None:
            from core.store import RunStore

            self._store = RunStore(self.store_path)
        return self._store

    def store_label(self) -> str:
        """The store's path as the report prints it: relative to the output folder where it is inside it."""
        try:
            return str(self.store_path.resolve().relative_to(self.out.resolve()))
        except ValueError:
            return str(self.store_path)

    def sweep(self, spec: SweepSpec) -> pd.DataFrame:
        """Train ``spec``'s unfinished cells (once per report) and return its cells
        (``RunStore.sweep_cells``: coords, config, status, run_id, best_test_acc, ...)."""
        if spec.name in self._sweeps:
            return self._sweeps[spec.name]
        from core import sweep
        from core.sweep import Engine

        n = len(sweep.expand(spec))
        self.log(f"  sweep {spec.name}: {n} cells ...")
        if self._engine is None:
            self._engine = Engine(workers=self.workers)
        shown = [0]

        def progress(p: Any) -> None:  # a status line at every quarter of the cells
            quarter = 4 * (p.done + p.failed + p.skipped) // max(1, p.total)
            if quarter > shown[0]:
                shown[0] = quarter
                self.log(f"  sweep {spec.name}: {p.done + p.failed + p.skipped} / {p.total} cells "
                         f"({p.failed} failed or diverged, {p.running} running)")

        res = sweep.run(spec, store=self.store, engine=self._engine, on_progress=progress)
        counts = ", ".join(f"{v} {k}" for k, v in sorted(res.counts.items()))
        self.log(f"  sweep {spec.name}: {counts} in {res.seconds:.1f} s")
        self._sweeps[spec.name] = res.cells
        return res.cells

    def close(self) -> None:
        """Close the engine (and its workers)."""
        if self._engine is not None:
            self._engine.close()
            self._engine = None
