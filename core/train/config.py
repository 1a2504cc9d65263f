"""Run configuration: one frozen, validated config per run.

Owns :class:`OptimConfig`, :class:`TelemetryConfig` and :class:`RunConfig` (which nests
:class:`~core.data.DataConfig`, :class:`~core.models.ModelConfig` and a registered
:class:`~core.train.schemes.Scheme`), their dict/TOML forms, dotted-key changes for live updates
(:meth:`RunConfig.with_changes`) and the learning-rate schedule.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from core.data import DataConfig
from core.models import ModelConfig

from .qlayers import parse_spec
from .schemes import FP32Scheme, Scheme, get_scheme

#: the most torch threads a run may ask for (more than 4 per core only slows a run down; 10^5 threads
#: exhaust the machine's memory)
MAX_THREADS = max(64, 4 * (os.cpu_count() or 1))

__all__ = [
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "TelemetryConfig",
    "RunConfig",
    "LIVE_KEYS",
    "coerce_value",
    "lr_factor",
]

TENSOR_KINDS = ("w", "a", "e", "g")

#: True while :meth:`RunConfig.with_changes` applies its keys one by one: checks that span several fields
#: (:meth:`RunConfig.check_across_fields`) then wait for the last key, so the order of the keys never matters
_CHANGING: contextvars.ContextVar[bool] = contextvars.ContextVar("lowbit_run_config_changing", default=False)


@contextlib.contextmanager
def across_field_checks_deferred() -> Iterator[None]:
    """Inside it, :class:`RunConfig` skips the checks that span several fields, for a caller that applies
    changes one key at a time (a sweep cell, to name the key a bad value came from) and then calls
    :meth:`RunConfig.check_across_fields` once on the result."""
    token = _CHANGING.set(True)
    try:
        yield
    finally:
        _CHANGING.reset(token)


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer and learning-rate schedule.

    Attributes:
        name: ``sgd`` or ``adam``.
        lr: base learning rate; ``momentum``, ``weight_decay``, ``nesterov``: SGD knobs.
        schedule: ``constant``, ``cosine`` (to 0 over the run) or ``step`` (x ``gamma`` at each
            epoch in ``milestones``).
        warmup_steps: linear warm-up from 0.
        grad_clip: clip the global gradient norm (None = off).
    """

    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    nesterov: bool = False
    schedule: str = "constant"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_steps: int = 0
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        if self.name not in ("sgd", "adam"):
            raise ValueError(f"OptimConfig.name must be 'sgd' or 'adam', got {self.name!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"OptimConfig.lr must be a positive number, got {self.lr!r}")
        if not (0.0 <= self.momentum < 1.0):
            raise ValueError(f"OptimConfig.momentum must be in [0, 1), got {self.momentum!r}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ValueError(f"OptimConfig.weight_decay must be a finite number >= 0, got {self.weight_decay!r}")
        if not (self.gamma > 0 and math.isfinite(self.gamma)):
            raise ValueError(f"OptimConfig.gamma must be a finite number > 0, got {self.gamma!r}")
        if self.schedule not in ("constant", "cosine", "step"):
            raise ValueError(f"OptimConfig.schedule must be constant, cosine or step, got {self.schedule!r}")
        if self.warmup_steps < 0:
            raise ValueError("OptimConfig.warmup_steps must be >= 0")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError("OptimConfig.grad_clip must be > 0 or None")


@dataclass(frozen=True)
class TelemetryConfig:
    """What the run measures per layer and tensor, and how often.

    Attributes:
        every: steps between telemetry snapshots (0 = off); step 0 is always one.
        tensors: which of ``w, a, e, g`` to measure.
        shadow: extra spec strings; each captured tensor is also quantized into them (nearest) and
            measured, without touching training.
        stats: min/max/mean/std/amax/dynamic range; ``hist``: log2|x| histograms on fixed bins
            ``hist_bins`` equal bins over ``[hist_lo, hist_hi)``.
        stagnation: fraction of weight updates smaller than half a code step of the weight format.
        sample_every: steps between stored raw tensor samples (0 = off); ``sample_size`` elements each.
        acc_bits: layers with MLS W and A log ``acc_bits``, the accumulator width their intra-group partial
            sums need (MLS paper, section 4.2), measured on this many inputs of the batch (0 = off).
        acc_bits_every: steps between ``acc_bits`` measurements, taken at the telemetry snapshots whose
            step is a multiple of it (step 0 included): the exact per-addition measurement costs several
            snapshots' worth of the other metrics, and the width changes slowly.
    """

    every: int = 25
    tensors: tuple[str, ...] = TENSOR_KINDS
    shadow: tuple[str, ...] = ()
    stats: bool = True
    hist: bool = True
    hist_lo: float = -40.0
    hist_hi: float = 16.0
    hist_bins: int = 112
    stagnation: bool = True
    sample_every: int = 100
    sample_size: int = 4096
    acc_bits: int = 4
    acc_bits_every: int = 250

    def __post_init__(self) -> None:
        tensors = (self.tensors,) if isinstance(self.tensors, str) else tuple(self.tensors)
        shadow = (self.shadow,) if isinstance(self.shadow, str) else tuple(self.shadow)
        bad = [t for t in tensors if t not in TENSOR_KINDS]
        if bad:
            raise ValueError(f"TelemetryConfig.tensors: unknown {bad}; valid: {', '.join(TENSOR_KINDS)}")
        object.__setattr__(self, "tensors", tensors)
        object.__setattr__(self, "shadow", tuple(str(parse_spec(s)) for s in shadow if s.strip()))
        if self.acc_bits < 0:
            raise ValueError(f"TelemetryConfig.acc_bits must be >= 0, got {self.acc_bits}")
        if self.acc_bits_every < 1:
            raise ValueError(f"TelemetryConfig.acc_bits_every must be >= 1, got {self.acc_bits_every}")
        if self.every < 0 or self.sample_every < 0:
            raise ValueError("TelemetryConfig.every and sample_every must be >= 0")
        if not (math.isfinite(self.hist_lo) and math.isfinite(self.hist_hi) and self.hist_lo < self.hist_hi):
            raise ValueError("TelemetryConfig needs finite hist_lo < hist_hi")
        if not 1 <= self.hist_bins <= 4096:
            raise ValueError(f"TelemetryConfig.hist_bins must be in 1..4096, got {self.hist_bins}")
        if not 1 <= self.sample_size <= 1 << 20:
            raise ValueError(f"TelemetryConfig.sample_size must be in 1..{1 << 20}, got {self.sample_size}")


#: keys that :meth:`Run.update` may change while a run is going (prefix match for ``scheme.``/``telemetry.``)
LIVE_KEYS = ("optim.lr", "optim.momentum", "optim.weight_decay", "optim.grad_clip", "optim.schedule",
             "optim.milestones", "optim.gamma", "optim.warmup_steps", "scheme", "scheme.", "telemetry.",
             "epochs", "max_steps", "diverge_loss", "checkpoint_every")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run (JSON-able via :meth:`to_dict`).

    Attributes:
        data, model, scheme, optim, telemetry: the sub-configs.
        epochs, batch_size, eval_batch_size, seed, device, name: the usual.
        max_steps: stop after this many steps (None = epochs decide).
        diverge_loss: a loss above it (or non-finite) ends the run with status ``diverged``.
        checkpoint: write checkpoints; ``checkpoint_every``: every N epochs (0 = only at the end).
        threads: ``torch.set_num_threads`` in the worker (None = leave as is).
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    scheme: Scheme = field(default_factory=FP32Scheme)
    optim: OptimConfig = field(default_factory=OptimConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    epochs: int = 5
    batch_size: int = 64
    eval_batch_size: int = 1000
    seed: int = 0
    device: str = "cpu"
    name: str = ""
    max_steps: int | None = None
    diverge_loss: float = 100.0
    checkpoint: bool = True
    checkpoint_every: int = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        for k, cls in (("data", DataConfig), ("model", ModelConfig), ("optim", OptimConfig),
                       ("telemetry", TelemetryConfig)):
            v = getattr(self, k)
            if isinstance(v, Mapping):
                object.__setattr__(self, k, _build(cls, v, k))
            elif not isinstance(v, cls):
                raise TypeError(f"RunConfig.{k} must be a {cls.__name__}, got {type(v).__name__}")
        if isinstance(self.scheme, str):
            object.__setattr__(self, "scheme", get_scheme(self.scheme))
        elif isinstance(self.scheme, Mapping):
            object.__setattr__(self, "scheme", Scheme.from_dict(dict(self.scheme)))
        elif not isinstance(self.scheme, Scheme):
            raise TypeError(f"RunConfig.scheme must be a Scheme, got {type(self.scheme).__name__}")
        if self.epochs < 1:
            raise ValueError(f"RunConfig.epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("RunConfig.batch_size and eval_batch_size must be >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("RunConfig.max_steps must be >= 1 or None")
        if not self.diverge_loss > 0:  # +inf allowed: never diverge
            raise ValueError("RunConfig.diverge_loss must be > 0")
        if self.checkpoint_every < 0:
            raise ValueError("RunConfig.checkpoint_every must be >= 0")
        if self.threads is not None and not 1 <= self.threads <= MAX_THREADS:
            raise ValueError(f"RunConfig.threads must be in 1..{MAX_THREADS} or None, got {self.threads}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"RunConfig.device must be 'cpu' or 'cuda[:N]', got {self.device!r}")
        if not _CHANGING.get():
            self.check_across_fields()

    def check_across_fields(self) -> None:
        """Checks that span several fields (run once :meth:`with_changes` has applied all its keys).

        A training subset smaller than one batch is refused: the run would take one short batch per
        epoch. (A subset larger than the dataset is fine: the whole training split is used.)
        """
        n = self.data.train_subset
        if n is not None:
            self.check_training_set_size(n, "data.train_subset", "raise data.train_subset")

    def check_training_set_size(self, n: int, source: str, remedy: str) -> None:
        """Refuse a training set of ``n`` examples smaller than one batch (``source`` says where ``n`` comes
        from, ``remedy`` what else would fix it besides a smaller batch): the run would take one short batch
        per epoch. Checked on the config for ``data.train_subset`` and again when the data is loaded."""
        if n < self.batch_size:
            raise ValueError(f"the training set has {n} example{'' if n == 1 else 's'} ({source}), "
                             f"fewer than one batch (batch_size {self.batch_size}): lower batch_size or "
                             f"{remedy}")

    # ---- dict / TOML
    def to_dict(self) -> dict[str, Any]:
        """Nested JSON-able dict (tuples become lists)."""
        d: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Scheme):
                d[f.name] = v.to_dict()
            elif dataclasses.is_dataclass(v) and not isinstance(v, type):
                d[f.name] = {k: (list(x) if isinstance(x, tuple) else x) for k, x in dataclasses.asdict(v).items()}
            else:
                d[f.name] = v
        return d

    @classmethod
    def from_stored(cls, d: Mapping[str, Any]) -> "RunConfig":
        """The config a stored run was made with (:meth:`from_dict` without the checks that span several
        fields: those are for new runs, and a run stored before such a check was added must still load)."""
        with across_field_checks_deferred():
            return cls.from_dict(d)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunConfig":
        """Build from :meth:`to_dict`'s form (sub-dicts may be partial; unknown keys are errors)."""
        return _build(cls, d, "config")

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> "RunConfig":
        """Read a TOML file with tables ``[data]``, ``[model]``, ``[scheme]`` (with ``name``), ``[optim]``,
        ``[telemetry]`` and top-level run keys."""
        p = Path(path)
        try:
            with p.open("rb") as f:
                d = tomllib.load(f)
        except FileNotFoundError as exc:
            raise ValueError(f"config file {p} does not exist") from exc
        except IsADirectoryError:
            raise ValueError(f"config file {p} is a folder, not a TOML file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read config file {p}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"config file {p} is not valid TOML: {exc}") from exc
        return cls.from_dict(d)

    # ---- changes
    def with_changes(self, changes: Mapping[str, Any], live: bool = False) -> "RunConfig":
        """A validated copy with dotted-key ``changes`` (``"optim.lr"``, ``"scheme.mx"``, shorthands).

        Args:
            changes: dotted keys relative to RunConfig; ``lr`` means ``optim.lr``; a bare key that is a
                field of the current scheme means ``scheme.<key>``; ``scheme`` takes a Scheme, a dict
                with ``name`` or a scheme name. String values are coerced to the field's type.
            live: only allow :data:`LIVE_KEYS` (what can change while a run is going).

        Raises:
            ValueError: unknown key, a key not changeable live, or a value out of its domain. Checks
                that span fields (a training subset smaller than one batch) see all ``changes`` at once,
                whatever their order.
        """
        outer = _CHANGING.get()  # inside a caller's across_field_checks_deferred(): the caller checks
        with across_field_checks_deferred():
            cfg = self._apply_changes(changes, live)
        if not outer:
            cfg.check_across_fields()
        return cfg

    def _apply_changes(self, changes: Mapping[str, Any], live: bool) -> "RunConfig":
        cfg = self
        for key, value in self.normalise_keys(changes).items():
            if live and not any(key == k or (k.endswith(".") and key.startswith(k)) for k in LIVE_KEYS):
                raise ValueError(f"{key!r} cannot change while a run is going; live keys: {', '.join(LIVE_KEYS)}")
            if live and key.startswith("scheme.") and key[7:] in type(cfg.scheme).static_fields:
                raise ValueError(f"{key!r} shapes the {cfg.scheme.name} model and cannot change while a run "
                                 f"is going; start a new run")
            new = cfg._set(key, value)
            if live and type(new.scheme) is not type(cfg.scheme) and (
                    type(new.scheme).rebuilds_model or type(cfg.scheme).rebuilds_model):
                raise ValueError(f"cannot switch a running run from {cfg.scheme.name!r} to {new.scheme.name!r}: "
                                 f"one of them rebuilds the model; start a new run")
            cfg = new
        return cfg

    def normalise_keys(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Expand shorthands: ``lr`` -> ``optim.lr``; a scheme field -> ``scheme.<field>``."""
        scheme_fields = {f.name for f in dataclasses.fields(self.scheme)}
        top = {f.name for f in dataclasses.fields(self)}
        out: dict[str, Any] = {}
        for key, value in changes.items():
            if "." not in key:
                if key == "lr":
                    key = "optim.lr"
                elif key not in top and key in scheme_fields:
                    key = f"scheme.{key}"
            out[key] = value
        return out

    def _set(self, key: str, value: Any) -> "RunConfig":
        head, _, rest = key.partition(".")
        hints = typing.get_type_hints(RunConfig)
        if head not in hints:
            raise ValueError(f"unknown config key {key!r}")
        if not rest:
            if head == "scheme":
                if isinstance(value, str):
                    value = get_scheme(value)
                elif isinstance(value, Mapping):
                    value = Scheme.from_dict(dict(value))
            elif isinstance(value, Mapping) and head in ("data", "model", "optim", "telemetry"):
                sub = getattr(self, head)
                for k, v in value.items():
                    sub = _replace(sub, k, v, f"{head}.{k}")
                value = sub
            else:
                value = coerce_value(value, hints[head], key)
            return dataclasses.replace(self, **{head: value})
        sub = getattr(self, head)
        if not dataclasses.is_dataclass(sub) or "." in rest:
            raise ValueError(f"unknown config key {key!r}")
        return dataclasses.replace(self, **{head: _replace(sub, rest, value, key)})


def _replace(obj: Any, name: str, value: Any, key: str) -> Any:
    hints = typing.get_type_hints(type(obj))
    if name not in {f.name for f in dataclasses.fields(obj)}:
        raise ValueError(f"unknown config key {key!r}")
    return dataclasses.replace(obj, **{name: coerce_value(value, hints[name], key)})


def _build(cls: type, d: Mapping[str, Any], where: str) -> Any:
    if not isinstance(d, Mapping):
        raise ValueError(f"{where} must be a table/dict, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    bad = sorted(set(d) - names)
    if bad:
        raise ValueError(f"unknown key(s) in {where}: {', '.join(bad)}; valid: {', '.join(sorted(names))}")
    kw: dict[str, Any] = {}
    for k, v in d.items():
        if k == "scheme" and cls is RunConfig:
            kw[k] = Scheme.from_dict(dict(v)) if isinstance(v, Mapping) else v
        elif isinstance(v, Mapping) and cls is RunConfig:
            kw[k] = v  # sub-config: built in __post_init__
        else:
            kw[k] = coerce_value(v, hints[k], f"{where}.{k}")
    return cls(**kw)


def coerce_value(value: Any, hint: Any, key: str = "value") -> Any:
    """Coerce ``value`` (often a CLI/TOML string or list) to the type ``hint``.

    Handles ``int``, ``float``, ``bool``, ``str``, ``X | None`` and ``tuple[X, ...]``.

    Raises:
        ValueError: the value cannot be read as that type.
    """
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
            if type(None) in args:
                return None
        if len(non_none) == 1:
            return coerce_value(value, non_none[0], key)
        return value
    if origin is tuple:
        elem = args[0] if args else str
        if isinstance(value, str):
            value = [v for v in (s.strip() for s in value.split(",")) if v]
        if not isinstance(value, (list, tuple)):
            value = [value]
        return tuple(coerce_value(v, elem, key) for v in value)
    try:
        if hint is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if hint is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if hint is float:
            return float(value)
        if hint is str:
            if not isinstance(value, str):
                raise ValueError(value)
            return value
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{key}: cannot read {value!r} as {getattr(hint, '__name__', hint)}") from exc
    return value


def lr_factor(step: int, total_steps: int, steps_per_epoch: int, optim: OptimConfig) -> float:
    """Multiplier of the base learning rate at ``step`` (warm-up, then the schedule)."""
    f = 1.0
    if optim.schedule == "cosine":
        f = 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(1, total_steps)))
    elif optim.schedule == "step":
        epoch = step // max(1, steps_per_epoch)
        f = optim.gamma ** sum(1 for m in optim.milestones if epoch >= m)
    if optim.warmup_steps and step < optim.warmup_steps:
        f *= (step + 1) / optim.warmup_steps
    return f
