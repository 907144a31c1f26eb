"""GEMM with ``beta`` from inside ``@njit`` code.

``np.dot(A, B, out)`` in Numba always overwrites ``out`` (beta = 0), so accumulating ``C += A B`` over
tiles would need a temporary and an extra pass over ``C`` per tile. The helpers here take ``beta``.

Which BLAS: numpy's own OpenBLAS when it can be found (the ``scipy-openblas64`` library that numpy's
wheels bundle; its row-major CBLAS ``?gemm`` is called through ctypes), else the ``?gemm`` of
``scipy.linalg.cython_blas`` through Numba's C helper ``numba_xxgemm`` (the one ``np.dot`` lowers to).
numpy's library is preferred because it is the one ``numpy.matmul`` uses: one BLAS thread pool in the
process instead of two taking turns on the cores, and on this project's 2-core test machine its sgemm
ran the two products of an empirical step (n=8192, d=256, m=2048) 12-17% faster than scipy's OpenBLAS
0.3.30 (same process, interleaved). ``FASTFEAT_BLAS=scipy`` forces the scipy path; ``BLAS_SOURCE``
says which one is in use.

Arrays must be C-contiguous, float32 or float64, all of one dtype; the helpers take the shapes from the
arrays and check nothing else. Never call these inside ``prange`` (BLAS runs its own threads).
"""
import ctypes
import functools
import glob
import os

import numba
import numpy as np
import scipy.linalg.cython_blas  # noqa: F401  (numba_xxgemm imports ?gemm from it on first call)
from llvmlite import binding as ll
from llvmlite import ir
from numba import _helperlib, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .. import _cache
from ._jit import njit, pnjit

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


def _numpy_cblas():
    """(sgemm address, dgemm address, integer bits, path) of numpy's bundled OpenBLAS CBLAS, or None."""
    if os.environ.get("FASTFEAT_BLAS", "").lower() == "scipy":
        return None
    root = os.path.dirname(os.path.abspath(np.__file__))
    paths = []
    for folder in (os.path.join(root, os.pardir, "numpy.libs"), os.path.join(root, ".dylibs")):
        paths += sorted(glob.glob(os.path.join(os.path.normpath(folder), "*openblas*")))
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix, bits in (("scipy_cblas_", "64_", 64), ("cblas_", "64_", 64),
                                     ("scipy_cblas_", "", 32), ("cblas_", "", 32)):
            try:
                fs = getattr(lib, f"{prefix}sgemm{suffix}")
                fd = getattr(lib, f"{prefix}dgemm{suffix}")
            except AttributeError:
                continue
            addr = lambda f: ctypes.cast(f, ctypes.c_void_p).value  # noqa: E731
            return addr(fs), addr(fd), bits, path
    return None


# The kernels call BLAS through symbols linked by name (registered with LLVM here, at import, before
# any kernel is compiled or loaded from the cache): machine code that holds a function's address
# cannot be cached, code that names a symbol can. Which library and which integer width they were
# compiled for is part of every cache entry's stamp (``_cache.TAGS``).
_found = _numpy_cblas()
if _found:
    ll.add_symbol("fastfeat_cblas_sgemm", _found[0])
    ll.add_symbol("fastfeat_cblas_dgemm", _found[1])
    _INT_BITS = _found[2]
    #: where the GEMMs come from: the path of numpy's OpenBLAS, or "scipy.linalg.cython_blas"
    BLAS_SOURCE = _found[3]
    _cache.TAGS["blas"] = f"numpy-cblas-i{_INT_BITS}"
else:
    ll.add_symbol("fastfeat_xxgemm", _helperlib.c_helpers["xxgemm"])
    _INT_BITS = 0
    BLAS_SOURCE = "scipy.linalg.cython_blas"
    _cache.TAGS["blas"] = "scipy-xxgemm"


