"""Bit casts between float64 and uint64 usable inside ``@njit`` code (CPU and CUDA).

``llvm bitcast`` intrinsics: no memory traffic, no libm calls.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

__all__ = ["f64_bits", "bits_f64", "f32_bits", "bits_f32", "f32_pointer"]


@intrinsic
def f64_bits(typingctx, x):
    """uint64 bit pattern of a float64."""
    if x != types.float64:
        return None
    sig = types.uint64(types.float64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return sig, codegen


@intrinsic
def bits_f64(typingctx, b):
    """float64 with the given uint64 bit pattern."""
    if b != types.uint64:
        return None
    sig = types.float64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


@intrinsic
def f32_bits(typingctx, x):
    """uint32 bit pattern of a float32."""
    if x != types.float32:
        return None
    sig = types.uint32(types.float32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


@intrinsic
def bits_f32(typingctx, b):
    """float32 with the given uint32 bit pattern."""
    if b != types.uint32:
        return None
    sig = types.float32(types.uint32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@intrinsic
def f32_pointer(typingctx, address):
    """``float32*`` from an integer address (``numba.carray(f32_pointer(a), n)`` views ``n`` floats).

    For entry points that take buffers by address (a torch tensor's ``data_ptr()``): the caller
    checks dtype, contiguity and size, and keeps the buffer alive for the call.
    """
    if not isinstance(address, types.Integer):
        return None
    sig = types.CPointer(types.float32)(address)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], ir.PointerType(ir.FloatType()))

    return sig, codegen
