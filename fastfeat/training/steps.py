"""The steps of a run as ``ff.train`` takes them: logged steps (``log_every``, ``log_spaced``) and the
schedules of the step sizes, checked before anything runs and evaluated per step."""
import numpy as np

from .._validation import check_int
from ..schedules import as_schedule, constant, evaluate


def log_spaced(steps, rows=200):
    """About ``rows`` logged steps spaced evenly on a log scale in ``1 .. steps`` (distinct integers,
    ``steps`` last): ``ff.train(..., log_every=ff.log_spaced(steps))`` gives a log-log curve of a long
    run with a few hundred rows."""
    steps = check_int(steps, "steps")
    rows = check_int(rows, "rows")
    return np.unique(np.round(np.geomspace(1, steps, rows)).astype(np.int64))


def check_log_every(log_every, steps):
    """``log_every``: an int >= 1, or an increasing array of logged steps in ``1 .. steps`` (counted from
    ``start_step``; ``steps`` is logged in any case), returned as an int64 array."""
    if isinstance(log_every, (bool, np.bool_)) or np.ndim(log_every) == 0:
        return check_int(log_every, "log_every", minimum=1)
    try:
        arr = np.asarray(log_every)
    except (TypeError, ValueError):
        raise TypeError(f"log_every must be an int or an array of steps, got {type(log_every).__name__}") from None
    if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "iu" and not (
            arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))):
        raise TypeError("log_every must be an int or a one-dimensional array of whole steps")
    arr = arr.astype(np.int64)
    if arr[0] < 1 or arr[-1] > steps:
        raise ValueError(f"log_every: the logged steps must lie in 1 .. steps = {steps}, got {arr[0]} .. {arr[-1]}")
    if np.any(np.diff(arr) <= 0):
        raise ValueError("log_every: the logged steps must be strictly increasing")
    return arr if arr[-1] == steps else np.append(arr, steps)


def check_lrs(lr, lr_a, start_step):
    """The schedules of ``lr`` (W) and ``lr_a`` (a; None when it is ``lr``), checked at the first step."""
    if lr_a is None:
        lr_s = as_schedule(lr, "lr", positive=True)
        evaluate(lr_s, start_step, 1, "lr", positive=True)
        return lr_s, None
    lr_s = as_schedule(lr, "lr", nonnegative=True)
    lr_a_s = as_schedule(lr_a, "lr_a", nonnegative=True)
    first = (evaluate(lr_s, start_step, 1, "lr", nonnegative=True)[0],
             evaluate(lr_a_s, start_step, 1, "lr_a", nonnegative=True)[0])
    if isinstance(lr_s, constant) and isinstance(lr_a_s, constant) and first == (0.0, 0.0):
        raise ValueError("lr and lr_a are both 0: nothing would be trained; give one of them a value > 0")
    return lr_s, lr_a_s


def step_sizes(lr_s, lr_a_s, factor, start, count):
    """The (2, count) step sizes of steps start .. start+count-1: row 0 for W, row 1 for a (times
    ``factor``, the step-size convention's)."""
    out = np.empty((2, count))
    if lr_a_s is None:
        out[0] = out[1] = schedule_values(lr_s, start, count, "lr", True)
    else:
        out[0] = schedule_values(lr_s, start, count, "lr", False)
        out[1] = schedule_values(lr_a_s, start, count, "lr_a", False)
    if factor != 1.0:
        out *= factor
    return out


def schedule_values(schedule, start, count, name, positive):
    if isinstance(schedule, constant):  # checked once by check_lrs
        return np.full(count, schedule.value)
    return evaluate(schedule, start, count, name, positive=positive, nonnegative=not positive)
