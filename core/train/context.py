"""Small shared records of the training loop: :class:`StepContext`, :class:`StepOutput`, :class:`MetricRow`.

Owns the objects that scheme hooks receive and return, so schemes (``core.schemes``) depend on nothing else of
the loop's internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["StepContext", "StepOutput", "MetricRow"]


@dataclass
class StepContext:
    """What a scheme hook knows about the run at the current step (mutable; owned by the loop).

    Attributes:
        step: global step about to run (0-based); ``epoch``: current epoch (0-based).
        steps_per_epoch, total_steps: run geometry (total changes when ``epochs`` is updated live).
        seed: run seed; ``run_id``: store id.
        model, optimizer: the live objects.
        losses: training losses of all steps so far (for plateau detection, PFQ).
        test_acc: test accuracy after each finished epoch.
        lr: current learning rate.
        state: free-form per-run storage for schemes (plain types if it should be checkpointed).
    """

    step: int = 0
    epoch: int = 0
    steps_per_epoch: int = 1
    total_steps: int = 1
    seed: int = 0
    run_id: str = ""
    model: nn.Module | None = None
    optimizer: torch.optim.Optimizer | None = None
    losses: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    lr: float = 0.0
    state: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepOutput:
    """Result of one training step: the (float) loss and the batch's correct predictions."""

    loss: float
    correct: int
    count: int


@dataclass(frozen=True)
class MetricRow:
    """One telemetry value (a row of the store's ``metrics`` table without run/step/epoch)."""

    layer: str
    tensor: str
    fmt: str
    role: str
    name: str
    value: float

    def to_dict(self) -> dict[str, Any]:
        # a dict literal: dataclasses.asdict deep-copies every field (~25 us a row, ~100 rows a snapshot)
        return {"layer": self.layer, "tensor": self.tensor, "fmt": self.fmt, "role": self.role, "name": self.name,
                "value": self.value}
