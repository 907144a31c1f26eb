"""``DeviceNet``: an ``ff.TwoLayer`` whose weights live on the GPU (``fastfeat.gpu.to_device``)."""
import numpy as np

from ..kernels.cuda import require
from ..math.activations import code_of
from ..networks import TwoLayer, check_net


class DeviceNet(TwoLayer):
    """A student network whose weights ``W_device`` (m, d) and ``a_device`` (m,) are CUDA device arrays.

    ``ff.train(..., device="cuda")`` updates them in place and never copies them to the host. ``W`` and
    ``a`` are host snapshots for CPU code (metrics, ``objective.loss``), copied from the device on the
    first access after the weights changed; writing into a snapshot changes the device weights only
    through ``push()`` (``ff.Checkpoint.restore`` does that).
    """

    on_device = True

    def __init__(self, W_device, a_device, activation, host_W, host_a):
        # no TwoLayer.__init__: it validates numpy arrays; the device arrays were checked by the caller
        self.code = code_of(activation)
        self.activation = activation
        self.W_device = W_device
        self.a_device = a_device
        self._hW = host_W
        self._ha = host_a
        self._fresh = True

    @classmethod
    def create(cls, net, a=None, activation=None):
        if isinstance(net, DeviceNet):
            return net
        if isinstance(net, TwoLayer):
            if a is not None or activation is not None:
                raise TypeError("to_device(net) takes no a= or activation= when net is an ff.TwoLayer")
            check_net(net)
            if net.gamma != 0:
                raise ValueError(f"net has output scale {net.scale!r}: device nets are standard nets; train the net "
                                 "itself with ff.train(..., device='cuda'), or move net.as_standard() (the same "
                                 "function with second layer m^-gamma a)")
            cuda = require()
            return cls(cuda.to_device(net.W), cuda.to_device(net.a), net.activation, np.array(net.W),
                       np.array(net.a))
        cuda = require()
        if a is None:
            raise TypeError(f"to_device takes an ff.TwoLayer, or (W, a, activation) device arrays; got "
                            f"{type(net).__name__}")
        activation = "relu" if activation is None else activation
        code_of(activation)
        W = _as_device(cuda, net, "W")
        a = _as_device(cuda, a, "a")
        if len(W.shape) != 2 or len(a.shape) != 1:
            raise ValueError(f"W must be (m, d) and a (m,), got shapes {W.shape} and {a.shape}")
        if a.shape[0] != W.shape[0]:
            raise ValueError(f"a has {a.shape[0]} entries but W has {W.shape[0]} rows; they must match")
        if W.dtype not in (np.float32, np.float64) or a.dtype != W.dtype:
            raise TypeError(f"W and a must both be float32 or float64, got {W.dtype} and {a.dtype}")
        if 0 in W.shape:
            raise ValueError(f"W must not be empty, got shape {W.shape}")
        if not (_c_contiguous(W) and _c_contiguous(a)):
            raise ValueError("W and a must be C-contiguous device arrays")
        hW = W.copy_to_host()
        ha = a.copy_to_host()
        if not (np.all(np.isfinite(hW)) and np.all(np.isfinite(ha))):
            raise ValueError("W or a contains NaN or Inf")
        return cls(W, a, activation, hW, ha)

    @classmethod
    def _wrap(cls, net):
        """Device copies of a host net whose snapshots are the net's own arrays: ``sync()`` writes the
        trained weights back into ``net.W``, ``net.a`` (what ff.train does when it returns)."""
        cuda = require()
        return cls(cuda.to_device(net.W), cuda.to_device(net.a), net.activation, net.W, net.a)

    # -- the weights ----------------------------------------------------------------------------------
    def _touch(self):
        """The device weights changed: the host snapshot is stale."""
        self._fresh = False

    def sync(self):
        """Copy the device weights into the host snapshot (no-op when it is current)."""
        if self._fresh:
            return
        self.W_device.copy_to_host(self._hW)
        self.a_device.copy_to_host(self._ha)
        self._fresh = True

    def push(self):
        """Copy the host snapshots ``W``, ``a`` (after editing them in place) to the device weights."""
        self.W_device.copy_to_device(self._hW)
        self.a_device.copy_to_device(self._ha)
        self._fresh = True

    @property
    def W(self):
        self.sync()
        return self._hW

    @property
    def a(self):
        self.sync()
        return self._ha

    @property
    def m(self):
        return self.W_device.shape[0]

    @property
    def d(self):
        return self.W_device.shape[1]

    @property
    def dtype(self):
        return np.dtype(self.W_device.dtype)

    def _validate(self, name="net"):
        """check_net for device nets: shapes and dtypes (the kernels keep the weights finite)."""
        if self.a_device.shape[0] != self.W_device.shape[0] or np.dtype(self.a_device.dtype) != self.dtype:
            raise ValueError(f"{name}: W_device and a_device do not match")
        return self

    def to_host(self):
        """An ordinary ``ff.TwoLayer`` with a copy of the current weights."""
        return TwoLayer(self.W_device.copy_to_host(), self.a_device.copy_to_host(), self.activation)

    def copy(self):
        cuda = require()
        self.sync()
        W = cuda.device_array_like(self.W_device)
        a = cuda.device_array_like(self.a_device)
        W.copy_to_device(self.W_device)
        a.copy_to_device(self.a_device)
        return DeviceNet(W, a, self.activation, np.array(self._hW), np.array(self._ha))

    def astype(self, dtype):
        return self.to_host().astype(dtype)

    def __repr__(self):
        return f"DeviceNet(m={self.m}, d={self.d}, activation={self.activation!r}, dtype={self.dtype.name})"


def _as_device(cuda, x, name):
    if hasattr(x, "copy_to_host") and hasattr(x, "shape") and not isinstance(x, np.ndarray):
        return x  # a numba device array (also the simulator's)
    if hasattr(x, "__cuda_array_interface__") and hasattr(cuda, "as_cuda_array"):
        return cuda.as_cuda_array(x)  # CuPy, PyTorch, ...: a view, no copy
    raise TypeError(f"{name} must be a CUDA device array (numba, or with __cuda_array_interface__), got "
                    f"{type(x).__name__}; to copy host weights use to_device(ff.TwoLayer(W, a))")


def _c_contiguous(x):
    f = getattr(x, "is_c_contiguous", None)
    return f() if f is not None else bool(x.flags["C_CONTIGUOUS"])
