"""Shared compilation settings and the CPU builds of the activation table."""
import os

import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ...math.activations import build

#: the safe fastmath set: no nnan/ninf, so isfinite checks keep working
FASTMATH = set({"nsz", "arcp", "contract", "afn", "reassoc"})


def njit(*args, **kw):
    kw.setdefault("fastmath", FASTMATH)
    kw.setdefault("nogil", True)
    kw.setdefault("error_model", "numpy")
    return numba.njit(*args, **kw)


def pnjit(*args, **kw):
    kw.setdefault("parallel", True)
    return njit(*args, **kw)


_scalar = numba.njit(fastmath=FASTMATH, error_model="numpy")
#: float32 table uses the vectorizable polynomial arccos; float64 uses libm for full accuracy
TABLE32 = build(_scalar, np.float32, fast_acos=True)
TABLE64 = build(_scalar, np.float64, fast_acos=False)


#: ``FASTFEAT_WIDE_VECTORS=0`` turns ``wide_vectors`` off (for comparisons)
WIDE = os.environ.get("FASTFEAT_WIDE_VECTORS", "1") != "0"


@intrinsic
def wide_vectors(typingctx):
    """Call at the top of an njit function whose loops are long, regular multiply-adds: it lets LLVM
    vectorize them with the widest registers the CPU has. On x86 CPUs with AVX-512, LLVM otherwise keeps
    to 256-bit vectors (its ``prefer-256-bit`` tuning, meant for code that mixes short loops with scalar
    work). Only the function attributes change; elsewhere, and for the results, it does nothing."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        if not WIDE:
            return context.get_dummy_value()
        attrs = builder.function.attributes
        # string attributes: llvmlite's AttributeSet only validates the names it knows
        set.add(attrs, '"prefer-vector-width"="512"')
        set.add(attrs, '"min-legal-vector-width"="512"')
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def local_array(typingctx, like, n):
    """A 1-d array of ``n`` elements (a compile-time constant) of ``like``'s dtype on the stack frame of
    the calling function, uninitialized. Meant for a few accumulators that LLVM should keep in
    registers: once the loops that index it are unrolled, the array is promoted to registers, which it
    cannot be when it comes from ``np.empty`` (a heap allocation). Never return it or keep a view."""
    if not isinstance(n, types.IntegerLiteral) or not isinstance(like, types.Array):
        return None
    size = n.literal_value
    arrty = types.Array(like.dtype, 1, "C")

    def codegen(context, builder, signature, args):
        lt = context.get_value_type(like.dtype)
        ptr = cgutils.alloca_once(builder, lt, size=size)
        ary = context.make_array(arrty)(context, builder)
        itemsize = context.get_constant(types.intp, context.get_abi_sizeof(lt))
        shape = cgutils.pack_array(builder, [context.get_constant(types.intp, size)])
        context.populate_array(ary, data=ptr, shape=shape, strides=cgutils.pack_array(builder, [itemsize]),
                               itemsize=itemsize, meminfo=None)
        return ary._getvalue()

    return arrty(like, n), codegen


def aligned(shape, dtype, fill=0.0):
    """A C-contiguous array of ``shape`` filled with ``fill`` that starts on a 64-byte boundary (numpy
    only promises 16 bytes). Used where workers write disjoint ranges whose offsets are multiples of 64
    bytes (no cache line written by two cores) and for tables read with whole-line vector loads."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    raw = np.empty(n * dtype.itemsize + 64, np.uint8)
    off = (-raw.ctypes.data) % 64
    out = raw[off:off + n * dtype.itemsize].view(dtype).reshape(shape)
    out[...] = fill
    return out
