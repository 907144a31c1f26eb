"""Processes forked after ``import fastfeat`` (and after it trained) run parallel code, fastfeat's and the
user's: the threading layer is one that survives ``fork`` (numba's tbb layer, from the ``tbb``
dependency). And the first parallel work of a fresh process may be a cached kernel reaching a parallel
region from compiled code (numba issue 8578: a segmentation fault unless the layer was started first)."""
import os
import subprocess
import sys
import textwrap

import numba
import pytest

import fastfeat  # noqa: F401  (starts the threading layer, as a user's import does)

LINUX_X86 = sys.platform.startswith("linux") and os.uname().machine == "x86_64"
pytestmark = pytest.mark.skipif(not LINUX_X86, reason="fork start method and the tbb wheel: Linux x86-64")


def _python(code, env=None, timeout=240):
    full = dict(os.environ, **(env or {}))
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=full,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def test_the_threading_layer_survives_fork():
    """The tbb layer is the one in use where its wheel installs (a dependency on this platform)."""
    assert numba.threading_layer() == "tbb"


FORK = """
    import multiprocessing as mp
    import numpy as np, numba
    import fastfeat as ff

    def train(seed):
        t = ff.Teacher.random(20, 3, activation="relu", seed=seed)
        net = ff.TwoLayer.init(20, 512, activation="relu", seed=seed, scale=0.3)
        ff.train(net, ff.Population(t), steps=5, lr=0.01, n_threads=2)   # m = 512: parallel regions
        return net.W.tobytes()

    @numba.njit(parallel=True)
    def user(x):
        s = 0.0
        for i in numba.prange(x.size):
            s += x[i]
        return s

    def users(n):
        return user(np.ones(n))

    def pool_round():
        with mp.get_context("fork").Pool(2) as pool:
            got = pool.map_async(train, [0, 1]).get(timeout=120)
            sums = pool.map_async(users, [1000, 3000]).get(timeout=120)
        assert sums == [1000.0, 3000.0], sums
        return got

    first = pool_round()                               # forked right after the import
    mine = [train(0), train(1)]                        # the parent trains (its threads run)...
    assert first == mine, "forked children trained other weights"
    assert pool_round() == mine                        # ...and forks again
    print("ok", numba.threading_layer())
"""


def test_fork_after_import_and_after_training_runs_parallel_work():
    """A multiprocessing.Pool with the fork start method runs ff.train and a user's @njit(parallel=True)
    function, right after `import fastfeat` and again after the parent trained; the children's weights
    are the parent's bit for bit."""
    rc, out, err = _python(FORK)
    assert rc == 0 and out.split() == ["ok", "tbb"], err[-2000:]


CACHED_FIRST = """
    import sys
    import numpy as np
    sys.path.insert(0, {folder!r})
    import user_kernels                                 # cache=True: compiled once, then loaded
    print(user_kernels.first_parallel_work())
"""

USER_MODULE = """
import numpy as np
from numba import njit
import fastfeat as ff
from fastfeat.kernels import population_loss_grad, population_workspace

@njit(cache=True)
def loss(W, a, Wt, at, code, gW, ga, ws):
    return population_loss_grad(W, a, Wt, at, code, gW, ga, ws, True)   # parallel inside

def first_parallel_work():
    t = ff.Teacher.random(20, 3, activation="relu", seed=0)
    net = ff.TwoLayer.init(20, 600, activation="relu", seed=1)
    ws = population_workspace(net.m, t.m, net.d, net.dtype)
    gW, ga = np.empty_like(net.W), np.empty_like(net.a)
    value = loss(net.W, net.a, t.W, t.a, net.code, gW, ga, ws)
    return abs(value - ff.Population(t).loss(net)) <= 1e-12 * value
"""


def test_a_cached_user_kernel_reaching_a_parallel_region_first(tmp_path):
    """Numba issue 8578's pattern: a user's cached @njit function that calls a parallel fastfeat kernel is
    the first parallel work of a fresh process, compiled (first run) and loaded from the disk cache
    (second run): both finish with the right loss."""
    (tmp_path / "user_kernels.py").write_text(USER_MODULE)  # its cache: __pycache__ beside it
    for run in ("compiled", "loaded from the cache"):
        rc, out, err = _python(CACHED_FIRST.format(folder=str(tmp_path)))
        assert rc == 0 and out.strip() == "True", f"{run}: rc {rc}\n{err[-2000:]}"
