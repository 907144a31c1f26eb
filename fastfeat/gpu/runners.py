"""The runners ``ff.train(..., device="cuda")`` drives (``fastfeat.gpu.runner_for(objective, net)``): the host
side of the CUDA kernels of ``fastfeat.kernels.cuda``.

A runner holds the weights on the device for its whole life (a ``DeviceNet``: the net's own device
arrays, or device copies of a host net that ``finish()`` writes back), plus all scratch buffers, allocated
once. ``runner(step0, lrs, reg_code, lam_as, lam_ws) -> (done, losses)`` follows the protocol of
``fastfeat.objectives.base`` (``lrs`` of shape (2, n): the step sizes of W and a): it launches the kernels
of n steps without waiting for them, then copies back only the n losses. A step whose loss or gradient is
not finite, or after which a weight could reach ``max_float / 4``, is refused on the device (the weights
keep their values) and turns every later kernel of the chunk into a no-op.

``runner.view`` is ``(net, objective)`` as metrics and callbacks should see them: the device net (whose
``W``, ``a`` are copied from the device on first access) and a shallow copy of the objective whose
``loss`` of that net is computed on the device (only the float comes back). ``runner.loss()``,
``runner.loss_grad(reg=None)`` evaluate at the current device weights (tests, benchmarks).
"""
import copy

import numpy as np

from ..kernels import cuda as settings
from ..kernels.cpu._rng import shuffle
from ..kernels.cuda import require
from ..kernels.cuda._build import MAX_REDUCE_THREADS, kernels
from .device_net import DeviceNet
from ..math.activations import kernel_matrix
from ..objectives.empirical import Empirical
from ..objectives.online import LOSS_SEED
from ..objectives.population import Population
from ..regularizers import check_reg, reg_arrays


#: the CUDA limit on gridDim.y (rows of tiles)
_MAX_GRID_Y = 65535


def _cdiv(a, b):
    return (a + b - 1) // b


