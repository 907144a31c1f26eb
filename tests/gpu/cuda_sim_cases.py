"""Cases run twice: on the CPU in the pytest process, and with ``device="cuda"`` in a subprocess under
``NUMBA_ENABLE_CUDASIM=1`` (``cuda_sim_worker.py``); ``test_cuda_sim.py`` compares the two.

Each case is ``fn(device) -> {name: array}``, deterministic given its seeds. Sizes are tiny (the simulator
runs every GPU thread as a Python thread) and the worker lowers the launch settings (TILE=2, REG_BLOCK=2,
THREADS_PER_BLOCK=3; ``_small_blocks`` lowers ROWS_BUDGET to 16) so that every kernel spans several blocks
with ragged tails: products in 4 x 4 output tiles summed in chunks of 2 (m + m* = 7 columns: 4 + 3;
d = 5: 2 + 2 + 1), population row blocks of 2, 2, 1 (m = 5), sample tiles of 3, 3, 1 (n = 7), and
reductions over 3 threads (not a power of two).
"""
import contextlib

import numpy as np

import fastfeat as ff
from fastfeat import gpu as ffgpu
from fastfeat.kernels import cuda as fc  # importing it is free: numba.cuda is imported on first use

D, M, MS, N = 5, 5, 2, 7
CLOSED_FORM = ("relu", "abs", "relu_centered", "erf", "linear", "he2", "he3")
REGS = (None, ff.WeightDecay(lam_a=0.03, lam_w=0.05), ff.PathNorm(0.07))


@contextlib.contextmanager
def _small_blocks(on=True):
    """Scratch budget of 16 elements: population row blocks of 2, 2, 1; sample tiles of 3, 3, 1."""
    old = fc.ROWS_BUDGET
    if on:
        fc.ROWS_BUDGET = 16
    try:
        yield
    finally:
        fc.ROWS_BUDGET = old


def _net(act, seed=1, dtype="float64", scale=1.0):
    return ff.TwoLayer.init(D, M, activation=act, seed=seed, dtype=dtype, scale=scale)


def _teacher(act, dtype="float64"):
    return ff.Teacher.random(D, MS, activation=act, dtype=dtype, seed=3)


def _loss_grad(obj, net, reg, device):
    """(loss, g_W, g_a) of obj (+ reg) at net, on the CPU or from the CUDA runner (nothing trained)."""
    if device == "cpu":
        gW, ga = obj.grad(net, reg)
        return {"loss": np.array(obj.loss(net)), "gW": gW, "ga": ga}
    runner = ffgpu.runner_for(obj, net)
    L, gW, ga = runner.loss_grad(reg)
    return {"loss": np.array(L), "gW": gW, "ga": ga}


def _train(net, obj, device, **kw):
    h = ff.train(net, obj, device=device, **kw)
    out = {"W": np.asarray(net.W), "a": np.asarray(net.a), "step": h.step}
    for k, v in h.metrics.items():
        out["m." + k] = np.asarray(v)
    return out


# ------------------------------------------------------------------------------------------- population
def _pop_grad(act, reg_i, dtype="float64", blocks=False):
    def case(device):
        net = _net(act, dtype=dtype)
        with _small_blocks(blocks):
            return _loss_grad(ff.Population(_teacher(act, dtype), noise=0.1), net, REGS[reg_i], device)
    return case


def pop_zero_rows(device):
    """A zero row of W and a zero a_j: the kernel gradient there is 0 (continuity), the path-norm
    subgradient too."""
    net = _net("relu")
    net.W[1] = 0.0
    net.a[3] = 0.0
    return _loss_grad(ff.Population(_teacher("relu")), net, ff.PathNorm(0.2), device)


