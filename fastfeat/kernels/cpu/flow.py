"""Gradient flow of the exact population objective: adaptive Runge-Kutta integrators, compiled.

The flow ``dy/dt = -g(y)``, ``g = grad (L + R)``, is integrated on ``y = (W row-major, a)``, one float64
vector of ``n = m d + m`` entries, from the time in ``st[T]`` to ``t_end`` by one compiled call of
``advance``: every step, every stage, the error estimate and the step-size control run inside it, and
the right-hand side is the fused population gradient (``population.loss_grad`` followed by
``common.add_reg_grad``) evaluated on views of the stage buffers, so nothing is allocated while it runs.
The caller allocates ``bufs = buffers(method, n)`` once and keeps ``st`` / ``cnt`` (``new_state``)
between calls: the step size, the derivative at the current state (first-same-as-last), the
controller's memory and the spectral-radius estimate carry over from one logging interval to the next.

Methods (``METHODS``):

- ``DOP853``: the explicit Dormand-Prince pair of orders 8 and 5(3) (Hairer, Norsett & Wanner, *Solving
  Ordinary Differential Equations I*, 2nd ed., sec. II.10 and the code DOP853). 12 stages; the derivative
  at the new state is computed once a step is accepted and is the first stage of the next step, so an
  accepted step costs 12 gradients and a rejected one 11. Error: Hairer's combination of the 5th- and
  3rd-order estimates, ``err = |h| E5^2 / sqrt(n (E5^2 + 0.01 E3^2))``, with the scaled sums of squares
  ``E = sum_i (sum_j e_j k_ij / sk_i)^2``, ``sk_i = atol + rtol max(|y_i|, |y_new,i|)``.
- ``DOPRI5``: Dormand-Prince 5(4), 7 stages, the last at the new state (first-same-as-last: 6 gradients a
  step, also when rejected); error the RMS norm of the embedded difference.
  (The coefficients of both pairs and of their dense output are in ``tableaus``.)
- ``RKC``: the second-order Runge-Kutta-Chebyshev method of Sommeijer, Shampine & Verwer (J. Comput.
  Appl. Math. 88, 1998) with damping 2/13, for the stiff end of training. The Jacobian of a gradient
  flow is minus the Hessian, symmetric, so its spectrum is real, and RKC's stability region covers the
  real interval [-0.653 s^2, 0] with s stages: the step is limited by accuracy, not by the largest
  curvature. s = 1 + floor(sqrt(1 + 1.54 h rho)) from the spectral radius rho, estimated by a nonlinear
  power iteration on gradient differences (``spectral_radius``; every 25 accepted steps, after a rejection
  and at schedule changes); error estimate ``(12 (y_n - y_n+1) + 6 h (f_n + f_n+1)) / 15``; step control
  with the method's own error-per-step rule. s gradients a step (the last one, at the new state, is the
  next step's first).
- ``AUTO``: DOP853 until it is held at its stability limit, then RKC while that costs fewer gradients
  per unit time. After every accepted DOP853 step Hairer's stiffness test estimates ``h lambda`` from
  the new state and the last stage (both at ``t + h``): ``h |g(Y_new) - g(Y_12)| / |Y_new - Y_12|``;
  ``STIFF_STEPS`` steps above ``STIFF_HLAMB`` (fewer than ``NONSTIFF_RESET`` below it in between) switch to
  RKC at the accepted state, with DOP853's step size as RKC's first and DOP853's gradients per unit time
  over that stiff stretch recorded. Every ``AUTO_WINDOW`` accepted RKC steps, RKC's gradients per unit
  time since it took over (spectral estimates and the short steps after a change of the weight decay
  included, spread over the whole try) are compared with it: when higher, DOP853 takes over again with
  its own last step size, and RKC is not tried before ``2^k`` times the length of the failed try has
  passed (k the number of losses in a row). Both methods keep ``g(y)`` in ``bufs[0]``, so
  a switch costs no gradient; the controller's memory restarts. RKC's power-iteration direction lives
  in row ``_EIG_AUTO`` (rows 0..15 are DOP853's).

Step-size control for the two explicit pairs is Hairer's (DOP853 / DOPRI5): ``fac = err^expo /
facold^beta`` (``expo = 1/8`` and ``beta = 0`` for DOP853; ``expo = 0.2 - 0.75 beta`` with the Lund
stabilization ``beta = 0.04`` for DOPRI5), safety 0.9, the new step between ``fac1 h`` and ``fac2 h``
(1/3 .. 6 for DOP853, 1/5 .. 10 for DOPRI5), no growth right after a rejection, and the automatic
initial step of Hairer et al. sec. II.4 with RMS norms. A step whose stages leave the finite range (a
state entry reaching ``big``, a non-finite loss or gradient) is refused like a failed error test and
shrunk by ``fac1`` (RKC: by 10). When a refused or rejected step's successor would be shorter than
``HMIN_REL * max(1, |t|)`` the call ends with ``UNDERFLOW``. The last step before ``t_end`` is clamped
to end on it exactly; the proposal it was clamped from is kept for the next interval unless the
clamped step asked for a smaller one.

Dense output (``t_log``): logged times do not end steps. The first accepted step that passes ``t_log``
builds its interpolant before its start is overwritten (rows ``dense_base(method)`` onwards of ``bufs``)
and ``advance`` returns ``DENSE``; ``dense_at`` evaluates it at any time inside the step. DOP853: Hairer's
7th-order continuous extension (3 extra gradients at the step's start; a step whose extra stages leave
the finite range falls back to the cubic Hermite interpolant); DOPRI5: Shampine's 4th-order one, from
the stages; RKC: the cubic Hermite interpolant through both ends and their gradients.

The vector passes (stage combinations, error norms, the RKC recurrences) are serial loops over chunks
of the state that LLVM vectorizes: they cost O(n) per stage against the gradient's O(m (m + m*) d), a
few percent of a step at m = 256 and less beyond, and a parallel region each would cost more in
thread wake-ups than it saves. The gradient itself runs on all threads.

State arrays (``new_state``): ``st`` float64 — ``T`` time, ``H`` proposed step (0: choose one),
``MEM`` the controller's memory (Hairer's facold; RKC's previous error, 0 after a restart), ``HOLD``
(RKC: the previous step), ``RHO`` the spectral-radius estimate, ``LOSS`` the loss at ``y`` (valid with
``FRESH``), ``FRESH`` 1 when ``bufs[0]`` holds ``g(y)``, ``REJECT`` 1 after a rejected step; ``cnt``
int64 — ``ACC`` accepted steps, ``REJ`` rejected ones, ``EVALS`` gradient evaluations, ``SINCE`` (RKC)
accepted steps since the last spectral-radius estimate, ``SMAX`` (RKC) the most stages used,
``RHO_EVALS`` (RKC) the gradient evaluations spent on spectral-radius estimates. AUTO adds ``st``:
``MODE`` (0 DOP853, 1 RKC), ``H_OTHER`` the other method's step size, ``WIN_T0`` the start of DOP853's
stiff stretch, ``ERK_RATE`` DOP853's stiff gradients per unit time, ``RETRY_T`` the earliest time of the
next try of RKC, ``TRY_T0`` the start of the current try; ``cnt``: ``STIFF`` / ``NONSTIFF`` the stiffness
test's counters, ``WIN_EV0`` evaluations at the start of the stiff stretch (DOP853) or of the try (RKC),
``WIN_ACC0`` accepted steps at the last comparison, ``SWITCHES``,
``RKC_ACC`` accepted RKC steps, ``BACKOFF`` RKC's losses in a row.
``restart`` resets the controller's memory and the derivative (called where the regularization
strength changes: no step crosses such a point).
"""
import math

