"""Per-layer step sizes: ``ff.train(..., lr, lr_a)`` and the kernels' (lr_W, lr_a) pairs.

Every objective's fused kernel against a manual loop of ``objective.grad`` + update; ``lr_a = 0`` leaves a
bit for bit (and ``lr = 0`` leaves W); ``lr_a = lr`` is bit for bit the default; and online SGD of the soft
committee machine with the second layer frozen follows the Saad–Solla ODEs (``saad_solla.py``).
"""
import numba
import numpy as np
import pytest

import fastfeat as ff
from fastfeat import kernels as K

import saad_solla

D, M, MS = 3, 17, 2


def _objectives(teacher):
    """name -> (objective, whether objective.grad(net, reg, step=s) is the gradient of step s)."""
    emp = ff.Empirical.sample(teacher, 23, seed=4)
    return {
        "population": (ff.Population(teacher), True),
        "empirical": (emp, True),
        "minibatch": (ff.Empirical(emp.X, emp.y, batch_size=5, seed=2), False),
        "online1": (ff.Online(teacher, batch_size=1, seed=6), True),
        "online3": (ff.Online(teacher, batch_size=3, noise=0.1, seed=6), True),
    }


def _grad(obj, net, reg, s):
    if isinstance(obj, ff.Online):
        return obj.grad(net, reg, step=s)
    return obj.grad(net, reg)


