"""Output scalings: ff.TwoLayer(scale="ntk" | "mean_field" | gamma), f = m^-gamma sum_j a_j sigma(w_j . x).

The loss is that of f, the gradient is the true gradient in the stored W and a (checked against numpy
references: closed forms with complex-step derivatives, and central finite differences), training is
gradient descent on the stored parameters (checked against a plain numpy loop of objective.grad), and
the step-size conventions are ff.train options."""
import numpy as np
import pytest

import fastfeat as ff
from naive import empirical_loss_grad, population_grad, population_loss, reg_grad

SCALES = [("ntk", 0.5), ("mean_field", 1.0), (0.75, 0.75)]


def _nets(d, m, act, dtype="float64", seed=1):
    t = ff.Teacher.random(d, 3, activation=act, seed=0, dtype=dtype)
    return t, ff.TwoLayer.init(d, m, activation=act, seed=seed, dtype=dtype)


def _scaled(net, scale):
    return ff.TwoLayer(net.W.copy(), net.a.copy(), net.activation, scale=scale)


@pytest.mark.parametrize("scale,gamma", SCALES)
def test_scale_names_factor_and_output(scale, gamma):
    t, net = _nets(5, 17, "relu")
    s = _scaled(net, scale)
    assert s.gamma == gamma and s.output_factor == pytest.approx(17.0 ** -gamma, rel=1e-15)
    assert s.scale == scale and "scale=" in repr(s) and s.copy().scale == scale
    assert s.astype("float32").scale == scale
    X = np.random.default_rng(0).standard_normal((9, 5))
    np.testing.assert_allclose(s(X), net(X) * 17.0 ** -gamma, rtol=1e-13)
    std = s.as_standard()
    assert std.gamma == 0 and std.W is s.W
    np.testing.assert_allclose(std(X), s(X), rtol=1e-13)
    assert net.as_standard() is net and net.scale == "standard" and ff.TwoLayer(net.W, net.a, scale=0).scale == "standard"


@pytest.mark.parametrize("bad", ["meanfield", -1.0, float("nan"), True, [1]])
def test_a_bad_scale_is_refused_naming_it(bad):
    t, net = _nets(5, 4, "relu")
    with pytest.raises(ValueError, match="scale"):
        ff.TwoLayer(net.W, net.a, scale=bad)
    with pytest.raises(ValueError, match="output_scale"):
        ff.TwoLayer.init(5, 4, output_scale=bad)


def test_init_draws_an_order_one_second_layer_for_ntk_and_mean_field():
    std = ff.TwoLayer.init(7, 400, seed=3)
    for scale in ("ntk", "mean_field"):
        net = ff.TwoLayer.init(7, 400, seed=3, output_scale=scale)
        assert net.scale == scale
        np.testing.assert_array_equal(net.W, std.W)
        np.testing.assert_allclose(net.a, std.a * np.sqrt(400), rtol=1e-13)  # a_j ~ N(0, 1): same draw
        assert 0.8 < np.std(net.a) < 1.2


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("act", ["relu", "erf"])
@pytest.mark.parametrize("scale,gamma", SCALES)
def test_population_loss_and_grad_in_the_stored_parameters(scale, gamma, act, dtype):
    m, d = 17, 6
    t, net = _nets(d, m, act, dtype)
    net = _scaled(net, scale)
    s = m ** -gamma
    obj = ff.Population(t)
    W, a = net.W.astype(np.float64), net.a.astype(np.float64)
    tol = 1e-11 if dtype == "float64" else 2e-5
    L = population_loss(act, W, s * a, t.W, t.a)
    assert obj.loss(net) == pytest.approx(L, rel=tol)
    for reg, kind in ((None, None), (ff.WeightDecay(0.03, lam_a=0.07), "wd"), (ff.PathNorm(0.05), "path")):
        gW, ga = obj.grad(net, reg)
        rW, ra = population_grad(act, W, s * a, t.W, t.a)
        lam_a = 0.07 if kind == "wd" else 0.05
        xW, xa = reg_grad(kind, W, a, lam_a, 0.03 if kind == "wd" else 0.05)
        scale_ref = max(np.abs(rW).max(), np.abs(s * ra).max())
        np.testing.assert_allclose(gW, rW + xW, rtol=tol, atol=tol * scale_ref)
        np.testing.assert_allclose(ga, s * ra + xa, rtol=tol, atol=tol * scale_ref)


