"""Operation counts of one training iteration (MLS paper, Table 1), per layer and in total.

Owns the one multiply-add count of a Linear/Conv2d forward (:func:`layer_macs`, which the effective
BitOPs of ``core.train.cost`` use too) and :func:`count_ops`: one forward pass of a model on a
meta-device batch (no arithmetic, shapes only) with forward hooks on every module and a
``TorchFunctionMode`` that sees the element-wise tensor additions (the residual adds, which are not
modules). The rows follow Table 1 (docs/papers.md#mls-table1):

* Conv (F) / Conv (B): multiply-adds of the Conv2d and Linear layers. The backward pass is the grad
  w.r.t. the input plus the grad w.r.t. the weight, each as many multiply-adds as the forward, so
  ``B = 2 F`` (as Table 1 counts it: 8.11E+07 = 2 x 4.055E+07; the first layer's input grad is counted too).
* BN (F) / BN (B): one multiply-add per output element of a batch norm (``y = a x + b`` once the
  statistics are folded), the same in the backward.
* EW-Add (F) / EW-Add (B): one add per output element of a tensor + tensor addition in the forward;
  the backward sums the two gradient paths of each such add, counted with the add's shape (Table 1
  gives F = B).
* Weight update: one add per trainable parameter of the Conv2d/Linear layers (Table 1's 2.68E+05 for
  ResNet-20); the batch-norm affine parameters are reported apart (``update_bn``).

ReLU, pooling and the loss are not counted (Table 1 does not list them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

__all__ = ["LayerOps", "OpCounts", "layer_macs", "layer_partial_sums", "count_ops", "count_model",
           "TABLE1_ROWS", "PAPER_TABLE1"]

#: Table 1's rows: (label, op type, attribute of :class:`OpCounts`)
TABLE1_ROWS: tuple[tuple[str, str, str], ...] = (
    ("Conv (F)", "Mul&Add", "conv_f"),
    ("Conv (B)", "Mul&Add", "conv_b"),
    ("BN (F)", "Mul&Add", "bn_f"),
    ("BN (B)", "Mul&Add", "bn_b"),
    ("EW-Add (F)", "Add", "ew_f"),
    ("EW-Add (B)", "Add", "ew_b"),
    ("Weight Update (B)", "Add", "update"),
)

#: the MLS paper's Table 1, ResNet-20 (CIFAR-10) column, batch size 1
PAPER_TABLE1: dict[str, float] = {
    "conv_f": 4.05e7, "conv_b": 8.11e7, "bn_f": 1.88e5, "bn_b": 1.88e5,
    "ew_f": 7.37e4, "ew_b": 7.37e4, "update": 2.68e5,
}


def layer_macs(layer: nn.Module, x: torch.Tensor | None, y: torch.Tensor) -> int:
    """Multiply-adds of one Linear/Conv2d forward (whole batch): ``numel(y) * (Cin/groups) * kh * kw``
    for a convolution, ``numel(y) * in_features`` for a linear layer (MLS paper, Table 1, "Conv (F)")."""
    if isinstance(layer, nn.Conv2d):
        k = layer.weight.shape[1] * layer.weight.shape[2] * layer.weight.shape[3]
        return int(y.numel() * k)
    weight = getattr(layer, "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"layer_macs: {type(layer).__name__} has no weight tensor")
    return int(y.numel() * weight.shape[1])


def layer_partial_sums(layer: nn.Module, y: torch.Tensor) -> int:
    """Intra-group partial sums of one forward in the MLS arithmetic (MLS paper, section 4.2, Eq. 6-8):
    one per (output element, input channel), each summing a ``kh x kw`` window; a linear layer has
    windows of one product (``numel(y) * in_features``)."""
    if isinstance(layer, nn.Conv2d):
        return int(y.numel() * layer.weight.shape[1])
    return layer_macs(layer, None, y)


@dataclass(frozen=True)
class LayerOps:
    """The counts of one layer (module name) for one training iteration.

    Attributes:
        name: the module's qualified name ("" for the model itself).
        kind: ``conv`` | ``linear`` | ``bn`` | ``add`` (element-wise adds inside that module's forward).
        fwd, bwd: operations of the forward and the backward pass (see module doc).
        update: parameters this layer updates (one add each).
        outputs: output elements of the forward (conv/linear; used by the energy model).
        partial_sums: MLS intra-group partial sums of the forward (conv/linear; Eq. 6-8).
        window: products per partial sum (``kh * kw``; 1 for linear and non-GEMM rows).
    """

    name: str
    kind: str
    fwd: int
    bwd: int
    update: int = 0
    outputs: int = 0
    partial_sums: int = 0
    window: int = 1


@dataclass
class OpCounts:
    """Per-layer rows of one training iteration at ``batch``, with Table 1's totals as properties."""

    model: str
    batch: int
    layers: list[LayerOps] = field(default_factory=list)

    def _sum(self, kinds: tuple[str, ...], attr: str) -> int:
        return sum(getattr(r, attr) for r in self.layers if r.kind in kinds)

    @property
    def conv_f(self) -> int:
        """Conv/Linear multiply-adds, forward."""
        return self._sum(("conv", "linear"), "fwd")

    @property
    def conv_b(self) -> int:
        """Conv/Linear multiply-adds, backward (grad input + grad weight)."""
        return self._sum(("conv", "linear"), "bwd")

    @property
    def bn_f(self) -> int:
        return self._sum(("bn",), "fwd")

    @property
    def bn_b(self) -> int:
        return self._sum(("bn",), "bwd")

    @property
    def ew_f(self) -> int:
        return self._sum(("add",), "fwd")

    @property
    def ew_b(self) -> int:
        return self._sum(("add",), "bwd")

    @property
    def update(self) -> int:
        """Weight-update adds of the Conv/Linear parameters (Table 1's "Weight Update")."""
        return self._sum(("conv", "linear"), "update")

    @property
    def update_bn(self) -> int:
        """Updates of the batch-norm affine parameters (not in Table 1's count)."""
        return self._sum(("bn",), "update")

    def table1(self) -> dict[str, int]:
        """Table 1's rows: attribute -> count."""
        return {attr: int(getattr(self, attr)) for _, _, attr in TABLE1_ROWS}


_ADDS: set[Callable[..., Any]] = {torch.add, torch.Tensor.add, torch.Tensor.add_, torch.Tensor.__add__,
                                  torch.Tensor.__radd__, torch.Tensor.__iadd__}


class _AddCounter(TorchFunctionMode):
    """Counts tensor + tensor additions (both operands tensors with more than one element) and gives each
    to the innermost module running at the time."""

    def __init__(self, stack: list[str], sink: dict[str, int]) -> None:
        super().__init__()
        self.stack, self.sink = stack, sink

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if func in _ADDS and len(args) >= 2 and all(isinstance(a, torch.Tensor) and a.numel() > 1 for a in args[:2]):
            if isinstance(out, torch.Tensor):
                name = self.stack[-1] if self.stack else ""
                self.sink[name] = self.sink.get(name, 0) + int(out.numel())
        return out


def _own_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters(recurse=False) if p.requires_grad)


