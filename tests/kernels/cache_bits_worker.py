"""Run by ``test_cache.py::test_compiled_here_and_loaded_from_the_cache_give_the_same_bits`` in a process
of its own, twice with one cache folder: the first process compiles every kernel it calls (the folder
is empty), the second loads them all. It saves to the .npz file named by argv[1] the population loss and
gradient of relu and erf students and the weights after a few ``ff.train`` steps, on ragged sizes
(m = 17, d = 33), in float64 (the kernels whose compiled and cached builds differed in the last bits;
``argv[2] == "all"`` adds float32, the empirical gradient and online SGD with batch 1 and 3)."""
import sys

import numpy as np

import fastfeat as ff


def main(out, everything=False):
    res = {}
    for dt in ("float64", "float32") if everything else ("float64",):
        for act in ("relu", "erf"):
            t = ff.Teacher.random(33, 3, activation=act, seed=0, dtype=dt)
            net = ff.TwoLayer.init(33, 17, activation=act, seed=1, dtype=dt)
            objectives = [("population", ff.Population(t))]
            if everything:
                objectives.append(("empirical", ff.Empirical.sample(t, 65, seed=2)))
            for name, obj in objectives:
                gW, ga = obj.grad(net)
                res[f"{name}-{act}-{dt}-gW"], res[f"{name}-{act}-{dt}-ga"] = gW, ga
                res[f"{name}-{act}-{dt}-loss"] = np.array(obj.loss(net))
            for batch in (1, 3) if everything else ():
                n = net.copy()
                ff.train(n, ff.Online(t, batch_size=batch, seed=3), steps=65, lr=0.01, log_every=65,
                         reg=ff.WeightDecay(1e-3))
                res[f"online{batch}-{act}-{dt}-W"], res[f"online{batch}-{act}-{dt}-a"] = n.W, n.a
        n = ff.TwoLayer.init(33, 17, activation="relu", seed=1, dtype=dt)
        ff.train(n, ff.Population(ff.Teacher.random(33, 3, seed=0, dtype=dt)), steps=5, lr=0.05, log_every=5,
                 reg=ff.PathNorm(1e-3))
        res[f"train-{dt}-W"], res[f"train-{dt}-a"] = n.W, n.a
    np.savez(out, **res)


if __name__ == "__main__":
    main(sys.argv[1], everything=sys.argv[2:] == ["all"])
