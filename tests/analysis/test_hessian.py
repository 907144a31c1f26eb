"""The exact population Hessian (``fastfeat.analysis``): against central finite differences of the exact
gradient kernel, at the angular kernels' limit rho = +-1, as products without forming it, its spectrum
and zero modes, and its input checks."""
import time

import numpy as np
import pytest

import fastfeat as ff
import fastfeat.analysis.hessian_ops as _hessian
from fastfeat.analysis import HessianSpectrum, hessian, hessian_spectrum, hessian_vector
from conftest import CLOSED_FORM

ANGULAR = ("relu", "abs", "relu_centered")
HOMOGENEOUS = ("relu", "abs", "relu_centered", "linear")
REGS = {
    "none": None,
    "weight_decay": ff.WeightDecay(lam_a=0.03, lam_w=0.07),
    "path_norm": ff.PathNorm(0.05),
}


def _problem(act, d, m, m_star, seed=0):
    """A generic teacher (Gaussian rows, not orthonormal) and a student from ``TwoLayer.init``."""
    rng = np.random.default_rng(seed)
    teacher = ff.Teacher(rng.standard_normal((m_star, d)) / np.sqrt(d), rng.standard_normal(m_star), act)
    net = ff.TwoLayer.init(d, m, activation=act, seed=seed + 1)
    return net, ff.Population(teacher)


def _flat(g):
    return np.concatenate([g[0].ravel(), g[1]])


def _fd_hessian(net, pop, reg, h=1e-6):
    """Central differences of ``pop.grad`` (float64), step h relative to each parameter (at least h)."""
    m, d = net.W.shape
    theta = np.concatenate([net.W.ravel(), net.a])
    cols = []
    for i in range(theta.size):
        hi = h * max(1.0, abs(theta[i]))
        g = []
        for sign in (1.0, -1.0):
            t = theta.copy()
            t[i] += sign * hi
            g.append(_flat(pop.grad(ff.TwoLayer(t[:m * d].reshape(m, d).copy(), t[m * d:].copy(), net.activation),
                                    reg)))
        cols.append((g[0] - g[1]) / (2 * hi))
    return np.stack(cols, axis=1)


def _rel(A, B):
    return np.max(np.abs(A - B)) / np.max(np.abs(B))


@pytest.mark.parametrize("reg", list(REGS))
@pytest.mark.parametrize("act", CLOSED_FORM)
def test_matches_finite_differences_of_the_gradient(act, reg):
    for d, m, m_star in ((1, 1, 1), (3, 17, 2), (5, 3, 4)):
        net, pop = _problem(act, d, m, m_star)
        H = hessian(net, pop, REGS[reg])
        assert H.shape == (m * d + m,) * 2 and H.dtype == np.float64
        assert np.all(np.isfinite(H))
        assert np.max(np.abs(H - H.T)) <= 1e-12 * np.max(np.abs(H))
        err = _rel(H, _fd_hessian(net, pop, REGS[reg]))
        assert err <= 1e-6, (act, reg, d, m, m_star, err)


def test_regularizer_strength_is_taken_at_step():
    net, pop = _problem("erf", 3, 4, 2)
    lam = ff.schedules.piecewise([10], [0.1, 0.01])
    P = net.m * net.d + net.m
    diff = hessian(net, pop, ff.WeightDecay(lam), step=0) - hessian(net, pop, ff.WeightDecay(lam), step=20)
    np.testing.assert_allclose(diff, 0.09 * np.eye(P), atol=1e-14)


def _on_the_limit(act):
    """A student on a teacher direction, an antiparallel pair and a parallel pair of students."""
    net, pop = _problem(act, 5, 6, 3, seed=3)
    net.W[0] = 1.3 * pop.teacher.W[1]
    net.W[2] = -0.7 * net.W[3]
    net.W[4] = 2.0 * net.W[5]
    return net, pop


