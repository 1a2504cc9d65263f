"""The MLS paper's claims (seed 000): Table 1's op counts, Eq. 9's energy ratio, Fig. 3's ARE orderings,
Table 3's accuracy orderings and the 16-bit accumulator of section 4.2."""

from __future__ import annotations

import math
from typing import Any

from . import plots, sweeps
from .claim import Context, Result, cannot
from .stats import run_ids, shadow_are, stats_by, telemetry_values
from .verdict import Check, Stat, Table, at_least, within

__all__ = ["table1_gemm", "table1_ewadd", "eq9", "fig3_grouping", "fig3_ex", "fig3_ex_groups", "table3_mx",
           "table3_grouping", "table3_ex", "table3_mg", "acc16", "table3_cifar10"]

_COST_CMD = "python -m core.cost resnet20 --batch 1 --energy"
_T1_TOL = 0.01  # Table 1 prints 3 significant digits: within 1 %


def _table1_result(attrs: tuple[str, ...]) -> Result:
    from core.cost import PAPER_TABLE1, TABLE1_ROWS, count_model

    c = count_model("resnet20", 1, shortcut="A")
    labels = {a: lbl for lbl, _, a in TABLE1_ROWS}
    checks, rows = [], []
    for a in attrs:
        v, ref = int(getattr(c, a)), PAPER_TABLE1[a]
        ok = within(v, ref, rel=_T1_TOL)
        checks.append(Check(f"{labels[a]} within 1 % of Table 1", f"{ref:.2E}", f"{v:,}", ok))
        rows.append([labels[a], f"{ref:.2E}", f"{v:,}", f"{100 * (v - ref) / ref:+.1f} %"])
    return Result(ours="; ".join(f"{r[0]} {r[2]}" for r in rows), checks=checks, command=_COST_CMD,
                  data="ResNet-20 (option-A shortcuts), CIFAR-10 input shape 3x32x32, batch 1; no data read",
                  tables=[Table(["row", "Table 1", "ours", "diff"], rows)])


def table1_gemm(ctx: Context) -> Result:
    """MLS paper, section 1, Table 1 (ResNet-20 column): the Conv, BN and weight-update counts of one training
    iteration at batch 1, from ``core.cost.count_model`` (docs/papers.md#mls-table1)."""
    return _table1_result(("conv_f", "conv_b", "bn_f", "bn_b", "update"))


def table1_ewadd(ctx: Context) -> Result:
    """MLS paper, Table 1: the element-wise adds (residual additions) of ResNet-20, forward and backward
    (docs/papers.md#mls-table1 explains the difference)."""
    r = _table1_result(("ew_f", "ew_b"))
    r.notes.append("ResNet-20 has 9 residual adds of 3 x 16,384 + 3 x 8,192 + 3 x 4,096 = 86,016 elements; "
                   "Table 1's 73,728 = 9 x 8,192 matches no reading of the architecture we found "
                   "(docs/papers.md#mls-table1).")
    return r


def eq9(ctx: Context) -> Result:
    """MLS paper, section 5.2 and App. E, Eq. 9: the energy ratio of the FP32 convolution arithmetic over the
    MLS one, from ``core.cost.energy.eq9_ratio`` on ResNet-20's counts (docs/papers.md#mls-energy)."""
    from core.cost import count_model
    from core.cost.energy import eq9_ratio

    ratio = eq9_ratio(count_model("resnet20", 1, shortcut="A"))
    chk = Check("Eq. 9 ratio within 5 % of ~6.8", "~6.8x (\"over 6.8x more energy-efficient\")", f"{ratio:.2f}x",
                within(ratio, 6.8, rel=0.05))
    return Result(ours=f"{ratio:.2f}x", checks=[chk], command=_COST_CMD,
                  data="ResNet-20 counts at batch 1 (no data read)")


# --------------------------------------------------------------------------------------- Fig. 3

def _fig3(ctx: Context) -> tuple[Any, list[str], str]:
    spec, path = sweeps.fig3_sweep(ctx)
    cells = ctx.sweep(spec)
    ids = run_ids(cells)
    return shadow_are(ctx.store, ids), ids, path


