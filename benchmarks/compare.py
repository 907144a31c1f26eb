"""fastfeat against the same steps written in numpy, PyTorch and JAX, timed in one run.

    python benchmarks/compare.py                 # full run (a few minutes)
    python benchmarks/compare.py --quick         # fewer repeats (about a minute after compilation)
    python benchmarks/compare.py --update-readme # also rewrite the tables in README.md and docs/performance.md

Workloads (float32, relu; sizes of issues 2 and 3):

- population GD step, m=4096, m*=16, d=128, weight decay;
- full-batch empirical GD step, n=8192, d=256, m=2048, weight decay;
- online SGD, batch 1, d=128, m=1024 (a fresh Gaussian sample and its teacher label every step);
- the paper's regime: population GD step, m=256, m*=3, d=20, float64, weight decay (where the step is
  the m^2 pair terms and small products, not large GEMMs).

Each peer is used only when installed: numpy (hand-written gradient), PyTorch eager with autograd, JAX
with ``jax.jit`` (and ``jax.lax.scan`` over the steps for online SGD). Before timing, every peer does one
step from the same weights as fastfeat and the relative difference of the updates is reported, so the
comparison is between implementations of the same step. All contenders are timed round-robin (one
round of each per repeat, best of the repeats), together with the GEMMs the step contains: the ratio to
those is the fraction of the machine's GEMM roof.

fastfeat is imported first (it sets OMP_WAIT_POLICY=PASSIVE before any OpenMP runtime starts); its step
is timed again before the peers are imported, to show whether they slow it down.
"""
import argparse
import math
import os
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks import _common as C  # noqa: E402
else:
    from . import _common as C

import numpy as np  # noqa: E402

PI = math.pi
REPEAT, QUICK_REPEAT = 7, 2  # round-robin repeats (best of)
TWO_PI = 2.0 * math.pi

# ----------------------------------------------------------------------------------------------------
# numpy: the gradient written out by hand
# ----------------------------------------------------------------------------------------------------


def _np_kappa(rho):
    ac = np.arccos(rho)
    return (np.sqrt(1 - rho * rho) + (PI - ac) * rho) / TWO_PI, (PI - ac) / TWO_PI


def np_population_grad(W, a, Wt, at):
    """Gradient of 1/2 a^T K(W,W) a - a^T K(W,W*) a* for relu (docs/conventions.md), dtype of W."""
    n = np.sqrt(np.einsum("ij,ij->i", W, W))
    nt = np.sqrt(np.einsum("ij,ij->i", Wt, Wt))
    inv = 1 / n
    G = W @ W.T                                              # GEMM 1: m x m x d
    R = np.clip(G * inv[:, None] * inv[None, :], -1, 1)
    kap, dk = _np_kappa(R)
    an = a * n
    ga = n * (kap @ an)                                      # K a
    A = inv * ((kap - R * dk) @ an)                          # sum_k a_k alpha_jk
    B = dk * a[:, None] * a[None, :]
    gW = B @ W                                               # GEMM 2: m x m x d
    Rs = np.clip((W @ Wt.T) * inv[:, None] / nt[None, :], -1, 1)
    kap_s, dk_s = _np_kappa(Rs)
    ant = at * nt
    ga -= n * (kap_s @ ant)
    A -= inv * ((kap_s - Rs * dk_s) @ ant)
    gW -= (dk_s * a[:, None] * at[None, :]) @ Wt
    gW += (a * A)[:, None] * W
    return gW, ga


class NumpyPopulation:
    label = "numpy (hand-written gradient)"

    def __init__(self, W, a, Wt, at, lam):
        self.W, self.a, self.Wt, self.at, self.lam = W.copy(), a.copy(), Wt, at, lam

    def step(self, lr):
        gW, ga = np_population_grad(self.W, self.a, self.Wt, self.at)
        self.W -= lr * (gW + self.lam * self.W)
        self.a -= lr * (ga + self.lam * self.a)

    def weights(self):
        return self.W, self.a


