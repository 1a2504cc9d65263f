"""scikit-learn's handwritten digits (1,797 real 8x8 images): the embedded default dataset."""

from __future__ import annotations

import torch

from .base import DataBundle, DataConfig, normalised, register_dataset, split_fixed

__all__ = ["load_digits"]


@register_dataset("digits")
def load_digits(cfg: DataConfig) -> DataBundle:
    """Load the digits as ``(1, 8, 8)`` images, split ``test_fraction`` for test with ``split_seed``."""
    from sklearn.datasets import load_digits as _sk_load

    d = _sk_load()
    x = torch.from_numpy(d.images.astype("float32")).unsqueeze(1) / 16.0
    y = torch.from_numpy(d.target.astype("int64"))
    xtr, ytr, xte, yte = split_fixed(x, y, cfg.test_fraction, cfg.split_seed)
    return normalised(xtr, ytr, xte, yte, cfg, "digits", 10, source="sklearn.datasets.load_digits")
