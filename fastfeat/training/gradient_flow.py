"""``ff.flow``: the regularized gradient flow of the exact population objective, with adaptive steps,
against time (the compiled integrators are in ``fastfeat.kernels.cpu.flow``)."""
import math
import warnings

import numpy as np

from .._validation import check_float, check_int, check_threads
from ..kernels.cpu import flow as _k
from ..kernels.cpu import population as _pop
from ..kernels.cpu.scalar import guard_limit
from ..networks import check_net
from ..objectives.base import Objective
from ..objectives.population import Population
from ..regularizers import check_reg
from .history import History
from .common import (TrainingInterrupted, bad_data_error, check_metrics, deferred_interrupts, exclusive, log_grid,
                     log_values, lr_factor, reg_pieces, steps_per_call, use_threads)
from .gd import TrainingDiverged

#: method names (``"rk45"`` is another name of ``"dopri5"``)
METHODS = ("auto", "dop853", "dopri5", "rk45", "rkc")
_ALIASES = {"rk45": "dopri5"}
#: the smallest rtol accepted: below it the error test asks for more than float64 rounding allows
MIN_RTOL = 100 * np.finfo(np.float64).eps
#: the largest rtol accepted
MAX_RTOL = 0.1


def flow(net, objective, t, *, reg=None, rtol=1e-8, atol=1e-10, method="auto", log_times=100, metrics=None,
         max_steps=1_000_000, n_threads=None, callback=None, dense_output=True, lr_scaling=None):
    """Integrate the regularized gradient flow ``d(W, a)/dt = -grad (L + R)(W, a)`` from time 0 to ``t``,
    in place on ``net``, and return an ``ff.History``.

    ``objective`` must be an ``ff.Population`` (the exact loss: the other objectives have no exact
    gradient to flow along; TypeError otherwise). The flow is integrated in float64 whatever the net's
    dtype: a float32 net is read into float64, integrated, and written back (rounded) at every logged
    time; the teacher is used in float64 too.

    Methods (each step, its stages and its error control run inside one compiled call per logging
    interval; the right-hand side is the fused population gradient):

    - ``"auto"`` (default): ``"dop853"`` while the flow is not stiff, ``"rkc"`` where it is cheaper. After
      each DOP853 step, Hairer's stiffness test estimates ``h * lambda`` along the step's last stage;
      after 15 steps at the stability limit (``h * lambda > 6.1``) the integration goes on with RKC from
      the same state and step size. RKC's gradients per unit time are compared, every 25 RKC steps, with
      those DOP853 spent per unit time while it was stiff: when RKC costs more (a tight tolerance, fast
      dynamics) DOP853 takes over again and RKC is tried again after twice (then four, eight... times)
      the time it was tried. A flow that never turns stiff is integrated by DOP853 bit for bit.
    - ``"dop853"``: the explicit Dormand-Prince pair of orders 8 and 5(3) with Hairer's step-size
      control; 12 gradients per accepted step. Fewest gradient evaluations at tight tolerances.
    - ``"dopri5"`` (alias ``"rk45"``): Dormand-Prince 5(4), 6 gradients per step, Hairer's control with
      the Lund stabilization; for loose tolerances.
    - ``"rkc"``: the second-order Runge-Kutta-Chebyshev method (Sommeijer, Shampine & Verwer), for the
      stiff end of training, when the explicit pairs are held at their stability limit by the largest
      curvature while the solution changes slowly. The Jacobian of a gradient flow is minus the Hessian,
      whose spectrum is real; RKC takes s stages with s^2 proportional to h times the spectral radius
      (estimated by a power iteration on gradient differences), so its step follows accuracy only. Second
      order: use it with loose tolerances (rtol 1e-5 .. 1e-7).

    Tolerances: a step is accepted when its local error estimate, divided entry by entry by ``atol +
    rtol * max(|y_old|, |y_new|)`` over all weights, has an RMS of at most 1 (``rtol`` from ``MIN_RTOL``
    to ``MAX_RTOL``). The default ``atol=1e-10`` keeps weights that decay to 0 under weight decay from
    forcing tiny steps while staying far below the weights that matter.

    ``reg``: ``ff.WeightDecay``, ``ff.PathNorm`` or None. Here a schedule's argument is time: the
    strength on ``[k, k+1)`` is ``schedule(k)`` for integer ``k`` (built-in schedules and callables
    alike; a non-constant one is evaluated at every integer below ``t``). Each stretch of constant
    strength is integrated on its own: no step crosses a change, and the step-size controller's error
    history and the derivative are restarted there (the step size is kept).

    ``log_times``: an int ``n`` logs ``n + 1`` evenly spaced times in ``[0, t]``; or an increasing
    array of times in ``(0, t]`` (0 and ``t`` are always logged). Logging does not shorten the steps
    (``dense_output=True``, the default): the state at a logged time inside a step comes from the step's
    interpolant, as ``solve_ivp(t_eval=...)`` does: DOP853's 7th-order one (3 more gradients for a step
    that holds logged times), DOPRI5's 4th-order one and, for RKC, the cubic Hermite one through both
    ends of the step (both free). Changes of the regularization strength and ``t`` still end steps.
    ``dense_output=False`` ends a step on every logged time instead (the state there is then the
    integrator's own; a run logged that way is the reference the interpolated values are tested
    against). The history has one row per logged time: ``step`` the number of accepted
    integrator steps so far, and the metrics ``"time"``, ``"loss"`` (the population loss with noise, at
    the float64 state), ``"rejected"`` and ``"evals"`` (cumulative rejected steps and gradient
    evaluations, including those of the initial-step choice and of RKC's spectral estimates), then the
    names in ``metrics`` (as in ``ff.train``; a metric's ``step`` argument is ``floor(time)``, so
    ``"reg"`` uses the strength of the stretch that starts there). ``history.info`` records the
    method, rtol, atol, t and max_steps (for ``"rkc"`` and ``"auto"`` also the most stages an RKC step used
    and the gradient evaluations spent on spectral-radius estimates; for ``"auto"`` the number of switches
    between the two methods and the accepted steps RKC took).

    ``callback(time, net, values)`` is called after each logged row (the net holds the state at that
    time; do not modify it: the integration goes on from its own float64 copy); return ``False`` to
    stop there. ``n_threads``: threads for this call (at most ``NUMBA_NUM_THREADS``; None: all of them,
    or one for a population step too small to gain from more, as in ``ff.train``).

    Divergence: a step whose stages give a non-finite loss or gradient, or whose new state would have an
    entry at or beyond ``max_float / 4`` of the net's dtype, is refused and shrunk. If the step size
    falls below ``1e-14 * max(1, time)`` (or the initial weights have no finite loss and gradient),
    ``ff.TrainingDiverged`` is raised: ``.step`` is the number of accepted steps, ``.time`` the time of
    the last accepted state, ``.history`` the rows logged until then, and the net holds that last
    accepted (finite) state. A NaN or inf put into the teacher after the objective was built raises
    ValueError instead.

    ``max_steps`` bounds the attempted steps (accepted and rejected) of the whole call. When it is used up,
    the integration stops with a ``RuntimeWarning``: the net holds the last accepted state, a last row
    is logged at its time (before ``t``), ``history.info["stopped"] == "max_steps"`` and the history is
    returned (a stiff problem: try ``method="rkc"``, or ``"auto"`` if another method was chosen).

    Ctrl-C (as in ``ff.train``) stops the integration within about a second: the net holds the last
    accepted state, a last row is logged at its time, ``history.info["stopped"] == "interrupted"``, and
    ``ff.TrainingInterrupted`` is raised with ``.history`` and ``.time``.

    A net with an output scale (``ff.TwoLayer(scale=...)``, f = m^-gamma sum_j a_j sigma(w_j . x)) flows
    in its stored W and a. With s = m^-gamma its loss is s^2 times that of the same weights, read as a
    standard net, against the teacher with output weights a* / s (and noise / s), so its flow is that
    standard flow, with the regularizer's strengths divided by s^2, run s^2 times as fast: that is how it is
    integrated (the tolerances apply to the same weights; logged times and schedules are in the net's own
    time). ``lr_scaling="mean_field"`` speeds the flow up by m, the mean-field convention of ``ff.train``.

    Every argument is checked before any kernel runs (ValueError or TypeError naming it).
    """
    check_net(net)
    if not isinstance(objective, Population):
        kind = type(objective).__name__
        if isinstance(objective, Objective):
            raise TypeError(f"objective must be ff.Population: ff.flow follows the exact gradient of the population "
                            f"loss in closed form, which {kind} does not provide; train it with ff.train")
        raise TypeError(f"objective must be ff.Population, got {kind}")
    objective._check(net)
    bad = bad_data_error(objective)
    if bad is not None:
        raise bad
    t = check_float(t, "t", positive=True)
    rtol = check_float(rtol, "rtol", positive=True)
    if rtol < MIN_RTOL:
        raise ValueError(f"rtol must be >= {MIN_RTOL:.3g} (100 float64 epsilons), got {rtol}")
    if rtol > MAX_RTOL:
        raise ValueError(f"rtol must be <= {MAX_RTOL} (a looser tolerance controls no error: a step may change the "
                         f"weights by as much as they are), got {rtol}")
    atol = check_float(atol, "atol", positive=True)
    if not isinstance(method, str):
        raise TypeError(f"method must be a string, one of {METHODS}, got {type(method).__name__}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    name = _ALIASES.get(method, method)
    code_m = _k.METHODS[name]
    times = log_grid(log_times, t)
    max_steps = check_int(max_steps, "max_steps", minimum=1)
    reg = check_reg(reg)
    teacher = objective.teacher
    metrics = check_metrics(metrics, teacher, objective)
    metrics = ("loss",) + tuple(x for x in metrics if x != "loss")
    if not isinstance(dense_output, (bool, np.bool_)):
        raise TypeError(f"dense_output must be True or False, got {type(dense_output).__name__}")
    if callback is not None and not callable(callback):
        raise TypeError("callback must be callable(time, net, values)")
    if n_threads is not None:
        n_threads = check_threads(n_threads)
    speed = lr_factor(lr_scaling, net) * net.output_factor ** 2  # the net's time to the integrator's
    pieces = reg_pieces(reg, t)  # evaluates the schedules: a bad value raises here, before any kernel runs
    with exclusive(net, "ff.flow"), use_threads(n_threads, objective, net), deferred_interrupts() as stop:
        return _integrate(stop, net, objective, t, reg, rtol, atol, name, code_m, times, metrics, max_steps, callback,
                          pieces, bool(dense_output), speed)


class _State:
    """The integrator's float64 state and buffers, and the net it writes back to."""

    def __init__(self, net, objective, method, speed=1.0):
        self.net = net
        self.speed = speed
        self.m, self.d = net.m, net.d
        n = self.m * self.d + self.m
        self.y = np.empty(n)
        self.y[:self.m * self.d] = net.W.ravel()
        self.y[self.m * self.d:] = net.a
        self.bufs = _k.buffers(method, n)
        self.st, self.cnt = _k.new_state()
        self.Wt, self.at, self.ws = objective._float64_parts(net)
        self.code = objective._code(net)  # the student's and the teacher's activations
        # the population kernels' build for these sizes, and the integrator's entry points of the same build
        build = _pop.builds(self.m, self.Wt.shape[0], self.d, self.ws.tile)
        self.loss_grad = build.loss_grad
        self.prepare, self.advance = ((_k.serial_prepare, _k.serial_advance) if build.serial
                                      else (_k.prepare, _k.advance))
        if net.gamma != 0:  # the teacher a* / s of a scaled net's flow (see ``_integrate``)
            self.at = self.at / net.output_factor
        self.big = float(guard_limit(net.W))

    def write_back(self, y=None):
        """Write the integrator's state (or the state ``y``) into the net."""
        y = self.y if y is None else y
        md = self.m * self.d
        self.net.W[...] = y[:md].reshape(self.m, self.d)
        self.net.a[...] = y[md:]

    def set_net(self, y):
        """Write the state ``y`` (an interpolated one) into the net; returns its loss (float64, no noise),
        computed at ``y`` itself."""
        self.write_back(y)
        md = self.m * self.d
        W, a = y[:md].reshape(self.m, self.d), y[md:]
        # (the argument types of objective.loss on a float64 net: the same compiled loss)
        return float(self.loss_grad(W, a, self.Wt, self.at, self.code, W[:0], np.empty(self.m), self.ws, False))

    @property
    def tau(self):
        """The integrator's time."""
        return float(self.st[_k.T])

    @property
    def time(self):
        """The net's time (the integrator's divided by ``speed``)."""
        return self.tau / self.speed

    @property
    def accepted(self):
        return int(self.cnt[_k.ACC])


def _diverged(state, history, objective, reason):
    """The error to raise: TrainingDiverged at the last accepted state (a ValueError when the teacher was
    given NaN or inf meanwhile)."""
    bad = bad_data_error(objective, f"the flow stopped at time {state.time:.6g}; the net holds the state at that time")
    if bad is not None:
        return bad
    exc = TrainingDiverged(state.accepted, history, reason)
    exc.time = state.time
    exc.args = (f"gradient flow diverged at time {state.time:.6g} after {state.accepted} accepted steps: {reason}; "
                "the net holds the last accepted state (finite). Add regularization, start from smaller weights, "
                "or try method='rkc' (or the default 'auto') for a stiff problem.",)
    return exc


#: gradient evaluations an integrator step costs at most, as ``ff.flow`` sizes its compiled calls (DOP853
#: takes 12, RKC's steps take more stages only where each one goes further)
_GRADS_PER_STEP = 16


def _integrate(stop, net, objective, t, reg, rtol, atol, name, code_m, times, metrics, max_steps, callback, pieces,
               dense_output, speed=1.0):
    # a scaled net (s = m^-gamma): its loss is s^2 L' (L' against the teacher a* / s: ``_State``), integrated
    # in the time tau = speed t with the regularizer's strengths divided by s^2 (both 1 for a standard net)
    state = _State(net, objective, code_m, speed)
    c_loss = net.output_factor ** 2
    teacher = objective.teacher
    half_noise = 0.5 * objective.noise ** 2
    t_user, t = t, t * speed
    pieces = [(start * speed, code, lam_a / c_loss, lam_w / c_loss) for start, code, lam_a, lam_w in pieces]
    history = History(info={"objective": objective.name, "kind": "flow", "method": name, "rtol": rtol,
                            "atol": atol, "t": t_user, "max_steps": max_steps})
    args = (state.Wt, state.at, state.code, state.ws)

    def summary():
        if name in ("rkc", "auto"):  # how hard the stiff method worked
            history.info["rkc_max_stages"] = int(state.cnt[_k.SMAX])
            history.info["spectral_evals"] = int(state.cnt[_k.RHO_EVALS])
        if name == "auto":
            history.info["switches"] = int(state.cnt[_k.SWITCHES])
            history.info["rkc_steps"] = int(state.cnt[_k.RKC_ACC])
        return history

    def row(time, y=None):
        """Log the integrator's state (``y`` None: written back to the net first), or the interpolated
        state ``y`` (written into the net; its loss computed in float64)."""
        if y is None:
            state.write_back()
            loss = c_loss * float(state.st[_k.LOSS])
        else:
            loss = c_loss * state.set_net(y)
        values = {"time": time}
        values.update(log_values(metrics, net, objective, teacher, reg, int(math.floor(time)),
                                  known={"loss": loss + half_noise}))
        values["rejected"] = int(state.cnt[_k.REJ])
        values["evals"] = int(state.cnt[_k.EVALS])
        history._append(state.accepted, values)
        return values

    _, code, lam_a, lam_w = pieces[0]
    if not state.prepare(state.y, state.bufs, state.st, state.cnt, *args, code, lam_a, lam_w):
        raise _diverged(state, history, objective, "the loss or its gradient at the initial weights is not finite")
    values = row(0.0)
    if callback is not None and callback(0.0, net, values) is False:
        return summary()
    changes = {p[0]: p for p in pieces[1:]}
    logged_user = times[1:].tolist()
    logged = (times[1:] * speed).tolist()  # in the integrator's time
    if dense_output:  # only the changes of strength and t end steps; the logged times are interpolated
        ends = sorted({s for s in changes if s < t} | {t})
    else:
        ends = sorted(set(logged) | {s for s in changes if s < t})
    nxt = 0  # the next logged time
    y_log = np.empty_like(state.y)
    # attempted steps per compiled call: Ctrl-C takes effect within about a second (a call stopped by this
    # cap and called again goes on bit for bit)
    per_call = steps_per_call(objective, net, _GRADS_PER_STEP)

    def interrupted():
        """Stop at the last accepted state: the net holds it, the history's last row is it."""
        row(state.time)
        history.info["stopped"] = "interrupted"
        raise TrainingInterrupted(state.accepted, summary(), None, stop.signum, time=state.time)

    for end in ends:
        while True:
            if stop.requested:
                interrupted()
            t_log = logged[nxt] if dense_output and nxt < len(logged) and logged[nxt] < end else end
            cap = min(max_steps, int(state.cnt[_k.ACC] + state.cnt[_k.REJ]) + per_call)
            status = state.advance(code_m, end, t_log, state.y, state.bufs, state.st, state.cnt, *args, code, lam_a,
                                lam_w, rtol, atol, state.big, cap)
            if status == _k.MAX_STEPS and cap < max_steps:
                continue  # this call's share: call again
            if status != _k.DENSE:
                break
            now = state.tau  # the step passed logged times: their states from its interpolant
            while nxt < len(logged) and logged[nxt] <= now:
                tau, shown = logged[nxt], logged_user[nxt]
                nxt += 1
                if tau == now:
                    values = row(shown)
                else:
                    _k.dense_at(code_m, tau, state.bufs, state.st, y_log)
                    values = row(shown, y_log)
                if callback is not None and callback(shown, net, values) is False:
                    return summary()
        if status != _k.OK:
            state.write_back()
            if status == _k.MAX_STEPS:
                row(state.time)
                history.info["stopped"] = "max_steps"
                warnings.warn(f"ff.flow used up max_steps={max_steps} attempted steps at time {state.time:.6g} "
                              f"of {t:.6g}; the net holds the state at that time (the history's last row). "
                              "If the problem is stiff, method='auto' (the default) or 'rkc' needs far fewer steps; or raise "
                              "max_steps.",
                              RuntimeWarning, stacklevel=3)
                return summary()
            if status == _k.UNDERFLOW:
                reason = "the step size fell below 1e-14 * max(1, time)"
            else:
                reason = "the loss or its gradient is not finite"
            raise _diverged(state, history, objective, reason)
        if nxt < len(logged) and logged[nxt] == end:
            shown = logged_user[nxt]
            nxt += 1
            values = row(shown)
            if callback is not None and callback(shown, net, values) is False:
                return summary()
        if end in changes:
            _, code, lam_a, lam_w = changes[end]
            _k.restart(state.st, state.cnt)
    if stop.requested:  # arrived during the last call: the flow is complete, say so with its history
        raise TrainingInterrupted(state.accepted, summary(), None, stop.signum, time=state.time)
    return summary()
