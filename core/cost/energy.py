"""Energy estimate of a training iteration (MLS paper, section 5.2 and App. E, Eq. 9; docs/papers.md#mls-energy).

Costs are in units of ``C`` = one FP32 addition. The paper's values (App. E, after Horowitz 2014, Tab. 4,
and Yang et al. 2020): FP32 add = C, FP32 mul = 4C, FP8 (low-bit float) mul = 4/7 C, INT16 add = 1/20 C.
The other entries of :class:`EnergyTable` are Horowitz's 45 nm figures divided by his FP32 add (0.9 pJ);
every entry can be changed (``EnergyTable(fp8_mul=0.5)``, or ``--set fp8_mul=0.5`` on the CLI).

A convolution's multiply-adds split as in the MLS arithmetic (section 4.2, Eq. 6-8, Fig. 4): ``P`` intra-group
partial sums (one per output element and input channel) each add up a ``kh x kw`` window, then the ``P``
partial sums are added into the outputs by the addition tree. With ``M`` multiply-adds:

* ``#MUL = M``, ``#LocalACC = #LocalADD = M - P`` (window adds), ``#Scale = P`` (the ``Sg(w) Sg(a)``
  shift-and-add of each partial sum, Eq. 8), ``#TreeADD = #TreeACC = P``;
* full precision: ``4 #MUL + 1 #LocalACC + 1 #TreeADD`` (one FP32 add per multiply-add);
* MLS: ``4/7 #MUL + 1/20 (#LocalADD + #Scale) + 1 #TreeACC``.

Eq. 9 is their ratio; for a 3x3 convolution ``P = M/9`` and it is ``5 / (4/7 + 1/20 + 1/9) = 6.83``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .ops import OpCounts

__all__ = ["EnergyTable", "ARITHMETICS", "gemm_energy", "iteration_energy", "eq9_ratio", "arithmetic_for",
           "parse_overrides"]

_PJ_FP32_ADD = 0.9  # Horowitz 2014 (MLS paper, Tab. 4): 32-bit float add, 45 nm, 0.9 V


@dataclass(frozen=True)
class EnergyTable:
    """Energy per primitive operation, in units of an FP32 add (``C``; MLS paper, App. E).

    Attributes:
        fp32_add, fp32_mul, fp8_mul, int16_add: the paper's App. E values (C, 4C, 4/7 C, 1/20 C).
        fp16_add, fp16_mul, int8_add, int8_mul: Horowitz 2014 (the paper's Tab. 4) / 0.9 pJ.
        int32_add: Horowitz 2014's 32-bit integer add (0.1 pJ) / 0.9 pJ (NITI's accumulator).
    """

    fp32_add: float = 1.0
    fp32_mul: float = 4.0
    fp8_mul: float = 4.0 / 7.0
    int16_add: float = 1.0 / 20.0
    fp16_add: float = 0.40 / _PJ_FP32_ADD
    fp16_mul: float = 1.1 / _PJ_FP32_ADD
    int8_add: float = 0.03 / _PJ_FP32_ADD
    int8_mul: float = 0.2 / _PJ_FP32_ADD
    int32_add: float = 0.1 / _PJ_FP32_ADD

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not (isinstance(v, (int, float)) and v >= 0):
                raise ValueError(f"EnergyTable.{f.name} must be a number >= 0, got {v!r}")


#: arithmetic -> (multiplier, window (local) add, scale, tree add): names of :class:`EnergyTable` fields
ARITHMETICS: dict[str, tuple[str, str, str | None, str]] = {
    "fp32": ("fp32_mul", "fp32_add", None, "fp32_add"),       # full precision
    "fp16": ("fp16_mul", "fp32_add", None, "fp32_add"),       # 16-bit float multiply, FP32 accumulation
    "lowfp": ("fp8_mul", "fp32_add", None, "fp32_add"),       # "other low-bit training": FP8 mul, FP32 acc
    "mls": ("fp8_mul", "int16_add", "int16_add", "fp32_add"),  # MLS: low-bit mul, INT16 local acc (Eq. 9)
    "int8": ("int8_mul", "int32_add", None, "int32_add"),     # integer training (NITI): int8 x int8 -> int32
}


def gemm_energy(macs: float, partial_sums: float, arithmetic: str, table: EnergyTable | None = None) -> float:
    """Energy (C) of ``macs`` multiply-adds grouped into ``partial_sums`` window sums, in ``arithmetic``
    (a key of :data:`ARITHMETICS`; module doc, Eq. 9's terms)."""
    t = table or EnergyTable()
    if arithmetic not in ARITHMETICS:
        raise ValueError(f"unknown arithmetic {arithmetic!r}; known: {', '.join(ARITHMETICS)}")
    mul, local, scale, tree = ARITHMETICS[arithmetic]
    p = min(float(partial_sums), float(macs))
    e = getattr(t, mul) * macs + getattr(t, local) * (macs - p) + getattr(t, tree) * p
    if scale is not None:
        e += getattr(t, scale) * p
    return float(e)


def iteration_energy(counts: OpCounts, arithmetic: str = "fp32", table: EnergyTable | None = None,
                     float_layers: tuple[str, ...] = ()) -> dict[str, float]:
    """Energy (C) of one training iteration: the Conv/Linear multiply-adds of the forward and the backward
    (``3 M`` per layer, each pass with the forward's window structure) in ``arithmetic``, layers named in
    ``float_layers`` in FP32; batch norm (a multiply and an add per element, F and B), element-wise adds
    and weight updates in FP32 (Table 1's other rows). Returns the parts and their ``total``."""
    t = table or EnergyTable()
    conv = 0.0
    for r in counts.layers:
        if r.kind in ("conv", "linear"):
            a = "fp32" if r.name in float_layers else arithmetic
            conv += 3.0 * gemm_energy(r.fwd, r.partial_sums, a, t)
    bn = (counts.bn_f + counts.bn_b) * (t.fp32_mul + t.fp32_add)
    ew = (counts.ew_f + counts.ew_b) * t.fp32_add
    upd = (counts.update + counts.update_bn) * t.fp32_add
    return {"conv": conv, "bn": float(bn), "ew_add": float(ew), "update": float(upd),
            "total": conv + float(bn + ew + upd)}


def eq9_ratio(counts: OpCounts, table: EnergyTable | None = None, arithmetic: str = "mls") -> float:
    """MLS paper, App. E, Eq. 9: energy of the convolution arithmetic in full precision over that in
    ``arithmetic`` (MLS by default), summed over the model's Conv/Linear layers (forward and backward
    share the window structure, so the ratio is that of the forward)."""
    num = sum(gemm_energy(r.fwd, r.partial_sums, "fp32", table) for r in counts.layers if r.kind in ("conv", "linear"))
    den = sum(gemm_energy(r.fwd, r.partial_sums, arithmetic, table) for r in counts.layers
              if r.kind in ("conv", "linear"))
    return num / den if den else float("nan")


def arithmetic_for(fmt_a: Any, fmt_w: Any) -> str:
    """The arithmetic a layer with these operand formats runs in (parsed specs or None = float):
    float operand -> ``fp32``; an MLS operand -> ``mls``; both integer (int, fixed, niti, bfp) of <= 8 bits
    -> ``int8``; otherwise by the wider operand's bits: <= 8 -> ``lowfp``, <= 16 -> ``fp16``, else ``fp32``."""
    if fmt_a is None or fmt_w is None:
        return "fp32"
    fams = {getattr(f, "family", "") for f in (fmt_a, fmt_w)}
    bits = max(int(getattr(f, "bits", 32)) for f in (fmt_a, fmt_w))
    if "mls" in fams:
        return "mls"
    if fams <= {"int", "fixed", "niti", "bfp"} and bits <= 8:
        return "int8"
    if bits <= 8:
        return "lowfp"
    return "fp16" if bits <= 16 else "fp32"


def parse_overrides(text: str, table: EnergyTable | None = None) -> EnergyTable:
    """``"fp8_mul=0.5,int16_add=0.04"`` -> a copy of ``table`` with those entries changed.

    Raises:
        ValueError: unknown entry or a value that is not a number >= 0.
    """
    t = table or EnergyTable()
    names = {f.name for f in dataclasses.fields(EnergyTable)}
    kw: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, val = part.partition("=")
        key = key.strip()
        if not sep or key not in names:
            raise ValueError(f"bad energy entry {part!r}; use NAME=VALUE with NAME one of {', '.join(sorted(names))}")
        try:
            kw[key] = float(val)
        except ValueError:
            raise ValueError(f"energy entry {key} needs a number, got {val.strip()!r}") from None
    return dataclasses.replace(t, **kw)
