"""What every objective provides to ``ff.train`` and to users.

An objective knows its target (a teacher, or data) and offers

- ``loss(net)``: the unregularized loss, a float;
- ``grad(net, reg=None)``: new arrays ``(g_W, g_a)`` of the (regularized) objective;
- ``_runner(net)``: a callable ``run(step0, lrs, reg_code, lam_as, lam_ws) -> (done, losses)``
  that performs n update steps in one compiled call (``lrs`` of shape (2, n): row 0 the step sizes of W,
  row 1 those of a), in place, starting at global step
  ``step0`` (stochastic objectives key their random numbers on it, so a resumed run continues the same
  stream). ``done < n`` means a non-finite loss or gradient stopped it before step ``step0+done``
  was applied; the weights are then those before that step. ``losses[s]`` is the loss the kernel saw
  before step s (the minibatch loss for stochastic objectives). The CUDA runners of the same protocol
  are built above this layer, by ``fastfeat.gpu.runner_for(objective, net)``.
"""
import hashlib
import threading

import numpy as np

from ..math.regularizer import REG_PATH_NORM, REG_WEIGHT_DECAY
from ..networks import TwoLayer, check_net
from ..regularizers import check_reg, reg_arrays


_WS_LOCK = threading.Lock()
#: workspaces an objective keeps (older ones are dropped; a run in progress holds its own reference)
_WS_KEEP = 8


class Objective:
    #: objects of these activations cannot be handled (Population: tanh)
    name = "objective"
    #: what ``ff.train(metrics=None)`` logs
    default_metrics = ("loss",)

    def _workspace_for(self, key, make):
        """The kernels' scratch buffers for ``key`` (sizes, dtype, ...), one set per thread: kernels run
        without the GIL, so two threads sharing an objective must never share buffers."""
        key = (threading.get_ident(),) + tuple(key)
        with _WS_LOCK:
            cache = self.__dict__.setdefault("_ws", {})
            ws = cache.get(key)
        if ws is None:
            ws = make()
            with _WS_LOCK:
                cache[key] = ws
                while len(cache) > _WS_KEEP:
                    del cache[next(iter(cache))]
        return ws

    def _fingerprint(self):
        """What identifies this objective between runs (a JSON-able dict: its kind, a digest of its
        teacher or data, its settings), stored in checkpoints and compared on resume."""
        raise NotImplementedError

    def _bad_data(self):
        """The name of an array of the objective that holds NaN or inf (changed after it was built), or None."""
        return None

    def _serial(self, net):
        """Whether a step at ``net``'s sizes is too small to gain from more than one thread (then
        ``ff.train`` and ``ff.flow`` run it on one unless ``n_threads`` says otherwise; the results do not
        depend on the thread count)."""
        return False

    def _step_work(self, net):
        """About the multiply-adds of one training step at ``net``'s sizes (a constant factor apart): what
        ``ff.train`` and ``ff.flow`` size their compiled calls by."""
        return net.m * net.d

    def _call_quantum(self, net):
        """Compiled calls that start and end at global steps that are multiples of this give the weights
        of one long call bit for bit (1: any cut does)."""
        return 1

    def _kernel_loss_is_loss(self, net):
        """Whether the losses the runner returns are ``loss(net)`` before each step (then ``ff.train``
        logs them instead of computing the loss again)."""
        return False

    def _check(self, net):
        """Validate ``net`` against this objective; raise ValueError/TypeError naming the problem."""
        check_net(net)

    def _standard(self, net):
        """``net`` checked against this objective, as the standard network of the same function
        (``net.as_standard()``): the kernels compute with the effective second layer m^-gamma a."""
        self._check(net)
        return net.as_standard()

    def loss(self, net):
        raise NotImplementedError

    def _grad(self, net, gW, ga):
        """Fill gW, ga with the gradient of the unregularized objective (one batch for stochastic ones) at a
        standard net."""
        raise NotImplementedError

    def grad(self, net, reg=None):
        """(g_W, g_a): new arrays with the gradient of loss + reg at ``net`` in its stored parameters
        (``net`` is not modified)."""
        self._check(net)
        return self._grad_with(net, check_reg(reg), 0, self._grad)

    def _grad_with(self, net, reg, step, fill):
        """The gradient of loss + ``reg`` (at ``step``) in ``net``'s stored parameters: ``fill(std, gW, ga)``
        writes the loss's gradient at the standard net of the same function, whose a-part is multiplied by
        m^-gamma (the chain rule), then the regularizer's terms are added at the stored weights."""
        from ..kernels.cpu.common import add_reg_grad
        gW = np.empty_like(net.W)
        ga = np.empty_like(net.a)
        fill(net.as_standard(), gW, ga)
        if net.gamma != 0:
            ga *= net.dtype.type(net.output_factor)
        code, la, lw = reg_arrays(reg, step, 1)
        add_reg_grad(net.W, net.a, gW, ga, code, la[0], lw[0])
        return gW, ga

    def _runner(self, net):
        """The runner of a standard net (see the module docstring)."""
        raise NotImplementedError

    def _runner_for(self, net):
        """The runner of any net: ``_runner`` itself for the standard scaling, else ``ScaledRunner``."""
        return self._runner(net) if net.gamma == 0 else ScaledRunner(self._runner, net)


