"""Quantized Conv2d/Linear layers and ``convert(model, config)`` (MLS paper, Alg. 2).

Owns :class:`TensorQuant` (one spec string + rounding), :class:`QuantConfig` (per layer: the forward
operands W and A, the backward operand E for propagation and, separately, for the weight-gradient GEMM,
the weight gradient G and the optimizer update), the layers :class:`QLinear` / :class:`QConv2d`, and
:func:`convert`, which swaps them into a model explicitly (no monkeypatching).

A quantized layer computes, as in the MLS paper's Alg. 2 (forward ``Z = LowbitConv(qW, qA)``; backward
``qE = DynamicQuantization(dL/dZ)``, ``G = LowbitConv(qE, qA)``, ``dL/dA = LowbitConv(qE, qW)``)::

    forward:   y = op(Qa(x), Qw(W)) + b
    backward:  Eq  = Qe(dL/dy)                     grad_x = op_input_grad(Eq, Qw(W))
               Eqw = Qew(dL/dy) (or Eq)            G = Qg(op_weight_grad(Eqw, Qa(x)))
               grad_b = sum(dL/dy)                 (the bias gradient stays float)

The rounding itself is a straight-through estimator: the gradient flows through ``Q`` as identity
(grad_x is taken w.r.t. the quantized input, and G is applied to the float master weight).
Stochastic rounding is seeded from ``(run seed, step, layer index, tensor)`` so runs are reproducible.

Two hooks, resolved when a config is assigned (no per-step cost for configs without them): a TensorQuant
with ``bind(layer, kind)`` quantizes through what ``bind`` returns (delayed FP8 scaling, the recipes' conv GEMM views);
a QuantConfig with a ``wgrad_transform`` ``fn(layer, E, A, Eqw, Aq) -> (E', A')`` gives the operands of
the weight-gradient op ``G = op_weight_grad(E', A')`` from the float E and A (the NVFP4 recipe's random
Hadamard transform and re-quantization along the batch; core/schemes/recipes.py); on this path the
layer keeps only the float A for backward, so ``Aq`` is passed as A too.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol

import torch
import torch.nn.functional as F
from torch import nn

import core
from core.kernels.grid_round import chained_seed, chained_seeds
from core.formats.base import is_stochastic, rounding_family

__all__ = [
    "TENSORS",
    "TensorQuant",
    "QuantConfig",
    "LayerInfo",
    "QLayer",
    "QLinear",
    "QConv2d",
    "convert",
    "quantized_layers",
    "assign",
    "tensor_seed",
    "parse_spec",
]

#: tensor kinds a QuantConfig can quantize, with the codes used to derive rounding seeds
TENSORS: dict[str, int] = {"w": 1, "a": 2, "e": 3, "ew": 4, "g": 5, "update": 6}

_MASK64 = (1 << 64) - 1
_SIGN64 = 1 << 63


def _as_int64(v: int) -> int:
    """The low 64 bits of ``v`` as a signed int64 (compiled code reads them back as uint64)."""
    return ((v & _MASK64) ^ _SIGN64) - _SIGN64


def tensor_seed(seed: int, step: int, layer: int, tensor: str) -> int:
    """Deterministic 63-bit rounding seed for one tensor of one layer at one step: splitmix64 chained
    over (seed, step, layer, tensor code), shifted to 63 bits (one compiled call,
    :func:`core.kernels.grid_round.chained_seed`: the training loop asks for several per layer and
    step; ``tests/naive.py`` has the plain-Python definition the tests compare it with)."""
    return int(chained_seed(_as_int64(seed), _as_int64(step), _as_int64(layer), TENSORS[tensor]))


@functools.lru_cache(maxsize=512)
def _quantizer(fmt: str, rounding: str) -> Callable[[torch.Tensor, "int | None"], torch.Tensor]:
    """The spec's ``quantizer(rounding)`` (per-call work hoisted), one per (spec string, rounding)."""
    return parse_spec(fmt).quantizer(rounding)