KINDS = ("population", "empirical", "minibatch", "online1", "online3")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind", [k for k in KINDS if k != "minibatch"])
def test_two_step_sizes_match_manual_steps(kind, dtype):
    """Scheduled lr for W and lr_a for a, weight decay with lam_a != lam_w, over two compiled calls."""
    teacher = ff.Teacher.random(D, MS, activation="relu", seed=0, dtype=dtype)
    obj, _ = _objectives(teacher)[kind]
    net = ff.TwoLayer.init(D, M, activation="relu", seed=1, dtype=dtype)
    ref = net.copy()
    lr = ff.schedules.piecewise([3], [0.2, 0.1])
    lr_a = ff.schedules.geometric(0.05, 0.5, 2)
    reg = ff.WeightDecay(lam_a=0.03, lam_w=0.01)
    ff.train(net, obj, steps=5, lr=lr, lr_a=lr_a, reg=reg, log_every=3, metrics=())
    for s in range(5):
        gW, ga = _grad(obj, ref, reg, s)
        ref.W -= ref.W.dtype.type(lr(s)) * gW
        ref.a -= ref.a.dtype.type(lr_a(s)) * ga
    tol = dict(rtol=1e-10, atol=1e-13) if dtype == "float64" else dict(rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(net.W, ref.W, **tol)
    np.testing.assert_allclose(net.a, ref.a, **tol)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_zero_step_freezes_a_bit_for_bit(kind, dtype):
    """lr_a = 0: a keeps every bit (negative zeros included); W trains as the manual loop says. lr = 0:
    W keeps every bit. lr_a = lr: bit for bit the run without lr_a."""
    teacher = ff.Teacher.random(D, MS, activation="erf", seed=0, dtype=dtype)
    obj, exact_grad = _objectives(teacher)[kind]
    net = ff.TwoLayer.init(D, M, activation="erf", seed=1, dtype=dtype)
    net.a[0] = -0.0
    net.W[1, 0] = -0.0
    start = net.copy()
    reg = ff.WeightDecay(0.02)
    ff.train(net, obj, steps=4, lr=0.3, lr_a=0.0, reg=reg, log_every=2, metrics=())
    assert net.a.tobytes() == start.a.tobytes()
    assert not np.array_equal(net.W, start.W)
    if exact_grad:
        ref = start.copy()
        for s in range(4):
            gW, _ = _grad(obj, ref, reg, s)
            ref.W -= ref.W.dtype.type(0.3) * gW
        tol = dict(rtol=1e-10, atol=1e-13) if dtype == "float64" else dict(rtol=2e-5, atol=1e-6)
        np.testing.assert_allclose(net.W, ref.W, **tol)

    net = start.copy()
    ff.train(net, obj, steps=4, lr=0.0, lr_a=0.3, reg=reg, log_every=2, metrics=())
    assert net.W.tobytes() == start.W.tobytes()
    assert not np.array_equal(net.a, start.a)

    one, two = start.copy(), start.copy()
    h1 = ff.train(one, obj, steps=4, lr=0.3, reg=reg, log_every=2)
    h2 = ff.train(two, obj, steps=4, lr=0.3, lr_a=0.3, reg=reg, log_every=2)
    assert one.W.tobytes() == two.W.tobytes() and one.a.tobytes() == two.a.tobytes()
    for k in h1.metrics:
        np.testing.assert_array_equal(h1[k], h2[k])


def test_bad_step_sizes_are_named():
    teacher = ff.Teacher.random(D, MS, seed=0)
    pop = ff.Population(teacher)
    net = ff.TwoLayer.init(D, 4, seed=0)
    W0, a0 = net.W.copy(), net.a.copy()
    cases = [
        (dict(lr=0.0), "lr must be > 0"),
        (dict(lr=0.0, lr_a=0.0), "lr and lr_a are both 0"),
        (dict(lr=0.1, lr_a=-0.1), "lr_a"),
        (dict(lr=-0.1, lr_a=0.1), "lr"),
        (dict(lr=0.1, lr_a=float("nan")), "lr_a"),
        (dict(lr=0.1, lr_a="fast"), "lr_a"),
    ]
    for kw, word in cases:
        with pytest.raises((ValueError, TypeError), match=word):
            ff.train(net, pop, steps=3, **kw)
    assert np.array_equal(net.W, W0) and np.array_equal(net.a, a0)
    with pytest.raises(ValueError, match="lr_a"):  # a schedule turning negative: found before its chunk runs
        ff.train(net, pop, steps=3, lr=0.1, lr_a=ff.schedules.piecewise([2], [0.1, -0.1]), log_every=3)
    assert np.array_equal(net.W, W0) and np.array_equal(net.a, a0)


def test_resume_compares_lr_a(tmp_path):
    teacher = ff.Teacher.random(D, MS, seed=0)
    pop = ff.Population(teacher)
    path = tmp_path / "ck.npz"
    net = ff.TwoLayer.init(D, 4, seed=0)
    ff.train(net, pop, steps=4, lr=0.1, lr_a=0.05, log_every=2, checkpoint=path)
    ff.train(ff.TwoLayer.init(D, 4, seed=0), pop, steps=6, lr=0.1, lr_a=0.05, log_every=2, checkpoint=path,
             resume=True)
    for lr_a in (0.07, None):
        with pytest.raises(ValueError, match="lr_a"):
            ff.train(ff.TwoLayer.init(D, 4, seed=0), pop, steps=8, lr=0.1, lr_a=lr_a, log_every=2,
                     checkpoint=path, resume=True)


def test_kernels_take_a_pair_from_user_njit():
    """population_step / population_run / guarded_update with (lr_W, lr_a), called from user njit code."""
    teacher = ff.Teacher.random(D, MS, seed=0)
    net = ff.TwoLayer.init(D, 5, seed=1)
    ws = K.population_workspace(5, MS, D, np.float64)
    gW, ga = np.empty_like(net.W), np.empty_like(net.a)
    code = K.ACTIVATION_CODES["relu"]

    @numba.njit
    def two_steps(W, a, Wt, at, gW, ga, ws):
        K.population_step(W, a, Wt, at, code, (0.1, 0.0), K.REG_NONE, 0.0, 0.0, gW, ga, ws)
        return K.population_step(W, a, Wt, at, code, (0.0, 0.2), K.REG_NONE, 0.0, 0.0, gW, ga, ws)

    W, a = net.W.copy(), net.a.copy()
    two_steps(W, a, teacher.W, teacher.a, gW, ga, ws)
    ref = net.copy()
    pop = ff.Population(teacher)
    ref.W -= 0.1 * pop.grad(ref)[0]
    ref.a -= 0.2 * pop.grad(ref)[1]
    np.testing.assert_allclose(W, ref.W, rtol=1e-12)
    np.testing.assert_allclose(a, ref.a, rtol=1e-12)
    lrs = np.array([[0.1, 0.0], [0.0, 0.2]])  # rows: W, a
    W2, a2, losses = net.W.copy(), net.a.copy(), np.empty(2)
    z = np.zeros(2)
    assert K.population_run(W2, a2, teacher.W, teacher.a, code, lrs, K.REG_NONE, z, z, gW, ga, ws, losses) == 2
    np.testing.assert_allclose(W2, W, rtol=1e-14)  # (the njit caller's constants may round differently)
    np.testing.assert_allclose(a2, a, rtol=1e-14)
    gW[:] = 1.0
    ga[:] = np.inf
    assert not K.guarded_update(W2, a2, gW, ga, (0.1, 0.0))  # an infinite g_a is refused even with lr_a = 0
    ga[:] = 1.0
    a_before = a2.copy()
    assert K.guarded_update(W2, a2, gW, ga, (0.1, 0.0)) and a2.tobytes() == a_before.tobytes()


def test_saad_solla_plateau_and_escape():
    """Online SGD of the soft committee machine (erf, d = 1000, K = M = 2, second layer fixed to 1 by
    lr_a = 0, eta = 1: lr = eta / d) against the Saad–Solla ODEs integrated from the same initial overlaps.

    The plateau's height must agree within 6%. The escape from it is driven by the symmetry breaking,
    which at finite d is partly stochastic: the time at which the loss first falls below half the plateau
    must be within [0.6, 1.5] of the ODE's (measured: 0.70-1.08 over seeds), and once escaped the decay
    from half to a twentieth of the plateau must take the ODE's time within 30%."""
    d, k = 1000, 2
    teacher = ff.Teacher.random(d, k, activation="erf", signs="positive", seed=0)
    T = teacher.W @ teacher.W.T
    for seed in (1, 3):
        W = np.random.default_rng(seed).normal(size=(k, d)) * np.sqrt(0.25 / d)
        net = ff.TwoLayer(W, np.ones(k), "erf")
        Q0, R0 = W @ W.T, W @ teacher.W.T
        h = ff.train(net, ff.Online(teacher, batch_size=1, seed=seed), steps=200 * d, lr=1.0 / d, lr_a=0.0,
                     log_every=d // 2, metrics=("loss",))
        assert net.a.tobytes() == np.ones(k).tobytes()
        alpha = h.step / d
        sim = h["loss"]
        ode = saad_solla.integrate(Q0, R0, T, 1.0, alpha)
        assert sim[0] == pytest.approx(ode[0], rel=1e-12)  # the same start, the exact population loss
        window = (alpha >= 16) & (alpha <= 40)
        plateau = np.median(ode[window])
        assert np.median(sim[window]) == pytest.approx(plateau, rel=0.06)

        def first_below(curve, level):
            idx = np.flatnonzero((curve < level) & (alpha > 5))
            assert idx.size, "never got there"
            return alpha[idx[0]]

        e_sim, e_ode = first_below(sim, plateau / 2), first_below(ode, plateau / 2)
        assert 0.6 <= e_sim / e_ode <= 1.5, (seed, e_sim, e_ode)
        fall_sim = first_below(sim, plateau / 20) - e_sim
        fall_ode = first_below(ode, plateau / 20) - e_ode
        assert fall_sim == pytest.approx(fall_ode, rel=0.3), (seed, fall_sim, fall_ode)
        assert sim[-1] < 1e-3 and ode[-1] < 1e-3


def test_saad_solla_closed_forms_against_monte_carlo():
    """I3, I4 of the ODEs against Monte Carlo means (4e5 samples; |z| < 4.5 per value)."""
    from scipy.special import erf
    rng = np.random.default_rng(0)
    A = rng.normal(size=(4, 4)) * 0.7
    C = A @ A.T
    n = 400_000
    u = np.linalg.cholesky(C) @ rng.normal(size=(4, n))
    g = erf(u / np.sqrt(2))
    dg = np.sqrt(2 / np.pi) * np.exp(-u**2 / 2)
    for a, b, c in [(0, 1, 2), (0, 0, 3), (1, 2, 1)]:
        x = dg[a] * u[b] * g[c]
        assert abs(saad_solla.I3(C, a, b, c) - x.mean()) < 4.5 * x.std() / np.sqrt(n)
    for a, b, c, e in [(0, 1, 2, 3), (0, 0, 1, 1), (2, 1, 2, 0)]:
        x = dg[a] * dg[b] * g[c] * g[e]
        assert abs(saad_solla.I4(C, a, b, c, e) - x.mean()) < 4.5 * x.std() / np.sqrt(n)
    Q = C[:2, :2]
    R = C[:2, 2:]
    T = C[2:, 2:]
    x = 0.5 * (g[0] + g[1] - g[2] - g[3]) ** 2
    assert abs(saad_solla.eps_g(Q, R, T) - x.mean()) < 4.5 * x.std() / np.sqrt(n)
