"""FracTrain DFQ: dynamic fractional quantization, per-input precision from learned gates.

The survey ("Methodology"; docs/papers.md#fractrain-dfq): a light learned network per layer/block "takes the
same input as the network itself" and "predicts the proper precision level to be used"; it is trained "by
incorporating a regularization term within the network's objective function that captures training cost". Here:

* every quantized layer becomes a :class:`DFQLayer`: one branch per precision in ``levels`` (quantized
  twins sharing the layer's parameters: W and A in ``int(bits=b,scale=tensor)``, E at ``e_bits``) and
  a gate ``Linear(in, hidden) -> ReLU -> Linear(hidden, len(levels))`` on the layer input (spatially
  averaged for convolutions, detached so the gate does not push on the backbone);
* training: each input picks one branch through a straight-through Gumbel-softmax (hard one-hot
  forward, soft gradient to the gate; the Gumbel noise comes from a generator seeded by the run seed
  and the layer, so runs are reproducible); evaluation: the gate's argmax, no noise;
* loss = cross-entropy + ``beta`` * expected relative cost, the cost being the MAC-weighted mean over
  layers of ``E_gate[b^2] / max(levels)^2`` (BitOPs relative to static training at the top level);
* effective BitOPs count what the gates chose: per input, ``MACs * b * b`` of its branch; the gates are
  layers too and run in float, so each gate's multiply-adds (``in*hidden + hidden*len(levels)`` per input)
  count ``32 * 32`` BitOPs each, also logged apart as ``bitops_gate`` (docs/papers.md#bitops).

Deviations (documented in docs/schemes.md): FracTrain's gates are recurrent (SkipNet-style); these are
per-layer feed-forward gates. The simulator evaluates every branch on the whole batch and selects per
input (the BitOPs count only the selected one). E is quantized at the static ``e_bits``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from core.train import MetricRow, QuantConfig, Scheme, StepContext, TensorQuant, convert, quantized_layers
from core.train.qlayers import QConv2d, QLinear, tensor_seed
from core.train.schemes import field_doc
from core.train import register_scheme

from core.cost import layer_partial_sums
from core.train.cost import FLOAT_BITS, BitopsCounter, cost_rows, layer_macs
from .survey import _check_bits, int_spec

__all__ = ["DFQScheme", "DFQLayer", "gumbel_hard"]


def gumbel_hard(logits: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
    """Straight-through Gumbel-softmax: a one-hot forward with the soft sample's gradient."""
    u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype).clamp_(1e-12, 1.0 - 1e-7)
    soft = F.softmax((logits - torch.log(-torch.log(u))) / tau, dim=-1)
    hard = F.one_hot(soft.argmax(-1), logits.shape[-1]).to(soft.dtype)
    return hard - soft.detach() + soft


