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
    """Tests that do not name a store never write into the user's own one (``$LOWBIT_STORE`` is set to a
    store in a temporary folder for the whole session, and restored afterwards)."""
    old = os.environ.get("LOWBIT_STORE")
    os.environ["LOWBIT_STORE"] = str(tmp_path_factory.mktemp("default-store") / "runs.sqlite")
    yield
    if old is None:
        os.environ.pop("LOWBIT_STORE", None)
    else:
        os.environ["LOWBIT_STORE"] = old
