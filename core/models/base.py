"""Model config and registry.

Owns :class:`ModelConfig` (frozen, validated) and the decorator registry mapping model names to
builders ``fn(cfg, input_shape, num_classes) -> nn.Module``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

__all__ = ["ModelConfig", "ModelError", "MODELS", "register_model", "build_model", "list_models"]


class ModelError(ValueError):
    """Unknown model, or a model that cannot take the dataset's input shape."""


#: the widest MLP hidden layer and the largest channel multiplier a config may ask for (beyond them a
#: model would not fit in memory and should be refused when the config is made, not when it is built)
MAX_HIDDEN = 65_536
MAX_WIDTH = 64.0


@dataclass(frozen=True)
class ModelConfig:
    """Which network to train.

    Attributes:
        name: ``mlp``, ``lenet5``, ``resnet20``, ``vgg7``, ``vgg8``, ``vgg9`` or ``resnet18``.
        hidden: hidden-layer widths of the MLP.
        width: channel multiplier for the convolutional nets (e.g. 0.25 for quick tests).
        batchnorm: None = the model's default (ResNets: yes; VGG-small: no, as NITI; LeNet-5: no).
        dropout: dropout before the classifier (VGG-small and MLP).
        shortcut: the ResNets' shape-changing shortcuts: ``"B"`` 1x1 convolution + BN (default),
            ``"A"`` parameter-free zero-padded identity (the MLS paper's ResNet-20, Table 1).
    """

    name: str = "mlp"
    hidden: tuple[int, ...] = (128,)
    width: float = 1.0
    batchnorm: bool | None = None
    dropout: float = 0.0
    shortcut: str = "B"

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if any(h < 1 or h > MAX_HIDDEN for h in self.hidden):
            raise ValueError(f"ModelConfig.hidden must be widths in 1..{MAX_HIDDEN}, got {self.hidden}")
        if not (0 < self.width <= MAX_WIDTH):
            raise ValueError(f"ModelConfig.width must be in (0, {MAX_WIDTH}], got {self.width}")
        if not (0.0 <= self.dropout < 1.0):
            raise ValueError(f"ModelConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.shortcut not in ("A", "B"):
            raise ValueError(f"ModelConfig.shortcut must be 'A' or 'B', got {self.shortcut!r}")


Builder = Callable[[ModelConfig, tuple[int, ...], int], nn.Module]
#: model name -> builder
MODELS: dict[str, Builder] = {}


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator: register ``fn(cfg, input_shape, num_classes) -> nn.Module`` under ``name``."""

    def deco(fn: Builder) -> Builder:
        if name in MODELS:
            raise ValueError(f"model {name!r} registered twice")
        MODELS[name] = fn
        return fn

    return deco


def list_models() -> list[str]:
    """Names of the registered models."""
    return sorted(MODELS)


def build_model(cfg: ModelConfig | str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build a registered model for ``input_shape`` (without the batch dim) and ``num_classes``.

    Raises:
        ModelError: unknown name, or an input shape the model cannot take.
    """
    if isinstance(cfg, str):
        cfg = ModelConfig(name=cfg)
    if cfg.name not in MODELS:
        raise ModelError(f"unknown model {cfg.name!r}; known: {', '.join(list_models())}")
    return MODELS[cfg.name](cfg, tuple(int(s) for s in input_shape), int(num_classes))


def need_image(name: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Return ``(C, H, W)`` or raise :class:`ModelError` for non-image inputs."""
    if len(input_shape) != 3:
        raise ModelError(
            f"model {name!r} needs image inputs (C, H, W); this dataset has shape {input_shape} "
            "(use the mlp model)"
        )
    c, h, w = input_shape
    return c, h, w


def ch(c: int, width: float) -> int:
    """Scale a channel count by ``width`` (at least 1)."""
    return max(1, int(round(c * width)))
