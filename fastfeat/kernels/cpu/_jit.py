"""Shared compilation settings and the CPU builds of the activation table."""
import os

import numba
import numpy as np
from numba import types
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
