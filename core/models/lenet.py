"""LeNet-5 (LeCun et al. 1998), the NITI paper's MNIST model (section 4.3).

conv5x5(6) -> ReLU -> maxpool2 -> conv5x5(16) -> ReLU -> maxpool2 -> FC120 -> FC84 -> FC(classes).
The first convolution pads by 2 (28x28 in, 28x28 out, as the 32x32 original); for inputs smaller than
16x16 (the 8x8 digits) the second convolution also pads by 2 so the feature map does not vanish.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import ModelConfig, ModelError, ch, need_image, register_model

__all__ = ["LeNet5"]


class LeNet5(nn.Module):
    """LeNet-5 with ReLU and max pooling."""

    def __init__(self, in_ch: int, hw: tuple[int, int], num_classes: int, width: float = 1.0,
                 batchnorm: bool = False) -> None:
        super().__init__()
        c1, c2 = ch(6, width), ch(16, width)
        small = min(hw) < 16
        self.features = nn.Sequential(
            nn.Conv2d(in_ch, c1, 5, padding=2),
            *( [nn.BatchNorm2d(c1)] if batchnorm else [] ),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=2 if small else 0),
            *( [nn.BatchNorm2d(c2)] if batchnorm else [] ),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        with torch.no_grad():
            n = self.features(torch.zeros(1, in_ch, *hw)).numel()
        if n == 0:
            raise ModelError(f"lenet5: input {hw} is too small")
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(n, ch(120, width)), nn.ReLU(),
            nn.Linear(ch(120, width), ch(84, width)), nn.ReLU(), nn.Linear(ch(84, width), num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model("lenet5")
def build_lenet5(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """LeNet-5 for ``(C, H, W)`` inputs with ``H, W >= 8``."""
    c, h, w = need_image("lenet5", input_shape)
    if min(h, w) < 8:
        raise ModelError(f"lenet5 needs images of at least 8x8, got {h}x{w}")
    return LeNet5(c, (h, w), num_classes, cfg.width, bool(cfg.batchnorm))
