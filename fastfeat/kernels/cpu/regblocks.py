"""Register-block kernels of the online batch-1 path (``online_single``), one per instruction-set variant.

Two operations on rows ``w_j`` of W and a block of samples ``x_l`` (rows of X), each written for the
vector registers of a variant ``isa`` (``_jit.AVX512``: 32 registers of 64 bytes; ``_jit.AVX2``: 16 of 32):

- the row update ``w_j <- A_j w_j - sum_l B[l, j] x_l`` (``update``): ``update_block`` keeps four rows by
  four vectors of columns in registers while the samples stream past (32 registers), ``update_rows``
  one row at a time (16 registers, where that block would spill);
- the products ``P[k, j] = w_j . x_k`` (``dots``): ``dots_block`` four rows and four samples per pass with
  16 vector accumulators, ``dots_pairs`` two rows by four samples.

A compile-time ``isa`` (a literal, or an omitted argument's default) compiles only its kernel; one known
at run time (a call from Python) compiles both and picks one when it runs (``_update`` and ``_dots``,
inlined into their callers). Both variants compile and give the same results to rounding on any x86
CPU (LLVM splits vectors wider than the target's), so both are tested everywhere.
"""
import numpy as np
from numba import types
from numba.extending import overload

from ._jit import (AVX2, AVX512, FASTMATH, VECTOR_REGISTERS, isa_value, lanes, local_array, local_vectors, njit,
                   vector_sums, wide_vectors)
from .scalar import like

_OPTS = {"fastmath": FASTMATH, "error_model": "numpy", "nogil": True}


@njit
def update_block(isa, W, A, B, X, l0, l1, scale, j0, j1):
    """w_j <- A_j w_j (when ``scale``), then w_j <- w_j - B[l, j] x_l for l = l0 .. l1-1 in that
    order, one rounding per term, for rows j0 .. j1-1. Four rows by ``LN`` columns (four vectors of
    variant ``isa``) at a time stay in registers (``acc``) while the samples stream past, so each weight
    is loaded and stored once, not once per sample; the columns left over (d mod LN) and the rows left
    over (fewer than four) take one pass per sample, with the same arithmetic per weight. Sized for 32
    vector registers (AVX-512)."""
    wide_vectors()
    LN = 4 * lanes(W, isa)
    d = W.shape[1]
    dw = d - d % LN
    acc = local_vectors(W, 16, isa)
    j = j0
    while j + 4 <= j1:
        for i0 in range(0, dw, LN):
            if scale:
                a0, a1, a2, a3 = A[j], A[j + 1], A[j + 2], A[j + 3]
                for c in range(LN):
                    acc[c] = a0 * W[j, i0 + c]
                    acc[LN + c] = a1 * W[j + 1, i0 + c]
                    acc[2 * LN + c] = a2 * W[j + 2, i0 + c]
                    acc[3 * LN + c] = a3 * W[j + 3, i0 + c]
            else:
                for c in range(LN):
                    acc[c] = W[j, i0 + c]
                    acc[LN + c] = W[j + 1, i0 + c]
                    acc[2 * LN + c] = W[j + 2, i0 + c]
                    acc[3 * LN + c] = W[j + 3, i0 + c]
            for l in range(l0, l1):
                b0, b1, b2, b3 = B[l, j], B[l, j + 1], B[l, j + 2], B[l, j + 3]
                for c in range(LN):
                    x = X[l, i0 + c]
                    acc[c] = acc[c] - b0 * x
                    acc[LN + c] = acc[LN + c] - b1 * x
                    acc[2 * LN + c] = acc[2 * LN + c] - b2 * x
                    acc[3 * LN + c] = acc[3 * LN + c] - b3 * x
            for c in range(LN):
                W[j, i0 + c] = acc[c]
                W[j + 1, i0 + c] = acc[LN + c]
                W[j + 2, i0 + c] = acc[2 * LN + c]
                W[j + 3, i0 + c] = acc[3 * LN + c]
        j += 4
    for jj in range(j0, j1):
        i_start = dw if jj < j else 0
        if scale:
            aj = A[jj]
            for i in range(i_start, d):
                W[jj, i] = aj * W[jj, i]
        for l in range(l0, l1):
            b0 = B[l, jj]
            for i in range(i_start, d):
                W[jj, i] = W[jj, i] - b0 * X[l, i]


