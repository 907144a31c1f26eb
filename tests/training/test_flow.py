"""ff.flow: the regularized gradient flow of the population objective, integrated by compiled adaptive
Runge-Kutta methods. Checked against scipy's solve_ivp on the same gradient, against gradient descent
as its step shrinks (first order), against integrating schedule pieces one after another, and for its
divergence guard and argument checks."""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import fastfeat as ff
from fastfeat.kernels.cpu import flow as K, rkc, tableaus
from fastfeat.training.gradient_flow import flow


def _state(net):
    return np.concatenate([np.asarray(net.W, np.float64).ravel(), np.asarray(net.a, np.float64)])


def _rel(x, y):
    return np.linalg.norm(x - y) / np.linalg.norm(y)


def _scipy_flow(net, teacher, reg, t, method, rtol, atol):
    """The endpoint of solve_ivp on -grad (L + R) from objective.grad, in float64 (also for a float32 net:
    ff.flow integrates in float64 from the same initial point)."""
    m, d = net.m, net.d
    t64 = ff.Teacher(np.array(teacher.W, np.float64), np.array(teacher.a, np.float64), teacher.activation)
    obj = ff.Population(t64)
    probe = ff.TwoLayer(np.array(net.W, np.float64), np.array(net.a, np.float64), net.activation)

    def fun(_, y):
        probe.W[...] = y[:m * d].reshape(m, d)
        probe.a[...] = y[m * d:]
        gW, ga = obj.grad(probe, reg)
        return -np.concatenate([gW.ravel(), ga])

    sol = solve_ivp(fun, (0.0, t), _state(net), method=method, rtol=rtol, atol=atol)
    assert sol.success
    return sol.y[:, -1]


# -- the tableaus --------------------------------------------------------------------------------------

@pytest.mark.parametrize("method, order", [(K.DOP853, 8), (K.DOPRI5, 5)])
def test_tableaus_satisfy_the_low_order_conditions(method, order):
    A, b = tableaus.ERK_A[method], tableaus.ERK_B[method]
    c = A.sum(axis=1)
    assert b.sum() == pytest.approx(1, abs=1e-14)
    assert b @ c == pytest.approx(1 / 2, abs=1e-14)
    assert b @ c**2 == pytest.approx(1 / 3, abs=1e-14)
    assert b @ (A @ c) == pytest.approx(1 / 6, abs=1e-14)
    assert b @ c**3 == pytest.approx(1 / 4, abs=1e-14)
    assert b @ (c * (A @ c)) == pytest.approx(1 / 8, abs=1e-14)
    assert b @ (A @ c**2) == pytest.approx(1 / 12, abs=1e-14)
    assert b @ (A @ (A @ c)) == pytest.approx(1 / 24, abs=1e-14)
    assert b @ c**(order - 1) == pytest.approx(1 / order, abs=1e-13)  # the quadrature condition of its order
    assert tableaus.ERK_E5[method].sum() == pytest.approx(0, abs=1e-14)  # error weights: differences of two methods
    assert tableaus.ERK_E3[method].sum() == pytest.approx(0, abs=1e-14)


# -- agreement with solve_ivp --------------------------------------------------------------------------

CASES = [("relu", 3, 17), ("erf", 3, 17), ("relu", 1, 1), ("erf", 1, 1)]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("act, d, m", CASES)
def test_matches_solve_ivp(act, d, m, dtype):
    teacher = ff.Teacher.random(d, min(2, d), activation=act, seed=0, dtype=dtype)
    net0 = ff.TwoLayer.init(d, m, activation=act, scale=1.0, seed=1, dtype=dtype)
    reg = ff.WeightDecay(lam_a=1e-2, lam_w=3e-2)
    t, rtol, atol = 3.0, 1e-8, 1e-10
    for ours, theirs in [("dop853", "DOP853"), ("rk45", "RK45")]:
        ref = _scipy_flow(net0, teacher, reg, t, theirs, rtol, atol)
        net = net0.copy()
        hist = flow(net, ff.Population(teacher), t, reg=reg, method=ours, rtol=rtol, atol=atol, log_times=3)
        assert net.dtype == np.dtype(dtype)
        # float64: the two integrations agree far below the tolerance; float32: the rounding of the result
        assert _rel(_state(net), ref) <= (1e-7 if dtype == "float64" else 1e-5), (ours, _rel(_state(net), ref))
        assert hist.info["method"] == ("dopri5" if ours == "rk45" else ours)
        assert hist["time"][-1] == t and hist.step[-1] > 0


