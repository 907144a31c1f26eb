"""Schedules for the learning rate and the regularization strength: step -> value.

A schedule is any callable ``step -> float``. The ones here also have ``values(start, count)``, which
``ff.train`` uses to fill a whole compiled chunk at once; a plain callable is evaluated step by step.
"""
import numbers

import numpy as np

from ._validation import check_float, check_int


class Schedule:
    """Base class: subclasses implement ``values(start, count)`` (vectorized)."""

    def __call__(self, step):
        return float(self.values(int(step), 1)[0])

    def values(self, start, count):  # pragma: no cover - abstract
        raise NotImplementedError


class constant(Schedule):
    """The same value at every step."""

    def __init__(self, value):
        self.value = check_float(value, "value")

    def values(self, start, count):
        return np.full(count, self.value)

    def __repr__(self):
        return f"constant({self.value!r})"


class geometric(Schedule):
    """``max(start * factor ** (step // every), floor)``: multiply by ``factor`` every ``every`` steps."""

    def __init__(self, start, factor, every, floor=0.0):
        self.start = check_float(start, "start")
        self.factor = check_float(factor, "factor", positive=True)
        self.every = check_int(every, "every")
        self.floor = check_float(floor, "floor")

    def values(self, start, count):
        k = (np.arange(start, start + count) // self.every).astype(np.float64)
        return np.maximum(self.start * self.factor**k, self.floor)

    def __repr__(self):
        return f"geometric({self.start!r}, {self.factor!r}, {self.every!r}, floor={self.floor!r})"


class piecewise(Schedule):
    """Piecewise constant: ``values[i]`` for ``boundaries[i-1] <= step < boundaries[i]``.

    ``len(values) == len(boundaries) + 1``; boundaries strictly increasing, positive integers.
    """

    def __init__(self, boundaries, values):
        b = [check_int(x, "boundaries", minimum=1) for x in boundaries]
        if any(b2 <= b1 for b1, b2 in zip(b, b[1:])):
            raise ValueError(f"boundaries must be strictly increasing, got {b}")
        v = [check_float(x, "values") for x in values]
        if len(v) != len(b) + 1:
            raise ValueError(f"values needs len(boundaries) + 1 = {len(b) + 1} entries, got {len(v)}")
        self.boundaries = np.asarray(b, np.int64)
        self.vals = np.asarray(v, np.float64)

    def values(self, start, count):
        steps = np.arange(start, start + count)
        return self.vals[np.searchsorted(self.boundaries, steps, side="right")]

    def __repr__(self):
        return f"piecewise({self.boundaries.tolist()}, {self.vals.tolist()})"


def as_schedule(value, name, *, positive=False, nonnegative=False):
    """A float becomes ``constant``; a Schedule or callable is kept (checked when evaluated)."""
    if isinstance(value, Schedule):
        return value
    if callable(value):
        return _Callable(value, name)
    v = check_float(value, name, positive=positive, nonnegative=nonnegative)
    return constant(v)


class _Callable(Schedule):
    def __init__(self, fn, name):
        self.fn = fn
        self.name = name

    def values(self, start, count):
        out = np.empty(count, np.float64)
        for k, s in enumerate(range(start, start + count)):
            v = self.fn(s)
            real = isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))
            if not (real or (isinstance(v, np.ndarray) and v.shape == () and v.dtype.kind in "fiu")):
                raise TypeError(f"{self.name} schedule returned {type(v).__name__} {repr(v)[:60]} at step {s}; a "
                                "schedule must return a real number")
            out[k] = v
        return out

    def __repr__(self):
        return f"{getattr(self.fn, '__qualname__', type(self.fn).__name__)} (a callable)"


def describe(schedule, steps):
    """A schedule for comparison between runs (checkpoints): the repr of the built-in ones, which says
    everything; a callable's values at ``steps``."""
    if isinstance(schedule, _Callable):
        vals = ", ".join(f"{s}: {float(schedule.values(s, 1)[0])!r}" for s in steps)
        return f"callable with values {{{vals}}}"
    return repr(schedule)


def evaluate(schedule, start, count, name, *, positive=False, nonnegative=False):
    """Schedule values for steps ``start .. start+count-1``, checked to be finite (and > 0 / >= 0)."""
    v = np.ascontiguousarray(schedule.values(start, count), dtype=np.float64)
    if v.shape != (count,) or not np.all(np.isfinite(v)):
        raise ValueError(f"{name} schedule gave a non-finite value between steps {start} and {start + count}")
    if positive and np.any(v <= 0):
        raise ValueError(f"{name} must be > 0 at every step; the schedule gave {v.min()}")
    if nonnegative and np.any(v < 0):
        raise ValueError(f"{name} must be >= 0 at every step; the schedule gave {v.min()}")
    return v