class _Runner:
    def __init__(self, objective, net):
        # the settings are read now, per runner: tests change them between runs
        self.cuda = cuda = require()
        self.tpb = int(settings.THREADS_PER_BLOCK)
        self.T = int(settings.TILE)
        self.RB = int(settings.REG_BLOCK)
        self.budget = int(settings.ROWS_BUDGET)
        if not 1 <= self.tpb <= MAX_REDUCE_THREADS:
            raise ValueError(f"THREADS_PER_BLOCK must be in 1..{MAX_REDUCE_THREADS}, got {self.tpb}")
        if not 1 <= self.T <= 32:
            raise ValueError(f"TILE must be in 1..32 (TILE^2 threads per block), got {self.T}")
        if not 1 <= self.RB <= 8:
            raise ValueError(f"REG_BLOCK must be in 1..8, got {self.RB}")
        self.TR = self.T * self.RB
        self.objective = objective
        self.dnet = net if isinstance(net, DeviceNet) else DeviceNet._wrap(net)
        self.host_net = net
        self.dtype = np.dtype(self.dnet.dtype)
        self.ft = self.dtype.type
        self.code = int(self.dnet.code)
        self.k = kernels(cuda, self.dtype, self.T, self.RB)
        m, d = self.dnet.m, self.dnet.d
        self.m, self.d = m, d
        self.gW = cuda.device_array((m, d), self.dtype)
        self.ga = cuda.device_array(m, self.dtype)
        self.sums = cuda.device_array(2, np.float64)
        self.state = cuda.to_device(np.zeros(2, np.int32))
        self._one = cuda.device_array(1, np.float64)
        log_obj = copy.copy(objective)
        log_obj.loss = self._metric_loss
        self._plain_loss = objective.loss
        self.view = (self.dnet, log_obj)

    def _upload_teacher(self, t):
        """The teacher's weights on the device, in the net's float type (``self.Wt``, ``self.at``)."""
        self.Wt = self.cuda.to_device(np.ascontiguousarray(t.W, self.dtype))
        self.at = self.cuda.to_device(np.ascontiguousarray(t.a, self.dtype))

    # -- launch configurations ---------------------------------------------------------------------------
    def g1(self, n):
        """Blocks and threads of a grid-stride kernel over n items."""
        return max(1, min(_cdiv(n, self.tpb), 4096)), self.tpb

    def g2(self, nx, ny):
        """TILE x TILE thread blocks, each computing a (TILE REG_BLOCK)^2 output tile, covering nx columns
        and ny rows."""
        return (max(1, _cdiv(nx, self.TR)), max(1, _cdiv(ny, self.TR))), (self.T, self.T)

    def rows_grid(self, n):
        """One block per row (grid-stride) for the row-reduction kernels."""
        return max(1, min(n, 8192)), self.tpb

    # -- the protocol ---------------------------------------------------------------------------------------
    def __call__(self, step0, lrs, reg_code, lam_as, lam_ws):
        cuda = self.cuda
        n = int(lrs.shape[1])
        ft = self.ft
        self.state.copy_to_device(np.zeros(2, np.int32))
        losses = cuda.to_device(np.full(n, np.nan))
        self.dnet._touch()
        for s in range(n):
            self._step(step0 + s, s, (ft(lrs[0, s]), ft(lrs[1, s])), int(reg_code), ft(lam_as[s]), ft(lam_ws[s]),
                       losses)
        h = losses.copy_to_host()
        bad = np.flatnonzero(~np.isfinite(h))
        done = int(bad[0]) if bad.size else n
        return done, h[:done]

    def _step(self, step, s, lr, reg, lam_a, lam_w, losses):
        """One step; ``lr`` the pair (step size of W, of a) in the net's float type."""
        self._eval(step, True, reg, lam_a, lam_w, self.state, losses, s, lr=lr)
        blocks, threads = self.g1(self.m * self.d + self.m)
        self.k.sgd[blocks, threads](self.dnet.W_device, self.dnet.a_device, self.gW, self.ga, lr[0], lr[1], self.state)

    def _metric_loss(self, net):
        return self.loss() if net is self.dnet else self._plain_loss(net)

    def loss(self):
        """The objective's loss (``objective.loss``) at the current device weights, as a float."""
        return self._loss_now()

    def _loss_now(self):
        # no guard here: like the CPU objective.loss, an overflowing loss is inf, not NaN
        state = self.cuda.to_device(np.zeros(2, np.int32))
        which, scale, const = self._eval(0, False, 0, self.ft(0), self.ft(0), state, self._one, 0, full=True)
        return float(self.sums.copy_to_host()[which] * scale + const)

    def loss_grad(self, reg=None, step=0):
        """(loss, g_W, g_a) at the current device weights; the gradient includes ``reg`` (at ``step``).
        The loss is NaN when the loss or the gradient is not finite. Minibatch and online objectives:
        the batch of training step ``step``, and the loss is that batch's."""
        reg = check_reg(reg)
        code, la, lw = reg_arrays(reg, step, 1)
        state = self.cuda.to_device(np.zeros(2, np.int32))
        self._eval(step, True, int(code), self.ft(la[0]), self.ft(lw[0]), state, self._one, 0)
        return float(self._one.copy_to_host()[0]), self.gW.copy_to_host(), self.ga.copy_to_host()

    def finish(self):
        """Copy the weights back into the host net (no-op for a device net). ff.train calls it last."""
        if self.host_net is not self.dnet:
            self.dnet.sync()


