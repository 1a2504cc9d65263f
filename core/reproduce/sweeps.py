"""The sweeps a report trains: the shipped sweep files (``sweeps/*.toml``) and the report's own small
grids, written as sweep files into the report's folder so that each can be rerun with
``python -m core.sweep run``.

Every function returns ``(spec, path)``: the parsed :class:`~core.sweep.SweepSpec` and the file's path
as the report prints it (relative to the repository for shipped files, to the report's folder for the
report's own). The shipped files are used as they are: their cells are the papers' tables.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .claim import REPO, Context

if TYPE_CHECKING:
    from core.sweep import SweepSpec

__all__ = ["shipped", "fig3_formats", "fig3_sweep", "acc_bits_sweep", "niti_sweep", "fracquant_sweep",
           "table3_cifar_sweep", "command"]


def shipped(name: str) -> tuple[SweepSpec, str]:
    """A sweep file of ``sweeps/`` (``mls_table3``, ``logbtq_table2``, ``cpt_bmin``) as it is."""
    from core import sweep

    rel = f"sweeps/{name}.toml"
    return sweep.load(REPO / rel), rel


def command(path: str, ctx: Context) -> str:
    """The ``python -m core.sweep run`` line that trains a sweep file into the report's store."""
    return f"python -m core.sweep run {path} --workers {ctx.workers} --store {ctx.store_label()}"


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, str):
        return json.dumps(v)
    return repr(v)


def _write(ctx: Context, name: str, description: str, base: dict[str, Any], grid: dict[str, Any],
           metric: str = "best_test_acc", axes: tuple[str, ...] = ()) -> tuple[SweepSpec, str]:
    """Write a sweep file ``reproduction/sweeps/<name>.toml`` (base tables + one [grid]) and parse it."""
    from core import sweep

    lines = [f"# Written by python -m core.reproduce ({ctx.profile.name}); rerun with python -m core.sweep run.",
             f"name = {_toml(name)}", f"description = {_toml(description)}", f"metric = {_toml(metric)}"]
    if axes:
        lines.append(f"axes = {_toml(list(axes))}")
    top = {k: v for k, v in base.items() if not isinstance(v, dict)}
    if ctx.profile.max_steps is not None:
        top["max_steps"] = ctx.profile.max_steps
    lines += ["", "[base]"] + [f"{k} = {_toml(v)}" for k, v in top.items()]
    for table, body in base.items():
        if isinstance(body, dict):
            lines += ["", f"[base.{table}]"] + [f"{k} = {_toml(v)}" for k, v in body.items()]
    lines += ["", "[grid]"] + [f"{_toml(k)} = {_toml(v)}" for k, v in grid.items()]
    text = "\n".join(lines) + "\n"
    folder = ctx.assets / "sweeps"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(text)
    return sweep.loads(text, source=str(path), name=name), f"{ctx.ASSETS}/sweeps/{name}.toml"


_DIGITS_RUN = {"batch_size": 32, "checkpoint": False, "threads": 1}
_SGD = {"name": "sgd", "lr": 0.05, "momentum": 0.9}


def fig3_formats() -> dict[str, list[tuple[str, str]]]:
    """The formats of the MLS paper's Fig. 3 rows: ``row -> [(label, spec)]`` (section 5.1).

    Row 1: grouping dimension, ``<0,3>`` elements with ``<8,1>`` group scales; row 2: ``Ex = 0..3`` of
    ``<Ex,3>`` elements without group scaling; row 3: the same with ``<8,1>`` scales on N x C groups.
    """
    return {
        "grouping": [(g, f"mls(ex=0,mx=3,eg=8,mg=1,group={g})") for g in ("none", "c", "n", "nc")],
        "ex": [(f"Ex={e}", f"mls(ex={e},mx=3,eg=8,mg=0,group=none)") for e in range(4)],
        "ex_nc": [(f"Ex={e}", f"mls(ex={e},mx=3,eg=8,mg=1,group=nc)") for e in range(4)],
    }


def fig3_sweep(ctx: Context) -> tuple[SweepSpec, str]:
    """One MLS <2,4> (N x C groups, Mg = 1) LeNet-5 run on digits whose telemetry quantizes every captured
    W, A and E into the Fig. 3 formats as shadows (measured, not trained with)."""
    specs = sorted({s for row in fig3_formats().values() for _, s in row})
    base = {"epochs": ctx.profile.fig3_epochs, "seed": 0, **_DIGITS_RUN,
            "data": {"name": "digits"}, "model": {"name": "lenet5"},
            "scheme": {"name": "mls", "ex": 2, "mx": 4, "eg": 8, "mg": 1, "group": "nc", "first_last": True,
                       "rounding": "stochastic"},
            "optim": _SGD,
            "telemetry": {"every": 25, "sample_every": 0, "tensors": ["w", "a", "e"], "shadow": specs,
                          "hist": False, "stagnation": False, "acc_bits": 0}}
    return _write(ctx, "repro-fig3", "MLS paper, Fig. 3: ARE of W, A, E per layer in the Fig. 3 formats "
                  "(shadow formats on the live tensors of an MLS <2,4> LeNet-5 run on digits).", base,
                  {"seed": [ctx.profile.seeds[0]]})


