"""The CUDA kernels, compiled per (float type, TILE, REG_BLOCK) on first use: the device functions and
constants they share are made here (``_make``), the kernels in a module per objective (``_common``,
``_population``, ``_empirical``, ``_online``), each a ``build`` of the shared ones.

The scalar math is not rewritten here: ``fastfeat.math.activations.build``, ``fastfeat.math.random.build`` and
``fastfeat.math.regularizer.reg_terms`` are the same plain functions as the CPU kernels use, compiled with
``cuda.jit(device=True)``; the kernels below call them through closure names (no attribute access inside a
kernel).

Conventions shared by all kernels: ``state`` is an int32 device array, ``state[0] != 0`` once a step was
refused (every kernel then returns at once, so the rest of a chunk costs only launches), ``state[1] != 0``
when the current step produced a non-finite gradient entry or would move a weight to ``max_float / 4`` or
beyond (the divergence guard of the CPU kernels, ``fastfeat.kernels.cpu.common``: ``|w| + lr |g| < limit``
for every entry, checked by the kernels that finish the gradient rows, before ``sgd`` writes anything). One-dimensional kernels use grid-stride loops
(any grid size is correct); the row reductions use one thread block per row (grid-stride over rows)
and a shared-memory tree; the products use ``TILE x TILE`` thread blocks in which each thread keeps a
``RB x RB`` block of outputs in registers (a ``TILE RB`` square output tile per block, shared-memory
tiles of ``TILE`` along the summed dimension: RB^2 multiply-adds per 2 RB shared loads), with every
out-of-range load replaced by zero (ragged tails).

Math (the same as the CPU kernels, see ``fastfeat.kernels.cpu.population`` for the population gradient):
population columns ``k < m`` are the student rows, ``k >= m`` the teacher rows (their kernel the cross
kernel of ``fastfeat.math.cross`` when the population ``code`` is a pair of activations), with coefficients
``c_k = a_k`` or ``-a*_{k-m}``; then ``g_a[j] = sum_k c_k K_jk``, ``A_j = sum_k c_k alpha_jk``,
``B_jk = a_j c_k beta_jk``, ``g_W[j] = a_j A_j w_j + sum_k B_jk v_k`` and the loss is
``sum_j a_j sum_k e_k K_jk + 1/2 a*^T K* a*`` with ``e_k = c_k / 2`` for student columns, ``c_k`` else.
Empirical, per batch of ``nb`` samples: ``r_s = f(x_s) - y_s``; ``g_a[j] = 1/nb sum_s r_s phi(z_sj)``;
``g_W[j] = a_j/nb (sum_s r_s sigma'(z_sj) x_s + dnorm (sum_s r_s) w_j/|w_j|)``; loss ``sum_s r_s^2 / (2 nb)``.
"""
from types import SimpleNamespace

import numba
import numpy as np

from ...math.activations import build as build_table
from ...math.cross import build_cross
from ...math.cross import split_code as split_code_py
from ...math.guard import fits as fits_py
from ...math.guard import limit as guard_limit
from ...math.random import build as build_random
from ...math.regularizer import reg_terms as reg_terms_py
from . import _common, _empirical, _online, _population

#: largest block of the single-block reductions (shared-memory size, compile time)
MAX_REDUCE_THREADS = 1024

_CACHE = {}
_RANDOM = {}
#: the modules of kernels, each a ``build(e)`` of the shared device functions and constants ``e``
_MODULES = (_common, _population, _empirical, _online)
#: the numba.cuda module, set on first use; kernels must see it as a module global (the simulator
#: swaps the ``cuda`` global of kernel functions for its fake module; a closure variable would escape it)
cuda = None


def kernels(cuda_module, dtype, tile, reg_block=4):
    """The compiled kernel namespace for float ``dtype``, thread-block side ``tile`` and register block
    ``reg_block`` (cached)."""
    global cuda
    cuda = cuda_module
    for module in _MODULES:  # (their kernels see it as a module global too)
        module.cuda = cuda_module
    key = (np.dtype(dtype), int(tile), int(reg_block))
    if key not in _CACHE:
        _CACHE[key] = _make(np.dtype(dtype).type, int(tile), int(reg_block))
    return _CACHE[key]


def _random():
    if "r" not in _RANDOM:
        _RANDOM["r"] = build_random(cuda.jit(device=True))
    return _RANDOM["r"]