import numpy as np

from ._finite import finite
from ._jit import njit, serial_build
from .common import add_reg_grad
from .population import parallel_loss_grad
from .tableaus import (DENSE5_P, DENSE853_D, DENSE853_STAGES, DOP853, DOPRI5, ERK_A, ERK_B, ERK_BETA, ERK_E3,
                       ERK_E5, ERK_EXPO, ERK_FAC1, ERK_FAC2, ERK_ORDER, ERK_STAGES, SAFE)

RKC, AUTO = 2, 3
METHODS = {"dop853": DOP853, "dopri5": DOPRI5, "rkc": RKC, "auto": AUTO}
#: RKC, a second-order method, controls its local error per step: over a stiff flow of many steps its
#: global error grows like the local tolerance to the power 2/3 (measured: 0.5 rtol at rtol = 1e-4,
#: 2.6 rtol at 1e-6, 11 rtol at 1e-8, d = 10, m = 16, weight decay 1e-3, t = 2000). So it runs at
#: ``rtol * sqrt(rtol / RKC_TOL_REF)`` (and atol scaled alike): the delivered error stays near rtol
RKC_TOL_REF = 1e-5
#: ``advance``'s results: reached t_end; the step size fell below ``hmin``; ``max_steps`` attempted
#: steps were used up; the current state has no finite loss and gradient (``_SWITCH``: internal to AUTO)
OK, UNDERFLOW, MAX_STEPS, BAD_STATE, _SWITCH = 0, 1, 2, 3, 4
#: ``advance``'s result when an accepted step passed ``t_log``: its dense output is ready (``dense_at``)
DENSE = 5

(T, H, MEM, HOLD, RHO, LOSS, FRESH, REJECT, MODE, H_OTHER, WIN_T0, ERK_RATE, RETRY_T, TRY_T0,
 D_T0, D_H, D_KIND, D_NEW) = range(18)
(ACC, REJ, EVALS, SINCE, SMAX, RHO_EVALS, STIFF, NONSTIFF, WIN_EV0, WIN_ACC0, SWITCHES, RKC_ACC,
 BACKOFF) = range(13)
_ST_SIZE, _CNT_SIZE = 18, 13
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
_EIG_AUTO = 16
_CH = 1024  # entries per parallel task in the vector passes


@njit
def dense_base(method):
    """The first of the ``DENSE_ROWS`` rows of the dense output (after the method's own stage buffers)."""
    if method == AUTO:
        return _EIG_AUTO + 1
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
    return np.zeros(_ST_SIZE), np.zeros(_CNT_SIZE, np.int64)


