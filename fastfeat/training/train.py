"""``ff.train``: many steps per compiled call, schedules per step, metrics every ``log_every`` steps."""
import os
import sys
import threading
import time

import numba
import numpy as np

from .. import metrics as _metrics
from .._validation import check_int
from ..networks import check_net, check_teacher
from ..objectives.base import Objective
from ..regularizers import check_reg, reg_arrays
from ..schedules import as_schedule, constant, evaluate
from .checkpoint import Checkpoint
from .history import History

DEVICES = ("cpu", "cuda")
#: ids of the nets being trained right now (two calls updating one net at once would corrupt it)
_TRAINING = set()
_TRAINING_LOCK = threading.Lock()


class TrainingDiverged(FloatingPointError):
    """Raised by ``ff.train`` when the loss or the gradient stops being finite.

    The net keeps the last finite weights (those before the failing step). ``.step`` is the global
    step that was refused, ``.history`` what was logged up to then.
    """

    def __init__(self, step, history):
        self.step = step
        self.history = history
        super().__init__(
            f"training diverged at step {step}: the loss or its gradient is not finite; the net keeps the "
            f"weights from before step {step}. Lower lr or add regularization.")


def _check_metrics(metrics, teacher, objective=None):
    if metrics is None:
        metrics = objective.default_metrics if objective is not None else ("loss",)
    if isinstance(metrics, str):
        metrics = (metrics,)
    try:
        metrics = tuple(metrics)
    except TypeError:
        raise TypeError(f"metrics must be a tuple of names, got {type(metrics).__name__}") from None
    for name in metrics:
        if name not in _metrics.REGISTRY:
            raise ValueError(f"metrics: unknown metric {name!r}; known: {sorted(_metrics.REGISTRY)}")
        if name in _metrics.NEEDS_TEACHER and teacher is None:
            raise ValueError(f"metrics: {name!r} needs a teacher; pass teacher=")
    return metrics


def _log_values(metrics, net, objective, teacher, reg, step, known=None):
    """The values of ``metrics`` at ``net``; ``known`` holds values train() already has (from the kernel)
    and metrics it will fill in later (``None``: left out of the row for now)."""
    out = {}
    for name in metrics:
        if known is not None and name in known:
            if known[name] is not None:
                out[name] = known[name]
            continue
        v = _metrics.REGISTRY[name](net, objective, teacher, reg, step)
        if isinstance(v, dict):
            for k, x in v.items():
                out[f"{name}.{k}"] = x
        else:
            out[name] = v
    return out


class _Progress:
    def __init__(self, total, enabled):
        self.total = total
        self.enabled = enabled
        self.t0 = time.perf_counter()

    def update(self, done, values):
        if not self.enabled:
            return
        frac = done / self.total if self.total else 1.0
        bar = "#" * int(30 * frac)
        rate = done / max(time.perf_counter() - self.t0, 1e-9)
        extra = " ".join(f"{k}={float(v):.4g}" for k, v in values.items() if np.ndim(v) == 0)
        sys.stderr.write(f"\r[{bar:<30}] {done}/{self.total} steps, {rate:.3g} steps/s {extra}")
        if done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def train(net, objective, *, steps, lr, reg=None, log_every=100, teacher=None, metrics=None,
          progress=False, n_threads=None, device="cpu", callback=None, start_step=0, checkpoint=None,
          checkpoint_every=None, resume=False):
    """Run ``steps`` gradient steps of ``objective`` (+ ``reg``) on ``net``, in place.

    lr and the regularizer's lam may be floats or schedules (step -> value), evaluated at every step.
    Steps run ``log_every`` at a time inside one compiled call; after each call ``metrics`` are logged
    (and at step 0). ``metrics=None`` logs the objective's ``default_metrics``: ``("loss",)``, except
    ``ff.Online``: ``("batch_loss",)``. ``"batch_loss"`` is the mean of the minibatch losses of the steps
    since the last row (what SGD saw; NaN in the first row), free; ``"loss"`` is ``objective.loss(net)``
    (for ``ff.Online`` the exact population loss, O(m (m + m*) d) per row). Where the kernel computes that
    loss anyway (``ff.Population``, full-batch ``ff.Empirical``), each row takes it from the next compiled
    call (the loss before its first step) instead of computing it again; with a ``callback`` or a
    ``checkpoint`` every row is complete when it is logged, so it is computed then. ``callback(step, net, values)`` is called after each logging; return ``False``
    from it to stop early. ``start_step`` offsets the global step (schedules, random streams), so a run
    continued from a checkpoint reproduces the uninterrupted one. Raises ``ff.TrainingDiverged`` (the
    net keeps its last finite weights) when the loss or gradient stops being finite.

    ``checkpoint=path`` writes an ``ff.Checkpoint`` (weights, global step, history) every
    ``checkpoint_every`` steps from ``start_step`` (default ``log_every``; checked at logging boundaries)
    and at the end. ``resume=True`` with an existing checkpoint loads its weights into ``net`` and runs
    only the steps from its step to ``start_step + steps``, returning the whole history: the weights
    equal those of the uninterrupted run bit for bit (same objective, lr, reg; same thread count).
    """
    check_net(net)
    if not isinstance(objective, Objective):
        raise TypeError(f"objective must be ff.Population, ff.Empirical or ff.Online, got {type(objective).__name__}")
    objective._check(net)
    steps = check_int(steps, "steps", minimum=1)
    log_every = check_int(log_every, "log_every", minimum=1)
    start_step = check_int(start_step, "start_step", minimum=0)
    lr_s = as_schedule(lr, "lr", positive=True)
    evaluate(lr_s, start_step, 1, "lr", positive=True)
    reg = check_reg(reg)
    if teacher is None:
        teacher = getattr(objective, "teacher", None)
    else:
        check_teacher(teacher)
    metrics = _check_metrics(metrics, teacher, objective)
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if getattr(net, "on_device", False) and device != "cuda":
        raise ValueError("net lives on the GPU (ff.gpu.to_device): train it with device='cuda', "
                         "or bring it back with net.to_host()")
    if callback is not None and not callable(callback):
        raise TypeError("callback must be callable(step, net, values)")
    if n_threads is not None:
        n_threads = check_int(n_threads, "n_threads")
        if n_threads > numba.config.NUMBA_NUM_THREADS:
            raise ValueError(f"n_threads={n_threads} exceeds the {numba.config.NUMBA_NUM_THREADS} threads numba "
                             "was started with (NUMBA_NUM_THREADS)")
    if checkpoint is None and (resume or checkpoint_every is not None):
        raise ValueError("resume and checkpoint_every need checkpoint=path")
    if checkpoint is not None:
        checkpoint_every = log_every if checkpoint_every is None else check_int(checkpoint_every, "checkpoint_every")
    previous = None
    origin = start_step  # checkpoints every checkpoint_every steps from here (the same after a resume)
    if resume and os.path.exists(checkpoint):
        saved = Checkpoint.load(checkpoint)
        if not start_step <= saved.step <= start_step + steps:
            raise ValueError(f"checkpoint {checkpoint} is at step {saved.step}, outside this run's steps "
                             f"{start_step}..{start_step + steps}")
        saved.restore(net)
        previous = saved.history
        steps -= saved.step - start_step
        start_step = saved.step
        if steps == 0:
            return previous
    with _TRAINING_LOCK:
        if id(net) in _TRAINING:
            raise ValueError("net is already being trained by another ff.train call (in another thread); "
                             "train a copy, or wait for that call to return")
        _TRAINING.add(id(net))
    try:
        return _train(net, objective, steps, lr_s, reg, log_every, teacher, metrics, progress, n_threads, device,
                      callback, start_step, checkpoint, checkpoint_every, previous, origin)
    finally:
        with _TRAINING_LOCK:
            _TRAINING.discard(id(net))