def _make(ft, T, RB):
    """The kernel namespace: the device functions and constants every kernel shares (the activation
    table, the regularizer terms, the guard, the random numbers, the register-block products), then
    the kernels of each module built on them."""
    TR = T * RB  # side of the output tile of one thread block in the products
    tab = build_table(cuda.jit(device=True), ft, fast_acos=False)
    pair = tab.pair
    cross_pair = build_cross(cuda.jit(device=True), ft, tab)  # a teacher of another activation
    split_code = cuda.jit(device=True)(split_code_py)
    neuron = tab.neuron
    dneuron = tab.dneuron
    dneuron_dnorm = tab.dneuron_dnorm
    reg_terms = cuda.jit(device=True)(reg_terms_py)  # (extra g_a[j], extra coefficient of w_j in g_W[j])
    rnd = _random()
    stream_key = rnd.stream_key
    normal_keyed = rnd.normal_keyed
    nbt = numba.from_dtype(np.dtype(ft))
    f64 = numba.float64
    zero, half = ft(0.0), ft(0.5)
    big = guard_limit(ft)  # the divergence guard (fastfeat.math.guard): its threshold and test
    fits = cuda.jit(device=True)(fits_py)
    NR = MAX_REDUCE_THREADS

    # ---------------------------------------------------------------- the tiled products
    # Each thread block computes a (TR x TR) tile of an output product, each thread an (RB x RB) register
    # block of it (rows u T + ty, columns v T + tx), summing over T positions of the shared tiles at a time.
    # The kernels differ in what they load into the shared tiles and where they write the block; the
    # register block's arithmetic is these two device functions, inlined into every product kernel.
    @cuda.jit(device=True, inline="always")
    def zero_block(acc):
        for u in range(RB):
            for v in range(RB):
                acc[u, v] = zero

    @cuda.jit(device=True, inline="always")
    def tile_product(A, B, acc, ra, rb, ty, tx):
        """acc[u, v] += sum_t A[u T + ty, t] B[v T + tx, t] (pass a tile stored the other way round as
        its ``.T``)."""
        for t in range(T):
            for u in range(RB):
                ra[u] = A[u * T + ty, t]
                rb[u] = B[u * T + tx, t]
            for u in range(RB):
                for v in range(RB):
                    acc[u, v] += ra[u] * rb[v]

    e = SimpleNamespace(**{k: v for k, v in locals().items() if k != "e"})
    ns = SimpleNamespace(ftype=ft, tile=T, reg_block=RB)
    for module in _MODULES:
        for fn in module.build(e):
            setattr(ns, fn.py_func.__name__, fn)
    return ns


def signatures(dtype):
    """Argument types of every kernel for one float dtype (as the runners launch them)."""
    ft = numba.from_dtype(np.dtype(dtype))
    i64, u64, b1, f64 = numba.int64, numba.uint64, numba.boolean, numba.float64
    A1, A2, A3 = ft[::1], ft[:, ::1], ft[:, :, ::1]
    st = numba.int32[::1]
    d1 = f64[::1]
    ix = i64[::1]
    return {
        "row_norms": (A2, A1, i64, st),
        "reduce_sums": (A1, i64, d1, st),
        "commit_loss": (d1, i64, f64, f64, d1, i64, st),
        "sgd": (A2, A1, A2, A1, ft, ft, st),
        "pop_gram": (A2, A2, i64, i64, A2, st),
        "pop_pairs": (A1, A1, A1, i64, i64, i64, A2, A2, b1, st),
        "pop_bv": (A2, A2, A2, i64, i64, A2, st),
        "pop_rows": (A2, A1, A1, A2, i64, i64, A2, A1, A1, b1, i64, ft, ft, ft, ft, st),
        "emp_forward": (A2, ix, i64, i64, A2, A2, st),
        "emp_resid": (A2, A1, A1, A1, ix, i64, i64, i64, A1, i64, st),
        "emp_cols": (A2, A1, i64, i64, A1, i64, A2, st),
        "emp_gsum": (A2, i64, A1, b1, st),
        "emp_gw": (A2, A2, ix, i64, i64, A2, b1, st),
        "emp_finish": (A2, A1, A1, A2, A1, d1, ft, i64, b1, i64, ft, ft, ft, ft, st),
        "online_draw": (u64, u64, i64, ft, A2, A1, st),
        "teacher_labels": (A2, A2, A1, A1, i64, A1, st),
    }


def compile_ptx_all(cuda_module, dtype, tile, reg_block=4, cc=(8, 0)):
    """Compile every kernel to PTX for compute capability ``cc`` without a GPU (needs NVVM): proves
    that the kernels type-check on the real CUDA target, which the simulator does not. Returns
    {name: ptx}."""
    import types
    from unittest import mock

    from numba.cuda import dispatcher
    ns = kernels(cuda_module, dtype, tile, reg_block)
    out = {}
    # device functions called from a kernel compile for the current device's cc: pretend there is one
    fake = types.SimpleNamespace(compute_capability=cc)
    with mock.patch.object(dispatcher, "get_current_device", lambda: fake):
        for name, sig in signatures(dtype).items():
            ptx, _ = cuda_module.compile_ptx(getattr(ns, name).py_func, sig, cc=cc)
            out[name] = ptx
    return out
