"""Public API: constructors, validation, schedules, the train loop, History, kernels from user @njit code."""
import numba
import numpy as np
import pytest

import fastfeat as ff


@pytest.fixture(scope="module")
def setup():
    teacher = ff.Teacher.random(7, 3, activation="relu", seed=0)
    return teacher, ff.Population(teacher)


def test_constructors():
    t = ff.Teacher.random(10, 4, activation="abs", signs="mixed", seed=1)
    assert np.allclose(t.W @ t.W.T, np.eye(4), atol=1e-12)
    assert t.a.tolist() == [1, -1, 1, -1]
    assert ff.Teacher.random(5, 2, signs="positive").a.tolist() == [1, 1]
    net = ff.TwoLayer.init(50, 4000, scale=2.0, seed=0)
    assert net.W.shape == (4000, 50) and net.a.shape == (4000,) and net.dtype == np.float64
    assert abs(net.W.var() - 4.0 / 50) < 0.05 * 4 / 50
    assert abs(net.a.var() - 4.0 / 4000) < 0.1 * 4 / 4000
    n32 = ff.TwoLayer.init(3, 4, dtype="float32", symmetric=True)
    assert n32.W.dtype == np.float32 and np.array_equal(n32.W[:2], n32.W[2:])
    assert np.array_equal(n32.a[:2], -n32.a[2:])
    assert ff.ACTIVATIONS == ("relu", "abs", "relu_centered", "erf", "linear", "he2", "he3", "tanh")
    assert isinstance(ff.__version__, str)


def test_twolayer_keeps_arrays():
    W = np.ones((3, 2))
    a = np.ones(3)
    net = ff.TwoLayer(W, a)
    assert net.W is W and net.a is a  # training mutates the user's arrays in place


BAD = [
    (lambda: ff.TwoLayer(np.ones((3, 2)), np.ones(4)), ValueError, "a"),
    (lambda: ff.TwoLayer(np.ones((3, 2)), np.ones(3, np.float32)), TypeError, "dtype"),
    (lambda: ff.TwoLayer(np.ones((3, 2), np.int64), np.ones(3)), TypeError, "W"),
    (lambda: ff.TwoLayer(np.ones(3), np.ones(3)), ValueError, "W"),
    (lambda: ff.TwoLayer(np.full((3, 2), np.nan), np.ones(3)), ValueError, "W"),
    (lambda: ff.TwoLayer(np.ones((3, 2)), np.array([1, np.inf, 0])), ValueError, "a"),
    (lambda: ff.TwoLayer(np.ones((2, 3)).T, np.ones(3)), ValueError, "C-contiguous"),
    (lambda: ff.TwoLayer([[1.0]], np.ones(1)), TypeError, "W"),
    (lambda: ff.TwoLayer(np.ones((3, 2)), np.ones(3), activation="sigmoid"), ValueError, "activation"),
    (lambda: ff.TwoLayer.init(4, 5, symmetric=True), ValueError, "symmetric"),
    (lambda: ff.TwoLayer.init(0, 5), ValueError, "d"),
    (lambda: ff.TwoLayer.init(4, 5, dtype="float16"), ValueError, "dtype"),
    (lambda: ff.TwoLayer.init(4, 5, scale=-1.0), ValueError, "scale"),
    (lambda: ff.Teacher.random(3, 4), ValueError, "m_star"),
    (lambda: ff.Teacher.random(3, 2, signs="negative"), ValueError, "signs"),
    (lambda: ff.Population(ff.Teacher.random(3, 2, activation="tanh")), ValueError, "tanh"),
    (lambda: ff.Population("teacher"), TypeError, "teacher"),
    (lambda: ff.Population(ff.Teacher.random(3, 2), noise=-1.0), ValueError, "noise"),
    (lambda: ff.WeightDecay(-0.1), ValueError, "lam"),
    (lambda: ff.PathNorm(float("nan")), ValueError, "lam"),
    (lambda: ff.schedules.geometric(1.0, 0.5, 0), ValueError, "every"),
    (lambda: ff.schedules.piecewise([5, 3], [1, 2, 3]), ValueError, "boundaries"),
    (lambda: ff.schedules.piecewise([5], [1.0]), ValueError, "values"),
]


@pytest.mark.parametrize("make,exc,word", BAD)
def test_bad_constructor_input(make, exc, word):
    with pytest.raises(exc, match=word):
        make()


