"""Shared compilation settings and the CPU builds of the activation table.

``njit`` / ``pnjit`` compile with the project's fast-math set, ``nogil`` and, for module-level functions,
``cache=True`` (``fastfeat.kernels._cache``: cached on disk, never stale). Functions made inside other
functions are compiled into the module-level kernels that call them and are not cached on their own.
"""
import ctypes
import os
import sys
import types as pytypes

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ...math.activations import build
from ...math.cross import build_cross
from .. import _cache  # noqa: F401  (installs the cache locator before any kernel is defined)


def _tbb_loadable():
    """Make numba's ``tbb`` threading layer loadable where the ``tbb`` wheel is installed: the wheel puts
    ``libtbb.so.12`` into ``sys.prefix/lib``, which the loader of a virtual environment does not search,
    so numba would fall back to GNU OpenMP, whose processes cannot ``fork`` once it ran (a forked child
    that runs a parallel region is killed: "fork() called from a process already using GNU OpenMP").
    Loading the library by its path first lets numba's layer find it. Only when the program left the
    choice of layer to numba; returns whether the library is loaded."""
    if not sys.platform.startswith("linux") or numba.config.THREADING_LAYER not in ("default", "safe", "forksafe",
                                                                                      "threadsafe", "tbb"):
        return False
    for folder in dict.fromkeys([os.path.join(sys.prefix, "lib"), os.path.join(sys.base_prefix, "lib")]):
        path = os.path.join(folder, "libtbb.so.12")
        if os.path.exists(path):
            try:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
                return True
            except OSError:
                return False
    return False


TBB_LOADED = _tbb_loadable()

# Start numba's threading layer now: tbb where it can be loaded (fork-safe; as fast as OpenMP for these
# kernels), else numba's next choice. numba starts it when a parallel function is called from Python,
# not when compiled code reaches one: a function loaded from the disk cache that calls a parallel
# kernel (the gradient-flow integrator; a user's cached @njit code calling ff.kernels) crashed the
# process with a segmentation fault when it ran first in a fresh process. get_num_threads starts it.
numba.get_num_threads()

#: the safe fastmath set: no nnan/ninf, so isfinite checks keep working
FASTMATH = set({"nsz", "arcp", "contract", "afn", "reassoc"})


def njit(*args, **kw):
    kw.setdefault("fastmath", FASTMATH)
    kw.setdefault("nogil", True)
    kw.setdefault("error_model", "numpy")

    def wrap(fn):
        opts = dict(kw)
        # module-level functions are cached on disk; a closure's cache key would hold its cells
        opts.setdefault("cache", "<locals>" not in fn.__qualname__)
        return numba.njit(**opts)(fn)

    if args and callable(args[0]):
        return wrap(args[0])
    return wrap


def pnjit(*args, **kw):
    kw.setdefault("parallel", True)
    return njit(*args, **kw)


_scalar = numba.njit(fastmath=FASTMATH, error_model="numpy")
#: both tables use the branch-free arccos / arcsin (a few ulp; libm's scalar acos stopped the pair loops
#: from vectorizing: 7.3 ns an element against 0.85 ns in float64 on Zen 4, 4.8 against 0.4 in float32)
TABLE32 = build(_scalar, np.float32, fast_acos=True)
TABLE64 = build(_scalar, np.float64, fast_acos=True)
TABLE32.cross_pair = build_cross(_scalar, np.float32, TABLE32)
TABLE64.cross_pair = build_cross(_scalar, np.float64, TABLE64)


_serial_builds = {}