class DFQLayer(nn.Module):
    """A quantized layer with one branch per precision level and a per-input gate (see module doc)."""

    def __init__(self, base: nn.Linear | nn.Conv2d, levels: tuple[int, ...], hidden: int, tau: float, seed: int,
                 index: int) -> None:
        super().__init__()
        # the branches share base's parameters
        if isinstance(base, nn.Conv2d):
            self.branches = nn.ModuleList([QConv2d.from_float(base) for _ in levels])
            width = base.in_channels
        else:
            self.branches = nn.ModuleList([QLinear.from_float(base) for _ in levels])
            width = base.in_features
        self.levels = tuple(levels)
        self.is_conv = isinstance(base, nn.Conv2d)
        gate_seed = tensor_seed(seed, 0, index, "a") & ((1 << 62) - 1)
        with torch.random.fork_rng(devices=[]):  # the gate's init depends on (run seed, layer) only
            torch.manual_seed(gate_seed)
            self.gate = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, len(levels)))
        self.tau = tau
        self.generator = torch.Generator().manual_seed(gate_seed ^ 0x5DEECE66D)
        self.counter: BitopsCounter | None = None
        #: statistics of the last training forward (read by the scheme's loss and telemetry)
        self.last_probs: torch.Tensor | None = None
        self.last_choice: torch.Tensor | None = None
        self.last_macs_per_input = 0
        self._partial_sums = 0
        #: multiply-adds of the gate's Linear layers per input (counted in the BitOPs at 32 x 32 bits)
        self.gate_macs_per_input = sum(int(m.weight.numel()) for m in self.gate if isinstance(m, nn.Linear))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = x.detach().mean(dim=tuple(range(2, x.dim()))) if self.is_conv else x.detach()
        logits = self.gate(feats.reshape(x.shape[0], -1))
        if self.training:
            pick = gumbel_hard(logits, self.tau, self.generator)
        else:
            pick = F.one_hot(logits.argmax(-1), len(self.levels)).to(logits.dtype)
        y = None
        for k, branch in enumerate(self.branches):
            out = branch(x)
            w = pick[:, k].reshape(-1, *([1] * (out.dim() - 1)))
            y = out * w if y is None else y + out * w
        assert y is not None
        if self.training:
            self.last_probs = F.softmax(logits, dim=-1)
            self.last_choice = pick.detach().argmax(-1)
            self.last_macs_per_input = layer_macs(self.branches[0], x, y) // max(1, x.shape[0])
            self._partial_sums = layer_partial_sums(self.branches[0], y) // max(1, x.shape[0])
            if self.counter is not None:
                counts = torch.bincount(self.last_choice, minlength=len(self.levels)).tolist()
                for b, n in zip(self.levels, counts):
                    self.counter.add(self.last_macs_per_input * n, b, b)
                    if n:
                        self.counter.add_energy(self.last_macs_per_input * n, self._partial_sums * n,
                                                "int8" if b <= 8 else "fp32")
                gate = self.gate_macs_per_input * x.shape[0]
                self.counter.add(gate, FLOAT_BITS, FLOAT_BITS, part="gate")  # the gate is a float layer too
                self.counter.add_energy(gate, gate, "fp32")
        return y