@functools.lru_cache(maxsize=512)
def parse_spec(fmt: str) -> Any:
    """``core.parse_format`` with a cache (specs are frozen)."""
    return core.parse_format(fmt)


@dataclass(frozen=True)
class TensorQuant:
    """One tensor's format and rounding.

    Attributes:
        fmt: a spec string understood by ``core.parse_format``; normalised to ``str(spec)``.
        rounding: a mode of ``core.ROUNDING_MODES`` or ``stochastic_rbits<K>`` that the format supports.

    Raises:
        ValueError: the spec does not parse, or the format does not support the rounding mode.
    """

    fmt: str
    rounding: str = "nearest"

    def __post_init__(self) -> None:
        spec = parse_spec(str(self.fmt))
        object.__setattr__(self, "fmt", str(spec))
        family = rounding_family(self.rounding)  # ValueError naming the valid modes
        supported = getattr(spec, "roundings", core.ROUNDING_MODES)
        if family not in supported:
            raise ValueError(f"format {spec} does not support rounding={self.rounding!r}; it supports: "
                             f"{', '.join(supported)}")

    @property
    def spec(self) -> Any:
        """The parsed format spec."""
        return parse_spec(self.fmt)

    def __call__(self, x: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        """Quantize ``x`` (same shape, dtype, device): ``core.quantize`` through the spec's
        :meth:`~core.formats.base.FormatSpec.quantizer`."""
        return _quantizer(self.fmt, self.rounding)(x, seed)

    @classmethod
    def coerce(cls, v: "TensorQuant | str | dict[str, Any] | None", rounding: str = "nearest") -> "TensorQuant | None":
        """Accept a TensorQuant, a spec string, a ``{"fmt", "rounding"}`` dict or None."""
        if v is None or isinstance(v, TensorQuant):
            return v
        if isinstance(v, str):
            return None if v.strip() in ("", "none", "float", "None") else cls(v, rounding)
        if isinstance(v, dict):
            return cls(**v)
        raise TypeError(f"expected a spec string or TensorQuant, got {type(v).__name__}")


@dataclass(frozen=True)
class QuantConfig:
    """Per-layer quantization: one :class:`TensorQuant` (or None = float) per tensor.

    Attributes:
        w: weight, forward operand.
        a: layer input (activation), forward operand.
        e: gradient w.r.t. the layer output, operand of the grad-input GEMM (error propagation).
        ew: E for the weight-gradient GEMM; None reuses the quantized ``e`` (SBM bifurcation sets it).
        g: weight gradient (output of the weight-gradient GEMM).
        update: the optimizer's weight update, quantized before it is applied.
    """

    w: TensorQuant | None = None
    a: TensorQuant | None = None
    e: TensorQuant | None = None
    ew: TensorQuant | None = None
    g: TensorQuant | None = None
    update: TensorQuant | None = None

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, TensorQuant.coerce(getattr(self, f.name)))

    @functools.cached_property
    def is_float(self) -> bool:
        """True when nothing is quantized."""
        return all(getattr(self, f.name) is None for f in dataclasses.fields(self))

    def to_dict(self) -> dict[str, dict[str, str] | None]:
        """JSON-able form."""
        return {f.name: (dataclasses.asdict(v) if (v := getattr(self, f.name)) is not None else None)
                for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class LayerInfo:
    """What a scheme sees when it picks a layer's :class:`QuantConfig`."""

    index: int
    name: str
    count: int
    kind: str

    @property
    def is_first(self) -> bool:
        return self.index == 0

    @property
    def is_last(self) -> bool:
        return self.index == self.count - 1


class _SchemeLike(Protocol):
    def layer_quant(self, info: LayerInfo) -> QuantConfig | None: ...


class QLayer:
    """Mixin state of a quantized layer (set by :func:`convert` and the training loop).

    Attributes:
        quant: the layer's :class:`QuantConfig`, or None (float).  Assigning it also resolves each
            tensor's quantizer callable once (``_plan``), so a step does no per-tensor lookups.
        layer_index / layer_name: position and module path in the converted model.
        seed: run seed; ``step``: current step (both feed :func:`tensor_seed`).
        capture: when a dict, the next forward/backward records float and quantized tensors into it
            (keys ``w, wq, a, aq, e, eq, g, gq``); the telemetry reads and clears it.
    """

    layer_index: int
    layer_name: str
    seed: int
    step: int
    capture: dict[str, torch.Tensor] | None

    @property
    def quant(self) -> QuantConfig | None:
        return self._quant

    @quant.setter
    def quant(self, q: QuantConfig | None) -> None:
        self._quant = q
        self._plan = {kind: _plan_entry(getattr(q, kind), kind, self) if q is not None else None for kind in TENSORS}
        # the weight-gradient operand hook of a QuantConfig that has one (core.schemes.recipes: the NVFP4
        # random Hadamard transform), resolved once here so the backward pays one attribute test
        self._wgrad = getattr(q, "wgrad_transform", None)

    def _init_q(self) -> None:
        # [(seed, step, layer index), seeds]: a plain list, so refreshing it each step skips
        # nn.Module.__setattr__ (~1 us per attribute)
        self._seed_cache: list[Any] = [None, ()]
        self.quant = None
        self.layer_index = 0
        self.layer_name = ""
        self.seed = 0
        self.step = 0
        self.capture = None

    def _q(self, kind: str, x: torch.Tensor) -> torch.Tensor:
        """``x`` quantized as this layer's tensor ``kind`` at the current step (``x`` itself if float)."""
        entry = self._plan[kind]
        if entry is None:
            return x
        fn, code, stochastic = entry
        if stochastic:
            return fn(x, self._seeds_now()[code])
        return fn(x)

    def _seeds_now(self) -> tuple[int, ...]:
        """:func:`tensor_seed` of every tensor code at the current step (computed once per step)."""
        cache = self._seed_cache
        key = (self.seed, self.step, self.layer_index)
        if cache[0] != key:
            cache[0] = key
            cache[1] = chained_seeds(_as_int64(self.seed), _as_int64(self.step), _as_int64(self.layer_index))
        return cache[1]

    def quant_state(self) -> dict[str, Any]:
        """Quantizer state for checkpoints (plain types only)."""
        return {"index": self.layer_index, "name": self.layer_name, "seed": self.seed, "step": self.step,
                "quant": self.quant.to_dict() if self.quant is not None else None}


def _plan_entry(tq: TensorQuant | None, kind: str,
                layer: Any = None) -> tuple[Callable[..., torch.Tensor], int, bool] | None:
    """``(quantizer, seed code, stochastic)`` of one tensor kind, or None when it stays float.

    A TensorQuant with a ``bind(layer, kind)`` method is stateful (delayed scaling keeps an amax history
    per layer and tensor, core.schemes.recipes): its quantizer is what ``bind`` returns, resolved here,
    when the config is assigned, never per step."""
    if tq is None:
        return None
    bind = getattr(tq, "bind", None)
    if bind is not None and layer is not None:
        return bind(layer, kind), TENSORS[kind], is_stochastic(tq.rounding)
    # subclasses that wrap the quantization (LogBTQ's ClampQuant clamps first) are called as they are
    fn = _quantizer(tq.fmt, tq.rounding) if type(tq).__call__ is TensorQuant.__call__ else tq
    return fn, TENSORS[kind], is_stochastic(tq.rounding)


class _QOp(torch.autograd.Function):
    """One quantized GEMM-like op (linear or conv2d) with explicit backward (see module docstring)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, layer: Any) -> torch.Tensor:
        xq = layer._q("a", x)
        wq = layer._q("w", w)
        y = layer._op(xq, wq, b)
        if layer._wgrad is None:
            ctx.save_for_backward(xq, wq)
        else:  # the weight-gradient hook builds its operands from the float input: xq is not needed
            ctx.save_for_backward(x.detach(), wq)
        ctx.layer = layer
        ctx.has_bias = b is not None
        cap = layer.capture
        if cap is not None:
            cap.update(a=x.detach(), aq=xq.detach(), w=w.detach().clone(), wq=wq.detach())
        return y

    @staticmethod
    def backward(ctx: Any, grad_y: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        xq, wq = ctx.saved_tensors  # xq is the float x on the weight-gradient hook path
        layer = ctx.layer
        eq = layer._q("e", grad_y)
        eqw = eq if layer._plan["ew"] is None else layer._q("ew", grad_y)
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if layer._wgrad is None:
            gx, gw = layer._grads(eq, eqw, xq, wq, need_x, need_w)
        else:  # G = op_weight_grad(E', A') with the operands the hook returns (e.g. H E, H A: H^T H = I)
            x = xq  # grad_x reads only its shape (conv) or nothing (linear) from the input
            gx = layer._grads(eq, eq, x, wq, True, False)[0] if need_x else None
            gw = None
            if need_w:
                e_op, a_op = layer._wgrad(layer, grad_y, x, eqw, x)
                gw = layer._grads(e_op, e_op, a_op, wq, False, True)[1]
        cap = layer.capture
        gwq = layer._q("g", gw) if gw is not None else None
        if cap is not None:
            cap.update(e=grad_y.detach(), eq=eq.detach())
            if gw is not None and gwq is not None:
                cap.update(g=gw.detach(), gq=gwq.detach())
        gb = None
        if ctx.has_bias and ctx.needs_input_grad[2]:
            nd = grad_y.dim()
            gb = grad_y.sum(0) if nd == 2 else grad_y.sum(dim=[0, *range(2, nd)]) if nd > 2 else grad_y
        return gx, gwq, gb, None


class QLinear(nn.Linear, QLayer):
    """``nn.Linear`` with W/A/E/G quantization (see :class:`QuantConfig`)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, **kw: Any) -> None:
        super().__init__(in_features, out_features, bias, **kw)
        self._init_q()

    def _op(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        return F.linear(x, w, b)

    def _grads(self, eq: torch.Tensor, eqw: torch.Tensor, xq: torch.Tensor, wq: torch.Tensor,
               need_x: bool, need_w: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        gx = eq.matmul(wq) if need_x else None
        gw = None
        if need_w:
            if eqw.dim() == 2:
                gw = eqw.t().mm(xq)
            else:
                gw = eqw.reshape(-1, eqw.shape[-1]).t().mm(xq.reshape(-1, xq.shape[-1]))
        return gx, gw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.quant is None:  # assign() stores float configs as None
            return _plain_forward(self, x, F.linear(x, self.weight, self.bias))
        return _QOp.apply(x, self.weight, self.bias, self)

    @classmethod
    def from_float(cls, m: nn.Linear) -> "QLinear":
        """A QLinear sharing ``m``'s parameters."""
        q = cls.__new__(cls)
        nn.Module.__init__(q)
        q.in_features, q.out_features = m.in_features, m.out_features
        q.weight = m.weight
        q.bias = m.bias
        q._init_q()
        return q


class QConv2d(nn.Conv2d, QLayer):
    """``nn.Conv2d`` with W/A/E/G quantization (see :class:`QuantConfig`)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._init_q()

    def _op(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        if self.padding_mode != "zeros":
            raise ValueError("QConv2d supports padding_mode='zeros' only")
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, self.groups)

    def _grads(self, eq: torch.Tensor, eqw: torch.Tensor, xq: torch.Tensor, wq: torch.Tensor,
               need_x: bool, need_w: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        args = (None, self.stride, self.padding, self.dilation, False, [0, 0], self.groups)
        if eq is eqw:
            gx, gw, _ = torch.ops.aten.convolution_backward(eq, xq, wq, *args, [need_x, need_w, False])
            return gx, gw
        gx = gw = None
        if need_x:
            gx = torch.ops.aten.convolution_backward(eq, xq, wq, *args, [True, False, False])[0]
        if need_w:
            gw = torch.ops.aten.convolution_backward(eqw, xq, wq, *args, [False, True, False])[1]
        return gx, gw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.quant is None:  # assign() stores float configs as None
            return _plain_forward(self, x, self._op(x, self.weight, self.bias))
        return _QOp.apply(x, self.weight, self.bias, self)

    @classmethod
    def from_float(cls, m: nn.Conv2d) -> "QConv2d":
        """A QConv2d sharing ``m``'s parameters."""
        q = cls.__new__(cls)
        nn.Module.__init__(q)
        for k in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
                  "transposed", "output_padding", "groups", "padding_mode", "_reversed_padding_repeated_twice"):
            setattr(q, k, getattr(m, k))
        q.weight = m.weight
        q.bias = m.bias
        q._init_q()
        return q


def _plain_forward(layer: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Float layer: record A, W and (through a hook) E when capturing; G is read from ``weight.grad``."""
    cap = layer.capture
    if cap is not None and torch.is_grad_enabled():
        cap.update(a=x.detach(), w=layer.weight.detach().clone())
        if y.requires_grad:
            y.register_hook(lambda g: cap.__setitem__("e", g.detach()))
    return y


_SWAP: dict[type, Callable[[Any], nn.Module]] = {
    nn.Linear: QLinear.from_float,
    nn.Conv2d: QConv2d.from_float,
}


def _default_filter(module: nn.Module, fqn: str) -> bool:
    return type(module) in _SWAP


def convert(model: nn.Module, config: "QuantConfig | _SchemeLike | None" = None, *,
            module_filter_fn: Callable[[nn.Module, str], bool] | None = None, seed: int = 0) -> nn.Module:
    """Swap every ``nn.Linear``/``nn.Conv2d`` accepted by ``module_filter_fn`` for its quantized twin.

    Parameters are shared (not copied), so an optimizer built before or after sees the same tensors.
    Layers are numbered in module-traversal order; a scheme's ``layer_quant(LayerInfo)`` then picks each
    layer's :class:`QuantConfig` (first/last-layer rules live there).

    Args:
        model: modified in place and returned (a bare Linear/Conv2d is replaced, so use the result).
        config: a :class:`QuantConfig` for every swapped layer, a scheme with ``layer_quant``, or None.
        module_filter_fn: ``fn(module, fqn) -> bool``; default: every Linear and Conv2d.
        seed: run seed for stochastic rounding.
    """
    filt = module_filter_fn or _default_filter
    targets = [(fqn, m) for fqn, m in model.named_modules() if type(m) in _SWAP and filt(m, fqn)]
    for fqn, m in targets:
        new = _SWAP[type(m)](m)
        if fqn == "":  # the model itself is one layer
            model = new
            continue
        parent_name, _, child = fqn.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, new)
    layers = list(quantized_layers(model))
    for i, (name, layer) in enumerate(layers):
        layer.layer_index, layer.layer_name, layer.seed = i, name, seed
    assign(model, config)
    return model


def quantized_layers(model: nn.Module) -> Iterator[tuple[str, Any]]:
    """``(fqn, layer)`` for every quantizable layer of a converted model, in order."""
    for fqn, m in model.named_modules():
        if isinstance(m, QLayer):
            yield fqn, m


def assign(model: nn.Module, config: "QuantConfig | _SchemeLike | None") -> None:
    """(Re)assign each layer's :class:`QuantConfig` from a config or a scheme; used for live updates."""
    layers = list(quantized_layers(model))
    n = len(layers)
    for fqn, layer in layers:
        if config is None or isinstance(config, QuantConfig):
            q = config
        else:
            q = config.layer_quant(LayerInfo(layer.layer_index, fqn, n, type(layer).__mro__[1].__name__))
        layer.quant = None if (q is None or q.is_float) else q