def serial_build(disp):
    """The build of the kernel ``disp`` that runs on the calling thread: the same source compiled with
    ``parallel=False`` (``prange`` is then ``range``), calling the serial builds of the kernels it calls
    (its global names and closure cells, followed down), so that it opens no parallel region. ``disp``
    itself when neither it nor anything it calls is parallel.

    A parallel region costs about a microsecond to launch even on one thread (numba's gufunc scheduler
    and the threading layer's arena), which at small sizes is a sizeable part of a step that opens tens
    of them. A serial build is cached on disk as any kernel, under the name ``<name>__serial``; its
    results may differ from the parallel build's in the last bits (the vectorizer sees other loops), so
    callers choose between the two by the problem's sizes only, never by the thread count. Build it
    after every function it calls is defined (at the end of the module): it looks the names up then.
    """
    if not isinstance(disp, numba.core.dispatcher.Dispatcher):  # NUMBA_DISABLE_JIT=1: plain Python
        return disp
    key = id(disp)
    if key in _serial_builds:
        return _serial_builds[key]
    _serial_builds[key] = disp  # a kernel that calls itself
    fn = disp.py_func
    swaps = {}
    for name in _global_names(fn.__code__):
        obj = fn.__globals__.get(name)
        if isinstance(obj, numba.core.dispatcher.Dispatcher):
            twin = serial_build(obj)
            if twin is not obj:
                swaps[name] = twin
    cells = fn.__closure__
    if cells:
        values = [c.cell_contents for c in cells]
        twins = [serial_build(v) if isinstance(v, numba.core.dispatcher.Dispatcher) else v for v in values]
        if any(t is not v for t, v in zip(twins, values)):
            cells = tuple(pytypes.CellType(t) for t in twins)
    if not disp.targetoptions.get("parallel") and not swaps and cells is fn.__closure__:
        return disp
    glob = dict(fn.__globals__)
    glob.update(swaps)
    copy = pytypes.FunctionType(fn.__code__, glob, fn.__name__, fn.__defaults__, cells)
    copy.__qualname__ = fn.__qualname__ + "__serial"
    copy.__module__ = fn.__module__
    copy.__doc__ = fn.__doc__
    opts = dict(disp.targetoptions)
    opts["parallel"] = False
    opts.pop("nopython", None)  # implied by njit
    twin = njit(**opts)(copy)
    _serial_builds[key] = twin
    return twin


def _global_names(code):
    """The global (and attribute) names ``code`` and the functions defined in it refer to."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, pytypes.CodeType):
            names |= _global_names(const)
    return names


#: ``FASTFEAT_WIDE_VECTORS=0`` turns ``wide_vectors`` off (for comparisons)
WIDE = os.environ.get("FASTFEAT_WIDE_VECTORS", "1") != "0"


#: LLVM CPU names (prefixes) with AVX-512, for ``NUMBA_CPU_NAME`` given without ``NUMBA_CPU_FEATURES``
_AVX512_CPUS = ("skylake-avx512", "cascadelake", "cooperlake", "cannonlake", "icelake", "tigerlake", "rocketlake",
                "sapphirerapids", "emeraldrapids", "graniterapids", "knl", "knm", "znver4", "znver5", "x86-64-v4")


def _target_has_avx512():
    """Whether numba compiles for a CPU with AVX-512: ``NUMBA_CPU_FEATURES`` when set, else the CPU that
    ``NUMBA_CPU_NAME`` names (e.g. ``haswell`` to build the AVX2 code on any x86 machine), else the host."""
    if numba.config.CPU_FEATURES:
        return "+avx512f" in numba.config.CPU_FEATURES.split(",")
    name = (numba.config.CPU_NAME or "host").lower()
    if name not in ("host", "generic"):
        return name.startswith(_AVX512_CPUS)
    try:
        from llvmlite import binding
        return bool(binding.get_host_cpu_features().get("avx512f", False))
    except Exception:  # pragma: no cover - feature query unavailable: assume the narrower target
        return False


#: the instruction-set variants of the kernels that size register blocks by the vector registers: AVX-512
#: has 32 registers of 64 bytes, AVX2 16 of 32 (a block sized for the first spills on the second). The
#: variant is a compile-time argument (``isa``) of those kernels, so both build and run on any x86 CPU
#: (LLVM splits vectors wider than the target's); ``HOST_ISA`` is the one the kernels use by default.
AVX2, AVX512 = 0, 1
VECTOR_BYTES = {AVX2: 32, AVX512: 64}
VECTOR_REGISTERS = {AVX2: 16, AVX512: 32}
HOST_ISA = AVX512 if _target_has_avx512() else AVX2


def isa_value(isa):
    """The variant a numba type stands for: a literal integer, or an omitted argument's default (a
    parameter ``isa=HOST_ISA`` that the caller left out); None for a value known only at run time."""
    if isinstance(isa, types.IntegerLiteral):
        v = isa.literal_value
    elif isinstance(isa, types.Omitted) and isinstance(isa.value, int):
        v = isa.value
    else:
        return None
    if v not in VECTOR_BYTES:
        raise ValueError(f"unknown instruction-set variant {v}")
    return v


@intrinsic
def lanes(typingctx, like, isa):
    """The lanes of a vector register of variant ``isa`` (a compile-time constant) for ``like``'s float
    type (an array or a scalar): a constant of the compiled code, for loop bounds LLVM unrolls."""
    t = like.dtype if isinstance(like, types.Array) else like
    v = isa_value(isa)
    if v is None or not isinstance(t, types.Float):
        return None
    n = VECTOR_BYTES[v] * 8 // t.bitwidth

    def codegen(context, builder, signature, args):
        return context.get_constant(types.intp, n)

    return types.intp(like, isa), codegen


@intrinsic
def wide_vectors(typingctx):
    """Call at the top of an njit function whose loops are long, regular multiply-adds: it lets LLVM
    vectorize them with the widest registers the CPU has. On x86 CPUs with AVX-512, LLVM otherwise keeps
    to 256-bit vectors (its ``prefer-256-bit`` tuning, meant for code that mixes short loops with scalar
    work). Only the function attributes change; elsewhere, and for the results, it does nothing."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        if not WIDE:
            return context.get_dummy_value()
        attrs = builder.function.attributes
        # string attributes: llvmlite's AttributeSet only validates the names it knows
        set.add(attrs, '"prefer-vector-width"="512"')
        set.add(attrs, '"min-legal-vector-width"="512"')
        return context.get_dummy_value()

    return sig, codegen


