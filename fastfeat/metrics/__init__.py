"""Metrics ``ff.train`` can log, and the feature-learning diagnostics.

``REGISTRY`` maps a metric name to ``fn(net, objective, teacher, reg, step)``, returning a float or a
dict of numbers/arrays (logged as ``name.key``). Add your own with ``register``. ``"batch_loss"`` (the
mean minibatch loss of the steps since the last row) comes from the kernel inside ``ff.train``; logged
anywhere else (no steps taken) it is NaN.
"""
import numpy as np

from .alignment import alignment  # noqa: F401
from .alignment import alignment_metric as _alignment_metric


def _loss(net, objective, teacher, reg, step):
    return objective.loss(net)


def _batch_loss(net, objective, teacher, reg, step):
    # ff.train fills this in from the kernel's minibatch losses; anywhere else no steps were taken
    return np.nan


def _reg(net, objective, teacher, reg, step):
    return 0.0 if reg is None else reg.value(net, step)


def _objective(net, objective, teacher, reg, step):
    return _loss(net, objective, teacher, reg, step) + _reg(net, objective, teacher, reg, step)


def _population_loss(net, objective, teacher, reg, step):
    from .alignment import population_for
    if teacher is None:
        raise ValueError("metric 'population_loss' needs a teacher: pass teacher= to ff.train")
    return population_for(teacher).loss(net)


def _weight_norms(net, objective, teacher, reg, step):
    return {"a": float(np.linalg.norm(net.a)), "W": float(np.linalg.norm(net.W))}


REGISTRY = {
    "loss": _loss,
    "batch_loss": _batch_loss,
    "reg": _reg,
    "objective": _objective,
    "population_loss": _population_loss,
    "norms": _weight_norms,
    "alignment": _alignment_metric,
}
#: metrics that need a teacher (given to train, or the objective's own)
NEEDS_TEACHER = {"population_loss", "alignment"}


def register(name, fn, *, needs_teacher=False):
    """Make ``fn(net, objective, teacher, reg, step)`` loggable as ``metrics=(name, ...)``."""
    REGISTRY[name] = fn
    if needs_teacher:
        NEEDS_TEACHER.add(name)