@pytest.mark.parametrize("act", ["relu", "erf"])
def test_rkc_matches_solve_ivp(act):
    teacher = ff.Teacher.random(3, 2, activation=act, seed=0)
    net = ff.TwoLayer.init(3, 17, activation=act, scale=1.0, seed=1)
    reg = ff.WeightDecay(1e-2)
    ref = _scipy_flow(net, teacher, reg, 3.0, "DOP853", 1e-10, 1e-12)
    flow(net, ff.Population(teacher), 3.0, reg=reg, method="rkc", rtol=1e-8, atol=1e-10, log_times=2)
    assert _rel(_state(net), ref) <= 1e-5


def test_rkc_takes_far_fewer_gradients_on_a_stiff_flow():
    """A stiff flow: weight decay 1000 on a (curvature >= 1000) makes a follow W within ~1e-3, while W
    moves on a time scale of ~1. The explicit pair is held at its stability limit (h ~ 6e-3); RKC's
    step follows accuracy, with more stages."""
    teacher = ff.Teacher.random(4, 2, activation="erf", seed=0)
    net0 = ff.TwoLayer.init(4, 6, activation="erf", scale=1.0, seed=1)
    reg = ff.WeightDecay(lam_a=1000.0, lam_w=1e-3)
    obj = ff.Population(teacher)
    explicit, rkc, auto = net0.copy(), net0.copy(), net0.copy()
    # one thread: at this size a parallel region costs more in wake-ups than it saves
    h_exp = flow(explicit, obj, 10.0, reg=reg, method="dop853", rtol=1e-7, atol=1e-9, log_times=1, n_threads=1)
    h_rkc = flow(rkc, obj, 10.0, reg=reg, method="rkc", rtol=1e-7, atol=1e-9, log_times=1, n_threads=1)
    h_auto = flow(auto, obj, 10.0, reg=reg, rtol=1e-7, atol=1e-9, log_times=1, n_threads=1)
    # measured 4.9x fewer (RKC at its scaled tolerance, which keeps its global error near rtol)
    assert h_rkc["evals"][-1] < h_exp["evals"][-1] / 4, (h_rkc["evals"][-1], h_exp["evals"][-1])
    assert _rel(_state(explicit), _state(net0)) > 0.5  # it went somewhere
    assert _rel(_state(rkc), _state(explicit)) < 1e-5
    # the default switches to RKC once DOP853 is held at its stability limit and ends there (how often it
    # tries DOP853 again on the way is a matter of rounding, which differs between CPU builds)
    assert h_auto.info["method"] == "auto" and h_auto.info["rkc_steps"] > 0
    assert h_auto.info["switches"] >= 1 and h_auto.info["switches"] % 2 == 1, h_auto.info
    assert h_auto["evals"][-1] < h_exp["evals"][-1] / 5, (h_auto["evals"][-1], h_exp["evals"][-1])
    assert _rel(_state(auto), _state(explicit)) < 1e-5


def test_spectral_radius_estimate_bounds_the_hessian():
    """RKC's power iteration on gradient differences gives 1.2 x the largest |eigenvalue| of the Hessian
    (here from central differences of the gradient)."""
    teacher = ff.Teacher.random(3, 2, activation="erf", seed=0)
    net = ff.TwoLayer.init(3, 5, activation="erf", scale=1.0, seed=1)
    obj = ff.Population(teacher)
    reg = ff.WeightDecay(1e-2)
    y, n = _state(net), net.m * net.d + net.m
    eps = 1e-6
    H = np.empty((n, n))
    probe = net.copy()
    for k in range(n):
        cols = []
        for s in (1, -1):
            z = y.copy()
            z[k] += s * eps
            probe.W[...] = z[:net.m * net.d].reshape(net.m, net.d)
            probe.a[...] = z[net.m * net.d:]
            cols.append(np.concatenate([x.ravel() for x in obj.grad(probe, reg)]))
        H[:, k] = (cols[0] - cols[1]) / (2 * eps)
    top = np.abs(np.linalg.eigvalsh(0.5 * (H + H.T))).max()
    bufs = K.buffers(K.RKC, n)
    st, cnt = K.new_state()
    ws = obj._workspace(net)
    code, la, lw = reg.code, 1e-2, 1e-2
    assert K.prepare(y, bufs, st, cnt, teacher.W, teacher.a, net.code, ws, code, la, lw)
    rho = rkc.spectral_radius(y, bufs[0], bufs[1], bufs[4], bufs[5], cnt, teacher.W, teacher.a, net.code, ws, code,
                            la, lw)
    assert rho / 1.2 == pytest.approx(top, rel=0.03)