def _train(net, objective, steps, lr_s, reg, log_every, teacher, metrics, progress, n_threads, device, callback,
           start_step, checkpoint, checkpoint_every, previous, origin):
    old_threads = numba.get_num_threads()
    history = History(info={"objective": objective.name, "device": device, "start_step": start_step})
    if previous is not None:  # continue the saved history (it ends with the row of start_step)
        history.step, history.metrics = previous.step, previous.metrics
    bar = _Progress(steps, progress)
    runner = None
    try:
        if n_threads is not None:
            numba.set_num_threads(n_threads)
        runner = objective._runner(net, device)
        # CUDA runners keep the weights on the device: metrics and callbacks see the net and objective
        # through runner.view (the loss is computed on the device, weights are copied only when read)
        log_net, log_obj = getattr(runner, "view", (net, objective))
        # "loss" from the kernel: the row of step s gets the loss the next call computes before step s
        lagged = ("loss" in metrics and callback is None and checkpoint is None and device == "cpu"
                  and objective._kernel_loss_is_loss(net))
        batch = "batch_loss" in metrics
        pending = None  # (step, values) of a row still waiting for its "loss"

        def row(step, losses, done):
            known = {}
            if lagged:
                known["loss"] = None
            if batch:
                known["batch_loss"] = float(np.mean(losses[:done])) if done > 0 else np.nan
            return _log_values(metrics, log_net, log_obj, teacher, reg, step, known)

        def complete(loss):
            values = pending[1]
            values["loss"] = loss
            history._append(pending[0], values)
            return values

        if previous is None:
            values = row(start_step, None, 0)
            if lagged:
                pending = (start_step, values)
            else:
                history._append(start_step, values)
                if callback is not None and callback(start_step, log_net, values) is False:
                    return history
        done_total = 0
        const_lr = lr_s.values(0, 1)[0] if isinstance(lr_s, constant) else None
        while done_total < steps:
            n = min(log_every, steps - done_total)
            s0 = start_step + done_total
            lrs = np.full(n, const_lr) if const_lr is not None else evaluate(lr_s, s0, n, "lr", positive=True)
            code, la, lw = reg_arrays(reg, s0, n)
            done, losses = runner(s0, lrs, code, la, lw)
            done_total += done
            if pending is not None:  # the loss before this call's first step is the pending row's
                complete(float(losses[0]) if done > 0 else objective.loss(net))
                pending = None
            if done < n:
                values = row(s0 + done, losses, done)
                if lagged:
                    values["loss"] = objective.loss(net)
                history._append(s0 + done, values)
                raise TrainingDiverged(s0 + done, history)
            values = row(s0 + n, losses, n)
            if lagged:
                pending = (s0 + n, values)
                if done_total < steps:
                    bar.update(done_total, values)
                    continue
                values = complete(objective.loss(net))
                pending = None
            else:
                history._append(s0 + n, values)
            if checkpoint is not None and ((s0 + n - origin) % checkpoint_every == 0 or done_total == steps):
                Checkpoint.of(log_net, s0 + n, history, {"objective": objective.name}).save(checkpoint)
            bar.update(done_total, values)
            if callback is not None and callback(s0 + n, log_net, values) is False:
                break
    finally:
        if runner is not None and hasattr(runner, "finish"):
            runner.finish()  # CUDA: copy the (last finite) weights back into net, also on errors
        numba.set_num_threads(old_threads)
    return history