def test_bad_train_input(setup):
    teacher, pop = setup
    net = ff.TwoLayer.init(7, 4, seed=0)
    cases = [
        (dict(steps=0, lr=0.1), ValueError, "steps"),
        (dict(steps=1.5, lr=0.1), TypeError, "steps"),
        (dict(steps=1, lr=0.0), ValueError, "lr"),
        (dict(steps=1, lr=-1.0), ValueError, "lr"),
        (dict(steps=1, lr=float("inf")), ValueError, "lr"),
        (dict(steps=1, lr=0.1, log_every=0), ValueError, "log_every"),
        (dict(steps=1, lr=0.1, metrics=("nope",)), ValueError, "metrics"),
        (dict(steps=1, lr=0.1, device="tpu"), ValueError, "device"),
        (dict(steps=1, lr=0.1, reg=0.1), TypeError, "reg"),
        (dict(steps=1, lr=0.1, n_threads=0), ValueError, "n_threads"),
        (dict(steps=1, lr=0.1, n_threads=10_000), ValueError, "n_threads"),
        (dict(steps=3, lr=ff.schedules.piecewise([2], [0.1, -0.1])), ValueError, "lr"),
    ]
    for kw, exc, word in cases:
        W0 = net.W.copy()
        with pytest.raises(exc, match=word):
            ff.train(net, pop, **kw)
        assert np.array_equal(net.W, W0)
    with pytest.raises(TypeError, match="objective"):
        ff.train(net, "population", steps=1, lr=0.1)
    with pytest.raises(ValueError, match="d="):
        ff.train(ff.TwoLayer.init(6, 4), pop, steps=1, lr=0.1)
    with pytest.raises(TypeError, match="dtype"):
        ff.train(ff.TwoLayer.init(7, 4, dtype="float32"), pop, steps=1, lr=0.1)
    with pytest.raises(ValueError, match="activation 'tanh'"):  # another activation needs a closed form too
        ff.train(ff.TwoLayer.init(7, 4, activation="tanh"), pop, steps=1, lr=0.1)
    net.W[0, 0] = np.nan  # corrupted after construction: caught before any kernel runs
    with pytest.raises(ValueError, match="net.W"):
        ff.train(net, pop, steps=1, lr=0.1)


def test_schedules():
    g = ff.schedules.geometric(1.0, 0.5, 10, floor=0.2)
    assert g(0) == 1.0 and g(9) == 1.0 and g(10) == 0.5 and g(25) == 0.25 and g(1000) == 0.2
    assert np.array_equal(g.values(8, 4), [1.0, 1.0, 0.5, 0.5])
    p = ff.schedules.piecewise([3, 5], [1.0, 2.0, 3.0])
    assert [p(s) for s in range(7)] == [1, 1, 1, 2, 2, 3, 3]
    assert ff.schedules.constant(0.3).values(5, 2).tolist() == [0.3, 0.3]