def restart(st, cnt):
    """Forget the derivative and the controller's memory (the regularization strength changes here); the
    step size proposal is kept, RKC re-estimates the spectral radius."""
    st[FRESH] = 0.0
    st[MEM] = 0.0
    st[REJECT] = 0.0
    cnt[SINCE] = RHO_EVERY


# --- the right-hand side and the vector passes --------------------------------------------------------

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
def combine(y, K, coef, ns, h, out, big):
    """out = y - h sum_{j < ns} coef[j] K[j]; returns the number of entries of out that are not below
    ``big`` in magnitude (NaN included)."""
    n = y.shape[0]
    nch = (n + _CH - 1) // _CH
    bad = 0
    for c in range(nch):
        i0 = c * _CH
        i1 = min(i0 + _CH, n)
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
def erk_error(y, yn, K, e5, e3, ns, rtol, atol, s5, s3):
    """(E5, E3): sums over entries of ((sum_j e5_j K_ji) / sk_i)^2 and the same with e3, with
    sk_i = atol + rtol max(|y_i|, |yn_i|); ``s5``, ``s3`` are scratch vectors."""
    n = y.shape[0]
    nch = (n + _CH - 1) // _CH
    t5 = 0.0
    t3 = 0.0
    for c in range(nch):
        i0 = c * _CH
        i1 = min(i0 + _CH, n)
        for i in range(i0, i1):
            s5[i] = 0.0
            s3[i] = 0.0
        for j in range(ns):
            c5 = e5[j]
            c3 = e3[j]
            for i in range(i0, i1):
                s5[i] += c5 * K[j, i]
                s3[i] += c3 * K[j, i]
        p5 = 0.0
        p3 = 0.0
        for i in range(i0, i1):
            sk = atol + rtol * max(abs(y[i]), abs(yn[i]))
            p5 += (s5[i] / sk) ** 2
            p3 += (s3[i] / sk) ** 2
        t5 += p5
        t3 += p3
    return t5, t3


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
def _hmin(t):
    """The smallest step size at time ``t`` before the integration counts as stuck."""
    return HMIN_REL * max(1.0, abs(t))


@njit
def _sqdist(u, v):
    """sum_i (u_i - v_i)^2."""
    s = 0.0
    for i in range(u.shape[0]):
        s += (u[i] - v[i]) ** 2
    return s


@njit
def _stiff_count(h, num, den, st, cnt):
    """AUTO, after an accepted DOP853 step of size ``h``: Hairer's stiffness test, ``h * lambda`` with
    ``lambda^2 = num / den`` the squared ratio of the gradients' and the states' difference between the new
    state and the last stage. Returns whether the flow has been stiff for ``STIFF_STEPS`` steps and RKC
    may be tried now; the explicit method's cost is measured from the start of the stiff stretch."""
    hl = h * math.sqrt(num / den) if den > 0.0 else 0.0
    if hl > STIFF_HLAMB:
        cnt[NONSTIFF] = 0
        cnt[STIFF] += 1
        if cnt[STIFF] == 1:
            st[WIN_T0] = st[T]
            cnt[WIN_EV0] = cnt[EVALS]
        return cnt[STIFF] >= STIFF_STEPS and st[T] >= st[RETRY_T] and st[T] > st[WIN_T0]
    cnt[NONSTIFF] += 1
    if cnt[NONSTIFF] >= NONSTIFF_RESET:
        cnt[STIFF] = 0
    return False


@njit
def _switch(st, cnt):
    """AUTO: hand the integration from one method to the other at the current (accepted) state. The
    derivative at the state is kept (both methods hold it in ``bufs[0]``), the controller's memory is
    reset. DOP853 -> RKC keeps the step size and records DOP853's cost per unit time; RKC -> DOP853 takes
    back DOP853's last step size and waits before the next try (twice as long after each loss)."""
    t = st[T]
    cnt[SWITCHES] += 1
    st[MEM] = 0.0
    st[REJECT] = 0.0
    cnt[STIFF] = 0
    cnt[NONSTIFF] = 0
    if st[MODE] == 0.0:
        st[ERK_RATE] = (cnt[EVALS] - cnt[WIN_EV0]) / (t - st[WIN_T0])
        st[H_OTHER] = st[H]
        st[MODE] = 1.0
        st[RHO] = 0.0
        cnt[SINCE] = RHO_EVERY
        st[TRY_T0] = t
        cnt[WIN_EV0] = cnt[EVALS]
        cnt[WIN_ACC0] = cnt[ACC]
    else:
        h = st[H]
        st[H] = st[H_OTHER]
        st[H_OTHER] = h
        st[MODE] = 0.0
        cnt[BACKOFF] += 1
        st[RETRY_T] = t + 2.0 ** cnt[BACKOFF] * (t - st[TRY_T0])


# --- the explicit pairs -------------------------------------------------------------------------------

