"""One place for kernel compilation flags and launch sizes (STYLE 7-8).

Bit-exact kernels never use fastmath.  ``CHUNK`` is the number of elements a
CPU task handles; ``THREADS_PER_BLOCK`` is patchable so simulator tests stay small.
"""

from __future__ import annotations

__all__ = ["JIT_OPTIONS", "CHUNK", "SERIAL_BELOW", "THREADS_PER_BLOCK"]

JIT_OPTIONS: dict = {"fastmath": False, "cache": True, "nogil": True}
CHUNK: int = 16384
#: inputs with fewer elements run on the calling thread (a parallel region costs ~20-30 us here)
SERIAL_BELOW: int = 1 << 16
THREADS_PER_BLOCK: int = 256
