"""CIFAR-10 from the ``cifar-10-batches-py`` pickles (or the published archive).

The archive is SHA-256 checked before it is extracted (with tarfile's ``data`` filter). Batch files are
read with a restricted unpickler that can only rebuild NumPy arrays and plain containers, and are
checked structurally: ``b"data"`` is ``(N, 3072)`` uint8 and ``b"labels"`` has N values in 0..9.
"""

from __future__ import annotations

import logging
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .base import DataBundle, DataConfig, DatasetError, normalised, register_dataset
from .catalogue import cache_dir, catalogue, check_sha256, fetch

__all__ = ["load_cifar10", "read_cifar_batch", "find_cifar_dir"]

log = logging.getLogger(__name__)

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),
    ("copy_reg", "_reconstructor"),
    ("copyreg", "_reconstructor"),
    ("__builtin__", "object"),
    ("builtins", "object"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file")


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 batch pickle into ``(N, 3, 32, 32)`` uint8 images and int64 labels."""
    try:
        with path.open("rb") as f:
            d = _SafeUnpickler(f, encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as exc:
        raise DatasetError(f"{path} is not a CIFAR-10 batch file: {exc}") from exc
    if not isinstance(d, dict):
        raise DatasetError(f"{path} is not a CIFAR-10 batch file (not a dict)")
    data = d.get(b"data", d.get("data"))
    labels = d.get(b"labels", d.get("labels"))
    if data is None or labels is None:
        raise DatasetError(f"{path} is not a CIFAR-10 batch file (no 'data'/'labels' keys)")
    data = np.asarray(data)
    labels = np.asarray(labels, dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DatasetError(f"{path}: 'data' must be (N, 3072) uint8, got {data.shape} {data.dtype}")
    if labels.shape != (data.shape[0],) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise DatasetError(f"{path}: 'labels' must be {data.shape[0]} values in 0..9")
    return data.reshape(-1, 3, 32, 32), labels


def find_cifar_dir(folder: Path, dirname: str) -> Path | None:
    """``folder`` itself when it holds the batches, else ``folder/<dirname>``."""
    for d in (folder, folder / dirname):
        if (d / "test_batch").is_file():
            return d
    return None


@register_dataset("cifar10")
def load_cifar10(cfg: DataConfig) -> DataBundle:
    """CIFAR-10 as ``(3, 32, 32)`` images; kept as uint8 and normalised per batch."""
    entry = catalogue().get("cifar10", {})
    dirname = entry.get("directory", "cifar-10-batches-py")
    archive = entry.get("archive", "cifar-10-python.tar.gz")
    batches = list(entry.get("batches", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]))
    folder = Path(cfg.root).expanduser() if cfg.root else cache_dir("cifar10")
    d = find_cifar_dir(folder, dirname)
    if d is None:
        arc = folder / archive
        if not arc.is_file() and cfg.download:
            arc = fetch("cifar10", archive, folder, entry.get("archive_sha256"), list(entry.get("mirrors", [])))
        if not arc.is_file():
            raise DatasetError(
                f"dataset 'cifar10': neither {folder / dirname} nor {arc} exists. Put the extracted "
                f"'{dirname}' folder (or {archive}) into {folder}, point DataConfig.root / --data-root "
                "at it, or pass download=True / --download when online."
            )
        if cfg.verify and entry.get("archive_sha256"):
            check_sha256(arc, entry["archive_sha256"])
        log.info("extracting %s", arc)
        try:
            with tarfile.open(arc) as tf:
                tf.extractall(folder, filter="data")
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:  # EOFError: a cut gzip stream
            raise DatasetError(f"cannot extract {arc}: {exc}") from exc
        d = find_cifar_dir(folder, dirname)
        if d is None:
            raise DatasetError(f"{arc} did not contain {dirname}/test_batch")
    missing = [b for b in batches if not (d / b).is_file()]
    if missing:
        raise DatasetError(f"dataset 'cifar10': missing {', '.join(missing)} in {d}")
    parts = [read_cifar_batch(d / b) for b in batches if b != "test_batch"]
    x = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    y = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    xt_np, yt_np = read_cifar_batch(d / "test_batch")
    xt, yt = torch.from_numpy(xt_np), torch.from_numpy(yt_np)
    return normalised(x, y, xt, yt, cfg, "cifar10", 10, keep_raw=True)
