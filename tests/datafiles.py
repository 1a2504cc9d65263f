"""Where the tests find the real MNIST test set (the shared, read-only copy beside the checkout).

Looked up in order: ``$LOWBIT_MNIST_T10K``; ``../shared/datasets/mnist-t10k`` next to the repository;
``/work/shared/datasets/mnist-t10k`` (where the project's machines keep it, so a clone elsewhere,
e.g. CI's clean clone, still finds it). Tests that need it skip with a message when none exists.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["T10K"]

_ROOT = Path(__file__).resolve().parents[1]
_CANDIDATES = [Path(p) for p in (os.environ.get("LOWBIT_MNIST_T10K"),) if p] + [
    _ROOT.parent / "shared" / "datasets" / "mnist-t10k",
    Path("/work/shared/datasets/mnist-t10k"),
]


def _find() -> Path:
    for c in _CANDIDATES:
        if (c / "t10k-images-idx3-ubyte.gz").is_file() or (c / "t10k-images-idx3-ubyte").is_file():
            return c
    return _CANDIDATES[0]


#: folder with the t10k IDX files (the first candidate when none has them)
T10K: Path = _find()
