"""Effective BitOPs of a run (the survey's cost of a schedule; docs/papers.md#bitops).

Owns :class:`BitopsCounter`: forward hooks on the quantized layers that add, for every training
forward, ``sum over multiply-adds of bits(a) * bits(w)`` (float operands count 32 bits), and the
per-epoch bookkeeping that lets a schedule (CPT, PFQ) be compared with static precision.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .context import MetricRow, StepContext
from .qlayers import parse_spec, qlayers

__all__ = ["BitopsCounter", "spec_bits", "layer_macs", "attach_counter", "cost_rows"]

FLOAT_BITS = 32


def spec_bits(tq: Any) -> int:
    """Bits of one operand: the spec's ``bits`` (32 when float / None)."""
    if tq is None:
        return FLOAT_BITS
    return int(getattr(parse_spec(tq.fmt), "bits", FLOAT_BITS))


def layer_macs(layer: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Multiply-adds of one Linear/Conv2d forward (whole batch)."""
    if isinstance(layer, nn.Conv2d):
        k = layer.weight.shape[1] * layer.weight.shape[2] * layer.weight.shape[3]
        return int(y.numel() * k)
    weight = layer.weight
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"layer_macs: {type(layer).__name__} has no weight tensor")
    return int(y.numel() * weight.shape[1])


class BitopsCounter:
    """Accumulates effective BitOPs of training forwards (eval forwards are not counted).

    ``bits`` may be overridden per layer (NITI: 8x8) through ``override``.
    """

    def __init__(self) -> None:
        self.total = 0.0
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
        self.add(layer_macs(layer, inputs[0], out), ba, bw)

    def add(self, macs: int, bits_a: int, bits_w: int) -> None:
        self.total += float(macs) * bits_a * bits_w

    def mark(self, epoch: int) -> None:
        """Close finished epochs (called with the current epoch before each step)."""
        while self.epoch < epoch:
            self.per_epoch.append(self.total - self.epoch_start)
            self.epoch_start = self.total
            self.epoch += 1

    def attach(self, model: nn.Module) -> "BitopsCounter":
        for _, layer in qlayers(model):
            self._handles.append(layer.register_forward_hook(self.hook))
        model._bitops_counter = self  # type: ignore[assignment]
        return self


def attach_counter(model: nn.Module) -> BitopsCounter:
    """The model's counter, attached on first use."""
    c = getattr(model, "_bitops_counter", None)
    return c if c is not None else BitopsCounter().attach(model)


def cost_rows(model: nn.Module, ctx: StepContext) -> list[MetricRow]:
    """``role="cost"`` rows: cumulative ``bitops``, ``bitops_epoch`` (current epoch so far) and
    ``bitops_last_epoch`` (the last finished epoch)."""
    c = getattr(model, "_bitops_counter", None)
    if c is None:
        return []
    c.mark(ctx.epoch)
    rows = [MetricRow("", "", "", "cost", "bitops", c.total),
            MetricRow("", "", "", "cost", "bitops_epoch", c.total - c.epoch_start)]
    if c.per_epoch:
        rows.append(MetricRow("", "", "", "cost", "bitops_last_epoch", c.per_epoch[-1]))
    ctx.state["bitops_per_epoch"] = list(c.per_epoch)
    ctx.state["bitops_total"] = c.total
    return [r for r in rows if math.isfinite(r.value)]