def count_ops(model: nn.Module, input_shape: tuple[int, ...], batch: int = 1, name: str = "") -> OpCounts:
    """Count one training iteration of ``model`` on a batch of ``batch`` inputs of ``input_shape``.

    The model is copied to the meta device (shapes only; the caller's model is untouched) and run once
    in training mode with hooks; see the module doc for what each row counts (MLS paper, Table 1).

    Raises:
        ValueError: ``batch < 1``.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    import copy

    m = copy.deepcopy(model).to("meta")
    m.train()
    stack: list[str] = []
    rows: dict[str, LayerOps] = {}
    adds: dict[str, int] = {}
    order: list[str] = []
    handles = []

    def pre(mod_name: str) -> Callable[..., None]:
        def hook(mod: nn.Module, inputs: Any) -> None:
            stack.append(mod_name)
        return hook

    def post(mod_name: str) -> Callable[..., None]:
        def hook(mod: nn.Module, inputs: Any, out: Any) -> None:
            stack.pop()
            if mod_name not in order:  # rows in the order the modules finish (a block after its layers)
                order.append(mod_name)
            if not isinstance(out, torch.Tensor):
                return
            prev = rows.get(mod_name)
            if isinstance(mod, (nn.Conv2d, nn.Linear)):
                macs = layer_macs(mod, None, out)
                kind = "conv" if isinstance(mod, nn.Conv2d) else "linear"
                window = int(mod.weight.shape[2] * mod.weight.shape[3]) if isinstance(mod, nn.Conv2d) else 1
                r = LayerOps(mod_name, kind, macs, 2 * macs, _own_params(mod), int(out.numel()),
                             layer_partial_sums(mod, out), window)
            elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
                r = LayerOps(mod_name, "bn", int(out.numel()), int(out.numel()), _own_params(mod))
            else:
                return
            if prev is not None:  # a module called twice in one forward: add up, parameters once
                r = LayerOps(mod_name, r.kind, prev.fwd + r.fwd, prev.bwd + r.bwd, prev.update,
                             prev.outputs + r.outputs, prev.partial_sums + r.partial_sums, r.window)
            rows[mod_name] = r
        return hook

    for mod_name, mod in m.named_modules():
        handles.append(mod.register_forward_pre_hook(pre(mod_name)))
        handles.append(mod.register_forward_hook(post(mod_name)))
    try:
        x = torch.zeros((batch, *input_shape), device="meta")
        with _AddCounter(stack, adds):
            m(x)
    finally:
        for h in handles:
            h.remove()
    out = OpCounts(name or type(model).__name__, batch)
    for mod_name in order:
        if mod_name in rows:
            out.layers.append(rows[mod_name])
        if mod_name in adds:
            out.layers.append(LayerOps(mod_name, "add", adds[mod_name], adds[mod_name]))
    return out


def count_model(name: str, batch: int = 1, input_shape: tuple[int, ...] | None = None, num_classes: int = 10,
                **model_kw: Any) -> OpCounts:
    """Build the registered model ``name`` (``core.models``) and count it; the input shape defaults to
    CIFAR's ``(3, 32, 32)`` for the convolutional nets and MNIST's ``(1, 28, 28)`` for ``mlp`` and ``lenet5``.

    Raises:
        core.models.ModelError: unknown model or unusable input shape; ValueError: bad batch or config.
    """
    from core.models import ModelConfig, build_model

    if input_shape is None:
        input_shape = (1, 28, 28) if name in ("mlp", "lenet5") else (3, 32, 32)
    model = build_model(ModelConfig(name=name, **model_kw), input_shape, num_classes)
    return count_ops(model, input_shape, batch, name)
