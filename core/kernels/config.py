"""One place for kernel compilation flags and launch sizes.

Bit-exact kernels never use fastmath; divisions follow IEEE (no Python zero-division checks).
``CHUNK`` is the number of elements a CPU task handles; ``THREADS_PER_BLOCK`` is patchable so
simulator tests stay small.
"""

from __future__ import annotations

__all__ = ["JIT_OPTIONS", "CHUNK", "SERIAL_BELOW", "THREADS_PER_BLOCK"]

#: ``error_model="numpy"``: a float division never raises (kernels guard their divisors), so
#: Numba inserts no zero-divisor branch into loops, which would stop them vectorizing
JIT_OPTIONS: dict = {"fastmath": False, "cache": True, "nogil": True, "error_model": "numpy"}
CHUNK: int = 16384
#: inputs with fewer elements run on the calling thread (a parallel region costs ~20-30 us here)
SERIAL_BELOW: int = 1 << 16
THREADS_PER_BLOCK: int = 256