# -- gradient descent converges to the flow at first order ---------------------------------------------

def test_gradient_descent_approaches_the_flow_at_order_one():
    teacher = ff.Teacher.random(4, 2, activation="relu_centered", seed=0)
    net0 = ff.TwoLayer.init(4, 6, activation="relu_centered", scale=1.0, seed=1)
    obj = ff.Population(teacher)
    reg = ff.WeightDecay(1e-2)
    t = 1.0
    exact = net0.copy()
    flow(exact, obj, t, reg=reg, rtol=1e-12, atol=1e-14, log_times=1)
    errors = []
    for lr in (0.02, 0.01, 0.005):
        gd = net0.copy()
        steps = round(t / lr)
        ff.train(gd, obj, steps=steps, lr=lr, reg=reg, log_every=steps)
        errors.append(np.linalg.norm(_state(gd) - _state(exact)))
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all((orders >= 0.8) & (orders <= 1.2)), (errors, orders)


# -- schedules in time ---------------------------------------------------------------------------------

def test_a_schedule_in_time_equals_its_pieces_one_after_another():
    teacher = ff.Teacher.random(3, 2, activation="erf", seed=0)
    net0 = ff.TwoLayer.init(3, 7, activation="erf", scale=1.0, seed=1)
    obj = ff.Population(teacher)
    sched = ff.schedules.piecewise([1, 3], [0.3, 0.05, 0.0])
    whole = net0.copy()
    hist = flow(whole, obj, 3.5, reg=ff.WeightDecay(sched), rtol=1e-10, atol=1e-12, log_times=[0.5, 1.0, 2.25],
                metrics=("loss", "reg"))
    np.testing.assert_array_equal(hist["time"], [0.0, 0.5, 1.0, 2.25, 3.5])
    # the "reg" metric takes the strength of the stretch the time starts (floor(time))
    lams = [0.3, 0.3, 0.05, 0.05, 0.0]
    for net_lam, value in zip(lams, hist["reg"]):
        assert (value > 0) == (net_lam > 0)
    pieces = net0.copy()
    for lam, span in [(0.3, 1.0), (0.05, 2.0), (0.0, 0.5)]:
        flow(pieces, obj, span, reg=ff.WeightDecay(lam), rtol=1e-10, atol=1e-12, log_times=1)
    assert _rel(_state(whole), _state(pieces)) < 1e-8
    constant = net0.copy()
    flow(constant, obj, 3.5, reg=ff.WeightDecay(0.3), rtol=1e-10, atol=1e-12, log_times=1)
    assert _rel(_state(whole), _state(constant)) > 1e-3  # the schedule mattered
    # the same pieces from a built-in schedule and from a callable: the same integration, bit for bit
    a, b = net0.copy(), net0.copy()
    flow(a, obj, 2.5, reg=ff.WeightDecay(ff.schedules.geometric(0.2, 0.5, 1)), log_times=2)
    flow(b, obj, 2.5, reg=ff.WeightDecay(lambda k: 0.2 * 0.5**k), log_times=2)
    assert np.array_equal(a.W, b.W) and np.array_equal(a.a, b.a)


# -- the history, the callback, max_steps --------------------------------------------------------------

