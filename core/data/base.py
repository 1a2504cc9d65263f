"""Dataset containers, the dataset registry and the dataset config.

Owns: :class:`DataConfig` (frozen, validated), :class:`TensorSplit` and :class:`DataBundle`
(in-memory splits with per-batch normalisation and optional CIFAR augmentation),
:class:`DatasetError`, and the decorator registry that maps dataset names to loaders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

__all__ = [
    "DataConfig",
    "DatasetError",
    "TensorSplit",
    "DataBundle",
    "register_dataset",
    "DATASETS",
    "list_datasets",
]


class DatasetError(ValueError):
    """A dataset cannot be loaded: unknown name, missing or corrupt files, bad options."""


@dataclass(frozen=True)
class DataConfig:
    """Which dataset a run trains on and how it is split.

    Attributes:
        name: a registered dataset (``digits``, ``mnist1d``, ``mnist``, ``mnist-t10k``, ``cifar10``).
        root: directory holding the dataset files; None uses the catalogue cache.
        train_subset: keep only the first N training examples after a seeded shuffle.
        test_subset: same for the test split.
        split_seed: seed of the train/test split and of the subset selection (not the run seed, so runs
            with different seeds see the same data).
        test_fraction: share of examples held out for test where the dataset has no fixed split
            (``digits``, ``mnist-t10k``).
        augment: CIFAR-style random crop (pad 4) and horizontal flip on training batches.
        verify: check SHA-256 of files that have a published checksum.
        download: fetch missing files (needs a network).
    """

    name: str = "digits"
    root: str | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    split_seed: int = 0
    test_fraction: float = 0.2
    augment: bool = False
    verify: bool = True
    download: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("DataConfig.name must be a non-empty string")
        for f in ("train_subset", "test_subset"):
            v = getattr(self, f)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ValueError(f"DataConfig.{f} must be a positive integer or None, got {v!r}")
        if not (0.0 < float(self.test_fraction) < 1.0):
            raise ValueError(f"DataConfig.test_fraction must be in (0, 1), got {self.test_fraction!r}")


@dataclass
class TensorSplit:
    """One split held in memory.

    Attributes:
        x: inputs, ``(N, *input_shape)``; float32 already normalised, or uint8 normalised per batch.
        y: int64 labels ``(N,)``.
        mean, std: per-channel normalisation applied in :meth:`batch` when ``x`` is not float.
    """

    x: torch.Tensor
    y: torch.Tensor
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    augment: bool = False

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def batch(self, idx: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return normalised float32 inputs and labels for the indices ``idx``."""
        x = self.x[idx]
        if not x.is_floating_point():
            x = x.float()
        if self.mean is not None and self.std is not None:
            shape = (1, -1) + (1,) * (x.dim() - 2)
            x = (x - self.mean.view(shape)) / self.std.view(shape)
        if self.augment and generator is not None and x.dim() == 4:
            x = _crop_flip(x, generator)
        return x, self.y[idx]

    def subset(self, n: int | None, seed: int) -> "TensorSplit":
        """The first ``n`` examples after a seeded permutation (self when ``n`` is None or too big)."""
        if n is None or n >= len(self):
            return self
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(self), generator=g)[:n]
        return TensorSplit(self.x[idx], self.y[idx], self.mean, self.std, self.augment)


def _crop_flip(x: torch.Tensor, g: torch.Generator, pad: int = 4) -> torch.Tensor:
    n, _, h, w = x.shape
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    flip = torch.rand(n, generator=g) < 0.5
    out = torch.empty_like(x)
    for i in range(n):
        img = xp[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w]
        out[i] = img.flip(-1) if flip[i] else img
    return out


@dataclass
class DataBundle:
    """A loaded dataset: train and test splits plus what models need to know."""

    name: str
    train: TensorSplit
    test: TensorSplit
    input_shape: tuple[int, ...]
    num_classes: int
    info: dict[str, object] = field(default_factory=dict)


Loader = Callable[[DataConfig], DataBundle]
#: dataset name -> loader
DATASETS: dict[str, Loader] = {}


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    """Decorator: register a loader ``fn(cfg: DataConfig) -> DataBundle`` under ``name``."""

    def deco(fn: Loader) -> Loader:
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} registered twice")
        DATASETS[name] = fn
        return fn

    return deco


def list_datasets() -> list[str]:
    """Names of the registered datasets."""
    return sorted(DATASETS)


def split_fixed(x: torch.Tensor, y: torch.Tensor, test_fraction: float, seed: int) -> tuple[torch.Tensor, ...]:
    """Seeded stratification-free split of one array pair into train and test."""
    n = int(y.shape[0])
    n_test = max(1, int(math.floor(n * test_fraction + 0.5)))
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    te, tr = perm[:n_test], perm[n_test:]
    return x[tr], y[tr], x[te], y[te]


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of ``(N, C, ...)`` data (one channel for 2-D data)."""
    xf = x.float()
    if xf.dim() == 2:
        xf = xf.unsqueeze(1)
    dims = [0] + list(range(2, xf.dim()))
    mean = xf.mean(dim=dims)
    std = xf.std(dim=dims).clamp_min(1e-6)
    return mean, std


def normalised(x: torch.Tensor, y: torch.Tensor, xt: torch.Tensor, yt: torch.Tensor, cfg: DataConfig,
               name: str, num_classes: int, keep_raw: bool = False, **info: object) -> DataBundle:
    """Build a bundle normalised with the train split's per-channel statistics, then subset it."""
    mean, std = channel_stats(x)
    if keep_raw:
        train = TensorSplit(x, y, mean, std, augment=cfg.augment)
        test = TensorSplit(xt, yt, mean, std)
    else:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        if x.dim() == 2:
            shape = (1, 1)
        train = TensorSplit(((x.float() - mean.view(shape)) / std.view(shape)).contiguous(), y.long())
        test = TensorSplit(((xt.float() - mean.view(shape)) / std.view(shape)).contiguous(), yt.long())
    train = train.subset(cfg.train_subset, cfg.split_seed)
    test = test.subset(cfg.test_subset, cfg.split_seed + 1)
    return DataBundle(name, train, test, tuple(x.shape[1:]), num_classes, dict(info))