def _stack_array(like, size):
    """The codegen of a 1-d C array of ``size`` elements of ``like``'s dtype on the stack frame."""
    arrty = types.Array(like.dtype, 1, "C")

    def codegen(context, builder, signature, args):
        lt = context.get_value_type(like.dtype)
        ptr = cgutils.alloca_once(builder, lt, size=size)
        ary = context.make_array(arrty)(context, builder)
        itemsize = context.get_constant(types.intp, context.get_abi_sizeof(lt))
        shape = cgutils.pack_array(builder, [context.get_constant(types.intp, size)])
        context.populate_array(ary, data=ptr, shape=shape, strides=cgutils.pack_array(builder, [itemsize]),
                               itemsize=itemsize, meminfo=None)
        return ary._getvalue()

    return arrty, codegen


@intrinsic
def local_array(typingctx, like, n):
    """A 1-d array of ``n`` elements (a compile-time constant) of ``like``'s dtype on the stack frame of
    the calling function, uninitialized. Meant for a few accumulators that LLVM should keep in
    registers: once the loops that index it are unrolled, the array is promoted to registers, which it
    cannot be when it comes from ``np.empty`` (a heap allocation). Never return it or keep a view."""
    if not isinstance(n, types.IntegerLiteral) or not isinstance(like, types.Array):
        return None
    arrty, codegen = _stack_array(like, n.literal_value)
    return arrty(like, n), codegen


