"""Command line: ``python -m core.train ...`` trains one run with a progress bar, then prints one line.

Owns :func:`build_parser` (options and ``--help``, the scheme options' help taken from the schemes'
field docs), :func:`help_info` (what the help takes from the registries), :func:`config_from_args`
(options -> a validated :class:`RunConfig`) and :func:`main`.
Exit status: 0 when the run ends ``done``, 1 for ``diverged``/``stopped``/``error``, 2 for bad input.

``--help`` answers before torch loads: in a fresh process :func:`main` builds the parser from
:func:`help_info` cached on disk (:mod:`core.sourcecache`, keyed on the sources of ``core`` and the
scheme plugins' entry points); any other command line then imports the registries and, for a usage
error or when their contents differ from the cached ones, parses again with the live parser (so errors
and results are those of the registries, whatever the cache holds).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import TYPE_CHECKING, Any, NoReturn, Sequence, TypedDict

from core.cli import ArgumentParser, fail, warn

if TYPE_CHECKING:
    from .config import RunConfig
    from .run import Run

__all__ = ["main", "build_parser", "config_from_args", "help_info", "HelpInfo"]

log = logging.getLogger("core.train")

#: entry-point group of the scheme plugins (``core.train.schemes.PLUGIN_GROUP``, a module that imports torch)
_PLUGIN_GROUP = "lowbit_explorer.schemes"
#: the registries the help reads; once one is imported in this process the help is built from them directly
_REGISTRIES = ("core.data", "core.models", "core.train.schemes")


class HelpInfo(TypedDict):
    """What the help text takes from the registries (:func:`help_info`)."""

    datasets: list[str]
    models: list[str]
    schemes: list[str]
    #: help of the scheme options (:data:`_SCHEME_OPTS`), option -> text
    options: dict[str, str]
    #: fields of the registered schemes that have no option of their own, in order -> help text
    extra: dict[str, str]


#: CLI option -> config key (``None`` values are left alone)
_DIRECT = {
    "dataset": "data.name", "data_root": "data.root", "train_subset": "data.train_subset",
    "test_subset": "data.test_subset", "model": "model.name", "hidden": "model.hidden", "width": "model.width",
    "shortcut": "model.shortcut",
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
    import dataclasses

    from .schemes import SCHEMES, list_schemes

    out: dict[str, list[str]] = {}
    taken = set(_SCHEME_OPTS) | {"first_last"} | set(_DIRECT) | {"shadow", "download", "config", "set", "list"}
    for name in list_schemes():
        for f in dataclasses.fields(SCHEMES[name]):
            if f.name not in taken and f.init:
                out.setdefault(f.name, []).append(name)
    return out


def _field_help(name: str) -> str:
    """Help of a scheme field, from the field docs of the registered schemes that have it:
    ``"scheme, scheme: doc (choices); scheme: doc"``."""
    import dataclasses

    from .schemes import SCHEMES, list_schemes

    by_doc: dict[str, list[str]] = {}
    for scheme in list_schemes():
        for f in dataclasses.fields(SCHEMES[scheme]):
            if f.name == name and f.init:
                doc = str(f.metadata.get("doc", name))
                choices = f.metadata.get("choices")
                if choices:
                    doc += f" ({', '.join(map(str, choices))})"
                elif f.type in (bool, "bool"):
                    doc += " (true/false)"
                by_doc.setdefault(doc, []).append(scheme)
    return "; ".join(f"{', '.join(owners)}: {doc}" for doc, owners in by_doc.items()).replace("%", "%%")


_DESCRIPTION = """\
Train one run, quantized by a scheme (fp32, amp, mls, custom, or one of the papers' schemes:
logbtq, niti, sbm, cpt, pfq, dfq), with a progress bar; then print one line with the final status,
test accuracy and run id. Every metric and the per-layer telemetry go to the run store, readable
while the run goes (python -m explorer, python -m explorer.export).
"""

_EPILOG = """\
examples:
  python -m core.train --dataset digits --model mlp --scheme mls --ex 2 --mx 1 --group nc --epochs 10
  python -m core.train --scheme custom --w fp8_e4m3 --a fp8_e4m3 --e fp8_e5m2 --e-rounding stochastic
  python -m core.train --config run.toml --set scheme.mx=3 --set optim.lr=0.05
  python -m core.train --dataset digits --scheme logbtq --codebook mu8 --k 2 --epochs 3
  python -m core.train --scheme niti --m-u 3