def pop_cross(device):
    """Teachers of another activation (cross kernels): an angular pair, erf against relu, he3 against
    erf, abs against he2; row blocks of 2, 2, 1 and float32 on one of them; the online objective's
    exact loss of such a pair after two steps."""
    out = {}
    for i, (s, t) in enumerate((("relu_centered", "abs"), ("erf", "relu"), ("he3", "erf"), ("abs", "he2"))):
        dtype = "float32" if i == 3 else "float64"
        with _small_blocks(i == 1):
            r = _loss_grad(ff.Population(_teacher(t, dtype), noise=0.1), _net(s, dtype=dtype), REGS[i % 3], device)
        out.update({f"{s}.{t}.{k}": v for k, v in r.items()})
    h = _train(_net("relu"), ff.Online(_teacher("erf"), batch_size=2, seed=5), device, steps=2, lr=0.1,
               log_every=2, metrics=("loss",))
    out.update({"online." + k: v for k, v in h.items()})
    return out


def pop_train(device):
    """Several chunks through ff.train with schedules for lr and lam; metrics that read the weights."""
    net = _net("relu")
    reg = ff.WeightDecay(lam_a=ff.schedules.geometric(0.05, 0.5, 2), lam_w=0.02)
    with _small_blocks():
        return _train(net, ff.Population(_teacher("relu"), noise=0.2), device, steps=3, lr=0.3, reg=reg,
                      log_every=2, metrics=("loss", "norms"))


def pop_train_f32(device):
    net = _net("erf", dtype="float32")
    return _train(net, ff.Population(_teacher("erf", "float32")), device, steps=3, lr=0.5,
                  reg=ff.PathNorm(0.01), log_every=3)


def pop_diverge(device):
    """A step that overflows is refused: TrainingDiverged at that step, the net keeps the last finite
    weights, the history has the loss at them."""
    net = _net("he3", scale=3.0)
    try:
        ff.train(net, ff.Population(_teacher("he3")), device=device, steps=6, lr=1e6, log_every=2)
    except ff.TrainingDiverged as exc:
        return {"step": np.array(exc.step), "W": net.W, "a": net.a, "loss": exc.history.metrics["loss"]}
    return {"step": np.array(-1), "W": net.W, "a": net.a}


def overflow_guard(device):
    """A step whose update would overflow the weights (float32, lr 3e38) is refused at step 0 by every
    objective: the weights stay as they were."""
    out = {}
    t = _teacher("abs", "float32")
    objs = {"pop": ff.Population(t), "emp": ff.Empirical.sample(t, N, seed=2),
            "onl": ff.Online(t, batch_size=3, seed=1)}
    for name, obj in objs.items():
        net = _net("abs", dtype="float32", scale=2.0)
        try:
            ff.train(net, obj, device=device, steps=3, lr=3e38, log_every=3, metrics=())
            out[name + ".step"] = np.array(-1)
        except ff.TrainingDiverged as exc:
            out[name + ".step"] = np.array(exc.step)
        out[name + ".W"], out[name + ".a"] = np.asarray(net.W), np.asarray(net.a)
    return out


def pop_resident(device):
    """Two ff.train calls on a device net (weights stay on the GPU between them) equal one CPU call."""
    obj = ff.Population(_teacher("abs"))
    net = _net("abs")
    if device == "cpu":
        ff.train(net, obj, device="cpu", steps=2, lr=0.2, log_every=2)
        h = ff.train(net, obj, device="cpu", steps=2, lr=0.2, log_every=2, start_step=2)
        return {"W": net.W, "a": net.a, "m.loss": h.metrics["loss"]}
    dnet = ffgpu.to_device(net)
    ff.train(dnet, obj, device="cuda", steps=2, lr=0.2, log_every=2)
    h = ff.train(dnet, obj, device="cuda", steps=2, lr=0.2, log_every=2, start_step=2)
    refused = 0
    try:
        ff.train(dnet, obj, device="cpu", steps=1, lr=0.2)
    except ValueError as exc:
        refused = int("device='cuda'" in str(exc))
    host = dnet.to_host()
    return {"W": host.W, "a": host.a, "m.loss": h.metrics["loss"], "refused": np.array(refused),
            "untouched": np.array(np.array_equal(net.W, _net("abs").W), dtype=int)}


