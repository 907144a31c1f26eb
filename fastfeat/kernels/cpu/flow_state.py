"""The gradient-flow integrators' shared parts (``flow`` has the methods and their state): the slots of
the state arrays and the status codes, the stage buffers, the right-hand side (the fused population
gradient plus the regularizer's), the vector passes the methods combine stages with, and the dense
output's evaluation."""
import math

import numpy as np

from ._finite import finite
from ._jit import njit
from .common import add_reg_grad
from .population import parallel_loss_grad
from .tableaus import DOP853, DOPRI5, ERK_STAGES

RKC, AUTO = 2, 3
METHODS = {"dop853": DOP853, "dopri5": DOPRI5, "rkc": RKC, "auto": AUTO}
#: RKC, a second-order method, controls its local error per step: over a stiff flow of many steps its
#: global error grows like the local tolerance to the power 2/3 (measured: 0.5 rtol at rtol = 1e-4,
#: 2.6 rtol at 1e-6, 11 rtol at 1e-8, d = 10, m = 16, weight decay 1e-3, t = 2000). So it runs at
#: ``rtol * sqrt(rtol / RKC_TOL_REF)`` (and atol scaled alike): the delivered error stays near rtol
RKC_TOL_REF = 1e-5
#: ``advance``'s results: reached t_end; the step size fell below ``hmin``; ``max_steps`` attempted
#: steps were used up; the current state has no finite loss and gradient (``SWITCH_METHOD``: internal
#: to AUTO)
OK, UNDERFLOW, MAX_STEPS, BAD_STATE, SWITCH_METHOD = 0, 1, 2, 3, 4
#: ``advance``'s result when an accepted step passed ``t_log``: its dense output is ready (``dense_at``)
DENSE = 5

(T, H, MEM, HOLD, RHO, LOSS, FRESH, REJECT, MODE, H_OTHER, WIN_T0, ERK_RATE, RETRY_T, TRY_T0,
 D_T0, D_H, D_KIND, D_NEW) = range(18)
(ACC, REJ, EVALS, SINCE, SMAX, RHO_EVALS, STIFF, NONSTIFF, WIN_EV0, WIN_ACC0, SWITCHES, RKC_ACC,
 BACKOFF) = range(13)
ST_SIZE, CNT_SIZE = 18, 13
#: the interpolants of the dense output (``st[D_KIND]``)
D_NONE, D_DOP853, D_DOPRI5, D_HERMITE = 0, 1, 2, 3
#: rows of ``bufs`` after each method's own: the step's start, its interpolant's coefficient vectors
#: (DOP853: 7; DOPRI5: 4; the cubic Hermite: the end state and both gradients) and DOP853's 3 extra stages
DENSE_ROWS = 11

#: relative floor of the step size: a step below HMIN_REL * max(1, |t|) means the integration is stuck
HMIN_REL = 1e-14
#: RKC: accepted steps between spectral-radius estimates; iterations of one estimate at most
RHO_EVERY = 25
RHO_ITERS = 50
#: AUTO: DOP853 steps whose ``h * lambda`` estimate exceeds STIFF_HLAMB (in a row, up to NONSTIFF_RESET
#: steps below it) before the flow counts as stiff (Hairer's DOP853 test); RKC steps per cost comparison
STIFF_HLAMB = 6.1
STIFF_STEPS = 15
NONSTIFF_RESET = 6
AUTO_WINDOW = 25
#: AUTO: the row of ``bufs`` that keeps RKC's power-iteration direction (rows 0..15 are DOP853's)
EIG_AUTO = 16
CHUNK = 1024  # entries per parallel task in the vector passes


@njit
def dense_base(method):
    """The first of the ``DENSE_ROWS`` rows of the dense output (after the method's own stage buffers)."""
    if method == AUTO:
        return EIG_AUTO + 1
    return 6 if method == RKC else ERK_STAGES[method] + 4


@njit
def buffer_rows(method):
    """The number of stage buffers ``method`` uses (its own, then the dense output's)."""
    return dense_base(method) + DENSE_ROWS


def buffers(method, n):
    """The stage buffers of ``method`` for a state of ``n`` entries (rows of one array; allocated once)."""
    return np.zeros((buffer_rows(method), n))


def new_state():
    """(st, cnt) at time 0 with nothing computed yet."""
    return np.zeros(ST_SIZE), np.zeros(CNT_SIZE, np.int64)


def restart(st, cnt):
    """Forget the derivative and the controller's memory (the regularization strength changes here); the
    step size proposal is kept, RKC re-estimates the spectral radius."""
    st[FRESH] = 0.0
    st[MEM] = 0.0
    st[REJECT] = 0.0
    cnt[SINCE] = RHO_EVERY


@njit
def gradient(y, g, Wt, at, code, ws, reg, lam_a, lam_w):
    """g = grad (L + R) at the state ``y`` (both flat float64 vectors, (W row-major, a)); returns the
    loss (without noise), NaN when the loss or an entry of g is not finite."""
    d = Wt.shape[1]
    m = y.shape[0] // (d + 1)
    md = m * d
    W = y[:md].reshape((m, d))
    a = y[md:]
    gW = g[:md].reshape((m, d))
    ga = g[md:]
    loss = parallel_loss_grad(W, a, Wt, at, code, gW, ga, ws, np.bool_(True))
    ok = add_reg_grad(W, a, gW, ga, reg, lam_a, lam_w)
    if ok and finite(loss):
        return loss
    return np.nan