class ScaledRunner:
    """Training steps on a net with output scale m^-gamma = s, through the runner of the standard net
    of the same function, whose second layer is b = s a.

    Gradient descent on the stored ``a`` with step size ``lr_a`` moves b = s a as gradient descent on the
    standard net with step size ``s^2 lr_a``; a regularizer on the stored weights is one on (W, b) with
    other strengths: weight decay's ``lam_a/2 |a|^2 = (lam_a / s^2)/2 |b|^2``, the path norm's
    ``lam sum_j |a_j| |w_j| = (lam / s) sum_j |b_j| |w_j|``. So every step is exactly the stored
    parameters' step, taken by the standard kernels (CPU). Each call starts from b = s a (the net's
    stored ``a``) and ends with a = b / s: where s is not a power of two, these roundings make runs cut
    into calls at other steps differ in the last bits (a resumed run cuts where the first did)."""

    def __init__(self, make, net):
        self.net = net
        self.s = float(net.output_factor)
        self.b = net.a * net.dtype.type(self.s)
        self.inner = make(TwoLayer(net.W, self.b, net.activation))

    def __call__(self, step0, lrs, reg_code, lam_as, lam_ws):
        s, net = self.s, self.net
        np.multiply(net.a, net.dtype.type(s), out=self.b)
        lrs = np.array(lrs, dtype=np.float64)
        lrs[1] *= s * s
        lam_as = np.array(lam_as, dtype=np.float64)
        lam_ws = np.array(lam_ws, dtype=np.float64)
        if reg_code == REG_WEIGHT_DECAY:
            lam_as /= s * s
        elif reg_code == REG_PATH_NORM:
            lam_as /= s
            lam_ws /= s
        done, losses = self.inner(step0, lrs, reg_code, lam_as, lam_ws)
        np.divide(self.b, net.dtype.type(s), out=net.a)
        return done, losses


def digest(*arrays, extra=""):
    """A short hex digest of arrays' dtypes, shapes and bytes (and a string), to recognize data again."""
    h = hashlib.blake2b(extra.encode(), digest_size=12)
    for x in arrays:
        x = np.ascontiguousarray(x)
        h.update(f"{x.dtype.str}{x.shape}".encode())
        h.update(memoryview(x).cast("B"))
    return h.hexdigest()


def teacher_digest(teacher):
    return digest(teacher.W, teacher.a, extra=teacher.activation)


def bad_teacher(teacher):
    """"teacher.W" or "teacher.a" when it holds NaN or inf, else None."""
    for name in ("W", "a"):
        if not np.all(np.isfinite(getattr(teacher, name))):
            return f"teacher.{name}"
    return None