# -------------------------------------------------------------------------------------------- empirical
def _data(act, dtype="float64", batch_size=None, seed=5):
    return ff.Empirical.sample(_teacher(act, dtype), N, noise=0.1, seed=seed, batch_size=batch_size)


def _emp_grad(act, reg_i, dtype="float64", blocks=False):
    def case(device):
        net = _net(act, dtype=dtype)
        with _small_blocks(blocks):
            return _loss_grad(_data(act, dtype), net, REGS[reg_i], device)
    return case


def emp_train_minibatch(device):
    """Minibatches of 3, 3, 1 reshuffled per epoch (5 steps cross an epoch boundary); the logged loss is
    the full-data loss."""
    net = _net("relu_centered")
    return _train(net, _data("relu_centered", batch_size=3), device, steps=5, lr=0.2,
                  reg=ff.WeightDecay(0.01), log_every=3, start_step=1, metrics=("loss", "norms"))


def emp_train_f32(device):
    net = _net("tanh", dtype="float32")
    with _small_blocks():
        return _train(net, _data("tanh", "float32"), device, steps=2, lr=0.3, reg=ff.PathNorm(0.02),
                      log_every=2)


# ----------------------------------------------------------------------------------------------- online
def online_grad(device):
    """The gradient on the batch of step 4 (the same counter-based samples on both devices)."""
    net = _net("erf")
    obj = ff.Online(_teacher("erf"), batch_size=3, noise=0.1, seed=7)
    reg = ff.PathNorm(0.05)
    if device == "cpu":
        gW, ga = obj.grad(net, reg, step=4)
        return {"gW": gW, "ga": ga}
    L, gW, ga = ffgpu.runner_for(obj, net).loss_grad(reg, step=4)
    return {"gW": gW, "ga": ga}


def online_train(device):
    """Online SGD, batches of 3 with label noise; the logged loss is the exact population loss."""
    net = _net("relu")
    obj = ff.Online(_teacher("relu"), batch_size=3, noise=0.1, seed=11)
    return _train(net, obj, device, steps=4, lr=0.1, reg=ff.WeightDecay(0.01), log_every=2, start_step=3)


def online_train_mc(device):
    """A tanh student of a relu teacher, float32: no closed form, so the logged loss is the fixed Monte
    Carlo estimate of Online.loss."""
    net = _net("tanh", dtype="float32")
    obj = ff.Online(_teacher("relu", "float32"), batch_size=2, seed=2, loss_samples=6)
    return _train(net, obj, device, steps=2, lr=0.2, log_every=2)


def pop_checkpoint_resume(device):
    """A checkpointed run resumed (on a device net: the restored weights go to the GPU) equals the
    uninterrupted one; the history continues the saved one."""
    import os
    import tempfile
    obj = ff.Population(_teacher("relu_centered"))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ck.npz")
        first = _net("relu_centered")
        second = _net("relu_centered", seed=9)  # other weights: resume must replace them
        if device == "cuda":
            first, second = ffgpu.to_device(first), ffgpu.to_device(second)
        ff.train(first, obj, device=device, steps=2, lr=0.2, log_every=2, checkpoint=path)
        h = ff.train(second, obj, device=device, steps=3, lr=0.2, log_every=2, checkpoint=path, resume=True)
    return {"W": np.array(second.W), "a": np.array(second.a), "m.loss": h.metrics["loss"], "step": h.step}


def pop_device_arrays(device):
    """to_device(W, a, activation) wraps existing device arrays: training updates them in place."""
    net = _net("linear")
    obj = ff.Population(_teacher("linear"))
    if device == "cpu":
        ff.train(net, obj, device="cpu", steps=2, lr=0.1, log_every=2)
        return {"W": net.W, "a": net.a}
    from numba import cuda
    W, a = cuda.to_device(net.W), cuda.to_device(net.a)
    ff.train(ffgpu.to_device(W, a, "linear"), obj, device="cuda", steps=2, lr=0.1, log_every=2)
    return {"W": W.copy_to_host(), "a": a.copy_to_host()}


