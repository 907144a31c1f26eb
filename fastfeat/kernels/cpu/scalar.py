"""Scalar building blocks of the CPU kernels, generic in the float type.

The activation table (``fastfeat.math.activations.build``) is compiled once per float type, so float32
code keeps float32 constants (a Python float literal would turn a float32 expression into float64). The
functions here pick the build of their arguments' type when the calling kernel is compiled: kernels are
written once, for both float types, and numba's dispatch on argument types does the rest.

- ``like(x, v)``: ``v`` as a number of ``x``'s float type (``x`` a float or an array of floats);
- ``guard_limit(x)``, ``fits(x, g, lr, big)``: the divergence guard (``fastfeat.math.guard``), its threshold in
  ``x``'s float type and its test;
- ``neuron(code, z, nw)``, ``dneuron(code, z)``, ``dneuron_dnorm(code, x)``, ``pair(code, nu, nv, c)``,
  ``homog_consts(code, x)``, ``homog_terms(rho, off, scale, shift)``, ``acos(x)``, ``asin(x)``: the table's functions;
- ``cross_pair(cs, ct, nu, nv, c)``: the cross kernel of two activations (``fastfeat.math.cross``);
- ``alg_params(code, x)``: the piecewise-polynomial coefficients (``ALG_PARAMS``) in ``x``'s float type;
- ``reg_terms(reg, aj, nw, lam_a, lam_w, zero)``, ``reg_value(...)``: ``fastfeat.math.regularizer``'s.
"""
import numba
import numpy as np
from numba import types
from numba.extending import overload

from ...math import guard as _guard
from ...math import regularizer as _reg
from ...math.activations import ALG_PARAMS
from ._jit import FASTMATH, TABLE32, TABLE64, _scalar

_OPTS = {"fastmath": FASTMATH, "error_model": "numpy", "nogil": True}


def _float_of(t):
    """The numba float type of a scalar or array type, or None."""
    t = t.dtype if isinstance(t, types.Array) else t
    return t if isinstance(t, types.Float) else None


def _is32_py(x):
    return np.asarray(x).dtype == np.float32


def like(x, v):
    """``v`` as a number of ``x``'s float type."""
    return np.asarray(x).dtype.type(v)


@overload(like, inline="always", jit_options=_OPTS)
def _like(x, v):
    t = _float_of(x)
    if t is None:
        return None
    if t == types.float32:
        return lambda x, v: np.float32(v)
    return lambda x, v: np.float64(v)


def guard_limit(x):
    """The divergence guard's threshold, max_float / 4, in the float type of ``x`` (a float or an array):
    every kernel refuses a step after which a weight could reach it (so weights never overflow)."""
    return _guard.limit(np.asarray(x).dtype)


@overload(guard_limit, inline="always", jit_options=_OPTS)
def _guard_limit(x):
    t = _float_of(x)
    if t is None:
        return None
    v = _guard.limit(str(t))
    return lambda x: v


def _generic(name, by):
    """A function that calls ``TABLE32.<name>`` or ``TABLE64.<name>`` by the float type of argument
    ``by`` (its position)."""
    f32, f64 = getattr(TABLE32, name), getattr(TABLE64, name)

    def stub(*args):
        # without the JIT (NUMBA_DISABLE_JIT=1) the tables are plain Python functions
        return (f32 if _is32_py(args[by]) else f64)(*args)

    stub.__name__ = stub.__qualname__ = name

    @overload(stub, jit_options=_OPTS)
    def _ov(*args):
        t = _float_of(args[by])
        if t is None:
            return None
        impl = f32 if t == types.float32 else f64

        def f(*args):
            return impl(*args)

        return f

    return stub


neuron = _generic("neuron", 1)
dneuron = _generic("dneuron", 1)
pair = _generic("pair", 1)
cross_pair = _generic("cross_pair", 2)
homog_terms = _generic("homog_terms", 0)
acos = _generic("acos", 0)
asin = _generic("asin", 0)


def _by_second(name, doc):
    """``name(code, x)``: ``TABLE32.<name>(code)`` or ``TABLE64.<name>(code)`` by the float type of ``x``
    (for the table's functions of the code alone)."""
    f32, f64 = getattr(TABLE32, name), getattr(TABLE64, name)

    def stub(code, x):
        return (f32 if _is32_py(x) else f64)(code)

    stub.__name__ = stub.__qualname__ = name
    stub.__doc__ = doc

    @overload(stub, jit_options=_OPTS)
    def _ov(code, x):
        t = _float_of(x)
        if t is None:
            return None
        impl = f32 if t == types.float32 else f64
        return lambda code, x: impl(code)

    return stub