def _fig3_result(ctx: Context, rows: list[str], rule: str) -> Result:
    """Fig. 3 checks: per (layer, tensor) the AREs of the formats of ``rows`` (fig3_formats keys)."""
    import core

    are, ids, path = _fig3(ctx)
    if are.empty:
        return cannot("the run recorded no shadow ARE (it did not train)", run_ids=ids, sweeps=["repro-fig3"],
                      command=sweeps.command(path, ctx))
    rows_f = sweeps.fig3_formats()
    canon = {r: [(lbl, str(core.parse_format(s))) for lbl, s in rows_f[r]] for r in rows}
    layers = list(dict.fromkeys(are["layer"]))
    kinds = _layer_kinds(ctx, ids[0])
    look = {(r.layer, r.tensor, r.fmt): r.are for r in are.itertuples()}
    checks, table_rows, panels = [], [], []
    for t in ("w", "a", "e"):
        for r in rows:
            series = {}
            for lbl, f in canon[r]:
                ys = [look.get((lay, t, f), math.nan) for lay in layers]
                series[f"{r}: {lbl}" if len(rows) > 1 else lbl] = (list(layers), ys)
            panels.append(plots.Panel(f"ARE of {t.upper()} ({r})", "layer", "ARE", series, logy=True))
        for lay in layers:
            vals = {r: [look.get((lay, t, f), math.nan) for _, f in canon[r]] for r in rows}
            if any(math.isnan(v) for vs in vals.values() for v in vs):
                continue
            ok, paper = _fig3_rule(rule, vals)
            txt = "; ".join(f"{r}: " + ", ".join(f"{lbl} {v:.3g}" for (lbl, _), v in zip(canon[r], vals[r]))
                            for r in rows)
            conv = kinds.get(lay, "").startswith("Conv")
            if conv:
                checks.append(Check(f"{lay} {t.upper()}", paper, txt, ok))
            table_rows.append([f"{lay} ({kinds.get(lay, '?')})", t.upper(), txt,
                               ("yes" if ok else "no") + ("" if conv else " (not checked)")])
    plot = plots.save(ctx, f"fig3_{rule}", panels, ncols=3 if len(rows) == 1 else len(rows))
    held = sum(bool(c.ok) for c in checks)
    return Result(ours=f"holds in {held} of {len(checks)} (conv layer, tensor) pairs", checks=checks,
                  command=sweeps.command(path, ctx), run_ids=ids, sweeps=["repro-fig3"],
                  data="digits (sklearn, 1,437 / 360), LeNet-5 trained in MLS <2,4> (N x C, Mg = 1); ARE = mean over "
                       "x != 0 of |Q(x) - x| / |x| (core.metrics.are), averaged over the telemetry steps",
                  tables=[Table(["layer", "tensor", "ARE per format", "rule holds"], table_rows)],
                  plots=[p for p in [plot] if p],
                  notes=["Checked on the convolutions only (the paper's ResNet-20 is convolutions but for the "
                         "FC): on a Linear layer's 2-D tensors N x C groups are single elements, so the element "
                         "format hardly matters there (docs/sweeps.md, MLS Table 3); those rows are shown, "
                         "not checked.",
                         "Shadow formats are measured on the tensors of the run, not trained with "
                         "(TelemetryConfig.shadow, nearest rounding); the paper measures ResNet-20 on CIFAR-10 "
                         "while training in each format."])


def _layer_kinds(ctx: Context, run_id: str) -> dict[str, str]:
    """Module class of each layer of a run (``Conv2d``, ``Linear``), from the store's ``layers`` table."""
    rows = ctx.store.conn.execute("SELECT name, kind FROM layers WHERE run_id=?", (run_id,)).fetchall()
    return {str(n): str(k) for n, k in rows}


