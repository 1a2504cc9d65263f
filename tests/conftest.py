"""Shared pytest configuration."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/naive.py oracles

# The CUDA-twin tests need NUMBA_ENABLE_CUDASIM=1 before numba is imported; the
# main run starts them in their own process (tests/test_kernels_cuda.py).
collect_ignore = [] if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" else ["cudasim"]
