"""Argument checks shared by the public API: every bad input fails here, before any kernel runs."""
import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_dtype(dtype, argname="dtype"):
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{argname} must be 'float32' or 'float64', got {dtype!r}") from exc
    if dt not in FLOAT_DTYPES:
        raise ValueError(f"{argname} must be 'float32' or 'float64', got {dt.name}")
    return dt


def check_array(x, name, ndim, *, dtype=None, writable=False, contiguous=False, finite=True):
    """Check a float array; returns it unchanged (no copy: training mutates in place)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(x).__name__}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {x.shape}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {x.dtype}")
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{name} has dtype {x.dtype} but must match dtype {np.dtype(dtype).name}")
    if contiguous and not x.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (use np.ascontiguousarray)")
    if writable and not x.flags.writeable:
        raise ValueError(f"{name} must be writable: training updates it in place")
    if any(s == 0 for s in x.shape):
        raise ValueError(f"{name} must not be empty, got shape {x.shape}")
    if finite and not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or Inf")
    return x


def check_int(value, name, *, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_float(value, name, *, positive=False, nonnegative=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if positive and v <= 0:
        raise ValueError(f"{name} must be > 0, got {v}")
    if nonnegative and v < 0:
        raise ValueError(f"{name} must be >= 0, got {v}")
    return v


def check_threads(value, name="n_threads"):
    """A thread count: an int >= 1, at most the threads numba was started with."""
    import numba

    value = check_int(value, name)
    if value > numba.config.NUMBA_NUM_THREADS:
        raise ValueError(f"{name}={value} exceeds the {numba.config.NUMBA_NUM_THREADS} threads numba was started with "
                         "(NUMBA_NUM_THREADS)")
    return value


#: the largest label-noise standard deviation accepted: the losses add noise^2 / 2, which must stay finite
MAX_NOISE = 1e150


def check_noise(value, name="noise"):
    """A label-noise standard deviation: a finite float >= 0 whose square is finite too."""
    v = check_float(value, name, nonnegative=True)
    if v > MAX_NOISE:
        raise ValueError(f"{name} must be <= {MAX_NOISE:g} (the loss adds {name}^2 / 2), got {v:g}")
    return v