class NumpyEmpirical:
    label = "numpy (hand-written gradient)"

    def __init__(self, W, a, X, y, lam):
        self.W, self.a, self.X, self.y, self.lam = W.copy(), a.copy(), X, y, lam

    def step(self, lr):
        W, a, X = self.W, self.a, self.X
        Z = X @ W.T                                          # GEMM 1: n x d x m
        H = np.maximum(Z, 0)
        r = (H @ a - self.y) / X.shape[0]
        ga = H.T @ r
        D = (Z > 0) * (r[:, None] * a[None, :])
        gW = D.T @ X                                         # GEMM 2: m x n x d
        self.W -= lr * (gW + self.lam * W)
        self.a -= lr * (ga + self.lam * a)

    def weights(self):
        return self.W, self.a


def np_online_step(W, a, Wt, at, X, lr):
    """One SGD step on the batch X (rows = samples), labels from the teacher; in place."""
    y = np.maximum(X @ Wt.T, 0) @ at
    Z = X @ W.T
    H = np.maximum(Z, 0)
    r = (H @ a - y) / X.shape[0]
    ga = H.T @ r
    gW = ((Z > 0) * (r[:, None] * a[None, :])).T @ X
    W -= lr * gW
    a -= lr * ga


class NumpyOnline:
    label = "numpy (Python loop)"

    def __init__(self, W, a, Wt, at, batch, seed=0):
        self.W, self.a, self.Wt, self.at, self.batch = W.copy(), a.copy(), Wt, at, batch
        self.rng = np.random.default_rng(seed)

    def steps(self, k, lr):
        W, a, Wt, at = self.W, self.a, self.Wt, self.at
        d = W.shape[1]
        for _ in range(k):
            X = self.rng.standard_normal((self.batch, d), dtype=W.dtype)
            np_online_step(W, a, Wt, at, X, lr)

    def step_on(self, X, lr):
        np_online_step(self.W, self.a, self.Wt, self.at, X, lr)

    def weights(self):
        return self.W, self.a


# ----------------------------------------------------------------------------------------------------
# PyTorch eager, autograd
# ----------------------------------------------------------------------------------------------------


def torch_peers():
    import torch

    torch.set_num_threads(os.cpu_count() or 1)

    class Kappa(torch.autograd.Function):
        """relu kernel kappa(rho) with its exact derivative (autograd through arccos and sqrt would give
        inf - inf = NaN at rho = 1, the diagonal)."""

        @staticmethod
        def forward(ctx, rho):
            ac = torch.arccos(rho)
            ctx.save_for_backward(ac)
            return (torch.sqrt(1 - rho * rho) + (PI - ac) * rho) / TWO_PI

        @staticmethod
        def backward(ctx, g):
            (ac,) = ctx.saved_tensors
            return g * (PI - ac) / TWO_PI

    def leaf(x):
        return torch.tensor(np.array(x)).requires_grad_(True)

    class Base:
        def _update(self, lr):
            with torch.no_grad():
                self.W -= lr * self.W.grad
                self.a -= lr * self.a.grad
            self.W.grad = None
            self.a.grad = None

        def weights(self):
            return self.W.detach().numpy(), self.a.detach().numpy()

    class Population(Base):
        label = "PyTorch eager (autograd)"

        def __init__(self, W, a, Wt, at, lam):
            self.W, self.a = leaf(W), leaf(a)
            self.Wt, self.at, self.lam = torch.tensor(Wt), torch.tensor(at), lam
            self.nt = self.Wt.norm(dim=1)

        def step(self, lr):
            W, a, Wt, at = self.W, self.a, self.Wt, self.at
            n = W.norm(dim=1)
            rho = ((W @ W.T) / (n[:, None] * n[None, :])).clamp(-1, 1)
            K = n[:, None] * n[None, :] * Kappa.apply(rho)
            rs = ((W @ Wt.T) / (n[:, None] * self.nt[None, :])).clamp(-1, 1)
            Ks = n[:, None] * self.nt[None, :] * Kappa.apply(rs)
            loss = 0.5 * (a @ (K @ a)) - a @ (Ks @ at) + 0.5 * self.lam * ((a * a).sum() + (W * W).sum())
            loss.backward()
            self._update(lr)

    class Empirical(Base):
        label = "PyTorch eager (autograd)"

        def __init__(self, W, a, X, y, lam):
            self.W, self.a = leaf(W), leaf(a)
            self.X, self.y, self.lam = torch.tensor(X), torch.tensor(y), lam

        def step(self, lr):
            W, a = self.W, self.a
            f = torch.relu(self.X @ W.T) @ a
            loss = 0.5 * ((f - self.y) ** 2).mean() + 0.5 * self.lam * ((a * a).sum() + (W * W).sum())
            loss.backward()
            self._update(lr)

    class Online(Base):
        label = "PyTorch eager (autograd, Python loop)"

        def __init__(self, W, a, Wt, at, batch, seed=0):
            self.W, self.a = leaf(W), leaf(a)
            self.Wt, self.at, self.batch = torch.tensor(Wt), torch.tensor(at), batch
            self.gen = torch.Generator().manual_seed(seed)

        def step_on(self, X, lr):
            X = torch.as_tensor(X)
            with torch.no_grad():
                y = torch.relu(X @ self.Wt.T) @ self.at
            f = torch.relu(X @ self.W.T) @ self.a
            loss = 0.5 * ((f - y) ** 2).mean()
            loss.backward()
            self._update(lr)

        def steps(self, k, lr):
            d = self.W.shape[1]
            for _ in range(k):
                self.step_on(torch.randn(self.batch, d, generator=self.gen, dtype=self.W.dtype), lr)

    return {"population": Population, "empirical": Empirical, "online": Online}, torch.__version__