@pytest.mark.parametrize("scale,gamma", SCALES)
def test_grad_against_finite_differences_of_the_scaled_loss(scale, gamma):
    """Central differences of loss + reg in every stored parameter (population and empirical)."""
    m, d = 3, 4
    t, base = _nets(d, m, "erf")
    net = _scaled(base, scale)
    reg = ff.WeightDecay(0.02)
    for obj in (ff.Population(t), ff.Empirical.sample(t, 33, seed=4)):
        gW, ga = obj.grad(net, reg)

        def total(W, a):
            n = ff.TwoLayer(W, a, "erf", scale=scale)
            return obj.loss(n) + 0.01 * (np.sum(W * W) + np.sum(a * a))

        h = 1e-6
        for idx in np.ndindex(m, d):
            Wp, Wm = net.W.copy(), net.W.copy()
            Wp[idx] += h
            Wm[idx] -= h
            fd = (total(Wp, net.a.copy()) - total(Wm, net.a.copy())) / (2 * h)
            assert gW[idx] == pytest.approx(fd, rel=1e-6, abs=1e-9)
        for j in range(m):
            ap, am = net.a.copy(), net.a.copy()
            ap[j] += h
            am[j] -= h
            fd = (total(net.W.copy(), ap) - total(net.W.copy(), am)) / (2 * h)
            assert ga[j] == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_empirical_loss_and_grad_against_numpy():
    m, d = 17, 5
    t, base = _nets(d, m, "relu")
    net = _scaled(base, "mean_field")
    obj = ff.Empirical.sample(t, 65, seed=2)
    L, rW, ra = empirical_loss_grad("relu", net.W, net.a / m, obj.X, obj.y)
    assert obj.loss(net) == pytest.approx(L, rel=1e-12)
    gW, ga = obj.grad(net)
    np.testing.assert_allclose(gW, rW, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(ga, ra / m, rtol=1e-11, atol=1e-16)


def _numpy_descent(net, obj, steps, lr, lr_a, reg, online=False):
    """Plain gradient descent on the stored parameters with objective.grad (online: the batch of step s)."""
    net = net.copy()
    for s in range(steps):
        gW, ga = obj.grad(net, reg, step=s) if online else obj.grad(net, reg)
        net.W -= lr * gW
        net.a -= lr_a * ga
    return net


@pytest.mark.parametrize("reg", [None, ff.WeightDecay(1e-2, lam_a=3e-2), ff.PathNorm(2e-2)])
@pytest.mark.parametrize("kind", ["population", "empirical", "online"])
@pytest.mark.parametrize("scale", ["ntk", "mean_field"])
def test_train_is_gradient_descent_on_the_stored_parameters(scale, kind, reg):
    m, d = 17, 6
    t, base = _nets(d, m, "relu")
    net = _scaled(base, scale)
    obj = {"population": lambda: ff.Population(t), "empirical": lambda: ff.Empirical.sample(t, 65, seed=2),
           "online": lambda: ff.Online(t, batch_size=3, seed=5)}[kind]()
    lr, lr_a = 0.05, 0.3
    ref = _numpy_descent(net, obj, 7, lr, lr_a, reg, online=kind == "online")
    ff.train(net, obj, steps=7, lr=lr, lr_a=lr_a, reg=reg, log_every=3, metrics=())
    np.testing.assert_allclose(net.W, ref.W, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(net.a, ref.a, rtol=1e-10, atol=1e-13)
    assert net.scale == scale


def test_a_scaled_net_follows_the_standard_net_with_rescaled_step_sizes():
    """Where the conventions are equivalent: f = m^-gamma sum a_j sigma, trained with lr_a, is the
    standard net with second layer m^-gamma a trained with lr_a m^(-2 gamma) (and weight decay on a
    divided by m^(-2 gamma))."""
    m, d = 32, 6  # m^-gamma a power of two for both: the two runs agree bit for bit... up to a's rounding
    t, base = _nets(d, m, "relu_centered")
    for scale, gamma in (("mean_field", 1.0), ("ntk", 0.5)):
        s = m ** -gamma
        net = _scaled(base, scale)
        std = ff.TwoLayer(base.W.copy(), base.a * s, "relu_centered")
        ff.train(net, ff.Population(t), steps=50, lr=0.1, lr_a=0.2, reg=ff.WeightDecay(1e-3, lam_a=2e-3),
                 log_every=50)
        ff.train(std, ff.Population(t), steps=50, lr=0.1, lr_a=0.2 * s * s,
                 reg=ff.WeightDecay(1e-3, lam_a=2e-3 / s**2), log_every=50)
        np.testing.assert_allclose(net.W, std.W, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(net.a * s, std.a, rtol=1e-12, atol=1e-15)


def test_mean_field_step_size_convention():
    m, d = 17, 5
    t, base = _nets(d, m, "relu")
    a, b = _scaled(base, "mean_field"), _scaled(base, "mean_field")
    ha = ff.train(a, ff.Population(t), steps=20, lr=0.5, lr_a=0.25, lr_scaling="mean_field", log_every=10)
    hb = ff.train(b, ff.Population(t), steps=20, lr=0.5 * m, lr_a=0.25 * m, log_every=10)
    assert a.W.tobytes() == b.W.tobytes() and a.a.tobytes() == b.a.tobytes()
    np.testing.assert_array_equal(ha["loss"], hb["loss"])
    c = _scaled(base, "ntk")
    d_ = _scaled(base, "ntk")
    ff.train(c, ff.Population(t), steps=5, lr=0.5, lr_scaling="ntk", log_every=5)
    ff.train(d_, ff.Population(t), steps=5, lr=0.5, log_every=5)
    assert c.W.tobytes() == d_.W.tobytes()
    with pytest.raises(ValueError, match="lr_scaling"):
        ff.train(c, ff.Population(t), steps=1, lr=0.1, lr_scaling="meanfield")


def test_resume_of_a_scaled_run_is_bit_for_bit_and_the_scale_is_checked(tmp_path):
    m, d = 17, 5
    t, base = _nets(d, m, "relu")
    obj = ff.Population(t)
    whole = _scaled(base, 0.75)
    ff.train(whole, obj, steps=40, lr=0.2, reg=ff.PathNorm(1e-3), log_every=10)
    part = _scaled(base, 0.75)
    ck = str(tmp_path / "ck.npz")
    ff.train(part, obj, steps=20, lr=0.2, reg=ff.PathNorm(1e-3), log_every=10, checkpoint=ck)
    saved = ff.Checkpoint.load(ck)
    assert saved.scale == 0.75 and saved.net.scale == 0.75
    resumed = _scaled(base, 0.75)
    ff.train(resumed, obj, steps=40, lr=0.2, reg=ff.PathNorm(1e-3), log_every=10, checkpoint=ck, resume=True)
    assert resumed.W.tobytes() == whole.W.tobytes() and resumed.a.tobytes() == whole.a.tobytes()
    with pytest.raises(ValueError, match="output scale"):
        ff.train(_scaled(base, "ntk"), obj, steps=40, lr=0.2, reg=ff.PathNorm(1e-3), log_every=10,
                 checkpoint=ck, resume=True)


def test_hessian_of_a_scaled_net_against_differences_of_its_gradient():
    m, d = 4, 3
    t, base = _nets(d, m, "erf")
    net = _scaled(base, "mean_field")
    obj = ff.Population(t)
    for reg in (ff.WeightDecay(0.01, lam_a=0.03), ff.PathNorm(0.02)):
        H = ff.hessian(net, obj, reg)
        P = m * d + m
        theta = np.concatenate([net.W.ravel(), net.a])
        h = 1e-6
        fd = np.empty((P, P))
        for i in range(P):
            cols = []
            for sgn in (1, -1):
                th = theta.copy()
                th[i] += sgn * h
                n = ff.TwoLayer(th[:m * d].reshape(m, d).copy(), th[m * d:].copy(), "erf", scale="mean_field")
                gW, ga = obj.grad(n, reg)
                cols.append(np.concatenate([gW.ravel(), ga]))
            fd[:, i] = (cols[0] - cols[1]) / (2 * h)
        np.testing.assert_allclose(H, fd, rtol=1e-5, atol=1e-7 * np.abs(H).max())
        v = np.random.default_rng(1).standard_normal(P)
        np.testing.assert_allclose(ff.hessian_vector(net, obj, v, reg), H @ v, rtol=1e-10,
                                   atol=1e-12 * np.abs(H).max())


def test_alignment_of_a_scaled_net_uses_the_function_and_the_stored_balance():
    m, d = 17, 6
    t, base = _nets(d, m, "relu")
    net = _scaled(base, "ntk")
    al = ff.metrics.alignment(net, t)
    std = ff.metrics.alignment(net.as_standard(), t)
    for key in ("best_cos", "captured_mass", "far_mass", "mass"):
        np.testing.assert_allclose(al[key], std[key], rtol=1e-12)
    gap = np.max(np.abs(net.a ** 2 - np.sum(net.W ** 2, axis=1)))
    assert al["balance_gap"] == pytest.approx(gap, rel=1e-12)
    assert al["loss"] == pytest.approx(ff.Population(t).loss(net), rel=1e-12)


@pytest.mark.parametrize("scale", ["ntk", "mean_field"])
def test_flow_of_a_scaled_net_is_the_gradient_flow_of_its_stored_parameters(scale):
    """Against scipy's DOP853 on d(W, a)/dt = -objective.grad(net, reg) (the stored parameters' gradient,
    checked above against finite differences), at tight tolerances; the logged times are the net's."""
    from scipy.integrate import solve_ivp
    m, d = 3, 4
    t, base = _nets(d, m, "erf")
    obj = ff.Population(t, noise=0.1)
    reg = ff.WeightDecay(0.05, lam_a=0.02)
    net = _scaled(base, scale)

    def rhs(_, y):
        n = ff.TwoLayer(y[:m * d].reshape(m, d).copy(), y[m * d:].copy(), "erf", scale=scale)
        gW, ga = obj.grad(n, reg)
        return -np.concatenate([gW.ravel(), ga])

    y0 = np.concatenate([net.W.ravel(), net.a])
    ref = solve_ivp(rhs, (0.0, 3.0), y0, method="DOP853", rtol=1e-12, atol=1e-14, t_eval=[1.5, 3.0])
    hist = ff.flow(net, obj, 3.0, reg=reg, rtol=1e-10, atol=1e-13, log_times=[1.5, 3.0])
    np.testing.assert_array_equal(hist["time"], [0.0, 1.5, 3.0])
    np.testing.assert_allclose(np.concatenate([net.W.ravel(), net.a]), ref.y[:, -1], rtol=1e-8, atol=1e-11)
    assert hist["loss"][-1] == pytest.approx(obj.loss(net), rel=1e-12)
    mid = ff.TwoLayer(ref.y[:m * d, 0].reshape(m, d).copy(), ref.y[m * d:, 0].copy(), "erf", scale=scale)
    assert hist["loss"][1] == pytest.approx(obj.loss(mid), rel=1e-7)


def test_flow_mean_field_convention_runs_m_times_as_fast():
    m, d = 5, 4
    t, base = _nets(d, m, "relu")
    a, b = base.copy(), base.copy()
    ha = ff.flow(a, ff.Population(t), 0.4, lr_scaling="mean_field", log_times=1)
    hb = ff.flow(b, ff.Population(t), 0.4 * m, log_times=1)
    assert a.W.tobytes() == b.W.tobytes() and a.a.tobytes() == b.a.tobytes()
    assert ha["time"][-1] == 0.4 and hb["time"][-1] == 0.4 * m
    with pytest.raises(ValueError, match="lr_scaling"):
        ff.flow(a, ff.Population(t), 0.1, lr_scaling="fast")


def test_what_takes_standard_nets_only_says_so():
    t, base = _nets(5, 4, "relu")
    net = _scaled(base, "ntk")
    with pytest.raises(ValueError, match="output scale"):
        ff.ode(net, ff.Teacher.random(5, 2, activation="erf"), 0.1, lr=0.1)
    with pytest.raises(ValueError, match="output scale"):
        ff.gpu.to_device(net)


def test_where_a_run_is_cut_into_compiled_calls_never_changes_a_scaled_net():
    """m^-gamma = 17^-0.75 is not a power of two: the weights still do not depend on log_every."""
    t, base = _nets(6, 17, "relu")
    for obj in (ff.Population(t), ff.Online(t, batch_size=2, seed=1)):
        one, cut = _scaled(base, 0.75), _scaled(base, 0.75)
        ff.train(one, obj, steps=60, lr=0.1, reg=ff.WeightDecay(1e-2), log_every=60, metrics=())
        ff.train(cut, obj, steps=60, lr=0.1, reg=ff.WeightDecay(1e-2), log_every=7, metrics=())
        assert one.W.tobytes() == cut.W.tobytes() and one.a.tobytes() == cut.a.tobytes()