def test_train_follows_schedules_step_by_step(setup):
    """ff.train with lr and lam schedules equals a manual loop of objective.grad + update."""
    teacher, pop = setup
    net = ff.TwoLayer.init(7, 9, seed=2)
    ref = net.copy()
    lr = ff.schedules.piecewise([2, 5], [0.3, 0.1, 0.2])
    reg = ff.WeightDecay(lam_a=ff.schedules.geometric(0.1, 0.5, 2), lam_w=lambda s: 0.01 * (s + 1))
    hist = ff.train(net, pop, steps=7, lr=lr, reg=reg, log_every=3, metrics=("loss", "reg", "objective"))
    for s in range(7):
        manual = ff.WeightDecay(lam_a=0.1 * 0.5 ** (s // 2), lam_w=0.01 * (s + 1))
        gW, ga = pop.grad(ref, reg=manual)
        ref.W -= lr(s) * gW
        ref.a -= lr(s) * ga
    np.testing.assert_allclose(net.W, ref.W, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(net.a, ref.a, rtol=1e-12, atol=1e-15)
    assert hist.step.tolist() == [0, 3, 6, 7]
    assert hist["loss"][-1] == pytest.approx(pop.loss(net), rel=1e-12)
    assert np.allclose(hist["objective"], hist["loss"] + hist["reg"])


def test_train_restores_threads_and_history_roundtrip(setup, tmp_path):
    teacher, pop = setup
    net = ff.TwoLayer.init(7, 6, seed=3)
    before = numba.get_num_threads()
    hist = ff.train(net, pop, steps=20, lr=0.2, log_every=5, n_threads=1, metrics=("loss", "norms"))
    assert numba.get_num_threads() == before
    assert hist.step.tolist() == [0, 5, 10, 15, 20]
    assert np.all(np.diff(hist["loss"]) < 0)  # small lr on a smooth loss: monotone
    for suffix in (".json", ".npz"):
        hist.save(tmp_path / f"h{suffix}")
        back = ff.History.load(tmp_path / f"h{suffix}")
        assert back.step.tolist() == hist.step.tolist()
        assert set(back.metrics) == {"loss", "norms.a", "norms.W"}
        np.testing.assert_array_equal(back["loss"], hist["loss"])


def test_divergence_keeps_last_finite_weights(setup):
    teacher, pop = setup
    net = ff.TwoLayer.init(7, 6, seed=4, scale=3.0)
    net = ff.TwoLayer(net.W, net.a, activation="relu")
    with pytest.raises(ff.TrainingDiverged, match="step") as info:
        ff.train(net, pop, steps=2000, lr=1e6, log_every=7)
    assert np.all(np.isfinite(net.W)) and np.all(np.isfinite(net.a))
    assert info.value.step > 0 and info.value.history.step[-1] == info.value.step


def test_callback_can_stop(setup):
    teacher, pop = setup
    net = ff.TwoLayer.init(7, 6, seed=5)
    seen = []

    def cb(step, net_, values):
        seen.append(step)
        return step < 10

    hist = ff.train(net, pop, steps=100, lr=0.1, log_every=5, callback=cb)
    assert seen == [0, 5, 10] and hist.step[-1] == 10


def test_kernels_callable_from_user_njit(setup):
    """A user-written @njit loop calling ff.kernels.population_step gives ff.train's weights."""
    teacher, pop = setup
    k = ff.kernels

    @numba.njit
    def my_loop(W, a, Wt, at, act, lr, lam, steps, gW, ga, ws):
        total = 0.0
        for _ in range(steps):
            total += k.population_step(W, a, Wt, at, act, lr, k.REG_WEIGHT_DECAY, lam, lam, gW, ga, ws)
        return total

    net = ff.TwoLayer.init(7, 11, seed=6)
    mine = net.copy()
    ff.train(net, pop, steps=25, lr=0.2, reg=ff.WeightDecay(1e-2), log_every=25)
    ws = k.population_workspace(11, 3, 7, np.float64)
    gW, ga = np.empty_like(mine.W), np.empty_like(mine.a)
    my_loop(mine.W, mine.a, teacher.W, teacher.a, k.ACTIVATION_CODES["relu"], 0.2, 1e-2, 25, gW, ga, ws)
    np.testing.assert_allclose(mine.W, net.W, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(mine.a, net.a, rtol=1e-13, atol=1e-15)


def test_history_to_pandas_and_the_progress_bar(capsys):
    pd = pytest.importorskip("pandas")
    t = ff.Teacher.random(5, 2, activation="relu", seed=0)
    net = ff.TwoLayer.init(5, 8, seed=1)
    hist = ff.train(net, ff.Population(t), steps=40, lr=0.1, log_every=10, metrics=("loss", "alignment"),
                    progress=True)
    df = hist.to_pandas()
    assert isinstance(df, pd.DataFrame) and list(df.index) == [0, 10, 20, 30, 40] and df.index.name == "step"
    np.testing.assert_array_equal(df["loss"], hist["loss"])
    np.testing.assert_array_equal(df["alignment.best_cos[1]"], hist["alignment.best_cos"][:, 1])
    err = capsys.readouterr().err
    assert "40/40" in err and "steps/s" in err
    assert err.count("loss=") >= 1 and "alignment.loss=" not in err  # each metric once


def test_small_steps_run_on_one_thread_with_the_same_weights():
    """n_threads=None picks one thread for a population or empirical step too small to gain from more (the
    workers' wake-ups cost more than the work there: the population kernels' own rule, the empirical
    objective's SERIAL_WORK), all threads above; the weights are the same."""
    import numba
    from fastfeat.kernels.cpu import population as pop_kernels
    from fastfeat.objectives import empirical as emp_mod

    teacher = ff.Teacher.random(6, 2, seed=0)
    seen = []

    def spy(step, net, values):
        seen.append(numba.get_num_threads())

    before = numba.get_num_threads()
    for obj in (ff.Population(teacher), ff.Empirical.sample(teacher, 40, seed=1)):
        small = ff.TwoLayer.init(6, 8, seed=1)
        ref = small.copy()
        seen.clear()
        ff.train(small, obj, steps=4, lr=0.1, log_every=2, callback=spy)
        assert seen == [1, 1, 1] and numba.get_num_threads() == before
        ff.train(ref, obj, steps=4, lr=0.1, log_every=2, n_threads=numba.config.NUMBA_NUM_THREADS)
        assert small.W.tobytes() == ref.W.tobytes() and small.a.tobytes() == ref.a.tobytes()
    assert ff.Population(teacher)._serial(ff.TwoLayer.init(6, 8))
    # the paper's sizes run on one thread, a wide step on all (128 rows a block up to m = 2048)
    assert pop_kernels.one_thread_suffices(256, 3, 20, 128, 2)
    assert not pop_kernels.one_thread_suffices(2048, 3, 100, 128, 2)
    wide = ff.Population(ff.Teacher.random(100, 3, seed=0))
    assert wide._serial(ff.TwoLayer.init(100, 2048)) == (numba.get_num_threads() == 1)
    big = ff.Empirical(np.zeros((2 ** 21 // (6 * 8) + 1, 6)), np.zeros(2 ** 21 // (6 * 8) + 1))
    assert not big._serial(ff.TwoLayer.init(6, 8)) and emp_mod.SERIAL_WORK == 2 ** 21
