"""``NUMBA_DISABLE_JIT=1`` runs every objective's kernels as plain Python (for coverage and debugging),
with the results of the compiled kernels up to rounding."""
import json
import os
import subprocess
import sys

import numpy as np

SCRIPT = """
import json
import numpy as np
import fastfeat as ff
out = {}
for dt in ("float64", "float32"):
    t = ff.Teacher.random(5, 2, activation="relu", seed=0, dtype=dt)
    ta = ff.Teacher.random(5, 2, activation="abs", seed=0, dtype=dt)
    cases = (("population", "relu", ff.Population(t), 3), ("empirical", "relu", ff.Empirical.sample(t, 33, seed=1), 3),
             ("empirical_abs", "abs", ff.Empirical.sample(ta, 33, seed=1, batch_size=8), 3),
             ("online1", "relu", ff.Online(t, seed=2), 25), ("online3", "relu", ff.Online(t, batch_size=3, seed=2), 5))
    for name, act, obj, steps in cases:
        net = ff.TwoLayer.init(5, 6, activation=act, seed=1, dtype=dt)
        ff.train(net, obj, steps=steps, lr=0.05, reg=ff.PathNorm(1e-2), log_every=steps, metrics=())
        out[f"{name}_{dt}"] = np.concatenate([net.W.ravel(), net.a]).astype(float).tolist()
print(json.dumps(out))
"""


def _run(disable):
    env = dict(os.environ, NUMBA_DISABLE_JIT="1" if disable else "0")
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Warning" not in r.stderr, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_disable_jit_matches_compiled():
    compiled, python = _run(False), _run(True)
    assert compiled.keys() == python.keys()
    for k in compiled:
        x, y = np.array(compiled[k]), np.array(python[k])
        tol = 1e-12 if k.endswith("float64") else 5e-6
        assert np.abs(x - y).max() <= tol * np.abs(x).max(), k
