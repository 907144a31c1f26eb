"""ff.Empirical against the numpy references of tests/naive.py: loss and gradients for every activation
and size sweep, minibatch shuffling, training through ff.train, memory, bad input."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastfeat as ff
from naive import empirical_loss_grad, epoch_permutation, reg_grad

NAMES = ff.ACTIVATIONS
BASE = (33, 7, 5)  # (n, m, d)
SWEEP = (1, 7, 33, 65, 129, 1000)
# vary one of n, m, d at a time around BASE
CASES = sorted({tuple(v if i == axis else BASE[i] for i in range(3)) for axis in range(3) for v in SWEEP})


def rel(x, ref):
    return np.max(np.abs(np.asarray(x, np.float64) - ref)) / max(np.max(np.abs(ref)), 1e-300)


def make(name, n, m, d, dtype=np.float64, seed=0, **kw):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = rng.standard_normal(n)
    W = rng.standard_normal((m, d)) / np.sqrt(d)
    a = rng.standard_normal(m) / np.sqrt(m)
    net = ff.TwoLayer(W.astype(dtype), a.astype(dtype), activation=name)
    return net, ff.Empirical(X.astype(dtype), y.astype(dtype), **kw)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n,m,d", CASES)
def test_loss_and_grad_float64(name, n, m, d):
    # tile=40: several tiles with ragged ends, and row chunks (16) that do not divide the tile
    net, emp = make(name, n, m, d, tile=40)
    L, gWr, gar = empirical_loss_grad(name, net.W, net.a, emp.X, emp.y)
    assert abs(emp.loss(net) - L) <= 1e-10 * abs(L)
    gW, ga = emp.grad(net)
    assert rel(gW, gWr) < 1e-10
    assert rel(ga, gar) < 1e-10


@pytest.mark.parametrize("name", ["relu", "relu_centered", "tanh", "erf"])
def test_default_tile_and_regularized_grad(name):
    net, emp = make(name, 300, 40, 9, seed=3)
    net.W[5] = 0.0  # a zero row: the relu_centered norm term and the path-norm subgradient are 0 there
    net.a[7] = 0.0
    _, gWr, gar = empirical_loss_grad(name, net.W, net.a, emp.X, emp.y)
    for reg, kind in ((ff.WeightDecay(lam_a=0.3, lam_w=0.2), "wd"), (ff.PathNorm(0.25), "pn")):
        rW, ra = reg_grad(kind, net.W, net.a, 0.3 if kind == "wd" else 0.25, 0.2 if kind == "wd" else 0.25)
        gW, ga = emp.grad(net, reg)
        assert rel(gW, gWr + rW) < 1e-10
        assert rel(ga, gar + ra) < 1e-10


@pytest.mark.parametrize("name", ["relu", "he3", "tanh"])
@pytest.mark.parametrize("n,m,d", [(1000, 33, 7), (65, 129, 33), (7, 1000, 65)])
def test_float32(name, n, m, d):
    net, emp = make(name, n, m, d, dtype=np.float32, seed=1, tile=48)
    L, gWr, gar = empirical_loss_grad(name, net.W, net.a, emp.X, emp.y)
    # float32 sums over m (outputs) and n (gradients) in float32 pieces: a few eps * sqrt(size)
    tol = 8 * np.finfo(np.float32).eps * np.sqrt(max(n, m, d)) * (10 if name == "he3" else 1)
    assert abs(emp.loss(net) - L) <= tol * abs(L)
    gW, ga = emp.grad(net)
    assert gW.dtype == np.float32 and ga.dtype == np.float32
    assert rel(gW, gWr) < tol
    assert rel(ga, gar) < tol


def reference_run(name, W, a, X, y, lrs, reg, lams, batches):
    """Plain numpy GD/SGD: W, a after len(lrs) steps; batches[s] = sample indices of step s."""
    W = np.array(W, np.float64)
    a = np.array(a, np.float64)
    for s, lr in enumerate(lrs):
        idx = batches[s]
        _, gW, ga = empirical_loss_grad(name, W, a, X[idx], y[idx])
        rW, ra = reg_grad(reg, W, a, lams[0][s], lams[1][s])
        W = W - lr * (gW + rW)
        a = a - lr * (ga + ra)
    return W, a


@pytest.mark.parametrize("name", NAMES)
def test_train_matches_reference_float64(name):
    """Full-batch GD through ff.train, with an lr schedule and a scheduled weight decay, or path norm."""
    net, emp = make(name, 50, 12, 6, seed=2)
    W0, a0 = net.W.copy(), net.a.copy()
    steps = 7
    lr = ff.schedules.piecewise([3], [0.05, 0.02])
    if name in ("relu", "tanh", "abs"):
        reg, kind = ff.PathNorm(ff.schedules.geometric(0.1, 0.5, 2)), "pn"
        lam = ff.schedules.geometric(0.1, 0.5, 2).values(0, steps)
        lams = (lam, lam)
    else:
        reg, kind = ff.WeightDecay(lam_a=ff.schedules.geometric(0.1, 0.5, 2), lam_w=0.03), "wd"
        lams = (ff.schedules.geometric(0.1, 0.5, 2).values(0, steps), np.full(steps, 0.03))
    hist = ff.train(net, emp, steps=steps, lr=lr, reg=reg, log_every=3)
    Wr, ar = reference_run(name, W0, a0, emp.X, emp.y, lr.values(0, steps), kind, lams, [slice(None)] * steps)
    assert rel(net.W, Wr) < 1e-10 and rel(net.a, ar) < 1e-10
    assert list(hist.step) == [0, 3, 6, 7]
    assert abs(hist.metrics["loss"][-1] - empirical_loss_grad(name, Wr, ar, emp.X, emp.y)[0]) < 1e-10


@pytest.mark.parametrize("name", ["relu", "tanh"])
def test_train_float32_close_to_float64(name):
    net64, emp64 = make(name, 200, 16, 8, seed=4, batch_size=64)
    net32 = net64.astype("float32")
    emp32 = ff.Empirical(emp64.X.astype(np.float32), emp64.y.astype(np.float32), batch_size=64)
    for net, emp in ((net64, emp64), (net32, emp32)):
        ff.train(net, emp, steps=20, lr=0.1, reg=ff.WeightDecay(1e-3), log_every=10)
    assert rel(net32.W, net64.W) < 1e-4 and rel(net32.a, net64.a) < 1e-4


def test_minibatch_uses_epoch_permutations():
    """Step s is batch s % nb of epoch s // nb of the documented permutation; last batch is short."""
    n, B = 23, 5  # nb = 5 batches per epoch, the last of 3 samples
    net, emp = make("relu", n, 6, 4, seed=5, batch_size=B)
    emp.seed = 17
    W0, a0 = net.W.copy(), net.a.copy()
    steps, lr = 12, 0.1  # crosses two epoch boundaries
    ff.train(net, emp, steps=steps, lr=lr, log_every=4)
    batches = []
    for s in range(steps):
        e, b = divmod(s, 5)
        batches.append(epoch_permutation(17, e, n)[b * B:(b + 1) * B])
    assert [len(x) for x in batches[:5]] == [5, 5, 5, 5, 3]
    Wr, ar = reference_run("relu", W0, a0, emp.X, emp.y, np.full(steps, lr), None, (np.zeros(steps),) * 2, batches)
    assert rel(net.W, Wr) < 1e-10 and rel(net.a, ar) < 1e-10


