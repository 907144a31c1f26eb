"""The divergence guard, written once for every CPU and GPU kernel.

A step is taken only when no updated weight can reach ``limit(dtype)`` (a quarter of the float type's
largest number, so that no weight ever overflows and a refused step leaves room to report it). For a
weight ``x`` with gradient entry ``g`` and step size ``lr`` the test is the bound ``|x| + lr |g| <
limit`` (``fits``): it holds for the new weight ``x - lr g`` whatever the rounding, and it is False when
``g`` is NaN or inf (every comparison with NaN is False; ``0 * inf`` is NaN, so a frozen layer with an
infinite gradient is refused too). Kernels that bound sums of terms instead of single entries (the
online batch-1 path) apply the same test to their bounds. ``fits`` is compiled for the CPU
(``numba.njit``) and the GPU (``numba.cuda.jit(device=True)``) from this one source.
"""
import numpy as np


def limit(dtype):
    """The guard's threshold in float type ``dtype``: ``max_float / 4``, as a number of that type."""
    ft = np.dtype(dtype).type
    return ft(np.finfo(ft).max / 4)


def fits(x, g, lr, big):
    """Whether the update ``x - lr g`` is sure to stay below ``big`` in magnitude: ``|x| + lr |g| < big``
    (False when ``g`` is NaN or inf)."""
    return abs(x) + lr * abs(g) < big