@njit
def refresh(y, g, st, cnt, Wt, at, code, ws, reg, lam_a, lam_w):
    """Make ``g`` the gradient at ``y`` and ``st[LOSS]`` its loss unless ``st[FRESH]`` says they are (counted
    in ``cnt[EVALS]``); returns whether they are finite."""
    if st[FRESH] == 0.0:
        cnt[EVALS] += 1
        loss = gradient(y, g, Wt, at, code, ws, reg, lam_a, lam_w)
        if not finite(loss):
            return False
        st[LOSS] = loss
        st[FRESH] = 1.0
    return True


@njit
def combine(y, K, coef, ns, h, out, big):
    """out = y - h sum_{j < ns} coef[j] K[j]; returns the number of entries of out that are not below
    ``big`` in magnitude (NaN included)."""
    n = y.shape[0]
    nch = (n + CHUNK - 1) // CHUNK
    bad = 0
    for c in range(nch):
        i0 = c * CHUNK
        i1 = min(i0 + CHUNK, n)
        for i in range(i0, i1):
            out[i] = 0.0
        for j in range(ns):
            cj = coef[j]
            if cj != 0.0:
                for i in range(i0, i1):
                    out[i] += cj * K[j, i]
        nb = 0
        for i in range(i0, i1):
            v = y[i] - h * out[i]
            out[i] = v
            nb += 0 if abs(v) < big else 1
        bad += nb
    return bad


@njit
def scaled_rms(u, v, y, rtol, atol):
    """sqrt(mean(((u_i - v_i) / (atol + rtol |y_i|))^2)); ``v`` None: of u_i alone."""
    n = u.shape[0]
    s = 0.0
    for i in range(n):
        e = u[i] if v is None else u[i] - v[i]
        s += (e / (atol + rtol * abs(y[i]))) ** 2
    return math.sqrt(s / n)


@njit
def axpy_to(y, h, g, out, big):
    """out = y - h g; returns the number of entries of out not below ``big`` in magnitude."""
    n = y.shape[0]
    bad = 0
    for i in range(n):
        v = y[i] - h * g[i]
        out[i] = v
        bad += 0 if abs(v) < big else 1
    return bad


@njit
def copy_to(src, dst):
    for i in range(src.shape[0]):
        dst[i] = src[i]


@njit
def min_step(t):
    """The smallest step size at time ``t`` before the integration counts as stuck."""
    return HMIN_REL * max(1.0, abs(t))


@njit
def sqdist(u, v):
    """sum_i (u_i - v_i)^2."""
    s = 0.0
    for i in range(u.shape[0]):
        s += (u[i] - v[i]) ** 2
    return s


@njit
def lincomb(row, K, coef, ns, scale):
    """row += scale * sum_{j < ns} coef[j] K[j]."""
    n = row.shape[0]
    for j in range(ns):
        c = scale * coef[j]
        if c != 0.0:
            Kj = K[j]
            for i in range(n):
                row[i] += c * Kj[i]


@njit
def hermite_rows(y0, y1, g0, g1, t, h, D, st):
    """The cubic Hermite interpolant of a step (both ends and their gradients: free, 3rd order)."""
    copy_to(y0, D[0])
    copy_to(y1, D[1])
    copy_to(g0, D[2])
    copy_to(g1, D[3])
    st[D_T0] = t
    st[D_H] = h
    st[D_KIND] = D_HERMITE
    st[D_NEW] = 1.0


@njit
def dense_at(method, tau, bufs, st, out):
    """out = the state at time ``tau`` inside the last step whose dense output was built (``advance``
    returned ``DENSE``), from its interpolant: DOP853's 7th-order one, DOPRI5's 4th-order one, or the
    cubic Hermite one (RKC)."""
    D = bufs[dense_base(method):]
    kind = st[D_KIND]
    h = st[D_H]
    th = (tau - st[D_T0]) / h
    n = out.shape[0]
    y0 = D[0]
    if kind == D_DOP853:
        for i in range(n):
            v = 0.0
            for q in range(7):  # Horner-like in th and 1 - th, from the highest vector down
                v += D[7 - q, i]
                v *= th if q % 2 == 0 else 1.0 - th
            out[i] = y0[i] + v
    elif kind == D_DOPRI5:
        for i in range(n):
            v = 0.0
            for k in range(3, -1, -1):
                v = (v + D[1 + k, i]) * th
            out[i] = y0[i] + v
    elif kind == D_HERMITE:
        y1, g0, g1 = D[1], D[2], D[3]
        for i in range(n):
            dy = y1[i] - y0[i]
            out[i] = ((1.0 - th) * y0[i] + th * y1[i]
                      + th * (th - 1.0) * ((1.0 - 2.0 * th) * dy - (th - 1.0) * h * g0[i] - th * h * g1[i]))
    else:
        raise ValueError("no dense output was built: advance did not return DENSE")