@pytest.mark.parametrize("act", ANGULAR)
def test_the_angular_limit_parallel_and_antiparallel_pairs(act):
    """At rho = +-1 the kernel is C^2 with a Hessian that is Lipschitz but not differentiable: central
    differences converge at O(h) (measured: about 3e-8 at h = 1e-7), and Hessians at nearby points converge
    to the one at the limit at O(distance)."""
    net, pop = _on_the_limit(act)
    for reg in REGS.values():
        H = hessian(net, pop, reg)
        assert np.all(np.isfinite(H))
        assert np.max(np.abs(H - H.T)) <= 1e-12 * np.max(np.abs(H))
        assert _rel(H, _fd_hessian(net, pop, reg, h=1e-7)) <= 1e-6
    H0 = hessian(net, pop)
    D = np.random.default_rng(0).standard_normal(net.W.shape)
    for eps in (1e-9, 1e-12, 1e-15):
        near = ff.TwoLayer(net.W + eps * D, net.a.copy(), act)
        assert _rel(hessian(near, pop), H0) <= 1e2 * max(eps, 1e-16)


@pytest.mark.parametrize("act", HOMOGENEOUS)
def test_rescaling_direction_identity(act):
    """For a positively homogeneous neuron the loss is constant along (w_j / c, c a_j), so
    H t_j = (grad_{w_j} L, -grad_{a_j} L) with t_j = (-w_j, a_j) in neuron j's slots and 0 elsewhere."""
    net, pop = _problem(act, 4, 7, 3)
    m, d = net.W.shape
    T = np.zeros((m * d + m, m))
    for j in range(m):
        T[j * d:(j + 1) * d, j] = -net.W[j]
        T[m * d + j, j] = net.a[j]
    HT = hessian_vector(net, pop, T)
    gW, ga = pop.grad(net)
    want = np.zeros_like(T)
    for j in range(m):
        want[j * d:(j + 1) * d, j] = gW[j]
        want[m * d + j, j] = -ga[j]
    assert np.max(np.abs(HT - want)) <= 1e-13 * np.max(np.abs(hessian(net, pop)))


@pytest.mark.parametrize("act", CLOSED_FORM)
def test_hessian_vector_equals_the_dense_product(act, monkeypatch):
    rng = np.random.default_rng(7)
    for d, m, m_star in ((1, 1, 1), (3, 17, 2), (5, 3, 4)):
        net, pop = _problem(act, d, m, m_star)
        if act in ANGULAR:
            net.W[0] = 1.3 * pop.teacher.W[0]  # a pair at rho = 1
        for reg in REGS.values():
            H = hessian(net, pop, reg)
            V = rng.standard_normal((H.shape[0], 3))
            for tile in (1 << 20, 7):  # one tile, and rows split into tiles
                monkeypatch.setattr(_hessian, "_TILE_ELEMENTS", tile)
                HV = hessian_vector(net, pop, V, reg)
                assert HV.shape == V.shape and HV.dtype == np.float64
                assert _rel(HV, H @ V) <= 1e-12
                hv = hessian_vector(net, pop, list(V[:, 1]), reg)
                assert hv.shape == (H.shape[0],) and _rel(hv, H @ V[:, 1]) <= 1e-12


def test_hessian_vector_at_a_width_where_the_matrix_does_not_fit():
    """m = 2048, d = 64: P = 133120, H would take 142 GB. Checked by symmetry (u^T H v = v^T H u) and by
    the rescaling identity of neuron 0."""
    d, m = 64, 2048
    teacher = ff.Teacher.random(d, 8, activation="relu", seed=0)
    net = ff.TwoLayer.init(d, m, activation="relu", seed=1)
    pop = ff.Population(teacher)
    P = m * d + m
    u = np.random.default_rng(2).standard_normal(P)
    t0 = np.zeros(P)
    t0[:d] = -net.W[0]
    t0[m * d] = net.a[0]
    start = time.perf_counter()
    HV = hessian_vector(net, pop, np.stack([u, t0], axis=1))
    took = time.perf_counter() - start
    assert abs(u @ HV[:, 1] - t0 @ HV[:, 0]) <= 1e-12 * np.linalg.norm(u) * np.linalg.norm(HV[:, 1])
    gW, ga = pop.grad(net)
    want = np.zeros(P)
    want[:d] = gW[0]
    want[m * d] = -ga[0]
    assert np.max(np.abs(HV[:, 1] - want)) <= 1e-12 * np.max(np.abs(HV[:, 0]))
    assert took < 60, took


