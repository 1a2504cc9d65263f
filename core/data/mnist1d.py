"""MNIST-1D generated offline with ``mnist1d.data.make_dataset`` (seeded), cached as ``.npz``."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from .base import DataBundle, DataConfig, DatasetError, normalised, register_dataset
from .catalogue import cache_dir

__all__ = ["load_mnist1d"]

log = logging.getLogger(__name__)


def _generate(seed: int) -> dict[str, np.ndarray]:
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:  # pragma: no cover - dependency missing
        raise DatasetError("dataset 'mnist1d' needs the mnist1d package: pip install mnist1d") from exc
    args = get_dataset_args()
    args.seed = seed
    d = make_dataset(args)
    return {k: np.asarray(d[k]) for k in ("x", "y", "x_test", "y_test")}


@register_dataset("mnist1d")
def load_mnist1d(cfg: DataConfig) -> DataBundle:
    """Generate (or read from the cache) MNIST-1D with the package's default args; seed = 42 + split_seed.

    Inputs have shape ``(40,)``; 4,000 train and 1,000 test examples.
    """
    seed = 42 + cfg.split_seed
    folder = Path(cfg.root) if cfg.root else cache_dir("mnist1d")
    path = folder / f"mnist1d-seed{seed}.npz"
    d: dict[str, np.ndarray] | None = None
    if path.is_file():
        try:
            with np.load(path) as z:
                d = {k: z[k] for k in ("x", "y", "x_test", "y_test")}
        except Exception as exc:  # noqa: BLE001 - a corrupt cache is regenerated
            log.warning("ignoring unreadable MNIST-1D cache %s (%s)", path, exc)
    if d is None:
        d = _generate(seed)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            # numpy's stub types **kwds as if a key could be its bool allow_pickle keyword
            np.savez(tmp, **d)  # type: ignore[arg-type]
            tmp.replace(path)
        except OSError as exc:
            log.warning("could not cache MNIST-1D in %s (%s)", folder, exc)
    x = torch.from_numpy(d["x"].astype("float32"))
    xt = torch.from_numpy(d["x_test"].astype("float32"))
    y = torch.from_numpy(d["y"].astype("int64"))
    yt = torch.from_numpy(d["y_test"].astype("int64"))
    return normalised(x, y, xt, yt, cfg, "mnist1d", 10, source="mnist1d.data.make_dataset", seed=seed)
