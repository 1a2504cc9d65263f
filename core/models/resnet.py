"""ResNets: ResNet-20 for CIFAR (He et al. 2016, section 4.2: 3 stages of 3 basic blocks, 16/32/64
channels; the MLS paper's CIFAR model, Table 2) and ResNet-18 (4 stages of 2 basic blocks,
64..512 channels, with the CIFAR stem: one 3x3 convolution, no max-pool).

Shortcuts that change shape are, by ``ModelConfig.shortcut``:

* ``"B"`` (the default, so existing configs and checkpoints keep their layers): a 1x1 convolution with
  batch norm (He et al. 2016, section 3.3, option B);
* ``"A"``: parameter-free, the identity subsampled by the stride and zero-padded in channels (He et al.
  2016, sections 3.3 and 4.2, option A; the CIFAR ResNet-20 that the MLS paper counts in Table 1, 4.05E+07
  forward multiply-adds at batch 1, docs/papers.md#mls-table1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import ModelConfig, ch, need_image, register_model

__all__ = ["BasicBlock", "PadShortcut", "ResNet", "SHORTCUTS"]


def _norm(c: int, bn: bool) -> nn.Module:
    return nn.BatchNorm2d(c) if bn else nn.Identity()


class PadShortcut(nn.Module):
    """Option-A shortcut (He et al. 2016, section 3.3): ``x[:, :, ::stride, ::stride]`` zero-padded from
    ``cin`` to ``cout`` channels (half the extra channels before, half after); no parameters, no arithmetic."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        if cout < cin:
            raise ValueError(f"option-A shortcut cannot shrink channels ({cin} -> {cout})")
        self.cin, self.cout, self.stride = cin, cout, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        extra = self.cout - self.cin
        return F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2)) if extra else x


SHORTCUTS = ("A", "B")


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (shortcut option ``"A"`` or ``"B"``, module doc)."""

    def __init__(self, cin: int, cout: int, stride: int, bn: bool, shortcut: str = "B") -> None:
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise ValueError(f"unknown shortcut {shortcut!r}; valid: A, B")
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=not bn)
        self.bn1 = _norm(cout, bn)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=not bn)
        self.bn2 = _norm(cout, bn)
        self.shortcut: nn.Module = nn.Identity()
        if (stride != 1 or cin != cout) and shortcut == "A":
            self.shortcut = PadShortcut(cin, cout, stride)
        elif stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=not bn), _norm(cout, bn))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """Stem conv3x3 -> stages of basic blocks -> global average pool -> FC."""

    def __init__(self, in_ch: int, num_classes: int, stages: list[tuple[int, int, int]], stem: int,
                 bn: bool = True, shortcut: str = "B") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, stem, 3, 1, 1, bias=not bn)
        self.bn1 = _norm(stem, bn)
        blocks: list[nn.Module] = []
        cin = stem
        for cout, n, stride in stages:
            for i in range(n):
                blocks.append(BasicBlock(cin, cout, stride if i == 0 else 1, bn, shortcut))
                cin = cout
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layers(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


@register_model("resnet20")
def build_resnet20(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """ResNet-20 (0.27 M parameters at width 1; ``cfg.shortcut`` picks option A or B, module doc)."""
    c, _, _ = need_image("resnet20", input_shape)
    w = cfg.width
    stages = [(ch(16, w), 3, 1), (ch(32, w), 3, 2), (ch(64, w), 3, 2)]
    return ResNet(c, num_classes, stages, ch(16, w), cfg.batchnorm is not False, cfg.shortcut)


@register_model("resnet18")
def build_resnet18(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """ResNet-18 with the CIFAR stem (11 M parameters at width 1; ``cfg.shortcut`` as ResNet-20)."""
    c, _, _ = need_image("resnet18", input_shape)
    w = cfg.width
    stages = [(ch(64, w), 2, 1), (ch(128, w), 2, 2), (ch(256, w), 2, 2), (ch(512, w), 2, 2)]
    return ResNet(c, num_classes, stages, ch(64, w), cfg.batchnorm is not False, cfg.shortcut)
