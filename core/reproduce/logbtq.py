"""The LogBTQ paper's claims (seed 001): Table 2's codebook ordering and the Eq. 12 tail bound."""

from __future__ import annotations

import math

from . import plots, sweeps
from .claim import Context, Result, cannot
from .stats import run_ids, stats_by, telemetry_values
from .verdict import Check, Table, at_least

__all__ = ["table2", "eq12", "PAIRS"]

#: the (data.name, model.name) pairs of sweeps/logbtq_table2.toml and how the report names them
PAIRS = {("digits", "mlp"): "digits MLP", ("digits", "lenet5"): "digits LeNet-5", ("mnist1d", "mlp"): "MNIST-1D MLP"}
_ORDER = ("MU8", "FP8 1-5-2", "FP8 1-4-3")
_PAPER = {"FP32": (99.9, 94.08), "FP8 1-4-3": (98.1, 92.31), "FP8 1-5-2": (98.3, 93.21), "MU8": (99.6, 94.50)}
_FLOOR = 0.003


def table2(ctx: Context) -> Result:
    """LogBTQ paper, section 4, Table 2: MU8 >= FP8 (1-5-2) >= FP8 (1-4-3) on every dataset (MNIST and CIFAR-10
    ResNet-18: 99.6 / 98.3 / 98.1 and 94.50 / 93.21 / 92.31), from ``sweeps/logbtq_table2.toml``."""
    spec, path = sweeps.shipped("logbtq_table2")
    df = sweeps.cells_frame(ctx.sweep(spec))
    st = stats_by(df, ["data.name", "model.name", "scheme"])
    checks, rows = [], []
    for (d, m), label in PAIRS.items():
        for a, b in zip(_ORDER, _ORDER[1:]):
            sa, sb = st.get((d, m, a)), st.get((d, m, b))
            if sa is None or sb is None:
                checks.append(Check(f"{a} >= {b} on {label}", "holds", "cells missing", None))
                continue
            checks.append(Check(f"{a} >= {b} on {label}", f"{_PAPER[a][0]} vs {_PAPER[b][0]} (MNIST)",
                                f"{sa.text(digits=2)} vs {sb.text(digits=2)}", at_least(sa, sb, _FLOOR)))
    for s in ("FP32", *_ORDER):
        rows.append([s, f"{_PAPER[s][0]}", f"{_PAPER[s][1]}"]
                    + [st[(d, m, s)].text(digits=2) if (d, m, s) in st else "-" for d, m in PAIRS])
    panel = plots.Panel("LogBTQ Table 2 (ours)", "model / data", "best test accuracy (%)",
                        {s: (list(PAIRS.values()), [st[(d, m, s)].mean * 100 if (d, m, s) in st else math.nan
                                                    for d, m in PAIRS]) for s in ("FP32", *_ORDER)}, kind="bar")
    plot = plots.save(ctx, "logbtq_table2", [panel])
    held = sum(bool(c.ok) for c in checks)
    return Result(ours=f"{held} of {len(checks)} pairwise orderings hold", checks=checks,
                  command=sweeps.command(path, ctx), run_ids=run_ids(df), sweeps=[spec.name],
                  data="digits (sklearn) MLP and LeNet-5, MNIST-1D (generated) MLP, 3 seeds (the paper: ResNet-18 on "
                       "MNIST and CIFAR-10, ResNet-50 / MobileNet on ImageNet)",
                  tables=[Table(["scheme", "paper MNIST", "paper CIFAR-10", *PAIRS.values()], rows)],
                  plots=[p for p in [plot] if p],
                  notes=["'a >= b' within noise: mean(a) >= mean(b) - max(2 x the standard error of the difference, "
                         "one digits test image). The scheme runs at its current defaults (docs/schemes.md, "
                         "'LogBTQ defaults') with the sweep file's overrides (k = 1)."])


def eq12(ctx: Context) -> Result:
    """LogBTQ paper, section 3.3, Eq. 9-12: with E(1) ~ 1, L ~ 50 and u = 0.1 "the number of overflowing
    parameters can be controlled under 2.3%". Checked twice: the bound itself (``core.schemes.tail_bound``) and
    the measured share of layer outputs outside [-2, 2] (telemetry ``outside_mean``, last step) of the Table 2
    LogBTQ runs (u = 0.1)."""
    from core.schemes import tail_bound

    tb = tail_bound(1.0, 50, 0.1)
    checks = [Check("Eq. 9-11 averaged over L = 50 layers, E(1) = 1, u = 0.1", "under 2.3 %",
                    f"{100 * tb.average:.2f} % (Eq. 12's closed form: {100 * tb.approx:.2f} %)", tb.average < 0.023)]
    spec, path = sweeps.shipped("logbtq_table2")
    df = sweeps.cells_frame(ctx.sweep(spec))
    lb = df[(df["scheme"] != "FP32") & (df["status"] == "done")]
    ids = run_ids(lb)
    if not ids:
        return cannot("no LogBTQ run of the Table 2 sweep finished", command=sweeps.command(path, ctx))
    tails = telemetry_values(ctx.store, ids, "outside_mean", "logbtq")
    bounds = telemetry_values(ctx.store, ids, "tail_bound_exact", "logbtq")
    last = tails.groupby("run_id").last()["value"]
    last_b = bounds.groupby("run_id").last()["value"]
    rows = []
    lb = lb.assign(tail=[last.get(r, math.nan) for r in lb["run_id"]],
                   bound=[last_b.get(r, math.nan) for r in lb["run_id"]])
    for (d, m, s), g in lb.groupby(["data.name", "model.name", "scheme"], sort=False):
        mx, bmin = float(g["tail"].max()), float(g["bound"].min())
        label = f"{PAIRS.get((d, m), f'{d} {m}')}, {s}"
        checks.append(Check(f"measured tail under 2.3 %: {label}", "under 2.3 %",
                            f"max over {len(g)} seeds {100 * mx:.2f} % (run's own bound {100 * bmin:.1f} %)",
                            mx < 0.023 if math.isfinite(mx) else None))
        rows.append([label, f"{100 * g['tail'].mean():.2f}", f"{100 * mx:.2f}", f"{100 * g['bound'].mean():.1f}"])
    panel = plots.Panel("LogBTQ: share of layer outputs outside [-2, 2]", "run", "outside (%)",
                        {"measured (last step)": ([r[0] for r in rows], [float(r[1]) for r in rows])}, kind="bar",
                        hline=(2.3, "2.3 % (paper)"))
    plot = plots.save(ctx, "logbtq_tail", [panel])
    held = sum(bool(c.ok) for c in checks)
    return Result(ours=f"bound {100 * tb.average:.2f} %; {held} of {len(checks)} checks hold", checks=checks,
                  command=sweeps.command(path, ctx) + "; python -c \"from core.schemes import tail_bound; "
                  "print(tail_bound(1, 50, 0.1))\"", run_ids=ids, sweeps=[spec.name],
                  data="the LogBTQ runs of sweeps/logbtq_table2.toml (digits MLP / LeNet-5, MNIST-1D MLP)",
                  tables=[Table(["model, codebook", "tail mean (%)", "tail max (%)", "run's Eq. 9-12 bound (%)"],
                                rows)],
                  plots=[p for p in [plot] if p],
                  notes=["The paper's bound is for deep networks (L ~ 50). These models have 2 to 5 layers, where "
                         "the bound from the measured E(1) is much looser (the last column); the 2.3 % figure is "
                         "checked against the measured tails as the paper states it, not against that bound."])