@njit(inline="always")
def _erk_initial_step(method, y, bufs, st, cnt, span, Wt, at, code, ws, reg, lam_a, lam_w, rtol, atol, big):
    """Hairer's starting step (RMS norms), at most ``span``; 0 when no finite trial state was found."""
    S = ERK_STAGES[method]
    g0 = bufs[0]
    Y = bufs[S]
    G = bufs[S + 1]
    dnf = scaled_rms(g0, None, y, rtol, atol)
    dny = scaled_rms(y, None, y, rtol, atol)
    if dnf > 1e-5 and dny > 1e-5:
        h = 0.01 * dny / dnf
    else:
        h = 1e-6
    h = min(h, span)
    hmin = _hmin(st[T])
    while True:
        if axpy_to(y, h, g0, Y, big) == 0:
            cnt[EVALS] += 1
            if finite(gradient(Y, G, Wt, at, code, ws, reg, lam_a, lam_w)):
                break
        h *= 0.1
        if h < hmin:
            return 0.0
    der2 = scaled_rms(G, g0, y, rtol, atol) / h
    der12 = max(der2, dnf)
    if der12 > 1e-15:
        h1 = (0.01 / der12) ** (1.0 / ERK_ORDER[method])
    else:
        h1 = max(1e-6, h * 1e-3)
    return min(100.0 * h, h1, span)


@njit(inline="always")
def _erk(method, t_end, t_log, dbase, y, bufs, st, cnt, Wt, at, code, ws, reg, lam_a, lam_w, rtol, atol, big,
         max_steps, detect):
    S = ERK_STAGES[method]
    A = ERK_A[method]
    B = ERK_B[method]
    E5 = ERK_E5[method]
    E3 = ERK_E3[method]
    expo = ERK_EXPO[method]
    beta = ERK_BETA[method]
    fac1 = ERK_FAC1[method]
    fac2 = ERK_FAC2[method]
    fsal_stage = method == DOPRI5  # the last stage is the new state
    n = y.shape[0]
    K = bufs[:S]
    Y = bufs[S]        # stage state, then scratch of the error estimate
    Yn = bufs[S + 1]   # the new state
    Er = bufs[S + 2]   # scratch of the error estimate
    Gn = bufs[S + 3]   # DOP853: the gradient at the new state
    while st[T] < t_end:
        # first, before any work: a call stopped here and called again continues bit for bit
        if cnt[ACC] + cnt[REJ] >= max_steps:
            return MAX_STEPS
        t = st[T]
        if st[FRESH] == 0.0:
            cnt[EVALS] += 1
            loss0 = gradient(y, K[0], Wt, at, code, ws, reg, lam_a, lam_w)
            if not finite(loss0):
                return BAD_STATE
            st[LOSS] = loss0
            st[FRESH] = 1.0
        if st[MEM] <= 0.0:
            st[MEM] = 1e-4
        if st[H] <= 0.0:
            st[H] = _erk_initial_step(method, y, bufs, st, cnt, t_end - t, Wt, at, code, ws, reg, lam_a, lam_w,
                                      rtol, atol, big)
            if st[H] <= 0.0:
                return UNDERFLOW
        h_prop = st[H]
        h = h_prop
        last = False
        if 1.01 * h >= t_end - t:
            h = t_end - t
            last = True
        ok = True
        lossn = np.nan
        for i in range(1, S):
            target = Yn if (fsal_stage and i == S - 1) else Y
            if combine(y, K, A[i], i, h, target, big) != 0:
                ok = False
                break
            cnt[EVALS] += 1
            li = gradient(target, K[i], Wt, at, code, ws, reg, lam_a, lam_w)
            if not finite(li):
                ok = False
                break
            lossn = li
        if ok and not fsal_stage:
            ok = combine(y, K, B, S, h, Yn, big) == 0
        stden = 0.0
        if ok and detect:  # Hairer's stiffness test: the last stage and the new state are both at t + h
            stden = _sqdist(Yn, Y)
        err = np.inf
        if ok:
            e5, e3 = erk_error(y, Yn, K, E5, E3, S, rtol, atol, Er, Y)
            if fsal_stage:
                err = abs(h) * math.sqrt(e5 / n)
            else:
                deno = e5 + 0.01 * e3
                if deno <= 0.0:
                    deno = 1.0
                err = abs(h) * e5 * math.sqrt(1.0 / (n * deno))
            if not finite(err):
                ok = False
        if ok and err <= 1.0 and not fsal_stage:
            cnt[EVALS] += 1
            lossn = gradient(Yn, Gn, Wt, at, code, ws, reg, lam_a, lam_w)
            ok = finite(lossn)
        if not ok:  # left the finite range: refused, shrunk as far as the controller ever shrinks
            cnt[REJ] += 1
            st[REJECT] = 1.0
            hnew = h * fac1
            if hnew < _hmin(t):
                return UNDERFLOW
            st[H] = hnew
            continue
        fac11 = err ** expo
        fac = fac11 / st[MEM] ** beta
        fac = max(1.0 / fac2, min(1.0 / fac1, fac / SAFE))
        if err <= 1.0:
            if t < t_log < (t_end if last else t + h):
                _erk_dense(method, t, h, y, K, K[S - 1] if fsal_stage else Gn, Yn, bufs[dbase:], st, cnt, Wt, at,
                           code, ws, reg, lam_a, lam_w, big)
            st[MEM] = max(err, 1e-4)
            copy_to(Yn, y)
            copy_to(K[S - 1] if fsal_stage else Gn, K[0])
            st[LOSS] = lossn
            st[T] = t_end if last else t + h
            cnt[ACC] += 1
            hnew = h / fac
            if st[REJECT] != 0.0:
                hnew = min(hnew, h)
            st[REJECT] = 0.0
            if h < h_prop and hnew >= h:  # a clamped step that asked for no shrinking: keep the proposal
                hnew = max(hnew, h_prop)
            st[H] = hnew
            if detect and _stiff_count(h, _sqdist(K[0], K[S - 1]), stden, st, cnt):
                return _SWITCH
            if st[D_NEW] != 0.0:
                return DENSE
        else:
            cnt[REJ] += 1
            st[REJECT] = 1.0
            hnew = h / min(1.0 / fac1, fac11 / SAFE)
            if hnew < _hmin(t):
                return UNDERFLOW
            st[H] = hnew
    return OK


