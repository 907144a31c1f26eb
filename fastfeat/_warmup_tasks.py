"""fastfeat's warm-up tasks (``ff.kernels.warmup``): each calls a part of the package as users do, on tiny
inputs, so that every compiled kernel it reaches lands in the disk cache with the argument types that
real runs use. Every activation is visited where the kernels specialize on its kind."""
import numpy as np

from .kernels._warmup import register
from .math.activations import HAS_KERNEL, NAMES


def _teacher(act, dtype, d=5, m_star=2):
    from .networks import Teacher
    return Teacher.random(d, m_star, activation=act, seed=0, dtype=dtype)


def _net(act, dtype, d=5, m=6):
    from .networks import TwoLayer
    return TwoLayer.init(d, m, activation=act, seed=1, dtype=dtype)


def _regs():
    from .regularizers import PathNorm, WeightDecay
    return (None, WeightDecay(1e-3), PathNorm(1e-3))


def _train_all(net, obj, **kw):
    from .training import train
    for reg in _regs():
        train(net, obj, steps=2, lr=1e-3, reg=reg, log_every=1, **kw)


def population(dtype):
    from .objectives import Population
    for act in NAMES:
        if act not in HAS_KERNEL:
            continue
        t = _teacher(act, dtype)
        net = _net(act, dtype)
        obj = Population(t)
        _train_all(net, obj, metrics=("loss", "alignment"))
        obj.loss(net)
        obj.grad(net)


def empirical(dtype):
    from .objectives import Empirical
    for act in NAMES:
        t = _teacher(act, dtype)
        net = _net(act, dtype)
        for batch in (None, 4):
            obj = Empirical.sample(t, 17, seed=2, batch_size=batch)
            _train_all(net, obj)
            obj.loss(net)
            obj.grad(net)


def online(dtype):
    """Online SGD as ``ff.train`` runs it at the usual sizes: batch 1 (the blocked path) and small
    batches (the serial build), with the exact loss (closed forms) and the Monte Carlo one (tanh)."""
    from .objectives import Online
    for act in NAMES:
        t = _teacher(act, dtype)
        net = _net(act, dtype)
        for batch in (1, 3):
            obj = Online(t, batch_size=batch, seed=3, loss_samples=64)
            _train_all(net, obj, metrics=("batch_loss", "loss"))


def online_extra(dtype):
    """What online SGD compiles only when asked: the ``prange`` build of large batches (chosen from
    ``batch * m * d >= 2^20``) and the minibatch gradient of ``Online.grad`` (a diagnostic; ``ff.train``
    never calls it)."""
    from .objectives import Online
    t = _teacher("relu", dtype, d=128)
    net = _net("relu", dtype, d=128, m=128)
    obj = Online(t, batch_size=64, seed=3)
    _train_all(net, obj)
    obj.grad(net)
    t = _teacher("relu", dtype)
    net = _net("relu", dtype)
    for batch in (1, 3):
        obj = Online(t, batch_size=batch, seed=3)
        obj.grad(net)
        obj.grad(net, step=5)


def paper(dtype):
    from .paper import three_stage
    t = _teacher("relu_centered", dtype, d=6, m_star=2)
    three_stage(t, 8, epochs=1, epoch_steps=3, log_every=2, dtype=dtype)
    three_stage(t, 8, n=64, epochs=1, epoch_steps=3, log_every=2, dtype=dtype)


def flow(dtype):
    """The gradient-flow integrator (one compiled kernel for every method; it works in float64 whatever the
    net's dtype) with the population gradient it calls."""
    from .regularizers import WeightDecay
    from .objectives import Population
    from .training.gradient_flow import flow as run_flow
    t = _teacher("relu", dtype)
    for method in ("auto", "rkc"):  # (logged times inside steps: the dense output too)
        run_flow(_net("relu", dtype), Population(t), 0.5, reg=WeightDecay(1e-3), method=method, log_times=3)


def wide(dtype):
    """``ff.train`` on ``ff.Population`` (and, in float64, ``ff.flow``) at a width where a step runs on
    several threads: the parallel build of the population kernels. Smaller runs take the serial build
    (``kernels.cpu.population.runs_serially``), which the default set compiles."""
    from .objectives import Population
    from .regularizers import WeightDecay
    from .training.gradient_flow import flow as run_flow
    t = _teacher("relu", dtype, d=2)
    obj = Population(t, tile=700)  # one tile: few parallel regions, so 700 neurons suffice
    _train_all(_net("relu", dtype, d=2, m=700), obj, metrics=("loss", "alignment"))
    if dtype == "float64":
        run_flow(_net("relu", dtype, d=2, m=700), obj, 0.01, reg=WeightDecay(1e-3), log_times=3)


