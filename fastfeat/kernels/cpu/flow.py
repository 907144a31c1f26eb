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
  in row ``EIG_AUTO`` (rows 0..15 are DOP853's).

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

from ._jit import njit, serial_build
from .erk import erk
from .flow_state import (ACC, AUTO, BACKOFF, BAD_STATE, CNT_SIZE, DENSE, D_NEW, ERK_RATE, EVALS, H, H_OTHER, LOSS,
                         MAX_STEPS, MEM, METHODS, MODE, NONSTIFF, OK, REJ, REJECT, RETRY_T, RHO, RHO_EVALS, RHO_EVERY,
                         RKC, RKC_ACC, RKC_TOL_REF, SINCE, SMAX, STIFF, ST_SIZE, SWITCHES, SWITCH_METHOD, T, TRY_T0,
                         UNDERFLOW, WIN_ACC0, WIN_EV0, WIN_T0, buffer_rows, buffers, dense_at, dense_base, new_state,
                         refresh, restart)
from .rkc import rkc
from .tableaus import DOP853, DOPRI5

#: what the callers (``training.gradient_flow``, the tests) use from here
__all__ = ["ACC", "AUTO", "BAD_STATE", "DENSE", "DOP853", "DOPRI5", "EVALS", "LOSS", "MAX_STEPS", "METHODS", "OK",
           "REJ", "RHO_EVALS", "RKC", "RKC_ACC", "SMAX", "SWITCHES", "T", "UNDERFLOW", "advance", "buffers",
           "dense_at", "new_state", "prepare", "restart", "serial_advance", "serial_prepare"]


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


@njit
def _check_sizes(method, y, bufs, st, cnt, Wt):
    """The kernels index without bounds checks: refuse buffers that do not fit the method and the state."""
    if method != DOP853 and method != DOPRI5 and method != RKC and method != AUTO:
        raise ValueError("unknown method code")
    rows = buffer_rows(method)
    d = Wt.shape[1]
    if bufs.shape[0] < rows or bufs.shape[1] != y.shape[0] or y.shape[0] % (d + 1) != 0:
        raise ValueError("bufs must come from buffers(method, n) for a state of n = m (d + 1) entries")
    if st.shape[0] < ST_SIZE or cnt.shape[0] < CNT_SIZE:
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
            status = rkc(t_end, t_log, dbase, y, bufs, st, cnt, Wt, at, code, ws, reg, lam_a, lam_w, rtol * scale,
                          atol * scale, big, max_steps, auto)
        else:
            status = erk(erk_method, t_end, t_log, dbase, y, bufs, st, cnt, Wt, at, code, ws, reg, lam_a, lam_w,
                          rtol, atol, big, max_steps, auto)
        if not auto or status != SWITCH_METHOD:
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
    if st.shape[0] < ST_SIZE or cnt.shape[0] < CNT_SIZE:
        raise ValueError("st, cnt must come from new_state()")
    return refresh(y, bufs[0], st, cnt, Wt, at, code, ws, reg, lam_a, lam_w)


# The entry points in the build that opens no parallel region, for the sizes
# ``population.runs_serially`` picks (the population kernels' two builds): the caller takes one pair,
# so a process compiles only the build its sizes use.
serial_prepare = serial_build(prepare)
serial_advance = serial_build(advance)