# --- dense output -------------------------------------------------------------------------------------

@njit
def _lincomb(row, K, coef, ns, scale):
    """row += scale * sum_{j < ns} coef[j] K[j]."""
    n = row.shape[0]
    for j in range(ns):
        c = scale * coef[j]
        if c != 0.0:
            Kj = K[j]
            for i in range(n):
                row[i] += c * Kj[i]


@njit
def _hermite_rows(y0, y1, g0, g1, t, h, D, st):
    """The cubic Hermite interpolant of a step (both ends and their gradients: free, 3rd order)."""
    copy_to(y0, D[0])
    copy_to(y1, D[1])
    copy_to(g0, D[2])
    copy_to(g1, D[3])
    st[D_T0] = t
    st[D_H] = h
    st[D_KIND] = D_HERMITE
    st[D_NEW] = 1.0


@njit(inline="always")
def _erk_dense(method, t, h, y, K, Gn, Yn, D, st, cnt, Wt, at, code, ws, reg, lam_a, lam_w, big):
    """The dense output of the accepted explicit step from (t, y) to (t + h, Yn), before ``y`` and ``K[0]``
    are overwritten: DOPRI5's free interpolant, or DOP853's (3 more gradients; should a stage leave the
    finite range, the step falls back to the cubic Hermite interpolant). The flow is dy/dt = -g, so each
    derivative is minus a stored gradient."""
    n = y.shape[0]
    if method == DOPRI5:
        copy_to(y, D[0])
        for k in range(4):
            D[1 + k, :] = 0.0
            _lincomb(D[1 + k], K, DENSE5_P[:, k], 7, -h)
        st[D_T0] = t
        st[D_H] = h
        st[D_KIND] = D_DOPRI5
        st[D_NEW] = 1.0
        return
    X = D[8:11]
    Z = D[7]  # the extra stages' states (the last coefficient vector is written after them)
    for e in range(3):
        a = DENSE853_STAGES[e]
        Z[:] = 0.0
        _lincomb(Z, K, a, 12, 1.0)
        c = a[12]
        for i in range(n):
            Z[i] += c * Gn[i]
        _lincomb(Z, X, a[13:], e, 1.0)
        bad = 0
        for i in range(n):
            v = y[i] - h * Z[i]
            Z[i] = v
            bad += 0 if abs(v) < big else 1
        ok = bad == 0
        if ok:
            cnt[EVALS] += 1
            ok = finite(gradient(Z, X[e], Wt, at, code, ws, reg, lam_a, lam_w))
        if not ok:
            _hermite_rows(y, Yn, K[0], Gn, t, h, D, st)
            return
    for k in range(4):  # rows 4..7: -h sum_j D853[k, j] g_j over the stages, g(Yn) and the extra stages
        row = D[4 + k]
        dk = DENSE853_D[k]
        row[:] = 0.0
        _lincomb(row, K, dk, 12, -h)
        c = -h * dk[12]
        for i in range(n):
            row[i] += c * Gn[i]
        _lincomb(row, X, dk[13:], 3, -h)
    for i in range(n):
        dy = Yn[i] - y[i]
        D[1, i] = dy
        D[2, i] = -h * K[0, i] - dy
        D[3, i] = 2.0 * dy + h * (Gn[i] + K[0, i])
        D[0, i] = y[i]
    st[D_T0] = t
    st[D_H] = h
    st[D_KIND] = D_DOP853
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


# --- RKC ----------------------------------------------------------------------------------------------

@njit
def _norm2(v):
    s = 0.0
    for i in range(v.shape[0]):
        s += v[i] * v[i]
    return math.sqrt(s)


@njit
def _norm2_diff(u, v):
    return math.sqrt(_sqdist(u, v))


@njit
def _shift_along(y, v, scale, out):
    """out = y + scale v."""
    for i in range(y.shape[0]):
        out[i] = y[i] + scale * v[i]


@njit
def _diff_to(u, v, out):
    """out = u - v."""
    for i in range(u.shape[0]):
        out[i] = u[i] - v[i]


