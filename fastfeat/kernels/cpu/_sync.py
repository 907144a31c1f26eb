"""A persistent team of numba threads with a spin barrier, for kernels whose steps are too short for a
parallel region each (online SGD with batch 1: a few microseconds per step, while waking the pool for a
``prange`` costs about as much).

numba has no atomics on the CPU, so the few needed are LLVM atomic instructions emitted through
``numba.extending.intrinsic``: ``atomic_add`` (seq_cst read-modify-write, returns the old value),
``atomic_load`` (acquire), ``atomic_cas`` (seq_cst compare-and-swap, returns whether it swapped). A
worker publishes its results with plain stores and then ``atomic_add`` on the step counter; a worker that
sees the counter reach its target (``atomic_load``, acquire) sees those stores.

A team only forms when every worker of the ``prange`` is running at the same time. ``join`` is the
handshake: the last worker to arrive swaps the mode from 0 to TEAM; a worker that waits too long swaps it
to SOLO and does all the work alone, and any worker that arrives after that leaves at once. So a thread
pool that runs the iterations one after another (one thread, a nested ``prange``, a busy pool) cannot
deadlock: the first iteration goes solo, the others return. Results never depend on which happened:
the work is split into fixed chunks and every reduction runs over the chunks in a fixed order.

Waiting spins with the x86 ``pause`` instruction and, after ``SPIN`` rounds, yields the core
(``sched_yield``) so a waiting worker does not starve the one it waits for on a busy machine.
"""
import ctypes
import platform

import numba
import numpy as np
from llvmlite import binding as ll
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._jit import njit

#: modes of a team (``sync[MODE]``)
TEAM, SOLO = 1, 2
#: slots of the int64 ``sync`` array
ARRIVED, MODE, COUNTER = 0, 8, 16   # one 64-byte line each
SYNC_SIZE = 24
#: pause rounds before a waiting worker starts yielding its core
SPIN = 4000
#: yields a worker waits for the rest of the team before it goes solo
JOIN_YIELDS = 20000


def _pointer(context, builder, aryty, ary, idx):
    arr = context.make_array(aryty)(context, builder, ary)
    return cgutils.get_item_pointer(context, builder, aryty, arr, [idx], wraparound=False)


def _int64_array(arr):
    return isinstance(arr, types.Array) and arr.dtype == types.int64 and arr.ndim == 1


@intrinsic
def atomic_add(typingctx, arr, idx, val):
    """``arr[idx] += val`` atomically (seq_cst); returns the old value."""
    if not (_int64_array(arr) and isinstance(idx, types.Integer) and isinstance(val, types.Integer)):
        return None
    sig = types.int64(arr, idx, val)

    def codegen(context, builder, signature, args):
        ptr = _pointer(context, builder, signature.args[0], args[0], args[1])
        v = context.cast(builder, args[2], signature.args[2], types.int64)
        return builder.atomic_rmw("add", ptr, v, "seq_cst")

    return sig, codegen


@intrinsic
def atomic_load(typingctx, arr, idx):
    """``arr[idx]`` read with acquire ordering."""
    if not (_int64_array(arr) and isinstance(idx, types.Integer)):
        return None
    sig = types.int64(arr, idx)

    def codegen(context, builder, signature, args):
        ptr = _pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "acquire", 8)

    return sig, codegen


@intrinsic
def atomic_cas(typingctx, arr, idx, expected, new):
    """Atomically ``if arr[idx] == expected: arr[idx] = new`` (seq_cst); returns whether it swapped."""
    if not (_int64_array(arr) and all(isinstance(t, types.Integer) for t in (idx, expected, new))):
        return None
    sig = types.boolean(arr, idx, expected, new)

    def codegen(context, builder, signature, args):
        ptr = _pointer(context, builder, signature.args[0], args[0], args[1])
        e = context.cast(builder, args[2], signature.args[2], types.int64)
        n = context.cast(builder, args[3], signature.args[3], types.int64)
        res = builder.cmpxchg(ptr, e, n, "seq_cst", "seq_cst")
        return builder.extract_value(res, 1)

    return sig, codegen


_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


