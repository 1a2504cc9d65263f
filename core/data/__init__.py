"""Dataset loaders for the training engine: digits, MNIST-1D, MNIST (IDX), CIFAR-10.

``load_dataset(DataConfig(name=...))`` returns a :class:`DataBundle` with in-memory train/test splits.
The catalogue (sources, SHA-256) is ``datasets/catalogue.toml`` (shipped in the package as
``core/data/catalogue.toml``); downloads go to ``$LOWBIT_DATA``, ``datasets/cache/`` in a checkout, or the
user cache directory.
"""

from __future__ import annotations

from . import cifar, digits, mnist, mnist1d  # noqa: F401  (register the loaders)
from .base import DATASETS, DataBundle, DataConfig, DatasetError, TensorSplit, list_datasets, register_dataset
from .catalogue import cache_dir, catalogue, sha256_file

__all__ = [
    "DataConfig",
    "DataBundle",
    "TensorSplit",
    "DatasetError",
    "DATASETS",
    "load_dataset",
    "list_datasets",
    "register_dataset",
    "cache_dir",
    "catalogue",
    "sha256_file",
]


def load_dataset(cfg: DataConfig | str) -> DataBundle:
    """Load a registered dataset.

    Args:
        cfg: a :class:`DataConfig` or just the dataset name.

    Raises:
        DatasetError: unknown name, missing/corrupt files (the message says which and where).
    """
    if isinstance(cfg, str):
        cfg = DataConfig(name=cfg)
    if cfg.name not in DATASETS:
        raise DatasetError(f"unknown dataset {cfg.name!r}; known: {', '.join(list_datasets())}")
    return DATASETS[cfg.name](cfg)