CASES = {}
for _i, _act in enumerate(CLOSED_FORM):
    CASES[f"pop_grad_{_act}"] = _pop_grad(_act, _i % 3, blocks=_act in ("relu", "erf"))
CASES["pop_grad_relu_f32"] = _pop_grad("relu", 1, "float32")
CASES["pop_zero_rows"] = pop_zero_rows
CASES["pop_cross"] = pop_cross
CASES["pop_train"] = pop_train
CASES["pop_train_f32"] = pop_train_f32
CASES["pop_diverge"] = pop_diverge
CASES["overflow_guard"] = overflow_guard
CASES["pop_resident"] = pop_resident
CASES["pop_device_arrays"] = pop_device_arrays
CASES["pop_checkpoint_resume"] = pop_checkpoint_resume
for _i, _act in enumerate(("relu", "relu_centered", "erf", "tanh", "he3")):
    CASES[f"emp_grad_{_act}"] = _emp_grad(_act, _i % 3, blocks=_act == "relu_centered")
CASES["emp_grad_relu_f32"] = _emp_grad("relu", 2, "float32")
CASES["emp_train_minibatch"] = emp_train_minibatch
CASES["emp_train_f32"] = emp_train_f32
CASES["online_grad"] = online_grad
CASES["online_train"] = online_train
CASES["online_train_mc"] = online_train_mc


def lr_a_cases(device):
    """Per-layer step sizes on every runner: a frozen (lr_a = 0) with a scheduled lr for W, and W frozen
    (lr = 0); the frozen layer must come back bit for bit."""
    out = {}
    objs = {"pop": lambda: ff.Population(_teacher("relu")), "emp": lambda: _data("erf", batch_size=3),
            "onl": lambda: ff.Online(_teacher("relu"), batch_size=2, seed=4)}
    for name, make in objs.items():
        act = "erf" if name == "emp" else "relu"
        for frozen, kw in (("a", dict(lr=ff.schedules.piecewise([2], [0.2, 0.1]), lr_a=0.0)),
                           ("W", dict(lr=0.0, lr_a=0.3))):
            net = _net(act)
            before = np.array(getattr(net, frozen))
            with _small_blocks():
                res = _train(net, make(), device, steps=3, reg=ff.WeightDecay(0.02), log_every=2, **kw)
            out[f"{name}.{frozen}.W"], out[f"{name}.{frozen}.a"] = res["W"], res["a"]
            out[f"{name}.{frozen}.frozen_bits"] = np.array(before.tobytes() == np.asarray(res[frozen]).tobytes())
    return out


CASES["lr_a"] = lr_a_cases


def scaled_cases(device):
    """Nets with an output scale on every runner (the standard kernels with the target divided by
    m^-gamma): the stored weights, the logged loss and the alignment metrics (from the device net)."""
    out = {}
    objs = {"pop": lambda: ff.Population(_teacher("relu"), noise=0.1), "emp": lambda: _data("erf", batch_size=3),
            "onl": lambda: ff.Online(_teacher("relu"), batch_size=2, seed=4)}
    for name, make in objs.items():
        act = "erf" if name == "emp" else "relu"
        base = _net(act)
        for scale in ("ntk", "mean_field"):
            net = ff.TwoLayer(base.W.copy(), base.a.copy(), act, scale=scale)
            metrics = ("loss", "alignment") if name == "pop" else ("loss",)
            with _small_blocks():
                res = _train(net, make(), device, steps=3, lr=0.2, lr_a=0.4, reg=ff.PathNorm(0.02), log_every=2,
                             metrics=metrics)
            for k, v in res.items():
                out[f"{name}.{scale}.{k}"] = v
    return out


CASES["scaled"] = scaled_cases

#: expected values that are not a CPU result (device-only checks)
EXPECT = {"pop_resident": {"refused": 1, "untouched": 1},
          "overflow_guard": {"pop.step": 0, "emp.step": 0, "onl.step": 0},
          "lr_a": {f"{o}.{f}.frozen_bits": 1 for o in ("pop", "emp", "onl") for f in ("a", "W")}}
