"""What ``ff.train``, ``ff.flow`` and ``ff.ode`` (and the paper's protocol above them) share: the metrics a
call logs, the lock that keeps two calls from training one net at once, the thread count of a call, how
many steps one compiled call takes, how Ctrl-C stops a call, the step-size conventions, and the logged
times and stretches of constant regularization of the integrators."""
import contextlib
import math
import numbers
import signal
import threading

import numba
import numpy as np

from .. import metrics as _metrics
from .._validation import check_int
from ..math.regularizer import REG_NONE
from ..schedules import Schedule, constant

#: ids of the nets being trained right now (two calls updating one net at once would corrupt it)
_TRAINING = set()
_TRAINING_LOCK = threading.Lock()


@contextlib.contextmanager
def exclusive(net, who):
    """Hold ``net`` for one training call (``who``: "ff.train", "ff.flow"); ValueError when another call,
    in another thread, holds it."""
    with _TRAINING_LOCK:
        if id(net) in _TRAINING:
            raise ValueError(f"net is already being trained by another ff.train or ff.flow call (in another "
                             f"thread), so {who} cannot start; train a copy, or wait for that call to return")
        _TRAINING.add(id(net))
    try:
        yield
    finally:
        with _TRAINING_LOCK:
            _TRAINING.discard(id(net))


def check_metrics(metrics, teacher, objective=None):
    """The metric names of a call (``None``: the objective's defaults), each known and given what it needs."""
    if metrics is None:
        metrics = objective.default_metrics if objective is not None else ("loss",)
    if isinstance(metrics, str):
        metrics = (metrics,)
    try:
        metrics = tuple(metrics)
    except TypeError:
        raise TypeError(f"metrics must be a tuple of names, got {type(metrics).__name__}") from None
    for name in metrics:
        if name not in _metrics.REGISTRY:
            raise ValueError(f"metrics: unknown metric {name!r}; known: {sorted(_metrics.REGISTRY)}")
        if name in _metrics.NEEDS_TEACHER and teacher is None:
            raise ValueError(f"metrics: {name!r} needs a teacher; pass teacher=")
    return metrics


def log_values(metrics, net, objective, teacher, reg, step, known=None):
    """The values of ``metrics`` at ``net``; ``known`` holds values train() already has (from the kernel)
    and metrics it will fill in later (``None``: left out of the row for now)."""
    out = {}
    for name in metrics:
        if known is not None and name in known:
            if known[name] is not None:
                out[name] = known[name]
            continue
        v = _metrics.REGISTRY[name](net, objective, teacher, reg, step)
        if isinstance(v, dict):
            for k, x in v.items():
                out[f"{name}.{k}"] = x
        else:
            out[name] = v
    return out


@contextlib.contextmanager
def use_threads(n_threads, objective, net, device="cpu"):
    """numba's thread count inside a call of ``ff.train`` or ``ff.flow`` (restored on the way out):
    ``n_threads`` when given, else one for a CPU step too small to gain from more (``objective._serial``),
    else unchanged (all of them)."""
    old = numba.get_num_threads()
    try:
        if n_threads is not None:
            numba.set_num_threads(n_threads)
        elif device == "cpu" and objective._serial(net):
            numba.set_num_threads(1)  # the weights do not depend on it
        yield
    finally:
        numba.set_num_threads(old)


def bad_data_error(objective, where=""):
    """A ValueError naming the array of ``objective`` (teacher or data) that holds NaN or inf, put there after
    the objective was built (``where``: what happened to the run, appended); None when all are finite."""
    bad = objective._bad_data()
    if bad is None:
        return None
    return ValueError(f"{bad} of the objective contains NaN or Inf (changed after the objective was built)"
                      + (f": {where}" if where else ""))


#: the work (multiply-adds, as ``Objective._step_work`` counts them) of one compiled call of ``ff.train`` or
#: ``ff.flow``: about 0.1-0.5 s on 2 cores, so Ctrl-C takes effect within about a second whatever
#: ``log_every`` or the logged times are, while the Python work between calls stays negligible
CALL_WORK = 1 << 30


