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
import glob
import os

import numpy as np
import scipy.linalg.cython_blas  # noqa: F401  (numba_xxgemm imports ?gemm from it on first call)
from numba import _helperlib, prange, types
from numba.extending import overload

from ._jit import njit, pnjit

_N, _T = np.int8(ord("n")), np.int8(ord("t"))
_S, _D = np.int8(ord("s")), np.int8(ord("d"))
# alpha/beta slots: [1, 0]; numba freezes these global arrays into the compiled code
_ONE_ZERO32 = np.array([1.0, 0.0], np.float32)
_ONE_ZERO64 = np.array([1.0, 0.0], np.float64)
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


def _numpy_cblas():
    """(sgemm, dgemm) CBLAS functions of numpy's bundled OpenBLAS as ctypes objects, or None."""
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
        for prefix, suffix, itype in (("scipy_cblas_", "64_", ctypes.c_int64), ("cblas_", "64_", ctypes.c_int64),
                                      ("scipy_cblas_", "", ctypes.c_int32), ("cblas_", "", ctypes.c_int32)):
            try:
                fs = getattr(lib, f"{prefix}sgemm{suffix}")
                fd = getattr(lib, f"{prefix}dgemm{suffix}")
            except AttributeError:
                continue
            for f, real in ((fs, ctypes.c_float), (fd, ctypes.c_double)):
                f.restype = None
                f.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, itype, itype, itype, real, ctypes.c_void_p,
                              itype, ctypes.c_void_p, itype, real, ctypes.c_void_p, itype]
            return fs, fd, path
    return None


_found = _numpy_cblas()
#: where the GEMMs come from: the path of numpy's OpenBLAS, or "scipy.linalg.cython_blas"
BLAS_SOURCE = _found[2] if _found else "scipy.linalg.cython_blas"


def _pick(C):  # pragma: no cover - only its overloads run
    raise NotImplementedError


if _found:
    _sgemm, _dgemm, _ = _found

    @overload(_pick, jit_options={"nogil": True})
    def _pick_ov(C):
        """The CBLAS ?gemm of C's dtype and its scalar type, chosen at compile time."""
        if C.dtype == types.float32:
            return lambda C: (_sgemm, np.float32(1.0), np.float32(0.0))
        return lambda C: (_dgemm, 1.0, 0.0)

    @njit
    def _gemm_rm(ta, tb, p, q, k, A, lda, B, ldb, C, accumulate):
        """Row-major C (p, q) = op(A) op(B) (+ C when ``accumulate``)."""
        f, one, zero = _pick(C)
        f(_ROW_MAJOR, _TRANS if ta else _NO_TRANS, _TRANS if tb else _NO_TRANS, p, q, k, one, A.ctypes.data, lda,
          B.ctypes.data, ldb, one if accumulate else zero, C.ctypes.data, q)
else:
    _proto = ctypes.CFUNCTYPE(
        ctypes.c_int,
        ctypes.c_int8, ctypes.c_int8, ctypes.c_int8,              # kind, transa, transb
        ctypes.c_ssize_t, ctypes.c_ssize_t, ctypes.c_ssize_t,     # m, n, k (column-major)
        ctypes.c_void_p, ctypes.c_void_p, ctypes.c_ssize_t,       # alpha, a, lda
        ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_void_p,       # b, ldb, beta
        ctypes.c_void_p, ctypes.c_ssize_t,                        # c, ldc
    )
    _xxgemm = _proto(_helperlib.c_helpers["xxgemm"])

    @overload(_pick, jit_options={"nogil": True})
    def _pick_ov(C):
        """(BLAS kind letter, [1, 0] of C's dtype), chosen at compile time."""
        if C.dtype == types.float32:
            return lambda C: (_S, _ONE_ZERO32)
        return lambda C: (_D, _ONE_ZERO64)

    @njit
    def _gemm_rm(ta, tb, p, q, k, A, lda, B, ldb, C, accumulate):
        """Row-major C (p, q) = op(A) op(B) (+ C when ``accumulate``), as the column-major product
        C^T = op(B)^T op(A)^T of the same memory."""
        kind, c = _pick(C)
        beta = c[0:1] if accumulate else c[1:2]
        r = _xxgemm(kind, _T if tb else _N, _T if ta else _N, q, p, k, c[0:1].ctypes, B.ctypes, ldb, A.ctypes, lda,
                    beta.ctypes, C.ctypes, q)
        if r != 0:
            raise RuntimeError("BLAS ?gemm is not available (scipy.linalg.cython_blas)")


@njit
def gemm_nt(A, B, C, accumulate):
    """C (p, q) = A (p, k) @ B (q, k).T, plus the old C when ``accumulate``."""
    p, k = A.shape
    _gemm_rm(False, True, p, B.shape[0], k, A, k, B, k, C, accumulate)


@njit
def gemm_tn(A, B, C, accumulate):
    """C (p, q) = A (k, p).T @ B (k, q), plus the old C when ``accumulate``."""
    k, p = A.shape
    q = B.shape[1]
    _gemm_rm(True, False, p, q, k, A, p, B, q, C, accumulate)


@njit
def gemm_nn(A, B, C, accumulate):
    """C (p, q) = A (p, k) @ B (k, q), plus the old C when ``accumulate``."""
    p, k = A.shape
    q = B.shape[1]
    _gemm_rm(False, False, p, q, k, A, k, B, q, C, accumulate)


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


def _blas_or_loops(blas, loops, name):
    """``name``: the BLAS helper ``blas``, or the compiled loops ``loops`` when ``use_blas`` is False."""
    @njit
    def matmul(A, B, C, accumulate, use_blas):
        if use_blas:
            blas(A, B, C, accumulate)
        else:
            loops(A, B, C, accumulate)

    matmul.__doc__ = f"``{blas.__name__}``, or the compiled loops when ``use_blas`` is False."
    matmul.__name__ = name
    return matmul


matmul_nt = _blas_or_loops(gemm_nt, _own_nt, "matmul_nt")
matmul_nn = _blas_or_loops(gemm_nn, _own_nn, "matmul_nn")
matmul_tn = _blas_or_loops(gemm_tn, _own_tn, "matmul_tn")
