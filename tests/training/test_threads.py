"""One objective shared by threads: each thread's kernels get their own scratch buffers, so concurrent
runs give exactly the sequential weights; one net trained by two calls at once is refused."""
import threading

import numpy as np
import pytest

import fastfeat as ff
from kinds import KINDS, objective


def _objectives(t):
    return {kind: objective(kind, t, n=200, batch=16 if kind == "empirical-minibatch" else 4, seed=3, online_seed=4)
            for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_shared_objective_two_threads_match_sequential(kind):
    t = ff.Teacher.random(8, 2, activation="relu", seed=0)
    obj = _objectives(t)[kind]
    nets = [ff.TwoLayer.init(8, 32, seed=s, scale=0.5) for s in (11, 12)]
    seq = [ff.TwoLayer(n.W.copy(), n.a.copy()) for n in nets]
    kw = dict(steps=400, lr=0.05, reg=ff.WeightDecay(1e-3), log_every=20, metrics=())
    for n in seq:
        ff.train(n, obj, **kw)
    for _ in range(3):  # the overlap differs from run to run
        par = [ff.TwoLayer(n.W.copy(), n.a.copy()) for n in nets]
        errors = []

        def work(n):
            try:
                ff.train(n, obj, **kw)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in par]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors, errors
        for p, s in zip(par, seq):
            np.testing.assert_array_equal(p.W, s.W)
            np.testing.assert_array_equal(p.a, s.a)


def test_one_net_trained_twice_at_once_is_refused():
    t = ff.Teacher.random(8, 2, activation="relu", seed=0)
    obj = ff.Population(t)
    net = ff.TwoLayer.init(8, 64, seed=1)
    started = threading.Event()
    release = threading.Event()

    def hold(step, n, values):
        started.set()
        release.wait(30)

    th = threading.Thread(target=ff.train, args=(net, obj),
                          kwargs=dict(steps=2, lr=0.01, log_every=1, callback=hold))
    th.start()
    try:
        assert started.wait(30)
        with pytest.raises(ValueError, match="net is already being trained"):
            ff.train(net, obj, steps=1, lr=0.01)
    finally:
        release.set()
        th.join()
    ff.train(net, obj, steps=1, lr=0.01)  # free again once the first call returned