dneuron_dnorm = _by_second("dneuron_dnorm", "The coefficient of w/|w| in grad_w phi (only relu_centered has one), "
                                            "in ``x``'s float type.")
homog_consts = _by_second("homog_consts", "(off, scale, shift) of an angular kernel, in ``x``'s float type.")


@numba.njit(inline="always", fastmath=FASTMATH, error_model="numpy", cache=False)
def alg_params(code, x):
    """((alpha, beta, gamma, c0, c2, c3), c_norm) of a piecewise-polynomial activation (``ALG_PARAMS``)
    in ``x``'s float type."""
    P = ALG_PARAMS
    return ((like(x, P[code, 0]), like(x, P[code, 1]), like(x, P[code, 2]), like(x, P[code, 3]),
             like(x, P[code, 4]), like(x, P[code, 5])), like(x, P[code, 6]))


#: the regularizer's terms (``fastfeat.math.regularizer``), compiled for the CPU and inlined by numba into
#: the loops that call them (as a call of its own, the online batch-1 path-norm pass was 15-45% slower)
reg_terms = numba.njit(inline="always", fastmath=FASTMATH, error_model="numpy", cache=False)(_reg.reg_terms)
reg_value = _scalar(_reg.reg_value)
#: the divergence guard's test (``fastfeat.math.guard.fits``), inlined into the loops that call it
fits = numba.njit(inline="always", fastmath=FASTMATH, error_model="numpy", cache=False)(_guard.fits)


# Step sizes. A kernel's ``lr`` is one number (both layers) or a pair ``(lr_W, lr_a)``; its ``lrs`` an array
# of shape (n,) (both layers) or (2, n) (row 0 for W, row 1 for a). Each kernel is written once for both:
# these helpers are resolved when it is compiled.

def lr_pair(lr):
    """``(lr_W, lr_a)`` of a step size given as one number or as a pair."""
    if isinstance(lr, (tuple, list)) or np.ndim(lr) == 1:
        return np.float64(lr[0]), np.float64(lr[1])
    return np.float64(lr), np.float64(lr)


@overload(lr_pair, jit_options=_OPTS)
def _lr_pair(lr):
    if isinstance(lr, (types.Float, types.Integer)):
        return lambda lr: (np.float64(lr), np.float64(lr))
    if isinstance(lr, types.BaseTuple) and len(lr) == 2:
        return lambda lr: (np.float64(lr[0]), np.float64(lr[1]))
    return None


def lr_at(lrs, s):
    """``(lr_W, lr_a)`` of step ``s`` of ``lrs`` (shape (n,) or (2, n))."""
    if np.ndim(lrs) == 2:
        return lrs[0, s], lrs[1, s]
    return lrs[s], lrs[s]


@overload(lr_at, jit_options=_OPTS)
def _lr_at(lrs, s):
    if isinstance(lrs, types.Array) and lrs.ndim == 1:
        return lambda lrs, s: (lrs[s], lrs[s])
    if isinstance(lrs, types.Array) and lrs.ndim == 2:
        return lambda lrs, s: (lrs[0, s], lrs[1, s])
    return None


def as_pairs(lrs):
    """``lrs`` in the (2, n) form: a (2, n) array as it is, an (n,) array copied into a new (2, n) float64
    array (once per call: the public kernels take both forms, the compiled step loops only this one)."""
    lrs = np.asarray(lrs)
    return lrs if lrs.ndim == 2 else np.stack([lrs, lrs]).astype(np.float64)


@overload(as_pairs, jit_options=_OPTS)
def _as_pairs(lrs):
    if isinstance(lrs, types.Array) and lrs.ndim == 2:
        return lambda lrs: lrs

    if isinstance(lrs, types.Array) and lrs.ndim == 1:
        def impl(lrs):
            out = np.empty((2, lrs.shape[0]), np.float64)
            for s in range(lrs.shape[0]):
                out[0, s] = lrs[s]
                out[1, s] = lrs[s]
            return out
        return impl
    return None


def lr_count(lrs):
    """The number of steps of ``lrs`` (shape (n,) or (2, n))."""
    return np.shape(lrs)[-1]


@overload(lr_count, jit_options=_OPTS)
def _lr_count(lrs):
    if isinstance(lrs, types.Array) and lrs.ndim == 1:
        return lambda lrs: lrs.shape[0]
    if isinstance(lrs, types.Array) and lrs.ndim == 2:
        return lambda lrs: lrs.shape[1]
    return None