def acc_bits_sweep(ctx: Context) -> tuple[SweepSpec, str]:
    """MLS <2,4> (N x C groups, Mg = 1, the paper's 16-bit accumulation case) LeNet-5 on digits, logging
    ``acc_bits`` of every MLS layer at every telemetry step."""
    base = {"epochs": ctx.profile.acc_epochs, "seed": 0, **_DIGITS_RUN,
            "data": {"name": "digits"}, "model": {"name": "lenet5"},
            "scheme": {"name": "mls", "ex": 2, "mx": 4, "eg": 8, "mg": 1, "group": "nc", "first_last": True,
                       "rounding": "stochastic"},
            "optim": _SGD,
            "telemetry": {"every": 25, "sample_every": 0, "tensors": ["w", "a"], "hist": False,
                          "stagnation": False, "acc_bits": 4, "acc_bits_every": 25}}
    return _write(ctx, "repro-acc-bits", "MLS paper, section 4.2: accumulator width of the intra-group "
                  "partial sums (acc_bits telemetry) of MLS <2,4> LeNet-5 on digits.", base,
                  {"seed": [ctx.profile.seeds[0]]})


def niti_sweep(ctx: Context, root: Path) -> tuple[SweepSpec, str]:
    """NITI paper, section 4.3: LeNet-5 on MNIST (here MNIST-t10k, 8,000 / 2,000), NITI int8 (m_u = 3)
    against fp32 SGD lr 0.01 momentum 0.9 (the paper's LeNet setting), batch 64."""
    base = {"epochs": ctx.profile.niti_epochs, "seed": 0, "batch_size": 64, "checkpoint": False, "threads": 1,
            "data": {"name": "mnist-t10k", "root": str(root)}, "model": {"name": "lenet5"},
            "scheme": {"name": "fp32"}, "optim": {"name": "sgd", "lr": 0.01, "momentum": 0.9},
            "telemetry": {"every": 50, "sample_every": 0, "hist": False}}
    grid = {"scheme": [{"name": "fp32", "label": "fp32"}, {"name": "niti", "m_u": 3, "label": "NITI"}],
            "seed": list(ctx.profile.seeds)}
    return _write(ctx, "repro-niti-mnist", "NITI paper, section 4.3 / Fig. 5: NITI vs fp32, LeNet-5 on MNIST-t10k.",
                  base, grid, axes=("scheme", "seed"))


def fracquant_sweep(ctx: Context) -> tuple[SweepSpec, str]:
    """FracTrain's PFQ and DFQ (the survey, section on FracTrain) at their defaults against static 8-bit
    (CPT with b_min = b_max = 8), on ``sweeps/cpt_bmin.toml``'s base: the digits MLP, every layer quantized."""
    base = {"epochs": 10, "seed": 0, **_DIGITS_RUN, "data": {"name": "digits"},
            "model": {"name": "mlp", "hidden": [128, 128]}, "scheme": {"name": "cpt"}, "optim": _SGD,
            "telemetry": {"every": 25, "sample_every": 0}}
    grid = {"scheme": [{"name": "cpt", "b_min": 8, "b_max": 8, "cycles": 1, "e_bits": 8, "label": "static 8"},
                       {"name": "pfq", "label": "PFQ"}, {"name": "dfq", "label": "DFQ"}],
            "seed": list(ctx.profile.seeds)}
    return _write(ctx, "repro-fracquant", "FracTrain PFQ and DFQ vs static 8-bit on the digits MLP.", base, grid,
                  axes=("scheme", "seed"))


def table3_cifar_sweep(ctx: Context, root: Path) -> tuple[SweepSpec, str]:
    """``sweeps/mls_table3_cifar10.toml`` with the data root (or ``download``) filled in."""
    spec, rel = shipped("mls_table3_cifar10")
    data = dict(spec.base.get("data", {}))
    data["root"] = str(root)
    data["download"] = ctx.download
    return replace(spec, base={**spec.base, "data": data}), rel


def cells_frame(cells: Any) -> Any:
    """The cells with the scheme label (``coords['scheme']['label']``) and each coordinate as a column."""
    import pandas as pd

    df = pd.DataFrame(list(cells["coords"]))
    for col in ("status", "run_id", "best_test_acc", "final_test_acc"):
        df[col] = cells[col].values
    if "scheme" in df:
        df["scheme"] = [s.get("label", s.get("name")) if isinstance(s, dict) else s for s in df["scheme"]]
    return df
