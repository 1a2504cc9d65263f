"""MNIST from IDX files (``.gz`` or raw; torchvision's ``MNIST/raw`` layout accepted).

``mnist`` is the usual 60,000/10,000 split; ``mnist-t10k`` uses only the 10,000 test images and
splits them into train/test (``DataConfig.test_fraction``, ``split_seed``), so the real digits can be
used with just the two t10k files.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from pathlib import Path

import numpy as np
import torch

from .base import DataBundle, DataConfig, DatasetError, normalised, register_dataset, split_fixed
from .catalogue import cache_dir, catalogue, check_sha256, fetch

__all__ = ["read_idx", "load_mnist", "load_mnist_t10k", "find_mnist_file"]

log = logging.getLogger(__name__)

_IDX_TYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (gzip or raw) into an array; unreadable or corrupt files (a bad gzip header or
    CRC, a cut or corrupt deflate stream) and structural errors raise :class:`DatasetError`."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError; a cut stream an EOFError
        raise DatasetError(f"cannot read IDX file {path}: {exc}") from exc
    except zlib.error as exc:  # corrupt deflate data inside a well-formed gzip member
        raise DatasetError(f"cannot read IDX file {path}: corrupt gzip data ({exc})") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise DatasetError(f"{path} is not an IDX file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path} is truncated (header)")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_IDX_TYPES[data[2]])
    need = int(np.prod(dims)) * dtype.itemsize
    if len(data) - header != need:
        raise DatasetError(f"{path} is truncated or padded: {len(data) - header} data bytes, expected {need}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)


def find_mnist_file(folder: Path, name: str) -> Path | None:
    """Find ``name`` (``.gz`` or raw) in ``folder``, ``folder/raw`` or ``folder/MNIST/raw``."""
    stem = name[:-3] if name.endswith(".gz") else name
    for d in (folder, folder / "raw", folder / "MNIST" / "raw"):
        for candidate in (d / (stem + ".gz"), d / stem):
            if candidate.is_file():
                return candidate
    return None


def _load_pair(cfg: DataConfig, prefix: str, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    entry = catalogue().get("mnist", {})
    sums: dict[str, str] = entry.get("files", {})
    folder = Path(cfg.root).expanduser() if cfg.root else cache_dir("mnist")
    names = [f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"]
    paths: list[Path] = []
    for name in names:
        p = find_mnist_file(folder, name)
        if p is None and cfg.download:
            p = fetch(dataset, name, folder, sums.get(name), list(entry.get("mirrors", [])))
        if p is None:
            raise DatasetError(
                f"dataset {dataset!r}: {name} (or its uncompressed form) not found in {folder}. "
                f"Put {', '.join(names)} there, point DataConfig.root / --data-root at their folder, "
                "or pass download=True / --download when online."
            )
        if p.suffix == ".gz" and cfg.verify and name in sums:
            check_sha256(p, sums[name])
        elif p.suffix != ".gz":
            log.info("%s is uncompressed: no published SHA-256, checking its structure only", p)
        paths.append(p)
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DatasetError(
            f"dataset {dataset!r}: {paths[0].name} {images.shape} and {paths[1].name} {labels.shape} do not match"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DatasetError(f"dataset {dataset!r}: labels outside 0..9 in {paths[1]}")
    return images, labels


def _tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


@register_dataset("mnist")
def load_mnist(cfg: DataConfig) -> DataBundle:
    """The 60,000/10,000 MNIST split as ``(1, 28, 28)`` images."""
    x, y = _tensors(*_load_pair(cfg, "train", "mnist"))
    xt, yt = _tensors(*_load_pair(cfg, "t10k", "mnist"))
    return normalised(x, y, xt, yt, cfg, "mnist", 10)


@register_dataset("mnist-t10k")
def load_mnist_t10k(cfg: DataConfig) -> DataBundle:
    """The 10,000 MNIST test images split into train/test (``test_fraction``, ``split_seed``)."""
    x, y = _tensors(*_load_pair(cfg, "t10k", "mnist-t10k"))
    xtr, ytr, xte, yte = split_fixed(x, y, cfg.test_fraction, cfg.split_seed)
    return normalised(xtr, ytr, xte, yte, cfg, "mnist-t10k", 10)
