"""Logging costs what it says: the "loss" metric reuses the kernel's loss where the kernel has it, and
``ff.Online`` logs the mean minibatch loss by default; the logged values are those computed directly."""
import numpy as np
import pytest

import fastfeat as ff


def _pair(act="relu", d=7, m=17, dtype="float64"):
    t = ff.Teacher.random(d, 3, activation=act, seed=0, dtype=dtype)
    return t, ff.TwoLayer.init(d, m, activation=act, seed=1, scale=0.7, dtype=dtype)


def _copy(net):
    return ff.TwoLayer(net.W.copy(), net.a.copy(), activation=net.activation)


@pytest.mark.parametrize("kind", ["population", "empirical"])
@pytest.mark.parametrize("log_every", [1, 3, 10])
def test_reused_loss_equals_computed_loss(kind, log_every):
    """Rows logged from the next call's loss (no callback) equal rows computed at logging time (a callback
    forces that), at every step, with the same weights at the end; steps not a multiple of log_every."""
    t, net = _pair()
    obj = ff.Population(t) if kind == "population" else ff.Empirical.sample(t, 65, seed=3)
    a, b = _copy(net), _copy(net)
    reg = ff.WeightDecay(1e-3)
    h1 = ff.train(a, obj, steps=23, lr=0.05, reg=reg, log_every=log_every, metrics=("loss", "norms"))
    h2 = ff.train(b, obj, steps=23, lr=0.05, reg=reg, log_every=log_every, metrics=("loss", "norms"),
                  callback=lambda step, net, values: None)
    np.testing.assert_array_equal(h1.step, h2.step)
    np.testing.assert_allclose(h1["loss"], h2["loss"], rtol=1e-12)
    np.testing.assert_array_equal(h1["norms.W"], h2["norms.W"])
    np.testing.assert_array_equal(a.W, b.W)
    # and each row is the objective's loss at that step
    c = _copy(net)
    direct = [obj.loss(c)]
    for s in range(1, 24):
        ff.train(c, obj, steps=1, lr=0.05, reg=reg, start_step=s - 1, metrics=())
        if s in h1.step:
            direct.append(obj.loss(c))
    np.testing.assert_allclose(h1["loss"], direct, rtol=1e-10)


def test_reused_loss_on_divergence_keeps_rows_complete():
    """A diverging run raises with every row complete, the last one at the refused step."""
    t, net = _pair("relu", d=4, m=5)
    obj = ff.Population(t)
    with pytest.raises(ff.TrainingDiverged) as info:
        ff.train(net, obj, steps=400, lr=1e6, log_every=7)
    h = info.value.history
    assert h.step[-1] == info.value.step
    assert len(h["loss"]) == len(h.step)
    assert np.isfinite(h["loss"][0])


def test_online_default_metric_is_the_mean_minibatch_loss():
    """ff.Online logs batch_loss by default: at the first row the loss of the first step's batch before that
    step, then the mean over the steps since the previous row of the loss of each step's batch at the
    weights before that step; the same numbers with a callback (every row complete when it is logged)."""
    t, net = _pair("erf", d=6, m=9)
    obj = ff.Online(t, batch_size=3, seed=4)
    assert obj.default_metrics == ("batch_loss",)
    c = _copy(net)
    h = ff.train(net, obj, steps=12, lr=0.05, log_every=4)
    assert list(h.metrics) == ["batch_loss"] and np.all(np.isfinite(h["batch_loss"]))
    expected = []
    losses = []
    for s in range(12):
        losses.append(obj._grad(c, np.empty_like(c.W), np.empty_like(c.a), step=s))
        if s == 0:
            expected.append(losses[0])
        ff.train(c, obj, steps=1, lr=0.05, start_step=s, metrics=())
        if (s + 1) % 4 == 0:
            expected.append(np.mean(losses))
            losses = []
    np.testing.assert_allclose(h["batch_loss"], expected, rtol=1e-10)
    np.testing.assert_array_equal(net.W, c.W)
    seen = []
    h_cb = ff.train(_pair("erf", d=6, m=9)[1], obj, steps=12, lr=0.05, log_every=4,
                    callback=lambda step, n, values: seen.append(values["batch_loss"]))
    np.testing.assert_array_equal(h_cb["batch_loss"], h["batch_loss"])
    assert seen == h["batch_loss"].tolist()
    # the exact population loss on request
    h2 = ff.train(_copy(c), obj, steps=4, lr=0.05, log_every=4, metrics=("loss", "batch_loss"))
    assert h2["loss"][0] == pytest.approx(obj.loss(c), rel=1e-12)


