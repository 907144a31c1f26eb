"""Online (one-pass) SGD: every step draws a fresh batch from the teacher inside the kernel."""
import numpy as np

from .._validation import check_float, check_int, check_noise
from ..kernels.cpu import online as _onl
from ..kernels.cpu import online_single as _single
from ..math.cross import exact_pair
from ..networks import check_pair, check_teacher
from .base import Objective, bad_teacher, rescaled_teacher, teacher_digest
from .empirical import Empirical, _check_seed
from .population import Population

#: numpy seed of the fixed Monte Carlo points of ``Online.loss`` when there is no closed form
LOSS_SEED = 20240917
#: stream offset of the batches ``Online.grad`` draws when no step is given (never reached by training)
GRAD_STREAM = 1 << 62


class Online(Objective):
    """One-pass SGD on ``y = f*(x) + xi``, ``x ~ N(0, I_d)``, ``xi ~ N(0, noise^2)``.

    Step ``s`` of training draws ``batch_size`` fresh samples inside the compiled kernel from the
    counter-based generator keyed by ``(seed, s, sample, coordinate)`` (layout in
    ``fastfeat.kernels.cpu.online``): the run does not depend on the thread count and a resumed run
    (``ff.train(start_step=...)``) continues the same stream. The student may use another activation
    than the teacher.

    With ``batch_size=1`` the kernel works in blocks of 20 steps (``fastfeat.kernels.cpu.online_single``):
    ``ff.train`` runs with ``log_every`` a multiple of 20 (20, 100, 1000, ...) give the same weights bit
    for bit whatever that multiple; other ``log_every`` values start blocks at other steps and change
    the weights by rounding only.

    ``loss(net)``: the population loss ``1/2 E[(f - y)^2]`` (``noise^2/2`` included), exact
    (``ff.Population``) when the student's and the teacher's activations have closed-form kernels (the
    same activation or not: cross kernels). Otherwise (``tanh`` on either side) it is a Monte Carlo estimate on a *fixed* set of
    ``loss_samples`` Gaussian inputs (numpy seed ``LOSS_SEED``, the same for every seed, so curves are
    comparable and smooth in the weights), ``1/(2N) sum_k (f(x_k) - f*(x_k))^2 + noise^2/2``, computed
    with the fused empirical kernel; its relative standard error is about ``sqrt(2 / N)`` (1.6% for the
    default N = 8192; the same points every call, so it is a fixed bias, not noise in the curve).

    ``grad(net, reg=None, step=None)``: the gradient on one fresh batch: that of training step
    ``step`` when given (exactly the batch ``ff.train`` uses there), else the next batch of a separate
    stream (steps ``GRAD_STREAM + i`` for the i-th call).
    """

    name = "online"
    #: the exact population loss costs O(m (m + m*) d) per row, many steps of batch 1: log the mean
    #: minibatch loss by default (free), "loss" on request
    default_metrics = ("batch_loss",)

    def __init__(self, teacher, *, batch_size=1, noise=0.0, seed=0, loss_samples=8192):
        self.teacher = check_teacher(teacher)
        self.batch_size = check_int(batch_size, "batch_size")
        self.noise = check_noise(noise)
        self.seed = _check_seed(seed)
        self.loss_samples = check_int(loss_samples, "loss_samples")
        self._grad_calls = 0
        self._ws = {}
        self._exact = None
        self._mc = None

    def __repr__(self):
        return f"Online(teacher={self.teacher!r}, batch_size={self.batch_size}, noise={self.noise}, seed={self.seed})"

    def _check(self, net):
        super()._check(net)
        check_pair(net, self.teacher, same_activation=False)

    def _fingerprint(self):
        return {"objective": self.name, "teacher": teacher_digest(self.teacher), "batch_size": self.batch_size,
                "noise": self.noise, "seed": self.seed, "loss_samples": self.loss_samples}

    def _bad_data(self):
        return bad_teacher(self.teacher)

    def exact_loss(self, net):
        """True when ``loss(net)`` is the closed-form population loss (not a Monte Carlo estimate)."""
        return exact_pair(net.activation, self.teacher.activation)

    def _step_work(self, net):
        # the student's and the teacher's forward products, the backward one, and ~16 per drawn normal
        return self.batch_size * (4 * (net.m + self.teacher.m) * net.d + 16 * net.d)

    def _call_quantum(self, net):
        return _single.BLOCK if self.batch_size == 1 else 1  # batch 1 runs blocks of steps

    def _workspace(self, net):
        return self._workspace_for((net.m, net.d, net.dtype),
                                   lambda: _onl.workspace(self.batch_size, net.m, net.d, net.dtype))

    def loss(self, net):
        """The population loss at ``net`` (see the class docstring: exact, or a fixed Monte Carlo estimate)."""
        net = self._standard(net)
        if self.exact_loss(net):
            if self._exact is None:
                self._exact = Population(self.teacher, noise=self.noise)
            return self._exact.loss(net)
        if self._mc is None or self._mc.X.dtype != net.dtype:
            rng = np.random.default_rng(LOSS_SEED)
            X = rng.standard_normal((self.loss_samples, self.teacher.d))
            self._mc = Empirical(X.astype(net.dtype), self.teacher(X).astype(net.dtype))
        return self._mc.loss(net) + 0.5 * self.noise**2

    def _args(self, net):
        t = self.teacher
        return t.W, t.a, net.code, t.code, self.noise, self.seed

    def _grad(self, net, gW, ga, step=None):
        if step is None:
            step = GRAD_STREAM + self._grad_calls
            self._grad_calls += 1
        loss_grad = _onl.kernels_for(self.batch_size, net.m, net.d)[0]
        return float(loss_grad(net.W, net.a, *self._args(net), step, gW, ga, self._workspace(net)))

    def grad(self, net, reg=None, *, step=None):
        """(g_W, g_a) on one fresh batch (of training step ``step`` when given), plus ``reg``'s gradient."""
        if step is not None:
            step = check_int(step, "step", minimum=0)
            if step >= 2**63:
                raise ValueError(f"step must be < 2**63, got {step}")
        from ..regularizers import check_reg
        self._check(net)
        return self._grad_with(net, check_reg(reg), 0 if step is None else step,
                               lambda std, gW, ga: self._grad(std, gW, ga, step))

    def _rescaled(self, s):
        return Online(rescaled_teacher(self.teacher, s), batch_size=self.batch_size, noise=self.noise / s,
                      seed=self.seed, loss_samples=self.loss_samples)

    def _runner(self, net):
        run = _onl.kernels_for(self.batch_size, net.m, net.d)[1]
        ws = self._workspace(net)
        args = self._args(net)

        def runner(step0, lrs, reg_code, lam_as, lam_ws):
            losses = np.empty(lrs.shape[-1])
            done = run(net.W, net.a, *args, step0, lrs, reg_code, lam_as, lam_ws, ws, losses)
            return done, losses[:done]

        return runner
