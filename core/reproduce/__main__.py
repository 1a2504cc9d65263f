"""Command line of :mod:`core.reproduce`:
``python -m core.reproduce [--quick] [--out DIR] [--store PATH] [--download] [--workers N] [--only IDS] [--list]``.

Bad input: one ``error: ...`` line and exit status 2 (:mod:`core.cli`). Progress on stderr: a tqdm bar
over the claims and one status line per claim and sweep.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.cli import ArgumentParser, fail, int_in

_EPILOG = """examples:
  python -m core.reproduce --quick --out /tmp/repro        digits, MNIST-t10k, small models (under 15 min)
  python -m core.reproduce --out /tmp/repro-full --download   the full mode: papers' epochs, CIFAR-10
  python -m core.reproduce --quick --only mls-table1,mls-eq9 --out /tmp/r
  python -m core.reproduce --list
"""


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m core.reproduce", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Test the seed papers' claims here and write a Markdown and an HTML report "
                                   "(verdict, our numbers, commands, run ids, plots).", epilog=_EPILOG)
    p.add_argument("--quick", action="store_true", help="small runs: digits, MNIST-t10k, few seeds and epochs")
    p.add_argument("--out", default="reproduction-report", metavar="DIR",
                   help="folder of report.md, report.html, the plots and (default) the run store")
    p.add_argument("--store", default=None, metavar="PATH", help="run store (default: DIR/runs.sqlite)")
    p.add_argument("--download", action="store_true", help="download CIFAR-10 when it is missing (full mode)")
    p.add_argument("--workers", type=int_in(1, 256), default=2, metavar="N", help="Dask workers (default 2)")
    p.add_argument("--only", default="", metavar="IDS", help="comma-separated claim ids (see --list)")
    p.add_argument("--mnist-root", default=None, metavar="DIR", help="folder with the MNIST t10k IDX files")
    p.add_argument("--cifar-root", default=None, metavar="DIR", help="folder with CIFAR-10's python batches")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (status lines stay)")
    p.add_argument("--list", action="store_true", help="list the claims and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for bad input)."""
    a = build_parser().parse_args(argv)
    from .claim import PROFILES, Context
    from .registry import CLAIMS, get_claim

    if a.list:
        for c in CLAIMS:
            sys.stdout.write(f"{c.id:<22} {c.paper}, {c.where}\n")
        return 0
    try:
        claims = [get_claim(s.strip()) for s in a.only.split(",") if s.strip()] if a.only else list(CLAIMS)
    except KeyError as exc:
        return fail(exc.args[0])
    out = Path(a.out)
    if out.exists() and not out.is_dir():
        return fail(f"--out {a.out} exists and is not a folder")
    for opt, v in (("--mnist-root", a.mnist_root), ("--cifar-root", a.cifar_root)):
        if v is not None and not Path(v).is_dir():
            return fail(f"{opt} {v} is not a folder")
    if a.store is not None and Path(a.store).is_dir():
        return fail(f"--store {a.store} is a folder, not a store file")
    try:
        ctx = Context(out, store=a.store, profile=PROFILES["quick" if a.quick else "full"], workers=a.workers,
                      mnist_root=a.mnist_root, cifar_root=a.cifar_root, download=a.download)
    except OSError as exc:
        return fail(f"cannot use --out {a.out}: {exc}")
    from .report import run_claims, write

    cmd = "python -m core.reproduce" + " ".join([""] + _shown_args(argv if argv is not None else sys.argv[1:]))
    rep = run_claims(ctx, claims, cmd, progress=not a.no_progress)
    md, htm = write(rep, out)
    n = rep.counts()
    sys.stdout.write(f"{len(rep.results)} claims: {n['reproduced']} reproduced, {n['not reproduced']} not reproduced, "
                     f"{n['cannot test here']} cannot test here ({rep.seconds:.0f} s); wrote {md} and {htm}\n")
    return 0


_PATH_OPTS = {"--out": "DIR", "--store": "STORE", "--mnist-root": "PATH", "--cifar-root": "PATH"}


def _shown_args(argv: list[str]) -> list[str]:
    """The arguments as the report prints them: the folders and files given as ``DIR``, ``STORE``, ``PATH``
    (the report stays free of this machine's paths)."""
    out: list[str] = []
    it = iter(argv)
    for x in it:
        key = x.split("=", 1)[0]
        if key in _PATH_OPTS:
            out.append(f"{key}={_PATH_OPTS[key]}" if "=" in x else f"{x} {_PATH_OPTS[key]}")
            if "=" not in x:
                next(it, None)
            continue
        out.append(x)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