def _stationary(act, d, m_star, seed=0):
    """A global minimum: student neuron j = teacher neuron j rescaled by c_j > 0 (exact for homogeneous σ)."""
    rng = np.random.default_rng(seed)
    Wt, at = rng.standard_normal((m_star, d)), rng.standard_normal(m_star)
    c = rng.uniform(0.5, 2.0, m_star)
    return ff.TwoLayer(Wt * c[:, None], at / c, act), ff.Population(ff.Teacher(Wt, at, act))


@pytest.mark.parametrize("act", ANGULAR)
def test_zero_modes_at_a_stationary_point_and_weight_decay_lifts_them(act):
    for d, m in ((5, 3), (8, 4)):
        net, pop = _stationary(act, d, m)
        sp = hessian_spectrum(net, pop)
        assert isinstance(sp, HessianSpectrum) and sp.complete and sp.eigenvalues.size == sp.n_params
        assert np.all(np.diff(sp.eigenvalues) >= 0)
        assert sp.n_zero == m and sp.n_negative == 0          # one rescaling mode per neuron
        ev = np.sort(np.abs(sp.eigenvalues))
        assert ev[m - 1] < 1e-1 * sp.tol and ev[m] > 1e6 * sp.tol  # measured: < 0.06 tol, > 1e9 tol
        lam = 1e-3
        spw = hessian_spectrum(net, pop, ff.WeightDecay(lam))
        assert spw.n_zero == 0 and spw.n_negative == 0
        assert spw.eigenvalues[0] == pytest.approx(lam, rel=1e-9)  # G + lam I at a zero-residual minimum
        assert "n_zero=0" in repr(spw) and "HessianSpectrum" in repr(spw)


@pytest.mark.parametrize("act", ANGULAR)
def test_zero_modes_of_neurons_sharing_a_teacher_direction(act):
    """Teacher neuron 0 split over two students: that group has 2 (d + 1) - d zero modes, the other 1."""
    d = 4
    rng = np.random.default_rng(1)
    Wt, at = rng.standard_normal((2, d)), rng.standard_normal(2)
    W = np.stack([0.7 * Wt[0], 1.6 * Wt[0], 1.2 * Wt[1]])
    a = np.array([0.4 * at[0] / 0.7, 0.6 * at[0] / 1.6, at[1] / 1.2])
    sp = hessian_spectrum(ff.TwoLayer(W, a, act), ff.Population(ff.Teacher(Wt, at, act)))
    assert sp.n_zero == (2 * (d + 1) - d) + 1 and sp.n_negative == 0


def test_zero_modes_of_the_linear_activation_and_of_neurons_with_a_zero():
    net, pop = _stationary("linear", 5, 3)
    assert hessian_spectrum(net, pop).n_zero == 3 * 6 - 5  # the loss depends on W^T a only
    for act in CLOSED_FORM:
        net, pop = _problem(act, 5, 7, 3)
        if act != "linear":
            assert hessian_spectrum(net, pop).n_zero == 0     # a generic point: none
        net.a[[0, 3]] = 0.0
        sp = hessian_spectrum(net, pop)
        if act != "linear":
            assert sp.n_zero == 2 * (5 - 1), act             # w_j directions orthogonal to r_j
        assert hessian_spectrum(net, pop, ff.WeightDecay(lam_a=0.0, lam_w=1e-3)).n_zero == 0


@pytest.mark.parametrize("act", ANGULAR)
def test_a_neuron_with_a_zero_at_a_global_minimum_has_d_zero_modes(act):
    """At a global minimum r_j = E[(f - y) sigma'(w_j . x) x] = 0, so all d directions of an extra neuron
    with a_j = 0 are flat (d - 1 is the bound at any point), besides the teacher neurons' rescalings."""
    d, m_star = 5, 3
    net, pop = _stationary(act, d, m_star)
    extra = np.random.default_rng(3).standard_normal(d)
    W = np.vstack([net.W, extra])
    a = np.concatenate([net.a, [0.0]])
    sp = hessian_spectrum(ff.TwoLayer(W, a, act), pop)
    assert sp.n_zero == m_star + d and sp.n_negative == 0


