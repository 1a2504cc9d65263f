"""Command line of :mod:`core.formats`: ``python -m core.formats show|compare ...``.

Owns :func:`show` (a format's numbers and codebook as text), :func:`compare` (error metrics of
several formats on one tensor), the sample distributions and the tensor-file loader.
"""

from __future__ import annotations

import argparse
import math
import pickle
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from core.cli import SEED_MAX, ArgumentParser, fail, float_in, int_in

from . import parse_format
from .. import codebook, metrics, quantize

DISTRIBUTIONS = ("normal", "laplace", "uniform", "loguniform")


def _fmt_num(v: float) -> str:
    if v == 0 or not math.isfinite(v):
        return str(v)
    return f"{v:.6g}"


def show(spec_text: str, n_codes: int = 16) -> str:
    """The format's numbers and a short codebook, as text."""
    fmt = parse_format(spec_text)
    lines = [
        f"format             {fmt}",
        f"family             {fmt.family}",
        f"bits per element   {fmt.bits}",
        f"max                {_fmt_num(fmt.max)}",
        f"min normal         {_fmt_num(fmt.tiny)}",
        f"min subnormal      {_fmt_num(fmt.smallest_subnormal)}",
        f"rounding modes     {', '.join(fmt.roundings)}",
    ]
    if fmt.scaled:
        lines.append("scaled             yes (values below are element codes, in units of the scale)")
    try:
        book = codebook(fmt)
        n = fmt.finite_count()
        lines.append(f"codes              {n} finite values ({len(book)} non-negative)")
        if len(book) <= n_codes:
            shown = ", ".join(_fmt_num(float(v)) for v in book)
        else:
            head = ", ".join(_fmt_num(float(v)) for v in book[: n_codes // 2])
            tail = ", ".join(_fmt_num(float(v)) for v in book[-n_codes // 2:])
            shown = f"{head}, ..., {tail}"
        lines.append(f"codebook (>= 0)    {shown}")
    except ValueError as err:
        lines.append(f"codes              {err}")
    return "\n".join(lines)


def sample(dist: str, n: int, scale: float, seed: int) -> torch.Tensor:
    """``n`` samples shaped like a conv activation (N, 16, 8, 8) when ``n`` allows,
    so MLS grouping and MX blocks see realistic groups."""
    x = _sample_flat(dist, n, scale, seed)
    return x.reshape(-1, 16, 8, 8) if n % 1024 == 0 and n else x


def _sample_flat(dist: str, n: int, scale: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if dist == "normal":
        return torch.randn(n, generator=g) * scale
    if dist == "laplace":
        u = torch.rand(n, generator=g) - 0.5
        return -scale * torch.sign(u) * torch.log1p(-2 * u.abs())
    if dist == "uniform":
        return (torch.rand(n, generator=g) * 2 - 1) * scale
    if dist == "loguniform":
        e = torch.rand(n, generator=g) * 20 - 10
        s = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
        return s * scale * torch.exp2(e)
    raise ValueError(f"unknown distribution {dist!r}; valid: {', '.join(DISTRIBUTIONS)}")


def load_tensor(path: str) -> torch.Tensor:
    """A tensor from a .pt (``torch.load(weights_only=True)``) or .npy file (no pickles)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"tensor file {path!r} does not exist")
    if p.suffix == ".npy":
        arr = np.load(p, allow_pickle=False)
        t = torch.from_numpy(np.asarray(arr))
    elif p.suffix in (".pt", ".pth"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the unpickler's protocol chatter; the refusal is the message
                obj = torch.load(p, weights_only=True, map_location="cpu")
        except pickle.UnpicklingError:
            raise ValueError(f"{path!r} is refused: it is not a file of tensors that loads safely "
                             f"(torch.load with weights_only=True; pickled objects are never run)") from None
        except (RuntimeError, EOFError, OSError) as exc:
            raise ValueError(f"cannot read {path!r} as a torch file: {str(exc).splitlines()[0]}") from None
        if isinstance(obj, dict):
            tensors = [v for v in obj.values() if isinstance(v, torch.Tensor) and v.is_floating_point()]
            if not tensors:
                raise ValueError(f"{path!r} holds no floating-point tensor")
            t = torch.cat([v.reshape(-1) for v in tensors])
        elif isinstance(obj, torch.Tensor):
            t = obj
        else:
            raise ValueError(f"{path!r} holds a {type(obj).__name__}, not a tensor")
    else:
        raise ValueError(f"unsupported tensor file {path!r}; use .pt or .npy")
    if not t.is_floating_point():
        t = t.to(torch.float32)
    return t


def compare(specs: list[str], x: torch.Tensor, rounding: str = "nearest", seed: int = 0) -> str:
    """A table of ARE / rel. error / SQNR / overflow / underflow per format."""
    rows = [("format", "bits", "ARE", "rel.err", "SQNR dB", "overflow", "underflow")]
    for text in specs:
        fmt = parse_format(text)
        y = quantize(x, fmt, rounding=rounding, seed=seed)
        m = metrics.summary(x, y, fmt)
        rows.append((str(fmt), str(fmt.bits), f"{m['are']:.4g}", f"{m['rel_error']:.4g}",
                     f"{m['sqnr_db']:.2f}", f"{m['overflow']:.3g}", f"{m['underflow']:.3g}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)


_DESCRIPTION = """\
Inspect number formats given as spec strings (e.g. fp8_e4m3, mu8, "mls(ex=2,mx=1,eg=8,mg=1,group=nc)",
"mx(elem=fp4_e2m1)"): show one format's bits, range and codebook, or compare the quantization error
of several formats on a sample distribution or on a tensor file.
"""

_EPILOG = """\
examples:
  python -m core.formats show "mls(ex=2,mx=1,eg=8,mg=1,group=nc)"
  python -m core.formats compare fp8_e4m3 fp8_e5m2 "mu8(mu=255)" --dist laplace --scale 0.5
  python -m core.formats compare bf16 fp8_e4m3 --file weights.pt
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used for ``--help``)."""
    ap = ArgumentParser(prog="python -m core.formats", description=_DESCRIPTION, epilog=_EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="{show,compare}")
    p_show = sub.add_parser("show", help="bits, range and codebook of a format",
                            description="Print a format's bits per element, range, rounding modes and codebook.")
    p_show.add_argument("spec", help='format spec string, e.g. fp8_e4m3 or "mls(ex=2,mx=1)"')
    p_show.add_argument("--codes", type=int_in(1, 1 << 16), default=16, help="codebook values to list (default: 16)")
    p_cmp = sub.add_parser("compare", help="error metrics of formats on a distribution or tensor",
                           description="Quantize one tensor with every format and print ARE, relative error, "
                                       "SQNR, overflow and underflow per format.")
    p_cmp.add_argument("specs", nargs="+", metavar="spec", help="format spec strings to compare")
    p_cmp.add_argument("--dist", choices=DISTRIBUTIONS, default="normal",
                       help="sample distribution (default: normal)")
    p_cmp.add_argument("--scale", type=float_in(0.0, lo_open=True), default=1.0,
                       help="scale of the distribution (default: 1.0)")
    p_cmp.add_argument("-n", type=int, default=1 << 20, help="number of samples (default: 1048576)")
    p_cmp.add_argument("--file", help=".pt (weights only) or .npy tensor file instead of a distribution")
    p_cmp.add_argument("--rounding", default="nearest",
                       help="nearest, stochastic, pseudo_stochastic or truncate (default: nearest)")
    p_cmp.add_argument("--seed", type=int_in(0, SEED_MAX), default=0,
                       help="seed of the samples and of stochastic rounding")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for bad input)."""
    ap = build_parser()
    args = ap.parse_args(argv)
    out = sys.stdout
    try:
        if args.cmd == "show":
            out.write(show(args.spec, args.codes) + "\n")
        else:
            if not 1 <= args.n <= 1 << 28:
                raise ValueError(f"-n must be in 1..{1 << 28}, got {args.n}")
            probe = torch.ones(4, 4)
            for text in args.specs:  # a bad spec or rounding is reported before a large tensor is made
                quantize(probe, parse_format(text), rounding=args.rounding, seed=args.seed)
            x = load_tensor(args.file) if args.file is not None else sample(args.dist, args.n, args.scale, args.seed)
            out.write(compare(args.specs, x, args.rounding, args.seed) + "\n")
    except (ValueError, TypeError) as err:
        return fail(err)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
