"""The bit-matrix product of the relu-type empirical gradient (fastfeat.kernels.cpu.masked) against numpy
in float64, on awkward sizes and both dtypes; its result must not depend on the threads or on how the
rows of S are split among them."""
import numba
import numpy as np
import pytest

from fastfeat.kernels.cpu import empirical as emp
from fastfeat.kernels.cpu import masked
from fastfeat.math.activations import CODES


def setup(tp, m, d, dtype, seed=0, workers=2):
    rng = np.random.default_rng(seed)
    M = rng.random((tp, m)) < 0.5
    bits, S, Y, tabs, plan = masked.workspace(m, d, tp, dtype, workers)
    packed = np.zeros((tp // 8, m), np.uint8)
    for i in range(8):  # bit i of bits[g, j] is row 8 g + i, written out without np.packbits
        packed |= (M[i::8].astype(np.uint8) << i)
    bits[:] = packed
    Y[:tp, :d] = rng.standard_normal((tp, d))
    ref = M.T.astype(np.float64) @ Y[:tp, :d].astype(np.float64)
    return bits, S, Y, tabs, plan, ref


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tp,m,d", [(8, 1, 1), (24, 3, 7), (40, 17, 33), (72, 65, 65), (136, 33, 129), (1000, 7, 3)])
def test_matches_numpy(tp, m, d, dtype):
    bits, S, Y, tabs, plan, ref = setup(tp, m, d, dtype)
    masked.masked_tn(bits, Y, S, tabs, tp, False, plan)
    # float32: each entry sums tp / 4 table rows of 4-row sums, as a GEMM would sum tp products
    tol = 1e-14 if dtype == np.float64 else 4 * np.finfo(np.float32).eps * np.sqrt(tp)
    scale = np.abs(ref).max()
    assert np.abs(S[:, :d] - ref).max() <= tol * scale
    masked.masked_tn(bits, Y, S, tabs, tp, True, plan)  # accumulate: S + M^T Y
    assert np.abs(S[:, :d] - 2 * ref).max() <= 2 * tol * scale


def test_padding_rows_are_never_selected():
    """Rows of Y past tp's data (bit 0) may hold anything, even inf and nan."""
    bits, S, Y, tabs, plan, _ = setup(16, 9, 5, np.float64)
    bits[1] &= np.uint8(0x0F)  # rows 12..15 unused
    M = np.zeros((16, 9), bool)
    for i in range(8):
        M[i::8] = (bits >> i) & 1
    keep = M.T.astype(np.float64) @ Y[:16, :5]
    Y[12] = np.inf
    Y[13] = np.nan
    masked.masked_tn(bits, Y, S, tabs, 16, False, plan)
    assert np.all(np.isfinite(S))
    assert np.abs(S[:, :5] - keep).max() <= 1e-14 * np.abs(keep).max()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bit_identical_for_any_threads_and_split(dtype):
    tp, m, d = 200, 77, 70
    bits, S, Y, tabs, plan, _ = setup(tp, m, d, dtype, seed=3)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        masked.masked_tn(bits, Y, S, tabs, tp, False, plan)
        one = S.copy()
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        for skew in (1, 100, 10_000):  # worker 0 reported 1x, 100x, 10000x slower: uneven splits
            masked.masked_tn(bits, Y, S, tabs, tp, False, plan)
            nt = int(plan[-1])
            if nt == 2:
                plan[nt + 1], plan[nt + 2] = skew * 1000, 1000
            np.testing.assert_array_equal(S, one)
    finally:
        numba.set_num_threads(old)


def test_split_stays_a_partition():
    rng = np.random.default_rng(0)
    for nt in (1, 2, 3, 5):
        plan = np.zeros(2 * 5 + 2, np.int64)
        for units in (nt, nt + 1, 17, 1000):
            masked._split(plan, nt, units)  # first call: equal shares
            for _ in range(20):
                plan[nt + 1:2 * nt + 1] = rng.integers(1, 10**6, nt)
                masked._split(plan, nt, units)
                b = plan[:nt + 1]
                assert b[0] == 0 and b[-1] == units
                assert np.all(np.diff(b) >= 1), (nt, units, b)


def test_split_follows_speed():
    """A worker that took twice as long per row gets about a third of the rows after a few calls."""
    plan = np.zeros(6, np.int64)
    units = 300
    masked._split(plan, 2, units)
    for _ in range(12):
        own = np.diff(plan[:3])
        plan[3:5] = own * np.array([2000, 1000])  # cycles: worker 0 is half as fast
        masked._split(plan, 2, units)
    assert abs(plan[1] - units / 3) <= 2


def test_step_kernel_is_chosen_from_the_activation_table():
    """relu, relu_centered and linear (sigma' two-valued with sigma'(0) = the z < 0 value) use the bit
    product; abs (sigma'(0) = 0 between -1 and 1) and the smooth activations keep the GEMM."""
    step = {name for name, code in CODES.items() if emp.EMP_KIND_OF[code] == emp.KIND_STEP}
    assert step == {"relu", "relu_centered", "linear"}


@pytest.mark.parametrize("name", ["relu", "relu_centered", "linear"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_step_kernel_matches_gemm_kernel(name, dtype):
    """The same loss and gradients as the GEMM kernel (KIND_ALG) on the same activation, each kind's entry
    point called as ff.Empirical calls the one ``emp.entry_for`` picks. (The ALG kernels are compiled anyway
    for abs and he2/he3.)"""
    code = CODES[name]
    rng = np.random.default_rng(5)
    n, m, d = 301, 45, 70
    X = rng.standard_normal((n, d)).astype(dtype)
    y = rng.standard_normal(n).astype(dtype)
    W = (rng.standard_normal((m, d)) / np.sqrt(d)).astype(dtype)
    a = (rng.standard_normal(m) / np.sqrt(m)).astype(dtype)
    assert emp.entry_for(code) is emp.ENTRIES[emp.KIND_STEP]
    out = {}
    for kind in (emp.KIND_STEP, emp.KIND_ALG):
        ws = emp.workspace(n, m, d, dtype, tile=56)
        gW, ga, loss, z = np.empty_like(W), np.empty_like(a), np.empty(1), np.empty(0)
        no_lrs = np.empty((2, 0))  # the arguments' types as ff.Empirical passes them: the cached builds
        assert emp.ENTRIES[kind](W, a, X, y, np.empty(0, np.int64), code, 0, n, 0, no_lrs, 0, z, z, gW, ga, ws, loss,
                                emp.GRAD) == 1
        out[kind] = (loss[0], gW, ga)
    tol = 1e-13 if dtype == np.float64 else 2e-5
    (l0, gW0, ga0), (l1, gW1, ga1) = out[emp.KIND_ALG], out[emp.KIND_STEP]
    assert abs(l1 - l0) <= tol * abs(l0)
    assert np.abs(gW1 - gW0).max() <= tol * np.abs(gW0).max()
    assert np.abs(ga1 - ga0).max() <= tol * np.abs(ga0).max()