@njit
def dots_block(isa, W, X, P, k0, k1, j0, j1, d):
    """P[k, j] = w_j[:d] . x_k[:d] for k = k0 .. k1-1 (k0, k1 multiples of 4) and rows j0 .. j1-1: four
    rows and four samples per pass, 16 vector accumulators of variant ``isa`` folded by ``vector_sums``;
    the columns left over (d mod VD) are added one by one, and the rows left over (fewer than four)
    summed one at a time. (``d`` is passed, not sliced off: a sliced array has runtime strides, which
    LLVM turns into gathers.) Sized for 32 vector registers (AVX-512)."""
    wide_vectors()
    VD = lanes(W, isa)
    zero = like(W, 0.0)
    dv = d - d % VD
    acc = local_vectors(W, 16, isa)
    out = local_array(W, 16)
    j = j0
    while j + 4 <= j1:
        for k in range(k0, k1, 4):
            for c in range(16 * VD):
                acc[c] = zero
            for i0 in range(0, dv, VD):
                for c in range(VD):
                    i = np.uint64(i0 + c)
                    w0, w1, w2, w3 = W[j, i], W[j + 1, i], W[j + 2, i], W[j + 3, i]
                    x0, x1, x2, x3 = X[k, i], X[k + 1, i], X[k + 2, i], X[k + 3, i]
                    acc[c] += w0 * x0
                    acc[VD + c] += w0 * x1
                    acc[2 * VD + c] += w0 * x2
                    acc[3 * VD + c] += w0 * x3
                    acc[4 * VD + c] += w1 * x0
                    acc[5 * VD + c] += w1 * x1
                    acc[6 * VD + c] += w1 * x2
                    acc[7 * VD + c] += w1 * x3
                    acc[8 * VD + c] += w2 * x0
                    acc[9 * VD + c] += w2 * x1
                    acc[10 * VD + c] += w2 * x2
                    acc[11 * VD + c] += w2 * x3
                    acc[12 * VD + c] += w3 * x0
                    acc[13 * VD + c] += w3 * x1
                    acc[14 * VD + c] += w3 * x2
                    acc[15 * VD + c] += w3 * x3
            vector_sums(acc, out, 16, isa)
            for q in range(16):
                r, kk = q // 4, q % 4
                z = out[q]
                for i in range(dv, d):
                    z += W[j + r, i] * X[k + kk, i]
                P[k + kk, j + r] = z
        j += 4
    while j < j1:
        for k in range(k0, k1):
            z = zero
            for i in range(d):
                z += W[j, i] * X[k, i]
            P[k, j] = z
        j += 1


@njit
def update_rows(isa, W, A, B, X, l0, l1, scale, j0, j1):
    """``update`` for 16 vector registers (AVX2), where the register block of ``update_block`` would
    spill: four rows and four samples per pass over the rows (each x_l loaded once for four rows, each
    row stored once per four terms)."""
    d = W.shape[1]
    if scale:
        for j in range(j0, j1):
            aj = A[j]
            for i in range(d):
                W[j, i] = aj * W[j, i]
    j = j0
    while j + 4 <= j1:
        l = l0
        while l + 4 <= l1:
            b0, b1, b2, b3 = B[l, j], B[l + 1, j], B[l + 2, j], B[l + 3, j]
            e0, e1, e2, e3 = B[l, j + 1], B[l + 1, j + 1], B[l + 2, j + 1], B[l + 3, j + 1]
            f0, f1, f2, f3 = B[l, j + 2], B[l + 1, j + 2], B[l + 2, j + 2], B[l + 3, j + 2]
            g0, g1, g2, g3 = B[l, j + 3], B[l + 1, j + 3], B[l + 2, j + 3], B[l + 3, j + 3]
            for i in range(d):
                x0, x1, x2, x3 = X[l, i], X[l + 1, i], X[l + 2, i], X[l + 3, i]
                W[j, i] = (((W[j, i] - b0 * x0) - b1 * x1) - b2 * x2) - b3 * x3
                W[j + 1, i] = (((W[j + 1, i] - e0 * x0) - e1 * x1) - e2 * x2) - e3 * x3
                W[j + 2, i] = (((W[j + 2, i] - f0 * x0) - f1 * x1) - f2 * x2) - f3 * x3
                W[j + 3, i] = (((W[j + 3, i] - g0 * x0) - g1 * x1) - g2 * x2) - g3 * x3
            l += 4
        while l < l1:
            b0, e0, f0, g0 = B[l, j], B[l, j + 1], B[l, j + 2], B[l, j + 3]
            for i in range(d):
                x0 = X[l, i]
                W[j, i] = W[j, i] - b0 * x0
                W[j + 1, i] = W[j + 1, i] - e0 * x0
                W[j + 2, i] = W[j + 2, i] - f0 * x0
                W[j + 3, i] = W[j + 3, i] - g0 * x0
            l += 1
        j += 4
    while j < j1:
        for l in range(l0, l1):
            b0 = B[l, j]
            for i in range(d):
                W[j, i] = W[j, i] - b0 * X[l, i]
        j += 1


