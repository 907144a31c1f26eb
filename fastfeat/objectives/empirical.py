"""A fixed data set: full-batch gradient descent or minibatch SGD reshuffled every epoch."""
import numbers

import numpy as np

from .._validation import check_array, check_float, check_int, check_noise
from ..kernels.cpu import empirical as _emp
from ..networks import check_teacher
from .base import Objective, digest


def _check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__}")
    if not 0 <= seed < 2**63:
        raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    return int(seed)


#: below this many multiply-adds per step (batch m d), ``ff.train`` uses one thread unless told otherwise (each
#: parallel region wakes the sleeping workers, which costs more than the work shares). Measured on 2 vCPUs
#: (Intel Xeon, a KVM guest), d = 20, full batch: 2 threads against 1 took 12x the time at n = 256, m = 32;
#: 2.7x at n = 1024, m = 64; 1.3x at n = 2048, m = 128; 0.88x at n = 4096, m = 256.
SERIAL_WORK = 1 << 21
#: ``lrs`` for the entry's modes that take no step, and ``idx`` for its modes on the whole data set
_NO_LRS = np.empty((2, 0))
_ALL = np.empty(0, np.int64)


class Empirical(Objective):
    """``L = 1/(2n) sum_k (f(x_k) - y_k)^2`` on the data set ``X`` (n, d), ``y`` (n,).

    ``batch_size=None`` (or ``n``) trains with the full-batch gradient; ``1 <= batch_size < n`` with
    minibatch SGD: the data are reshuffled at every epoch (a permutation that depends only on
    ``seed`` and the epoch number, so a run resumed with ``ff.train(start_step=...)`` reproduces the
    uninterrupted one), global step ``s`` uses batch ``s % nb`` of epoch ``s // nb`` with
    ``nb = ceil(n / batch_size)``; the last batch of an epoch holds the remaining ``n - (nb-1) B``
    samples. ``X`` and ``y`` must have the net's float dtype; they are kept (C-contiguous; copied only
    if they are not) and never written.

    ``loss(net)`` is the loss over the whole data set; ``grad(net, reg)`` the full-batch gradient; the
    losses a minibatch run logs per step in the kernel are minibatch losses, while the ``"loss"``
    metric of ``ff.train`` is always ``loss(net)``. ``tile`` (samples per tile of the fused kernel)
    defaults to about 8 MB / (m * itemsize), at most n (``fastfeat.kernels.cpu.empirical.default_tile``).
    """

    name = "empirical"

    def __init__(self, X, y, *, batch_size=None, seed=0, tile=None):
        X = check_array(X, "X", 2)
        y = check_array(y, "y", 1)
        if y.dtype != X.dtype:
            raise TypeError(f"y has dtype {y.dtype} but X has dtype {X.dtype}; they must match")
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"y has {y.shape[0]} entries but X has {X.shape[0]} rows; they must match")
        n = X.shape[0]
        if batch_size is not None:
            batch_size = check_int(batch_size, "batch_size")
            if batch_size > n:
                raise ValueError(f"batch_size must be <= n = {n} (the number of samples), got {batch_size}")
        if tile is not None:
            tile = check_int(tile, "tile")
        self.X = np.ascontiguousarray(X)
        self.y = np.ascontiguousarray(y)
        self.batch_size = batch_size
        self.seed = _check_seed(seed)
        self.tile = tile
        self.teacher = None
        self.noise = None
        self._ws = {}

    @classmethod
    def sample(cls, teacher, n, *, noise=0.0, seed=0, batch_size=None, tile=None):
        """A data set of ``n`` Gaussian inputs labelled by ``teacher`` plus ``N(0, noise^2)`` noise.

        ``x_k ~ N(0, I_d)`` and the noise come from ``numpy.random.default_rng(seed)`` (float64, then
        cast to the teacher's dtype); ``seed`` also seeds the minibatch shuffling. The teacher is
        kept as ``.teacher`` (so ``ff.train`` can log teacher metrics).
        """
        check_teacher(teacher)
        n = check_int(n, "n")
        noise = check_noise(noise)
        seed = _check_seed(seed)
        rng = np.random.default_rng(seed)
        X = rng.standard_normal((n, teacher.d))
        y = teacher(X) + noise * rng.standard_normal(n)
        obj = cls(X.astype(teacher.dtype), y.astype(teacher.dtype), batch_size=batch_size, seed=seed, tile=tile)
        obj.teacher = teacher
        obj.noise = noise
        return obj

    @property
    def n(self):
        return self.X.shape[0]

    @property
    def d(self):
        return self.X.shape[1]

    def __repr__(self):
        return f"Empirical(n={self.n}, d={self.d}, batch_size={self.batch_size}, seed={self.seed})"

    def _check(self, net):
        super()._check(net)
        if net.d != self.d:
            raise ValueError(f"net has input dimension d={net.d} but X has {self.d} columns")
        if net.dtype != self.X.dtype:
            raise TypeError(f"net has dtype {net.dtype} but X has dtype {self.X.dtype}; they must match "
                            f"(e.g. net.astype('{self.X.dtype.name}'))")

    def _fingerprint(self):
        minibatch = self._batch() < self.n
        return {"objective": self.name, "data": digest(self.X, self.y), "batch_size": self._batch(),
                "seed": self.seed if minibatch else None}

    def _bad_data(self):
        for name in ("X", "y"):
            if not np.all(np.isfinite(getattr(self, name))):
                return name
        return None

    def _batch(self):
        return self.n if self.batch_size is None else self.batch_size

    def _workspace(self, net, batch):
        return self._workspace_for((net.m, net.dtype, batch), lambda: _emp.workspace(
            self.n, net.m, self.d, net.dtype, batch=batch, tile=self.tile))

    def _full(self, net, gW, ga, mode):
        entry = _emp.entry_for(net.code)
        out = np.empty(1)
        z = np.empty(0)
        # the step sizes in the shape ff.train passes them, (2, n): one compilation serves both
        entry(net.W, net.a, self.X, self.y, _ALL, net.code, 0, self.n, self.seed, _NO_LRS, 0, z, z, gW, ga,
              self._workspace(net, self.n), out, mode)
        return float(out[0])

    def loss(self, net):
        """The loss over the whole data set (float; no regularizer)."""
        net = self._standard(net)
        return self._full(net, net.W[:0], net.a[:0], _emp.LOSS)  # no gradient: empty placeholders

    def _grad(self, net, gW, ga):
        return self._full(net, gW, ga, _emp.GRAD)

    def _serial(self, net):
        return self._batch() * net.m * self.d < SERIAL_WORK

    def _step_work(self, net):
        return 4 * self._batch() * net.m * self.d  # forward, and the backward products of W and a

    def _kernel_loss_is_loss(self, net):
        return self._batch() >= self.n  # full batch: the runner's losses are the data set's loss

    def _rescaled(self, s):
        y = (self.y.astype(np.float64) / s).astype(self.y.dtype)  # rounded once, from float64
        return Empirical(self.X, y, batch_size=self.batch_size, seed=self.seed, tile=self.tile)

    def _runner(self, net):
        entry = _emp.entry_for(net.code)
        batch = self._batch()
        ws = self._workspace(net, batch)
        gW = np.empty_like(net.W)
        ga = np.empty_like(net.a)
        X, y, seed = self.X, self.y, self.seed

        def runner(step0, lrs, reg_code, lam_as, lam_ws):
            losses = np.empty(lrs.shape[-1])
            done = entry(net.W, net.a, X, y, _ALL, net.code, step0, batch, seed, lrs, reg_code, lam_as, lam_ws, gW, ga,
                         ws, losses, _emp.RUN)
            return done, losses[:done]

        return runner
