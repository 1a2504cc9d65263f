"""Exports of a comparison of stored runs: figures and files (PNG, SVG, standalone HTML), and the CLI.

The data model (:class:`Comparison`, :func:`load_comparison`, :func:`run_label`, the metric
names) is :mod:`explorer.comparison`'s; it is re-exported here for compatibility.

``explorer.export(runs, out_dir)`` (this module is callable) and the CLI
``python -m explorer.export --runs ID [ID ...] --out DIR`` write:

* ``<name>.png`` and ``<name>.svg`` drawn with matplotlib (no browser); the runs' configs are
  in the image metadata (PNG text chunk / SVG ``<metadata>``) and a caption under the plots
  names each run's dataset, model, optimizer settings and final accuracy;
* ``<name>.html``: the interactive Bokeh version with every resource inlined
  (``bokeh.resources.INLINE``), so it opens offline, with a caption table of the configs;
* ``<name>.json``: the configs, final metrics and the list of files.

Runs come from a :class:`core.store.RunStore` by id; nothing else is read.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import html
import json
import math
import re
import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import pandas as pd

from .comparison import (EPOCH_METRICS, STEP_METRICS, Comparison, final_table, flatten_config, load_comparison,
                         open_store, run_label)

__all__ = [
    "export_comparison",
    "export",
    "load_comparison",
    "Comparison",
    "comparison_figure",
    "flatten_config",
    "run_label",
    "STEP_METRICS",
    "EPOCH_METRICS",
    "main",
]

FORMATS: tuple[str, ...] = ("png", "svg", "html")
if TYPE_CHECKING:
    import holoviews as hv

#: <script src>/<link href> tags that Panel adds for its own components (relative "static/..." ones, and
#: CDN ones such as the Tabulator stylesheet once a page used a table): none is used by an export
_RELATIVE_SCRIPT = re.compile(r'<script[^>]*src="(?:static/|https?://)[^"]*"[^>]*></script>\s*'
                              r'|<link[^>]*href="(?:static/|https?://)[^"]*"[^>]*>\s*')


def _smooth(df: pd.DataFrame, col: str, window: int) -> pd.DataFrame:
    if window <= 1 or col not in df or not len(df):
        return df
    out = df.copy()
    out[col] = out[col].rolling(window, min_periods=1).mean()
    return out


def curves(comp: Comparison, metric: str, smooth: int = 1) -> hv.Overlay:
    """Overlay of one metric per run (per step or per epoch, by the metric's name)."""
    from . import plots  # HoloViews and Panel load with it: not for --list and --help

    per_epoch = metric in EPOCH_METRICS
    src = comp.epochs if per_epoch else comp.steps
    frames = {r: _smooth(src[r], metric, 1 if per_epoch else smooth) for r in comp.run_ids}
    title = metric.replace("_", " ") + (" (per epoch)" if per_epoch else "")
    return plots.curves_plot(frames, metric, x="step", labels=comp.labels, title=title, markers=per_epoch)


def grid_plot(comp: Comparison, x: str, y: str, value: str = "final_test_acc") -> hv.Overlay:
    """Heat map of ``value`` over two config keys of the runs (e.g. scheme.ex x scheme.mx), each cell's
    value written on it (as in the PNG export)."""
    from . import plots

    title = f"{value} over {x} x {y}" if y and y != x else f"{value} over {x}"
    heat = plots.grid_heatmap(comp.summary, x, y, value, title=title)
    return (heat * plots.grid_labels(comp.summary, x, y, value)).opts(title=title)


def comparison_figure(
    comp: Comparison,
    metrics: Sequence[str] = ("loss", "test_acc"),
    grid: tuple[str, str] | None = None,
    value: str = "final_test_acc",
    smooth: int = 1,
) -> hv.Layout:
    """The comparison as a HoloViews layout: one overlay per metric, plus a grid heat map."""
    import holoviews as hv

    items: list[Any] = [curves(comp, m, smooth) for m in metrics]
    if grid is not None:
        items.append(grid_plot(comp, grid[0], grid[1], value))
    return hv.Layout(items).cols(2)


def _caption_lines(comp: Comparison) -> list[str]:
    lines = []
    for r in comp.run_ids:
        c = comp.configs[r]
        s = comp.summary.set_index("run_id").loc[r]
        acc = s["final_test_acc"]
        acc_s = f"{acc:.2%}" if isinstance(acc, float) and math.isfinite(acc) else "n/a"
        lines.append(
            f"{comp.labels[r]}: {c.get('data', {}).get('name')} / {c.get('model', {}).get('name')}, "
            f"lr={c.get('optim', {}).get('lr')}, bs={c.get('batch_size')}, epochs={c.get('epochs')}, "
            f"seed={c.get('seed')}; final test acc {acc_s}")
    return lines


def _metadata(comp: Comparison) -> dict[str, Any]:
    return {
        "title": "Lowbit Explorer comparison",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "store": comp.store_path,
        "runs": [{"run_id": r, "label": comp.labels[r], "config": comp.configs[r]} for r in comp.run_ids],
        "final": json.loads(final_table(comp).assign(run_id=comp.run_ids).to_json(orient="records")),
    }


def _bokeh_options(obj: Any) -> Any:
    import holoviews as hv

    return obj.opts(
        hv.opts.Curve(width=560, height=340, tools=["hover"], line_width=2, backend="bokeh"),
        hv.opts.Scatter(size=7, backend="bokeh"),
        # no legend in the plots (many long labels stretch them): the header lists the runs with their colours
        hv.opts.Overlay(width=560, height=380, show_legend=False, backend="bokeh"),
        hv.opts.HeatMap(width=460, height=340, cmap="viridis", colorbar=True, tools=["hover"], backend="bokeh"),
    )


def static_figure(
    comp: Comparison,
    metrics: Sequence[str] = ("loss", "test_acc"),
    grid: tuple[str, str] | None = None,
    value: str = "final_test_acc",
    smooth: int = 1,
) -> Any:
    """The comparison as a matplotlib Figure: one panel per metric (+ grid heat map), a shared
    legend and a caption with each run's data/model/optimizer settings and final accuracy."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from . import plots

    n = len(metrics) + (1 if grid is not None else 0)
    ncols = 1 if n == 1 else 2
    nrows = math.ceil(n / ncols)
    caption = _caption_lines(comp)
    if len(caption) > 16:
        caption = caption[:16] + [f"... and {len(caption) - 16} more runs (see the metadata)"]
    legend_rows = math.ceil(len(comp.run_ids) / 2)
    text_h = 0.2 * (legend_rows + len(caption)) + 0.4
    fig = Figure(figsize=(6.2 * ncols, 3.3 * nrows + text_h))
    gs = fig.add_gridspec(nrows + 1, ncols, height_ratios=[3.3] * nrows + [text_h], hspace=0.45, wspace=0.28,
                          left=0.08, right=0.97, top=0.95, bottom=0.02)
    handles = []
    for i, m in enumerate(metrics):
        ax = fig.add_subplot(gs[i // ncols, i % ncols])
        per_epoch = m in EPOCH_METRICS
        src = comp.epochs if per_epoch else comp.steps
        for j, r in enumerate(comp.run_ids):
            df = _smooth(src[r], m, 1 if per_epoch else smooth)
            color = plots.RUN_COLORS[j % len(plots.RUN_COLORS)]
            if m in df and len(df):
                d = df[["step", m]].dropna()
                (line,) = ax.plot(d["step"], d[m], color=color, lw=1.4, marker="o" if per_epoch else None,
                                  ms=3, label=comp.labels[r])
            else:
                (line,) = ax.plot([], [], color=color, label=comp.labels[r])
            if i == 0:
                handles.append(line)
        ax.set_title(m.replace("_", " ") + (" (per epoch)" if per_epoch else ""), fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel(m)
        ax.grid(alpha=0.3)
    if grid is not None:
        k = len(metrics)
        ax = fig.add_subplot(gs[k // ncols, k % ncols])
        gy = grid[1] if grid[1] and grid[1] != grid[0] else "runs"
        t = comp.summary.assign(runs="all")[[grid[0], gy, value]].copy()
        grid = (grid[0], gy)
        t[grid[0]] = t[grid[0]].astype(str)
        t[grid[1]] = t[grid[1]].astype(str)
        piv = t.pivot_table(index=grid[1], columns=grid[0], values=value, aggfunc="mean")
        im = ax.imshow(piv.to_numpy(float), cmap="viridis", origin="lower", aspect="auto")
        ax.set_xticks(range(piv.shape[1]), piv.columns)
        ax.set_yticks(range(piv.shape[0]), piv.index)
        ax.set_xlabel(grid[0])
        ax.set_ylabel(grid[1])
        for (yy, xx), v in np.ndenumerate(piv.to_numpy(float)):
            if math.isfinite(v):
                ax.text(xx, yy, f"{v:.3g}", ha="center", va="center", color="white", fontsize=8)
        fig.colorbar(im, ax=ax, label=value)
        ax.set_title(f"{value} over {grid[0]}" + (f" x {grid[1]}" if gy != "runs" else ""), fontsize=10)
    tax = fig.add_subplot(gs[nrows, :])
    tax.axis("off")
    tax.legend(handles=handles, loc="upper left", ncol=2, fontsize=8, frameon=False)
    tax.text(0.0, 0.0, "\n".join(caption), fontsize=7, family="monospace", va="bottom", ha="left",
             transform=tax.transAxes)
    return fig


def _write_static(comp: Comparison, path: Path, fmt: str, **kw: Any) -> Path:
    fig = static_figure(comp, **kw)
    meta_json = json.dumps(_metadata(comp), default=str)
    meta = {"Title": "Lowbit Explorer comparison", "Description": meta_json}
    if fmt == "png":
        meta["Software"] = "lowbit-explorer"
        fig.savefig(path, dpi=110, metadata=meta)
    else:
        fig.savefig(path, metadata=meta)
    return path


def _config_details(comp: Comparison) -> str:
    """Each run's config as a collapsed ``<details>`` (its label as the summary; open one to read it),
    so many runs do not make the page thousands of pixels tall."""
    return "".join(
        f"<details class='run-config'><summary><b>{html.escape(comp.labels[r])}</b> <code>{r}</code></summary>"
        f"<pre style='margin:0 0 6px 16px;font-size:11px'>{html.escape(json.dumps(comp.configs[r], indent=1))}</pre>"
        f"</details>" for r in comp.run_ids)


def _write_html(fig_obj: Any, comp: Comparison, path: Path) -> Path:
    from bokeh.io import save
    from bokeh.layouts import column
    from bokeh.models import Div  # type: ignore[attr-defined]
    from bokeh.resources import INLINE
    import holoviews as hv

    from . import plots

    model = hv.render(fig_obj, backend="bokeh")
    table = final_table(comp).to_html(index=False, float_format=lambda v: f"{v:.4g}")
    lines = "".join(
        f"<li style='list-style:none'><span style='display:inline-block;width:12px;height:12px;margin-right:6px;"
        f"background:{plots.RUN_COLORS[i % len(plots.RUN_COLORS)]}'></span>{html.escape(x)}</li>"
        for i, x in enumerate(_caption_lines(comp)))
    header = Div(text=f"<h2>Lowbit Explorer comparison</h2><ul style='padding:0'>{lines}</ul>", width=1100)
    configs = html.escape(json.dumps(_metadata(comp), default=str))
    caption = Div(text=f"<h3>Final metrics</h3>{table}<h3>Run configs</h3>{_config_details(comp)}"
                       f"<script type='application/json' id='run-configs'>{configs}</script>",
                  width=1100)
    save(column(header, model, caption), filename=str(path), resources=INLINE, title="Lowbit Explorer comparison")
    # Panel (imported by HoloViews) adds <script>/<link> tags ("static/extensions/...", CDN stylesheets) for
    # its own components; none are used here, and offline they do not load: drop them.
    text = path.read_text(encoding="utf-8")
    path.write_text(_RELATIVE_SCRIPT.sub("", text), encoding="utf-8")
    return path


def export_comparison(
    runs: Sequence[str],
    out_dir: str | Path | None = None,
    store: Any = None,
    formats: Iterable[str] = FORMATS,
    metrics: Sequence[str] = ("loss", "test_acc"),
    grid: tuple[str, str] | None = None,
    value: str = "final_test_acc",
    smooth: int = 1,
    name: str = "comparison",
) -> list[Path]:
    """Write the comparison of stored runs as PNG, SVG and standalone HTML (plus a JSON sidecar).

    Args:
        runs: run ids (or unique prefixes) in the store.
        out_dir: directory to write into (created); default ``<store dir>/exports/<timestamp>``.
        store: ``RunStore``, store path, or None for the default store.
        formats: any of ``png``, ``svg``, ``html``.
        metrics: curves to draw (``loss``, ``train_acc``, ``lr``, ``test_acc``, ``test_loss`` ...).
        grid: two flattened config keys for a heat map of ``value`` (e.g. ``("scheme.ex", "scheme.mx")``).
        value: the summary column shown in the grid heat map.
        smooth: rolling-mean window for per-step curves.
        name: file stem.

    Returns:
        The written files (the JSON sidecar last).

    Raises:
        ValueError: unknown run, format or metric.
    """
    if not name or name in (".", "..") or Path(name).name != name or "/" in name or "\\" in name:
        raise ValueError(f"export name must be a file name without folders, got {name!r}")
    fmts = [f.lower().lstrip(".") for f in formats]
    bad = [f for f in fmts if f not in FORMATS]
    if bad:
        raise ValueError(f"unknown export format(s) {', '.join(bad)}; valid: {', '.join(FORMATS)}")
    unknown = [m for m in metrics if m not in STEP_METRICS + EPOCH_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}; valid: {', '.join(STEP_METRICS + EPOCH_METRICS)}")
    st = open_store(store)
    comp = load_comparison(list(runs), st)
    if grid is not None:
        missing = [k for k in grid if k and k not in comp.summary.columns]
        if missing:
            raise ValueError(f"grid key(s) {', '.join(missing)} are not config keys of these runs")
    if out_dir is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        out_dir = Path(st.path).parent / "exports" / stamp
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig_obj = comparison_figure(comp, metrics, grid, value, smooth)
    written: list[Path] = []
    for fmt in fmts:
        path = out / f"{name}.{fmt}"
        if fmt == "html":
            written.append(_write_html(_bokeh_options(fig_obj), comp, path))
        else:
            written.append(_write_static(comp, path, fmt, metrics=metrics, grid=grid, value=value,
                                         smooth=smooth))
    side = out / f"{name}.json"
    meta = _metadata(comp)
    meta["files"] = [p.name for p in written]
    side.write_text(json.dumps(meta, indent=1, default=str))
    written.append(side)
    return written


#: the historical name (``explorer.export(...)`` calls it)
export = export_comparison


# ----------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    from core.cli import ArgumentParser, int_in

    p = ArgumentParser(
        prog="python -m explorer.export",
        description="Export a comparison of stored runs (metric curves, with --grid a heat map over two "
                    "config keys, and a caption naming each run's settings and final accuracy) as PNG, SVG "
                    "and offline standalone HTML, plus <name>.json with the configs and final metrics.")
    p.add_argument("--runs", nargs="+", default=None, help="run ids (or unique prefixes); see --list")
    p.add_argument("--last", type=int_in(1), default=None, help="compare the N most recent runs instead of --runs")
    p.add_argument("--store", default=None, help="run store file (default: $LOWBIT_STORE or the user data dir)")
    p.add_argument("--out", default=None, help="output directory (default: <store dir>/exports/<timestamp>)")
    p.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS, metavar="FORMAT",
                   help=f"files to write: {', '.join(FORMATS)} (default: all)")
    p.add_argument("--metrics", nargs="+", default=["loss", "test_acc"], choices=STEP_METRICS + EPOCH_METRICS,
                   metavar="METRIC",
                   help=f"curves to overlay (default: loss test_acc): {', '.join(STEP_METRICS + EPOCH_METRICS)}")
    p.add_argument("--grid", nargs=2, default=None, metavar=("X", "Y"),
                   help="two config keys for a heat map, e.g. scheme.ex scheme.mx")
    p.add_argument("--value", default="final_test_acc", help="summary column of the grid heat map")
    p.add_argument("--smooth", type=int_in(1, 100_000), default=1, help="rolling mean window for per-step curves")
    p.add_argument("--name", default="comparison", help="file stem")
    p.add_argument("--list", action="store_true", help="list the runs in the store and exit")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (0 ok, 2 bad input)."""
    from core.cli import fail
    from core.store import StoreError

    args = _parser().parse_args(argv)
    try:
        st = open_store(args.store)
        if args.list:
            runs = st.list_runs()
            cols = [c for c in ("run_id", "status", "dataset", "model", "scheme", "step", "final_test_acc", "created")
                    if c in runs]
            sys.stdout.write(runs[cols].to_string(index=False) + "\n")
            return 0
        if args.last:
            ids = [str(r) for r in st.list_runs()["run_id"][: args.last]]
        else:
            ids = list(args.runs or [])
        if not ids:
            return fail("give --runs ID [ID ...] or --last N (see --list)")
        files = export_comparison(ids, args.out, st, args.formats, args.metrics,
                       tuple(args.grid) if args.grid else None, args.value, args.smooth, args.name)
    except (ValueError, OSError, StoreError) as exc:
        return fail(exc)
    for f in files:
        sys.stdout.write(f"{f}\n")
    return 0


class _CallableModule(types.ModuleType):
    """Lets ``explorer.export(...)`` call :func:`export_comparison` while ``explorer.export`` stays a module
    (``python -m explorer.export`` needs the module; a package attribute of the same name would be
    replaced by the submodule the first time it is imported)."""

    def __call__(self, *args: Any, **kwargs: Any) -> list[Path]:
        return export_comparison(*args, **kwargs)


if __name__ == "__main__":
    raise SystemExit(main())
else:
    sys.modules[__name__].__class__ = _CallableModule

