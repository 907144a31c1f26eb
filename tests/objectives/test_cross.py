"""Teacher and student with different activations: the cross kernels (``fastfeat.math.cross``) against
Monte Carlo with stated standard errors, their gradients against finite differences of the loss, and
``ff.Population`` / ``ff.Online`` / ``ff.flow`` with such a teacher."""
import math

import numpy as np
import pytest

import fastfeat as ff
from fastfeat.math.activations import CODES, SPEC
from fastfeat.math.cross import ANGULAR_CROSS, BASIS, angular_consts, cross_names, pair_code
from fastfeat.math.reference import features
from naive import population_loss
from conftest import CLOSED_FORM

PAIRS = cross_names()


def _fields(rho, nu, nv):
    """(u, v) in R^2 with norms nu, nv and correlation rho."""
    return np.array([[nu, 0.0]]), np.array([[nv * rho, nv * math.sqrt(max(0.0, 1 - rho * rho))]])


# (rho, |u|, |v|): generic, parallel, antiparallel, zero norm on either side, large norms
GEOMETRIES = [(0.37, 0.8, 1.3), (1.0, 0.6, 1.1), (-1.0, 1.2, 0.7), (0.5, 0.0, 1.0), (-0.2, 0.9, 0.0),
              (0.81, 2.5, 1.9)]