# ----------------------------------------------------------------------------------------------------
# JAX: jax.jit of jax.grad; jax.lax.scan over the online steps
# ----------------------------------------------------------------------------------------------------


def jax_peers():
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)  # float64 arrays stay float64 (the paper workload)

    @jax.custom_jvp
    def kappa(rho):
        ac = jnp.arccos(rho)
        return (jnp.sqrt(1 - rho * rho) + (PI - ac) * rho) / TWO_PI

    @kappa.defjvp
    def _kappa_jvp(primals, tangents):
        (rho,), (t,) = primals, tangents
        ac = jnp.arccos(rho)
        return (jnp.sqrt(1 - rho * rho) + (PI - ac) * rho) / TWO_PI, (PI - ac) / TWO_PI * t

    def pop_loss(params, Wt, at, lam):
        W, a = params
        n = jnp.linalg.norm(W, axis=1)
        nt = jnp.linalg.norm(Wt, axis=1)
        rho = jnp.clip((W @ W.T) / (n[:, None] * n[None, :]), -1, 1)
        K = n[:, None] * n[None, :] * kappa(rho)
        rs = jnp.clip((W @ Wt.T) / (n[:, None] * nt[None, :]), -1, 1)
        Ks = n[:, None] * nt[None, :] * kappa(rs)
        return 0.5 * (a @ (K @ a)) - a @ (Ks @ at) + 0.5 * lam * ((a * a).sum() + (W * W).sum())

    def pop_loss_erf(params, Wt, at, lam):
        """erf(z / sqrt 2) (docs/conventions.md): K(u, v) = (2/pi) arcsin(u.v / sqrt((1 + |u|^2)(1 + |v|^2)))."""
        W, a = params
        s = jnp.sqrt(1 + (W * W).sum(axis=1))
        st = jnp.sqrt(1 + (Wt * Wt).sum(axis=1))
        K = (2 / PI) * jnp.arcsin((W @ W.T) / (s[:, None] * s[None, :]))
        Ks = (2 / PI) * jnp.arcsin((W @ Wt.T) / (s[:, None] * st[None, :]))
        return 0.5 * (a @ (K @ a)) - a @ (Ks @ at) + 0.5 * lam * ((a * a).sum() + (W * W).sum())

    def emp_loss(params, X, y, lam):
        W, a = params
        f = jax.nn.relu(X @ W.T) @ a
        return 0.5 * jnp.mean((f - y) ** 2) + 0.5 * lam * ((a * a).sum() + (W * W).sum())

    def online_loss(params, X, Wt, at):
        W, a = params
        y = jax.nn.relu(X @ Wt.T) @ at
        f = jax.nn.relu(X @ W.T) @ a
        return 0.5 * jnp.mean((f - y) ** 2)

    def sgd(loss):
        def step(params, lr, *data):
            g = jax.grad(loss)(params, *data)
            return jax.tree_util.tree_map(lambda p, q: p - lr * q, params, g)
        return step

    pop_step = jax.jit(sgd(pop_loss))
    pop_step_erf = jax.jit(sgd(pop_loss_erf))
    emp_step = jax.jit(sgd(emp_loss))
    online_step = jax.jit(sgd(online_loss))
    online_one = sgd(online_loss)

    class Base:
        def weights(self):
            return np.asarray(self.params[0]), np.asarray(self.params[1])

        def _sync(self):
            jax.block_until_ready(self.params)

    class Population(Base):
        label = "JAX jax.jit"
        fn = staticmethod(pop_step)

        def __init__(self, W, a, Wt, at, lam):
            self.params = (jnp.asarray(W), jnp.asarray(a))
            self.data = (jnp.asarray(Wt), jnp.asarray(at), jnp.asarray(lam, W.dtype))

        def step(self, lr):
            self.params = self.fn(self.params, jnp.asarray(lr, self.params[0].dtype), *self.data)
            self._sync()

    class PopulationErf(Population):
        fn = staticmethod(pop_step_erf)

    class Empirical(Base):
        label = "JAX jax.jit"

        def __init__(self, W, a, X, y, lam):
            self.params = (jnp.asarray(W), jnp.asarray(a))
            self.data = (jnp.asarray(X), jnp.asarray(y), jnp.asarray(lam, W.dtype))

        def step(self, lr):
            self.params = emp_step(self.params, jnp.asarray(lr, self.params[0].dtype), *self.data)
            self._sync()

    class Online(Base):
        label = "JAX jax.lax.scan (jit)"

        def __init__(self, W, a, Wt, at, batch, seed=0):
            self.params = (jnp.asarray(W), jnp.asarray(a))
            self.Wt, self.at, self.batch = jnp.asarray(Wt), jnp.asarray(at), batch
            self.key = jax.random.PRNGKey(seed)
            self.t = 0
            self._runs = {}

        def _run(self, k):
            if k not in self._runs:
                batch, d = self.batch, self.params[0].shape[1]

                def run(params, lr, key, t0, Wt, at):
                    def body(p, i):
                        X = jax.random.normal(jax.random.fold_in(key, t0 + i), (batch, d), p[0].dtype)
                        return online_one(p, lr, X, Wt, at), None
                    return jax.lax.scan(body, params, jnp.arange(k))[0]

                self._runs[k] = jax.jit(run)
            return self._runs[k]

        def steps(self, k, lr):
            dt = self.params[0].dtype
            self.params = self._run(k)(self.params, jnp.asarray(lr, dt), self.key, self.t, self.Wt, self.at)
            self.t += k
            self._sync()

        def step_on(self, X, lr):
            dt = self.params[0].dtype
            self.params = online_step(self.params, jnp.asarray(lr, dt), jnp.asarray(X), self.Wt, self.at)
            self._sync()

    return ({"population": Population, "population_erf": PopulationErf, "empirical": Empirical, "online": Online},
            jax.__version__)


