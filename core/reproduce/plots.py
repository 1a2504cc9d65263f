"""The report's plots: small matplotlib figures (PNG, Agg backend) in the report's ``reproduction/`` folder.

matplotlib is optional: without it :func:`save` returns None and the report has no images (it says so).
Every plot is a row of :class:`Panel` s; a panel is a set of named series drawn as lines, bars or points.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from .claim import Context

__all__ = ["Panel", "save", "available"]


def available() -> bool:
    """Whether matplotlib is installed."""
    return importlib.util.find_spec("matplotlib") is not None


@dataclass
class Panel:
    """One subplot.

    Attributes:
        title, xlabel, ylabel: texts.
        series: label -> (x values, y values); x may be strings (categories).
        kind: ``line``, ``bar`` (grouped bars) or ``scatter``.
        logy: logarithmic y axis.
        hline: a horizontal reference line (value, label).
    """

    title: str
    xlabel: str
    ylabel: str
    series: Mapping[str, tuple[Sequence[object], Sequence[float]]] = field(default_factory=dict)
    kind: str = "line"
    logy: bool = False
    hline: tuple[float, str] | None = None


def save(ctx: Context, name: str, panels: Sequence[Panel], ncols: int | None = None) -> str | None:
    """Draw ``panels`` side by side into ``reproduction/<name>.png``; the path relative to the report (None
    without matplotlib)."""
    if not available() or not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = ncols or len(panels)
    nrows = (len(panels) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False)
    for ax, p in zip(axes.flat, panels):
        cats: list[str] = []
        for xs, _ in p.series.values():
            cats += [str(x) for x in xs if isinstance(x, str) and str(x) not in cats]
        width = 0.8 / max(1, len(p.series))
        for i, (label, (xs, ys)) in enumerate(p.series.items()):
            pos = [cats.index(str(x)) if isinstance(x, str) else float(x) for x in xs]  # type: ignore[arg-type]
            if p.kind == "bar":
                ax.bar([x + (i - (len(p.series) - 1) / 2) * width for x in pos], ys, width=width, label=label)
            elif p.kind == "scatter":
                ax.scatter(pos, ys, label=label, s=18)
            else:
                ax.plot(pos, ys, marker="o", ms=3, label=label)
        if cats:
            ax.set_xticks(range(len(cats)))
            ax.set_xticklabels(cats, rotation=30 if max(len(c) for c in cats) > 6 else 0, ha="right", fontsize=7)
        if p.hline is not None:
            ax.axhline(p.hline[0], color="k", ls="--", lw=0.8, label=p.hline[1])
        if p.logy:
            ax.set_yscale("log")
        ax.set_title(p.title, fontsize=9)
        ax.set_xlabel(p.xlabel, fontsize=8)
        ax.set_ylabel(p.ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    path = ctx.assets / f"{name}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return f"{ctx.ASSETS}/{name}.png"
