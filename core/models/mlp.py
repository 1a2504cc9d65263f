"""Multi-layer perceptron (flattens any input)."""

from __future__ import annotations

import math

from torch import nn

from .base import ModelConfig, register_model

__all__ = ["build_mlp"]


@register_model("mlp")
def build_mlp(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """``Flatten -> [Linear -> ReLU (-> Dropout)] * len(hidden) -> Linear``."""
    layers: list[nn.Module] = [nn.Flatten()]
    n_in = int(math.prod(input_shape))
    for h in cfg.hidden:
        layers += [nn.Linear(n_in, h), nn.ReLU()]
        if cfg.dropout:
            layers.append(nn.Dropout(cfg.dropout))
        n_in = h
    layers.append(nn.Linear(n_in, num_classes))
    return nn.Sequential(*layers)
