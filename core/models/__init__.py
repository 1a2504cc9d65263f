"""Networks for the training engine: MLP, LeNet-5, ResNet-20, VGG-small-7/8/9, ResNet-18.

Input shape and class count come from the dataset: ``build_model(cfg, bundle.input_shape, bundle.num_classes)``.
"""

from __future__ import annotations

from . import lenet, mlp, resnet, vgg  # noqa: F401  (register the builders)
from .base import MODELS, ModelConfig, ModelError, build_model, list_models, register_model

__all__ = ["ModelConfig", "ModelError", "MODELS", "build_model", "list_models", "register_model"]
