"""The population objective against independent references: numpy closed forms, complex-step
derivatives, Monte Carlo estimates with stated standard errors."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastfeat as ff
from fastfeat.math.reference import features
from naive import kernel_matrix, population_grad, population_loss, reg_grad
from conftest import CLOSED_FORM

# (m, d, m_star): not multiples of the vector width; tile=8 below makes several tiles with ragged ends
SIZES = [(1, 1, 1), (3, 3, 2), (17, 5, 3), (33, 17, 4), (65, 9, 5), (5, 65, 3)]


def make(name, m, d, ms, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((m, d)) / np.sqrt(d)
    a = rng.standard_normal(m) / np.sqrt(m)
    teacher = ff.Teacher.random(d, ms, activation=name, seed=seed + 1, dtype=dtype)
    net = ff.TwoLayer(W.astype(dtype), a.astype(dtype), activation=name)
    return net, teacher


def rel(x, y):
    return np.max(np.abs(np.asarray(x, float) - y)) / max(np.max(np.abs(y)), 1e-300)


@pytest.mark.parametrize("name", CLOSED_FORM)
@pytest.mark.parametrize("m,d,ms", SIZES)
@pytest.mark.parametrize("blas", [False, True])
def test_loss_and_grad_float64(name, m, d, ms, blas):
    net, teacher = make(name, m, d, ms)
    pop = ff.Population(teacher, noise=0.3, tile=8, blas=blas)
    L = pop.loss(net)
    Lref = population_loss(name, net.W, net.a, teacher.W, teacher.a, noise=0.3)
    assert abs(L - Lref) <= 1e-10 * abs(Lref)
    gW, ga = pop.grad(net)
    gWr, gar = population_grad(name, net.W, net.a, teacher.W, teacher.a)
    assert rel(gW, gWr) < 1e-10
    assert rel(ga, gar) < 1e-10


@pytest.mark.parametrize("name", CLOSED_FORM)
@pytest.mark.parametrize("kind", ["wd", "path"])
def test_regularized_grad_float64(name, kind):
    net, teacher = make(name, 33, 7, 3, seed=3)
    net.a[4] = 0.0  # path norm: subgradient 0 where a_j = 0
    reg = ff.WeightDecay(lam_a=0.03, lam_w=0.07) if kind == "wd" else ff.PathNorm(0.05)
    lam_a, lam_w = (0.03, 0.07) if kind == "wd" else (0.05, 0.05)
    gW, ga = ff.Population(teacher, tile=8).grad(net, reg=reg)
    gWr, gar = population_grad(name, net.W, net.a, teacher.W, teacher.a)
    rW, ra = reg_grad(kind, net.W, net.a, lam_a, lam_w)
    assert rel(gW, gWr + rW) < 1e-10
    assert rel(ga, gar + ra) < 1e-10


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_regularizer_value_and_float32_grad(dtype):
    """Regularizer values and the regularized gradient in both float types against numpy (float64)."""
    net, teacher = make("relu", 33, 7, 3, dtype=dtype, seed=5)
    net.a[4] = 0.0
    net.W[6] = 0.0
    W, a = net.W.astype(np.float64), net.a.astype(np.float64)
    nw = np.linalg.norm(W, axis=1)
    tol = 1e-13 if dtype == np.float64 else 1e-6
    pop = ff.Population(teacher, tile=8)
    g0W, g0a = pop.grad(net)
    for reg, kind, lam_a, lam_w, value in (
            (ff.WeightDecay(lam_a=0.03, lam_w=0.07), "wd", 0.03, 0.07,
             0.5 * (0.03 * a @ a + 0.07 * (W * W).sum())),
            (ff.PathNorm(0.05), "path", 0.05, 0.05, 0.05 * np.abs(a) @ nw)):
        assert abs(reg.value(net) - value) <= tol * value
        gW, ga = pop.grad(net, reg=reg)
        assert gW.dtype == dtype and ga.dtype == dtype
        rW, ra = reg_grad(kind, W, a, lam_a, lam_w)
        assert rel(gW - g0W.astype(np.float64), rW) < 10 * tol
        assert rel(ga - g0a.astype(np.float64), ra) < 10 * tol


@pytest.mark.parametrize("name", ["relu", "abs", "relu_centered"])
def test_zero_norm_neuron_has_zero_gradient(name):
    net, teacher = make(name, 17, 5, 2, seed=4)
    net.W[3] = 0.0
    gW, ga = ff.Population(teacher, tile=4).grad(net)
    gWr, gar = population_grad(name, net.W, net.a, teacher.W, teacher.a)
    assert np.all(gW[3] == 0)
    assert rel(gW, gWr) < 1e-10 and rel(ga, gar) < 1e-10


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ms", [1, 16, 17, 40])
def test_small_and_wide_teachers(ms, dtype):
    """Both ways of computing the student-teacher terms (loops over all students up to ``SMALL_TEACHER``
    teacher neurons, BLAS calls per tile above), with students in several chunks of a tile and zero
    weight vectors on both sides, against the numpy reference."""
    from fastfeat.kernels.cpu.population import SMALL_TEACHER
    assert SMALL_TEACHER == 16  # the sizes above sit on both sides of it
    f64 = dtype == np.float64
    for name in CLOSED_FORM:
        rng = np.random.default_rng(9)
        W, Wt = rng.standard_normal((150, 6)) / np.sqrt(6), rng.standard_normal((ms, 6)) / np.sqrt(6)
        a, at = rng.standard_normal(150) / np.sqrt(150), rng.standard_normal(ms)
        W[5] = 0.0
        if ms > 1:
            Wt[ms // 2] = 0.0
        net = ff.TwoLayer(W.astype(dtype), a.astype(dtype), activation=name)
        teacher = ff.Teacher(Wt.astype(dtype), at.astype(dtype), name)
        Lref = population_loss(name, net.W, net.a, teacher.W, teacher.a)
        gWr, gar = population_grad(name, net.W, net.a, teacher.W, teacher.a)
        tol = 1e-11 if f64 else 3e-5 * np.sqrt(150)
        for blas in (False, True):
            pop = ff.Population(teacher, tile=70, blas=blas)
            L = pop.loss(net)
            assert abs(L - Lref) <= tol * max(abs(Lref), 1e-2), (name, blas)
            gW, ga = pop.grad(net)
            assert rel(gW, gWr) < tol and rel(ga, gar) < tol, (name, blas)


@pytest.mark.parametrize("name", CLOSED_FORM)
@pytest.mark.parametrize("m,d,ms", [(1, 1, 1), (17, 5, 3), (65, 33, 5)])
def test_loss_and_grad_float32(name, m, d, ms):
    net64, teacher64 = make(name, m, d, ms)
    net, teacher = net64.astype("float32"), teacher64.astype("float32")
    pop = ff.Population(teacher, tile=16, blas=m > 17)
    L = pop.loss(net)
    # references at the float32 weights, in float64
    Lref = population_loss(name, net.W, net.a, teacher.W, teacher.a)
    scale = (np.abs(net.a) @ np.abs(kernel_matrix(name, net.W, net.W)) @ np.abs(net.a)
             + np.abs(teacher.a) @ np.abs(kernel_matrix(name, teacher.W, teacher.W)) @ np.abs(teacher.a))
    assert abs(L - Lref) <= 2e-6 * scale * np.sqrt(m)
    gW, ga = pop.grad(net)
    assert gW.dtype == np.float32 and ga.dtype == np.float32
    gWr, gar = population_grad(name, net.W, net.a, teacher.W, teacher.a)
    assert rel(gW, gWr) < 2e-5 * np.sqrt(m)
    assert rel(ga, gar) < 2e-5 * np.sqrt(m)


@pytest.mark.parametrize("name", CLOSED_FORM)
def test_closed_form_matches_monte_carlo(name):
    """The closed-form loss against a Monte Carlo estimate: |diff| < 5 standard errors."""
    rng = np.random.default_rng(7)
    net, teacher = make(name, 4, 3, 2, seed=11)
    n = 400_000
    X = rng.standard_normal((n, 3))
    r = features(name, X, net.W) @ net.a - features(name, X, teacher.W) @ teacher.a
    vals = 0.5 * r**2
    mc, se = vals.mean(), vals.std() / np.sqrt(n)
    L = ff.Population(teacher).loss(net)
    assert abs(L - mc) < 5 * se, (L, mc, se)
    # and the kernel itself, entry by entry
    U, V = net.W[:2], teacher.W
    Phi_u, Phi_v = features(name, X, U), features(name, X, V)
    for i in range(2):
        for k in range(2):
            prod = Phi_u[:, i] * Phi_v[:, k]
            assert abs(kernel_matrix(name, U, V)[i, k] - prod.mean()) < 5 * prod.std() / np.sqrt(n)


def test_loss_and_grad_do_not_mutate():
    net, teacher = make("relu", 9, 4, 2)
    W0, a0 = net.W.copy(), net.a.copy()
    pop = ff.Population(teacher)
    pop.loss(net)
    pop.grad(net, reg=ff.WeightDecay(0.1))
    assert np.array_equal(net.W, W0) and np.array_equal(net.a, a0)


def test_tile_size_does_not_change_result():
    net, teacher = make("relu", 65, 9, 3)
    g = [ff.Population(teacher, tile=t, blas=b).grad(net) for t in (1, 7, 64, 256) for b in (False, True)]
    for gW, ga in g[1:]:
        assert rel(gW, g[0][0]) < 1e-12 and rel(ga, g[0][1]) < 1e-12


@settings(deadline=None, max_examples=20)
@given(m=st.integers(1, 40), d=st.integers(1, 12), data=st.data(),
       name=st.sampled_from(CLOSED_FORM))
def test_loss_any_shape(m, d, data, name):
    ms = data.draw(st.integers(1, d))
    net, teacher = make(name, m, d, ms, seed=m * 100 + d)
    L = ff.Population(teacher, tile=5).loss(net)
    Lref = population_loss(name, net.W, net.a, teacher.W, teacher.a)
    assert abs(L - Lref) <= 1e-10 * max(abs(Lref), 1e-12)


def test_symmetric_init_is_zero_function():
    t = ff.Teacher.random(6, 2, activation="relu", seed=0)
    net = ff.TwoLayer.init(6, 10, symmetric=True, seed=3)
    pop = ff.Population(t)
    zero = ff.TwoLayer(np.zeros((1, 6)), np.zeros(1))
    assert abs(pop.loss(net) - pop.loss(zero)) < 1e-14
    X = np.random.default_rng(0).standard_normal((5, 6))
    assert np.allclose(net(X), 0.0)


def test_the_loss_at_the_teacher_is_never_negative():
    """At the teacher the three terms of the closed form cancel to rounding noise: the loss is clamped at 0
    (never below), while the gradient there stays the computed one (of rounding size)."""
    for act in CLOSED_FORM:
        for dt in ("float64", "float32"):
            teacher = ff.Teacher.random(7, 3, activation=act, seed=11, dtype=dt)
            net = ff.TwoLayer(teacher.W.copy(), teacher.a.copy(), act)
            pop = ff.Population(teacher)
            assert 0.0 <= pop.loss(net) < 1e-5
            gW, ga = pop.grad(net)
            assert np.abs(gW).max() < 1e-4 and np.abs(ga).max() < 1e-4


def test_small_objective_calls_run_on_one_thread_and_give_the_same_bits():
    """objective.loss / objective.grad at a small width run on the calling thread (a parallel region costs
    more than the work): the same bits as with one thread set by hand."""
    import numba
    teacher = ff.Teacher.random(5, 2, seed=0)
    net = ff.TwoLayer.init(5, 16, seed=1)
    pop = ff.Population(teacher)
    g_all = pop.grad(net)
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        g_one = pop.grad(net)
    finally:
        numba.set_num_threads(before)
    assert all(np.array_equal(x, y) for x, y in zip(g_all, g_one))
    assert numba.get_num_threads() == before  # the kernel gave the thread count back


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("m,d,ms", SIZES)
def test_parallel_and_serial_builds_agree_with_the_reference(m, d, ms, dtype):
    """The kernels' two builds (``runs_serially`` picks one by size: the sizes here take the serial one
    through the API) each match the numpy reference, loss and gradient, and give the same steps."""
    from fastfeat.kernels import REG_WEIGHT_DECAY
    from fastfeat.kernels.cpu import population as P
    f64 = dtype == np.float64
    for name in CLOSED_FORM:
        net, teacher = make(name, m, d, ms, dtype=dtype)
        net = net.astype(dtype)
        ws = P.workspace(m, ms, d, dtype, tile=8, blas=m > 17)
        Lref = population_loss(name, net.W, net.a, teacher.W, teacher.a)
        gWr, gar = population_grad(name, net.W, net.a, teacher.W, teacher.a)
        tol = 1e-10 if f64 else 2e-5 * np.sqrt(m)
        grads = []
        for build in (P.parallel_loss_grad, P.serial_loss_grad):
            gW, ga = np.empty_like(net.W), np.empty_like(net.a)
            L = build(net.W, net.a, teacher.W, teacher.a, net.code, gW, ga, ws, True)
            assert abs(L - Lref) <= tol * max(abs(Lref), 1e-3), (name, build)
            assert rel(gW, gWr) < tol and rel(ga, gar) < tol, (name, build)
            grads.append((gW, ga))
        finals = []
        for run in (P.parallel_run, P.serial_run):
            W, a = net.W.copy(), net.a.copy()
            lrs, lams, losses = np.full(3, 0.05), np.full(3, 1e-3), np.empty(3)
            gW, ga = np.empty_like(W), np.empty_like(a)
            assert run(W, a, teacher.W, teacher.a, net.code, lrs, REG_WEIGHT_DECAY, lams, lams, gW, ga, ws,
                       losses) == 3
            finals.append(np.concatenate([W.ravel(), a]).astype(np.float64))
        assert rel(finals[0], finals[1]) < (1e-13 if f64 else 1e-5), name


def test_the_serial_build_opens_no_parallel_region():
    """Everything the serial builds of the population and flow kernels call is compiled without
    ``parallel`` (a callee reached through an attribute or a closure and left parallel would open
    regions again), and they are cached on disk like every kernel."""
    import numba
    from fastfeat.kernels import _cache
    from fastfeat.kernels.cpu import flow, population as P

    def callees(disp, seen):
        if id(disp) in seen:
            return
        seen[id(disp)] = disp
        fn = disp.py_func
        values = [fn.__globals__.get(n) for n in fn.__code__.co_names]
        values += [c.cell_contents for c in fn.__closure__ or ()]
        for v in values:
            if isinstance(v, numba.core.dispatcher.Dispatcher):
                callees(v, seen)

    for entry in (P.serial_run, P.serial_loss_grad, P.serial_step, flow.serial_advance, flow.serial_prepare):
        seen = {}
        callees(entry, seen)
        parallel = [d.py_func.__qualname__ for d in seen.values() if d.targetoptions.get("parallel")]
        assert not parallel, (entry, parallel)
        assert isinstance(entry._cache._impl.locator, _cache.FastfeatCacheLocator)
    seen = {}
    callees(P.parallel_run, seen)
    assert any(d.targetoptions.get("parallel") for d in seen.values())  # the check above can fail