PEERS = {"torch": torch_peers, "jax": jax_peers}

# ----------------------------------------------------------------------------------------------------
# the comparison
# ----------------------------------------------------------------------------------------------------


def rel_update_diff(W0, a0, Wf, af, Wp, ap):
    """|(peer update) - (fastfeat update)| / |fastfeat update| over (W, a) together, in float64."""
    f = np.concatenate([(np.float64(Wf) - W0).ravel(), (np.float64(af) - a0)])
    p = np.concatenate([(np.float64(Wp) - W0).ravel(), (np.float64(ap) - a0)])
    return float(np.linalg.norm(p - f) / np.linalg.norm(f))


fmt_time = C.fmt_time


class Result:
    def __init__(self, workload, title, gemm_label):
        self.workload, self.title, self.gemm_label = workload, title, gemm_label
        self.times = {}   # label -> seconds per step
        self.diffs = {}   # label -> relative difference of one step's update vs fastfeat
        self.ff_alone = None  # fastfeat's time before the peers were imported


def compare_population(peers, quick, log, workload="population", dtype="float32"):
    p = C.POPULATION if workload == "population" else dict(C.PAPER, **PAPER_VARIANTS.get(workload, {}))
    m, ms, d = p["m"], p["m_star"], p["d"]
    act = p.get("activation", "relu")
    w = C.population(m, ms, d, dtype=dtype, activation=act)
    res = Result(workload, f"population GD step, m={m}, m*={ms}, d={d}, {dtype} {act}, weight decay",
                 "2 GEMMs m×m×d (W Wᵀ, G W), numpy BLAS")
    Wt, at = w.objective.teacher.W, w.objective.teacher.a
    # a step of a few hundred microseconds is timed over 50 (fastfeat: one call of 50 steps, as ff.train
    # runs them; the peers: a loop of 50 jitted steps), so that no contender's time is the wake-up of the
    # cores after the one timed before it
    return _compare_full_batch(w, res, peers, quick, log,
                               lambda cls: cls(w.W0, w.a0, Wt, at, C.LAM), NumpyPopulation if act == "relu" else None,
                               check_lr=1.0, steps=1 if workload == "population" else (50 if m <= 256 else 10),
                               kind="population" if act == "relu" else f"population_{act}")


