"""Effective BitOPs and the energy estimate of a run (the survey's cost of a schedule, docs/papers.md#bitops;
MLS paper, App. E, docs/papers.md#mls-energy).

Owns :class:`BitopsCounter`: forward hooks on the quantized layers that add, for every training
forward, ``sum over multiply-adds of bits(a) * bits(w)`` (float operands count 32 bits), and the
per-epoch bookkeeping that lets a schedule (CPT, PFQ) be compared with static precision. The same
hooks add the energy (units of an FP32 add, ``core.cost.energy``) of that forward and its backward
(``3 x`` the forward's multiply-adds, in the arithmetic of the layer's formats) and of its FP32 twin.
The multiply-add count itself is ``core.cost.layer_macs`` (one count for the CLI's Table 1 and the runs).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from core.cost.energy import EnergyTable, arithmetic_for, gemm_energy
from core.cost.ops import layer_macs, layer_partial_sums

from .context import MetricRow, StepContext
from .qlayers import parse_spec, quantized_layers

__all__ = ["BitopsCounter", "spec_bits", "layer_macs", "attach_counter", "cost_rows", "layer_arithmetic"]

FLOAT_BITS = 32


def spec_bits(tq: Any) -> int:
    """Bits of one operand: the spec's ``bits`` (32 when float / None)."""
    if tq is None:
        return FLOAT_BITS
    return int(getattr(parse_spec(tq.fmt), "bits", FLOAT_BITS))


def layer_arithmetic(q: Any) -> str:
    """The energy model's arithmetic (``core.cost.energy.ARITHMETICS``) of a layer's QuantConfig."""
    if q is None:
        return "fp32"
    return arithmetic_for(parse_spec(q.a.fmt) if q.a is not None else None,
                          parse_spec(q.w.fmt) if q.w is not None else None)


class BitopsCounter:
    """Accumulates effective BitOPs and energy of training forwards (eval forwards are not counted).

    ``bits`` may be overridden per layer (NITI: 8x8) through ``override``, the energy model's arithmetic
    through ``arithmetic`` (NITI: ``int8``); ``table`` is the energy table (App. E's values by default).
    """

    def __init__(self, table: EnergyTable | None = None) -> None:
        self.total = 0.0
        #: energy (units of C) of the counted forwards and their backwards, and of the same work in FP32
        self.energy = 0.0
        self.energy_fp32 = 0.0
        self.table = table or EnergyTable()
        #: BitOPs of named parts (included in ``total``), e.g. DFQ's gates
        self.parts: dict[str, float] = {}
        self.arithmetic: str | None = None
        self.epoch_start = 0.0
        self.epoch = 0
        self.per_epoch: list[float] = []
        self.override: tuple[int, int] | None = None
        self._handles: list[Any] = []

    def hook(self, layer: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if not layer.training:
            return
        q = getattr(layer, "quant", None)
        if self.override is not None:
            ba, bw = self.override
        else:
            ba = spec_bits(q.a if q is not None else None)
            bw = spec_bits(q.w if q is not None else None)
        macs = layer_macs(layer, inputs[0], out)
        self.add(macs, ba, bw)
        self.add_energy(macs, layer_partial_sums(layer, out), self.arithmetic or layer_arithmetic(q))

    def add(self, macs: int, bits_a: int, bits_w: int, part: str | None = None) -> None:
        """Add ``macs * bits_a * bits_w``; a ``part`` (e.g. DFQ's ``gate``) is also summed apart in
        ``parts`` (and logged as ``bitops_<part>``)."""
        v = float(macs) * bits_a * bits_w
        self.total += v
        if part:
            self.parts[part] = self.parts.get(part, 0.0) + v

    def add_energy(self, macs: int, partial_sums: int, arithmetic: str) -> None:
        """Energy of ``macs`` forward multiply-adds and their backward (grad input + grad weight):
        ``3 x gemm_energy`` (MLS paper, App. E; core.cost.energy), and the FP32 twin."""
        self.energy += 3.0 * gemm_energy(macs, partial_sums, arithmetic, self.table)
        self.energy_fp32 += 3.0 * gemm_energy(macs, partial_sums, "fp32", self.table)

    def mark(self, epoch: int) -> None:
        """Close finished epochs (called with the current epoch before each step)."""
        while self.epoch < epoch:
            self.per_epoch.append(self.total - self.epoch_start)
            self.epoch_start = self.total
            self.epoch += 1

    def attach(self, model: nn.Module) -> "BitopsCounter":
        for _, layer in quantized_layers(model):
            self._handles.append(layer.register_forward_hook(self.hook))
        model._bitops_counter = self  # type: ignore[assignment]
        return self


def attach_counter(model: nn.Module) -> BitopsCounter:
    """The model's counter, attached on first use."""
    c = getattr(model, "_bitops_counter", None)
    return c if c is not None else BitopsCounter().attach(model)


def cost_rows(model: nn.Module, ctx: StepContext) -> list[MetricRow]:
    """``role="cost"`` rows: cumulative ``bitops``, ``bitops_epoch`` (current epoch so far) and
    ``bitops_last_epoch`` (the last finished epoch), ``bitops_<part>`` per named part; cumulative
    ``energy`` (units of an FP32 add, conv and linear arithmetic of forward + backward, MLS paper App. E)
    and ``energy_ratio`` (FP32 / this run's)."""
    c = getattr(model, "_bitops_counter", None)
    if c is None:
        return []
    c.mark(ctx.epoch)
    rows = [MetricRow("", "", "", "cost", "bitops", c.total),
            MetricRow("", "", "", "cost", "bitops_epoch", c.total - c.epoch_start)]
    if c.per_epoch:
        rows.append(MetricRow("", "", "", "cost", "bitops_last_epoch", c.per_epoch[-1]))
    rows += [MetricRow("", "", "", "cost", f"bitops_{k}", v) for k, v in sorted(c.parts.items())]
    if c.energy > 0:
        rows += [MetricRow("", "", "", "cost", "energy", c.energy),
                 MetricRow("", "", "", "cost", "energy_ratio", c.energy_fp32 / c.energy)]
    ctx.state["bitops_per_epoch"] = list(c.per_epoch)
    ctx.state["bitops_total"] = c.total
    return [r for r in rows if math.isfinite(r.value)]