@njit
def _shift_along_diff(y, u, v, scale, out):
    """out = y + scale (u - v)."""
    for i in range(y.shape[0]):
        out[i] = y[i] + scale * (u[i] - v[i])


@njit(inline="always")
def spectral_radius(y, g0, v, gv, eig, cnt, Wt, at, code, ws, reg, lam_a, lam_w):
    """An upper estimate (1.2 x) of the spectral radius of the Hessian of L + R at ``y`` (``g0`` its
    gradient), by the nonlinear power iteration of Sommeijer, Shampine & Verwer: ``v`` is moved along the
    last difference ``g(v) - g0``, kept at distance sqrt(eps) |y| from ``y``. ``eig`` holds the direction
    of the previous estimate (the start; zeros the first time) and gets the new one. Returns -1 when a
    gradient is not finite."""
    n = y.shape[0]
    sqrtu = math.sqrt(2.220446049250313e-16)
    ynrm = _norm2(y)
    vnrm = _norm2(eig)
    if vnrm == 0.0:  # first time: start along the gradient
        copy_to(g0, eig)
        vnrm = _norm2(eig)
    if ynrm != 0.0 and vnrm != 0.0:
        dy = ynrm * sqrtu
        _shift_along(y, eig, dy / vnrm, v)
    elif ynrm != 0.0:
        dy = ynrm * sqrtu
        _shift_along(y, y, sqrtu, v)
    elif vnrm != 0.0:
        dy = 2.220446049250313e-16
        _shift_along(y, eig, dy / vnrm, v)
    else:
        dy = 2.220446049250313e-16
        for i in range(n):
            v[i] = y[i] + dy
    sigma = 0.0
    for it in range(RHO_ITERS):
        cnt[EVALS] += 1
        cnt[RHO_EVALS] += 1
        if not finite(gradient(v, gv, Wt, at, code, ws, reg, lam_a, lam_w)):
            return -1.0
        dg = _norm2_diff(gv, g0)
        sigma_last = sigma
        sigma = dg / dy
        if it >= 1 and abs(sigma - sigma_last) <= max(sigma, 1e-300) * 0.01:
            break
        if dg != 0.0:
            _shift_along_diff(y, gv, g0, dy / dg, v)
        else:  # no change along v: flip one entry of the offset and try again
            k = it % n
            v[k] = y[k] - (v[k] - y[k])
    _diff_to(v, y, eig)
    return 1.2 * sigma


@njit
def _rkc_stage(y, ym1, ym2, G, g0, out, c0, mu, nu, hmus, ajm1, big):
    """out = c0 y + mu ym1 + nu ym2 - hmus (G - ajm1 g0); returns the entries not below ``big``."""
    n = y.shape[0]
    bad = 0
    for i in range(n):
        v = c0 * y[i] + mu * ym1[i] + nu * ym2[i] - hmus * (G[i] - ajm1 * g0[i])
        out[i] = v
        bad += 0 if abs(v) < big else 1
    return bad


@njit
def _rkc_error(y, ys, g0, gs, h, rtol, atol):
    """RMS of (0.8 (y - ys) - 0.4 h (g0 + gs)) / (atol + rtol max(|y|, |ys|)): the local error estimate
    (12 (y_n - y_n+1) + 6 h (f_n + f_n+1)) / 15 with f = -g."""
    n = y.shape[0]
    s = 0.0
    for i in range(n):
        e = 0.8 * (y[i] - ys[i]) - 0.4 * h * (g0[i] + gs[i])
        s += (e / (atol + rtol * max(abs(y[i]), abs(ys[i])))) ** 2
    return math.sqrt(s / n)