def compare_empirical(peers, quick, log):
    p = C.EMPIRICAL
    n, d, m, ms = p["n"], p["d"], p["m"], p["m_star"]
    w = C.empirical(n, d, m, ms, dtype="float32")
    res = Result("empirical", f"full-batch empirical GD step, n={n}, d={d}, m={m}, float32 relu, weight decay",
                 "2 GEMMs n×m×d (X Wᵀ, Dᵀ X), numpy BLAS")
    X, y = w.objective.X, w.objective.y
    return _compare_full_batch(w, res, peers, quick, log,
                               lambda cls: cls(w.W0, w.a0, X, y, C.LAM), NumpyEmpirical, check_lr=10.0)


#: diagnostic row: fastfeat with the BLAS it calls between its parallel passes limited to one thread
FF_BLAS1 = "fastfeat, BLAS limited to 1 thread (diagnostic)"


def _blas1(fn):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        fn()


def _one_step_ff(w, lr):
    w.reset()
    lr0, w.lr = w.lr, lr
    try:
        w.run(1)
    finally:
        w.lr = lr0
    out = w.net.W.copy(), w.net.a.copy()
    w.reset()
    return out


def _loop(step, k):
    def run():
        for _ in range(k):
            step()
    return run


def _compare_full_batch(w, res, peers, quick, log, make, numpy_cls, check_lr, steps=1, kind=None):
    """Round-robin of fastfeat, the peers and the GEMMs; each timing covers ``steps`` steps (times are
    reported per step). ``kind``: the peers' class (default the workload's); ``numpy_cls`` None: no numpy
    row (a peer that has no class of that kind is left out too)."""
    W0, a0 = np.float64(w.W0), np.float64(w.a0)
    Wf, af = _one_step_ff(w, check_lr)
    impls = {"fastfeat": None}
    if numpy_cls is not None:
        impls[numpy_cls.label] = numpy_cls
    kind = kind or res.workload
    for name, classes in peers.items():
        if kind in classes:
            impls[classes[kind].label] = classes[kind]
    contenders = {}
    w.run(1)  # compiled already; warm
    contenders["fastfeat"] = (lambda: w.run(steps), 1, w.reset)
    contenders[FF_BLAS1] = (lambda: _blas1(lambda: w.run(steps)), 1, w.reset)
    for label, cls in impls.items():
        if cls is None:
            continue
        chk = make(cls)
        chk.step(check_lr)
        res.diffs[label] = rel_update_diff(W0, a0, Wf, af, *chk.weights())
        obj = make(cls)
        obj.step(w.lr)  # warm-up (and jit compilation)
        contenders[label] = (_loop(lambda o=obj: o.step(w.lr), steps), 1, None)
        log(f"  {label}: one-step update differs from fastfeat's by {res.diffs[label]:.1e} (relative)")
    w.gemm()
    contenders[res.gemm_label] = (_loop(w.gemm, steps), 1, None)
    res.times = {k: t / steps for k, t in C.interleaved_best(contenders, repeat=QUICK_REPEAT if quick else REPEAT).items()}
    w.reset()
    return res