def _fig3_rule(rule: str, vals: dict[str, list[float]]) -> tuple[bool, str]:
    if rule == "grouping":
        none, c, n, nc = vals["grouping"]
        return nc <= min(none, c, n), "N x C groups give the smallest ARE"
    if rule == "ex":
        v = vals["ex"]
        return all(a > b for a, b in zip(v, v[1:])), "ARE falls as Ex grows (0..3)"
    v, w = vals["ex_nc"], vals["ex"]
    ok = all(a > b for a, b in zip(v, v[1:])) and all(a <= b for a, b in zip(v, w))
    return ok, "with <8,1> N x C scales: ARE falls as Ex grows and is below the same Ex without scales"


def fig3_grouping(ctx: Context) -> Result:
    """MLS paper, section 5.1.1, Fig. 3 row 1: with <0,3> elements and <8,1> group scales, the AREs of W, E
    and A are smallest with N x C groups (against none, C and N)."""
    return _fig3_result(ctx, ["grouping"], "grouping")


def fig3_ex(ctx: Context) -> Result:
    """MLS paper, section 5.1.2, Fig. 3 row 2: without group scaling, more exponent bits (<Ex,3>, Ex = 0..3)
    give smaller AREs."""
    return _fig3_result(ctx, ["ex"], "ex")


def fig3_ex_groups(ctx: Context) -> Result:
    """MLS paper, section 5.1.2, Fig. 3 row 3: with <8,1> scales on N x C groups the AREs fall further: they
    fall with Ex and lie below the same Ex without group scaling."""
    return _fig3_result(ctx, ["ex_nc", "ex"], "ex_nc")


# --------------------------------------------------------------------------------------- Table 3

_T3_PAPER = {  # row label -> Mx = 4, 3, 2, 1 (Table 3; None = Div.)
    "1 / None / 0": (90.02, 85.68, None, None), "c / 0 / 0": (91.54, 88.35, 82.29, None),
    "n / 0 / 0": (91.78, 89.62, 80.71, None), "nc / 0 / 0": (92.14, 91.64, 88.97, 76.98),
    "nc / 1 / 0": (92.37, 91.73, 90.39, 82.61), "1 / None / 1": (91.67, 90.11, 84.72, 70.4),
    "1 / None / 2": (92.32, 92.34, 91.58, 90.32), "1 / None / 3": (92.66, 92.41, 92.47, 92.04),
    "nc / 1 / 1": (92.52, 92.16, 91.48, 89.97), "nc / 1 / 2": (92.37, 92.65, 92.05, 91.97),
}
_MX = (4, 3, 2, 1)
_FLOOR = 0.003  # one digits test image (1/359): a smaller difference is not measurable


def _paper_cell(row: str, mx: int) -> str:
    v = _T3_PAPER[row][_MX.index(mx)]
    return "Div." if v is None else f"{v:.2f}"


def _table3(ctx: Context) -> tuple[dict[tuple[Any, ...], Stat], list[str], str]:
    spec, path = sweeps.shipped("mls_table3")
    df = sweeps.cells_frame(ctx.sweep(spec))
    return stats_by(df, ["scheme", "scheme.mx"]), run_ids(df), path


