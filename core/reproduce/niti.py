"""The NITI paper's claim (seed 002): integer-only training matches fp32 on MNIST (section 4.3, Fig. 5)."""

from __future__ import annotations

from . import plots, sweeps
from .claim import Context, Result, cannot
from .stats import run_ids, stats_by
from .verdict import Check, Table, at_least

__all__ = ["niti_mnist"]


def niti_mnist(ctx: Context) -> Result:
    """NITI paper, section 4.3 and Fig. 5: "NITI trains LeNet model ... with almost identical performance
    comparing to the fp32 baseline" on MNIST (abstract: "no accuracy degradation on the MNIST and CIFAR10
    datasets"). Checked: NITI's best test accuracy >= fp32's - 1 point (within noise)."""
    if ctx.mnist_root is None:
        return cannot("MNIST-t10k is not on this machine (give --mnist-root or $LOWBIT_MNIST_T10K)")
    spec, path = sweeps.niti_sweep(ctx, ctx.mnist_root)
    df = sweeps.cells_frame(ctx.sweep(spec))
    st = stats_by(df, ["scheme"])
    fp, ni = st.get(("fp32",)), st.get(("NITI",))
    if fp is None or ni is None:
        return cannot("cells missing", run_ids=run_ids(df), command=sweeps.command(path, ctx))
    ok = at_least(ni, fp, floor=0.01)
    seeds = len(ctx.profile.seeds)
    plot = plots.save(ctx, "niti_mnist", [plots.Panel(
        "NITI vs fp32, LeNet-5 / MNIST-t10k", "scheme", "best test accuracy (%)",
        {"mean": (["fp32", "NITI"], [fp.mean * 100, ni.mean * 100])}, kind="bar")])
    return Result(
        ours=f"fp32 {fp.text(digits=2)}, NITI {ni.text(digits=2)} (%)",
        checks=[Check("NITI >= fp32 - 1 point", "almost identical (Fig. 5; 20 epochs)",
                      f"{ni.text(digits=2)} vs {fp.text(digits=2)}", ok)],
        command=sweeps.command(path, ctx), run_ids=run_ids(df), sweeps=[spec.name],
        data=f"MNIST-t10k (the real MNIST test set's 10,000 images, split 8,000 train / 2,000 test; the full "
             f"MNIST training set is not on this machine), LeNet-5, {ctx.profile.niti_epochs} epochs, {seeds} seeds",
        tables=[Table(["scheme", "best test acc (%)", "final test acc (%)"],
                      [[s, st[(s,)].text(digits=2),
                        stats_by(df, ["scheme"], "final_test_acc")[(s,)].text(digits=2)] for s in ("fp32", "NITI")])],
        plots=[p for p in [plot] if p],
        notes=["fp32: SGD lr 0.01, momentum 0.9 (the paper's LeNet baseline); NITI: m_u = 3 (the paper's LeNet "
               "setting), its own integer update rule. The paper trains 20 epochs on the 60,000 MNIST training "
               "images."])
