"""Kernels every objective shares: row norms, the regularizer gradient, the guarded update.

Regularizer codes: 0 none, 1 weight decay ``lam_a/2 |a|^2 + lam_w/2 |W|_F^2``,
2 path norm ``lam_w * sum_j |a_j| |w_j|`` (subgradient 0 where ``a_j = 0`` or ``w_j = 0``).
"""
import math

import numba
import numpy as np
from numba import prange

from ._finite import finite
from ._jit import njit, pnjit

REG_NONE, REG_WEIGHT_DECAY, REG_PATH_NORM = 0, 1, 2


@pnjit
def row_norms(W, out):
    """out[j] = |W[j]| (accumulated in float64)."""
    m, d = W.shape
    for j in prange(m):
        s = 0.0
        for i in range(d):
            s += np.float64(W[j, i]) * W[j, i]
        out[j] = math.sqrt(s)


@pnjit
def add_reg_grad(W, a, gW, ga, reg, lam_a, lam_w):
    """gW, ga += gradient of the regularizer; returns True when every entry of gW, ga is finite."""
    m, d = W.shape
    bad = 0
    for j in prange(m):
        aj = a[j]
        if reg == 1:
            ga[j] += lam_a * aj
            for i in range(d):
                gW[j, i] += lam_w * W[j, i]
        elif reg == 2:
            s = 0.0
            for i in range(d):
                s += np.float64(W[j, i]) * W[j, i]
            nw = math.sqrt(s)
            if aj != 0 and nw > 0:
                ga[j] += lam_w * nw * (1.0 if aj > 0 else -1.0)
                c = lam_w * abs(aj) / nw
                for i in range(d):
                    gW[j, i] += c * W[j, i]
        ok = finite(ga[j])
        for i in range(d):
            ok = ok and finite(gW[j, i])
        if not ok:
            bad += 1
    return bad == 0


@pnjit
def sgd_update(W, a, gW, ga, lr):
    """W -= lr gW, a -= lr ga, in place."""
    m, d = W.shape
    lr_ = W.dtype.type(lr)
    for j in prange(m):
        a[j] -= lr_ * ga[j]
        for i in range(d):
            W[j, i] -= lr_ * gW[j, i]


@njit
def reg_value(W, a, reg, lam_a, lam_w):
    """The regularizer's value (float64)."""
    if reg == 0:
        return 0.0
    m, d = W.shape
    sa = 0.0
    sw = 0.0
    for j in range(m):
        s = 0.0
        for i in range(d):
            s += np.float64(W[j, i]) * W[j, i]
        if reg == 1:
            sa += np.float64(a[j]) * a[j]
            sw += s
        else:
            sw += abs(np.float64(a[j])) * math.sqrt(s)
    if reg == 1:
        return 0.5 * (lam_a * sa + lam_w * sw)
    return lam_w * sw
