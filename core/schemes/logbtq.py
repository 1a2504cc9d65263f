"""LogBTQ (LogBTQ paper; docs/papers.md#logbtq-loss): log-barrier tail-bounded quantized training.

Owns :class:`LogBTQScheme` (registered as ``logbtq``), the log-barrier extension :func:`psi`
(Eq. 5), the tail bound of Eq. 7-12 (:func:`tail_bound`), the clamping quantizer
:class:`ClampQuant`, the chunked-update optimizer :class:`ChunkedSGD` and :func:`store_in_codebook`.

* One global range ``[-clip, clip]`` (2 in the paper) for x, w, a, e and g: values are clamped, then
  rounded into the codebook (``mu8(mu=..)`` by default, Eq. 14-16, stochastic in the y domain; or
  ``fp8_143`` / ``fp8_152`` / any spec); the rounding is a straight-through estimator.
* Fully quantized training (section 3, Fig. 2; default ``master_weights="codebook"``): the weights and
  biases of the quantized layers are stored in the codebook (rounded into it at the start and after
  every update, ``w <- Q(w - lr * acc)``), as is the gradient accumulator; ``master_weights="fp32"``
  keeps float masters (fake quantization: only the forward copy of w is rounded).
* Loss (Eq. 13): ``CE + lam * sum_n psi_t(|theta_n| - u) + gamma * sum_n |theta_n|`` with ``reduction``
  ``"mean"`` (default; sums divided by the parameter count, so ``lam``/``gamma`` do not scale with the
  model size) or ``"sum"`` (the paper's literal sum: the barrier's gradient is then ``t`` per weight
  outside ``u``, which swamps the cross-entropy). ``t = min(t0 * t_growth ** epoch, t_max)``
  (Kervadec et al. 2019: t0 = 5, x1.1 per epoch; the cap keeps the barrier term bounded in long runs).
  ``barrier_activations`` (default on; the paper's contribution 1 bars "weights and activations")
  adds ``lam * mean psi_t(|z| - clip)`` over the outputs z of every layer but the last (the logits
  are not quantized by the simulator).
* Chunked updates (section 3.6): the gradients are summed into an accumulator kept in the codebook
  (clamped and re-quantized after each addition) for ``k`` steps; then one SGD step applies it
  (momentum ``update_momentum``, 0 by default: plain SGD on the accumulated gradient).
* ``accumulate``: ``"fp32"`` or a low-precision accumulation format: the forward sums of the Linear
  layers run through ``core.arith.lowp_matmul`` (LogBTQ paper, Table 1 "acc 8"; the backward GEMMs stay
  fp32), with the swamped-addend fraction as telemetry; conv layers raise a ValueError.

The defaults and their measurements (digits, MNIST-t10k): docs/schemes.md ("LogBTQ defaults").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

import core
from core.train import (MetricRow, QuantConfig, Scheme, StepContext, TensorQuant, convert, quantized_layers,
                        register_scheme)
from core.train.qlayers import QLinear, tensor_seed
from core.train.schemes import default_optimizer, field_doc

from core.train.cost import attach_counter, cost_rows

__all__ = ["LogBTQScheme", "psi", "tail_bound", "TailBound", "ClampQuant", "ChunkedSGD", "lowp_available"]


def psi(z: torch.Tensor, t: float) -> torch.Tensor:
    """Log-barrier extension (LogBTQ paper, Eq. 5; Kervadec et al. 2019).

    ``psi_t(z) = -(1/t) log(-z)`` for ``z <= -1/t^2``, else ``t z - (1/t) log(1/t^2) + 1/t``
    (continuous with a continuous derivative at ``z = -1/t^2``).
    """
    thr = -1.0 / (t * t)
    inside = z <= thr
    zi = torch.where(inside, z, torch.full_like(z, thr))
    barrier = -(1.0 / t) * torch.log(-zi)
    linear = t * z - (1.0 / t) * math.log(1.0 / (t * t)) + 1.0 / t
    return torch.where(inside, barrier, linear)


@dataclass(frozen=True)
class TailBound:
    """The LogBTQ tail bound (Eq. 7-12) for ``L`` layers.

    Attributes:
        per_layer: the Chebyshev bound ``E(l) / (2 - sqrt(E(l)))^2`` of each layer ``l = 1..L``
            (capped at 1; a layer with ``E(l) >= 4`` has the trivial bound 1).
        average: their mean: the bound on the share of values outside the range (the paper's
            "under 2.3%" for ``E(1) = 1``, ``L = 50``, ``u = 0.1`` is this one, 2.08%).
        approx: Eq. 12's closed form ``E(1) / (4 L (1 - u))`` (inf for ``u >= 1``).
    """

    per_layer: tuple[float, ...]
    average: float
    approx: float


def tail_bound(e1: float, layers: int, u: float) -> TailBound:
    """LogBTQ paper, Eq. 7-12 (docs/papers.md#logbtq-tail-bound): with the barrier ``u`` the second
    moment shrinks per layer, ``E(l) = u^(l-1) E(1)`` (Eq. 8); Chebyshev bounds each layer's share
    outside the range by ``E(l) / (2 - sqrt(E(l)))^2`` (Eq. 9-11, capped at 1); the average over
    ``layers`` and the closed form ``E(1) / (4 L (1 - u))`` (Eq. 12).

    The one copy: the ``logbtq`` telemetry (``tail_bound_exact`` = :attr:`TailBound.average`,
    ``tail_bound_approx``) and the Live Training page's tail plot both use it.  ``u = 0`` is allowed
    (the limit ``u -> 0+``: only the first layer has a second moment; the page's slider starts there).

    Raises:
        ValueError: ``layers < 1``, ``u < 0`` or ``e1 < 0``.
    """
    if layers < 1:
        raise ValueError(f"tail_bound: layers must be >= 1, got {layers}")
    if not u >= 0:
        raise ValueError(f"tail_bound: u must be >= 0, got {u}")
    if e1 < 0:
        raise ValueError(f"tail_bound: e1 (a second moment) must be >= 0, got {e1}")
    per = []
    for layer in range(1, int(layers) + 1):
        el = (u ** (layer - 1)) * e1
        per.append(1.0 if el >= 4.0 else min(1.0, el / (2.0 - math.sqrt(el)) ** 2))
    approx = e1 / (4.0 * layers * (1.0 - u)) if u < 1 else math.inf
    return TailBound(tuple(per), sum(per) / layers, approx)


def lowp_available() -> bool:
    """True when ``core.arith.lowp_matmul`` (the low-precision accumulation simulator) exists."""
    try:
        import core.arith as arith  # noqa: PLC0415
    except ImportError:
        return False
    return hasattr(arith, "lowp_matmul")


@dataclass(frozen=True)
class ClampQuant(TensorQuant):
    """Clamp to ``[-clip, clip]`` (LogBTQ paper: one global range), then quantize with the spec."""

    clip: float = 2.0

    def __call__(self, x: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        return core.quantize(x.clamp(-self.clip, self.clip), self.spec, rounding=self.rounding, seed=seed)


class ChunkedSGD(torch.optim.SGD):
    """SGD whose gradients are summed for ``k`` steps in a low-precision accumulator (LogBTQ paper,
    section 3.6, "chunked updates"): ``acc <- Q(acc + g)`` every step, the SGD step with ``acc`` every
    k-th step.

    With ``store`` (fully quantized training, LogBTQ paper, section 3 and Fig. 2: "we quantize
    everything ... including the gradient accumulation step"), the parameters tagged by
    :func:`store_in_codebook` and their momentum buffers are re-quantized into the codebook after
    every update, ``w <- Q(w - lr * acc)``: the weights never leave the codebook, so an update smaller
    than the codebook's spacing at ``w`` is rounded away (nearest) or applied with probability
    ``|update| / spacing`` (stochastic), which is what the ``k``-step accumulation counters
    (section 3.6: "helps to accumulate the gradients to be large enough to be rounded up").
    """

    def __init__(self, params: Any, k: int, quant: TensorQuant | None, store: TensorQuant | None = None,
                 **kw: Any) -> None:
        super().__init__(params, **kw)
        self.k = int(k)
        self.quant = quant
        self.store = store
        self.calls = 0
        self.seed = 0  # the run seed (set by LogBTQScheme.schedule); stochastic rounding is seeded

    def state_dict(self) -> dict[str, Any]:
        """SGD's state plus the step counter that seeds the accumulator's stochastic rounding."""
        sd = super().state_dict()
        sd["chunk_calls"] = self.calls
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        self.calls = int(state_dict.pop("chunk_calls", 0))
        super().load_state_dict(state_dict)

    def _q(self, q: TensorQuant, x: torch.Tensor, i: int, tensor: str) -> torch.Tensor:
        sd = tensor_seed(self.seed, self.calls, 1000 + i, tensor) if q.rounding == "stochastic" else None
        return q(x, sd)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        self.calls += 1
        i = 0
        for group in self.param_groups:
            for p in group["params"]:
                i += 1
                if p.grad is None:
                    continue
                st = self.state[p]
                acc = st.get("chunk_acc")
                acc = p.grad.clone() if acc is None else acc + p.grad
                if self.quant is not None:
                    acc = self._q(self.quant, acc, i, "update")
                st["chunk_acc"] = acc
        if self.calls % self.k:
            return None
        for group in self.param_groups:
            for p in group["params"]:
                st = self.state[p]
                if "chunk_acc" in st:
                    p.grad = st.pop("chunk_acc")
        out = super().step(closure)
        if self.store is not None:
            i = 0
            for group in self.param_groups:
                for p in group["params"]:
                    i += 1
                    if not getattr(p, "_logbtq_codebook", False):
                        continue
                    p.copy_(self._q(self.store, p, i, "w"))
                    buf = self.state[p].get("momentum_buffer")
                    if buf is not None:
                        buf.copy_(self._q(self.store, buf, i, "g"))
        return out


def store_in_codebook(model: nn.Module, quant: TensorQuant, seed: int) -> int:
    """Round the weights and biases of every quantized layer of ``model`` into ``quant``'s codebook
    (in place, seeded) and tag them so :class:`ChunkedSGD` keeps them there (LogBTQ paper, section 3:
    the weights are stored in the 8-bit codebook, not as fp32 masters). Returns the number of values
    stored."""
    n = 0
    with torch.no_grad():
        for _, layer in quantized_layers(model):
            if layer.quant is None:  # a float layer (first_last=False) keeps fp32 parameters
                continue
            for pname, p in layer.named_parameters(recurse=False):
                sd = tensor_seed(seed, 0, 2000 + layer.layer_index, "w" if pname == "weight" else "g")
                p.copy_(quant(p, sd if quant.rounding == "stochastic" else None))
                p._logbtq_codebook = True
                n += p.numel()
    return n


def _codebook_post_hook(store: TensorQuant) -> Any:
    """An optimizer step post-hook that rounds the tagged parameters back into ``store``'s codebook."""
    calls = [0]

    @torch.no_grad()
    def hook(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        calls[0] += 1
        i = 0
        for group in opt.param_groups:
            for p in group["params"]:
                i += 1
                if getattr(p, "_logbtq_codebook", False):
                    seed = int(getattr(opt, "logbtq_seed", 0))
                    sd = tensor_seed(seed, calls[0], 1000 + i, "w") if store.rounding == "stochastic" else None
                    p.copy_(store(p, sd))

    return hook


class _LowpLinearOp:
    """``F.linear`` whose sums are accumulated in ``acc`` (``core.arith.lowp_matmul``); counts swamping."""

    def __init__(self, acc: str, chunk: int, layer: nn.Module) -> None:
        self.acc, self.chunk, self.swamped, self.adds = acc, chunk, 0, 0
        layer._lowp = self  # type: ignore[assignment]

    def __call__(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        from core.arith import lowp_matmul  # noqa: PLC0415

        x2 = x.reshape(-1, x.shape[-1])
        r = lowp_matmul(x2.detach(), w.detach().t().contiguous(), self.acc, chunk=self.chunk)
        self.swamped += r.swamped
        self.adds += x2.shape[0] * w.shape[0] * w.shape[1]
        y = r.output.to(x.dtype).reshape(*x.shape[:-1], w.shape[0])
        return y + b if b is not None else y


class _Tail:
    """Per-layer counts of values outside the range (and second moments) between telemetry steps."""

    def __init__(self, clip: float) -> None:
        self.clip = clip
        self.out: dict[tuple[str, str], list[float]] = {}
        self.z2: dict[str, list[float]] = {}
        self.acts: list[torch.Tensor] = []
        self.keep_acts = False
        self.barred: set[str] = set()

    def count(self, layer: str, tensor: str, x: torch.Tensor) -> None:
        x = x.detach()
        c = self.out.setdefault((layer, tensor), [0.0, 0.0])
        c[0] += float((x.abs() > self.clip).sum())
        c[1] += x.numel()

    def attach(self, model: nn.Module) -> None:
        layers = list(quantized_layers(model))
        # the network's output (logits) is not quantized by the simulator (no layer reads it), so it is
        # not barred; a one-layer model bars its only output
        self.barred = {n for n, _ in (layers[:-1] if len(layers) > 1 else layers)}
        for name, layer in layers:
            def fwd(mod: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor, name: str = name) -> None:
                if not mod.training:
                    return
                self.count(name, "a", inp[0])
                self.count(name, "z", out)
                z2 = self.z2.setdefault(name, [0.0, 0.0])
                z2[0] += float(out.detach().double().pow(2).sum())
                z2[1] += out.numel()
                if self.keep_acts and name in self.barred:
                    self.acts.append(out)
                if out.requires_grad:
                    out.register_hook(lambda g, name=name: self.count(name, "e", g))
            layer.register_forward_hook(fwd)


@register_scheme("logbtq")
@dataclass(frozen=True)
class LogBTQScheme(Scheme):
    """LogBTQ (LogBTQ paper, section 3). See the module docstring."""

    description: ClassVar[str] = "log-barrier tail-bounded quantization (LogBTQ paper)"
    first_last: bool = field(default=True,
                             metadata=field_doc("quantize the first and last layer too (the paper: everything)"))
    codebook: str = field(default="mu8",
                          metadata=field_doc("'mu8' (LogBTQ paper, Eq. 14-16, with mu) or any spec (fp8_143, ...)"))
    mu: float = field(default=255.0, metadata=field_doc("mu of the MU8 codebook"))
    clip: float = field(default=2.0, metadata=field_doc("the global range [-clip, clip]"))
    rounding: str = field(default="stochastic", metadata=field_doc("rounding (MU8: in the companded y domain, Eq. 15)",
                                                              ("nearest", "stochastic", "truncate")))
    u: float = field(default=0.1, metadata=field_doc("barrier bound u on |theta| (LogBTQ paper, Eq. 13)"))
    t0: float = field(default=5.0, metadata=field_doc("initial barrier sharpness t"))
    t_growth: float = field(default=1.1, metadata=field_doc("t multiplier per epoch"))
    t_max: float = field(default=20.0, metadata=field_doc("cap of the barrier sharpness t (inf = no cap)"))
    lam: float = field(default=1.0, metadata=field_doc("barrier weight (0 = no barrier)"))
    gamma: float = field(default=1e-4, metadata=field_doc("L1 weight"))
    reduction: str = field(default="mean", metadata=field_doc("barrier/L1 reduction over parameters", ("mean", "sum")))
    barrier_activations: bool = field(default=True,
                                      metadata=field_doc("also bar |z| > clip for the hidden layers' outputs"))
    k: int = field(default=2, metadata=field_doc("chunked updates: steps of gradient accumulation per weight update "
                                                 "(the paper: 20)"))
    update_momentum: float = field(default=0.0,
                                   metadata=field_doc("SGD momentum of the chunked update (0: the paper's plain "
                                                      "w <- Q(w - lr * acc); -1: the run's optimizer momentum)"))
    master_weights: str = field(default="codebook",
                                metadata=field_doc("where the weights live: 'codebook' (stored in the codebook, the "
                                                   "paper's fully quantized training) or 'fp32' (float masters)",
                                                   ("codebook", "fp32")))
    accumulate: str = field(default="fp32",
                            metadata=field_doc("forward matmul accumulation of Linear layers: 'fp32' or a spec "
                                          "(core.arith.lowp_matmul; LogBTQ paper, Table 1 'acc 8')"))
    acc_chunk: int = field(default=1,
                           metadata=field_doc("chunk of the low-precision accumulation (1 = after every addition)"))

    def __post_init__(self) -> None:
        if not self.t_max > 0:  # inf allowed: t grows without bound (Kervadec et al.'s schedule)
            raise ValueError(f"logbtq.t_max must be > 0, got {self.t_max}")
        if not (self.update_momentum == -1 or 0 <= self.update_momentum < 1):
            raise ValueError(f"logbtq.update_momentum must be in [0, 1) or -1, got {self.update_momentum}")
        for k in ("u", "mu", "clip", "t0", "t_growth", "lam", "gamma", "update_momentum"):
            if not math.isfinite(getattr(self, k)):
                raise ValueError(f"logbtq.{k} must be a finite number, got {getattr(self, k)}")
        if not self.u > 0:
            raise ValueError(f"logbtq.u must be > 0, got {self.u}")
        if not self.mu > 0:
            raise ValueError(f"logbtq.mu must be > 0, got {self.mu}")
        if int(self.k) != self.k or self.k < 1:
            raise ValueError(f"logbtq.k must be an integer >= 1, got {self.k}")
        if not self.clip > 0:
            raise ValueError(f"logbtq.clip must be > 0, got {self.clip}")
        if not self.t0 > 0 or not self.t_growth > 0:
            raise ValueError(f"logbtq.t0 and t_growth must be > 0, got {self.t0}, {self.t_growth}")
        if self.lam < 0 or self.gamma < 0:
            raise ValueError(f"logbtq.lam and gamma must be >= 0, got {self.lam}, {self.gamma}")
        if self.reduction not in ("mean", "sum"):
            raise ValueError(f"logbtq.reduction must be 'mean' or 'sum', got {self.reduction!r}")
        if self.accumulate != "fp32":
            if not lowp_available():
                raise ValueError(
                    f"logbtq.accumulate={self.accumulate!r} needs the low-precision accumulation simulator "
                    "core.arith.lowp_matmul, which is not available; use accumulate='fp32'")
            core.parse_format(self.accumulate)  # a bad spec fails here
        if self.master_weights not in ("codebook", "fp32"):
            raise ValueError(f"logbtq.master_weights must be 'codebook' or 'fp32', got {self.master_weights!r}")
        if int(self.acc_chunk) != self.acc_chunk or self.acc_chunk < 1:
            raise ValueError(f"logbtq.acc_chunk must be an integer >= 1, got {self.acc_chunk}")
        self.tq()  # validates the spec and rounding

    @property
    def spec(self) -> str:
        """The codebook spec string."""
        if self.codebook.strip().lower() == "mu8":
            return f"mu8(mu={self.mu},range={self.clip})"
        return self.codebook

    def tq(self, rounding: str | None = None) -> ClampQuant:
        return ClampQuant(self.spec, rounding or self.rounding, clip=float(self.clip))

    def quant(self) -> QuantConfig | None:
        q = self.tq()
        return QuantConfig(w=q, a=q, e=q, g=q)

    def t_at(self, epoch: int) -> float:
        """Barrier sharpness at ``epoch`` (0-based): ``min(t0 * t_growth ** epoch, t_max)``."""
        try:
            t = self.t0 * self.t_growth ** epoch
        except OverflowError:  # t_growth > 1 over very many epochs
            t = math.inf
        return min(t, self.t_max)

    # ---- hooks
    def prepare(self, model: nn.Module, seed: int) -> nn.Module:
        model = convert(model, self, seed=seed)
        if self.master_weights == "codebook":
            store_in_codebook(model, self.tq(), seed)
        tail = _Tail(self.clip)
        tail.attach(model)
        model._logbtq_tail = tail  # type: ignore[assignment]
        attach_counter(model)
        if self.accumulate != "fp32":
            for name, layer in quantized_layers(model):
                if not isinstance(layer, QLinear):
                    raise ValueError(f"logbtq.accumulate={self.accumulate!r}: only Linear layers are simulated; "
                                     f"{name} is {type(layer).__name__}")
                # this layer's GEMM becomes the simulated low-precision one (an instance attribute on purpose)
                layer._op = _LowpLinearOp(self.accumulate, int(self.acc_chunk), layer)  # type: ignore[method-assign]
        return model

    def _params(self, model: nn.Module) -> list[torch.Tensor]:
        return [q.weight for _, q in quantized_layers(model)]

    def penalties(self, model: nn.Module, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(barrier, l1)`` terms of Eq. 13 (before ``lam``/``gamma``)."""
        ws = self._params(model)
        t = self.t_at(epoch)
        red = (lambda v: v.mean()) if self.reduction == "mean" else (lambda v: v.sum())
        flat = torch.cat([w.reshape(-1) for w in ws])
        return red(psi(flat.abs() - self.u, t)), red(flat.abs())

    def loss(self, logits: torch.Tensor, target: torch.Tensor, model: nn.Module, ctx: StepContext) -> torch.Tensor:
        ce = F.cross_entropy(logits.float(), target)
        barrier, l1 = self.penalties(model, ctx.epoch)
        total = ce + self.lam * barrier + self.gamma * l1
        barrier_act: torch.Tensor | None = None
        tail: _Tail | None = getattr(model, "_logbtq_tail", None)
        if self.barrier_activations and tail is not None and tail.acts:
            t = self.t_at(ctx.epoch)
            za = torch.cat([z.reshape(-1) for z in tail.acts])
            barrier_act = psi(za.abs() - self.clip, t).mean()
            total = total + self.lam * barrier_act
        if tail is not None:
            tail.acts = []
            tail.keep_acts = self.barrier_activations
        last = {"ce": float(ce.detach()), "barrier": float(barrier.detach()), "l1": float(l1.detach()),
                "t": self.t_at(ctx.epoch)}
        if barrier_act is not None:
            last["barrier_act"] = float(barrier_act.detach())
        ctx.state["logbtq_last"] = last
        return total

    def make_optimizer(self, params: Any, optim: Any) -> torch.optim.Optimizer:
        """:class:`ChunkedSGD` for ``sgd`` (momentum: ``update_momentum``, or the run's with -1); another
        optimizer is built as usual (no chunking) and, with
        ``master_weights='codebook'``, re-quantizes the tagged parameters after each step (its own
        state, e.g. Adam's moments, stays fp32)."""
        store = self.tq() if self.master_weights == "codebook" else None
        if optim.name != "sgd":
            opt = default_optimizer(params, optim)
            if store is not None:
                opt.register_step_post_hook(_codebook_post_hook(store))
            return opt
        mom = optim.momentum if self.update_momentum == -1 else self.update_momentum
        return ChunkedSGD(params, self.k, self.tq(), store=store, lr=optim.lr, momentum=mom,
                          weight_decay=optim.weight_decay, nesterov=optim.nesterov and mom > 0)

    def schedule(self, ctx: StepContext) -> "Scheme | None":
        """Per step: keeps the optimizer in line with this scheme's knobs, so live changes of ``k``,
        ``rounding``, ``update_momentum`` and ``master_weights`` apply from this step (the engine only
        re-assigns the layers' quantizers, and copies ``optim.momentum`` into the groups)."""
        model = ctx.model
        opt = ctx.optimizer
        if isinstance(opt, ChunkedSGD):
            opt.seed = ctx.seed
            opt.k = int(self.k)
            opt.quant = self.tq()
            opt.store = self.tq() if self.master_weights == "codebook" else None
            if self.update_momentum != -1:
                for g in opt.param_groups:
                    g["momentum"] = self.update_momentum
        elif opt is not None:
            opt.logbtq_seed = ctx.seed  # type: ignore[attr-defined]
        if model is not None and self.master_weights == "codebook":
            fresh = [p for _, q in quantized_layers(model) if q.quant is not None for p in q.parameters(recurse=False)
                     if not getattr(p, "_logbtq_codebook", False)]
            if fresh:  # switched to codebook storage live (or a layer became quantized): round them in
                store_in_codebook(model, self.tq(), ctx.seed + ctx.step)
        if model is not None:
            tail = getattr(model, "_logbtq_tail", None)
            if tail is not None:
                tail.keep_acts = self.barrier_activations
            c = getattr(model, "_bitops_counter", None)
            if c is not None:
                c.mark(ctx.epoch)
        return None

    def extra_metrics(self, model: nn.Module, ctx: StepContext) -> list[MetricRow]:
        rows: list[MetricRow] = []
        tail: _Tail | None = getattr(model, "_logbtq_tail", None)
        fmt = self.spec
        layers = list(quantized_layers(model))
        for name, layer in layers:
            w = layer.weight.detach()
            rows.append(MetricRow(name, "w", fmt, "logbtq", "outside", float((w.abs() > self.clip).float().mean())))
            on = core.quantize(w.clamp(-self.clip, self.clip), self.spec) == w
            rows.append(MetricRow(name, "w", fmt, "logbtq", "on_codebook", float(on.float().mean())))
            if layer.weight.grad is not None:
                g = layer.weight.grad.detach()
                rows.append(MetricRow(name, "g", fmt, "logbtq", "outside", float((g.abs() > self.clip).float().mean())))
        if tail is not None:
            for (name, t), (o, n) in sorted(tail.out.items()):
                if n:
                    rows.append(MetricRow(name, t, fmt, "logbtq", "outside", o / n))
            e1 = None
            if layers and layers[0][0] in tail.z2 and tail.z2[layers[0][0]][1]:
                s, n = tail.z2[layers[0][0]]
                e1 = s / n
            if e1 is not None:
                bound = tail_bound(e1, len(layers), self.u)
                rows += [MetricRow("", "", fmt, "logbtq", "E1", e1),
                         MetricRow("", "", fmt, "logbtq", "tail_bound_exact", bound.average),
                         MetricRow("", "", fmt, "logbtq", "tail_bound_approx", bound.approx)]
            zo = [v for (nm, t), v in tail.out.items() if t == "z"]
            if zo:
                rows.append(MetricRow("", "z", fmt, "logbtq", "outside_mean",
                                      sum(o for o, _ in zo) / max(1.0, sum(n for _, n in zo))))
            tail.out.clear()
            tail.z2.clear()
        for name, layer in layers:
            lp = getattr(layer, "_lowp", None)
            if lp is not None and lp.adds:
                rows.append(MetricRow(name, "a", lp.acc, "logbtq", "swamped_fraction", lp.swamped / lp.adds))
                lp.swamped = lp.adds = 0
        last = ctx.state.get("logbtq_last")
        if last:
            for k in ("ce", "barrier", "barrier_act", "l1", "t"):
                if k in last:
                    rows.append(MetricRow("", "", "", "logbtq", k, float(last[k])))
        return rows + cost_rows(model, ctx)
