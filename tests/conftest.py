"""Shared pytest configuration."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/naive.py oracles

# The CUDA-twin tests need NUMBA_ENABLE_CUDASIM=1 before numba is imported; the
# main run starts them in their own process (tests/test_kernels_cuda.py).
collect_ignore = [] if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" else ["cudasim"]


import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _default_store_in_a_temporary_folder(tmp_path_factory: pytest.TempPathFactory):
    """Tests never write into the user's own store or checkpoints folder (``$LOWBIT_STORE`` and
    ``$LOWBIT_CHECKPOINTS`` point into a temporary folder for the whole session, restored afterwards)."""
    names = ("LOWBIT_STORE", "LOWBIT_CHECKPOINTS")
    old = {k: os.environ.get(k) for k in names}
    os.environ["LOWBIT_STORE"] = str(tmp_path_factory.mktemp("default-store") / "runs.sqlite")
    os.environ["LOWBIT_CHECKPOINTS"] = str(tmp_path_factory.mktemp("checkpoints"))
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