def _data(context, builder, aryty, ary):
    return builder.bitcast(context.make_array(aryty)(context, builder, ary).data, ir.IntType(8).as_pointer())


@intrinsic
def _gemm_call(typingctx, ta, tb, p, q, k, A, lda, B, ldb, C, ldc, accumulate):
    """Row-major ``C (p, q) = op(A) op(B)`` (+ C when ``accumulate``; C's rows ``ldc`` apart) through the
    linked BLAS symbol; returns the BLAS status (0; the scipy helper returns -1 when scipy's BLAS cannot
    be loaded)."""
    if not (isinstance(C, types.Array) and C.dtype in (types.float32, types.float64)):
        return None
    sig = types.int32(ta, tb, p, q, k, A, lda, B, ldb, C, ldc, accumulate)
    single = C.dtype == types.float32

    def codegen(context, builder, signature, args):
        ta_, tb_, p_, q_, k_, A_, lda_, B_, ldb_, C_, ldc_, acc_ = args
        st = signature.args
        i8p = ir.IntType(8).as_pointer()
        ft = ir.FloatType() if single else ir.DoubleType()
        one, zero = ir.Constant(ft, 1.0), ir.Constant(ft, 0.0)
        acc = context.cast(builder, acc_, st[11], types.boolean)
        beta = builder.select(acc, one, zero)
        a_p = _data(context, builder, st[5], A_)
        b_p = _data(context, builder, st[7], B_)
        c_p = _data(context, builder, st[9], C_)
        if _INT_BITS:
            it = ir.IntType(_INT_BITS)
            nt = types.int64 if _INT_BITS == 64 else types.int32

            def n(v, t):
                return context.cast(builder, v, t, nt)

            i32 = ir.IntType(32)
            tr = lambda v, t: builder.select(context.cast(builder, v, t, types.boolean),  # noqa: E731
                                             ir.Constant(i32, _TRANS), ir.Constant(i32, _NO_TRANS))
            fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i32, it, it, it, ft, i8p, it, i8p, it, ft, i8p, it])
            fn = cgutils.get_or_insert_function(builder.module, fnty,
                                                "fastfeat_cblas_sgemm" if single else "fastfeat_cblas_dgemm")
            builder.call(fn, [ir.Constant(i32, _ROW_MAJOR), tr(ta_, st[0]), tr(tb_, st[1]), n(p_, st[2]),
                              n(q_, st[3]), n(k_, st[4]), one, a_p, n(lda_, st[6]), b_p, n(ldb_, st[8]), beta, c_p,
                              n(ldc_, st[10])])
            return ir.Constant(ir.IntType(32), 0)
        # numba's helper (what np.dot lowers to): column-major, so C^T = op(B)^T op(A)^T of the same memory
        i8, sz = ir.IntType(8), context.get_value_type(types.intp)

        def n(v, t):
            return context.cast(builder, v, t, types.intp)

        def letter(v, t):
            return builder.select(context.cast(builder, v, t, types.boolean), ir.Constant(i8, ord("t")),
                                  ir.Constant(i8, ord("n")))

        fnty = ir.FunctionType(ir.IntType(32), [i8, i8, i8, sz, sz, sz, i8p, i8p, sz, i8p, sz, i8p, i8p, sz])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "fastfeat_xxgemm")
        alpha = cgutils.alloca_once_value(builder, one)
        beta_p = cgutils.alloca_once_value(builder, beta)
        return builder.call(fn, [ir.Constant(i8, ord("s" if single else "d")), letter(tb_, st[1]), letter(ta_, st[0]),
                                 n(q_, st[3]), n(p_, st[2]), n(k_, st[4]), builder.bitcast(alpha, i8p), b_p,
                                 n(ldb_, st[8]), a_p, n(lda_, st[6]), builder.bitcast(beta_p, i8p), c_p,
                                 n(ldc_, st[10])])

    return sig, codegen


