"""NITI (NITI paper; docs/papers.md#niti-format): integer-only training with int8 tensors and power-of-two exponents.

Owns :class:`NitiScheme` (registered as ``niti``), the integer network :class:`NitiNet` built from a
``core.models`` network (Linear, Conv2d, ReLU, MaxPool2d, Flatten, Dropout-as-identity; no BatchNorm,
no bias: NITI's networks have neither), :func:`integer_ce_grad` (section 3.5) and :func:`psr_bits_hist`
(the pseudo-random bits of Alg. 3, Fig. 3). The effective bitwidth B(V) and the shift-and-round of
Alg. 1-2 are :func:`core.arith.effective_bits` and :func:`core.arith.shift_round` (one copy, shared
with ``core.arith.niti_linear``/``niti_conv2d``).

A training step (:meth:`NitiNet.integer_step`) is integer from the quantized input on: int8 x int8
products accumulated exactly in int64 torch tensors (``gemm="torch"``, identical to int32
accumulation while no sum overflows 2^31, which B(V) <= 31 in the telemetry shows) or through
``core.arith.niti_matmul`` (``gemm="arith"``, int8 x int8 -> int32), activations and errors rounded to nearest, the loss
error rounded stochastically (integer random bits), weight gradients with Alg. 3
(:func:`core.formats.pseudo_stochastic_round`), and the RPROP-like update ``w <- clamp(w - g, -127,
127)`` where ``g`` keeps ``m_u`` bits (section 3.3). Only the input quantization before, and the loss
value reported to the engine after, use floats. Evaluation (``model(x)``) runs the same integer
forward and returns ``q * 2^s`` as float logits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from core.arith.niti import effective_bits, niti_matmul, shift_round
from core.formats import pseudo_stochastic_round
from core.train import MetricRow, QuantConfig, Scheme, StepContext, StepOutput, register_scheme
from core.train.qlayers import tensor_seed
from core.train.schemes import field_doc

from core.train.cost import BitopsCounter

__all__ = ["NitiScheme", "NitiNet", "integer_ce_grad", "quantize_input", "psr_bits_hist",
           "parse_mu_schedule"]

Q = 127
HIST_BINS = 16


def psr_bits_hist(v: torch.Tensor, bp: int, bins: int = HIST_BINS) -> list[int]:
    """Histogram of the pseudo-random numbers Alg. 3 uses (the lower half of the fraction bits, read
    as an integer in ``[0, 2^h)``), in ``bins`` equal bins (NITI paper, Fig. 3). Integer only."""
    if bp % 2 == 1:
        bp -= 1
        frac = (v.abs() >> 1) & ((1 << bp) - 1)
    else:
        frac = v.abs() & ((1 << bp) - 1)
    h = bp // 2
    if h == 0:
        return [0] * bins
    lower = frac & ((1 << h) - 1)
    idx = (lower * bins) >> h
    return [int(c) for c in torch.bincount(idx.reshape(-1), minlength=bins).tolist()]


def integer_ce_grad(a: torch.Tensor, s_a: int, y: torch.Tensor, gen: torch.Generator | None = None,
                    bits: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """NITI section 3.5: the integer cross-entropy error ``e_i ~ t_i - y_i * sum_j t_j``.

    ``t_i ~ exp(a_i 2^s_a)``: if ``s_a <= -7`` the Taylor form ``1 + x + x^2/2`` in fixed point with
    ``2 (-s_a)`` fraction bits; else ``x_i = (47274 a_i) >> (15 - s_a)`` (log2 e ~ 47274 * 2^-15),
    ``p = max_i x_i - 10``, ``t_i = 1 << max(0, x_i - p)``. The error is then rounded stochastically
    to int8 (:func:`core.arith.shift_round`; ``gen`` is its random source, ``None`` meaning seed 0).

    Args:
        a: int logits ``(N, C)`` (int64). s_a: their exponent. y: labels ``(N,)``.

    Returns:
        ``(e_int8_as_int64, e_raw)``; e has the sign and (per row) the ordering of ``softmax - onehot``.
    """
    a = a.to(torch.int64)
    if s_a <= -7:
        f = -s_a
        t = (1 << (2 * f)) + (a << f) + ((a * a) >> 1)
        t = t.clamp_min(0)
    else:
        sh = 15 - s_a
        prod = 47274 * a
        x = prod >> sh if sh >= 0 else prod << (-sh)
        p = x.max(dim=1, keepdim=True).values - 10
        t = torch.ones_like(x) << (x - p).clamp_min(0)
    total = t.sum(dim=1, keepdim=True)
    onehot = torch.zeros_like(t).scatter_(1, y.reshape(-1, 1).to(torch.int64), 1)
    e = t - onehot * total
    q, _ = shift_round(e, "stochastic", gen, bits=bits, dtype=torch.int64)
    return q, e


def quantize_input(x: torch.Tensor, bits: int = 8) -> tuple[torch.Tensor, int]:
    """Float input -> (int tensor, power-of-two exponent) with ``max|q| <= 2^(bits-1) - 1``, nearest.
    The only float step of a NITI training step (it happens before the integer network)."""
    lim = (1 << (bits - 1)) - 1
    amax = float(x.detach().abs().max()) if x.numel() else 0.0
    s = math.ceil(math.log2(amax / lim)) if amax > 0 else 0
    q = torch.round(x.detach() * (2.0 ** -s)).clamp(-lim, lim).to(torch.int64)
    return q, s


def parse_mu_schedule(text: str) -> list[tuple[int, int]]:
    """``"100:4,150:3"`` -> ``[(100, 4), (150, 3)]`` (epoch, m_u); values must be in 1..7."""
    out = []
    for part in [p for p in text.replace(" ", "").split(",") if p]:
        try:
            ep, mu = (int(v) for v in part.split(":"))
        except ValueError as exc:
            raise ValueError(f"niti.m_u_schedule: expected 'epoch:m_u,...', got {text!r}") from exc
        if not 1 <= mu <= 7:
            raise ValueError(f"niti.m_u_schedule: m_u must be in 1..7, got {mu}")
        if ep < 0:
            raise ValueError(f"niti.m_u_schedule: epochs must be >= 0, got {ep}")
        out.append((ep, mu))
    return sorted(out)


# ---------------------------------------------------------------------------------------------- layers
def _mm_torch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a.matmul(b)


def _mm_arith(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """int8 x int8 -> int32 through ``core.arith.niti_matmul`` (Numba on the CPU, ``torch._int_mm`` on
    CUDA), widened back to int64."""
    return niti_matmul(a.to(torch.int8), b.to(torch.int8).contiguous()).to(torch.int64)


GEMMS = {"torch": _mm_torch, "arith": _mm_arith}


class _ILayer:
    kind = ""


class _IWeighted(_ILayer):
    """A Linear or Conv2d of the integer network: int64 working weights (values in the int8 range) with
    the fixed exponent ``s_w``, mirrored into the int8 buffer ``key`` of the :class:`NitiNet`."""

    mm: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # the integer GEMM (an entry of GEMMS)

    def __init__(self, name: str, w: torch.Tensor, s_w: int, key: str, gemm: str) -> None:
        self.name, self.w, self.s_w, self.key = name, w, s_w, key
        self.mm = GEMMS[gemm]

    def fwd(self, a: torch.Tensor) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    def macs(self, a: torch.Tensor) -> int:
        raise NotImplementedError

    def bwd(self, e: torch.Tensor, saved: Any) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class _ILinear(_IWeighted):
    kind = "linear"

    def fwd(self, a: torch.Tensor) -> tuple[torch.Tensor, Any]:
        return self.mm(a, self.w.t()), a

    def macs(self, a: torch.Tensor) -> int:
        return a.shape[0] * self.w.numel()

    def bwd(self, e: torch.Tensor, saved: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mm(e, self.w), self.mm(e.t(), saved)


class _IConv(_IWeighted):
    kind = "conv"

    def __init__(self, name: str, w: torch.Tensor, s_w: int, key: str, gemm: str, stride: int,
                 padding: int) -> None:
        super().__init__(name, w, s_w, key, gemm)
        self.stride, self.pad = stride, padding

    def _cols(self, a: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        k, s, p = self.w.shape[2], self.stride, self.pad
        ap = F.pad(a, (p, p, p, p)) if p else a
        u = ap.unfold(2, k, s).unfold(3, k, s)  # N, C, OH, OW, k, k
        n, c, oh, ow = u.shape[:4]
        cols = u.permute(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * k * k)
        return cols, (n, c, oh, ow, ap.shape[2], ap.shape[3])

    def fwd(self, a: torch.Tensor) -> tuple[torch.Tensor, Any]:
        cols, geo = self._cols(a)
        n, _, oh, ow = geo[:4]
        y = self.mm(cols, self.w.reshape(self.w.shape[0], -1).t())
        return y.reshape(n, oh, ow, -1).permute(0, 3, 1, 2).contiguous(), (cols, geo)

    def macs(self, a: torch.Tensor) -> int:
        _, geo = self._cols(a)
        n, _, oh, ow = geo[:4]
        return n * oh * ow * self.w.numel()

    def bwd(self, e: torch.Tensor, saved: Any) -> tuple[torch.Tensor, torch.Tensor]:
        cols, (n, c, oh, ow, hp, wp) = saved
        k, s, p = self.w.shape[2], self.stride, self.pad
        em = e.permute(0, 2, 3, 1).reshape(n * oh * ow, -1)
        g = self.mm(em.t(), cols).reshape(self.w.shape)
        dcols = self.mm(em, self.w.reshape(self.w.shape[0], -1)).reshape(n, oh, ow, c, k, k)
        dx = torch.zeros((n, c, hp, wp), dtype=torch.int64)
        for i in range(k):
            for j in range(k):
                dx[:, :, i:i + s * (oh - 1) + 1:s, j:j + s * (ow - 1) + 1:s] += dcols[..., i, j].permute(0, 3, 1, 2)
        if p:
            dx = dx[:, :, p:hp - p, p:wp - p]
        return dx.contiguous(), g


class _IReLU(_ILayer):
    kind = "relu"


class _IPool(_ILayer):
    kind = "pool"

    def __init__(self, k: int, ceil: bool) -> None:
        self.k, self.ceil = k, ceil


class _IFlatten(_ILayer):
    kind = "flatten"


class NitiNet(nn.Module):
    """Integer twin of a feed-forward ``core.models`` network (weights are int8-valued buffers)."""

    def __init__(self, model: nn.Module, seed: int, bits: int = 8, gemm: str = "torch") -> None:
        super().__init__()
        if gemm not in GEMMS:
            raise ValueError(f"niti.gemm must be one of {', '.join(GEMMS)}, got {gemm!r}")
        self.bits = bits
        self.ops: list[_ILayer] = []
        self.seed = seed
        g = torch.Generator().manual_seed(seed)
        names: list[str] = []
        for name, m in model.named_modules():
            if len(list(m.children())):
                continue
            if isinstance(m, nn.Linear) or isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                bound = 1.0 / math.sqrt(fan_in) * math.sqrt(3.0)  # Kaiming-uniform scale
                s_w = round(math.log2(bound / Q))
                w = torch.randint(-Q, Q + 1, m.weight.shape, generator=g, dtype=torch.int64)  # dense uniform int8
                key = f"w{len(names)}"
                self.register_buffer(key, w.to(torch.int8))
                if isinstance(m, nn.Linear):
                    op: _IWeighted = _ILinear(name, w, s_w, key, gemm)
                else:
                    if (m.groups != 1 or m.dilation != (1, 1) or m.kernel_size[0] != m.kernel_size[1]
                            or isinstance(m.padding, str)):
                        raise ValueError(f"niti: unsupported conv {name}")
                    op = _IConv(name, w, s_w, key, gemm, m.stride[0], m.padding[0])
                names.append(name)
                self.ops.append(op)
            elif isinstance(m, nn.ReLU):
                self.ops.append(_IReLU())
            elif isinstance(m, nn.MaxPool2d):
                k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
                self.ops.append(_IPool(k, bool(m.ceil_mode)))
            elif isinstance(m, nn.Flatten):
                self.ops.append(_IFlatten())
            elif isinstance(m, nn.Dropout):
                continue
            else:
                raise ValueError(f"niti: unsupported module {name} ({type(m).__name__}); NITI networks use "
                                 "Linear/Conv2d/ReLU/MaxPool2d/Flatten only (no BatchNorm)")
        self.counter = BitopsCounter()
        self._bitops_counter = self.counter
        self.tel: dict[str, Any] = {}

    def layers(self) -> list[_IWeighted]:
        return [op for op in self.ops if isinstance(op, _IWeighted)]

    def _sync(self) -> None:
        """Weights live as int64 working copies; mirror them into the int8 buffers (checkpoints)."""
        for op in self.layers():
            getattr(self, op.key).copy_(op.w)

    def _load(self) -> None:
        for op in self.layers():
            op.w = getattr(self, op.key).to(torch.int64)

    def _load_from_state_dict(self, *args: Any, **kw: Any) -> None:  # noqa: D401
        super()._load_from_state_dict(*args, **kw)
        self._load()

    # -------------------------------------------------------------------- integer forward / backward
    def int_forward(self, q: torch.Tensor, s: int, train: bool) -> tuple[torch.Tensor, int, list[Any]]:
        tape: list[Any] = []
        for op in self.ops:
            if isinstance(op, _IWeighted):
                if train:
                    macs = op.macs(q)
                    self.counter.add(macs, self.bits, self.bits)
                    window = int(op.w.shape[2] * op.w.shape[3]) if op.kind == "conv" else 1
                    self.counter.add_energy(macs, macs // window, "int8")  # int8 x int8 -> int32 (App. E model)
                acc, saved = op.fwd(q)
                b = effective_bits(acc)
                q2, sh = shift_round(acc, "nearest", bits=self.bits, dtype=torch.int64)
                if train:
                    self.tel[f"{op.name}|B_acc"] = b
                    self.tel[f"{op.name}|s_a"] = s
                    self.tel[f"{op.name}|s_w"] = op.s_w
                    self.tel[f"{op.name}|sat_a"] = int((q2.abs() == Q).sum())
                tape.append((op, saved, s))
                q, s = q2, s + op.s_w + sh
            elif op.kind == "relu":
                mask = q > 0
                tape.append((op, mask, s))
                q = q * mask
            elif isinstance(op, _IPool):
                k = op.k
                n, c, h, w = q.shape
                if op.ceil and (h % k or w % k):
                    ph, pw = (-h) % k, (-w) % k
                    q = F.pad(q, (0, pw, 0, ph), value=-(1 << 40))
                u = q.unfold(2, k, k).unfold(3, k, k)
                oh, ow = u.shape[2], u.shape[3]
                flat = u.reshape(n, c, oh, ow, k * k)
                mx, idx = flat.max(dim=-1)
                tape.append((op, (idx, (n, c, h, w), q.shape), s))
                q = mx
            elif op.kind == "flatten":
                tape.append((op, q.shape, s))
                q = q.reshape(q.shape[0], -1)
        return q, s, tape

    def int_backward(self, e: torch.Tensor, tape: list[Any], m_u: int, step: int) -> None:
        first_i = min(i for i, t in enumerate(tape) if t[0].kind in ("linear", "conv"))
        for i in range(len(tape) - 1, -1, -1):
            op, saved, _ = tape[i]
            if op.kind in ("linear", "conv"):
                first = i == first_i
                gx, g32 = op.bwd(e, saved)
                bg = effective_bits(g32)
                bp = max(0, bg - m_u)
                self.tel[f"{op.name}|B_g"] = bg
                if bp > 0:
                    self.tel[f"{op.name}|psr_hist"] = psr_bits_hist(g32, bp)
                g = pseudo_stochastic_round(g32, bp) if bp > 0 else g32
                new = op.w - g
                self.tel[f"{op.name}|sat_w"] = int((new.abs() > Q).sum())
                op.w = new.clamp(-Q, Q)
                if first:
                    break
                else:
                    self.tel[f"{op.name}|B_e"] = effective_bits(gx)
                    e, _ = shift_round(gx, "nearest", bits=self.bits, dtype=torch.int64)
                    self.tel[f"{op.name}|sat_e"] = int((e.abs() == Q).sum())
            elif op.kind == "relu":
                e = e * saved
            elif op.kind == "pool":
                idx, (n, c, h, w), padded = saved
                k = op.k
                oh, ow = idx.shape[2], idx.shape[3]
                onehot = torch.zeros((n, c, oh, ow, k * k), dtype=torch.int64)
                onehot.scatter_(-1, idx.unsqueeze(-1), e.unsqueeze(-1))
                dx = onehot.reshape(n, c, oh, ow, k, k).permute(0, 1, 2, 4, 3, 5).reshape(n, c, oh * k, ow * k)
                e = dx[:, :, :h, :w].contiguous()
            elif op.kind == "flatten":
                e = e.reshape(saved)

    def integer_step(self, q: torch.Tensor, s: int, y: torch.Tensor, m_u: int, step: int) -> tuple[torch.Tensor, int]:
        """One integer training step on the quantized input ``q * 2^s``; returns the int logits."""
        logits, s_l, tape = self.int_forward(q, s, train=True)
        gen = torch.Generator().manual_seed(tensor_seed(self.seed, step, len(self.ops), "e"))
        e, _ = integer_ce_grad(logits, s_l, y, gen, self.bits)
        self.tel["loss|s_logits"] = s_l
        self.int_backward(e, tape, m_u, step)
        return logits, s_l

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Integer inference; float logits ``q * 2^s`` (evaluation only)."""
        q, s = quantize_input(x, self.bits)
        logits, s_l, _ = self.int_forward(q, s, train=False)
        return logits.to(torch.float32) * (2.0 ** s_l)