def test_history_rows_and_callback():
    teacher = ff.Teacher.random(3, 2, activation="relu", seed=0)
    net = ff.TwoLayer.init(3, 5, activation="relu", scale=1.0, seed=1)
    obj = ff.Population(teacher, noise=0.1)
    hist = flow(net, obj, 2.0, reg=ff.PathNorm(1e-2), log_times=4, metrics=("alignment", "norms"))
    np.testing.assert_allclose(hist["time"], [0, 0.5, 1.0, 1.5, 2.0])
    # (several logged times may fall in one step: the counters never decrease)
    assert hist.step.dtype == np.int64 and hist.step[0] == 0 and np.all(np.diff(hist.step) >= 0)
    assert hist.step[-1] > 0 and np.all(np.diff(hist["evals"]) >= 0) and np.all(np.diff(hist["rejected"]) >= 0)
    assert hist["loss"][-1] == pytest.approx(obj.loss(net), rel=1e-12)  # noise included
    assert hist["alignment.best_cos"].shape == (5, 2) and "norms.W" in hist.metrics
    assert {"method", "rtol", "atol", "t"} <= set(hist.info) and hist.info["t"] == 2.0
    seen = []

    def stop_at_one(time, n, values):
        seen.append((time, values["loss"]))
        return time < 1.0

    hist = flow(net, obj, 2.0, log_times=4, callback=stop_at_one)
    assert [s[0] for s in seen] == [0.0, 0.5, 1.0] and hist["time"][-1] == 1.0


def test_very_short_times_are_integrated_not_refused():
    teacher = ff.Teacher.random(3, 2, activation="relu", seed=0)
    net = ff.TwoLayer.init(3, 5, activation="relu", scale=1.0, seed=1)
    obj = ff.Population(teacher)
    gW, ga = obj.grad(net)
    start = net.copy()
    hist = flow(net, obj, 1e-18, log_times=[1e-30, 1e-18])
    np.testing.assert_array_equal(hist["time"], [0.0, 1e-30, 1e-18])
    assert hist.step[-1] >= 1
    np.testing.assert_allclose(net.W, start.W - 1e-18 * gW, rtol=0, atol=1e-30)


def test_max_steps_stops_with_a_warning_at_the_last_accepted_state():
    teacher = ff.Teacher.random(3, 2, activation="relu", seed=0)
    net = ff.TwoLayer.init(3, 5, activation="relu", scale=1.0, seed=1)
    obj = ff.Population(teacher)
    with pytest.warns(RuntimeWarning, match="max_steps"):
        hist = flow(net, obj, 50.0, max_steps=15, log_times=2)
    assert hist.info["stopped"] == "max_steps"
    assert 0 < hist["time"][-1] < 50.0 and hist.step[-1] + hist["rejected"][-1] == 15
    assert hist["loss"][-1] == pytest.approx(obj.loss(net), rel=1e-12)  # the row is the net's state


# -- divergence ----------------------------------------------------------------------------------------

def test_weights_whose_loss_overflows_raise_training_diverged():
    """He3 neurons of norm ~1e60: the closed-form loss overflows at the start."""
    teacher = ff.Teacher.random(3, 2, activation="he3", seed=0)
    net = ff.TwoLayer.init(3, 4, activation="he3", seed=1)
    net.W *= 1e60
    W0, a0 = net.W.copy(), net.a.copy()
    with pytest.raises(ff.TrainingDiverged, match="not finite") as info:
        flow(net, ff.Population(teacher), 1.0)
    assert info.value.step == 0 and info.value.time == 0.0
    assert np.array_equal(net.W, W0) and np.array_equal(net.a, a0)


def test_a_flow_too_stiff_to_integrate_raises_training_diverged():
    """He3 neurons of norm ~1e4: the loss (1e23) is finite, but the curvature along a (~|w|^6 = 1e24)
    asks for steps below 1e-14: the integration cannot proceed."""
    teacher = ff.Teacher.random(3, 2, activation="he3", seed=0)
    net = ff.TwoLayer.init(3, 4, activation="he3", seed=1)
    net.W *= 1e4
    W0, a0 = net.W.copy(), net.a.copy()
    with pytest.raises(ff.TrainingDiverged, match="step size fell below") as info:
        flow(net, ff.Population(teacher), 1.0)
    assert info.value.step == 0 and len(info.value.history) == 1  # the row at time 0
    assert np.all(np.isfinite(net.W)) and np.array_equal(net.W, W0) and np.array_equal(net.a, a0)


