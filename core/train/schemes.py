"""Training schemes: frozen configs registered by name (built in: ``fp32``, ``amp``, ``mls``, ``custom``).

Owns :class:`Scheme` (the base with no-op hooks that later schemes override), the registry
(:func:`register_scheme`, :func:`get_scheme`, :func:`list_schemes`) and the four built-in schemes.

A scheme decides, per layer, which tensors are quantized into which format (:meth:`Scheme.layer_quant`,
returning a :class:`~core.train.qlayers.QuantConfig`), and may override the hooks the training loop
calls: ``prepare`` (model conversion), ``autocast_dtype``, ``loss`` (e.g. LogBTQ's barrier),
``schedule`` (per-step replacement: CPT/PFQ precision), ``make_optimizer`` (chunked or integer updates),
``train_step`` (a whole custom step, e.g. NITI), ``extra_metrics`` (scheme telemetry). Fields carry
``metadata={"doc": ..., "choices": ...}`` so dashboards can build widgets from :meth:`Scheme.describe`.
"""

from __future__ import annotations

import dataclasses
import logging
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from core.formats import ROUNDING_MODES
from core.formats.mls import MLSFormat

from .context import MetricRow, StepContext, StepOutput
from .qlayers import LayerInfo, QuantConfig, TensorQuant, convert

__all__ = [
    "Scheme",
    "SCHEMES",
    "register_scheme",
    "get_scheme",
    "list_schemes",
    "FP32Scheme",
    "AMPScheme",
    "MLSScheme",
    "CustomScheme",
    "default_optimizer",
    "field_doc",
    "format_field",
]

log = logging.getLogger(__name__)

#: entry-point group of the packages that register more schemes (this project's papers' schemes,
#: ``core.schemes``, are one: see pyproject.toml); they are imported the first time the registry is read
PLUGIN_GROUP = "lowbit_explorer.schemes"


class _Registry(dict[str, type["Scheme"]]):
    """Scheme name -> class. Reading it first imports the registered plugin packages, so
    ``core.train`` never imports the packages that build on it (the arrow points one way)."""

    _loaded = False
    _loading = False

    def _load(self) -> None:
        if type(self)._loaded or type(self)._loading:
            return
        type(self)._loading = True
        try:
            from importlib.metadata import entry_points

            for ep in entry_points(group=PLUGIN_GROUP):
                try:
                    ep.load()
                except Exception:  # noqa: BLE001 - a broken plugin must not hide the built-in schemes
                    log.exception("scheme plugin %s (%s) failed to load", ep.name, ep.value)
            type(self)._loaded = True
        finally:
            type(self)._loading = False

    def __getitem__(self, key: str) -> type["Scheme"]:
        self._load()
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self._load()
        return super().__contains__(key)

    def __iter__(self) -> Iterator[str]:
        self._load()
        return super().__iter__()

    def __len__(self) -> int:
        self._load()
        return super().__len__()

    def get(self, key: str, default: Any = None) -> Any:
        self._load()
        return super().get(key, default)

    def keys(self) -> Any:
        self._load()
        return super().keys()

    def items(self) -> Any:
        self._load()
        return super().items()

    def values(self) -> Any:
        self._load()
        return super().values()


#: scheme name -> scheme class
SCHEMES: dict[str, type["Scheme"]] = _Registry()

S = TypeVar("S", bound=type["Scheme"])


def register_scheme(name: str) -> Callable[[S], S]:
    """Class decorator: register a frozen ``Scheme`` dataclass under ``name``."""

    def deco(cls: S) -> S:
        own = "__dataclass_params__" in cls.__dict__  # decorated itself, not just inheriting
        if not (own and cls.__dataclass_params__.frozen):  # type: ignore[attr-defined]
            raise TypeError(f"scheme {name!r} must be a frozen dataclass")
        known = dict.get(SCHEMES, name)  # no plugin loading while a plugin registers
        if known is not None and known is not cls:
            raise ValueError(f"scheme {name!r} registered twice")
        cls.name = name
        SCHEMES[name] = cls
        return cls

    return deco


def list_schemes() -> list[str]:
    """Names of the registered schemes."""
    return sorted(SCHEMES)


