"""Models: shapes, parameter counts, layer structure, input-shape errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.models import ModelConfig, ModelError, build_model, list_models


def _weight_layers(m: nn.Module) -> list[nn.Module]:
    return [x for x in m.modules() if isinstance(x, (nn.Linear, nn.Conv2d))]


@pytest.mark.parametrize("name", ["mlp", "lenet5", "resnet20", "vgg7", "resnet18"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_forward_shapes(name, shape):
    cfg = ModelConfig(name=name, width=0.25 if name in ("vgg7", "resnet18") else 1.0)
    m = build_model(cfg, shape, 7)
    assert m(torch.randn(2, *shape)).shape == (2, 7)


def test_registry_and_unknown():
    assert set(list_models()) == {"mlp", "lenet5", "resnet20", "vgg7", "vgg8", "vgg9", "resnet18"}
    with pytest.raises(ModelError, match="unknown model 'alexnet'"):
        build_model("alexnet", (1, 8, 8), 10)


def test_conv_models_reject_1d_inputs():
    assert build_model("mlp", (40,), 10)(torch.randn(3, 40)).shape == (3, 10)
    with pytest.raises(ModelError, match=r"needs image inputs .* \(40,\)"):
        build_model("lenet5", (40,), 10)


def test_resnet20_structure():
    m = build_model("resnet20", (3, 32, 32), 10)
    convs = [x for x in m.modules() if isinstance(x, nn.Conv2d) and x.kernel_size == (3, 3)]
    assert len(convs) == 19  # 1 stem + 18 in 9 blocks: with the FC, the "20" of ResNet-20
    assert 0.26e6 < sum(p.numel() for p in m.parameters()) < 0.28e6


@pytest.mark.parametrize("depth", [7, 8, 9])
def test_vgg_small_weight_layers(depth):
    m = build_model(f"vgg{depth}", (3, 32, 32), 10)
    layers = _weight_layers(m)
    assert len(layers) == depth
    assert isinstance(layers[-1], nn.Linear) and layers[-1].in_features == 512 * 4 * 4
    assert not any(isinstance(x, nn.BatchNorm2d) for x in m.modules())  # NITI: no batch norm


def test_lenet5_and_mlp_layers():
    m = build_model("lenet5", (1, 28, 28), 10)
    assert [type(x).__name__ for x in _weight_layers(m)] == ["Conv2d", "Conv2d", "Linear", "Linear", "Linear"]
    assert _weight_layers(m)[2].in_features == 16 * 5 * 5
    mlp = build_model(ModelConfig(name="mlp", hidden=(32, 16)), (1, 8, 8), 10)
    assert [x.out_features for x in _weight_layers(mlp)] == [32, 16, 10]


def test_model_config_validation():
    with pytest.raises(ValueError, match="width"):
        ModelConfig(width=0)
    with pytest.raises(ValueError, match="hidden"):
        ModelConfig(hidden=(0,))
