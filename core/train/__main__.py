"""Command line: ``python -m core.train ...`` trains one run with a progress bar, then prints one line.

Examples::

    python -m core.train --dataset digits --model mlp --scheme mls --ex 2 --mx 1 --group nc --epochs 10
    python -m core.train --scheme custom --w fp8_e4m3 --a fp8_e4m3 --e fp8_e5m2 --e-rounding stochastic
    python -m core.train --config run.toml --set scheme.mx=3 --set optim.lr=0.05
    python -m core.train --scheme logbtq --codebook mu8 --mu 100 --u 0.1 --k 20
    python -m core.train --scheme niti --m-u 3

Exit status: 0 when the run ends ``done``, 1 for ``diverged``/``stopped``/``error``, 2 for bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from typing import Any, Sequence

from core.data import DatasetError, list_datasets
from core.models import list_models
from core.store import StoreError

from .config import RunConfig
from .run import Run
from .schemes import SCHEMES, get_scheme, list_schemes

__all__ = ["main", "build_parser", "config_from_args"]

log = logging.getLogger("core.train")

#: CLI option -> config key (``None`` values are left alone)
_DIRECT = {
    "dataset": "data.name", "data_root": "data.root", "train_subset": "data.train_subset",
    "test_subset": "data.test_subset", "model": "model.name", "hidden": "model.hidden", "width": "model.width",
    "epochs": "epochs", "batch_size": "batch_size", "lr": "optim.lr", "optimizer": "optim.name",
    "momentum": "optim.momentum", "weight_decay": "optim.weight_decay", "schedule": "optim.schedule",
    "seed": "seed", "telemetry_every": "telemetry.every", "max_steps": "max_steps", "name": "name",
    "threads": "threads",
}
#: scheme fields settable by their own option
_SCHEME_OPTS = ("ex", "mx", "eg", "mg", "group", "rounding", "w", "a", "e", "ew", "g", "update", "w_rounding",
                "a_rounding", "e_rounding", "ew_rounding", "g_rounding", "update_rounding", "dtype")


def _extra_scheme_fields() -> dict[str, list[str]]:
    """Fields of the registered schemes that have no option of their own -> the schemes having them."""
    out: dict[str, list[str]] = {}
    taken = set(_SCHEME_OPTS) | {"first_last"} | set(_DIRECT) | {"shadow", "download", "config", "set", "list"}
    for name in list_schemes():
        for f in dataclasses.fields(SCHEMES[name]):
            if f.name not in taken and f.init:
                out.setdefault(f.name, []).append(name)
    return out


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used for ``--help``)."""
    p = argparse.ArgumentParser(prog="python -m core.train", description="Train one (quantized) run.")
    p.add_argument("--config", help="TOML file with [data], [model], [scheme], [optim], [telemetry] tables")
    p.add_argument("--dataset", help=f"one of: {', '.join(list_datasets())}")
    p.add_argument("--data-root", help="folder with the dataset files")
    p.add_argument("--train-subset", type=int)
    p.add_argument("--test-subset", type=int)
    p.add_argument("--download", action="store_true", help="download missing dataset files")
    p.add_argument("--no-verify", action="store_true", help="skip SHA-256 checks of dataset files")
    p.add_argument("--model", help=f"one of: {', '.join(list_models())}")
    p.add_argument("--hidden", help="MLP hidden widths, comma separated")
    p.add_argument("--width", type=float, help="channel multiplier of conv nets")
    p.add_argument("--scheme", help=f"one of: {', '.join(list_schemes())}")
    for k in ("ex", "mx", "eg", "mg"):
        p.add_argument(f"--{k}", type=int, help=f"mls: {k}")
    p.add_argument("--group", help="mls grouping: none, n, c, nc")
    p.add_argument("--rounding", help="mls rounding of W/A/E")
    for k in ("w", "a", "e", "ew", "g", "update"):
        p.add_argument(f"--{k}", help=f"spec string for {k.upper()} (custom scheme; --g also for mls)")
        p.add_argument(f"--{k}-rounding", dest=f"{k}_rounding", help=f"rounding of {k.upper()}")
    p.add_argument("--dtype", help="amp: bf16 or fp16")
    seed_opts = p.add_argument_group("other scheme fields (LogBTQ, NITI, SBM, CPT, PFQ ...)")
    for field, owners in _extra_scheme_fields().items():
        seed_opts.add_argument(f"--{field.replace('_', '-')}", dest=f"scheme_{field}", metavar="VALUE",
                               help=f"{', '.join(owners)}: {field}")
    fl = p.add_mutually_exclusive_group()
    fl.add_argument("--first-last", dest="first_last", action="store_true", default=None,
                    help="also quantize the first and last layer")
    fl.add_argument("--no-first-last", dest="first_last", action="store_false",
                    help="keep the first and last layer float")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--optimizer", help="sgd or adam")
    p.add_argument("--momentum", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--schedule", help="constant, cosine or step")
    p.add_argument("--seed", type=int)
    p.add_argument("--telemetry-every", type=int, help="steps between telemetry snapshots (0 = off)")
    p.add_argument("--shadow", action="append", default=None, help="extra format to measure (repeatable)")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--name")
    p.add_argument("--threads", type=int, help="torch threads")
    p.add_argument("--store", help="run store file (default: $LOWBIT_STORE or the user data dir)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any config key, e.g. scheme.mx=3, optim.lr=0.05, telemetry.shadow=fp8_e4m3,mu8")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--list", action="store_true", help="list datasets, models and schemes, then exit")
    return p


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Turn parsed options into a validated :class:`RunConfig`.

    Raises:
        ValueError: an option does not apply or a value is invalid.
    """
    cfg = RunConfig.from_toml(args.config) if args.config else RunConfig()
    if args.scheme and args.scheme != cfg.scheme.name:
        cfg = cfg.with_changes({"scheme": get_scheme(args.scheme)})
    changes: dict[str, Any] = {}
    for opt, key in _DIRECT.items():
        v = getattr(args, opt)
        if v is not None:
            changes[key] = v
    if args.download:
        changes["data.download"] = True
    if args.no_verify:
        changes["data.verify"] = False
    if args.shadow is not None:
        changes["telemetry.shadow"] = tuple(args.shadow)
    scheme_fields = {f.name for f in dataclasses.fields(SCHEMES[cfg.scheme.name])}
    for opt in _SCHEME_OPTS + ("first_last",):
        v = getattr(args, opt)
        if v is None:
            continue
        if opt not in scheme_fields:
            flag = "--" + opt.replace("_", "-")
            raise ValueError(f"{flag} does not apply to scheme {cfg.scheme.name!r} "
                             f"(its fields: {', '.join(sorted(scheme_fields))})")
        changes[f"scheme.{opt}"] = v
    for field in _extra_scheme_fields():
        v = getattr(args, f"scheme_{field}", None)
        if v is None:
            continue
        if field not in scheme_fields:
            raise ValueError(f"--{field.replace('_', '-')} does not apply to scheme {cfg.scheme.name!r} "
                             f"(its fields: {', '.join(sorted(scheme_fields))})")
        changes[f"scheme.{field}"] = v
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        changes[key.strip()] = value.strip()
    # a scheme switch must happen before its fields are set
    scheme_changes = {k: v for k, v in changes.items() if k.startswith("scheme.")}
    others = {k: v for k, v in changes.items() if not k.startswith("scheme.")}
    cfg = cfg.with_changes(others)
    return cfg.with_changes(scheme_changes)


def _progress(run: Run, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    bar = tqdm(total=run.total_steps, unit="step", file=sys.stderr, dynamic_ncols=True, leave=False)

    def on(payload: dict[str, Any]) -> None:
        t = payload.get("type")
        if t == "step":
            if bar.total != run.total_steps:
                bar.total = run.total_steps
            bar.update(payload["step"] + 1 - bar.n)
            bar.set_postfix(loss=f"{payload['loss']:.3f}", acc=f"{payload['train_acc']:.2f}", refresh=False)
        elif t == "epoch":
            bar.set_description(f"epoch {payload['epoch'] + 1} test_acc={payload['test_acc']:.4f}")

    run.subscribe(on)
    return bar


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        sys.stdout.write(f"datasets: {', '.join(list_datasets())}\nmodels: {', '.join(list_models())}\n"
                         f"schemes: {', '.join(list_schemes())}\n")
        return 0
    try:
        cfg = config_from_args(args)
        run = Run(cfg, store=args.store)
        run.prepare()
        run.store  # opens the store now: a bad file is reported as bad input
    except (ValueError, TypeError, DatasetError, StoreError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    bar = _progress(run, not args.no_progress)
    run.start()
    try:
        while run.wait(0.5) in ("running", "paused"):
            pass
    except KeyboardInterrupt:
        run.stop()
        run.wait()
    if bar is not None:
        bar.close()
    r = run.result
    acc = r.get("test_acc")
    acc_s = f"{acc:.4f}" if acc is not None else "n/a"
    msg = (f"run {run.id} {run.status}: test_acc={acc_s} steps={r.get('steps')} epochs={r.get('epochs')} "
           f"time={r.get('seconds', 0.0):.1f}s store={run.store.path}")
    if run.error is not None:
        msg += f" error={type(run.error).__name__}: {run.error}"
    sys.stdout.write(msg + "\n")
    return 0 if run.status == "done" else 1


if __name__ == "__main__":
    raise SystemExit(main())