def test_batch_loss_outside_training_is_nan():
    t, net = _pair()
    assert np.isnan(ff.metrics.REGISTRY["batch_loss"](net, ff.Population(t), t, None, 0))


def test_log_spaced_rows_give_the_weights_of_evenly_logged_runs():
    """log_every as an increasing array of steps: rows at start_step plus each of them and at the end;
    the weights are those of an evenly logged run bit for bit (the compiled calls are cut by work, not by
    rows), the batch losses are the means over the uneven intervals, and a checkpointed run resumes
    with the same rows."""
    t, net0 = _pair("relu", d=7, m=17)
    at = ff.log_spaced(300, rows=12)
    assert at[0] == 1 and at[-1] == 300 and np.all(np.diff(at) > 0) and len(at) <= 12
    for obj in (ff.Population(t), ff.Empirical.sample(t, 65, seed=3, batch_size=7)):
        even, spaced = _copy(net0), _copy(net0)
        ff.train(even, obj, steps=300, lr=0.05, log_every=100, start_step=5)
        h = ff.train(spaced, obj, steps=300, lr=0.05, log_every=at, start_step=5, metrics=("loss", "batch_loss"))
        assert h.step.tolist() == [5] + (5 + at).tolist()
        np.testing.assert_array_equal(spaced.W, even.W)
        # the batch loss of each row: the mean over its own interval, from per-step losses
        c = _copy(net0)
        losses = []
        for s in range(5, 305):
            losses.append(ff.train(c, obj, steps=1, lr=0.05, start_step=s, metrics=("batch_loss",),
                                   log_every=1)["batch_loss"][-1])
        bounds = [0] + at.tolist()
        expect = [losses[0]] + [np.mean(losses[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
        np.testing.assert_allclose(h["batch_loss"], expect, rtol=1e-12)


def test_log_spaced_rows_resume_and_bad_grids(tmp_path):
    t, net0 = _pair("erf", d=5, m=6)
    obj = ff.Population(t)
    at = np.array([3, 10, 40, 90])
    ref = ff.train(_copy(net0), obj, steps=90, lr=0.05, log_every=at)
    path = str(tmp_path / "c.npz")
    net = _copy(net0)
    ff.train(net, obj, steps=90, lr=0.05, log_every=at, checkpoint=path, callback=lambda s, n, v: s < 10)
    assert ff.Checkpoint.load(path).step == 10
    h = ff.train(net, obj, steps=90, lr=0.05, log_every=at, checkpoint=path, resume=True)
    assert h.step.tolist() == ref.step.tolist() == [0, 3, 10, 40, 90]
    np.testing.assert_array_equal(h["loss"], ref["loss"])
    for bad, err in (([3, 3, 9], ValueError), ([0, 5], ValueError), ([5, 91], ValueError), ([1.5, 4], TypeError),
                     ([[1, 2]], TypeError)):
        with pytest.raises(err, match="log_every"):
            ff.train(_copy(net0), obj, steps=90, lr=0.05, log_every=bad)
    with pytest.raises(ValueError, match="checkpoint_every"):
        ff.train(_copy(net0), obj, steps=90, lr=0.05, log_every=at, checkpoint=path, checkpoint_every=10)


def test_online_history_gives_alpha():
    t, net = _pair("erf", d=8, m=5)
    h = ff.train(net, ff.Online(t, batch_size=1, seed=1), steps=80, lr=0.05, log_every=40)
    np.testing.assert_array_equal(h.alpha, [0.0, 5.0, 10.0])
    h2 = ff.History.load(_saved(h))
    np.testing.assert_array_equal(h2.alpha, h.alpha)
    with pytest.raises(ValueError, match="online"):
        ff.train(net, ff.Population(t), steps=2, lr=0.05).alpha


def _saved(h):
    import os
    import tempfile
    path = os.path.join(tempfile.mkdtemp(), "h.json")
    h.save(path)
    return path