@intrinsic
def local_vectors(typingctx, like, n, isa):
    """``local_array`` of ``n`` vector registers of variant ``isa`` (both compile-time constants):
    ``n * lanes(like, isa)`` elements."""
    v = isa_value(isa)
    if v is None or not isinstance(n, types.IntegerLiteral) or not isinstance(like, types.Array):
        return None
    arrty, codegen = _stack_array(like, n.literal_value * VECTOR_BYTES[v] * 8 // like.dtype.bitwidth)
    return arrty(like, n, isa), codegen


def aligned(shape, dtype, fill=0.0):
    """A C-contiguous array of ``shape`` filled with ``fill`` that starts on a 64-byte boundary (numpy
    only promises 16 bytes). Used where workers write disjoint ranges whose offsets are multiples of 64
    bytes (no cache line written by two cores) and for tables read with whole-line vector loads."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    raw = np.empty(n * dtype.itemsize + 64, np.uint8)
    off = (-raw.ctypes.data) % 64
    out = raw[off:off + n * dtype.itemsize].view(dtype).reshape(shape)
    out[...] = fill
    return out


def _fold_plan(v):
    """The shuffles that fold ``v`` vectors of ``v`` lanes into one vector of their ``v`` sums: at each
    level, pairs of vectors whose lanes form segments of width w become one vector of segments of width
    w / 2 (``x + y`` with ``x``, ``y`` two shuffles of the pair). Returns (the (x, y) masks per level,
    the final permutation that puts the sum of vector q in lane q)."""
    labels = [[q] * v for q in range(v)]
    levels = []
    w = v
    while len(labels) > 1:
        h = w // 2
        mx, my = [], []
        for s in range(v // w):
            mx += [s * w + t for t in range(h)] + [v + s * w + t for t in range(h)]
            my += [s * w + h + t for t in range(h)] + [v + s * w + h + t for t in range(h)]
        folded = []
        for p in range(len(labels) // 2):
            both = labels[2 * p] + labels[2 * p + 1]
            assert [both[i] for i in mx] == [both[i] for i in my]
            folded.append([both[i] for i in mx])
        labels = folded
        levels.append((mx, my))
        w = h
    return levels, [labels[0].index(q) for q in range(v)]


@intrinsic
def vector_sums(typingctx, acc, out, n, isa):
    """``out[q] = sum(acc[q V : (q + 1) V])`` for q < n (a compile-time constant, a multiple of V), V the
    lanes of a vector register of variant ``isa`` (a compile-time constant, ``lanes``): the horizontal
    sums of n accumulators kept as ``local_vectors``. Each group of V accumulators is folded pairwise, two shuffles and
    one add per pair and level (2 V - 2 shuffles and V - 1 adds for V sums), where summing them one by
    one takes log2(V) shuffles and adds each; LLVM does not find the folding by itself. The additions are in a fixed
    order, so the sums do not depend on anything but the inputs."""
    if not (isinstance(acc, types.Array) and isinstance(out, types.Array) and isinstance(n, types.IntegerLiteral)
            and acc.dtype == out.dtype and acc.dtype in (types.float32, types.float64)):
        return None
    variant = isa_value(isa)
    count = n.literal_value
    if variant is None or count % (VECTOR_BYTES[variant] * 8 // acc.dtype.bitwidth):
        return None

    def codegen(context, builder, signature, args):
        accty, outty = signature.args[:2]
        a_s = context.make_array(accty)(context, builder, args[0])
        o_s = context.make_array(outty)(context, builder, args[1])
        elt = context.get_value_type(accty.dtype)
        size = context.get_abi_sizeof(elt)
        v = VECTOR_BYTES[variant] // size
        vty = ir.VectorType(elt, v)
        mty = ir.VectorType(ir.IntType(32), v)
        levels, final = _fold_plan(v)
        a_v = builder.bitcast(a_s.data, vty.as_pointer())
        o_v = builder.bitcast(o_s.data, vty.as_pointer())
        for g in range(count // v):
            vs = [builder.load(builder.gep(a_v, [ir.Constant(ir.IntType(64), g * v + q)]), align=size)
                  for q in range(v)]
            for mx, my in levels:
                vs = [builder.fadd(builder.shuffle_vector(vs[2 * p], vs[2 * p + 1], ir.Constant(mty, mx)),
                                   builder.shuffle_vector(vs[2 * p], vs[2 * p + 1], ir.Constant(mty, my)))
                      for p in range(len(vs) // 2)]
            res = builder.shuffle_vector(vs[0], vs[0], ir.Constant(mty, final))
            builder.store(res, builder.gep(o_v, [ir.Constant(ir.IntType(64), g)]), align=size)
        return context.get_dummy_value()

    return types.void(acc, out, n, isa), codegen


if numba.config.DISABLE_JIT:  # intrinsics run only compiled; plain Python gets these
    def lanes(like, isa):  # noqa: F811
        return VECTOR_BYTES[isa] // np.asarray(like).dtype.itemsize

    def local_vectors(like, n, isa):  # noqa: F811
        return np.empty(n * lanes(like, isa), np.asarray(like).dtype)

    def vector_sums(acc, out, n, isa):  # noqa: F811
        v = lanes(acc, isa)
        out[:n] = acc[:n * v].reshape(n, v).sum(axis=1)

    def wide_vectors():  # noqa: F811
        pass

    def local_array(like, n):  # noqa: F811
        return np.empty(n, np.asarray(like).dtype)