@functools.cache
def _thread_functions():
    """(set, get) of the thread count of the BLAS the kernels call (numpy's OpenBLAS, through ctypes), or
    None (scipy's BLAS through ``cython_blas``: its library is not named here)."""
    if not _found:
        return None
    lib = ctypes.CDLL(_found[3])
    for prefix in ("scipy_openblas", "openblas"):
        for suffix in ("64_", ""):
            try:
                set_ = getattr(lib, f"{prefix}_set_num_threads{suffix}")
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}")
            except AttributeError:
                continue
            set_.argtypes, set_.restype, get.restype = [ctypes.c_int], None, ctypes.c_int
            return set_, get
    return None


def blas_threads(n=None):
    """The threads of the BLAS the kernels call, after setting them to ``n`` when given (process-wide, as
    ``OPENBLAS_NUM_THREADS`` at start-up would); None where that BLAS cannot be asked."""
    fns = _thread_functions()
    if fns is None:
        return None
    if n is not None:
        fns[0](int(n))
    return int(fns[1]())


@njit
def _gemm_rm(ta, tb, p, q, k, A, lda, B, ldb, C, ldc, accumulate):
    """Row-major C (p, q) = op(A) op(B) (+ C when ``accumulate``)."""
    if _gemm_call(ta, tb, p, q, k, A, lda, B, ldb, C, ldc, accumulate) != 0:
        raise RuntimeError("BLAS ?gemm is not available (scipy.linalg.cython_blas)")


@njit
def gemm_nt(A, B, C, accumulate):
    """C (p, q) = A (p, k) @ B (q, k).T, plus the old C when ``accumulate``."""
    p, k = A.shape
    _gemm_rm(False, True, p, B.shape[0], k, A, k, B, k, C, B.shape[0], accumulate)


@njit
def gemm_tn(A, B, C, accumulate):
    """C (p, q) = A (k, p).T @ B (k, q), plus the old C when ``accumulate``."""
    k, p = A.shape
    q = B.shape[1]
    _gemm_rm(True, False, p, q, k, A, p, B, q, C, q, accumulate)


@njit
def gemm_nn(A, B, C, accumulate):
    """C (p, q) = A (p, k) @ B (k, q), plus the old C when ``accumulate``."""
    p, k = A.shape
    q = B.shape[1]
    _gemm_rm(False, False, p, q, k, A, k, B, q, C, q, accumulate)


# Small products: on a busy or small machine a multithreaded BLAS call on a few-MFLOP product can
# cost 20x its single-threaded time (threads waiting on descheduled siblings; measured 10.7 ms vs
# 0.55 ms for 256x256x20 with the machine loaded), and compiled loops reach a fraction of BLAS's
# speed on one thread (8-20 GFLOP/s against 40-135 for 256x256x20 on an AMD EPYC Zen 4 core). Below
# ``SMALL_WORK`` multiply-adds the products are cut into blocks of the output (and chunks of the summed
# index) of at most ``SERIAL_WORK`` multiply-adds each: BLAS runs a call that small
# on the calling thread (OpenBLAS: below 4 * 65536 multiply-adds), and the blocks are spread over
# fastfeat's threads. The blocks depend on the sizes only, so the results do not depend on the thread
# count; each block's sum over the summed index runs in order.
SMALL_WORK = 1 << 24
#: multiply-adds per BLAS call in the blocked small products
SERIAL_WORK = 1 << 17