def get_scheme(name: str, **fields: Any) -> "Scheme":
    """An instance of scheme ``name`` with ``fields`` overriding its defaults.

    Raises:
        ValueError: unknown scheme or field, or a field value out of its domain.
    """
    if name not in SCHEMES:
        raise ValueError(f"unknown scheme {name!r}; known: {', '.join(list_schemes())}")
    cls = SCHEMES[name]
    known = {f.name for f in dataclasses.fields(cls)}
    bad = sorted(set(fields) - known)
    if bad:
        raise ValueError(f"scheme {name!r} has no field(s) {', '.join(bad)}; fields: {', '.join(sorted(known))}")
    return cls(**fields)


def default_optimizer(params: Any, optim: Any) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov, weight decay) or Adam from an ``OptimConfig``."""
    if optim.name == "sgd":
        return torch.optim.SGD(params, lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay,
                               nesterov=optim.nesterov and optim.momentum > 0)
    if optim.name == "adam":
        return torch.optim.Adam(params, lr=optim.lr, weight_decay=optim.weight_decay)
    raise ValueError(f"unknown optimizer {optim.name!r}; known: sgd, adam")


def field_doc(doc: str, choices: tuple[Any, ...] | None = None) -> dict[str, Any]:
    """Field metadata of a scheme knob: ``{"doc": doc}`` plus ``"choices"`` when given (what
    ``explorer.knobs.spec_fields`` and the CLI read). The one helper every scheme uses."""
    return {"doc": doc, "choices": choices} if choices else {"doc": doc}


def format_field(family: type, name: str, doc: str | None = None) -> Any:
    """A scheme field mirroring field ``name`` of format dataclass ``family``: the same default and
    the format's own ``range``/``choices`` metadata (declared once, on the format), with ``doc``
    (default: the format's). The Live page reads the knob bounds from this metadata."""
    src = next(f for f in dataclasses.fields(family) if f.name == name)
    meta = {k: v for k, v in src.metadata.items() if k in ("range", "choices")}
    meta["doc"] = doc if doc is not None else src.metadata.get("doc", name)
    return field(default=src.default, metadata=meta)


@dataclass(frozen=True)
class Scheme:
    """Base scheme: float training; every hook is a no-op default.

    Attributes:
        first_last: quantize the first and the last layer too (the MLS paper, App. B, keeps them float;
            docs/papers.md#mls-first-last).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: True when :meth:`prepare` rebuilds the model (NITI's integer net, DFQ's gated branches): a live
    #: switch to or from such a scheme is refused (the running model cannot be rebuilt in place)
    rebuilds_model: ClassVar[bool] = False
    #: fields that shape the prepared model and therefore cannot change while a run is going
    static_fields: ClassVar[tuple[str, ...]] = ()

    first_last: bool = field(default=False, metadata=field_doc("also quantize the first and last layer"))

    # ---- what is quantized
    def quant(self) -> QuantConfig | None:
        """The QuantConfig of inner layers (None = float)."""
        return None

    def layer_quant(self, info: LayerInfo) -> QuantConfig | None:
        """The QuantConfig of one layer; applies the first/last-layer switch to :meth:`quant`."""
        q = self.quant()
        if q is None:
            return None
        if not self.first_last and (info.is_first or info.is_last):
            return None
        return q

    # ---- hooks (defaults = standard float training)
    def prepare(self, model: nn.Module, seed: int) -> nn.Module:
        """Convert ``model`` (swap in quantized layers); called once before training."""
        return convert(model, self, seed=seed)

    def autocast_dtype(self) -> torch.dtype | None:
        """dtype for ``torch.autocast`` around the forward, or None."""
        return None

    def loss(self, logits: torch.Tensor, target: torch.Tensor, model: nn.Module, ctx: StepContext) -> torch.Tensor:
        """Training loss; default cross-entropy."""
        return F.cross_entropy(logits.float(), target)

    def schedule(self, ctx: StepContext) -> "Scheme | None":
        """A replacement scheme to apply from this step on (logged as event ``schedule``), or None."""
        return None

    def make_optimizer(self, params: Any, optim: Any) -> torch.optim.Optimizer:
        """The optimizer for ``params`` given an ``OptimConfig``."""
        return default_optimizer(params, optim)

    def train_step(self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> StepOutput | None:
        """A complete custom step (forward, backward, update), or None for the standard one."""
        return None

    def extra_metrics(self, model: nn.Module, ctx: StepContext) -> list[MetricRow]:
        """Scheme-specific telemetry rows at telemetry steps; by default the run's effective BitOPs
        (role ``cost``, docs/papers.md#bitops) when the model carries a counter."""
        from .cost import cost_rows  # imported late: core.train.cost builds on the layers

        return cost_rows(model, ctx)

    # ---- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """``{"name": ..., <fields>}`` with JSON-able values."""
        d: dict[str, Any] = {"name": self.name}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            d[f.name] = list(v) if isinstance(v, tuple) else v
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Scheme":
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        name = d.pop("name", None)
        if not name:
            raise ValueError("a scheme dict needs a 'name'")
        cls = SCHEMES.get(name)
        if cls is None:
            raise ValueError(f"unknown scheme {name!r}; known: {', '.join(list_schemes())}")
        hints = typing.get_type_hints(cls)
        for k, v in list(d.items()):
            if isinstance(v, list) and "tuple" in str(hints.get(k, "")):
                d[k] = tuple(v)
        return get_scheme(name, **d)

    def replace(self, **changes: Any) -> "Scheme":
        """A validated copy with ``changes``."""
        known = {f.name for f in dataclasses.fields(self)}
        bad = sorted(set(changes) - known)
        if bad:
            raise ValueError(f"scheme {self.name!r} has no field(s) {', '.join(bad)}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """One dict per field: ``name, type, default, doc, choices, range`` (for building widgets;
        ``range`` is the ``(lo, hi)`` of an integer field, or None)."""
        hints = typing.get_type_hints(cls)
        out = []
        for f in dataclasses.fields(cls):
            out.append({"name": f.name, "type": hints.get(f.name), "default": f.default,
                        "doc": f.metadata.get("doc", ""), "choices": f.metadata.get("choices"),
                        "range": f.metadata.get("range")})
        return out

    def summary(self) -> str:
        """Short human-readable description, e.g. ``mls(ex=2,mx=1,...) W/A/E``."""
        q = self.quant()
        if q is None:
            return self.name
        parts = [f"{k.upper()}={getattr(q, k).fmt}" for k in ("w", "a", "e", "ew", "g", "update")
                 if getattr(q, k) is not None]
        return f"{self.name}: " + " ".join(parts)


@register_scheme("fp32")
@dataclass(frozen=True)
class FP32Scheme(Scheme):
    """Float32 training (the baseline)."""

    description: ClassVar[str] = "float32 baseline"


@register_scheme("amp")
@dataclass(frozen=True)
class AMPScheme(Scheme):
    """Automatic mixed precision: ``torch.autocast`` in bf16 (or fp16) around the forward."""

    description: ClassVar[str] = "mixed precision autocast (bf16 by default)"
    dtype: str = field(default="bf16", metadata=field_doc("autocast dtype", ("bf16", "fp16")))

    def __post_init__(self) -> None:
        if self.dtype not in ("bf16", "fp16"):
            raise ValueError(f"amp.dtype must be 'bf16' or 'fp16', got {self.dtype!r}")

    def autocast_dtype(self) -> torch.dtype | None:
        return torch.bfloat16 if self.dtype == "bf16" else torch.float16


@register_scheme("mls")
@dataclass(frozen=True)
class MLSScheme(Scheme):
    """MLS low-bit training (MLS paper, Alg. 2 and section 4): W, A and E in the MLS format.

    Every selected tensor is quantized with ``mls(ex,mx,eg,mg,group)`` (docs/papers.md#mls-format): elements
    ``<Ex,Mx>``, group scales ``<Eg,Mg>`` over ``group`` (``nc`` = per (dim0, dim1): Cout x Cin for
    weights, N x C for activations and errors), a float tensor scale. The paper rounds stochastically
    (section 4.1, Eq. 4); weights stay float masters updated by SGD; G is float unless ``g`` is given;
    the first and last layers stay float (App. B) unless ``first_last``.
    """

    description: ClassVar[str] = "multi-level scaling low-bit training (MLS paper)"
    # the five fields of the MLS format, with its defaults, ranges and choices (core/formats/mls.py)
    ex: int = format_field(MLSFormat, "ex", "element exponent bits Ex (no effect on Linear layers with group=nc and "
                                            "Eg = 8: each element is its own group, so every Ex >= 1 quantizes "
                                            "alike)")
    mx: int = format_field(MLSFormat, "mx", "element mantissa bits Mx")
    eg: int = format_field(MLSFormat, "eg", "group-scale exponent bits Eg")
    mg: int = format_field(MLSFormat, "mg", "group-scale mantissa bits Mg")
    group: str = format_field(MLSFormat, "group", "grouping dims (nc on a Linear layer's 2-d W/A/E: one group per "
                                                  "element, so Ex has no effect there)")
    w: bool = field(default=True, metadata=field_doc("quantize weights W"))
    a: bool = field(default=True, metadata=field_doc("quantize activations A"))
    e: bool = field(default=True, metadata=field_doc("quantize errors E"))
    rounding: str = field(default="stochastic", metadata=field_doc("rounding of W/A/E", ROUNDING_MODES))
    g: str | None = field(default=None, metadata=field_doc("optional spec for the weight gradient G"))
    g_rounding: str = field(default="nearest", metadata=field_doc("rounding of G", ROUNDING_MODES))

    def __post_init__(self) -> None:
        self.quant()  # validates the spec and rounding

    @property
    def fmt(self) -> MLSFormat:
        """The MLS format of W/A/E (validated by the format: ranges and choices)."""
        return MLSFormat(ex=self.ex, mx=self.mx, eg=self.eg, mg=self.mg, group=self.group)

    @property
    def spec(self) -> str:
        """The MLS spec string."""
        return f"mls(ex={self.ex},mx={self.mx},eg={self.eg},mg={self.mg},group={self.group})"

    def quant(self) -> QuantConfig | None:
        tq = TensorQuant(self.spec, self.rounding)
        g = TensorQuant(self.g, self.g_rounding) if self.g else None
        return QuantConfig(w=tq if self.w else None, a=tq if self.a else None, e=tq if self.e else None, g=g)


@register_scheme("custom")
@dataclass(frozen=True)
class CustomScheme(Scheme):
    """Any spec for each of W, A, E, E-for-G (``ew``), G and the update; None keeps a tensor float."""

    description: ClassVar[str] = "any format and rounding per tensor"
    first_last: bool = field(default=True, metadata=field_doc("also quantize the first and last layer"))
    w: str | None = field(default=None, metadata=field_doc("weight spec"))
    a: str | None = field(default=None, metadata=field_doc("activation (layer input) spec"))
    e: str | None = field(default=None, metadata=field_doc("error (grad of layer output) spec, propagation"))
    ew: str | None = field(default=None,
                           metadata=field_doc("error spec for the weight-gradient GEMM (None: same as e)"))
    g: str | None = field(default=None, metadata=field_doc("weight-gradient spec"))
    update: str | None = field(default=None, metadata=field_doc("optimizer-update spec"))
    w_rounding: str = field(default="nearest", metadata=field_doc("rounding of W", ROUNDING_MODES))
    a_rounding: str = field(default="nearest", metadata=field_doc("rounding of A", ROUNDING_MODES))
    e_rounding: str = field(default="nearest", metadata=field_doc("rounding of E", ROUNDING_MODES))
    ew_rounding: str = field(default="nearest", metadata=field_doc("rounding of E for G", ROUNDING_MODES))
    g_rounding: str = field(default="nearest", metadata=field_doc("rounding of G", ROUNDING_MODES))
    update_rounding: str = field(default="nearest", metadata=field_doc("rounding of the update", ROUNDING_MODES))

    def __post_init__(self) -> None:
        for k in ("w", "a", "e", "ew", "g", "update"):
            v = getattr(self, k)
            if isinstance(v, str) and v.strip().lower() in ("", "none", "float"):
                object.__setattr__(self, k, None)
        q = self.quant()  # validates and normalises the spec strings
        if q is not None:
            for k in ("w", "a", "e", "ew", "g", "update"):
                tq = getattr(q, k)
                if tq is not None:
                    object.__setattr__(self, k, tq.fmt)

    def quant(self) -> QuantConfig | None:
        kw = {k: TensorQuant(getattr(self, k), getattr(self, f"{k}_rounding"))
              for k in ("w", "a", "e", "ew", "g", "update") if getattr(self, k)}
        return QuantConfig(**kw) if kw else None