def dfq_layers(model: nn.Module) -> list[tuple[str, DFQLayer]]:
    """``(fqn, layer)`` of every DFQ layer of a model, in order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, DFQLayer)]


@register_scheme("dfq")
@dataclass(frozen=True)
class DFQScheme(Scheme):
    """FracTrain DFQ (as the survey describes it): per-input precision picked by learned gates, trained with a
    cost term."""

    description: ClassVar[str] = "dynamic fractional quantization (FracTrain DFQ)"
    rebuilds_model: ClassVar[bool] = True
    static_fields: ClassVar[tuple[str, ...]] = ("levels", "hidden", "first_last")
    first_last: bool = field(default=True, metadata=field_doc("also gate the first and last layer (else float)"))
    levels: tuple[int, ...] = field(default=(3, 4, 6, 8), metadata=field_doc("forward (W/A) bits a gate picks from"))
    e_bits: int = field(default=8, metadata=field_doc("bits of E (static)"))
    beta: float = field(default=0.05, metadata=field_doc("weight of the relative BitOPs cost in the loss"))
    tau: float = field(default=1.0, metadata=field_doc("Gumbel-softmax temperature of the gates"))
    hidden: int = field(default=16, metadata=field_doc("hidden width of each gate"))

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(int(b) for b in self.levels))
        if not self.levels or list(self.levels) != sorted(set(self.levels)):
            raise ValueError(f"dfq.levels must be strictly increasing and non-empty, got {self.levels}")
        for b in self.levels:
            _check_bits("dfq level bits", b)
        _check_bits("dfq.e_bits", self.e_bits)
        if not self.beta >= 0:
            raise ValueError(f"dfq.beta must be >= 0, got {self.beta}")
        if not self.tau > 0:
            raise ValueError(f"dfq.tau must be > 0, got {self.tau}")
        if int(self.hidden) != self.hidden or self.hidden < 1:
            raise ValueError(f"dfq.hidden must be an integer >= 1, got {self.hidden}")

    def branch_quant(self, bits: int) -> QuantConfig:
        """The QuantConfig of the branch at ``bits``."""
        f = TensorQuant(int_spec(bits))
        return QuantConfig(w=f, a=f, e=TensorQuant(int_spec(self.e_bits), "stochastic"))

    def quant(self) -> QuantConfig | None:
        return self.branch_quant(self.levels[-1])

    def layer_quant(self, info: Any) -> QuantConfig | None:
        parts = info.name.split(".")
        if len(parts) >= 2 and parts[-2] == "branches":  # a branch of a DFQ layer
            return self.branch_quant(self.levels[int(parts[-1])])
        return None  # layers left out of DFQ (first/last with first_last=False) stay float

    def prepare(self, model: nn.Module, seed: int) -> nn.Module:
        model = convert(model, None, seed=seed)
        layers = list(quantized_layers(model))
        counter = BitopsCounter()
        n = len(layers)
        for i, (fqn, layer) in enumerate(layers):
            if not self.first_last and (i == 0 or i == n - 1):
                continue
            block = DFQLayer(layer, self.levels, self.hidden, self.tau, seed, i)
            block.counter = counter
            parent_name, _, child = fqn.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, block)
        for i, (name, layer) in enumerate(quantized_layers(model)):  # number the branches
            layer.layer_index, layer.layer_name, layer.seed = i, name, seed
        from core.train import assign

        assign(model, self)
        model._bitops_counter = counter  # type: ignore[assignment]
        return model

    def relative_cost(self, model: nn.Module) -> torch.Tensor:
        """MAC-weighted mean over DFQ layers of ``E_gate[b^2] / max(levels)^2`` (last forward)."""
        top = float(self.levels[-1]) ** 2
        sq = torch.tensor([float(b) ** 2 for b in self.levels])
        num, den = torch.zeros(()), 0.0
        for _, layer in dfq_layers(model):
            if layer.last_probs is None:
                continue
            num = num + layer.last_macs_per_input * (layer.last_probs * sq).sum(-1).mean() / top
            den += layer.last_macs_per_input
        return num / den if den else num

    def loss(self, logits: torch.Tensor, target: torch.Tensor, model: nn.Module, ctx: StepContext) -> torch.Tensor:
        ce = F.cross_entropy(logits.float(), target)
        cost = self.relative_cost(model)
        ctx.state["dfq_last"] = {"ce": float(ce.detach()), "cost": float(cost.detach())}
        return ce + self.beta * cost

    def schedule(self, ctx: StepContext) -> "Scheme | None":
        c = getattr(ctx.model, "_bitops_counter", None) if ctx.model is not None else None
        if c is not None:
            c.mark(ctx.epoch)
        if ctx.model is not None:  # tau may change live (beta and e_bits take effect through the scheme)
            for _, layer in dfq_layers(ctx.model):
                layer.tau = self.tau
        return None

    def extra_metrics(self, model: nn.Module, ctx: StepContext) -> list[MetricRow]:
        rows: list[MetricRow] = []
        for name, layer in dfq_layers(model):
            if layer.last_choice is None:
                continue
            bits = torch.tensor(self.levels, dtype=torch.float64)[layer.last_choice]
            rows.append(MetricRow(name, "", "", "dfq", "bits_mean", float(bits.mean())))
            for k, b in enumerate(self.levels):
                rows.append(MetricRow(name, "", "", "dfq", f"frac_b{b}",
                                      float((layer.last_choice == k).double().mean())))
        last = ctx.state.get("dfq_last")
        if last:
            rows += [MetricRow("", "", "", "dfq", "relative_cost", last["cost"]),
                     MetricRow("", "", "", "dfq", "ce", last["ce"])]
        return rows + cost_rows(model, ctx)