Scheme options apply only to the schemes named in their help; an option that does not apply to the
chosen scheme is an error. Schemes and their fields: docs/train-api.md and docs/schemes.md.

exit status: 0 when the run ends done, 1 when it ends diverged, stopped or error, 2 for bad input.
"""


def _widths(text: str) -> tuple[int, ...]:
    """``--hidden``: positive integers separated by commas (``128`` or ``64,32``)."""
    try:
        widths = tuple(int(t) for t in text.split(","))
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"must be positive widths separated by commas (e.g. 64,32), got {text!r}")
    return widths


def help_info() -> HelpInfo:
    """The registries' part of the help: dataset, model and scheme names, and the scheme options' help
    from the registered schemes' field docs (imports the registries, torch included)."""
    from core.data import list_datasets
    from core.models import list_models

    from .schemes import list_schemes

    datasets, models = list_datasets(), list_models()  # read before the scheme plugins load
    return {"datasets": datasets, "models": models, "schemes": list_schemes(),
            "options": {k: _field_help(k) for k in _SCHEME_OPTS},
            "extra": {field: _field_help(field) for field in _extra_scheme_fields()}}


def _loaded() -> bool:
    """Whether a registry the help reads is imported in this process (then it may hold run-time additions)."""
    return any(m in sys.modules for m in _REGISTRIES)


def _cached_help_info() -> HelpInfo:
    """:func:`help_info` as an earlier process stored it for the same sources (see the module doc)."""
    from core.sourcecache import cached

    return cached("train-help", help_info, packages=("core",), entry_point_group=_PLUGIN_GROUP)


class _UsageError(Exception):
    """A usage error met by the parser built from the cached help info (nothing printed yet)."""


