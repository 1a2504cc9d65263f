"""Numba kernels: leaves of the package (arrays in, arrays out; no torch, no specs)."""

from .config import CHUNK, JIT_OPTIONS, THREADS_PER_BLOCK

__all__ = ["CHUNK", "JIT_OPTIONS", "THREADS_PER_BLOCK"]