def test_k_smallest_agree_with_all_eigenvalues():
    """Lanczos's k smallest are the dense ones to its stated accuracy (LANCZOS_ACCURACY of the largest);
    "auto" takes the dense path at these sizes (the same numbers bit for bit)."""
    from fastfeat.analysis.spectrum import LANCZOS_ACCURACY
    net, pop = _problem("relu", 5, 17, 3)
    full = hessian_spectrum(net, pop)
    part = hessian_spectrum(net, pop, k=6, method="lanczos")
    assert not part.complete and part.eigenvalues.size == 6
    np.testing.assert_allclose(part.eigenvalues, full.eigenvalues[:6], rtol=0, atol=LANCZOS_ACCURACY * full.largest)
    assert part.largest == pytest.approx(full.largest, rel=LANCZOS_ACCURACY)
    assert part.tol == pytest.approx(full.tol, rel=LANCZOS_ACCURACY)
    auto = hessian_spectrum(net, pop, k=6)
    np.testing.assert_array_equal(auto.eigenvalues, full.eigenvalues[:6])
    assert auto.largest == full.largest and auto.n_params == full.n_params
    # repeated zero eigenvalues (one per neuron) are all found
    net, pop = _stationary("relu", 8, 4)
    part = hessian_spectrum(net, pop, k=6, method="lanczos")
    assert part.n_zero == 4 and part.n_negative == 0
    np.testing.assert_allclose(part.eigenvalues, hessian_spectrum(net, pop).eigenvalues[:6], rtol=0,
                               atol=LANCZOS_ACCURACY * part.largest)


