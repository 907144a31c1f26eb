"""ff.ode, the order-parameter ODEs of online SGD: the Gaussian averages against Monte Carlo (degenerate
covariances too), the ODE against the Saad-Solla reference, its loss against ff.Population at the same
overlaps, and online SGD converging to it as d grows."""
import numpy as np
import pytest

import fastfeat as ff
import importlib

O = importlib.import_module("fastfeat.training.order_parameters")
AV = importlib.import_module("fastfeat.training.ode_averages")

import saad_solla


def _fields(C, n, seed):
    L = np.linalg.cholesky(C + 1e-300 * np.eye(len(C))) if np.all(np.linalg.eigvalsh(C) > 0) else None
    rng = np.random.default_rng(seed)
    if L is None:  # a degenerate covariance: its square root
        w, V = np.linalg.eigh(C)
        L = V * np.sqrt(np.maximum(w, 0.0))
    return rng.standard_normal((n, len(C))) @ L.T


def _g(kind, z, C=None):
    """g of each field; relu_centered's depends on the field's variance (the diagonal of ``C``)."""
    from scipy.special import erf
    return {"linear": lambda: z, "he2": lambda: z * z - 1.0, "he3": lambda: z ** 3 - 3.0 * z,
            "erf": lambda: erf(z / np.sqrt(2.0)), "relu": lambda: np.maximum(z, 0.0), "abs": lambda: np.abs(z),
            "relu_centered": lambda: np.abs(z) / 2.0 - np.sqrt(np.diag(C) / (2.0 * np.pi))}[kind]()


def _dg(kind, z):
    """g' as the kernels take it (sigma'(0) = 0: a zero weight vector has no gradient)."""
    return {"linear": lambda: np.ones_like(z), "he2": lambda: 2.0 * z, "he3": lambda: 3.0 * z * z - 3.0,
            "erf": lambda: np.sqrt(2.0 / np.pi) * np.exp(-z * z / 2.0), "relu": lambda: (z > 0.0) * 1.0,
            "abs": lambda: np.sign(z), "relu_centered": lambda: np.sign(z) / 2.0}[kind]()


COVARIANCES = {
    "generic": np.array([[1.2, 0.3, -0.4, 0.2], [0.3, 0.8, 0.1, -0.3], [-0.4, 0.1, 1.5, 0.5], [0.2, -0.3, 0.5, 0.9]]),
    # u1 = 2 u0 (parallel), u2 = -u0 (antiparallel), u3 independent
    "parallel": np.array([[1.0, 2.0, -1.0, 0.0], [2.0, 4.0, -2.0, 0.0], [-1.0, -2.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.7]]),
    # u2 = 0 (a zero weight vector)
    "zero norm": np.array([[1.0, 0.4, 0.0, 0.3], [0.4, 1.1, 0.0, -0.2], [0.0, 0.0, 0.0, 0.0], [0.3, -0.2, 0.0, 0.6]]),
}


@pytest.mark.parametrize("kind, case", [(k, c) for k in ("erf", "linear", "relu", "abs", "relu_centered")
                                          for c in sorted(COVARIANCES)] + [("he2", "generic"), ("he3", "generic")])
def test_gaussian_averages_against_monte_carlo(kind, case):
    """I2, J2, I3, I4 for index tuples with repeats, within 4.5 standard errors of 2e6 samples (the
    polynomials' by Wick's theorem, checked exactly on degenerate covariances by the enumeration test
    below; erf's in closed form; the angular activations' I2, J2, I3 in closed form and I4 by quadrature;
    largest deviation measured for those: 2.4 standard errors)."""
    C = COVARIANCES[case]
    u = _fields(C, 2_000_000, seed=7)
    code = AV._CODES[kind]
    fk = np.full(4, code)
    g, dg = _g(kind, u, C), _dg(kind, u)
    checks = []
    for p, q in ((0, 1), (1, 2), (2, 2), (0, 3)):
        checks.append((AV._i2(code, code, code, C[p, p], C[q, q], C[p, q]), g[:, p] * g[:, q]))
        checks.append((AV._j2(code, code, code, C[p, p], C[q, q], C[p, q]), dg[:, p] * dg[:, q]))
    for p, q, r in ((0, 1, 2), (1, 1, 0), (2, 3, 3), (3, 0, 1), (0, 0, 0)):
        checks.append((AV._i3(code, fk, C, p, q, r), dg[:, p] * u[:, q] * g[:, r]))
    for p, q, r, s in ((0, 1, 2, 3), (0, 0, 1, 1), (1, 2, 2, 0), (3, 1, 0, 2), (2, 2, 2, 2), (0, 1, 0, 1),
                       (0, 0, 0, 0), (1, 1, 3, 3), (0, 1, 2, 2), (2, 3, 1, 1)):
        checks.append((AV._i4(code, fk, C, p, q, r, s), dg[:, p] * dg[:, q] * g[:, r] * g[:, s]))
    for exact, x in checks:
        se = x.std() / np.sqrt(x.size)
        assert abs(exact - x.mean()) <= 4.5 * se + 1e-12, (case, exact, x.mean(), se)