def test_a_refused_flow_leaves_the_last_accepted_state():
    """A teacher poisoned with NaN after time 1: every later step is refused and shrunk until the step
    size underflows; the net holds the state of time 1 exactly (reported as the bad teacher). (Steps end
    on the logged times here, so that the last accepted state is the one at time 1.)"""
    teacher = ff.Teacher.random(3, 2, activation="relu", seed=0)
    net0 = ff.TwoLayer.init(3, 5, activation="relu", scale=1.0, seed=1)
    obj = ff.Population(teacher)

    def poison(time, net, values):
        if time == 1.0:
            teacher.W[0, 0] = np.nan

    net = net0.copy()
    with pytest.raises(ValueError, match="teacher.W"):
        flow(net, obj, 2.0, log_times=[1.0, 2.0], callback=poison, dense_output=False)
    teacher.W[0, 0] = ff.Teacher.random(3, 2, activation="relu", seed=0).W[0, 0]
    ref = net0.copy()
    flow(ref, obj, 1.0, log_times=[1.0])
    assert np.array_equal(net.W, ref.W) and np.array_equal(net.a, ref.a)


# -- bad input -----------------------------------------------------------------------------------------

@pytest.fixture
def setup():
    teacher = ff.Teacher.random(3, 2, activation="relu", seed=0)
    return ff.TwoLayer.init(3, 5, activation="relu", seed=1), ff.Population(teacher), teacher


@pytest.mark.parametrize("kwargs, exc, word", [
    (dict(t=0.0), ValueError, "t must be > 0"),
    (dict(t=-1.0), ValueError, "t must be > 0"),
    (dict(t=np.inf), ValueError, "t must be finite"),
    (dict(t="1"), TypeError, "t must be a real number"),
    (dict(rtol=0.0), ValueError, "rtol"),
    (dict(rtol=np.nan), ValueError, "rtol"),
    (dict(rtol=1e-20), ValueError, "rtol"),
    (dict(atol=-1e-9), ValueError, "atol"),
    (dict(atol=np.inf), ValueError, "atol"),
    (dict(method="euler"), ValueError, "method"),
    (dict(method=2), TypeError, "method"),
    (dict(log_times=0), ValueError, "log_times"),
    (dict(log_times=True), TypeError, "log_times"),
    (dict(log_times="10"), TypeError, "log_times"),
    (dict(log_times=[0.0, 1.0]), ValueError, "log_times"),
    (dict(log_times=[0.5, 3.0]), ValueError, "log_times"),
    (dict(log_times=[0.5, 0.2]), ValueError, "increasing"),
    (dict(log_times=[[0.5]]), ValueError, "log_times"),
    (dict(log_times=[0.5, np.nan]), ValueError, "log_times"),
    (dict(metrics=("nope",)), ValueError, "metrics"),
    (dict(max_steps=0), ValueError, "max_steps"),
    (dict(callback=3), TypeError, "callback"),
    (dict(dense_output="yes"), TypeError, "dense_output"),
    (dict(reg=0.1), TypeError, "reg"),
    (dict(reg=ff.WeightDecay(lambda k: -1.0)), ValueError, "lam"),
    (dict(n_threads=10_000), ValueError, "n_threads"),
])
def test_bad_input_is_refused_before_anything_runs(setup, kwargs, exc, word):
    net, obj, _ = setup
    W0 = net.W.copy()
    kw = dict(t=2.0)
    kw.update(kwargs)
    t = kw.pop("t")
    with pytest.raises(exc, match=word):
        flow(net, obj, t, **kw)
    assert np.array_equal(net.W, W0)


def test_only_the_population_objective_and_matching_nets(setup):
    net, obj, teacher = setup
    with pytest.raises(TypeError, match="Population"):
        flow(net, ff.Empirical.sample(teacher, 20, seed=0), 1.0)
    with pytest.raises(TypeError, match="Population"):
        flow(net, ff.Online(teacher), 1.0)
    with pytest.raises(TypeError, match="Population"):
        flow(net, "population", 1.0)
    with pytest.raises(ValueError, match="d="):
        flow(ff.TwoLayer.init(4, 5, activation="relu"), obj, 1.0)
    with pytest.raises(TypeError, match="dtype"):
        flow(ff.TwoLayer.init(3, 5, activation="relu", dtype="float32"), obj, 1.0)
    with pytest.raises(TypeError, match="net"):
        flow(teacher, obj, 1.0)


# -- the default: DOP853 with a switch to RKC where the flow is stiff --------------------------------------

