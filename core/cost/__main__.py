"""Command line of :mod:`core.cost`: ``python -m core.cost MODEL [--batch B] [--layers] [--energy]``.

Prints the operations of one training iteration in the layout of the MLS paper's Table 1 (with the
paper's ResNet-20 column next to ``resnet20``), optionally per layer, and with ``--energy`` the energy
estimate of App. E (Eq. 9's ratio; docs/papers.md#mls-energy).
"""

from __future__ import annotations

import argparse
import sys

from core.cli import ArgumentParser, fail

from .energy import ARITHMETICS, EnergyTable, eq9_ratio, iteration_energy, parse_overrides
from .ops import PAPER_TABLE1, TABLE1_ROWS, OpCounts, count_model

_DESCRIPTION = "Operation counts of one training iteration (MLS paper, Table 1) and its energy estimate (App. E)."
_EPILOG = """examples:
  python -m core.cost resnet20 --batch 1          Table 1's ResNet-20 column (option-A shortcuts)
  python -m core.cost resnet20 --layers           per layer
  python -m core.cost resnet20 --energy           Eq. 9's ratio and the iteration's energy
  python -m core.cost resnet20 --energy --set fp8_mul=0.5,int16_add=0.04
  python -m core.cost vgg7 --batch 64 --input 3,32,32
"""


def build_parser() -> argparse.ArgumentParser:
    """The CLI's parser."""
    p = ArgumentParser(prog="python -m core.cost", description=_DESCRIPTION, epilog=_EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a model of core.models (resnet20, resnet18, mlp, lenet5, vgg7, vgg8, vgg9)")
    p.add_argument("--batch", type=int, default=1, help="batch size (default 1, as Table 1)")
    p.add_argument("--input", default=None, help="input shape C,H,W or N (default: 3,32,32; 1,28,28 for mlp/lenet5)")
    p.add_argument("--classes", type=int, default=10, help="number of classes (default 10)")
    p.add_argument("--width", type=float, default=1.0, help="channel multiplier of the conv nets")
    p.add_argument("--shortcut", choices=("A", "B"), default="A",
                   help="ResNet shortcuts: A = zero-padded identity (the paper's, default), B = 1x1 conv + BN")
    p.add_argument("--layers", action="store_true", help="also print the counts per layer")
    p.add_argument("--energy", action="store_true", help="print the energy estimate (App. E, Eq. 9)")
    p.add_argument("--set", default="", metavar="NAME=V,...", help="change entries of the energy table (units of C)")
    p.add_argument("--float-first-last", action="store_true",
                   help="energy: keep the first and last layer in FP32 (App. B)")
    return p


def _sci(v: float) -> str:
    return f"{v:.3E}"


def table1_text(c: OpCounts, paper: bool) -> str:
    """Table 1's layout for ``c``; ``paper`` adds the paper's ResNet-20 column and the relative difference."""
    head = f"{'Op Name':<18} {'Op Type':<8} {'count':>17} {'':>10}"
    if paper:
        head += f" {'Table 1':>9} {'diff':>7}"
    lines = [head]
    for label, kind, attr in TABLE1_ROWS:
        v = int(getattr(c, attr))
        line = f"{label:<18} {kind:<8} {v:>17,} {_sci(v):>10}"
        if paper:
            ref = PAPER_TABLE1[attr]
            line += f" {ref:>9.2E} {100.0 * (v - ref) / ref:>+6.1f}%"
        lines.append(line)
    lines.append(f"{'(BN affine update)':<18} {'Add':<8} {c.update_bn:>17,} {_sci(c.update_bn):>10}")
    return "\n".join(lines)


def layers_text(c: OpCounts) -> str:
    """The per-layer rows."""
    lines = [f"{'layer':<28} {'kind':<7} {'forward':>14} {'backward':>14} {'update':>10}"]
    for r in c.layers:
        lines.append(f"{r.name or '(model)':<28} {r.kind:<7} {r.fwd:>14,} {r.bwd:>14,} {r.update:>10,}")
    return "\n".join(lines)


def energy_text(c: OpCounts, table: EnergyTable, float_first_last: bool) -> str:
    """The energy table, Eq. 9's ratio and the iteration's energy per arithmetic."""
    gemms = [r.name for r in c.layers if r.kind in ("conv", "linear")]
    fl = (gemms[0], gemms[-1]) if float_first_last and gemms else ()
    lines = ["energy per operation (units of C = one FP32 add; App. E and Horowitz 2014):",
             "  " + ", ".join(f"{k}={v:.4g}" for k, v in vars(table).items())]
    lines.append(f"Eq. 9 ratio (FP32 / MLS convolution arithmetic): {eq9_ratio(c, table):.2f}x   (paper: ~6.8x)")
    ref = iteration_energy(c, "fp32", table)
    lines.append(f"{'arithmetic':<10} {'conv (F+B)':>12} {'BN':>10} {'EW-Add':>10} {'update':>10} {'total':>12} "
                 f"{'vs fp32':>8}")
    for a in ARITHMETICS:
        e = iteration_energy(c, a, table, fl if a != "fp32" else ())
        lines.append(f"{a:<10} {e['conv']:>12.4E} {e['bn']:>10.3E} {e['ew_add']:>10.3E} {e['update']:>10.3E} "
                     f"{e['total']:>12.4E} {ref['total'] / e['total']:>7.2f}x")
    if fl:
        lines.append(f"(first and last layer {fl[0]}, {fl[1]} in FP32)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for bad input)."""
    a = build_parser().parse_args(argv)
    try:
        if a.batch < 1:
            raise ValueError(f"--batch must be >= 1, got {a.batch}")
        if a.classes < 1:
            raise ValueError(f"--classes must be >= 1, got {a.classes}")
        shape = None
        if a.input is not None:
            try:
                shape = tuple(int(s) for s in a.input.split(","))
            except ValueError:
                raise ValueError(f"--input must be integers like 3,32,32, got {a.input!r}") from None
            if not shape or min(shape) < 1:
                raise ValueError(f"--input must be positive sizes, got {a.input!r}")
        table = parse_overrides(a.set)
        from core.models import list_models

        if a.model not in list_models():
            raise ValueError(f"unknown model {a.model!r}; known: {', '.join(list_models())}")
        c = count_model(a.model, a.batch, shape, a.classes, width=a.width, shortcut=a.shortcut)
    except (ValueError, TypeError, RuntimeError) as exc:
        return fail(exc)
    paper = (a.model == "resnet20" and a.batch == 1 and a.shortcut == "A" and a.width == 1.0
             and shape in (None, (3, 32, 32)))
    sc = f", shortcut {a.shortcut}" if a.model.startswith("resnet") else ""
    parts = [f"operations per training iteration: {a.model}{sc}, batch {a.batch}"
             + (" (Table 1: the MLS paper's ResNet-20, CIFAR-10)" if paper else ""), table1_text(c, paper)]
    if a.layers:
        parts += ["", layers_text(c)]
    if a.energy:
        parts += ["", energy_text(c, table, a.float_first_last)]
    sys.stdout.write("\n".join(parts) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