def compare_online(peers, quick, log):
    p = C.ONLINE
    d, m, ms, batch = p["d"], p["m"], p["m_star"], p["batch"]
    w = C.online(d, m, ms, batch, dtype="float32")
    res = Result("online", f"online SGD, batch {batch}, d={d}, m={m}, m*={ms}, float32 relu (per step)",
                 "BLAS calls per step (gemv W x + ger update, 1 thread), numpy/scipy")
    Wt, at = w.objective.teacher.W, w.objective.teacher.a
    # honesty check: every peer's step on a given batch equals the numpy step on it
    rng = np.random.default_rng(5)
    X = rng.standard_normal((batch, d)).astype(np.float32)
    check_lr = 1.0
    ref64 = NumpyOnline(np.float64(w.W0), np.float64(w.a0), np.float64(Wt), np.float64(at), batch)
    ref64.step_on(np.float64(X), check_lr)
    W0, a0 = np.float64(w.W0), np.float64(w.a0)
    impls = {NumpyOnline.label: NumpyOnline}
    for name, classes in peers.items():
        impls[classes["online"].label] = classes["online"]
    k_ff = 2000 if quick else 5000
    k_of = {NumpyOnline.label: 200}
    contenders = {}
    w.run(k_ff)
    contenders["fastfeat"] = (lambda: w.run(k_ff), 1, w.reset)
    Xf, Wf, af = _fastfeat_online_sample(w, check_lr)
    r = NumpyOnline(W0, a0, np.float64(Wt), np.float64(at), batch)
    r.step_on(Xf, check_lr)
    res.diffs["fastfeat"] = rel_update_diff(W0, a0, r.W, r.a, Wf, af)
    log(f"  fastfeat: its online step 0 differs from the float64 numpy step on the same (recomputed) "
        f"sample by {res.diffs['fastfeat']:.1e}")
    for label, cls in impls.items():
        chk = cls(w.W0, w.a0, Wt, at, batch)
        chk.step_on(X, check_lr)
        res.diffs[label] = rel_update_diff(W0, a0, ref64.W, ref64.a, *chk.weights())
        obj = cls(w.W0, w.a0, Wt, at, batch)
        k = k_of.get(label, 200 if "PyTorch" in label else k_ff)
        obj.steps(k, w.lr)  # warm-up (and jit compilation of the scan)
        contenders[label] = (lambda o=obj, k=k: o.steps(k, w.lr), 1, None)
        k_of[label] = k
        log(f"  {label}: one step on a given sample differs from the float64 numpy step by {res.diffs[label]:.1e}")
    k_gemm = 200
    w.gemm(k_gemm)
    contenders[res.gemm_label] = (lambda: w.gemm(k_gemm), 1, None)
    k_of[res.gemm_label] = k_gemm
    k_of["fastfeat"] = k_ff
    best = C.interleaved_best(contenders, repeat=QUICK_REPEAT if quick else REPEAT)
    res.times = {label: t / k_of[label] for label, t in best.items()}
    res.diffs_reference = "float64 numpy step on the same sample"
    w.reset()
    return res


def online_batch(seed, step, batch, d):
    """The batch fastfeat's online step ``step`` draws (layout documented in
    ``fastfeat.kernels.cpu.online``: ``x_k[i] = normal_keyed(stream_key(seed, step), k (d + 1) + i)``),
    recomputed here from the same counter-based generator (float64)."""
    import numba
    from fastfeat.math.random import build

    r = build(numba.njit)
    key = np.uint64(r.stream_key(np.uint64(seed), np.uint64(step)))  # keep numba's uint64 arithmetic
    return np.array([[r.normal_keyed(key, np.uint64(k * (d + 1) + i)) for i in range(d)] for k in range(batch)])


def _fastfeat_online_sample(w, lr):
    """(X, W1, a1): the batch fastfeat's online step 0 draws and the weights after that step."""
    X = online_batch(w.objective.seed, 0, w.objective.batch_size, w.net.d)
    W1, a1 = _one_step_ff(w, lr)
    return X, W1, a1


