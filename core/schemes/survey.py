"""The survey's systems: SBM, CPT and FracTrain PFQ (docs/papers.md#sbm, #cpt, #fractrain-pfq).

Owns :class:`SBMScheme` (``sbm``) with :class:`RangeBatchNorm`, :class:`CPTScheme` (``cpt``) with
:func:`cpt_bits` and :func:`precision_range_test`, and :class:`PFQScheme` (``pfq``) with
:func:`plateau`. All quantize with the uniform GEMMLOWP-style ``int(bits=B,scale=tensor)`` grid
(one float scale per tensor). Each logs effective BitOPs (:mod:`core.train.cost`).

* SBM (Banner et al. 2018): Range BatchNorm normalises by ``C(n) * (max - min)``,
  ``C(n) = 1 / sqrt(2 ln n)``, instead of the standard deviation; gradient bifurcation: the error is
  ``e_bits`` (8) for the propagation GEMM and ``ew_bits`` (16) for the weight-gradient GEMM.
* CPT (Fu et al. 2021): the forward precision (W and A) follows ``cycles`` cosine cycles from
  ``b_min`` up to ``b_max`` over the run; E stays at ``e_bits``. The precision range test
  (:func:`precision_range_test`) runs the first cycle's rise as one training run, the precision
  stepping up from 2 bits, and picks ``b_min`` as the first precision at which the training accuracy
  increases by more than ``threshold``.
* FracTrain PFQ (Fu et al. 2020): forward/backward precision steps through ``fw_levels`` /
  ``bw_levels`` (the last pair is the static target), raised when the loss plateaus: the mean loss of
  the last ``patience`` steps is not below the mean of the ``patience`` steps before by more than
  ``threshold`` (relative). With ``force_at`` in (0, 1], the target is reached at that fraction of the
  run at the latest, so the run ends at the static target (event reason ``deadline``).
  DFQ (per-input gates trained with a cost term) is in :mod:`core.schemes.dfq`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from core.train import MetricRow, QuantConfig, Scheme, StepContext, TensorQuant, convert, register_scheme
from core.train.schemes import field_doc

from core.train.cost import attach_counter, cost_rows

__all__ = ["SBMScheme", "RangeBatchNorm", "range_bn_constant", "CPTScheme", "cpt_bits",
           "precision_range_test", "PRTResult", "get_static_cpt", "PFQScheme", "plateau", "int_spec"]


def int_spec(bits: int) -> str:
    """The uniform (GEMMLOWP-style) ``bits``-bit spec with one scale per tensor."""
    return f"int(bits={int(bits)},scale=tensor)"


def _check_bits(name: str, b: int) -> None:
    if int(b) != b or not 2 <= b <= 16:
        raise ValueError(f"{name} must be an integer in 2..16, got {b}")


class _Counted(Scheme):
    """Mixin: BitOPs counter attached in ``prepare``, epochs closed in ``schedule``, cost rows."""

    def prepare(self, model: nn.Module, seed: int) -> nn.Module:
        model = convert(model, self, seed=seed)
        attach_counter(model)
        return model

    def _mark(self, ctx: StepContext) -> None:
        c = getattr(ctx.model, "_bitops_counter", None) if ctx.model is not None else None
        if c is not None:
            c.mark(ctx.epoch)

    def extra_metrics(self, model: nn.Module, ctx: StepContext) -> list[MetricRow]:
        return cost_rows(model, ctx)


# --------------------------------------------------------------------------------------------- SBM
def range_bn_constant(n: int) -> float:
    """``C(n) = 1 / sqrt(2 ln n)`` (Banner et al. 2018, Range BN)."""
    return 1.0 / math.sqrt(2.0 * math.log(n)) if n > 1 else 1.0


class RangeBatchNorm(nn.Module):
    """Batch norm that divides by ``C(n) * (max - min)`` of the centred batch (per channel, over the
    ``n`` values of the batch and spatial positions) instead of the standard deviation."""

    running_mean: torch.Tensor
    running_scale: torch.Tensor

    def __init__(self, channels: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_scale", torch.ones(channels))
        self.momentum, self.eps = momentum, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        if self.training:
            n = x.numel() // x.shape[1]
            mean = x.mean(dim=dims)
            xc = x - mean.reshape(shape)
            flat = xc.transpose(0, 1).reshape(x.shape[1], -1)
            scale = range_bn_constant(n) * (flat.max(dim=1).values - flat.min(dim=1).values)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_scale.lerp_(scale.detach(), self.momentum)
        else:
            mean, scale = self.running_mean, self.running_scale
            xc = x - mean.reshape(shape)
        y = xc / (scale.reshape(shape) + self.eps)
        return y * self.weight.reshape(shape) + self.bias.reshape(shape)


def _insert_range_bn(model: nn.Module, insert: bool) -> nn.Module:
    for name, m in list(model.named_modules()):
        for cname, child in list(m.named_children()):
            if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d)):
                setattr(m, cname, RangeBatchNorm(child.num_features, momentum=child.momentum or 0.1))
        if insert and isinstance(m, nn.Sequential):
            kids = list(m.children())
            if any(isinstance(k, (nn.BatchNorm1d, nn.BatchNorm2d, RangeBatchNorm)) for k in kids):
                continue
            out: list[nn.Module] = []
            for i, k in enumerate(kids):
                out.append(k)
                nxt = kids[i + 1] if i + 1 < len(kids) else None
                if isinstance(nxt, nn.ReLU) and isinstance(k, (nn.Linear, nn.Conv2d)):
                    out.append(RangeBatchNorm(k.out_features if isinstance(k, nn.Linear) else k.out_channels))
            if len(out) != len(kids):
                for cname in [c for c, _ in m.named_children()]:
                    delattr(m, cname)
                for i, k in enumerate(out):
                    m.add_module(str(i), k)
    return model


@register_scheme("sbm")
@dataclass(frozen=True)
class SBMScheme(_Counted):
    """SBM (Banner et al. 2018, as the survey describes it): 8-bit W/A/E, 16-bit E for the weight gradient, Range BN."""

    description: ClassVar[str] = "scalable 8-bit training: Range BN + gradient bifurcation (SBM)"
    first_last: bool = field(default=True, metadata=field_doc("also quantize the first and last layer"))
    bits: int = field(default=8, metadata=field_doc("bits of W, A and E (propagation)"))
    ew_bits: int = field(default=16, metadata=field_doc("bits of E for the weight-gradient GEMM"))
    e_rounding: str = field(default="stochastic", metadata=field_doc("rounding of E", ("nearest", "stochastic")))
    range_bn: bool = field(default=True, metadata=field_doc("replace BatchNorm by Range BN"))
    insert_bn: bool = field(default=True,
                            metadata=field_doc("insert Range BN after Linear/Conv -> ReLU when the model has no BN"))

    def __post_init__(self) -> None:
        _check_bits("sbm.bits", self.bits)
        _check_bits("sbm.ew_bits", self.ew_bits)
        self.quant()

    def quant(self) -> QuantConfig | None:
        return QuantConfig(w=TensorQuant(int_spec(self.bits)), a=TensorQuant(int_spec(self.bits)),
                           e=TensorQuant(int_spec(self.bits), self.e_rounding),
                           ew=TensorQuant(int_spec(self.ew_bits), self.e_rounding))

    def prepare(self, model: nn.Module, seed: int) -> nn.Module:
        if self.range_bn:
            model = _insert_range_bn(model, self.insert_bn)
        return super().prepare(model, seed)

    def schedule(self, ctx: StepContext) -> "Scheme | None":
        self._mark(ctx)
        return None


# --------------------------------------------------------------------------------------------- CPT
def cpt_bits(step: int, total: int, b_min: int, b_max: int, cycles: int) -> int:
    """CPT forward precision at ``step`` of ``total``: ``cycles`` cosine cycles from b_min up to b_max,
    ``b = round(b_min + (b_max - b_min) (1 - cos(pi * phase)) / 2)``, phase in [0, 1) within a cycle."""
    length = max(1.0, total / cycles)
    phase = (step % length) / length
    return int(round(b_min + 0.5 * (b_max - b_min) * (1.0 - math.cos(math.pi * phase))))


@register_scheme("cpt")
@dataclass(frozen=True)
class CPTScheme(_Counted):
    """CPT (Fu et al. 2021, as the survey describes it): cyclic cosine forward precision; ``bits`` is the current value
    (set by :meth:`schedule` each step, event ``schedule`` on every change)."""

    description: ClassVar[str] = "cyclic precision training (CPT)"
    first_last: bool = field(default=True, metadata=field_doc("also quantize the first and last layer"))
    b_min: int = field(default=3, metadata=field_doc("lowest forward precision"))
    b_max: int = field(default=8, metadata=field_doc("highest forward precision"))
    cycles: int = field(default=4, metadata=field_doc("cosine cycles over the run"))
    e_bits: int = field(default=8, metadata=field_doc("bits of E (static)"))
    bits: int = field(default=0, metadata=field_doc("current forward precision (0 = b_min; set by the schedule)"))

    def __post_init__(self) -> None:
        _check_bits("cpt.b_min", self.b_min)
        _check_bits("cpt.b_max", self.b_max)
        _check_bits("cpt.e_bits", self.e_bits)
        if self.b_min > self.b_max:
            raise ValueError(f"cpt: b_min ({self.b_min}) must be <= b_max ({self.b_max})")
        if int(self.cycles) != self.cycles or self.cycles < 1:
            raise ValueError(f"cpt.cycles must be an integer >= 1, got {self.cycles}")
        if self.bits and not self.b_min <= self.bits <= self.b_max:
            raise ValueError(f"cpt.bits must be 0 or in [b_min, b_max], got {self.bits}")

    @property
    def current(self) -> int:
        return self.bits or self.b_min

    def quant(self) -> QuantConfig | None:
        f = TensorQuant(int_spec(self.current))
        return QuantConfig(w=f, a=f, e=TensorQuant(int_spec(self.e_bits), "stochastic"))

    def schedule(self, ctx: StepContext) -> "Scheme | None":
        self._mark(ctx)
        b = cpt_bits(ctx.step, ctx.total_steps, self.b_min, self.b_max, self.cycles)
        trace = ctx.state.setdefault("precision_trace", [])
        trace.append([ctx.step, b])
        return self.replace(bits=b) if b != self.current else None

    def extra_metrics(self, model: nn.Module, ctx: StepContext) -> list[MetricRow]:
        return [MetricRow("", "", "", "schedule", "bits", float(self.current))] + cost_rows(model, ctx)


@dataclass(frozen=True)
class PRTResult:
    """Outcome of :func:`precision_range_test`.

    Attributes:
        b_min: the chosen lower precision bound.
        levels: the training accuracy (mean of the last ``window`` steps) at each tested precision.
        increases: each precision's increase over the level before it (the first one: over the mean of
            the run's first ``window`` steps, the untrained accuracy).
        passed: whether some precision passed the threshold (else ``b_min`` is the highest candidate).
    """

    b_min: int
    levels: dict[int, float]
    increases: dict[int, float]
    passed: bool


@dataclass(frozen=True)
class _RangeTestScheme(CPTScheme):
    """CPT's first cycle as a precision range test: the forward precision steps through ``ladder`` (one
    value every ``steps`` steps, continuing the same training) instead of the cosine schedule."""

    ladder: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)
    steps: int = 10

    def schedule(self, ctx: StepContext) -> "Scheme | None":
        self._mark(ctx)
        b = self.ladder[min(ctx.step // self.steps, len(self.ladder) - 1)]
        return self.replace(bits=b) if b != self.current else None


def precision_range_test(train_fn: Callable[[Scheme], Any], candidates: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8),
                         threshold: float = 0.25, steps: int = 10, window: int = 5) -> PRTResult:
    """CPT's precision range test (Fu et al. 2021, as the survey describes it: "starting from the lowest
    possible precision (e.g., 2 bits), gradually increasing the precision and monitoring the training
    accuracy, setting the precision lower bound as the first precision that enables an increase in
    training accuracy beyond a pre-set threshold"; run "in the first cycle of CPT").

    One run, as the first cycle's rising half: the forward precision steps through ``candidates``
    (ascending) with ``steps`` training steps each, the weights carried from one precision to the next.
    A precision's training accuracy is the mean over its last ``window`` steps; its increase is that
    minus the previous precision's (the first: minus the mean of the run's first ``window`` steps).
    ``b_min`` is the first precision whose increase exceeds ``threshold``.  A precision too low to
    train barely moves the accuracy, the first that trains lifts it at once; later precisions add
    little, since by then the model has learned.  The survey gives no value for the threshold; the
    default 0.25 (25 accuracy points within ``steps`` = 10 steps) separates, on the digits MLP (seeds
    0-4), the 2-bit stage (+0.09 to +0.21: the biases and the class prior) from the 3-bit one (+0.34
    to +0.43), where training starts (docs/schemes.md, "CPT precision range test").

    Args:
        train_fn: ``scheme -> finished Run``, training at least ``len(candidates) * steps`` steps
            (e.g. ``lambda s: compare.train(s, epochs=2, max_steps=70)``).

    Returns:
        :class:`PRTResult` (``b_min`` = the largest candidate when none passes).

    Raises:
        ValueError: empty candidates, ``steps < window`` or ``window < 1``, or a run with too few steps.
    """
    ladder = tuple(sorted(int(b) for b in candidates))
    if not ladder:
        raise ValueError("precision_range_test: no candidates")
    if window < 1 or steps < window:
        raise ValueError(f"precision_range_test: need 1 <= window <= steps, got window={window}, steps={steps}")
    for b in ladder:
        _check_bits("precision_range_test candidate", b)
    run = train_fn(_RangeTestScheme(b_min=ladder[0], b_max=ladder[-1], bits=ladder[0], ladder=ladder, steps=steps))
    acc = run.store.scalars(run.id)["train_acc"].to_numpy()
    if len(acc) < len(ladder) * steps:
        raise ValueError(f"precision_range_test: the run made {len(acc)} steps, needs {len(ladder) * steps}")
    levels: dict[int, float] = {}
    increases: dict[int, float] = {}
    prev = float(acc[:window].mean())
    for i, b in enumerate(ladder):
        end = (i + 1) * steps
        levels[b] = float(acc[end - window:end].mean())
        increases[b] = levels[b] - prev
        prev = levels[b]
    ok = [b for b in ladder if increases[b] > threshold]
    return PRTResult(ok[0] if ok else ladder[-1], levels, increases, bool(ok))


def get_static_cpt(bits: int) -> "CPTScheme":
    """A CPT scheme pinned at ``bits`` (b_min = b_max)."""
    return CPTScheme(b_min=bits, b_max=bits, bits=bits)


# --------------------------------------------------------------------------------------------- PFQ
def plateau(losses: list[float], patience: int, threshold: float) -> bool:
    """True when the mean of the last ``patience`` losses is not below the mean of the ``patience``
    before by more than ``threshold`` (relative)."""
    if len(losses) < 2 * patience:
        return False
    prev = sum(losses[-2 * patience:-patience]) / patience
    last = sum(losses[-patience:]) / patience
    return not last < prev * (1.0 - threshold)


@register_scheme("pfq")
@dataclass(frozen=True)
class PFQScheme(_Counted):
    """FracTrain PFQ (Fu et al. 2020, as the survey describes it): progressive precision raised on loss
    plateaus; ``level`` is the current index into ``fw_levels``/``bw_levels`` (set by :meth:`schedule`)."""

    description: ClassVar[str] = "progressive fractional quantization (FracTrain PFQ)"
    first_last: bool = field(default=True, metadata=field_doc("also quantize the first and last layer"))
    fw_levels: tuple[int, ...] = field(default=(3, 4, 6, 8),
                                       metadata=field_doc("forward (W/A) bits per stage; last = target"))
    bw_levels: tuple[int, ...] = field(default=(6, 6, 8, 8), metadata=field_doc("backward (E) bits per stage"))
    patience: int = field(default=10, metadata=field_doc("steps per plateau window"))
    threshold: float = field(default=0.02, metadata=field_doc("relative loss decrease that counts as progress"))
    force_at: float = field(default=0.9,
                            metadata=field_doc("fraction of the run by which the target is reached (0 = never force)"))
    level: int = field(default=0, metadata=field_doc("current stage (set by the schedule)"))

    def __post_init__(self) -> None:
        object.__setattr__(self, "fw_levels", tuple(int(b) for b in self.fw_levels))
        object.__setattr__(self, "bw_levels", tuple(int(b) for b in self.bw_levels))
        if not self.fw_levels or len(self.fw_levels) != len(self.bw_levels):
            raise ValueError("pfq: fw_levels and bw_levels must be non-empty and of equal length")
        for b in self.fw_levels + self.bw_levels:
            _check_bits("pfq level bits", b)
        if list(self.fw_levels) != sorted(self.fw_levels):
            raise ValueError(f"pfq.fw_levels must be non-decreasing, got {self.fw_levels}")
        if int(self.patience) != self.patience or self.patience < 1:
            raise ValueError(f"pfq.patience must be an integer >= 1, got {self.patience}")
        if not 0 <= self.threshold < 1:
            raise ValueError(f"pfq.threshold must be in [0, 1), got {self.threshold}")
        if not 0 <= self.force_at <= 1:
            raise ValueError(f"pfq.force_at must be in [0, 1], got {self.force_at}")
        if not 0 <= self.level < len(self.fw_levels):
            raise ValueError(f"pfq.level must be in 0..{len(self.fw_levels) - 1}, got {self.level}")

    def quant(self) -> QuantConfig | None:
        return QuantConfig(w=TensorQuant(int_spec(self.fw_levels[self.level])),
                           a=TensorQuant(int_spec(self.fw_levels[self.level])),
                           e=TensorQuant(int_spec(self.bw_levels[self.level]), "stochastic"))

    def schedule(self, ctx: StepContext) -> "Scheme | None":
        self._mark(ctx)
        last = len(self.fw_levels) - 1
        if self.level >= last:
            return None
        since = int(ctx.state.get("pfq_since", 0))
        reason = None
        if self.force_at and ctx.step >= self.force_at * ctx.total_steps:
            reason = "deadline"
        elif plateau(ctx.losses[since:], self.patience, self.threshold):
            reason = "plateau"
        if reason is None:
            return None
        ctx.state["pfq_since"] = len(ctx.losses)
        ctx.state.setdefault("pfq_raises", []).append([ctx.step, self.level + 1, reason])
        return self.replace(level=last if reason == "deadline" else self.level + 1)

    def extra_metrics(self, model: nn.Module, ctx: StepContext) -> list[MetricRow]:
        return [MetricRow("", "", "", "schedule", "bits", float(self.fw_levels[self.level])),
                MetricRow("", "", "", "schedule", "level", float(self.level))] + cost_rows(model, ctx)
