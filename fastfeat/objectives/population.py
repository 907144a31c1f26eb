"""The exact Gaussian population objective (closed-form kernels, docs/conventions.md)."""
import numba
import numpy as np

from .._validation import check_int, check_noise
from ..kernels.cpu import population as _pop
from ..math.activations import HAS_KERNEL
from ..math.cross import pair_code
from ..networks import check_pair, check_teacher
from .base import Objective, bad_teacher, rescaled_teacher, teacher_digest


class Population(Objective):
    """``L = 1/2 E_x[(f(x) - f*(x) - noise)^2]`` for ``x ~ N(0, I_d)``, in closed form.

    ``noise`` is the label-noise standard deviation; it only adds ``noise^2 / 2`` to the loss.
    The student may have another activation than the teacher (cross kernels, ``fastfeat.math.cross``).
    Not available for ``tanh`` (no closed-form kernel), on either side: use ``ff.Empirical`` or ``ff.Online``.

    Tuning (results do not depend on them beyond rounding): ``tile`` rows of W per block (memory
    O(tile * m); None: chosen by width); ``blas`` True/False forces whole BLAS calls (BLAS's threads) or blocks of single-threaded
    BLAS calls spread over fastfeat's threads for the products, None decides by size.
    """

    name = "population"

    def __init__(self, teacher, *, noise=0.0, tile=None, blas=None):
        self.teacher = check_teacher(teacher)
        if not teacher.has_population_kernel:
            raise ValueError(
                f"activation {teacher.activation!r} has no closed-form population kernel; "
                "use ff.Empirical or ff.Online")
        self.noise = check_noise(noise)
        self.tile = None if tile is None else check_int(tile, "tile")
        self.blas = blas
        self._ws = {}

    def _check(self, net):
        super()._check(net)
        check_pair(net, self.teacher, same_activation=False)
        if net.activation not in HAS_KERNEL:
            raise ValueError(f"net activation {net.activation!r} has no closed-form population kernel; "
                             "use ff.Empirical or ff.Online")

    def _code(self, net):
        """The kernels' ``code`` for ``net`` and the teacher (``math.cross.pair_code``)."""
        return pair_code(net.code, self.teacher.code)

    def _workspace(self, net, dtype=None):
        """The kernels' buffers for ``net``'s sizes, in ``dtype`` (default the net's)."""
        dtype = np.dtype(net.dtype if dtype is None else dtype)
        return self._workspace_for((net.m, net.d, dtype), lambda: _pop.workspace(
            net.m, self.teacher.m, net.d, dtype, tile=self.tile, blas=self.blas))

    def _builds(self, net, dtype=None):
        """The kernels' build for ``net``'s sizes (``population.builds``): a process compiles only it."""
        return _pop.builds(net.m, self.teacher.m, net.d, self._workspace(net, dtype).tile)

    def _float64_parts(self, net):
        """``(W*, a*, workspace)`` in float64 for ``net``'s sizes: what ``ff.flow``, which integrates in
        float64 whatever the net's type, passes to the compiled population gradient."""
        t = self.teacher
        return (np.ascontiguousarray(t.W, np.float64), np.ascontiguousarray(t.a, np.float64),
                self._workspace(net, np.float64))

    def loss(self, net):
        """The population loss at ``net`` (float; includes noise^2/2, excludes any regularizer)."""
        net = self._standard(net)
        ga = np.empty_like(net.a)
        L = self._builds(net).loss_grad(net.W, net.a, self.teacher.W, self.teacher.a, self._code(net), net.W[:0], ga,
                                        self._workspace(net), False)
        return float(L) + 0.5 * self.noise**2

    def _grad(self, net, gW, ga):
        return self._builds(net).loss_grad(net.W, net.a, self.teacher.W, self.teacher.a, self._code(net), gW, ga,
                                           self._workspace(net), True)

    def _fingerprint(self):
        return {"objective": self.name, "teacher": teacher_digest(self.teacher), "noise": self.noise}

    def _bad_data(self):
        return bad_teacher(self.teacher)

    def _serial(self, net):
        # the kernels' own rule (each of a step's parallel regions wakes the sleeping workers)
        return bool(_pop.one_thread_suffices(net.m, self.teacher.m, net.d, self._workspace(net).tile,
                                             numba.get_num_threads()))

    def _step_work(self, net):
        # every (student, student|teacher) pair: d multiply-adds of the Gram products, and the arc-cosine
        # or erf math, worth about 48 of them
        return net.m * (net.m + self.teacher.m) * (net.d + 48)

    def _kernel_loss_is_loss(self, net):
        return True  # the runner's losses are the exact loss (noise included) before each step

    def _rescaled(self, s):
        return Population(rescaled_teacher(self.teacher, s), noise=self.noise / s, tile=self.tile, blas=self.blas)

    def _runner(self, net):
        run = self._builds(net).run
        ws = self._workspace(net)
        gW = np.empty_like(net.W)
        ga = np.empty_like(net.a)
        Wt, at = self.teacher.W, self.teacher.a
        half_noise = 0.5 * self.noise**2
        code = self._code(net)

        def runner(step0, lrs, reg_code, lam_as, lam_ws):
            losses = np.empty(lrs.shape[-1])
            done = run(net.W, net.a, Wt, at, code, lrs, reg_code, lam_as, lam_ws, gW, ga, ws, losses)
            return done, losses[:done] + half_noise

        return runner
