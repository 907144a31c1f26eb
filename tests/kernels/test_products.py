"""The products of the population kernel (``fastfeat.kernels.cpu._blas``): whole BLAS calls, and the
blocked form used below ``SMALL_WORK`` (blocks of at most ``SERIAL_WORK`` multiply-adds that BLAS runs
on the calling thread, spread over fastfeat's threads), against numpy on awkward shapes in both float
types, with and without accumulation; the blocked form gives the same bits on any thread count."""
import numba
import numpy as np
import pytest

from fastfeat.kernels.cpu import _blas

SHAPES = [(1, 1, 1), (3, 17, 33), (65, 3, 1), (17, 1000, 300), (300, 7, 700), (5, 5, 0), (700, 1100, 20)]


def _operands(p, q, k, dtype, rng):
    A = rng.standard_normal((p, k)).astype(dtype)
    B = rng.standard_normal((q, k)).astype(dtype)
    return A, B, rng.standard_normal((p, q)).astype(dtype)


def _forms(A, B):
    """(name, function, first operand, second operand) giving A @ B.T in each layout."""
    return [("nt", _blas.matmul_nt, A, B), ("nn", _blas.matmul_nn, A, np.ascontiguousarray(B.T)),
            ("tn", _blas.matmul_tn, np.ascontiguousarray(A.T), np.ascontiguousarray(B.T))]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("p,q,k", SHAPES)
@pytest.mark.parametrize("use_blas", [False, True], ids=["blocks", "whole"])
def test_products_match_numpy(p, q, k, dtype, use_blas):
    rng = np.random.default_rng(p * 7 + q * 3 + k)
    A, B, C0 = _operands(p, q, k, dtype, rng)
    ref = A.astype(np.float64) @ B.astype(np.float64).T
    eps = np.finfo(dtype).eps
    for name, fn, x, y in _forms(A, B):
        for accumulate in (False, True):
            C = C0.copy()
            fn(x, y, C, accumulate, use_blas)
            want = ref + C0 if accumulate else ref
            # rounding of a k-term sum of products of standard normals: a few eps * sqrt(k) each
            bound = 8 * eps * (np.sqrt(max(k, 1)) * np.abs(x).max(initial=0) * np.abs(y).max(initial=0) + np.abs(want).max())
            assert np.abs(C - want).max() <= bound, (name, accumulate)


def test_blocks_split_the_work_and_do_not_depend_on_the_thread_count():
    p, q, k = 700, 1100, 300
    rb, cb, kc = _blas._blocks(p, q, k)
    assert rb * cb * kc <= _blas.SERIAL_WORK and 1 <= kc <= k
    assert (p + rb - 1) // rb * ((q + cb - 1) // cb) >= 4  # several blocks to share
    rng = np.random.default_rng(3)
    A, B, C0 = _operands(p, q, k, np.float64, rng)
    before = numba.get_num_threads()
    try:
        for name, fn, x, y in _forms(A, B):
            out = []
            for n in sorted({1, before}):
                numba.set_num_threads(n)
                C = C0.copy()
                fn(x, y, C, True, False)
                out.append(C)
            assert all(np.array_equal(out[0], c) for c in out[1:]), name
    finally:
        numba.set_num_threads(before)