def test_lanczos_through_a_cluster_of_zero_modes_within_a_product_budget(monkeypatch):
    """Half of the 40 neurons with a = 0 (d - 1 zero modes each: a cluster of 220 near-zero eigenvalues
    after 176 negative ones): the 200 and 260 smallest agree with the dense spectrum to the stated
    accuracy, with the same zero and negative counts, in fewer than 5,000 products (about 1,500 are
    needed); a budget too small for it raises SpectrumNotConverged saying what to do."""
    from fastfeat.analysis import spectrum
    d, m = 12, 40
    t = ff.Teacher.random(d, 3, activation="relu", seed=0)
    net = ff.TwoLayer.init(d, m, activation="relu", seed=1, scale=0.5)
    net.a[m // 2:] = 0.0
    pop = ff.Population(t)
    full = hessian_spectrum(net, pop)
    assert full.n_zero >= (m // 2) * (d - 1)
    used = []
    real = spectrum._Budget.apply

    def counting(self, X):
        out = real(self, X)
        used.append(self.used)
        return out

    monkeypatch.setattr(spectrum._Budget, "apply", counting)
    for k in (200, 260):
        used.clear()
        part = hessian_spectrum(net, pop, k=k, method="lanczos")
        np.testing.assert_allclose(part.eigenvalues, full.eigenvalues[:k], rtol=0,
                                   atol=spectrum.LANCZOS_ACCURACY * full.largest)
        assert part.n_zero == np.sum(np.abs(full.eigenvalues[:k]) <= full.tol)
        assert part.n_negative == min(k, full.n_negative)
        assert used[-1] < 5000, used[-1]
    with pytest.raises(ff.SpectrumNotConverged, match="max_products=300"):
        hessian_spectrum(net, pop, k=200, method="lanczos", max_products=300)


def test_spectrum_method_is_checked():
    net, pop = _problem("relu", 3, 4, 2)
    with pytest.raises(ValueError, match="method"):
        hessian_spectrum(net, pop, method="arpack")
    with pytest.raises(ValueError, match="pass k"):
        hessian_spectrum(net, pop, method="lanczos")
    with pytest.raises(ValueError, match="max_products"):
        hessian_spectrum(net, pop, k=2, method="lanczos", max_products=0)
    loose = hessian_spectrum(net, pop, tol=1e-3)
    assert loose.tol == 1e-3 and loose.n_zero == np.sum(np.abs(hessian_spectrum(net, pop).eigenvalues) <= 1e-3)


def test_float32_net_gives_the_float64_hessian():
    net, pop = _problem("relu_centered", 4, 5, 2)
    net32 = net.astype("float32")
    pop32 = ff.Population(pop.teacher.astype("float32"))
    net64 = net32.astype("float64")
    pop64 = ff.Population(pop32.teacher.astype("float64"))
    reg = ff.WeightDecay(1e-2)
    H32 = hessian(net32, pop32, reg)
    assert H32.dtype == np.float64
    np.testing.assert_array_equal(H32, hessian(net64, pop64, reg))
    v = np.random.default_rng(0).standard_normal(H32.shape[0])
    np.testing.assert_array_equal(hessian_vector(net32, pop32, v, reg), hessian_vector(net64, pop64, v, reg))


def test_bad_input_names_the_argument():
    net, pop = _problem("relu", 3, 4, 2)
    P = 4 * 3 + 4
    with pytest.raises(TypeError, match="objective must be an ff.Population.*population loss"):
        hessian(net, ff.Empirical.sample(pop.teacher, 10, seed=0))
    with pytest.raises(TypeError, match="objective"):
        hessian_vector(net, ff.Online(pop.teacher), np.ones(P))
    with pytest.raises(TypeError, match="net"):
        hessian("net", pop)
    with pytest.raises(TypeError, match="reg"):
        hessian(net, pop, reg="weight decay")
    with pytest.raises(ValueError, match="step"):
        hessian(net, pop, step=-1)
    erf_teacher = ff.Teacher(pop.teacher.W, pop.teacher.a, "erf")  # the loss takes it, the Hessian not yet
    with pytest.raises(ValueError, match="teacher's activation to be the student's"):
        hessian_vector(net, ff.Population(erf_teacher), np.ones(P))
    for bad in (np.ones(P + 1), np.ones((P, 0)), np.ones((2, P)), np.ones((P, 2, 1))):
        with pytest.raises(ValueError, match="v must have shape"):
            hessian_vector(net, pop, bad)
    with pytest.raises(TypeError, match="v must be a real"):
        hessian_vector(net, pop, np.array(["x"] * P))
    with pytest.raises(ValueError, match="v contains NaN"):
        hessian_vector(net, pop, np.full(P, np.nan))
    with pytest.raises(ValueError, match="k"):
        hessian_spectrum(net, pop, k=0)
    with pytest.raises(ValueError, match="k must be < P"):
        hessian_spectrum(net, pop, k=P)
    with pytest.raises(ValueError, match="tol"):
        hessian_spectrum(net, pop, tol=-1.0)
    f32 = net.astype("float32")
    with pytest.raises(TypeError, match="dtype"):
        hessian(f32, pop)


def test_where_the_hessian_does_not_exist():
    for act in ANGULAR:
        net, pop = _problem(act, 3, 5, 2)
        net.W[[1, 3]] = 0.0
        with pytest.raises(ValueError, match=r"net\.W has zero rows \(neurons \[1, 3\]\)"):
            hessian(net, pop)
        with pytest.raises(ValueError, match=r"net\.W has zero rows"):
            hessian_vector(net, pop, np.ones(5 * 3 + 5))
    net, pop = _problem("erf", 3, 5, 2)
    net.W[1] = 0.0                         # smooth kernels are fine at w_j = 0
    assert np.all(np.isfinite(hessian(net, pop)))
    net.a[2] = 0.0
    with pytest.raises(ValueError, match=r"reg: PathNorm .* neurons \[1, 2\]"):
        hessian(net, pop, ff.PathNorm(1e-2))
    with pytest.raises(ValueError, match=r"reg: PathNorm"):
        hessian_spectrum(net, pop, ff.PathNorm(1e-2), k=2)
    assert np.all(np.isfinite(hessian(net, pop, ff.PathNorm(0.0))))  # no kink without strength