def test_minibatch_resume_is_bit_identical():
    net1, emp = make("tanh", 40, 9, 5, seed=6, batch_size=6)
    net2 = net1.copy()
    reg = ff.WeightDecay(ff.schedules.geometric(1e-2, 0.5, 5))
    ff.train(net1, emp, steps=17, lr=0.2, reg=reg, log_every=5)
    ff.train(net2, emp, steps=8, lr=0.2, reg=reg, log_every=3)
    ff.train(net2, emp, steps=9, lr=0.2, reg=reg, log_every=4, start_step=8)
    assert np.array_equal(net1.W, net2.W) and np.array_equal(net1.a, net2.a)
    # another seed gives another run
    net3, emp3 = make("tanh", 40, 9, 5, seed=6, batch_size=6)
    emp3.seed = 1
    ff.train(net3, emp3, steps=17, lr=0.2, reg=reg, log_every=5)
    assert not np.array_equal(net1.W, net3.W)


def test_permutations_are_permutations():
    perms = [epoch_permutation(3, e, 50) for e in range(4)]
    for p in perms:
        assert sorted(p) == list(range(50))
    assert len({tuple(p) for p in perms}) == 4


def test_sample_labels_and_teacher():
    teacher = ff.Teacher.random(6, 2, activation="erf", seed=1, dtype="float32")
    emp = ff.Empirical.sample(teacher, 500, noise=0.5, seed=9, batch_size=50)
    assert emp.X.dtype == np.float32 and emp.y.dtype == np.float32 and emp.teacher is teacher
    resid = emp.y - teacher(emp.X)
    assert 0.4 < np.std(resid) < 0.6 and abs(np.mean(resid)) < 0.1
    again = ff.Empirical.sample(teacher, 500, noise=0.5, seed=9)
    assert np.array_equal(again.X, emp.X) and np.array_equal(again.y, emp.y)
    # a student equal to the teacher has loss = noise^2 / 2 on the sample (up to sampling)
    net = ff.TwoLayer(teacher.W.copy(), teacher.a.copy(), activation="erf")
    assert abs(emp.loss(net) - 0.5 * np.mean(resid.astype(np.float64) ** 2)) < 1e-5


def test_divergence_guard_keeps_last_finite_weights():
    net, emp = make("he3", 40, 8, 5, seed=7)
    net.W *= 3
    with pytest.raises(ff.TrainingDiverged) as info:
        ff.train(net, emp, steps=50, lr=1e3, log_every=50)
    assert np.all(np.isfinite(net.W)) and np.all(np.isfinite(net.a))
    assert 0 < info.value.step < 50


