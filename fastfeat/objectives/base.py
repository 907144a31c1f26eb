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

from ..networks import Teacher, TwoLayer, check_net
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

    def _runner_for(self, net, make=None):
        """The runner of any net: ``make(objective, standard_net)`` (default ``o._runner(standard_net)``)
        itself for the standard scaling, else a ``RescaledRunner`` around it."""
        make = make or (lambda objective, std: objective._runner(std))
        return make(self, net) if net.gamma == 0 else RescaledRunner(make, self, net)

    def _rescaled(self, s):
        """This objective with its target divided by ``s`` (the teacher's output weights and the noise, or
        the labels): a net's weights, read as a standard net, have under it the loss of the net with output
        factor ``s`` here, divided by s^2 (see ``RescaledRunner``)."""
        raise NotImplementedError


class RescaledRunner:
    """Training steps on a net with output factor s = m^-gamma, exact in its stored parameters.

    The net's loss is ``L_s(W, a) = 1/2 E[(s f_a - y)^2] = s^2 L'(W, a)``, ``L'`` the loss of the same
    weights read as a standard net against the target divided by s (``objective._rescaled(s)``: the
    teacher's a* / s and the noise / s, or the labels y / s). A gradient step on ``L_s + R`` is therefore a
    gradient step on ``L' + R / s^2`` with the step sizes times s^2: the standard kernels take it, on the
    CPU or the GPU, with no rounding between calls. The losses they return are multiplied back by s^2.
    On the GPU the runner's ``view`` (what metrics and checkpoints read) is the device net, marked with
    the net's scale, and the objective itself."""

    def __init__(self, make, objective, net):
        s = float(net.output_factor)
        self.c = s * s
        self.inner = make(objective._rescaled(s), TwoLayer(net.W, net.a, net.activation))  # the same arrays
        if hasattr(self.inner, "finish"):
            self.finish = self.inner.finish
        if hasattr(self.inner, "view"):
            view_net = self.inner.view[0]
            view_net.scale, view_net.gamma = net.scale, net.gamma  # it holds the scaled net's stored weights
            self.view = (view_net, objective)

    def __call__(self, step0, lrs, reg_code, lam_as, lam_ws):
        c = self.c
        done, losses = self.inner(step0, np.asarray(lrs, np.float64) * c, reg_code,
                                  np.asarray(lam_as, np.float64) / c, np.asarray(lam_ws, np.float64) / c)
        return done, losses * c


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


def rescaled_teacher(teacher, s):
    """``teacher`` with output weights a* / s (computed in float64, rounded once to its dtype)."""
    return Teacher(teacher.W, (teacher.a.astype(np.float64) / s).astype(teacher.dtype), teacher.activation)


def bad_teacher(teacher):
    """"teacher.W" or "teacher.a" when it holds NaN or inf, else None."""
    for name in ("W", "a"):
        if not np.all(np.isfinite(getattr(teacher, name))):
            return f"teacher.{name}"
    return None