@njit(inline="always")
def _rkc(t_end, t_log, dbase, y, bufs, st, cnt, Wt, at, code, ws, reg, lam_a, lam_w, rtol, atol, big, max_steps,
         auto):
    g0 = bufs[0]
    G = bufs[4]
    eig = bufs[_EIG_AUTO] if auto else bufs[5]
    smax = max(2, int(math.sqrt(rtol / (10.0 * 2.220446049250313e-16))))
    while st[T] < t_end:
        if cnt[ACC] + cnt[REJ] >= max_steps:  # first, before any work (as in _erk)
            return MAX_STEPS
        t = st[T]
        fresh_rho = False
        if st[FRESH] == 0.0:
            cnt[EVALS] += 1
            loss0 = gradient(y, g0, Wt, at, code, ws, reg, lam_a, lam_w)
            if not finite(loss0):
                return BAD_STATE
            st[LOSS] = loss0
            st[FRESH] = 1.0
        if st[RHO] <= 0.0 or cnt[SINCE] >= RHO_EVERY:
            rho = spectral_radius(y, g0, bufs[1], G, eig, cnt, Wt, at, code, ws, reg, lam_a, lam_w)
            if rho < 0.0:
                return BAD_STATE
            st[RHO] = max(rho, 1e-300)
            cnt[SINCE] = 0
            fresh_rho = True
        rho = st[RHO]
        span = t_end - t
        if st[H] <= 0.0:  # the starting step of Sommeijer, Shampine & Verwer
            h = span
            if rho * h > 1.0:
                h = 1.0 / rho
            h = max(h, _hmin(t))
            while True:
                if axpy_to(y, h, g0, bufs[1], big) == 0:
                    cnt[EVALS] += 1
                    if finite(gradient(bufs[1], G, Wt, at, code, ws, reg, lam_a, lam_w)):
                        break
                h *= 0.1
                if h < _hmin(t):
                    return UNDERFLOW
            est = h * scaled_rms(G, g0, y, rtol, atol)
            if 0.1 * h < span * math.sqrt(est):
                h = max(0.1 * h / math.sqrt(est), _hmin(t))
            else:
                h = span
            st[H] = h
        h_prop = st[H]
        h = h_prop
        last = False
        if 1.1 * h >= span:
            h = span
            last = True
        s = 1 + int(math.sqrt(1.0 + 1.54 * h * rho))
        if s > smax:
            s = smax
            h = (s * s - 1) / (1.54 * rho)
            last = False
        cnt[SMAX] = max(cnt[SMAX], s)
        # the stages: rows 1, 2, 3 rotate as Y_{j-1}, Y_{j-2} and the new stage
        w0 = 1.0 + 2.0 / (13.0 * s * s)
        temp1 = w0 * w0 - 1.0
        temp2 = math.sqrt(temp1)
        arg = s * math.log(w0 + temp2)
        w1 = math.sinh(arg) * temp1 / (math.cosh(arg) * s * temp2 - w0 * math.sinh(arg))
        bjm1 = 1.0 / (2.0 * w0) ** 2
        bjm2 = bjm1
        r1, r2, r3 = 1, 2, 3
        copy_to(y, bufs[r2])
        ok = axpy_to(y, h * w1 * bjm1, g0, bufs[r1], big) == 0
        zjm1, zjm2 = w0, 1.0
        dzjm1, dzjm2 = 1.0, 0.0
        d2zjm1, d2zjm2 = 0.0, 0.0
        j = 2
        while ok and j <= s:
            zj = 2.0 * w0 * zjm1 - zjm2
            dzj = 2.0 * w0 * dzjm1 - dzjm2 + 2.0 * zjm1
            d2zj = 2.0 * w0 * d2zjm1 - d2zjm2 + 4.0 * dzjm1
            bj = d2zj / (dzj * dzj)
            ajm1 = 1.0 - zjm1 * bjm1
            mu = 2.0 * w0 * bj / bjm1
            nu = -bj / bjm2
            mus = mu * w1 / w0
            cnt[EVALS] += 1
            if not finite(gradient(bufs[r1], G, Wt, at, code, ws, reg, lam_a, lam_w)):
                ok = False
                break
            if _rkc_stage(y, bufs[r1], bufs[r2], G, g0, bufs[r3], 1.0 - mu - nu, mu, nu, h * mus, ajm1, big) != 0:
                ok = False
                break
            r1, r2, r3 = r3, r1, r2
            bjm2, bjm1 = bjm1, bj
            zjm2, zjm1 = zjm1, zj
            dzjm2, dzjm1 = dzjm1, dzj
            d2zjm2, d2zjm1 = d2zjm1, d2zj
            j += 1
        err = np.inf
        lossn = np.nan
        if ok:  # Y_s is in row r1; its gradient (the next step's first) goes to G
            cnt[EVALS] += 1
            lossn = gradient(bufs[r1], G, Wt, at, code, ws, reg, lam_a, lam_w)
            ok = finite(lossn)
        if ok:
            err = _rkc_error(y, bufs[r1], g0, G, h, rtol, atol)
            ok = finite(err)
        if not ok or err > 1.0:
            cnt[REJ] += 1
            st[REJECT] = 1.0
            hnew = 0.1 * h if not ok else 0.8 * h / err ** (1.0 / 3.0)
            if hnew < _hmin(t):
                return UNDERFLOW
            st[H] = hnew
            if not fresh_rho:
                cnt[SINCE] = RHO_EVERY  # re-estimate the spectral radius before retrying
            continue
        if t < t_log < (t_end if last else t + h):
            _hermite_rows(y, bufs[r1], g0, G, t, h, bufs[dbase:], st)
        copy_to(bufs[r1], y)
        copy_to(G, g0)
        st[LOSS] = lossn
        st[T] = t_end if last else t + h
        cnt[ACC] += 1
        cnt[SINCE] += 1
        fac = 10.0
        if st[MEM] <= 0.0:
            temp = err ** (1.0 / 3.0)
            if 0.8 < fac * temp:
                fac = 0.8 / temp
        else:
            num = 0.8 * h * st[MEM] ** (1.0 / 3.0)
            den = st[HOLD] * err ** (2.0 / 3.0)
            if num < fac * den:
                fac = num / den
        hnew = max(0.1, fac) * h
        if st[REJECT] != 0.0:
            hnew = min(hnew, h)
        st[REJECT] = 0.0
        st[MEM] = max(err, 1e-10)
        st[HOLD] = h
        if h < h_prop and hnew >= h:
            hnew = max(hnew, h_prop)
        st[H] = hnew
        if auto:  # every AUTO_WINDOW steps, RKC's cost per unit time since it took over against DOP853's
            cnt[RKC_ACC] += 1
            if cnt[ACC] - cnt[WIN_ACC0] >= AUTO_WINDOW and st[T] > st[TRY_T0]:
                if (cnt[EVALS] - cnt[WIN_EV0]) / (st[T] - st[TRY_T0]) > st[ERK_RATE]:
                    return _SWITCH
                cnt[BACKOFF] = 0
                cnt[WIN_ACC0] = cnt[ACC]
        if st[D_NEW] != 0.0:
            return DENSE
    return OK