def test_cross_kernels_match_monte_carlo():
    """Every ordered pair of activations with a kernel (the cross ones and, as a check of the basis, the
    same ones) on every geometry: 1e7 Gaussian samples, within 4 standard errors."""
    from fastfeat.kernels.cpu._jit import TABLE64
    rng = np.random.default_rng(2024)
    n, chunk = 10_000_000, 500_000
    U = np.concatenate([_fields(*g)[0] for g in GEOMETRIES])  # (geometries, 2): one row per geometry
    V = np.concatenate([_fields(*g)[1] for g in GEOMETRIES])
    na, ng = len(CLOSED_FORM), len(GEOMETRIES)
    sums = np.zeros((ng, na, na))
    sq = np.zeros_like(sums)
    for _ in range(n // chunk):
        X = rng.standard_normal((chunk, 2))
        # (geometries, activations, samples), contiguous per geometry
        Fu = np.ascontiguousarray(np.stack([features(s, X, U) for s in CLOSED_FORM]).transpose(2, 0, 1))
        Fv = np.ascontiguousarray(np.stack([features(t, X, V) for t in CLOSED_FORM]).transpose(2, 0, 1))
        for g in range(ng):
            fu, fv = Fu[g], Fv[g]
            sums[g] += fu @ fv.T             # sum over samples of every product s(z1) t(z2)
            sq[g] += (fu * fu) @ (fv * fv).T  # and of its square
    worst = 0.0
    for g, (rho, nu, nv) in enumerate(GEOMETRIES):
        mean = sums[g] / n
        se = np.sqrt(np.maximum(sq[g] / n - mean**2, 0.0) / n)
        for i, s in enumerate(CLOSED_FORM):
            for j, t in enumerate(CLOSED_FORM):
                K = TABLE64.cross_pair(CODES[s], CODES[t], nu, nv, float(U[g] @ V[g]))[0]
                if se[i, j] == 0:  # a zero neuron on an angular side: both are exactly 0
                    assert K == mean[i, j] == 0, (s, t, rho, nu, nv)
                    continue
                z = abs(K - mean[i, j]) / se[i, j]
                worst = max(worst, z)
                assert z < 4, (s, t, rho, nu, nv, K, mean[i, j], se[i, j])
    assert worst > 0.5  # the z-scores are not all 0 (the comparison ran)


def test_cross_kernel_of_one_activation_is_its_kernel():
    """Through the basis, an activation paired with itself gives its own kernel and gradient terms
    (``pair``), and two angular activations give the angular constants of ``SPEC``."""
    from fastfeat.kernels.cpu._jit import TABLE64
    rng = np.random.default_rng(5)
    for name in CLOSED_FORM:
        c0 = CODES[name]
        for _ in range(30):
            u, v = rng.standard_normal(4) * rng.uniform(0.2, 2), rng.standard_normal(4) * rng.uniform(0.2, 2)
            nu, nv, c = np.linalg.norm(u), np.linalg.norm(v), float(u @ v)
            K, au, _, b = TABLE64.pair(c0, nu, nv, c)
            K2, au2, b2 = TABLE64.cross_pair(c0, c0, nu, nv, c)
            assert np.allclose([K2, au2, b2], [K, au, b], rtol=1e-12, atol=1e-13), name
    for spec in SPEC:
        if spec.kernel == "angular":
            c = CODES[spec.name]
            a1, b1, g1 = BASIS[c, 3], BASIS[c, 0], BASIS[c, 5]
            derived = (math.pi / 2 + math.pi * b1 * b1 / (2 * a1 * a1), 2 * a1 * a1 / math.pi,
                       math.pi * (2 * a1 * g1 * math.sqrt(2 / math.pi) + g1 * g1) / (2 * a1 * a1))
            assert np.allclose(derived, spec.angular, rtol=1e-15, atol=1e-15)
            assert tuple(ANGULAR_CROSS[c, c]) == tuple(spec.angular) == angular_consts(c, c)


def _pair_problem(s, t, m=9, ms=4, d=5, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((m, d)) / math.sqrt(d)
    a = rng.standard_normal(m) / math.sqrt(m)
    W[2] = 0.0  # a zero neuron
    Wt = rng.standard_normal((ms, d)) / math.sqrt(d)
    at = rng.standard_normal(ms)
    return ff.TwoLayer(W.astype(dtype), a.astype(dtype), activation=s), ff.Teacher(Wt.astype(dtype), at.astype(dtype), t)


@pytest.mark.parametrize("ms", [4, 17])
def test_cross_gradient_matches_finite_differences(ms):
    """The gradient of the cross-activation population loss along random directions against central
    differences of the loss (h = 1e-5, error O(h^2)), for every ordered pair, both ways of computing the
    student-teacher terms (a teacher of 4 and of 17 neurons); zero student neurons are not moved."""
    rng = np.random.default_rng(ms)
    for s, t in PAIRS:
        net, teacher = _pair_problem(s, t, ms=ms, seed=ms)
        pop = ff.Population(teacher)
        gW, ga = pop.grad(net)
        for _ in range(2):
            dW, da = rng.standard_normal(net.W.shape), rng.standard_normal(net.m)
            dW[2] = 0.0

            def loss_at(h):
                return pop.loss(ff.TwoLayer(net.W + h * dW, net.a + h * da, activation=s))

            h = 1e-5
            fd = (loss_at(h) - loss_at(-h)) / (2 * h)
            exact = float((gW * dW).sum() + ga @ da)
            assert abs(fd - exact) <= 1e-7 * (np.abs(gW).sum() * 3 + np.abs(ga).sum() * 3), (s, t, fd, exact)


def test_cross_loss_matches_monte_carlo_and_float32():
    """``ff.Population(teacher).loss`` for a student of another activation against a Monte Carlo estimate
    of the loss (5 standard errors), and the float32 kernels against float64."""
    rng = np.random.default_rng(8)
    n = 400_000
    X = rng.standard_normal((n, 5))
    out = {}  # the student's and the teacher's outputs per activation (the same weights for every pair)
    for name in CLOSED_FORM:
        net, teacher = _pair_problem(name, name, seed=3)
        out[name] = (features(name, X, net.W) @ net.a, features(name, X, teacher.W) @ teacher.a)
    for s, t in PAIRS:
        net, teacher = _pair_problem(s, t, seed=3)
        r = out[s][0] - out[t][1]
        vals = 0.5 * r * r
        L = ff.Population(teacher).loss(net)
        assert abs(L - vals.mean()) < 5 * vals.std() / math.sqrt(n), (s, t)
        net32, teacher32 = net.astype("float32"), teacher.astype("float32")
        pop32 = ff.Population(teacher32)
        scale = np.abs(vals).mean() + 1e-3
        assert abs(pop32.loss(net32) - L) < 1e-5 * scale * 10, (s, t)
        gW, ga = ff.Population(teacher).grad(net)
        gW32, ga32 = pop32.grad(net32)
        assert gW32.dtype == np.float32
        g = np.concatenate([gW.ravel(), ga])
        g32 = np.concatenate([gW32.ravel(), ga32]).astype(np.float64)
        assert np.abs(g32 - g).max() <= 1e-4 * np.abs(g).max(), (s, t)


def test_same_activation_pairs_match_the_numpy_reference_through_the_pair_code():
    """``pair_code`` of one activation is that activation's code: the kernels and the reference agree."""
    for name in CLOSED_FORM:
        assert pair_code(CODES[name], CODES[name]) == CODES[name]
        net, teacher = _pair_problem(name, name, seed=4)
        L = ff.Population(teacher).loss(net)
        assert abs(L - population_loss(name, net.W, net.a, teacher.W, teacher.a)) < 1e-11 * max(abs(L), 1)


def test_training_against_a_teacher_of_another_activation():
    """A relu student learns an erf teacher: ``ff.train`` and ``ff.flow`` reduce the exact loss, the
    online objective reports that exact loss, the kernels accept the pair code, and a tanh student is
    refused with an error that names its activation."""
    rng = np.random.default_rng(11)
    teacher = ff.Teacher.random(6, 2, activation="erf", seed=1)
    net = ff.TwoLayer.init(6, 12, activation="relu", seed=2)
    pop = ff.Population(teacher)
    L0 = pop.loss(net)
    hist = ff.train(net.copy(), pop, steps=400, lr=0.2, log_every=100)
    assert hist["loss"][-1] < 0.5 * L0
    flowed = net.copy()
    ff.flow(flowed, pop, 5.0, log_times=3)
    assert pop.loss(flowed) < L0
    online = ff.Online(teacher, batch_size=1, seed=1)
    assert online.exact_loss(net) and online.loss(net) == pytest.approx(L0, rel=1e-12)
    m = ff.metrics.alignment(net, teacher)
    assert m["loss"] == pytest.approx(L0, rel=1e-12)
    # the public kernels with the pair code
    from fastfeat import kernels as K
    ws = K.population_workspace(net.m, teacher.m, net.d, np.float64)
    gW, ga = np.empty_like(net.W), np.empty_like(net.a)
    code = K.population_code(net.code, teacher.code)
    assert K.population_loss_grad(net.W, net.a, teacher.W, teacher.a, code, gW, ga, ws, True) == pytest.approx(L0)
    with pytest.raises(ValueError, match="code"):
        K.population_loss_grad(net.W, net.a, teacher.W, teacher.a, pair_code(CODES["tanh"], teacher.code),
                               gW, ga, ws, True)
    bad = ff.TwoLayer(rng.standard_normal((3, 6)), rng.standard_normal(3), activation="tanh")
    with pytest.raises(ValueError, match="tanh"):
        pop.loss(bad)
