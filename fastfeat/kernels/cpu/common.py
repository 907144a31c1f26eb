"""Kernels every objective shares: row norms, the regularizer gradient and value, the guarded update.

The divergence guard (``fastfeat.math.guard``, the one rule of every kernel): a step is taken only
when every updated weight stays below ``guard_limit`` (``max_float / 4``) in magnitude, checked as
``fits(w, g, lr, limit)``, ``|w| + lr |g| < limit``, for every entry before anything is written
(``guarded_update``). The bound holds whatever the rounding of ``w - lr g`` (fused or not), is
false for NaN and inf gradients, and so keeps every weight finite; a refused step leaves W, a as they were.

Generic in the float type (float32 or float64 arrays, one type per call) and cached on disk. The
regularizer's terms come from ``scalar.reg_terms`` / ``scalar.reg_value``, the one definition in
``fastfeat.math.regularizer``, whose codes are re-exported here: ``REG_NONE``; ``REG_WEIGHT_DECAY``,
``lam_a/2 |a|^2 + lam_w/2 |W|_F^2``; ``REG_PATH_NORM``, ``lam_w * sum_j |a_j| |w_j|`` (subgradient 0
where ``a_j = 0`` or ``w_j = 0``).
"""
import math

import numpy as np
from numba import prange

from ...math.regularizer import NEEDS_NORM, REG_NONE, REG_PATH_NORM, REG_WEIGHT_DECAY  # noqa: F401
from ._finite import finite
from ._jit import njit, pnjit
from .scalar import fits, guard_limit, like, lr_pair, reg_terms
from .scalar import reg_value as _neuron_reg_value



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
    """gW, ga += gradient of the regularizer; returns True when every entry of gW, ga is finite.

    The terms (``dR/da_j``, and ``c_j`` with ``dR/dw_j = c_j w_j``) are computed in float64 from the
    float64 norm |w_j| (only for codes that need it) and added to the arrays' entries."""
    m, d = W.shape
    needs_norm = 0 <= reg < NEEDS_NORM.size and NEEDS_NORM[reg]
    bad = 0
    for j in prange(m):
        if reg != REG_NONE:
            nw = 0.0
            if needs_norm:
                s = 0.0
                for i in range(d):
                    s += np.float64(W[j, i]) * W[j, i]
                nw = math.sqrt(s)
            da, c = reg_terms(reg, a[j], nw, lam_a, lam_w, 0.0)
            ga[j] += da
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
    """W -= lr_W gW, a -= lr_a ga, in place; ``lr`` is one step size for both or a pair (lr_W, lr_a),
    converted to the arrays' float type. A layer whose step size is 0 is not touched (bit for bit)."""
    m, d = W.shape
    lw, la = lr_pair(lr)
    lw_ = like(W, lw)
    la_ = like(W, la)
    for j in prange(m):
        if la_ != 0:
            a[j] -= la_ * ga[j]
        if lw_ != 0:
            for i in range(d):
                W[j, i] -= lw_ * gW[j, i]


@pnjit
def update_fits(W, a, gW, ga, lr):
    """Whether every entry of W - lr_W gW and a - lr_a ga stays below ``guard_limit`` (``|w| + lr |g| <
    limit``; false when an entry of gW, ga is NaN or inf, also with a step size 0: 0 * inf is NaN)."""
    m, d = W.shape
    lw, la = lr_pair(lr)
    lw_ = like(W, lw)
    la_ = like(W, la)
    big = guard_limit(W)
    bad = 0
    for j in prange(m):
        nb = 0 if fits(a[j], ga[j], la_, big) else 1
        for i in range(d):  # counted, not short-circuited, so that the loop vectorizes
            nb += 0 if fits(W[j, i], gW[j, i], lw_, big) else 1
        bad += nb
    return bad == 0


@njit
def guarded_update(W, a, gW, ga, lr):
    """``sgd_update`` when ``update_fits``; returns whether the step was taken (W, a unchanged if not).
    ``lr``: one step size, or a pair (lr_W, lr_a)."""
    if not update_fits(W, a, gW, ga, lr):
        return False
    sgd_update(W, a, gW, ga, lr)
    return True


@njit
def reg_value(W, a, reg, lam_a, lam_w):
    """The regularizer's value (float64): the sum over neurons of ``scalar.reg_value``."""
    if reg == REG_NONE:
        return 0.0
    m, d = W.shape
    total = 0.0
    for j in range(m):
        s = 0.0
        for i in range(d):
            s += np.float64(W[j, i]) * W[j, i]
        total += _neuron_reg_value(reg, np.float64(a[j]), math.sqrt(s), lam_a, lam_w)
    return total
