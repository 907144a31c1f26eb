"""The regularizers' terms, written once for every CPU and GPU kernel.

Codes (the integers the kernels take): ``REG_NONE``; ``REG_WEIGHT_DECAY``, ``R = lam_a/2 |a|^2 +
lam_w/2 |W|_F^2``; ``REG_PATH_NORM``, ``R = lam_w sum_j |a_j| |w_j|`` (subgradient 0 where ``a_j = 0``
or ``w_j = 0``). Both are sums over neurons, so one scalar function of a neuron's ``a_j`` and ``|w_j|``
gives everything a kernel needs: ``reg_terms`` is compiled for the CPU (``numba.njit``) and the GPU
(``numba.cuda.jit(device=True)``) from this one source. A new regularizer is a new code, its branch
here, and its user-facing class in ``fastfeat.regularizers``.
"""
from collections import namedtuple

import numpy as np

REG_NONE, REG_WEIGHT_DECAY, REG_PATH_NORM = 0, 1, 2

#: per code: the name, and whether its terms need |w_j| (kernels that can avoid the norm do)
Regularizer = namedtuple("Regularizer", "name needs_norm")
REG_SPEC = {
    REG_NONE: Regularizer("none", False),
    REG_WEIGHT_DECAY: Regularizer("weight_decay", False),
    REG_PATH_NORM: Regularizer("path_norm", True),
}
#: NEEDS_NORM[code] = REG_SPEC[code].needs_norm, as an array the kernels index
NEEDS_NORM = np.array([REG_SPEC[c].needs_norm for c in range(len(REG_SPEC))], np.bool_)


def reg_terms(reg, aj, nw, lam_a, lam_w, zero):
    """(dR/da_j, c_j) with dR/dw_j = c_j w_j, for a neuron with second-layer weight ``aj`` and first-layer
    norm ``nw = |w_j|`` (ignored by codes whose ``needs_norm`` is False). Arithmetic stays in the type of
    the arguments; pass ``zero`` of that type (0 in float32 kernels keeps them in float32)."""
    if reg == REG_WEIGHT_DECAY:
        return lam_a * aj, lam_w
    if reg == REG_PATH_NORM and aj != zero and nw > zero:
        return (lam_w * nw if aj > zero else -(lam_w * nw)), lam_w * (abs(aj) / nw)
    return zero, zero


def reg_value(reg, aj, nw, lam_a, lam_w):
    """R_j, the regularizer's part for one neuron (``R = sum_j R_j``); float64 arithmetic."""
    if reg == REG_WEIGHT_DECAY:
        return 0.5 * (lam_a * aj * aj + lam_w * nw * nw)
    if reg == REG_PATH_NORM:
        return lam_w * abs(aj) * nw
    return 0.0
