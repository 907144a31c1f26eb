"""Training conveniences: checkpoint + resume (bit for bit), the divergence guard, the callback."""
import numpy as np
import pytest

import fastfeat as ff

D, M = 5, 12


class Crash(RuntimeError):
    pass


def _objectives(teacher):
    return {
        "population": lambda: ff.Population(teacher),
        "empirical-minibatch": lambda: ff.Empirical.sample(teacher, 70, batch_size=16, seed=3),
        "online": lambda: ff.Online(teacher, batch_size=4, seed=5),
    }


@pytest.mark.parametrize("kind", ["population", "empirical-minibatch", "online"])
def test_resume_equals_uninterrupted_bit_for_bit(tmp_path, kind):
    teacher = ff.Teacher.random(D, 2, activation="relu_centered", seed=0)
    make = _objectives(teacher)[kind]
    kw = dict(steps=60, lr=ff.schedules.geometric(0.3, 0.7, 17), log_every=10, start_step=5,
              reg=ff.WeightDecay(ff.schedules.geometric(1e-2, 0.5, 20)), metrics=("loss", "alignment"))
    ref = ff.TwoLayer.init(D, M, activation="relu_centered", seed=1)
    ref_hist = ff.train(ref, make(), **kw)

    path = tmp_path / "ckpt.npz"
    net = ff.TwoLayer.init(D, M, activation="relu_centered", seed=1)

    def crash_at_55(step, net, values):
        if step == 55:
            raise Crash

    with pytest.raises(Crash):
        ff.train(net, make(), checkpoint=path, checkpoint_every=20, callback=crash_at_55, **kw)
    saved = ff.Checkpoint.load(path)
    assert saved.step == 45 and saved.history.step[-1] == 45
    # a different net: resume must overwrite it with the saved weights
    fresh = ff.TwoLayer.init(D, M, activation="relu_centered", seed=99)
    hist = ff.train(fresh, make(), checkpoint=path, checkpoint_every=20, resume=True, **kw)
    assert np.array_equal(fresh.W, ref.W) and np.array_equal(fresh.a, ref.a)
    np.testing.assert_array_equal(hist.step, ref_hist.step)
    for k, v in ref_hist.metrics.items():
        np.testing.assert_array_equal(hist[k], v, err_msg=k)
    assert ff.Checkpoint.load(path).step == 65  # the final state is saved too
    # resuming a finished run changes nothing
    again = ff.train(fresh, make(), checkpoint=path, resume=True, **kw)
    assert np.array_equal(fresh.W, ref.W) and len(again) == len(ref_hist)


def test_resume_checks_the_net_and_the_step(tmp_path):
    teacher = ff.Teacher.random(D, 2, activation="relu_centered", seed=0)
    path = tmp_path / "c.npz"
    net = ff.TwoLayer.init(D, M, activation="relu_centered", seed=1)
    ff.train(net, ff.Population(teacher), steps=4, lr=0.1, log_every=2, checkpoint=path)
    with pytest.raises(ValueError, match="shape"):
        ff.train(ff.TwoLayer.init(D, M + 2, activation="relu_centered"), ff.Population(teacher), steps=4, lr=0.1,
                 checkpoint=path, resume=True)
    with pytest.raises(ValueError, match="outside"):
        ff.train(net, ff.Population(teacher), steps=2, lr=0.1, checkpoint=path, resume=True)
    with pytest.raises(ValueError, match="checkpoint=path"):
        ff.train(net, ff.Population(teacher), steps=2, lr=0.1, resume=True)


def test_too_large_lr_diverges_naming_the_step_and_keeps_finite_weights():
    teacher = ff.Teacher.random(D, 2, activation="relu_centered", seed=0)
    net = ff.TwoLayer.init(D, M, activation="relu_centered", seed=1)
    start = net.copy()
    seen = []

    with pytest.raises(ff.TrainingDiverged, match=r"diverged at step \d+") as info:
        ff.train(net, ff.Population(teacher), steps=400, lr=1e3, log_every=1,
                 callback=lambda step, n, values: seen.append(step))
    err = info.value
    assert 0 < err.step < 400 and err.history.step[-1] == err.step
    assert len(set(err.history.step)) == len(err.history.step)  # no step logged twice
    assert seen == list(range(err.step))  # the callback never sees the diverged row
    assert np.all(np.isfinite(net.W)) and np.all(np.isfinite(net.a))
    # the kept weights are those after step err.step - 1
    again = start.copy()
    ff.train(again, ff.Population(teacher), steps=err.step, lr=1e3, log_every=1, metrics=())
    assert np.array_equal(net.W, again.W) and np.array_equal(net.a, again.a)


def test_callback_false_stops_training():
    teacher = ff.Teacher.random(D, 2, activation="relu_centered", seed=0)
    net = ff.TwoLayer.init(D, M, activation="relu_centered", seed=1)
    hist = ff.train(net, ff.Population(teacher), steps=100, lr=0.1, log_every=10,
                    callback=lambda step, net, values: step < 30)
    assert list(hist.step) == [0, 10, 20, 30]


def test_finiteness_checks_survive_fast_math():
    """Regression: under the kernels' fast-math flags LLVM folded ``np.isfinite(0.5 * (r * r))`` to True
    for r = 1e200, which disarmed the divergence guards; ``_finite`` compares bits instead."""
    from fastfeat.kernels.cpu._finite import finite, isnan
    from fastfeat.kernels.cpu._jit import njit

    @njit
    def check(r):
        loss = 0.5 * (r * r)
        return finite(loss), finite(r), isnan(r)

    assert check(1e200) == (False, True, False)
    assert check(3.0) == (True, True, False)
    assert check(np.float32(1e30)) == (False, True, False)
    assert check(np.float32(np.inf)) == (False, False, False)
    assert check(np.nan) == (False, False, True)
