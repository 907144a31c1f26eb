"""The host side of ``ff.train(..., device="cuda")``: the runners that drive the CUDA kernels.

The layers: ``fastfeat.kernels.cuda`` holds the device kernels, the availability check
(``require``, ``CudaUnavailableError``), the launch settings and device nets (``to_device``); it imports
nothing above the kernels. This package sits above it and above the objectives and regularizers: a
runner is built from an objective (``Objective._runner(net, "cuda")`` calls the function of its kind
below) and reads the regularizer codes the training loop passes it. See ``fastfeat.gpu.runners`` for the
runner protocol.

Importing this package does not import ``numba.cuda``: that happens when the first runner is built.
"""
from .runners import EmpiricalRunner, OnlineRunner, PopulationRunner


def population_runner(objective, net):
    """The CUDA runner of an ``ff.Population`` objective for ``net`` (an ``ff.TwoLayer`` or a device net)."""
    return PopulationRunner(objective, net)


def empirical_runner(objective, net):
    """The CUDA runner of an ``ff.Empirical`` objective for ``net`` (an ``ff.TwoLayer`` or a device net)."""
    return EmpiricalRunner(objective, net)


def online_runner(objective, net):
    """The CUDA runner of an ``ff.Online`` objective for ``net`` (an ``ff.TwoLayer`` or a device net)."""
    return OnlineRunner(objective, net)