def _small_stiff(scale=0.3):
    """relu, d = 10, m = 32, m* = 2, weight decay 1e-3: DOP853 reaches its stability limit after t ~ 10."""
    teacher = ff.Teacher.random(10, 2, activation="relu", seed=0)
    return teacher, ff.TwoLayer.init(10, 32, activation="relu", scale=scale, seed=1)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_auto_is_dop853_bit_for_bit_while_not_stiff(dtype):
    teacher = ff.Teacher.random(3, 2, activation="erf", seed=0, dtype=dtype)
    net0 = ff.TwoLayer.init(3, 17, activation="erf", scale=1.0, seed=1, dtype=dtype)
    reg = ff.WeightDecay(lam_a=1e-2, lam_w=3e-2)
    runs = {}
    for method in ("auto", "dop853"):
        net = net0.copy()
        hist = flow(net, ff.Population(teacher), 3.0, reg=reg, method=method, log_times=3)
        runs[method] = (net, hist)
    (a, ha), (b, hb) = runs["auto"], runs["dop853"]
    assert ha.info["method"] == "auto" and ha.info["switches"] == 0 and ha.info["rkc_steps"] == 0
    assert np.array_equal(a.W, b.W) and np.array_equal(a.a, b.a)
    assert np.array_equal(ha["evals"], hb["evals"]) and np.array_equal(ha.step, hb.step)


def _tight(net0, obj, t, reg):
    """The reference end state: DOP853 at rtol 1e-12, atol 1e-14."""
    ref = net0.copy()
    flow(ref, obj, t, reg=reg, method="dop853", rtol=1e-12, atol=1e-14, log_times=1, max_steps=10**7)
    return _state(ref)


def test_auto_uses_both_methods_and_costs_less_than_either():
    """The flow starts non-stiff (DOP853 is cheaper) and turns stiff (RKC is cheaper): at rtol 1e-7 the
    default runs both and needs fewer gradients than either method alone, ending within rtol of a tight
    reference.

    What is promised is the cost and the accuracy, not the path: how many times the default tries RKC
    and returns to DOP853 on the way depends on rounding, which differs between CPU builds, so the count
    is not asserted beyond "at least one". (At tighter tolerances RKC, second order, stops paying: at
    rtol 1e-9 the default costs what DOP853 alone does.)"""
    teacher, net0 = _small_stiff()
    obj, reg = ff.Population(teacher), ff.WeightDecay(1e-3)
    nets, hists = {}, {}
    for method in ("auto", "dop853", "rkc"):
        nets[method] = net0.copy()
        hists[method] = flow(nets[method], obj, 2000.0, reg=reg, method=method, rtol=1e-7,
                             log_times=4, n_threads=1)
    info = hists["auto"].info
    assert info["switches"] >= 1 and info["rkc_steps"] > 0 and info["spectral_evals"] > 0, info
    evals = {k: h["evals"][-1] for k, h in hists.items()}
    # measured: 0.71 of the cheaper method alone (Zen 4)
    assert evals["auto"] < 0.85 * min(evals["dop853"], evals["rkc"]), evals
    assert _rel(_state(nets["auto"]), _tight(net0, obj, 2000.0, reg)) < 2e-7
    assert np.all(np.diff(hists["auto"]["evals"]) > 0) and np.all(np.diff(hists["auto"].step) > 0)


def test_rkc_and_auto_deliver_the_requested_accuracy_on_a_stiff_flow():
    """Against a tight reference (DOP853, rtol 1e-12) on a stiff flow (d = 10, m = 16, weight decay 1e-3,
    t = 2000): the default ends within 2 rtol at rtol 1e-6 and 1e-8, RKC alone within 3 and 6 rtol (its
    local tolerance is scaled so that its global error, which grows like the local tolerance to the
    power 2/3, stays near rtol; measured 0.75, 1.0 and 1.3, 2.9; unscaled RKC ended 2.8 and 29 rtol
    away)."""
    teacher = ff.Teacher.random(10, 3, activation="relu", seed=0)
    net0 = ff.TwoLayer.init(10, 16, activation="relu", seed=1, scale=0.5)
    obj, reg = ff.Population(teacher), ff.WeightDecay(1e-3)
    ref = _tight(net0, obj, 2000.0, reg)
    for rtol, bound_auto, bound_rkc in ((1e-6, 2, 3), (1e-8, 2, 6)):
        for method, bound in (("auto", bound_auto), ("rkc", bound_rkc)):
            net = net0.copy()
            flow(net, obj, 2000.0, reg=reg, method=method, rtol=rtol, log_times=1, max_steps=10**7)
            err = _rel(_state(net), ref)
            assert err < bound * rtol, (method, rtol, err / rtol)