@njit
def _blocks(p, q, k):
    """(rows, columns, summed-index chunk) of the blocks of a (p, q) output summed over k: at most
    ``SERIAL_WORK`` multiply-adds per call, as square as the shape allows."""
    kc = max(1, min(k, 256))
    area = max(1, SERIAL_WORK // kc)
    rb = max(1, min(p, int(np.sqrt(area))))
    cb = max(1, min(q, area // rb))
    rb = max(1, min(p, area // cb))
    return rb, cb, kc


@njit
def _zero(C, accumulate, k):
    """The block ``C`` of a product with no terms (k = 0) is 0 unless accumulating."""
    if k == 0 and not accumulate:
        C[:, :] = 0


@njit
def _blocks_nt(A, B, C, accumulate):
    """``C (+)= A B^T`` as ``_blocks_nn`` on a transposed copy of B: OpenBLAS's blocks of A B^T with a short
    summed index ran at 2/3 the speed of the same blocks of A (B^T) (256 x 256 x 20, one Zen 4 core; the
    copy is q k elements against p q k multiply-adds)."""
    Bt = np.empty((B.shape[1], B.shape[0]), B.dtype)
    _transpose(B, Bt)
    _blocks_nn(A, Bt, C, accumulate)


@njit
def _transpose(B, Bt):
    q, k = B.shape
    for j0 in range(0, q, 16):  # in strips, so that both sides stay in cache
        j1 = min(q, j0 + 16)
        for t in range(k):
            for j in range(j0, j1):
                Bt[t, j] = B[j, t]


@pnjit
def _blocks_ab(trans_a, A, B, C, accumulate):
    """``C (p, q) (+)= op(A) B``, ``op(A)`` = A (p, k), or ``A.T`` for A (k, p) when ``trans_a``."""
    if trans_a:
        k, p = A.shape
    else:
        p, k = A.shape
    q = B.shape[1]
    lda = p if trans_a else k
    rb, cb, kc = _blocks(p, q, k)
    nc = (q + cb - 1) // cb
    for b in prange(((p + rb - 1) // rb) * nc):
        i0 = (b // nc) * rb
        j0 = (b % nc) * cb
        i1, j1 = min(p, i0 + rb), min(q, j0 + cb)
        _zero(C[i0:i1, j0:j1], accumulate, k)
        for k0 in range(0, k, kc):
            Ab = A[k0:, i0:] if trans_a else A[i0:, k0:]
            _gemm_rm(trans_a, False, i1 - i0, j1 - j0, min(kc, k - k0), Ab, lda, B[k0:, j0:], q, C[i0:, j0:], q,
                     accumulate or k0 > 0)


@njit
def _blocks_nn(A, B, C, accumulate):
    _blocks_ab(False, A, B, C, accumulate)


@njit
def _blocks_tn(A, B, C, accumulate):
    _blocks_ab(True, A, B, C, accumulate)


def _whole_or_blocks(blas, blocks, name):
    """``name``: the BLAS helper ``blas`` (one call, BLAS's threads), or ``blocks`` (single-threaded BLAS
    calls on blocks of the output, spread over fastfeat's threads) when ``use_blas`` is False."""
    @njit
    def matmul(A, B, C, accumulate, use_blas):
        if use_blas:
            blas(A, B, C, accumulate)
        else:
            blocks(A, B, C, accumulate)

    matmul.__doc__ = (f"``{blas.__name__}`` in one call, or in blocks that BLAS runs on the calling "
                      "thread, spread over fastfeat's threads, when ``use_blas`` is False.")
    matmul.__name__ = name
    return matmul


matmul_nt = _whole_or_blocks(gemm_nt, _blocks_nt, "matmul_nt")
matmul_nn = _whole_or_blocks(gemm_nn, _blocks_nn, "matmul_nn")
matmul_tn = _whole_or_blocks(gemm_tn, _blocks_tn, "matmul_tn")


if numba.config.DISABLE_JIT:  # intrinsics run only compiled; plain Python (NUMBA_DISABLE_JIT=1) gets this
    def _gemm_rm(ta, tb, p, q, k, A, lda, B, ldb, C, ldc, accumulate):  # noqa: F811
        prod = ((A.T if ta else A)[:p, :k] @ (B.T if tb else B)[:k, :q]).astype(C.dtype)
        C[:p, :q] = C[:p, :q] + prod if accumulate else prod
