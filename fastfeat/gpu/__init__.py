"""The host side of ``ff.train(..., device="cuda")``: device nets and the runners that drive the CUDA
kernels.

    from fastfeat import gpu
    dnet = gpu.to_device(net)             # an ff.TwoLayer whose weights live on the GPU
    ff.train(dnet, objective, steps=10_000, lr=0.1, device="cuda")
    net = dnet.to_host()                  # an ordinary ff.TwoLayer again

The layers: ``fastfeat.kernels.cuda`` holds the device kernels, the availability check
(``require``, ``CudaUnavailableError``) and the launch settings; it imports nothing above the kernels. This package sits above it and above the objectives and regularizers: a
runner is built from an objective (``runner_for(objective, net)``, which the training loop calls for
``device="cuda"``) and reads the regularizer codes the training loop passes it. See ``fastfeat.gpu.runners`` for the
runner protocol.

Importing this package does not import ``numba.cuda``: that happens when the first runner is built.
"""
from ..objectives import Empirical, Online, Population
from .device_net import DeviceNet
from .runners import EmpiricalRunner, OnlineRunner, PopulationRunner


def to_device(net, a=None, activation=None):
    """A device net: ``to_device(net)`` copies an ``ff.TwoLayer`` to the GPU; ``to_device(W, a, activation)``
    wraps device arrays (numba, or anything with ``__cuda_array_interface__``) without copying."""
    return DeviceNet.create(net, a, activation)


def to_host(net):
    """An ordinary ``ff.TwoLayer`` with a copy of a device net's weights (a host net is returned as is)."""
    return net.to_host() if isinstance(net, DeviceNet) else net


def population_runner(objective, net):
    """The CUDA runner of an ``ff.Population`` objective for ``net`` (an ``ff.TwoLayer`` or a device net)."""
    return PopulationRunner(objective, net)


def empirical_runner(objective, net):
    """The CUDA runner of an ``ff.Empirical`` objective for ``net`` (an ``ff.TwoLayer`` or a device net)."""
    return EmpiricalRunner(objective, net)


def online_runner(objective, net):
    """The CUDA runner of an ``ff.Online`` objective for ``net`` (an ``ff.TwoLayer`` or a device net)."""
    return OnlineRunner(objective, net)


def runner_for(objective, net):
    """The CUDA runner of ``objective`` (``ff.Population``, ``ff.Empirical`` or ``ff.Online``) for ``net``
    (an ``ff.TwoLayer`` or a device net): the protocol of ``Objective._runner``, on the GPU."""
    for kind, make in ((Population, population_runner), (Empirical, empirical_runner), (Online, online_runner)):
        if isinstance(objective, kind):
            return make(objective, net)
    raise TypeError(f"device='cuda' runs ff.Population, ff.Empirical and ff.Online objectives, not "
                    f"{type(objective).__name__}")