def _table3_result(ctx: Context, pairs: list[tuple[str, str, int, int]], what: str) -> Result:
    """Checks ``row_a @ mx_a >= row_b @ mx_b`` for each pair."""
    st, ids, path = _table3(ctx)
    checks = []
    for ra, rb, ma, mb in pairs:
        a, b = st.get((ra, ma)), st.get((rb, mb))
        if a is None or b is None:
            checks.append(Check(f"{ra} Mx={ma} >= {rb} Mx={mb}", "", "cell missing", None))
            continue
        checks.append(Check(f"{ra} (Mx={ma}) >= {rb} (Mx={mb})", f"{_paper_cell(ra, ma)} vs {_paper_cell(rb, mb)}",
                            f"{a.text()} vs {b.text()}", at_least(a, b, _FLOOR)))
    rows = [[r] + [st[(r, m)].text() if (r, m) in st else "-" for m in _MX] for r in _T3_PAPER]
    paper_rows = [[r] + [_paper_cell(r, m) for m in _MX] for r in _T3_PAPER]
    panel = plots.Panel("Table 3 on LeNet-5 / digits", "Mx", "best test accuracy (%)",
                        {r: (list(_MX), [st[(r, m)].mean * 100 if (r, m) in st and not st[(r, m)].all_diverged
                                         else math.nan for m in _MX]) for r in _T3_PAPER})
    plot = plots.save(ctx, "table3", [panel])
    held = sum(bool(c.ok) for c in checks)
    return Result(ours=f"{held} of {len(checks)} comparisons hold ({what})", checks=checks,
                  command=sweeps.command(path, ctx), run_ids=ids, sweeps=["mls-table3"],
                  data="digits (sklearn), LeNet-5, 10 epochs, 3 seeds (the paper: ResNet-20 on CIFAR-10, 160 epochs)",
                  tables=[Table(["#group / Mg / Ex", "Mx = 4", "Mx = 3", "Mx = 2", "Mx = 1"], rows),
                          Table(["paper: #group / Mg / Ex", "Mx = 4", "Mx = 3", "Mx = 2", "Mx = 1"], paper_rows)],
                  plots=[p for p in [plot] if p],
                  notes=["Accuracy is best_test_acc (%), mean ± sample std over the seeds that did not diverge. "
                         "'a >= b' holds when mean(a) >= mean(b) - max(2 x the standard error of the difference, "
                         "one test image): within noise a tie satisfies >=. A cell whose seeds all diverged "
                         "ranks below every trained cell.",
                         "Only the orderings are compared: digits saturates near 97-98 %."])


def table3_mx(ctx: Context) -> Result:
    """MLS paper, Table 3: in every row, more element mantissa bits (Mx) give at least the accuracy of fewer."""
    pairs = [(r, r, a, b) for r in _T3_PAPER for a, b in zip(_MX, _MX[1:])]
    return _table3_result(ctx, pairs, "Mx + 1 >= Mx in every row")


def table3_grouping(ctx: Context) -> Result:
    """MLS paper, section 5.1.1 and Table 3, first section: "when tensors are split to N x C groups, the
    low-bit training accuracy is higher" (nc / 0 / 0 against none, c and n at every Mx)."""
    pairs = [("nc / 0 / 0", r, m, m) for r in ("1 / None / 0", "c / 0 / 0", "n / 0 / 0") for m in _MX]
    return _table3_result(ctx, pairs, "nc >= none, c, n")


def table3_ex(ctx: Context) -> Result:
    """MLS paper, section 5.1.2 and Table 3, second section: "larger Ex achieves better accuracies, especially
    when Mx is extremely small" (no group scaling, Ex = 0..3 at every Mx)."""
    rows = ["1 / None / 0", "1 / None / 1", "1 / None / 2", "1 / None / 3"]
    pairs = [(b, a, m, m) for a, b in zip(rows, rows[1:]) for m in _MX]
    return _table3_result(ctx, pairs, "Ex + 1 >= Ex")


def table3_mg(ctx: Context) -> Result:
    """MLS paper, section 5.1.1: "Mg = 1 is important for the performance, especially with low Mx (e.g., when
    Mx = 1)" (nc / 1 / 0 against nc / 0 / 0 at every Mx)."""
    pairs = [("nc / 1 / 0", "nc / 0 / 0", m, m) for m in _MX]
    return _table3_result(ctx, pairs, "Mg = 1 >= Mg = 0")