@njit
def _check_sizes(method, y, bufs, st, cnt, Wt):
    """The kernels index without bounds checks: refuse buffers that do not fit the method and the state."""
    if method != DOP853 and method != DOPRI5 and method != RKC and method != AUTO:
        raise ValueError("unknown method code")
    rows = buffer_rows(method)
    d = Wt.shape[1]
    if bufs.shape[0] < rows or bufs.shape[1] != y.shape[0] or y.shape[0] % (d + 1) != 0:
        raise ValueError("bufs must come from buffers(method, n) for a state of n = m (d + 1) entries")
    if st.shape[0] < _ST_SIZE or cnt.shape[0] < _CNT_SIZE:
        raise ValueError("st, cnt must come from new_state()")


@njit
def advance(method, t_end, t_log, y, bufs, st, cnt, Wt, at, code, ws, reg, lam_a, lam_w, rtol, atol, big,
            max_steps):
    """Integrate the flow from ``st[T]`` to ``t_end`` in place on ``y`` (float64, (W row-major, a)), with the
    regularizer ``reg`` of constant strengths ``lam_a``, ``lam_w``; ``bufs`` from ``buffers(method, n)``,
    ``st``, ``cnt`` from ``new_state`` (kept between calls), ``ws`` a float64 population workspace, ``Wt``,
    ``at`` the teacher in float64. A state entry must stay below ``big`` in magnitude. Returns ``OK``
    (``st[T] == t_end``) or why it stopped (``UNDERFLOW``, ``MAX_STEPS``, ``BAD_STATE``), or ``DENSE``: the
    first accepted step that passed ``t_log`` (``t_log < t_end``; ``t_log >= t_end`` never stops there) ended
    at ``st[T] > t_log``, and ``dense_at`` gives the state at any time inside it. Steps end on ``t_end``,
    never on ``t_log``: logging by dense output does not shorten them. ``y`` is always the last accepted
    state, ``st[LOSS]`` its loss when ``st[FRESH]`` is set."""
    _check_sizes(method, y, bufs, st, cnt, Wt)
    st[D_NEW] = 0.0
    dbase = dense_base(method)
    # one build of each method's loop serves every method code: the method and ``auto`` are run-time values
    # (literal arguments would compile each loop once per constant)
    auto = method == AUTO
    erk_method = DOP853 if auto else method
    # RKC's local error control runs at tolerances scaled by sqrt(rtol / RKC_TOL_REF) (tolerance
    # proportionality): its global error grows as the local tolerance to the power 2/3
    scale = min(1.0, math.sqrt(rtol / RKC_TOL_REF))
    while True:
        if method == RKC or (auto and st[MODE] != 0.0):
            status = _rkc(t_end, t_log, dbase, y, bufs, st, cnt, Wt, at, code, ws, reg, lam_a, lam_w, rtol * scale,
                          atol * scale, big, max_steps, auto)
        else:
            status = _erk(erk_method, t_end, t_log, dbase, y, bufs, st, cnt, Wt, at, code, ws, reg, lam_a, lam_w,
                          rtol, atol, big, max_steps, auto)
        if not auto or status != _SWITCH:
            return status
        _switch(st, cnt)
        if st[D_NEW] != 0.0:  # the step that made the switch also passed t_log
            return DENSE


@njit
def prepare(y, bufs, st, cnt, Wt, at, code, ws, reg, lam_a, lam_w):
    """Make ``bufs[0]`` the gradient at ``y`` and ``st[LOSS]`` its loss (when not already so); returns
    whether they are finite."""
    d = Wt.shape[1]
    if bufs.shape[0] < 1 or bufs.shape[1] != y.shape[0] or y.shape[0] % (d + 1) != 0:
        raise ValueError("bufs must come from buffers(method, n) for a state of n = m (d + 1) entries")
    if st.shape[0] < _ST_SIZE or cnt.shape[0] < _CNT_SIZE:
        raise ValueError("st, cnt must come from new_state()")
    if st[FRESH] == 0.0:
        cnt[EVALS] += 1
        loss = gradient(y, bufs[0], Wt, at, code, ws, reg, lam_a, lam_w)
        if not finite(loss):
            return False
        st[LOSS] = loss
        st[FRESH] = 1.0
    return True


# The entry points in the build that opens no parallel region, for the sizes
# ``population.runs_serially`` picks (the population kernels' two builds): the caller takes one pair,
# so a process compiles only the build its sizes use.
serial_prepare = serial_build(prepare)
serial_advance = serial_build(advance)
