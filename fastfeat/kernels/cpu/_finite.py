"""Finiteness tests that fast-math cannot fold away.

The kernels are compiled with ``reassoc``, ``contract``, ``afn``, ``arcp`` and ``nsz`` (``_jit.FASTMATH``);
with all of them LLVM turned ``np.isfinite(0.5 * (r * r))`` into ``True`` for ``r = 1e200`` (the product
is ``inf``), which disarmed the divergence guard. These tests compare the IEEE bits of the number as
integers, where no fast-math flag applies. Integer and float64/float32 arguments are accepted (integers
are always finite).
"""
import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic


def _layout(x):
    """(bit width, the bits of +inf) of a float type, or None."""
    if x == types.float64:
        return 64, 0x7FF0000000000000
    if x == types.float32:
        return 32, 0x7F800000
    return None


def _magnitude_vs_inf(x, predicate):
    """An intrinsic body comparing |x|'s bits (the sign bit cleared) with the bits of inf: below them
    the number is finite, above them it is NaN."""
    width, inf = _layout(x)

    def codegen(context, builder, signature, args):
        it = ir.IntType(width)
        mag = builder.and_(builder.bitcast(args[0], it), ir.Constant(it, (1 << (width - 1)) - 1))
        return builder.icmp_unsigned(predicate, mag, ir.Constant(it, inf))

    return types.boolean(x), codegen


@intrinsic
def finite(typingctx, x):
    """``x`` is neither inf nor NaN (integers always are)."""
    if isinstance(x, (types.Integer, types.Boolean)):
        return types.boolean(x), lambda context, builder, signature, args: ir.Constant(ir.IntType(1), 1)
    if _layout(x) is None:
        return None
    return _magnitude_vs_inf(x, "<")


@intrinsic
def isnan(typingctx, x):
    """``x`` is NaN."""
    if _layout(x) is None:
        return None
    return _magnitude_vs_inf(x, ">")


if numba.config.DISABLE_JIT:  # intrinsics run only compiled; plain Python (NUMBA_DISABLE_JIT=1) gets these
    def finite(x):  # noqa: F811
        return bool(np.isfinite(x))

    def isnan(x):  # noqa: F811
        return bool(np.isnan(x))