@register_scheme("niti")
@dataclass(frozen=True)
class NitiScheme(Scheme):
    """NITI integer-only training (NITI paper, section 3). See the module docstring.

    ``m_u`` bits of the weight update (1..7; the paper: 5 -> 4 -> 3 for VGG-small at epochs 100/150,
    3 for LeNet), an optional ``m_u_schedule`` ``"epoch:m_u,..."``. The engine's optimizer settings are
    ignored (there is no learning rate: the update size is set by ``m_u``).
    """

    description: ClassVar[str] = "integer-only int8 training (NITI paper)"
    rebuilds_model: ClassVar[bool] = True
    first_last: bool = field(default=True, metadata=field_doc("every layer is integer"))
    m_u: int = field(default=3, metadata=field_doc("bits kept in the weight update (1..7)"))
    m_u_schedule: str = field(default="", metadata=field_doc("'epoch:m_u,...' changes of m_u"))
    gemm: str = field(default="torch", metadata=field_doc("'torch' (int64 torch matmul, exact) or 'arith' "
                                                     "(core.arith.niti_matmul: int8 x int8 -> int32)"))

    def __post_init__(self) -> None:
        if int(self.m_u) != self.m_u or not 1 <= self.m_u <= 7:
            raise ValueError(f"niti.m_u must be an integer in 1..7, got {self.m_u}")
        parse_mu_schedule(self.m_u_schedule)
        if self.gemm not in GEMMS:
            raise ValueError(f"niti.gemm must be one of {', '.join(GEMMS)}, got {self.gemm!r}")

    def quant(self) -> QuantConfig | None:
        return None

    def m_u_at(self, epoch: int) -> int:
        mu = self.m_u
        for ep, v in parse_mu_schedule(self.m_u_schedule):
            if epoch >= ep:
                mu = v
        return mu

    def prepare(self, model: nn.Module, seed: int) -> nn.Module:
        return NitiNet(model, seed, gemm=self.gemm)

    def make_optimizer(self, params: Any, optim: Any) -> torch.optim.Optimizer:
        # NITI has no float optimizer; the engine needs an object with param_groups and state_dict.
        return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=optim.lr)

    def train_step(self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> StepOutput | None:
        net: NitiNet = ctx.model  # type: ignore[assignment]
        net.counter.mark(ctx.epoch)
        q, s = quantize_input(x, net.bits)
        logits, s_l = net.integer_step(q, s, y, self.m_u_at(ctx.epoch), ctx.step)
        net._sync()
        ctx.state["niti_m_u"] = self.m_u_at(ctx.epoch)
        # reporting only (not part of training): the float loss of the integer logits
        lf = logits.to(torch.float32) * (2.0 ** s_l)
        loss = float(F.cross_entropy(lf, y))
        correct = int((logits.argmax(1) == y).sum())
        return StepOutput(loss, correct, int(y.shape[0]))

    def extra_metrics(self, model: nn.Module, ctx: StepContext) -> list[MetricRow]:
        rows = []
        tel = getattr(model, "tel", {})
        for key, v in sorted(tel.items()):
            layer, name = key.split("|")
            if name == "psr_hist":
                rows += [MetricRow(layer, "g", "niti(bits=8)", "niti", f"psr_bin{i:02d}", float(c))
                         for i, c in enumerate(v)]
            else:
                tensor = {"B_acc": "a", "s_a": "a", "s_w": "w", "sat_a": "a", "B_g": "g", "sat_w": "w",
                          "B_e": "e", "sat_e": "e", "s_logits": "a"}.get(name, "")
                rows.append(MetricRow("" if layer == "loss" else layer, tensor, "niti(bits=8)", "niti", name, float(v)))
        rows.append(MetricRow("", "", "", "niti", "m_u", float(self.m_u_at(ctx.epoch))))
        c = getattr(model, "_bitops_counter", None)
        if c is not None:
            c.mark(ctx.epoch)
            rows += [MetricRow("", "", "", "cost", "bitops", c.total),
                     MetricRow("", "", "", "cost", "bitops_epoch", c.total - c.epoch_start)]
            if c.energy > 0:  # MLS paper App. E estimate (core.cost.energy), as core.train.cost.cost_rows
                rows += [MetricRow("", "", "", "cost", "energy", c.energy),
                         MetricRow("", "", "", "cost", "energy_ratio", c.energy_fp32 / c.energy)]
        return rows