def table3_cifar10(ctx: Context) -> Result:
    """MLS paper, Table 3 in the paper's own setting: ResNet-20 on CIFAR-10, 160 epochs
    (``sweeps/mls_table3_cifar10.toml``); only in the full mode and with the data."""
    _, path = sweeps.shipped("mls_table3_cifar10")
    cmd = sweeps.command(path, ctx) + "   (set root in [base.data])"
    if not ctx.profile.cifar:
        return cannot("--quick runs digits only; the full mode (no --quick) runs this with CIFAR-10 "
                      "(40 cells of 160 ResNet-20 epochs: days on this CPU-only VM)", command=cmd)
    if ctx.cifar_root is None and not ctx.download:
        return cannot("CIFAR-10 is not on this machine (no --cifar-root, nothing in the catalogue cache) and "
                      "--download was not given", command=cmd)
    from core.data.catalogue import cache_dir

    spec, _ = sweeps.table3_cifar_sweep(ctx, ctx.cifar_root or cache_dir("cifar10"))
    df = sweeps.cells_frame(ctx.sweep(spec))
    st = stats_by(df, ["scheme", "scheme.mx"])
    checks = []
    for r in _T3_PAPER:
        for m in _MX:
            s, ref = st.get((r, m)), _T3_PAPER[r][_MX.index(m)]
            if s is None:
                continue
            ok = s.all_diverged if ref is None else (not s.all_diverged and within(s.mean * 100, ref, abs_=1.0))
            checks.append(Check(f"{r}, Mx = {m} within 1 point", _paper_cell(r, m), s.text(), ok))
    return Result(ours=f"{sum(bool(c.ok) for c in checks)} of {len(checks)} cells within 1 point", checks=checks,
                  command=cmd, run_ids=run_ids(df), sweeps=[spec.name], data="CIFAR-10, ResNet-20, 160 epochs")


# --------------------------------------------------------------------------------------- accumulator

def acc16(ctx: Context) -> Result:
    """MLS paper, section 4.2 (after Table 3): with <2,4> elements the products are 2 Mx + 2^(Ex+1) - 2 = 14 bits,
    "which means that the accumulation can be conducted using 16-bit integers". Measured: the ``acc_bits``
    telemetry (the fewest signed bits that hold every running intra-group sum; docs/papers.md#mls-acc-bits)."""
    spec, path = sweeps.acc_bits_sweep(ctx)
    cells = ctx.sweep(spec)
    ids = run_ids(cells)
    df = telemetry_values(ctx.store, ids, "acc_bits", "live") if ids else None
    cmd = sweeps.command(path, ctx)
    if df is None or df.empty:
        return cannot("the run logged no acc_bits", run_ids=ids, sweeps=[spec.name], command=cmd)
    ex, mx = 2, 4
    product = 2 * mx + 2 ** (ex + 1) - 2
    per_layer = df.groupby("layer", sort=False)["value"].agg(["min", "max", "count"]).reset_index()
    checks = [Check("product width 2 Mx + 2^(Ex+1) - 2 for <2,4>", "14 bits", f"{product} bits", product == 14)]
    for r in per_layer.itertuples():
        checks.append(Check(f"{r.layer}: every window sum fits 16 bits", "16 bits suffice",
                            f"{int(r.min)}..{int(r.max)} bits over {int(r.count)} measurements", r.max <= 16))
    rows = [[r.layer, str(int(r.min)), str(int(r.max)), str(int(r.count))] for r in per_layer.itertuples()]
    steps = sorted(set(df["step"]))
    panel = plots.Panel("acc_bits per MLS layer (<2,4>, N x C)", "step", "bits",
                        {lay: (list(g["step"]), list(g["value"])) for lay, g in df.groupby("layer", sort=False)},
                        hline=(16, "16 bits (paper)"))
    plot = plots.save(ctx, "acc_bits", [panel])
    return Result(ours=f"{int(df['value'].min())}..{int(df['value'].max())} bits over {len(per_layer)} layers and "
                       f"{len(steps)} steps", checks=checks, command=cmd, run_ids=ids, sweeps=[spec.name],
                  data="digits, LeNet-5 trained in MLS <2,4> with N x C groups, Mg = 1, every layer MLS; 4 inputs of "
                       "the batch per measurement",
                  tables=[Table(["layer", "min bits", "max bits", "measurements"], rows)],
                  plots=[p for p in [plot] if p],
                  notes=["14 bits is one product; a k x k window adds k^2 of them (9 for 3x3, 25 for LeNet-5's 5x5), "
                         "so the partial sum can need up to ceil(log2(k^2)) more bits (docs/papers.md#mls-acc-bits). "
                         "A linear layer's 'window' is one product."])
