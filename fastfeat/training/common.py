"""What ``ff.train`` and ``ff.flow`` (and the paper's protocol above them) share: the metrics a call logs,
the lock that keeps two calls from training one net at once, and the thread count of a call."""
import contextlib
import threading

import numba

from .. import metrics as _metrics

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
