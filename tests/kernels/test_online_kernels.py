"""The building blocks of the batch-1 online kernel (fastfeat.kernels.cpu.online_single, regblocks) against numpy in
float64, on awkward sizes and both dtypes: the block-end row update (register blocks of 4 rows by 4
vectors, with tails), the four-rows-by-four-samples products and their folded horizontal sums
(``_jit.vector_sums``), and the per-step products brought up to date from the recorded updates
(``products_at``). Each in both instruction-set variants (AVX-512 register blocks, AVX2 row kernels),
whatever the CPU: LLVM compiles either for any x86 target. The end-to-end runs are checked in
test_online.py (and here, a short run of each variant)."""
import numba
import numpy as np
import pytest

from fastfeat.kernels.cpu import _jit
from fastfeat.kernels.cpu import online_single as single
from fastfeat.kernels.cpu import regblocks

ISAS = [_jit.AVX2, _jit.AVX512]
ISA_IDS = ["avx2", "avx512"]
# the error of a sum of n terms of size ~1, relative to the largest: float32 or float64 rounding, with room
TOL = {np.float32: 2e-6, np.float64: 4e-15}


def _rel(got, ref):
    return np.abs(np.float64(got) - ref).max() / max(np.abs(ref).max(), 1.0)


def _sums16(isa):
    """``vector_sums(acc, out, 16, isa)`` for a constant ``isa`` (the intrinsic needs one)."""
    @numba.njit
    def sums(acc, out):
        _jit.vector_sums(acc, out, 16, isa)

    return sums


SUMS16 = {isa: _sums16(isa) for isa in ISAS}


@pytest.mark.parametrize("isa", ISAS, ids=ISA_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vector_sums_are_the_sums_of_each_vector(dtype, isa):
    v = _jit.VECTOR_BYTES[isa] // np.dtype(dtype).itemsize
    rng = np.random.default_rng(0)
    for _ in range(5):
        acc = rng.standard_normal(16 * v).astype(dtype)
        out = np.full(16, np.nan, dtype)
        SUMS16[isa](acc, out)
        ref = np.float64(acc).reshape(16, v).sum(axis=1)
        assert _rel(out, ref) < TOL[dtype]
    # each sum is exact on integers, and lands in its own slot (no permutation slip)
    acc = np.repeat(np.arange(16), v).astype(dtype)
    SUMS16[isa](acc, out)
    assert np.array_equal(out, v * np.arange(16).astype(dtype))


@pytest.mark.parametrize("isa", ISAS, ids=ISA_IDS)
def test_vector_sums_rejects_a_count_that_is_not_whole_vectors(isa):
    @numba.njit
    def bad(acc, out):
        _jit.vector_sums(acc, out, 12, isa)

    with pytest.raises(numba.TypingError):
        bad(np.zeros(256, np.float32), np.zeros(16, np.float32))


def test_vector_sums_rejects_a_variant_known_only_at_run_time():
    @numba.njit
    def bad(acc, out, isa):
        _jit.vector_sums(acc, out, 16, isa)

    with pytest.raises(numba.TypingError):
        bad(np.zeros(256, np.float32), np.zeros(16, np.float32), _jit.AVX512)


def _update_ref(W, A, B, X, l0, l1, scale, j0, j1):
    R = np.float64(W).copy()
    rows = slice(j0, j1)
    if scale:
        R[rows] *= np.float64(A[rows])[:, None]
    for l in range(l0, l1):
        R[rows] -= np.float64(B[l, rows])[:, None] * np.float64(X[l])[None, :]
    return R


@pytest.mark.parametrize("isa", ISAS, ids=ISA_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,d", [(1, 1), (3, 3), (4, 17), (5, 33), (9, 64), (33, 65), (17, 129), (8, 200)])
def test_update_matches_numpy(m, d, dtype, isa):
    rng = np.random.default_rng(m * 1000 + d)
    L = single.BLOCK
    for (l0, l1) in [(0, L), (3, 17), (5, 6), (4, 4)]:
        for scale in (True, False):
            for (j0, j1) in [(0, m), (m // 3, m)]:
                W = rng.standard_normal((m, d)).astype(dtype)
                X = rng.standard_normal((L, d)).astype(dtype)
                B = (rng.standard_normal((L, m + 3)) / 4).astype(dtype)
                A = (1 - rng.random(m + 3) / 10).astype(dtype)
                ref = _update_ref(W, A, B, X, l0, l1, scale, j0, j1)
                regblocks.update(isa, W, A, B, X, l0, l1, scale, j0, j1)
                assert _rel(W, ref) < TOL[dtype], (l0, l1, scale, j0, j1)
                assert np.array_equal(np.float64(W[:j0]), ref[:j0])  # rows outside j0 .. j1-1 untouched


@pytest.mark.parametrize("isa", ISAS, ids=ISA_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,d", [(1, 1), (3, 3), (4, 16), (5, 17), (9, 33), (17, 65), (33, 128), (7, 129)])
def test_dots_match_numpy(m, d, dtype, isa):
    rng = np.random.default_rng(m * 1000 + d)
    W = rng.standard_normal((m, d)).astype(dtype)
    # samples carry more columns than d (the noise number, padding): dots must read only the first d
    X = rng.standard_normal((8, d + 5)).astype(dtype)
    P = np.full((8, m + 2), np.nan, dtype)
    regblocks.dots(isa, W, X, P, 0, 8, 0, m, d)
    ref = np.float64(X[:, :d]) @ np.float64(W).T
    assert _rel(P[:, :m], ref) < TOL[dtype] * np.sqrt(d)
    assert np.isnan(P[:, m:]).all()
    P[:] = np.nan  # a later group of samples and a range of rows only
    regblocks.dots(isa, W, X, P, 4, 8, m // 2, m, d)
    assert _rel(P[4:, m // 2:m], ref[4:, m // 2:]) < TOL[dtype] * np.sqrt(d)
    assert np.isnan(P[:4]).all() and np.isnan(P[:, :m // 2]).all()


@pytest.mark.parametrize("isa", ISAS, ids=ISA_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", [single.LITE, single.DECAY, single.FULL])
@pytest.mark.parametrize("m", [1, 5, 64, 130, 257])
def test_products_at_applies_the_recorded_updates_in_order(m, mode, dtype, isa):
    L = single.BLOCK
    rng = np.random.default_rng(m + 7 * mode)
    E = rng.standard_normal((L, m)).astype(dtype)
    C = (rng.standard_normal((L, m)) / 10).astype(dtype)
    Al = (1 - rng.random((L, m)) / 10).astype(dtype)
    G = rng.standard_normal((L, L + 2)).astype(dtype)
    for kb, k in [(0, 0), (0, 1), (0, L - 1), (3, 11), (5, L - 1)]:
        for (j0, j1) in [(0, m), (m // 3, m)]:
            Ek = E.copy()
            ref = np.float64(E[k]).copy()
            for l in range(kb, k):
                alpha = 1.0 if mode == single.LITE else np.float64(Al[l])
                ref = alpha * ref - np.float64(C[l]) * np.float64(G[k, l])
            single.products_at(isa, Ek, C, Al, G, kb, k, mode, j0, j1)
            assert _rel(Ek[k, j0:j1], ref[j0:j1]) < TOL[dtype] * 4, (kb, k, j0, j1)
            assert np.array_equal(Ek[k, :j0], E[k, :j0])  # other rows and positions untouched
            others = np.arange(L) != k
            assert np.array_equal(Ek[others], E[others])
