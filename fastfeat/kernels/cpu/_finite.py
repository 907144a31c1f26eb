"""Finiteness tests that fast-math cannot fold away.

The kernels are compiled with ``reassoc``, ``contract``, ``afn``, ``arcp`` and ``nsz`` (``_jit.FASTMATH``);
with all of them LLVM turned ``np.isfinite(0.5 * (r * r))`` into ``True`` for ``r = 1e200`` (the product
is ``inf``), which disarmed the divergence guard. These tests compare the IEEE bits of the number as
integers, where no fast-math flag applies. Integer and float64/float32 arguments are accepted (integers
are always finite).
"""
from llvmlite import ir
from numba import types
from numba.extending import intrinsic


def _layout(x):
    if x == types.float64:
        return 64, 0x7FF0000000000000, 0x000FFFFFFFFFFFFF
    if x == types.float32:
        return 32, 0x7F800000, 0x007FFFFF
    return None


@intrinsic
def finite(typingctx, x):
    """``x`` is neither inf nor NaN."""
    if isinstance(x, types.Integer) or isinstance(x, types.Boolean):
        def codegen_int(context, builder, signature, args):
            return ir.Constant(ir.IntType(1), 1)
        return types.boolean(x), codegen_int
    lay = _layout(x)
    if lay is None:
        return None
    width, exp, _ = lay

    def codegen(context, builder, signature, args):
        it = ir.IntType(width)
        b = builder.bitcast(args[0], it)
        return builder.icmp_unsigned("!=", builder.and_(b, ir.Constant(it, exp)), ir.Constant(it, exp))

    return types.boolean(x), codegen


@intrinsic
def isnan(typingctx, x):
    """``x`` is NaN."""
    lay = _layout(x)
    if lay is None:
        return None
    width, exp, _ = lay

    def codegen(context, builder, signature, args):
        it = ir.IntType(width)
        b = builder.bitcast(args[0], it)
        # NaN: all exponent bits set and a nonzero mantissa, i.e. |bits| > the bits of inf
        mag = builder.and_(b, ir.Constant(it, (1 << (width - 1)) - 1))
        return builder.icmp_unsigned(">", mag, ir.Constant(it, exp))

    return types.boolean(x), codegen