def steps_per_call(objective, net, per_step=1):
    """How many steps (each ``per_step`` objective steps of work) one compiled call takes: a function of
    the problem's sizes only, and a multiple of the objective's ``_call_quantum``, so calls cut at global
    steps that are multiples of it give the weights of one long call, and an interrupted run and its
    resumed continuation cut the same calls."""
    work = max(1, int(objective._step_work(net))) * max(1, int(per_step))
    quantum = objective._call_quantum(net)
    return max(quantum, CALL_WORK // work // quantum * quantum)


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by ``ff.train`` and ``ff.flow`` when SIGINT (Ctrl-C) or, where the program asked for it,
    SIGTERM arrives: the call stops at the end of its current compiled call (within about a second), with
    everything consistent. A ``KeyboardInterrupt``, so code that does not know it stops as usual.

    ``step``: the global step (``ff.flow``: the accepted integrator steps) the net holds; ``time``: the
    flow's time (None for ``ff.train``); ``history``: the rows logged until then; ``checkpoint``: the path
    of the checkpoint written at ``step`` (``ff.train(checkpoint=...)``; resume from it with
    ``resume=True``), else None; ``signum``: the signal.
    """

    def __init__(self, step, history, checkpoint=None, signum=signal.SIGINT, time=None):
        self.step = step
        self.history = history
        self.checkpoint = checkpoint
        self.signum = signum
        self.time = time
        where = f"step {step}" if time is None else f"time {time:.6g} (accepted step {step})"
        saved = f"; checkpoint {checkpoint} holds that state" if checkpoint else ""
        super().__init__(f"interrupted by {signal.Signals(signum).name} at {where}; the net holds the state "
                         f"there{saved}")


class _Stop:
    """The signal ``deferred_interrupts`` received (None: none yet)."""

    signum = None

    @property
    def requested(self):
        return self.signum is not None


#: the signals that can stop a call: SIGINT, and SIGTERM where the program made it a KeyboardInterrupt too
#: (``signal.signal(signal.SIGTERM, signal.default_int_handler)``, as ``fastfeat run`` does)
_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM") if hasattr(signal, name))


@contextlib.contextmanager
def deferred_interrupts():
    """While ``ff.train`` or ``ff.flow`` runs: a SIGINT (or a SIGTERM handled as one) sets a flag that the
    call checks between its compiled calls, where its state is consistent, instead of raising
    KeyboardInterrupt in the middle of its bookkeeping; a second signal raises at once. Only in the main
    thread, and only for signals whose handler is Python's default one (a program's own handler stays in
    charge). A signal that arrived after the call's last check is raised when the call ends."""
    stop = _Stop()
    saved = {}
    if threading.current_thread() is threading.main_thread():
        def handler(signum, frame):
            if stop.signum is not None:  # pressed again: stop now
                raise KeyboardInterrupt
            stop.signum = signum

        for sig in _SIGNALS:
            if signal.getsignal(sig) is signal.default_int_handler:
                saved[sig] = signal.signal(sig, handler)
    try:
        yield stop
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)
    if stop.requested:  # arrived after the last check: the call finished, the interrupt still counts
        raise KeyboardInterrupt


#: the step-size conventions of ``ff.train`` and ``ff.flow`` (``lr_scaling=...``): name -> factor as a function of m
LR_SCALINGS = {"standard": lambda m: 1.0, "ntk": lambda m: 1.0, "mean_field": lambda m: float(m)}


def check_lr_scaling(lr_scaling):
    """``lr_scaling`` checked: None or a name of ``LR_SCALINGS``."""
    if lr_scaling is not None and (not isinstance(lr_scaling, str) or lr_scaling not in LR_SCALINGS):
        raise ValueError(f"lr_scaling must be None or one of {sorted(LR_SCALINGS)}, got {lr_scaling!r}")
    return lr_scaling


def lr_factor(lr_scaling, net):
    """The factor ``lr_scaling`` puts on the step sizes of ``net``."""
    return 1.0 if check_lr_scaling(lr_scaling) is None else LR_SCALINGS[lr_scaling](net.m)


# ---- logged times and stretches of constant regularization (ff.flow's and ff.ode's time)

#: integer times per schedule evaluation when looking for the times where the strength changes
_SCHEDULE_CHUNK = 1 << 20


def log_grid(log_times, t):
    """The logged times: 0, the requested ones, and t (float64, increasing)."""
    if isinstance(log_times, (bool, np.bool_)):
        raise TypeError("log_times must be an int or an array of times, got bool")
    if isinstance(log_times, numbers.Integral):
        n = check_int(log_times, "log_times", minimum=1)
        times = np.linspace(0.0, t, n + 1)
        times[-1] = t
        return times
    if isinstance(log_times, (str, bytes)):
        raise TypeError(f"log_times must be an int or an array of times, got {type(log_times).__name__}")
    try:
        arr = np.asarray(log_times, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"log_times must be an int or an array of times, got {type(log_times).__name__}") from None
    if arr.ndim != 1:
        raise ValueError(f"log_times must be one-dimensional, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("log_times contains NaN or Inf")
    if arr.size and (arr[0] <= 0 or arr[-1] > t):
        raise ValueError(f"log_times must lie in (0, t] = (0, {t}], got values from {arr.min()} to {arr.max()}")
    if arr.size > 1 and np.any(np.diff(arr) <= 0):
        raise ValueError("log_times must be strictly increasing")
    tail = [t] if arr.size == 0 or arr[-1] < t else []
    return np.concatenate([[0.0], arr, tail])


def _schedules(reg):
    return [v for v in vars(reg).values() if isinstance(v, Schedule)]


def reg_pieces(reg, t):
    """[(start, code, lam_a, lam_w)]: the times in [0, t) where the regularization strength changes (the
    first at 0) and the strengths from there; the strength on [k, k+1) is the schedules' value at k."""
    if reg is None:
        return [(0.0, REG_NONE, 0.0, 0.0)]
    if all(isinstance(s, constant) for s in _schedules(reg)):
        la, lw = reg.lams(0, 1)
        return [(0.0, reg.code, float(la[0]), float(lw[0]))]
    k_end = math.ceil(t)  # the unit intervals [k, k+1) that meet [0, t)
    out = []
    for start in range(0, k_end, _SCHEDULE_CHUNK):
        count = min(_SCHEDULE_CHUNK, k_end - start)
        la, lw = reg.lams(start, count)
        if not out:
            out.append((0.0, reg.code, float(la[0]), float(lw[0])))
        prev_a = np.concatenate([[out[-1][2]], la[:-1]])
        prev_w = np.concatenate([[out[-1][3]], lw[:-1]])
        for i in np.flatnonzero((la != prev_a) | (lw != prev_w)):
            out.append((float(start + i), reg.code, float(la[i]), float(lw[i])))
    return out