def test_auto_across_weight_decay_changes():
    """A schedule restarts the controller in whichever method runs; the result matches DOP853's, and the
    tries of RKC cost little where it is not cheaper here."""
    teacher, net0 = _small_stiff()
    obj = ff.Population(teacher)
    lam = ff.schedules.geometric(1e-2, 0.5, every=100)
    auto, ref = net0.copy(), net0.copy()
    h = flow(auto, obj, 500.0, reg=ff.WeightDecay(lam), rtol=1e-7, atol=1e-9, log_times=5, n_threads=1)
    hr = flow(ref, obj, 500.0, reg=ff.WeightDecay(lam), method="dop853", rtol=1e-7, atol=1e-9, log_times=5,
              n_threads=1)
    assert h.info["switches"] >= 1 and h["evals"][-1] < 1.1 * hr["evals"][-1], (h.info, hr["evals"][-1])
    assert _rel(_state(auto), _state(ref)) < 1e-5


# -- dense output: logging that does not shorten the steps ---------------------------------------------

def _logged_states(net0, obj, t, **kw):
    """(history, the float64 state at every logged time) of ff.flow from a copy of net0."""
    states = []

    def keep(time, net, values):
        states.append(_state(net))

    net = net0.copy()
    hist = flow(net, obj, t, callback=keep, **kw)
    return hist, np.array(states)


@pytest.mark.parametrize("method, rtol, tol", [("dop853", 1e-9, 1e-7), ("dopri5", 1e-9, 1e-6), ("rkc", 1e-7, 1e-4),
                                               ("auto", 1e-9, 1e-7)])
def test_interpolated_logs_agree_with_steps_clamped_on_them(method, rtol, tol):
    """Every logged state (weights and loss) from the interpolant of the step holding it agrees with a run
    whose steps end on the logged times, within the accuracy of the integrations (rtol-relative global
    error; RKC: second order), and costs fewer gradients."""
    teacher = ff.Teacher.random(5, 2, activation="relu_centered", seed=3)
    net0 = ff.TwoLayer.init(5, 17, activation="relu_centered", scale=1.0, seed=4)
    obj = ff.Population(teacher)
    kw = dict(reg=ff.WeightDecay(1e-2), method=method, rtol=rtol, atol=1e-12, log_times=40)
    hd, yd = _logged_states(net0, obj, 4.0, **kw)
    hc, yc = _logged_states(net0, obj, 4.0, dense_output=False, **kw)
    np.testing.assert_array_equal(hd["time"], hc["time"])
    scale = np.abs(yc).max()
    assert np.abs(yd - yc).max() <= tol * scale, (method, np.abs(yd - yc).max() / scale)
    np.testing.assert_allclose(hd["loss"], hc["loss"], rtol=10 * tol)
    assert hd["evals"][-1] < hc["evals"][-1]
    # the loss logged at an interpolated state is the loss of that state
    net = net0.copy()
    net.W[...] = yd[17, :17 * 5].reshape(17, 5)
    net.a[...] = yd[17, 17 * 5:]
    assert hd["loss"][17] == pytest.approx(obj.loss(net), rel=1e-12)


def test_default_logging_costs_at_most_a_fifth_more_than_logging_the_end_only():
    """The paper's sizes (d = 20, m = 256, weight decay 1e-3, rtol 1e-8, t = 5): 100 logged times need at
    most 1.2x the gradients of logging t alone (clamping a step on every logged time needed 24x)."""
    teacher = ff.Teacher.random(20, 3, activation="relu", signs="mixed", seed=0)
    net0 = ff.TwoLayer.init(20, 256, activation="relu", seed=1)
    obj = ff.Population(teacher)
    kw = dict(reg=ff.WeightDecay(1e-3), rtol=1e-8)
    one = flow(net0.copy(), obj, 5.0, log_times=1, **kw)
    net = net0.copy()
    default = flow(net, obj, 5.0, **kw)
    assert len(default["time"]) == 101
    assert default["evals"][-1] <= 1.2 * one["evals"][-1], (default["evals"][-1], one["evals"][-1])
    assert default["loss"][-1] == pytest.approx(one["loss"][-1], rel=1e-7)