def _tanh_sinh(h, X):
    x = np.arange(-int(X / h), int(X / h) + 1) * h
    t = 0.5 * (1.0 + np.tanh(0.5 * np.pi * np.sinh(x)))
    return t, 0.25 * np.pi * h * np.cosh(x) / np.cosh(0.5 * np.pi * np.sinh(x)) ** 2


@pytest.mark.parametrize("kind", ["relu", "abs", "relu_centered"])
def test_the_angular_i4_quadrature_has_converged(kind, monkeypatch):
    """The angular activations' I4 (tanh-sinh on 53 nodes) against the same integral on 1025 nodes: within
    1e-12 relative (or 1e-15 absolute) for generic covariances, repeated indices (the same field twice
    among the g factors, r = s, is written out: the general three-field formula divided covariances that
    are 0 only up to rounding, and the integrand was noisy at 1e-8) and exactly parallel, antiparallel
    and zero fields. Fields parallel to within 1 - rho^2 ~ 1e-9 are a known limit: there the rules
    differ by about 1e-10 relative (the covariances of the residuals cancel)."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((4, 6))
    B = rng.standard_normal((4, 4))
    cases = dict(COVARIANCES, random=A @ A.T / 6, square=B @ B.T / 4)
    fine = _tanh_sinh(1.0 / 128, 4.0)
    code = AV._CODES[kind]
    for name, C in cases.items():
        for tup in ((0, 1, 2, 3), (0, 0, 1, 1), (1, 2, 2, 0), (0, 1, 0, 1), (0, 0, 0, 0), (0, 1, 1, 2),
                    (2, 3, 0, 1), (3, 3, 3, 1), (0, 1, 2, 2), (2, 3, 1, 1), (0, 1, 1, 1)):
            coarse = AV._i4(code, np.full(4, code), C, *tup)
            with monkeypatch.context() as mp:
                mp.setattr(AV, "_TS_T", fine[0])
                mp.setattr(AV, "_TS_W", fine[1])
                ref = AV._ang_i4.py_func(np.full(4, code), C, *tup)
            assert abs(coarse - ref) <= 1e-12 * abs(ref) + 1e-15, (name, tup, coarse, ref)


def _isserlis(C, slots):
    """E[prod_i u_{slots[i]}] by Isserlis' theorem: the sum over every perfect matching of the factors of
    the product of the matched covariances (a direct enumeration, independent of the recursion)."""
    if not slots:
        return 1.0
    if len(slots) % 2:
        return 0.0
    first, rest = slots[0], slots[1:]
    return sum(C[first, rest[i]] * _isserlis(C, rest[:i] + rest[i + 1:]) for i in range(len(rest)))


@pytest.mark.parametrize("exps", [(1, 1, 0, 0), (2, 2, 0, 0), (3, 3, 0, 0), (2, 1, 1, 0), (3, 2, 3, 2), (2, 2, 3, 3),
                                  (3, 3, 3, 3), (1, 0, 2, 3)])
def test_wick_moments_against_a_direct_enumeration(exps):
    """The moment table of the polynomial activations equals Isserlis' sum over matchings, for a generic
    covariance, with repeated indices and a singular one (u1 = 2 u0)."""
    rng = np.random.default_rng(sum(exps))
    A = rng.standard_normal((5, 5))
    for C, idx in ((A @ A.T / 5, (0, 1, 2, 3)), (A @ A.T / 5, (2, 0, 2, 4)), (COVARIANCES["parallel"], (0, 1, 2, 3))):
        unit = [np.eye(4)[e] for e in exps]
        args = [x for f, e in zip(unit, exps) for x in (f, e)]
        got = AV._wick(C, *idx, *args)
        slots = [i for i, e in zip(idx, exps) for _ in range(e)]
        want = _isserlis(C, slots)
        assert got == pytest.approx(want, rel=1e-13, abs=1e-13), (exps, idx, got, want)
    # the Hermite pairs in closed form: E[He3(x) He3(y)] = 9 xx yy xy + 6 xy^3 - 9 xx xy - 9 yy xy + 9 xy
    cpp, cqq, cpq = 1.3, 0.7, -0.4
    he2, he3, lin = AV._CODES["he2"], AV._CODES["he3"], AV._CODES["linear"]
    assert AV._i2(he3, he3, he3, cpp, cqq, cpq) == pytest.approx(
        9 * cpp * cqq * cpq + 6 * cpq ** 3 - 9 * cpp * cpq - 9 * cqq * cpq + 9 * cpq, rel=1e-14)
    assert AV._i2(he2, he2, he2, cpp, cqq, cpq) == pytest.approx(cpp * cqq + 2 * cpq ** 2 - cpp - cqq + 1, rel=1e-14)
    # two polynomials of the fields' own kinds: E[He3(x) y] = 3 cpq (cpp - 1), E[He2(x) He3(y)] = 0 (odd)
    assert AV._i2(2, he3, lin, cpp, cqq, cpq) == pytest.approx(3 * cpq * (cpp - 1), rel=1e-14)
    assert AV._i2(2, he2, he3, cpp, cqq, cpq) == 0.0


def test_soft_committee_machine_matches_the_saad_solla_reference():
    """erf, K = M = 2, the second layer fixed to 1 (lr_a = 0), eta = 1: the loss along the plateau and its
    escape equals the independent numpy/scipy integration of the Saad-Solla equations (rtol 1e-8)."""
    d, k = 400, 2
    teacher = ff.Teacher.random(d, k, activation="erf", signs="positive", seed=0)
    teacher = ff.Teacher(teacher.W, np.ones(k), "erf")
    W = np.random.default_rng(1).normal(size=(k, d)) * np.sqrt(0.25 / d)
    net = ff.TwoLayer(W, np.ones(k), "erf")
    h = ff.ode(net, teacher, 120.0, lr=1.0, log_times=24, rtol=1e-10, atol=1e-12)
    ref = saad_solla.integrate(W @ W.T, W @ teacher.W.T, teacher.W @ teacher.W.T, 1.0, h["time"])
    # the escape from the plateau amplifies small differences (the reference runs at rtol 1e-8): measured
    # 8e-6 at most
    np.testing.assert_allclose(h["loss"], ref, rtol=5e-5)
    assert h["loss"][-1] < 1e-2 * h["loss"][0]  # it escaped the plateau
    np.testing.assert_array_equal(h["a"], np.ones((len(h), k)))


def _net_with_overlaps(Q, M, a, teacher_W, d):
    """A student with W W^T = Q and W W*^T = M for a teacher with orthonormal rows (plus directions
    orthogonal to the teacher's)."""
    P_inv = np.linalg.inv(teacher_W @ teacher_W.T)
    inside = M @ P_inv @ teacher_W
    rest = Q - M @ P_inv @ M.T
    L = np.linalg.cholesky(rest + 1e-15 * np.eye(len(Q)))
    basis = np.linalg.qr(np.vstack([teacher_W, np.random.default_rng(5).standard_normal((len(Q), d))]).T)[0]
    ortho = basis[:, teacher_W.shape[0]:teacher_W.shape[0] + len(Q)].T
    return inside + L @ ortho


@pytest.mark.parametrize("act", ["erf", "linear", "he2", "he3", "relu", "abs", "relu_centered"])
def test_the_loss_is_the_population_loss_at_those_overlaps(act):
    """At every logged time the ODE's loss (noise included) is ff.Population's loss of a network built with
    the logged Q, M and a; training both layers with weight decay and label noise."""
    d, m, ms = 12, 3, 2
    Wt = np.linalg.qr(np.random.default_rng(0).standard_normal((d, ms)))[0].T
    teacher = ff.Teacher(Wt, np.array([1.0, -0.7]), act)
    net = ff.TwoLayer.init(d, m, activation=act, seed=2, scale=0.6)
    lr = {"erf": 0.3, "linear": 0.05, "he2": 0.02, "he3": 0.005, "relu": 0.1, "abs": 0.05, "relu_centered": 0.1}[act]
    h = ff.ode(net, teacher, 5.0, lr=lr, lr_a=0.2, reg=ff.WeightDecay(1e-2), noise=0.1, log_times=5)
    pop = ff.Population(teacher, noise=0.1)
    for i in range(len(h)):
        W = _net_with_overlaps(h["Q"][i], h["M"][i], h["a"][i], Wt, d)
        np.testing.assert_allclose(W @ W.T, h["Q"][i], atol=1e-12)
        assert pop.loss(ff.TwoLayer(W, h["a"][i], act)) == pytest.approx(h["loss"][i], rel=1e-11)
    assert h["loss"][-1] < h["loss"][0]
    cos = h["M"][-1] / np.sqrt(np.diag(h["Q"][-1]))[:, None]
    np.testing.assert_allclose(h["best_cos"][-1], cos.max(axis=0))


def _simulate(d, seeds, alpha, lr, lr_a, reg, noise, rows, act="erf", ode_out=None, mix=0.0):
    """Online SGD (batch 1, lr / d) from random students (the first two plus ``mix`` times a teacher row):
    per seed the loss at alpha = k alpha / rows, and the ODE from the same initial overlaps."""
    diffs = []
    for seed in seeds:
        teacher = ff.Teacher(np.linalg.qr(np.random.default_rng(100 + seed).standard_normal((d, 2)))[0].T,
                             np.array([1.0, 0.8]), act)
        W = np.random.default_rng(seed).normal(size=(3, d)) * np.sqrt(0.3 / d)
        W[:2] += mix * teacher.W
        net = ff.TwoLayer(W, np.array([0.3, -0.2, 0.1]), act)
        h_ode = ff.ode(net, teacher, alpha, lr=lr, lr_a=lr_a, reg=reg, noise=noise, log_times=rows)
        steps = int(alpha * d)
        h = ff.train(net, ff.Online(teacher, batch_size=1, noise=noise, seed=seed), steps=steps, lr=lr / d,
                     lr_a=lr_a / d, reg=reg, log_every=steps // rows, metrics=("loss",))
        diffs.append(h["loss"] - h_ode["loss"])
        if ode_out is not None:
            ode_out.append(h_ode["loss"])
    return np.array(diffs)


def test_online_sgd_approaches_the_ode_as_d_grows():
    """erf, m = 3, m* = 2, both layers trained, weight decay and label noise, alpha up to 8, 8 seeds: the
    simulated loss scatters around the ODE's by an amount that shrinks like 1/sqrt(d) (RMS over seeds and
    rows, d = 250 against d = 2000: expected ratio 0.35, measured 0.30), and at d = 2000 the seed mean
    agrees with the ODE within 4.5 standard errors at every row (measured at most 1.6; the ODE without its
    noise term in dQ is 11.5 standard errors away)."""
    kw = dict(alpha=8.0, lr=0.8, lr_a=0.5, reg=ff.WeightDecay(1e-3), noise=0.3, rows=8)
    seeds = range(8)
    small, large = _simulate(250, seeds, **kw), _simulate(2000, seeds, **kw)
    rms = lambda x: np.sqrt(np.mean(x[:, 1:] ** 2))  # noqa: E731  (row 0: the same start, difference 0)
    assert rms(large) < 0.6 * rms(small), (rms(small), rms(large))
    mean, se = large.mean(axis=0)[1:], large.std(axis=0, ddof=1)[1:] / np.sqrt(len(seeds))
    assert np.all(np.abs(mean) <= 4.5 * se + 1e-5), (mean, se)
    assert np.all(np.abs(large[:, 0]) < 1e-12)


def test_online_sgd_approaches_the_ode_for_relu():
    """relu, m = 3, m* = 2, both layers trained, weight decay, alpha up to 4, 6 seeds: the simulated loss
    scatters around the ODE's (I4 by quadrature) by an amount that shrinks with d (RMS over seeds and rows,
    d = 250 against d = 2000: 1/sqrt(d) predicts 0.35), and at d = 2000 the seed mean agrees with the ODE
    within 4.5 standard errors at every row."""
    kw = dict(alpha=4.0, lr=0.5, lr_a=0.3, reg=ff.WeightDecay(1e-3), noise=0.1, rows=4, act="relu")
    seeds = range(6)
    small, large = _simulate(250, seeds, **kw), _simulate(2000, seeds, **kw)
    rms = lambda x: np.sqrt(np.mean(x[:, 1:] ** 2))  # noqa: E731
    assert rms(large) < 0.6 * rms(small), (rms(small), rms(large))
    mean, se = large.mean(axis=0)[1:], large.std(axis=0, ddof=1)[1:] / np.sqrt(len(seeds))
    assert np.all(np.abs(mean) <= 4.5 * se + 1e-5), (mean, se)


def test_online_sgd_with_the_path_norm_follows_the_ode():
    """The path norm's terms (rho_j = lam |a_j| / sqrt(Q_jj), rho_a = lam sign(a_j) sqrt(Q_jj)): at d = 2000 the
    seed mean of the simulated loss agrees with the ODE within 4.5 standard errors at every row, and the
    ODE differs from the one without the regularizer by far more than that."""
    kw = dict(alpha=8.0, lr=0.8, lr_a=0.5, noise=0.0, rows=8)
    with_pn = _simulate(2000, range(8), reg=ff.PathNorm(0.05), **kw)
    mean, se = with_pn.mean(axis=0)[1:], with_pn.std(axis=0, ddof=1)[1:] / np.sqrt(8)
    assert np.all(np.abs(mean) <= 4.5 * se + 1e-5), (mean, se)
    net = ff.TwoLayer(np.random.default_rng(0).normal(size=(3, 2000)) * np.sqrt(0.3 / 2000), np.array([0.3, -0.2, 0.1]),
                      "erf")
    teacher = ff.Teacher(np.linalg.qr(np.random.default_rng(100).standard_normal((2000, 2)))[0].T,
                         np.array([1.0, 0.8]), "erf")
    a = ff.ode(net, teacher, 8.0, lr=0.8, lr_a=0.5, reg=ff.PathNorm(0.05), log_times=8)["loss"]
    b = ff.ode(net, teacher, 8.0, lr=0.8, lr_a=0.5, log_times=8)["loss"]
    assert np.max(np.abs(a - b)) > 20 * se.max()


def test_online_sgd_follows_the_ode_for_hermite_activations():
    """he2 (z^2 - 1) students and teacher, both layers trained, weight decay and label noise, two students
    started half-way along teacher directions (from small random weights he2 sits on a long plateau), 6
    seeds: the simulated loss lies above the ODE's (Wick's moments) by a finite-size bias that falls like
    1/d (largest seed-mean gap over the rows, three sets of seeds: 0.17-0.20 at d = 500, 0.034-0.040 at
    d = 2000, the 4x of 1/d; standard errors 0.03-0.08 and 0.013-0.016), while the loss falls by 40%."""
    kw = dict(alpha=6.0, lr=0.5, lr_a=0.5, reg=ff.WeightDecay(1e-3), noise=0.1, rows=3, act="he2", mix=0.5)
    odes = []
    small, large = _simulate(500, range(6), **kw), _simulate(2000, range(6), ode_out=odes, **kw)
    gap = lambda x: np.abs(x.mean(axis=0)[1:]).max()  # noqa: E731
    drop = np.array(odes)[:, 0] - np.array(odes)[:, -1]
    assert gap(large) < 0.5 * gap(small), (gap(small), gap(large))
    assert gap(large) < 0.1 * drop.min(), (gap(large), drop)
    assert np.all(np.array(odes)[:, -1] < 0.6 * np.array(odes)[:, 0])


def test_arguments_are_checked():
    t = ff.Teacher.random(5, 2, activation="erf", seed=0)
    net = ff.TwoLayer.init(5, 3, activation="erf", seed=1)
    with pytest.raises(ValueError, match="closed form"):
        ff.ode(ff.TwoLayer.init(5, 3, activation="tanh", seed=1), ff.Teacher.random(5, 2, activation="tanh", seed=0),
               1.0, lr=0.1)
    with pytest.raises(ValueError, match="alpha"):
        ff.ode(net, t, -1.0, lr=0.1)
    with pytest.raises(ValueError, match="both 0"):
        ff.ode(net, t, 1.0, lr=0.0)
    with pytest.raises(ValueError, match="lam"):  # a schedule's values are checked before anything runs
        ff.ode(net, t, 3.0, lr=0.1, reg=ff.WeightDecay(lambda k: 1e-2 if k < 2 else -1.0))
    with pytest.raises(ValueError, match="log_times"):
        ff.ode(net, t, 1.0, lr=0.1, log_times=[0.5, 0.2])


def test_the_fused_right_hand_side_against_the_closed_forms_and_a_numpy_version():
    """The compiled right-hand side (its second-order term summed with the (j, k) factors taken out and the
    branch-free arcsine) equals the sum of the reference I4 closed forms term by term, and the numpy
    version of the same equations in benchmarks/bench_ode.py (written independently, all averages as
    broadcast arrays), for random overlaps with both layers trained."""
    import os
    import sys
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from benchmarks import bench_ode

    rng = np.random.default_rng(3)
    m, ms, d = 5, 3, 40
    W, Wt = rng.standard_normal((m, d)) / np.sqrt(d), rng.standard_normal((ms, d)) / np.sqrt(d)
    a, a_star = rng.standard_normal(m), rng.standard_normal(ms)
    P = Wt @ Wt.T
    y = np.concatenate([(W @ W.T).ravel(), (W @ Wt.T).ravel(), a])
    K = m + ms
    C, c, h3, quad = np.empty((K, K)), np.empty(K), np.empty((m, K)), np.empty((m, m))
    out = np.empty_like(y)
    fk = np.zeros(K, np.int64)
    O._rhs(0, fk, y, out, m, ms, P, a_star, 0.7, 0.3, 0.0, 0, 0.0, 0.0, C, c, h3, quad)
    for j in range(m):
        for k in range(j, m):
            direct = sum(c[r] * c[s] * AV._i4(0, fk, C, j, k, r, s) for r in range(K) for s in range(K))
            assert quad[j, k] == pytest.approx(direct, rel=1e-12, abs=1e-14)
    np.testing.assert_allclose(out, bench_ode.numpy_rhs(y, m, ms, P, a_star, 0.7, 0.3), rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("make", [lambda s: ff.WeightDecay(s),
                                  lambda s: ff.PathNorm(s)])
def test_a_regularizer_schedule_in_alpha_against_scipy(make):
    """A schedule of the regularizer in alpha (the strength on [k, k+1) is schedule(k)): the ODE against
    scipy's DOP853 on the compiled right-hand side with the strength of each stretch, at tight
    tolerances, and a constant schedule against the constant regularizer bit for bit."""
    from scipy.integrate import solve_ivp
    t = ff.Teacher.random(6, 2, activation="erf", seed=0)
    net = ff.TwoLayer.init(6, 3, activation="erf", seed=1)
    sched = ff.schedules.piecewise([1, 3], [0.0, 0.05, 0.01])  # 0 on [0, 1), 0.05 on [1, 3), 0.01 after
    hist = ff.ode(net, t, 4.0, lr=0.5, lr_a=0.2, reg=make(sched), noise=0.1, log_times=[2.0, 4.0],
                  rtol=1e-11, atol=1e-13)
    np.testing.assert_array_equal(hist["time"], [0.0, 2.0, 4.0])
    Q, M, P = O.overlaps(net, t)
    m, ms = 3, 2
    a_star = np.asarray(t.a, np.float64)
    y = np.concatenate([Q.ravel(), M.ravel(), np.asarray(net.a, np.float64)])
    K = m + ms
    C, c, h3, quad = np.empty((K, K)), np.empty(K), np.empty((m, K)), np.empty((m, m))
    for t0, t1, lam in ((0.0, 1.0, 0.0), (1.0, 3.0, 0.05), (3.0, 4.0, 0.01)):
        reg = make(lam)
        la, lw = reg.lams(0, 1)

        def rhs(_, v, reg=reg, la=float(la[0]), lw=float(lw[0])):
            out = np.empty_like(v)
            O._rhs(0, np.zeros(K, np.int64), v, out, m, ms, P, a_star, 0.5, 0.2, 0.01, reg.code, la, lw, C, c, h3, quad)
            return out

        y = solve_ivp(rhs, (t0, t1), y, method="DOP853", rtol=1e-12, atol=1e-14).y[:, -1]
    np.testing.assert_allclose(hist["Q"][-1].ravel(), y[:m * m], rtol=1e-8, atol=1e-11)
    np.testing.assert_allclose(hist["M"][-1].ravel(), y[m * m:m * m + m * ms], rtol=1e-8, atol=1e-11)
    np.testing.assert_allclose(hist["a"][-1], y[m * m + m * ms:], rtol=1e-8, atol=1e-11)
    const = ff.ode(net, t, 2.0, lr=0.5, reg=make(ff.schedules.piecewise([1], [0.02, 0.02])), log_times=2)
    plain = ff.ode(net, t, 2.0, lr=0.5, reg=make(0.02), log_times=2)
    np.testing.assert_array_equal(const["Q"][-1], plain["Q"][-1])


# a student and a teacher of two activations of the family of MIXABLE: erf on either side against each of the
# angular ones and linear, and a Hermite activation against an angular one or erf, either way
MIXED = [("relu", "abs"), ("relu", "linear"), ("relu_centered", "relu"), ("linear", "relu"), ("abs", "relu_centered"),
         ("erf", "relu"), ("relu", "erf"), ("erf", "abs"), ("abs", "erf"), ("erf", "relu_centered"),
         ("relu_centered", "erf"), ("erf", "linear"), ("linear", "erf"),
         ("relu", "he2"), ("he2", "relu"), ("relu_centered", "he3"), ("he3", "abs"), ("erf", "he3"), ("he2", "erf")]
# and of two polynomials (Wick's theorem with each field's own)
MIXED_POLYNOMIALS = [("he2", "he3"), ("he3", "he2"), ("linear", "he3"), ("he2", "linear")]


def _kinds(student, teacher):
    """The dispatch kind and the per-field kinds (fields 0, 1 the student's, 2, 3 the teacher's) of a pair."""
    if student in AV.POLYNOMIAL and teacher in AV.POLYNOMIAL:
        return 2, np.array([AV.POLYNOMIAL[student]] * 2 + [AV.POLYNOMIAL[teacher]] * 2, np.int64)
    return AV.LINEAR_ANGULAR, np.array([AV.MIXABLE[student]] * 2 + [AV.MIXABLE[teacher]] * 2, np.int64)


def _mixed(student, teacher, C, u):
    """The dispatch kind, per-field kinds and g, g' of each field (fields 0, 1 the student's)."""
    kind, fk = _kinds(student, teacher)
    g = np.concatenate([_g(student, u[:, :2], C[:2, :2]), _g(teacher, u[:, 2:], C[2:, 2:])], axis=1)
    dg = np.concatenate([_dg(student, u[:, :2]), _dg(teacher, u[:, 2:])], axis=1)
    return kind, fk, g, dg


@pytest.mark.parametrize("student, teacher", MIXED + MIXED_POLYNOMIALS)
@pytest.mark.parametrize("case", sorted(COVARIANCES))
def test_mixed_activation_averages_against_monte_carlo(student, teacher, case):
    """I2, J2, I3, I4 when the teacher's activation differs from the student's (fields 2, 3 the
    teacher's), for index tuples with repeats, within 4.5 standard errors of 1e6 samples."""
    C = COVARIANCES[case]
    u = _fields(C, 1_000_000, seed=11)
    kind, fk, g, dg = _mixed(student, teacher, C, u)
    checks = []
    for p, q in ((0, 1), (1, 2), (2, 2), (0, 3), (2, 3), (0, 0)):
        checks.append((AV._i2(kind, fk[p], fk[q], C[p, p], C[q, q], C[p, q]), g[:, p] * g[:, q]))
    for p, q in ((0, 1), (0, 0)):
        checks.append((AV._j2(kind, fk[p], fk[q], C[p, p], C[q, q], C[p, q]), dg[:, p] * dg[:, q]))
    for p, q, r in ((0, 1, 2), (1, 1, 0), (0, 3, 3), (1, 0, 3), (0, 0, 0), (1, 2, 2)):
        checks.append((AV._i3(kind, fk, C, p, q, r), dg[:, p] * u[:, q] * g[:, r]))
    for p, q, r, s in ((0, 1, 2, 3), (0, 0, 2, 2), (1, 0, 2, 0), (0, 1, 3, 3), (1, 1, 1, 3), (0, 1, 0, 1),
                       (0, 0, 0, 0), (0, 0, 2, 3)):
        checks.append((AV._i4(kind, fk, C, p, q, r, s), dg[:, p] * dg[:, q] * g[:, r] * g[:, s]))
    for i, (exact, x) in enumerate(checks):
        se = x.std() / np.sqrt(x.size)
        assert abs(exact - x.mean()) <= 4.5 * se + 1e-12, (i, exact, x.mean(), se)


def test_erf_written_as_a_sign_of_a_noisy_field_gives_saad_and_sollas_closed_forms():
    """erf in the family of MIXABLE (a sign of the field plus its own noise, g' a delta) against the erf
    closed forms, for every index tuple of four fields on each covariance: the same numbers to 1e-14."""
    rng = np.random.default_rng(2)
    A = rng.standard_normal((4, 6))
    E, Z = np.full(4, AV.ERF_SIGN), np.zeros(4, np.int64)
    worst = 0.0
    for C in dict(COVARIANCES, random=A @ A.T / 6).values():
        for p, q, r, s in np.ndindex(4, 4, 4, 4):
            pairs = [(AV._i4(AV.ERF_SIGN, E, C, p, q, r, s), AV._i4(0, Z, C, p, q, r, s)),
                     (AV._i3(AV.ERF_SIGN, E, C, p, q, r), AV._i3(0, Z, C, p, q, r)),
                     (AV._i2(AV.ERF_SIGN, AV.ERF_SIGN, AV.ERF_SIGN, C[p, p], C[q, q], C[p, q]), AV._i2(0, 0, 0, C[p, p], C[q, q], C[p, q])),
                     (AV._j2(AV.ERF_SIGN, AV.ERF_SIGN, AV.ERF_SIGN, C[p, p], C[q, q], C[p, q]), AV._j2(0, 0, 0, C[p, p], C[q, q], C[p, q]))]
            for family, closed in pairs:
                worst = max(worst, abs(family - closed) / max(1.0, abs(closed)))
    assert worst < 1e-14, worst


# (an erf or Hermite student's I4 is in closed form: no quadrature)
@pytest.mark.parametrize("student, teacher",
                         [pair for pair in MIXED if pair[0] in ("relu", "abs", "relu_centered", "linear")])
def test_mixed_activation_i4_quadrature_has_converged(student, teacher, monkeypatch):
    """The mixed I4 on 53 nodes against 1025, within 1e-12 relative, on the covariances above."""
    fine = _tanh_sinh(1.0 / 128, 4.0)
    fk = np.array([AV.MIXABLE[student]] * 2 + [AV.MIXABLE[teacher]] * 2, np.int64)
    rng = np.random.default_rng(1)
    A = rng.standard_normal((4, 4))
    for name, C in dict(COVARIANCES, random=A @ A.T / 4).items():
        for tup in ((0, 1, 2, 3), (0, 0, 2, 2), (1, 0, 2, 0), (0, 1, 3, 3), (1, 1, 1, 3), (0, 1, 0, 2)):
            coarse = AV._i4(AV.LINEAR_ANGULAR, fk, C, *tup)
            with monkeypatch.context() as mp:
                mp.setattr(AV, "_TS_T", fine[0])
                mp.setattr(AV, "_TS_W", fine[1])
                ref = AV._ang_i4.py_func(fk, C, *tup)  # (the path, also where a Hermite closed form is)
            assert abs(coarse - ref) <= 1e-12 * abs(ref) + 1e-15, (name, tup, coarse, ref)


@pytest.mark.parametrize("student, teacher", MIXED + MIXED_POLYNOMIALS)
def test_mixed_activation_loss_is_the_population_loss(student, teacher):
    """The ODE's loss with a teacher of another activation equals ff.Population's (its cross kernels)
    at the net it starts from and at a net built from the overlaps it logs, with label noise."""
    rng = np.random.default_rng(4)
    d = 12
    t = ff.Teacher(rng.standard_normal((2, d)) / np.sqrt(d), np.array([1.0, -0.7]), teacher)
    net = ff.TwoLayer(rng.standard_normal((3, d)) / np.sqrt(d), np.array([0.4, -0.3, 0.2]), student)
    lr = 0.02 if "he2" in (student, teacher) or "he3" in (student, teacher) else 0.5  # (he3 grows fast)
    h = ff.ode(net, t, 2.0, lr=lr, lr_a=0.3, reg=ff.WeightDecay(1e-2), noise=0.2, log_times=2)
    assert h["loss"][0] == pytest.approx(ff.Population(t, noise=0.2).loss(net), rel=1e-11)
    # a network whose overlaps are the logged ones: W = L [basis], with the teacher's rows kept
    Q, M, P = h["Q"][-1], h["M"][-1], O.overlaps(net, t)[2]
    C = np.block([[Q, M], [M.T, P]])
    w, V = np.linalg.eigh(C)
    F = V * np.sqrt(np.maximum(w, 0.0))  # C = F F^T: rows are vectors with these inner products
    t2 = ff.Teacher(np.ascontiguousarray(F[3:]), t.a.copy(), teacher)
    n2 = ff.TwoLayer(np.ascontiguousarray(F[:3]), h["a"][-1].copy(), student)
    assert h["loss"][-1] == pytest.approx(ff.Population(t2, noise=0.2).loss(n2), rel=1e-9)


@pytest.mark.parametrize("student, teacher", [("relu", "abs"), ("erf", "relu"), ("relu", "erf"), ("relu", "he2")])
def test_online_sgd_approaches_the_ode_with_a_teacher_of_another_activation(student, teacher):
    """A student learning a teacher of another activation, both layers trained, weight decay: at d = 2000
    the seed mean of the simulated loss agrees with the ODE within 4.5 standard errors at every row, and
    the scatter shrinks from d = 250."""
    kw = dict(alpha=4.0, lr=0.5, lr_a=0.3, reg=ff.WeightDecay(1e-3), noise=0.1, rows=4)
    seeds = range(6)

    def run(d):
        diffs = []
        for seed in seeds:
            target = ff.Teacher(np.linalg.qr(np.random.default_rng(100 + seed).standard_normal((d, 2)))[0].T,
                                 np.array([1.0, 0.8]), teacher)
            W = np.random.default_rng(seed).normal(size=(3, d)) * np.sqrt(0.3 / d)
            net = ff.TwoLayer(W, np.array([0.3, -0.2, 0.1]), student)
            h_ode = ff.ode(net, target, kw["alpha"], lr=kw["lr"], lr_a=kw["lr_a"], reg=kw["reg"], noise=kw["noise"],
                           log_times=kw["rows"])
            steps = int(kw["alpha"] * d)
            h = ff.train(net, ff.Online(target, batch_size=1, noise=kw["noise"], seed=seed), steps=steps,
                         lr=kw["lr"] / d, lr_a=kw["lr_a"] / d, reg=kw["reg"], log_every=steps // kw["rows"],
                         metrics=("loss",))
            diffs.append(h["loss"] - h_ode["loss"])
        return np.array(diffs)

    small, large = run(250), run(2000)
    rms = lambda x: np.sqrt(np.mean(x[:, 1:] ** 2))  # noqa: E731
    assert rms(large) < 0.7 * rms(small), (rms(small), rms(large))
    mean, se = large.mean(axis=0)[1:], large.std(axis=0, ddof=1)[1:] / np.sqrt(len(seeds))
    assert np.all(np.abs(mean) <= 4.5 * se + 1e-5), (mean, se)


def test_every_pair_of_the_ode_activations_is_integrated_and_tanh_is_refused_by_name():
    t = ff.Teacher.random(6, 2, activation="relu", seed=0)
    for student in AV.ODE_ACTIVATIONS:
        for teacher in AV.ODE_ACTIVATIONS:
            net = ff.TwoLayer.init(6, 2, activation=student, seed=1, scale=0.5)
            h = ff.ode(net, ff.Teacher.random(6, 2, activation=teacher, seed=0), 0.05, lr=0.05, lr_a=0.05,
                       log_times=1)
            assert np.all(np.isfinite(h["loss"])), (student, teacher)
    with pytest.raises(ValueError, match="the teacher's activation 'tanh'"):
        ff.ode(ff.TwoLayer.init(6, 3, activation="erf", seed=1), ff.Teacher.random(6, 2, activation="tanh", seed=0),
               1.0, lr=0.5)
    with pytest.raises(ValueError, match="the net's activation 'tanh'"):
        ff.ode(ff.TwoLayer.init(6, 3, activation="tanh", seed=1), t, 1.0, lr=0.5)
