"""CUDA kernels (numba-cuda) behind ``ff.train(..., device="cuda")``: population, empirical, online.

This package holds what needs nothing above the kernels: the device kernels (``_build``), the availability
check (``require``, ``available``, ``CudaUnavailableError``) and the launch settings. Device nets
(``to_device``) and the runners that drive the kernels from an objective live in ``fastfeat.gpu``.

Importing this package is free: ``numba.cuda`` is imported on the first ``device="cuda"`` use (the
``[cuda]`` extra, ``pip install fastfeat[cuda]``). Without numba-cuda or without a usable NVIDIA GPU that
first use raises ``CudaUnavailableError`` naming the extra.

The kernels share the scalar math with the CPU kernels: ``fastfeat.math.activations.build`` and
``fastfeat.math.random.build`` compiled with ``numba.cuda.jit(device=True)``; online SGD draws the same
counter-based samples as the CPU kernel, so one seed gives the same run on both devices (up to rounding).

Weights on the device
---------------------
``ff.train(net, objective, device="cuda")`` uploads ``net.W``, ``net.a`` once, keeps them on the GPU for
the whole call and copies them back into ``net.W``, ``net.a`` when it returns (also on an error or on
divergence, then with the last finite weights). The ``"loss"`` metric is computed on the device; only
its value comes back. Metrics and callbacks that read the weights get them copied on demand.

To keep the weights on the GPU across calls, train a device net::

    dnet = ff.gpu.to_device(net)                 # a TwoLayer whose weights live on the GPU
    ff.train(dnet, obj, steps=1000, lr=0.1, device="cuda")
    ff.train(dnet, obj, steps=1000, lr=0.01, device="cuda")   # no host <-> device copy of the weights
    net = dnet.to_host()                         # an ordinary ff.TwoLayer again

``dnet.W`` / ``dnet.a`` (what CPU code such as ``objective.loss(dnet)`` and the metrics read) are
read-only host snapshots, refreshed from the device on access after training changed the weights;
``dnet.W_device`` / ``dnet.a_device`` are the numba device arrays themselves (``to_device`` also takes
arrays with ``__cuda_array_interface__``, e.g. CuPy or PyTorch CUDA tensors, through
``to_device(W, a, activation)``, training them in place without a copy). Training a device net with
``device="cpu"`` is refused.

Settings
--------
``THREADS_PER_BLOCK`` (env ``FASTFEAT_CUDA_THREADS``, default 256): block size of the one-dimensional
grid-stride kernels and of the row reductions. ``TILE`` (env ``FASTFEAT_CUDA_TILE``, default 16): side of
the square thread blocks of the shared-memory tiled products; ``REG_BLOCK`` (env ``FASTFEAT_CUDA_RB``,
default 4): each thread of a product accumulates a REG_BLOCK x REG_BLOCK block of outputs in registers,
so one thread block computes a (TILE REG_BLOCK)^2 tile (kernels are compiled per setting). Tests lower
them so that tiny problems span several blocks with ragged tails. ``ROWS_BUDGET`` bounds the elements of the per-step
scratch blocks (population: rows x (m + m*); empirical: samples x m), the O(tile * m) memory of
the performance model of docs/performance-notes.md.
"""
import os

THREADS_PER_BLOCK = int(os.environ.get("FASTFEAT_CUDA_THREADS", "256"))
TILE = int(os.environ.get("FASTFEAT_CUDA_TILE", "16"))
REG_BLOCK = int(os.environ.get("FASTFEAT_CUDA_RB", "4"))
ROWS_BUDGET = int(os.environ.get("FASTFEAT_CUDA_BUDGET", str(1 << 26)))

INSTALL_HINT = "pip install fastfeat[cuda]"


class CudaUnavailableError(RuntimeError):
    """``device="cuda"`` was asked for, but numba-cuda or a usable NVIDIA GPU is missing."""


def _import_numba_cuda():
    """Import the numba-cuda target (the ``[cuda]`` extra); a separate function so tests can replace it."""
    import numba_cuda  # noqa: F401  (the NVIDIA-maintained target; numba's built-in one is deprecated)
    from numba import cuda
    return cuda


_CUDA = None


def require():
    """The ``numba.cuda`` module, ready to launch kernels, or one ``CudaUnavailableError`` saying why not."""
    global _CUDA
    if _CUDA is not None:
        return _CUDA
    try:
        cuda = _import_numba_cuda()
    except ImportError as exc:
        raise CudaUnavailableError(
            f"device='cuda' needs the numba-cuda package, which is not installed ({exc}); install the extra: "
            f"{INSTALL_HINT}") from None
    try:
        ok = cuda.is_available()
    except Exception as exc:  # noqa: BLE001 - a broken driver raises all sorts of errors
        ok, why = False, f"{type(exc).__name__}: {exc}"
    else:
        why = "no CUDA driver or NVIDIA GPU was found"
    if not ok:
        raise CudaUnavailableError(
            f"device='cuda' needs an NVIDIA GPU with a working CUDA driver and the numba-cuda package "
            f"({INSTALL_HINT}); {why}. Use device='cpu', or set NUMBA_ENABLE_CUDASIM=1 to run the CUDA "
            f"kernels in numba's (slow) simulator.")
    if "NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS" not in os.environ:
        try:  # small problems legitimately launch small grids: no warning per launch
            from numba.cuda.core import config
            config.CUDA_LOW_OCCUPANCY_WARNINGS = 0
        except ImportError:  # pragma: no cover - other numba-cuda layouts
            pass
    _CUDA = cuda
    return cuda


def available():
    """True when ``device="cuda"`` can run here (numba-cuda installed and a GPU, or the simulator)."""
    try:
        require()
    except CudaUnavailableError:
        return False
    return True


def __getattr__(name):
    # the device nets live in fastfeat.gpu (the host side, a layer above this one, which is not imported
    # from here): the old names say where they went
    if name in ("to_device", "to_host", "DeviceNet"):
        raise AttributeError(f"fastfeat.kernels.cuda.{name} moved to fastfeat.gpu.{name}: "
                             f"from fastfeat import gpu; gpu.{name}(...)")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
