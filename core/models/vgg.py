"""VGG-small-7/8/9 from the NITI paper (Table 5; docs/papers.md#niti-vgg-small).

The table's text is garbled in the paper; it is read as three stages of 3x3 convolutions, each stage
ending in a 2x2 max-pool, then dropout and one fully connected layer:

- VGG-small-7: 128, 128 | 256, 256 | 512, 512 | FC   (6 conv + 1 FC)
- VGG-small-8: 128, 128, 128 | 256, 256 | 512, 512 | FC
- VGG-small-9: 128, 128, 128 | 256, 256, 256 | 512, 512 | FC

NITI trains without batch norm (integer-only), so ``batchnorm`` defaults to off; turn it on for
float baselines with ``ModelConfig(batchnorm=True)``.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import ModelConfig, ch, need_image, register_model

__all__ = ["VGGSmall", "VGG_SMALL"]

#: convolutions per stage
VGG_SMALL: dict[int, tuple[tuple[int, ...], ...]] = {
    7: ((128, 128), (256, 256), (512, 512)),
    8: ((128, 128, 128), (256, 256), (512, 512)),
    9: ((128, 128, 128), (256, 256, 256), (512, 512)),
}


class VGGSmall(nn.Module):
    """conv3x3 stages with max-pooling, then dropout and a linear classifier."""

    def __init__(self, depth: int, in_ch: int, hw: tuple[int, int], num_classes: int, width: float,
                 bn: bool, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_ch
        for stage in VGG_SMALL[depth]:
            for c in stage:
                cout = ch(c, width)
                layers.append(nn.Conv2d(cin, cout, 3, padding=1, bias=not bn))
                if bn:
                    layers.append(nn.BatchNorm2d(cout))
                layers.append(nn.ReLU())
                cin = cout
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        self.features = nn.Sequential(*layers)
        with torch.no_grad():
            n = self.features(torch.zeros(1, in_ch, *hw)).numel()
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(n, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _vgg(depth: int):  # type: ignore[no-untyped-def]
    def build(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        c, h, w = need_image(f"vgg{depth}", input_shape)
        return VGGSmall(depth, c, (h, w), num_classes, cfg.width, bool(cfg.batchnorm), cfg.dropout)

    build.__doc__ = f"VGG-small-{depth} (NITI Table 5)."
    return build


for _d in (7, 8, 9):
    register_model(f"vgg{_d}")(_vgg(_d))