TARGETS = {
    # workload: [(peer label prefix, minimum speedup)], maximum ratio to the GEMMs
    "population": ([("JAX", 5.0)], 2.5),
    "empirical": ([("PyTorch", 2.0), ("JAX", 1.8)], 1.25),
    "online": ([("JAX", 10.0)], None),
    "paper": ([("JAX", 5.0)], None),
    "paper_erf": ([("JAX", 5.0)], None),
    "paper_m1024": ([("JAX", 10.0)], None),
}
#: the paper's regime at other activations and widths (``C.PAPER`` otherwise)
PAPER_VARIANTS = {"paper_erf": {"activation": "erf"}, "paper_m1024": {"m": 1024}}


def table(results):
    lines = ["| workload | implementation | time per step | fastfeat is faster by | time / GEMMs | "
             "one-step update vs fastfeat |",
             "|---|---|---:|---:|---:|---:|"]
    checks = []
    for res in results:
        tf = res.times["fastfeat"]
        tg = res.times[res.gemm_label]
        first = True
        for label, t in res.times.items():
            speed = "—" if label in ("fastfeat", FF_BLAS1, res.gemm_label) else f"{t / tf:.1f}x"
            diff = res.diffs.get(label)
            if label == "fastfeat":
                dtxt = f"{diff:.1e} vs numpy float64" if diff is not None else "—"
            elif diff is None:
                dtxt = "—"
            else:
                dtxt = f"{diff:.1e}" if res.workload != "online" else f"{diff:.1e} vs numpy float64"
            lines.append(f"| {res.title if first else ''} | {label} | {fmt_time(t)} | {speed} | {t / tg:.2f} | {dtxt} |")
            first = False
        peers_min, gemm_max = TARGETS[res.workload]
        for prefix, need in peers_min:
            got = [t / tf for label, t in res.times.items() if label.startswith(prefix)]
            if got:
                ok = "met" if got[0] >= need else "NOT met"
                checks.append(f"- {res.workload}: fastfeat vs {prefix}: {got[0]:.1f}x (target ≥ {need}x, {ok})")
        if gemm_max is not None:
            ok = "met" if tf / tg <= gemm_max else "NOT met"
            checks.append(f"- {res.workload}: fastfeat / its GEMMs: {tf / tg:.2f} (target ≤ {gemm_max}, {ok}); "
                          f"effective {res.gflops:.0f} GFLOP/s, GEMMs {res.gemm_gflops:.0f} GFLOP/s")
    return "\n".join(lines), "\n".join(checks)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats (about a minute)")
    ap.add_argument("--peers", default="numpy,torch,jax", help="comma-separated subset of numpy,torch,jax")
    ap.add_argument("--workloads", default="population,empirical,online,paper,paper_erf,paper_m1024")
    ap.add_argument("--update-readme", action="store_true", help="rewrite the performance tables (README.md, docs/performance.md)")
    ap.add_argument("--tolerance", type=float, default=1e-3,
                    help="largest accepted relative difference of one step's update (float32)")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    workloads = [x for x in args.workloads.split(",") if x]
    wanted = [x for x in args.peers.split(",") if x]
    available = {"population": True, "empirical": C.has_empirical(), "online": C.has_online(), "paper": True,
                 "paper_erf": True, "paper_m1024": True}
    for wl in list(workloads):
        if not available.get(wl, False):
            log(f"skipping {wl}: not in this fastfeat yet")
            workloads.remove(wl)

    # fastfeat alone, before any peer is imported (the interference check)
    alone = {}
    builders = {"population": lambda: C.population(dtype="float32"),
                "empirical": lambda: C.empirical(dtype="float32"),
                "online": lambda: C.online(dtype="float32"),
                "paper": lambda: C.population(**C.PAPER, dtype="float64"),
                "paper_erf": lambda: C.population(**C.PAPER, activation="erf", dtype="float64"),
                "paper_m1024": lambda: C.population(**dict(C.PAPER, m=1024), dtype="float64")}
    for wl in workloads:
        log(f"{wl}: compiling and timing fastfeat alone ...")
        w = builders[wl]()
        k = {"online": 2000, "paper": 50, "paper_erf": 50, "paper_m1024": 10}.get(wl, 1)
        t0 = time.perf_counter()
        w.run(k)
        log(f"  first call {time.perf_counter() - t0:.1f} s (includes compilation)")
        alone[wl] = C.best_time(lambda: w.run(k), repeat=QUICK_REPEAT if args.quick else 5, before=w.reset) / k

    peers = {}
    versions = []
    for name in wanted:
        if name == "numpy":
            continue
        try:
            peers[name], v = PEERS[name]()
            versions.append(name)
        except ImportError as exc:
            log(f"{name} not installed ({exc}); skipped")
    results = []
    for wl in workloads:
        log(f"{wl}: peers {sorted(peers)} ...")
        if wl.startswith("paper"):
            res = compare_population(peers, args.quick, log, workload=wl, dtype="float64")
        else:
            res = {"population": compare_population, "empirical": compare_empirical,
                   "online": compare_online}[wl](peers, args.quick, log)
        res.ff_alone = alone[wl]
        w_flops = {"population": C.population_flops(C.POPULATION["m"], C.POPULATION["m_star"], C.POPULATION["d"]),
                   "empirical": C.empirical_flops(C.EMPIRICAL["n"], C.EMPIRICAL["m"], C.EMPIRICAL["d"]),
                   "online": C.online_flops(C.ONLINE["batch"], C.ONLINE["m"], C.ONLINE["d"]),
                   "paper": C.population_flops(C.PAPER["m"], C.PAPER["m_star"], C.PAPER["d"]),
                   "paper_erf": C.population_flops(C.PAPER["m"], C.PAPER["m_star"], C.PAPER["d"]),
                   "paper_m1024": C.population_flops(1024, C.PAPER["m_star"], C.PAPER["d"])}[wl]
        res.gflops = w_flops / res.times["fastfeat"] / 1e9
        res.gemm_gflops = w_flops / res.times[res.gemm_label] / 1e9
        if "numpy" not in wanted:
            res.times = {k: v for k, v in res.times.items() if not k.startswith("numpy")}
        results.append(res)

    body, checks = table(results)
    interference = "\n".join(
        f"- {r.workload}: fastfeat alone (before importing the peers) {fmt_time(r.ff_alone)}, "
        f"in the round-robin with them {fmt_time(r.times['fastfeat'])} "
        f"({r.times['fastfeat'] / r.ff_alone:.2f}x)" for r in results)
    bad = [f"{r.workload}/{label}: {dv:.1e}" for r in results for label, dv in r.diffs.items()
           if dv > args.tolerance]
    cmd = "python benchmarks/compare.py" + (" --quick" if args.quick else "")
    machine = C.machine_description(versions)
    out = (f"Measured by `{cmd}`, best of "
           f"{QUICK_REPEAT if args.quick else REPEAT} round-robin repeats, all in one process:\n\n{machine}\n\n{body}\n\n"
           f"Targets:\n\n{checks}\n\nInterference check (peers loaded in the same process):\n\n"
           f"{interference}\n\n"
           "`time / GEMMs` is the time divided by that of the GEMMs the step contains, measured in the same "
           "run (1.0 = the machine's GEMM roof; fastfeat's population step does only 3 m²d of the 4 m²d "
           "GEMM flops, using the symmetry of W Wᵀ, and its relu empirical step does one of the two GEMMs: "
           "the gradient's product Dᵀ X becomes a sum of table rows selected by the sign bits of X Wᵀ, "
           "one vector addition per 4 multiply-adds). The last column is the relative difference between "
           "one step's weight update and fastfeat's (online: and the float64 numpy step on the same "
           "sample), so every row computes the same step. The diagnostic row runs fastfeat's step with the "
           "BLAS it calls (numpy's OpenBLAS, through ctypes) limited to one thread, to show what the "
           "alternation of threaded BLAS calls and parallel passes costs on this machine; the targets use "
           "the default row.")
    print(out)
    log(f"total {time.perf_counter() - t_start:.0f} s")
    if args.update_readme:
        C.update_docs("compare", "### fastfeat against numpy, PyTorch and JAX\n\n" + out)
        log("updated " + ", ".join(C.TARGETS["compare"]))
    if bad:
        log("MISMATCH: " + "; ".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
