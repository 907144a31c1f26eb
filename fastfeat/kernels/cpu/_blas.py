"""GEMM with ``beta`` from inside ``@njit`` code.

``np.dot(A, B, out)`` in Numba always overwrites ``out`` (beta = 0), so accumulating ``C += A B`` over
tiles would need a temporary and an extra pass over ``C`` per tile. Numba's own C helper
``numba_xxgemm`` (the one ``np.dot`` lowers to; it loads ``?gemm`` from ``scipy.linalg.cython_blas``)
takes ``alpha`` and ``beta``; it is called here through ctypes. Arrays must be C-contiguous, float32
or float64, all of one dtype; the helpers take the shapes from the arrays and check nothing else.
Never call these inside ``prange`` (BLAS runs its own threads).
"""
import ctypes

import numpy as np
import scipy.linalg.cython_blas  # noqa: F401  (the helper imports ?gemm from it on first call)
from numba import _helperlib, prange, types
from numba.extending import overload


from ._jit import njit, pnjit

_proto = ctypes.CFUNCTYPE(
    ctypes.c_int,
    ctypes.c_int8, ctypes.c_int8, ctypes.c_int8,              # kind, transa, transb
    ctypes.c_ssize_t, ctypes.c_ssize_t, ctypes.c_ssize_t,     # m, n, k (column-major)
    ctypes.c_void_p, ctypes.c_void_p, ctypes.c_ssize_t,       # alpha, a, lda
    ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_void_p,       # b, ldb, beta
    ctypes.c_void_p, ctypes.c_ssize_t,                        # c, ldc
)
_xxgemm = _proto(_helperlib.c_helpers["xxgemm"])

_N, _T = np.int8(ord("n")), np.int8(ord("t"))
_S, _D = np.int8(ord("s")), np.int8(ord("d"))
# alpha/beta slots: [1, 0]; numba freezes these global arrays into the compiled code
_ONE_ZERO32 = np.array([1.0, 0.0], np.float32)
_ONE_ZERO64 = np.array([1.0, 0.0], np.float64)


def _consts(C):  # pragma: no cover - only its overload runs
    raise NotImplementedError


@overload(_consts, jit_options={"nogil": True})
def _consts_ov(C):
    """(BLAS kind letter, [1, 0] of C's dtype), chosen at compile time."""
    if C.dtype == types.float32:
        return lambda C: (_S, _ONE_ZERO32)
    return lambda C: (_D, _ONE_ZERO64)


@njit
def _gemm_cm(transb, transa, q, p, k, B, ldb, A, lda, C, accumulate):
    """The column-major call for a row-major C (p, q): C^T = op(B_cm) op(A_cm), beta 1 or 0."""
    kind, c = _consts(C)
    beta = c[0:1] if accumulate else c[1:2]
    r = _xxgemm(kind, transb, transa, q, p, k, c[0:1].ctypes, B.ctypes, ldb, A.ctypes, lda, beta.ctypes,
                C.ctypes, q)
    if r != 0:
        raise RuntimeError("BLAS ?gemm is not available (scipy.linalg.cython_blas)")


@njit
def gemm_nt(A, B, C, accumulate):
    """C (p, q) = A (p, k) @ B (q, k).T, plus the old C when ``accumulate``."""
    p, k = A.shape
    # row-major C = A B^T  <=>  column-major C^T (q x p) = op(B_cm) A_cm with B_cm = B^T (k x q): 't'
    _gemm_cm(_T, _N, B.shape[0], p, k, B, k, A, k, C, accumulate)


@njit
def gemm_tn(A, B, C, accumulate):
    """C (p, q) = A (k, p).T @ B (k, q), plus the old C when ``accumulate``."""
    k, p = A.shape
    q = B.shape[1]
    # column-major C^T (q x p) = B_cm (q x k) op(A_cm), A_cm = A^T (p x k) -> 't'
    _gemm_cm(_N, _T, q, p, k, B, q, A, p, C, accumulate)


@njit
def gemm_nn(A, B, C, accumulate):
    """C (p, q) = A (p, k) @ B (k, q), plus the old C when ``accumulate``."""
    p, k = A.shape
    q = B.shape[1]
    # column-major C^T (q x p) = B_cm (q x k) A_cm (k x p)
    _gemm_cm(_N, _N, q, p, k, B, q, A, k, C, accumulate)


# Small products: on a busy or small machine a multithreaded BLAS call on a few-MFLOP product can
# cost 20x its single-threaded time (threads waiting on descheduled siblings; measured 10.7 ms vs
# 0.55 ms for 256x256x20 with the machine loaded). Below ``SMALL_WORK`` multiply-adds these loops,
# parallel over output rows, are used instead; they accumulate in the arrays' dtype, like BLAS.
SMALL_WORK = 1 << 24


@pnjit
def _own_nt(A, B, C, accumulate):
    p, k = A.shape
    q = B.shape[0]
    zero = C.dtype.type(0)
    for i in prange(p):
        for j in range(q):
            s = zero
            for t in range(k):
                s += A[i, t] * B[j, t]
            C[i, j] = C[i, j] + s if accumulate else s


@pnjit
def _own_nn(A, B, C, accumulate):
    p, k = A.shape
    q = B.shape[1]
    for i in prange(p):
        if not accumulate:
            for j in range(q):
                C[i, j] = 0
        for t in range(k):
            x = A[i, t]
            for j in range(q):
                C[i, j] += x * B[t, j]


@pnjit
def _own_tn(A, B, C, accumulate):
    k, p = A.shape
    q = B.shape[1]
    for i in prange(p):
        if not accumulate:
            for j in range(q):
                C[i, j] = 0
        for t in range(k):
            x = A[t, i]
            for j in range(q):
                C[i, j] += x * B[t, j]


@njit
def matmul_nt(A, B, C, accumulate, use_blas):
    """``gemm_nt``, or the compiled loops when ``use_blas`` is False."""
    if use_blas:
        gemm_nt(A, B, C, accumulate)
    else:
        _own_nt(A, B, C, accumulate)


@njit
def matmul_nn(A, B, C, accumulate, use_blas):
    """``gemm_nn``, or the compiled loops when ``use_blas`` is False."""
    if use_blas:
        gemm_nn(A, B, C, accumulate)
    else:
        _own_nn(A, B, C, accumulate)


@njit
def matmul_tn(A, B, C, accumulate, use_blas):
    """``gemm_tn``, or the compiled loops when ``use_blas`` is False."""
    if use_blas:
        gemm_tn(A, B, C, accumulate)
    else:
        _own_tn(A, B, C, accumulate)