class _DeferringParser(ArgumentParser):
    """Raises :class:`_UsageError` for a usage error: :func:`main` then parses again with the live registries,
    so a stale cache can never turn a good command line into an error, and the error text is the live one."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def build_parser(info: HelpInfo | None = None, *,
                 parser_class: type[ArgumentParser] = ArgumentParser) -> argparse.ArgumentParser:
    """The argument parser (also used for ``--help``), with the registries' part ``info``
    (default: :func:`help_info`, live)."""
    if info is None:
        info = help_info()
    p = parser_class(prog="python -m core.train", description=_DESCRIPTION, epilog=_EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="TOML file with [data], [model], [scheme], [optim], [telemetry] tables")
    p.add_argument("--list", action="store_true", help="list datasets, models and schemes, then exit")
    data = p.add_argument_group("data and model")
    data.add_argument("--dataset", help=f"one of: {', '.join(info['datasets'])}")
    data.add_argument("--data-root", help="folder with the dataset files")
    data.add_argument("--train-subset", type=int, metavar="N", help="train on N examples (a fixed, seeded subset)")
    data.add_argument("--test-subset", type=int, metavar="N", help="test on N examples (a fixed, seeded subset)")
    data.add_argument("--download", action="store_true", help="download missing dataset files")
    data.add_argument("--no-verify", action="store_true", help="skip SHA-256 checks of dataset files")
    data.add_argument("--model", help=f"one of: {', '.join(info['models'])}")
    data.add_argument("--hidden", type=_widths, help="MLP hidden widths, comma separated")
    data.add_argument("--width", type=float, help="channel multiplier of conv nets")
    data.add_argument("--shortcut", choices=("A", "B"),
                      help="ResNet shortcuts: A zero-padded identity (MLS paper, Table 1), B 1x1 conv + BN (default)")
    sch = p.add_argument_group("scheme")
    sch.add_argument("--scheme", help=f"one of: {', '.join(info['schemes'])}")
    for k in _SCHEME_OPTS:
        if k in ("ex", "mx", "eg", "mg"):
            sch.add_argument(f"--{k}", type=int, help=info["options"][k])
        else:
            sch.add_argument(f"--{k.replace('_', '-')}", dest=k, help=info["options"][k])
    fl = sch.add_mutually_exclusive_group()
    fl.add_argument("--first-last", dest="first_last", action="store_true", default=None,
                    help="also quantize the first and last layer")
    fl.add_argument("--no-first-last", dest="first_last", action="store_false",
                    help="keep the first and last layer float")
    more = p.add_argument_group("fields of the papers' schemes (logbtq, niti, sbm, cpt, pfq, dfq)")
    for field, text in info["extra"].items():
        more.add_argument(f"--{field.replace('_', '-')}", dest=f"scheme_{field}", metavar="VALUE", help=text)
    train = p.add_argument_group("training")
    train.add_argument("--epochs", type=int, help="training epochs")
    train.add_argument("--batch-size", type=int, help="mini-batch size")
    train.add_argument("--lr", type=float, help="learning rate")
    train.add_argument("--optimizer", help="sgd or adam")
    train.add_argument("--momentum", type=float, help="SGD momentum")
    train.add_argument("--weight-decay", type=float, help="weight decay")
    train.add_argument("--schedule", help="learning-rate schedule: constant, cosine or step")
    train.add_argument("--seed", type=int, help="run seed (weights, data order, stochastic rounding)")
    train.add_argument("--max-steps", type=int, help="stop after this many steps")
    train.add_argument("--threads", type=int, help="torch threads")
    rec = p.add_argument_group("telemetry and storage")
    rec.add_argument("--telemetry-every", type=int, help="steps between telemetry snapshots (0 = off)")
    rec.add_argument("--shadow", action="append", default=None,
                     help="extra format to measure on the same tensors (repeatable)")
    rec.add_argument("--name", help="name of the run in the store")
    rec.add_argument("--store", help="run store file (default: $LOWBIT_STORE or the user data dir)")
    rec.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="any config key, e.g. scheme.mx=3, optim.lr=0.05, telemetry.shadow=fp8_e4m3,mu8")
    rec.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Turn parsed options into a validated :class:`RunConfig`.

    Raises:
        ValueError: an option does not apply or a value is invalid.
    """
    import dataclasses

    from .config import RunConfig
    from .schemes import SCHEMES, get_scheme

    cfg = RunConfig.from_toml(args.config) if args.config is not None else RunConfig()
    if args.scheme is not None and args.scheme != cfg.scheme.name:
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
    if _loaded():
        args = build_parser(help_info()).parse_args(argv)
    else:  # a fresh process: --help answers from the cache, before torch loads
        info = _cached_help_info()
        parsed: argparse.Namespace | None
        try:
            parsed = build_parser(info, parser_class=_DeferringParser).parse_args(argv)
        except _UsageError:
            parsed = None
        live = help_info()
        if parsed is None or live != info:  # a usage error, or a stale cache: parse as the registries say
            parsed = build_parser(live).parse_args(argv)
        args = parsed
    from core.data import DatasetError, list_datasets
    from core.models import list_models
    from core.store import StoreError

    from .run import Run
    from .schemes import list_schemes

    if args.list:
        sys.stdout.write(f"datasets: {', '.join(list_datasets())}\nmodels: {', '.join(list_models())}\n"
                         f"schemes: {', '.join(list_schemes())}\n")
        return 0
    try:
        cfg = config_from_args(args)
        run = Run(cfg, store=args.store)
        run.prepare()
        run.store.require_writable()  # opens the store now: a bad or read-only file is reported as bad input
    except (ValueError, TypeError, DatasetError, StoreError) as exc:
        return fail(exc)
    problem = run.quantization_warning()
    if problem is not None:
        warn(problem)  # the run also records it as a `warning` event (shown by the Live page)
    bar = _progress(run, not args.no_progress)

    def _terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # SIGTERM ends the run like Ctrl-C: status stopped, final checkpoint

    old = signal.signal(signal.SIGTERM, _terminate)
    try:
        run.start()
    except StoreError as exc:  # a store that takes no run row (a full disk): one line too
        signal.signal(signal.SIGTERM, old)
        if bar is not None:
            bar.close()
        return fail(exc)
    try:
        while run.wait(0.5) in ("running", "paused"):
            pass
    except KeyboardInterrupt:
        run.stop()
        run.wait()
    finally:
        signal.signal(signal.SIGTERM, old)
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
