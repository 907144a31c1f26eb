"""The branch-free arccos / arcsin of the CPU activation tables (``fastfeat.math.activations``): within a
few ulp of libm's in both precisions over [-1, 1] and at its awkward points, NaN outside it, and the
polynomial they rest on within its stated error of the function it approximates (computed to 50 digits)."""
import math
from decimal import Decimal, getcontext

import numba
import numpy as np
import pytest

from fastfeat.kernels.cpu._jit import TABLE32, TABLE64
from fastfeat.math.activations import ASIN_P32, ASIN_P64

TABLES = {"float64": TABLE64, "float32": TABLE32}
#: the largest error (ulp of the correctly rounded result) measured on a dense grid: acos 2.0 and asin
#: 3.0 in float64, 1.3 and 2.5 in float32 (Zen 4, AVX-512 and AVX2 builds); a little margin for builds
#: that contract or reassociate differently
MAX_ULP = {("float64", "acos"): 2.5, ("float64", "asin"): 3.5, ("float32", "acos"): 2.0, ("float32", "asin"): 3.0}


def _evaluate(dtype, x):
    tab = TABLES[dtype]
    acos, asin = tab.acos, tab.asin

    @numba.njit
    def both(x, out_acos, out_asin):
        for i in range(x.size):  # the loop the pair kernels run: vectorized
            out_acos[i] = acos(x[i])
            out_asin[i] = asin(x[i])

    oc, os_ = np.empty_like(x), np.empty_like(x)
    both(x, oc, os_)
    return oc, os_


def _points(dtype):
    ft = np.dtype(dtype).type
    tiny = np.finfo(ft).smallest_subnormal
    special = [0.0, -0.0, 0.5, -0.5, 1.0, -1.0, tiny, -tiny, np.finfo(ft).tiny, 1e-30, -1e-30]
    for v in (1.0, -1.0, 0.5, -0.5, 0.0):  # the floats next to each endpoint and to the branch point
        special += [np.nextafter(ft(v), ft(2)), np.nextafter(ft(v), ft(-2))]
    grid = np.linspace(-1.0, 1.0, 200_001)
    near_one = 1.0 - np.geomspace(np.finfo(ft).eps / 2, 0.5, 2000)  # where acos is small
    pts = np.concatenate([grid, near_one, -near_one, special]).astype(ft)
    return pts[np.abs(pts) <= 1]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_acos_asin_within_a_few_ulp_of_libm(dtype):
    x = _points(dtype)
    got = dict(zip(("acos", "asin"), _evaluate(dtype, x)))
    for name, ref_fn in (("acos", math.acos), ("asin", math.asin)):
        ref = np.array([ref_fn(float(v)) for v in x])  # float64 libm: well below a float32 ulp
        ulp = np.spacing(np.abs(ref).astype(dtype)).astype(np.float64)
        err = np.abs(got[name].astype(np.float64) - ref) / ulp
        worst = int(np.argmax(err))
        assert err[worst] <= MAX_ULP[dtype, name], (name, dtype, float(x[worst]), float(err[worst]))
    ft = np.dtype(dtype).type
    # exact where it matters for the kernels: the ends and the middle
    oc, os_ = _evaluate(dtype, np.array([1.0, -1.0, 0.0, -0.0], dtype))
    assert oc[0] == 0.0 and oc[1] == ft(math.pi) and oc[2] == ft(math.pi / 2) and oc[3] == ft(math.pi / 2)
    assert os_[0] == ft(math.pi / 2) and os_[1] == -ft(math.pi / 2) and os_[2] == 0.0
    assert math.copysign(1.0, os_[3]) == -1.0  # asin(-0) = -0


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_nan_outside_the_domain(dtype):
    ft = np.dtype(dtype).type
    x = np.array([np.nan, np.nextafter(ft(1), ft(2)), np.nextafter(ft(-1), ft(-2)), 2.0, -np.inf], dtype)
    oc, os_ = _evaluate(dtype, x)
    assert np.all(np.isnan(oc)) and np.all(np.isnan(os_))


def _asin_over(u):
    """(asin(sqrt(u)) / sqrt(u) - 1) / u to 50 digits (the Taylor series of asin; u <= 1/4)."""
    getcontext().prec = 60
    u = Decimal(u)
    if u == 0:
        return Decimal(1) / 6
    term = total = Decimal(1)
    n = 0
    while abs(term) > Decimal(10) ** -55:
        n += 1
        term = term * u * (2 * n - 1) * (2 * n - 1) / ((2 * n) * (2 * n + 1))
        total += term
    return (total - 1) / u


@pytest.mark.parametrize("coef, bound", [(ASIN_P64, 2e-15), (ASIN_P32, 4e-7)], ids=["float64", "float32"])
def test_polynomial_within_its_stated_error(coef, bound):
    """The coefficients approximate the function they were fitted to (relative error, in exact decimal
    arithmetic of the float coefficients) as stated beside them."""
    getcontext().prec = 60
    worst = 0.0
    for u in np.linspace(0.0, 0.25, 801):
        p = Decimal(0)
        for c in reversed(coef):
            p = p * Decimal(float(u)) + Decimal(c)
        target = _asin_over(float(u))
        worst = max(worst, float(abs(p - target) / target))
    assert worst <= bound, worst