def test_public_kernels_match_objective():
    net, emp = make("relu_centered", 60, 10, 7, seed=8, batch_size=13)
    K = ff.kernels
    ws = K.empirical_workspace(emp.n, net.m, net.d, net.dtype, batch=13)
    gW = np.empty_like(net.W)
    ga = np.empty_like(net.a)
    idx = np.array([3, 59, 0, 17, 17], np.int64)
    L = K.empirical_loss_grad(net.W, net.a, emp.X, emp.y, idx, net.code, gW, ga, ws, True)
    Lr, gWr, gar = empirical_loss_grad("relu_centered", net.W, net.a, emp.X[idx], emp.y[idx])
    assert abs(L - Lr) < 1e-12 * Lr and rel(gW, gWr) < 1e-10 and rel(ga, gar) < 1e-10
    net2 = net.copy()
    losses = np.empty(9)
    z = np.zeros(9)
    done = K.empirical_run(net.W, net.a, emp.X, emp.y, net.code, 4, 13, emp.seed, np.full(9, 0.1), K.REG_NONE,
                           z, z, gW, ga, ws, losses)
    assert done == 9
    ff.train(net2, emp, steps=9, lr=0.1, log_every=9, start_step=4)
    assert np.array_equal(net.W, net2.W)


MEMORY_SCRIPT = textwrap.dedent("""
    import json, resource, tracemalloc
    import numpy as np
    import fastfeat as ff
    n, d, m = 200_000, 64, 4096
    def net_data(n, m, seed):
        rng = np.random.default_rng(seed)
        X = rng.standard_normal((n, d), dtype=np.float32)
        y = rng.standard_normal(n, dtype=np.float32)
        net = ff.TwoLayer.init(d, m, activation="relu", dtype="float32", seed=seed)
        return net, ff.Empirical(X, y)
    small, emp_small = net_data(64, 32, 0)  # compile (and start BLAS) outside the measurement
    ff.train(small, emp_small, steps=1, lr=0.1, reg=ff.WeightDecay(1e-3), metrics=())
    net, emp = net_data(n, m, 1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    ff.train(net, emp, steps=1, lr=0.1, reg=ff.WeightDecay(1e-3), metrics=())
    _, peak = tracemalloc.get_traced_memory()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rss_growth_mb": (after - before) / 1024, "numpy_peak_mb": peak / 2**20,
                      "finite": bool(np.all(np.isfinite(net.W)))}))
""")


def test_full_batch_step_memory():
    """n=200000, d=64, m=4096 float32: the n x m pre-activations alone would be 3.3 GB. Measured in a
    fresh process: growth of the peak RSS (ru_maxrss, everything: numpy, numba, BLAS) over one
    training step, after data and a compiled warm-up, and the peak of numpy allocations (tracemalloc)."""
    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    print(res)
    assert res["finite"]
    assert res["rss_growth_mb"] < 200  # "well under 400 MB"
    assert res["numpy_peak_mb"] < 64


def expect(exc, match, fn, *args, **kw):
    with pytest.raises(exc, match=match):
        fn(*args, **kw)


def test_bad_inputs():
    X = np.zeros((10, 3))
    y = np.zeros(10)
    expect(ValueError, "X", ff.Empirical, np.zeros(10), y)
    expect(TypeError, "X", ff.Empirical, [[0.0]], y)
    expect(ValueError, "y", ff.Empirical, X, np.zeros(9))
    expect(ValueError, "y", ff.Empirical, X, np.zeros((10, 1)))
    expect(TypeError, "y", ff.Empirical, X, np.zeros(10, np.float32))
    expect(TypeError, "X", ff.Empirical, X.astype(np.int64), y)
    bad = X.copy()
    bad[2, 1] = np.nan
    expect(ValueError, "X", ff.Empirical, bad, y)
    bad = y.copy()
    bad[0] = np.inf
    expect(ValueError, "y", ff.Empirical, X, bad)
    expect(ValueError, "batch_size", ff.Empirical, X, y, batch_size=0)
    expect(ValueError, "batch_size", ff.Empirical, X, y, batch_size=11)
    expect(TypeError, "batch_size", ff.Empirical, X, y, batch_size=2.0)
    expect(ValueError, "seed", ff.Empirical, X, y, seed=-1)
    expect(TypeError, "seed", ff.Empirical, X, y, seed="0")
    teacher = ff.Teacher.random(3, 1)
    expect(ValueError, "n", ff.Empirical.sample, teacher, 0)
    expect(ValueError, "noise", ff.Empirical.sample, teacher, 5, noise=-1.0)
    expect(TypeError, "teacher", ff.Empirical.sample, "relu", 5)
    emp = ff.Empirical(X, y)
    expect(ValueError, "d=4", emp.loss, ff.TwoLayer.init(4, 2))
    expect(TypeError, "dtype", emp.loss, ff.TwoLayer.init(3, 2, dtype="float32"))
    expect(TypeError, "dtype", ff.train, ff.TwoLayer.init(3, 2, dtype="float32"), emp, steps=1, lr=0.1)
    expect(TypeError, "net", emp.grad, "net")