def kernels(dtype):
    """The public ``ff.kernels`` entry points called from Python with the documented argument types
    (code from your own ``@njit`` function with the same types finds them in the cache too)."""
    from . import kernels as k
    t = _teacher("relu", dtype)
    net = _net("relu", dtype)
    W, a = net.W, net.a
    gW, ga = np.empty_like(W), np.empty_like(a)
    lrs = np.full(2, 1e-3)
    lams = np.zeros(2)
    losses = np.empty(2)
    code = k.ACTIVATION_CODES["relu"]
    ws = k.population_workspace(net.m, t.m, net.d, W.dtype)
    k.population_loss_grad(W, a, t.W, t.a, code, gW, ga, ws, True)
    k.population_step(W, a, t.W, t.a, code, 1e-3, k.REG_WEIGHT_DECAY, 1e-3, 1e-3, gW, ga, ws)
    k.population_run(W, a, t.W, t.a, code, lrs, k.REG_WEIGHT_DECAY, lams, lams, gW, ga, ws, losses)
    for batch in (1, 3):
        ows = k.online_workspace(batch, net.m, net.d, W.dtype)
        k.online_loss_grad(W, a, t.W, t.a, code, code, 0.0, 0, 0, gW, ga, ows)
        k.online_step(W, a, t.W, t.a, code, code, 0.0, 0, 0, 1e-3, k.REG_NONE, 0.0, 0.0, ows)
        k.online_run(W, a, t.W, t.a, code, code, 0.0, 0, 0, lrs, k.REG_NONE, lams, lams, ows, losses)
    if dtype == "float64":  # the batch-1 path with the variant chosen at run time (both compiled): float64
        from .kernels.cpu import _jit, online
        ows = k.online_workspace(1, net.m, net.d, W.dtype)
        online.run_single(W, a, t.W, t.a, code, code, 0.0, 0, 0, np.stack([lrs, lrs]), k.REG_NONE, lams, lams, ows,
                          losses, int(_jit.HOST_ISA))
    X = np.ones((9, net.d), W.dtype)
    y = np.ones(9, W.dtype)
    ews = k.empirical_workspace(9, net.m, net.d, W.dtype)
    idx = np.empty(0, np.int64)
    k.empirical_loss_grad(W, a, X, y, idx, code, gW, ga, ews, True)
    k.empirical_step(W, a, X, y, idx, code, 1e-3, k.REG_NONE, 0.0, 0.0, gW, ga, ews)
    k.empirical_run(W, a, X, y, code, 0, 9, 0, lrs, k.REG_NONE, lams, lams, gW, ga, ews, losses)
    k.row_norms(W, np.empty(net.m, W.dtype))


def ode(dtype):
    """The order-parameter ODEs (float64 whatever the net's type), for each activation they cover, with each
    kind of regularizer."""
    from .training.order_parameters import ODE_ACTIVATIONS
    from .training import ode as integrate
    for act in ODE_ACTIVATIONS:
        for reg in _regs():
            integrate(_net(act, dtype, m=3), _teacher(act, dtype), 0.5, lr=0.1, lr_a=0.1, reg=reg, noise=0.1,
                      log_times=1)


# the biggest first: parallel workers then finish together. The default set is training (ff.train on
# every objective, both float types) and the paper's protocol (fastfeat run). Not in it, compiled on first
# use (and cached) or on request (`fastfeat warmup --task NAME`, or `--all`): the analysis tools, the
# gradient-flow integrator (flow) and the order-parameter ODEs (ode), both compiled in float64 whatever
# the net's float type; what ff.train calls only at sizes or for uses that few runs have (online_extra;
# wide: the population kernels' parallel build, which steps of many neurons use);
# and the public kernels called from Python with their other documented argument forms (a scalar lr,
# (n,) step sizes, the one-step kernels; kernels).
for _name, _fn, _dtypes, _default in (
        ("online", online, ("float32", "float64"), True),
        ("empirical", empirical, ("float32", "float64"), True),
        ("population", population, ("float32", "float64"), True),
        ("paper", paper, ("float32", "float64"), True),
        ("flow", flow, ("float64",), False),
        ("ode", ode, ("float64",), False),
        ("online_extra", online_extra, ("float32", "float64"), False),
        ("wide", wide, ("float32", "float64"), False),
        ("kernels", kernels, ("float32", "float64"), False)):
    register(_name, _fn, dtypes=_dtypes, default=_default)