class PopulationRunner(_Runner):
    """Exact population loss: rows of W in blocks of R (scratch R x (m + m*)). Per block: the Gram rows
    (register-blocked tiled product), the kernel pair in place with the row sums (one thread block per
    row), g_W rows = B V (tiled product), then the per-row finish."""

    def __init__(self, objective, net):
        super().__init__(objective, net)
        cuda = self.cuda
        t = objective.teacher
        self._upload_teacher(t)
        self.code = objective._code(net)  # the student's activation and the teacher's (cross kernels)
        m, ms = self.m, t.m
        N = m + ms
        self.N = N
        R = max(1, self.budget // N)
        if R >= self.TR:
            R = R // self.TR * self.TR
        self.R = R = max(1, min(R, m, _MAX_GRID_Y * self.TR))
        self.B = cuda.device_array((R, N), self.dtype)
        self.part = cuda.device_array((3, R), self.dtype)
        self.nrm = cuda.device_array(N, self.dtype)
        self.lrow = cuda.device_array(m, self.dtype)
        Wt64 = np.asarray(t.W, np.float64)
        at64 = np.asarray(t.a, np.float64)
        energy = float(at64 @ kernel_matrix(t.activation, Wt64, Wt64) @ at64)
        self.const = 0.5 * energy + 0.5 * float(objective.noise) ** 2

    def _eval(self, step, want_grad, reg, lam_a, lam_w, state, losses, s, full=False, lr=(0.0, 0.0)):
        k = self.k
        W, a = self.dnet.W_device, self.dnet.a_device
        m, d, N = self.m, self.d, self.N
        k.row_norms[self.g1(m)](W, self.nrm, 0, state)
        k.row_norms[self.g1(N - m)](self.Wt, self.nrm, m, state)
        for i0 in range(0, m, self.R):
            rows = min(self.R, m - i0)
            k.pop_gram[self.g2(N, rows)](W, self.Wt, i0, rows, self.B, state)
            k.pop_pairs[self.rows_grid(rows)](a, self.at, self.nrm, i0, rows, self.code, self.B, self.part,
                                              want_grad, state)
            if want_grad:
                k.pop_bv[self.g2(d, rows)](self.B, W, self.Wt, i0, rows, self.gW, state)
            k.pop_rows[self.g1(rows)](W, a, self.nrm, self.part, i0, rows, self.gW, self.ga, self.lrow,
                                      want_grad, reg, lam_a, lam_w, self.ft(lr[0]), self.ft(lr[1]), state)
        k.reduce_sums[1, self.tpb](self.lrow, m, self.sums, state)
        k.commit_loss[1, 1](self.sums, 0, 1.0, self.const, losses, s, state)
        return 0, 1.0, self.const


class _SampleRunner(_Runner):
    """Shared by the empirical and online runners: one gradient on a batch of samples, tiled over samples
    (scratch S x m for the pre-activations, S samples per tile)."""

    def _sample_buffers(self, max_batch):
        cuda = self.cuda
        S = max(1, self.budget // self.m)
        if S >= self.TR:
            S = S // self.TR * self.TR
        self.S = max(1, min(S, max_batch, _MAX_GRID_Y * self.TR))
        self.Z = cuda.device_array((self.S, self.m), self.dtype)
        self.gpart = cuda.device_array((_cdiv(self.S, self.T), self.m), self.dtype)
        self.r = cuda.device_array(max_batch, self.dtype)
        self.nrm = cuda.device_array(self.m, self.dtype)

    def _batch_grad(self, X, y, idx, off0, nb, want_grad, reg, lam_a, lam_w, state, losses, s, lr):
        """Loss (and gradient into gW, ga) on samples idx[off0 : off0 + nb] of (X, y); ``lr`` the step sizes
        (of W, of a) of the step that follows (for the guard; 0 when no step follows)."""
        k = self.k
        W, a = self.dnet.W_device, self.dnet.a_device
        m, d, S = self.m, self.d, self.S
        k.row_norms[self.g1(m)](W, self.nrm, 0, state)
        for t0 in range(0, nb, S):
            cnt = min(S, nb - t0)
            off = off0 + t0
            first = t0 == 0
            k.emp_forward[self.g2(m, cnt)](X, idx, off, cnt, W, self.Z, state)
            k.emp_resid[self.rows_grid(cnt)](self.Z, a, self.nrm, y, idx, off, cnt, self.code, self.r, t0,
                                                  state)
            if want_grad:
                nch = _cdiv(cnt, self.T)
                k.emp_cols[self.g1(nch * m)](self.Z, self.r, t0, cnt, self.nrm, self.code, self.gpart, state)
                k.emp_gsum[self.g1(m)](self.gpart, nch, self.ga, first, state)
                k.emp_gw[self.g2(d, m)](self.Z, X, idx, off, cnt, self.gW, first, state)
        k.reduce_sums[1, self.tpb](self.r, nb, self.sums, state)
        if want_grad:
            k.emp_finish[self.g1(m)](W, a, self.nrm, self.gW, self.ga, self.sums, self.ft(1.0 / nb), self.code,
                                     True, reg, lam_a, lam_w, self.ft(lr[0]), self.ft(lr[1]), state)
        k.commit_loss[1, 1](self.sums, 1, 0.5 / nb, 0.0, losses, s, state)
        return 1, 0.5 / nb, 0.0


class EmpiricalRunner(_SampleRunner):
    """A fixed data set on the device (uploaded once per objective and dtype); minibatches follow the CPU
    kernel's order exactly (``fastfeat.kernels.cpu.empirical``: epoch permutations from ``_rng.shuffle``)."""

    def __init__(self, objective, net):
        super().__init__(objective, net)
        cuda = self.cuda
        cache = objective.__dict__.setdefault("_cuda_data", {})
        key = self.dtype.str
        if key not in cache:
            cache.clear()
            X = np.ascontiguousarray(objective.X, self.dtype)
            y = np.ascontiguousarray(objective.y, self.dtype)
            cache[key] = (cuda.to_device(X), cuda.to_device(y), cuda.to_device(np.arange(X.shape[0], dtype=np.int64)))
        self.X, self.y, self.all_idx = cache[key]
        self.n = n = self.X.shape[0]
        bs = getattr(objective, "batch_size", None)
        self.batch = n if bs is None or bs >= n else int(bs)
        self.seed = int(getattr(objective, "seed", 0))
        self.nbatches = _cdiv(n, self.batch)
        self._sample_buffers(n)
        self._epoch = None
        self._perm_host = np.empty(n, np.int64)
        self.perm = cuda.device_array(n, np.int64) if self.batch < n else self.all_idx

    def _batch_of(self, step):
        """(index array, offset, count) of global step ``step``'s minibatch."""
        if self.batch >= self.n:
            return self.all_idx, 0, self.n
        e, b = divmod(int(step), self.nbatches)
        if e != self._epoch:
            shuffle(self._perm_host, self.seed, e)  # the CPU kernel's own permutation
            self.perm.copy_to_device(self._perm_host)
            self._epoch = e
        off = b * self.batch
        return self.perm, off, min(self.batch, self.n - off)

    def _eval(self, step, want_grad, reg, lam_a, lam_w, state, losses, s, full=False, lr=(0.0, 0.0)):
        if full:
            idx, off, nb = self.all_idx, 0, self.n
        else:
            idx, off, nb = self._batch_of(step)
        return self._batch_grad(self.X, self.y, idx, off, nb, want_grad, reg, lam_a, lam_w, state, losses, s, lr)


class OnlineRunner(_SampleRunner):
    """One-pass SGD: every step draws its batch on the device from the counter-based generator keyed by
    (seed, step), with the CPU kernel's index layout, labels it with the teacher, then one gradient step.
    ``loss()`` is the objective's own loss (the exact population loss, on the device, where a closed
    form exists)."""

    def __init__(self, objective, net):
        super().__init__(objective, net)
        cuda = self.cuda
        t = objective.teacher
        self._upload_teacher(t)
        self.tnrm = cuda.to_device(np.linalg.norm(np.asarray(t.W, np.float64), axis=1).astype(self.dtype))
        self.tcode = int(t.code)
        self.B = B = int(objective.batch_size)
        self.seed = int(objective.seed)
        self.noise = self.ft(objective.noise)
        self.Xb = cuda.device_array((B, self.d), self.dtype)
        self.yb = cuda.device_array(B, self.dtype)
        self.idx = cuda.to_device(np.arange(B, dtype=np.int64))
        self._sample_buffers(B)
        self._loss_runner = None  # built on the first loss(): the objective's own loss, on the device

    def _eval(self, step, want_grad, reg, lam_a, lam_w, state, losses, s, full=False, lr=(0.0, 0.0)):
        k = self.k
        B = self.B
        k.online_draw[self.g1(B * (self.d + 1))](np.uint64(self.seed), np.uint64(step), B, self.noise, self.Xb,
                                                 self.yb, state)
        k.teacher_labels[self.g1(B)](self.Xb, self.Wt, self.at, self.tnrm, self.tcode, self.yb, state)
        return self._batch_grad(self.Xb, self.yb, self.idx, 0, B, want_grad, reg, lam_a, lam_w, state, losses, s,
                                lr)

    def _loss_now(self):
        """Online.loss on the device: the exact population loss when the student and the teacher share an
        activation with a closed form, else the same fixed Monte Carlo estimate (``Online.loss``)."""
        obj = self.objective
        if self._loss_runner is None:
            if obj.exact_loss(self.dnet):
                self._loss_runner = PopulationRunner(Population(obj.teacher, noise=obj.noise), self.dnet)
                self._loss_extra = 0.0
            else:
                rng = np.random.default_rng(LOSS_SEED)
                X = rng.standard_normal((obj.loss_samples, obj.teacher.d))
                mc = Empirical(X.astype(self.dtype), obj.teacher(X).astype(self.dtype))
                self._loss_runner = EmpiricalRunner(mc, self.dnet)
                self._loss_extra = 0.5 * obj.noise ** 2
        return self._loss_runner.loss() + self._loss_extra