@intrinsic
def cpu_relax(typingctx):
    """The spin-wait hint (x86 ``pause``; nothing elsewhere)."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        if _X86:
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def cycles(typingctx):
    """The CPU's cycle counter (``llvm.readcyclecounter``; 0 where the target has none). Only used to
    balance work between workers, never in results."""
    sig = types.int64()

    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(64), []),
                                            "llvm.readcyclecounter")
        return builder.call(fn, [])

    return sig, codegen


@njit
def rebalance(bounds, times, minimum):
    """Move each inner boundary of ``bounds`` (worker k owns units bounds[k] .. bounds[k+1]-1) by one
    unit towards the faster neighbour when the two spent more than 10% apart (``times``: each worker's
    last measured time). Every worker runs this on the same data, so all agree on the new split."""
    for k in range(1, bounds.shape[0] - 1):
        ta = times[k - 1]
        tb = times[k]
        if ta * 10 > tb * 11 and bounds[k] - bounds[k - 1] > minimum:
            bounds[k] -= 1
        elif tb * 10 > ta * 11 and bounds[k + 1] - bounds[k] > minimum:
            bounds[k] += 1


def _find_sched_yield():
    try:
        fn = ctypes.CDLL(None).sched_yield
    except (OSError, AttributeError, TypeError):
        return None
    return ctypes.cast(fn, ctypes.c_void_p).value


# linked by name (registered with LLVM before any kernel is compiled or loaded from the cache): code
# holding a ctypes function's address cannot be cached
_yield_address = _find_sched_yield()
if _yield_address is not None:
    ll.add_symbol("fastfeat_sched_yield", _yield_address)


@intrinsic
def _sched_yield(typingctx):
    sig = types.void()

    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []),
                                            "fastfeat_sched_yield")
        builder.call(fn, [])
        return context.get_dummy_value()

    return sig, codegen


if _yield_address is not None:
    @njit
    def yield_core():
        _sched_yield()
else:  # pragma: no cover - platforms without sched_yield keep spinning
    @njit
    def yield_core():
        cpu_relax()


@intrinsic
def num_threads(typingctx):
    """``numba.get_num_threads()``, calling the threading layer's ``get_num_threads`` by its symbol name:
    numba's own version calls it through a ctypes function pointer, and numba cannot cache code that
    holds one. The threading layer registers the symbol with LLVM when it starts (here, at the first
    compilation; before cached parallel code is loaded, numba starts it)."""
    numba.get_num_threads()  # starts the threading layer

    def codegen(context, builder, signature, args):
        # declared as numba's parallel code declares it (the two declarations meet in one module)
        fnty = ir.FunctionType(context.get_value_type(types.intp), [])
        return builder.call(cgutils.get_or_insert_function(builder.module, fnty, "get_num_threads"), [])

    return types.intp(), codegen


@intrinsic
def set_num_threads(typingctx, n):
    """``numba.set_num_threads(n)`` for this thread's later parallel regions, by the threading layer's
    symbol (see ``num_threads``). ``n`` must be between 1 and ``NUMBA_NUM_THREADS``; the callers here
    pass 1 or a value ``num_threads`` returned."""
    if not isinstance(n, types.Integer):
        return None
    numba.get_num_threads()  # starts the threading layer

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i32]),
                                            "set_num_threads")
        builder.call(fn, [context.cast(builder, args[0], signature.args[0], types.int32)])
        return context.get_dummy_value()

    return types.void(n), codegen


@njit
def wait_at_least(sync, slot, target):
    """Spin until ``sync[slot] >= target`` (acquire)."""
    spins = 0
    while atomic_load(sync, slot) < target:
        if spins < SPIN:
            spins += 1
            cpu_relax()
        else:
            yield_core()


@njit
def arrive_and_wait(sync, target):
    """The barrier: count this worker in and wait until ``target`` arrivals (over all steps so far)."""
    atomic_add(sync, COUNTER, 1)
    wait_at_least(sync, COUNTER, target)


@njit
def join(sync, n_workers):
    """Team formation (see the module docstring). Returns TEAM, SOLO, or 0 (leave at once)."""
    if n_workers == 1:
        return SOLO
    n = atomic_add(sync, ARRIVED, 1) + 1
    if n == n_workers:
        return TEAM if atomic_cas(sync, MODE, 0, TEAM) else 0
    spins = 0
    while True:
        mode = atomic_load(sync, MODE)
        if mode == TEAM:
            return TEAM
        if mode == SOLO:
            return 0
        spins += 1
        if spins < SPIN:
            cpu_relax()
        elif spins < SPIN + JOIN_YIELDS:
            yield_core()
        else:
            if atomic_cas(sync, MODE, 0, SOLO):
                return SOLO
            return TEAM if atomic_load(sync, MODE) == TEAM else 0


def new_sync():
    """A fresh ``sync`` array (zeroed before every team run)."""
    return np.zeros(SYNC_SIZE, np.int64)


if numba.config.DISABLE_JIT:  # intrinsics run only compiled; plain Python (NUMBA_DISABLE_JIT=1) gets these
    import os as _os
    import time as _time

    def atomic_add(arr, idx, val):  # noqa: F811
        old = int(arr[idx])
        arr[idx] += val
        return old

    def atomic_load(arr, idx):  # noqa: F811
        return int(arr[idx])

    def atomic_cas(arr, idx, expected, new):  # noqa: F811
        if arr[idx] == expected:
            arr[idx] = new
            return True
        return False

    def cpu_relax():  # noqa: F811
        pass

    def cycles():  # noqa: F811
        return _time.perf_counter_ns()

    def yield_core():  # noqa: F811
        _os.sched_yield()

    def num_threads():  # noqa: F811
        return numba.get_num_threads()

    def set_num_threads(n):  # noqa: F811
        numba.set_num_threads(n)

    def join(sync, n_workers):  # noqa: F811
        # prange runs its iterations one after another here: the first goes solo, the others leave
        return SOLO if atomic_add(sync, ARRIVED, 1) == 0 else 0