@njit
def dots_pairs(isa, W, X, P, k0, k1, j0, j1, d):
    """``dots`` for 16 vector registers (AVX2), where 16 accumulators would spill: two rows and four
    samples per pass (eight independent sums, each reduced by LLVM)."""
    wide_vectors()
    zero = like(W, 0.0)
    j = j0
    while j + 2 <= j1:
        for k in range(k0, k1, 4):
            z00, z01, z02, z03 = zero, zero, zero, zero
            z10, z11, z12, z13 = zero, zero, zero, zero
            for i in range(d):
                w0 = W[j, i]
                w1 = W[j + 1, i]
                x0, x1, x2, x3 = X[k, i], X[k + 1, i], X[k + 2, i], X[k + 3, i]
                z00 += w0 * x0
                z01 += w0 * x1
                z02 += w0 * x2
                z03 += w0 * x3
                z10 += w1 * x0
                z11 += w1 * x1
                z12 += w1 * x2
                z13 += w1 * x3
            P[k, j], P[k + 1, j], P[k + 2, j], P[k + 3, j] = z00, z01, z02, z03
            P[k, j + 1], P[k + 1, j + 1], P[k + 2, j + 1], P[k + 3, j + 1] = z10, z11, z12, z13
        j += 2
    if j < j1:
        for k in range(k0, k1, 4):
            z00, z01, z02, z03 = zero, zero, zero, zero
            for i in range(d):
                w0 = W[j, i]
                z00 += w0 * X[k, i]
                z01 += w0 * X[k + 1, i]
                z02 += w0 * X[k + 2, i]
                z03 += w0 * X[k + 3, i]
            P[k, j], P[k + 1, j], P[k + 2, j], P[k + 3, j] = z00, z01, z02, z03


def _variant(isa, narrow, wide):
    """The kernel of a compile-time ``isa`` type (a literal, or an omitted argument's default) and its
    value: ``wide`` for variants with 32 vector registers, else ``narrow``; None for a runtime ``isa``."""
    v = isa_value(isa)
    if v is None:
        return None, None
    return (wide if VECTOR_REGISTERS[v] >= 32 else narrow), v


def _update(isa, W, A, B, X, l0, l1, scale, j0, j1):  # without the JIT (NUMBA_DISABLE_JIT=1)
    (update_block if VECTOR_REGISTERS[isa] >= 32 else update_rows)(isa, W, A, B, X, l0, l1, scale, j0, j1)


@overload(_update, prefer_literal=True, inline="always", jit_options=_OPTS)
def _update_variant(isa, W, A, B, X, l0, l1, scale, j0, j1):
    impl, v = _variant(isa, update_rows, update_block)
    if impl is not None:
        def fixed(isa, W, A, B, X, l0, l1, scale, j0, j1):
            impl(v, W, A, B, X, l0, l1, scale, j0, j1)

        return fixed
    if isinstance(isa, types.Integer):
        def chosen(isa, W, A, B, X, l0, l1, scale, j0, j1):
            if isa == AVX512:
                update_block(AVX512, W, A, B, X, l0, l1, scale, j0, j1)
            else:
                update_rows(AVX2, W, A, B, X, l0, l1, scale, j0, j1)

        return chosen
    return None


def _dots(isa, W, X, P, k0, k1, j0, j1, d):  # without the JIT (NUMBA_DISABLE_JIT=1)
    (dots_block if VECTOR_REGISTERS[isa] >= 32 else dots_pairs)(isa, W, X, P, k0, k1, j0, j1, d)


@overload(_dots, prefer_literal=True, inline="always", jit_options=_OPTS)
def _dots_variant(isa, W, X, P, k0, k1, j0, j1, d):
    impl, v = _variant(isa, dots_pairs, dots_block)
    if impl is not None:
        def fixed(isa, W, X, P, k0, k1, j0, j1, d):
            impl(v, W, X, P, k0, k1, j0, j1, d)

        return fixed
    if isinstance(isa, types.Integer):
        def chosen(isa, W, X, P, k0, k1, j0, j1, d):
            if isa == AVX512:
                dots_block(AVX512, W, X, P, k0, k1, j0, j1, d)
            else:
                dots_pairs(AVX2, W, X, P, k0, k1, j0, j1, d)

        return chosen
    return None


@njit
def update(isa, W, A, B, X, l0, l1, scale, j0, j1):
    """w_j <- A_j w_j (when ``scale``), then w_j <- w_j - B[l, j] x_l for l = l0 .. l1-1, rows j0 .. j1-1,
    by variant ``isa``'s kernel (``update_block`` or ``update_rows``). A compile-time ``isa`` compiles only
    its kernel; one known at run time (a call from Python) compiles both and picks one when it runs. (The
    kernels here call ``_update``, which numba inlines: the extra call level of this function, with the
    variant kernel inlined into it by LLVM, made the whole batch-1 step 8% slower.)"""
    _update(isa, W, A, B, X, l0, l1, scale, j0, j1)


@njit
def dots(isa, W, X, P, k0, k1, j0, j1, d):
    """P[k, j] = w_j[:d] . x_k[:d] for k = k0 .. k1-1 (multiples of 4), rows j0 .. j1-1, by variant
    ``isa``'s kernel (``dots_block`` or ``dots_pairs``; compiled as ``update``'s)."""
    _dots(isa, W, X, P, k0, k1, j0, j1, d)
