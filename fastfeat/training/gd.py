"""``ff.train``: many steps per compiled call, schedules per step, metrics every ``log_every`` steps."""
import os
import time
import warnings

import numpy as np

from .._validation import check_int, check_threads
from ..networks import TwoLayer, check_net, check_teacher
from ..objectives.base import Objective
from ..regularizers import check_reg, reg_arrays
from ..schedules import describe
from .checkpoint import Checkpoint, CheckpointError
from .common import (TrainingInterrupted, bad_data_error, check_metrics, deferred_interrupts, exclusive, log_values,
                     lr_factor, steps_per_call, use_threads)
from .history import History
from .progress import Progress
from .steps import check_log_every, check_lrs, step_sizes

DEVICES = ("cpu", "cuda")


class TrainingDiverged(FloatingPointError):
    """Raised by ``ff.train`` when training stops being finite: a step whose loss or gradient is not finite,
    or after which a weight could overflow (reach ``max_float / 4``), is refused, and so is a state whose
    logged loss is not finite.

    The net keeps the last finite weights (those before the refused step). ``.step`` is the global step
    that was refused, ``.history`` what was logged up to then.
    """

    def __init__(self, step, history, reason=None):
        self.step = step
        self.history = history
        reason = reason or "the loss or its gradient is not finite, or the step would overflow the weights"
        super().__init__(
            f"training diverged at step {step}: {reason}; the net keeps the weights from before step {step}. "
            "Lower lr or add regularization.")


def train(net, objective, *, steps, lr, lr_a=None, reg=None, log_every=100, teacher=None, metrics=None,
          progress=False, n_threads=None, device="cpu", callback=None, start_step=0, checkpoint=None,
          checkpoint_every=None, resume=False, lr_scaling=None):
    """Run ``steps`` gradient steps of ``objective`` (+ ``reg``) on ``net``, in place.

    ``lr`` is the step size of W and ``lr_a`` that of a (None: ``lr``); 0 freezes that layer (its weights
    stay bit for bit as they were; the other must be > 0). Both, and the regularizer's lam, may be floats
    or schedules (step -> value), evaluated at every step. ``lr_scaling``: the step-size convention of an
    output scaling (see the net's ``scale``), a factor on both step sizes: ``"mean_field"`` multiplies them
    by m (the mean-field limit of Mei, Montanari & Nguyen 2018 and Chizat & Bach 2018: each neuron moves
    by O(lr) a step), ``"ntk"`` and ``"standard"`` (or None) by 1 (Jacot, Gabriel & Hongler 2018).
    A net with an output scale (``ff.TwoLayer(scale=...)``) is trained in its stored parameters, on either
    device (``objectives.base.RescaledRunner``).
    Steps run many at a time inside compiled calls: up to ``log_every``, and as many as take about
    ``CALL_WORK`` multiply-adds (0.1-0.5 s on 2 cores; the cut depends on the sizes only and never changes
    the weights). ``metrics`` are logged every ``log_every`` steps from ``start_step`` (and there), or, with
    ``log_every`` an increasing array of steps in ``1 .. steps`` (``ff.log_spaced(steps)``: a few hundred
    rows spaced on a log scale), at ``start_step`` plus each of them and at the end. For ``ff.Online``
    the history also gives the time ``alpha = step / d`` (``History.alpha``).
    ``metrics=None`` logs the objective's ``default_metrics``: ``("loss",)``, except
    ``ff.Online``: ``("batch_loss",)``. ``"batch_loss"`` is the mean of the minibatch losses of the steps
    since the last row (what SGD saw; in the first row, the loss of the first step's batch before that
    step), free; ``"loss"`` is ``objective.loss(net)``
    (for ``ff.Online`` the exact population loss, O(m (m + m*) d) per row). Where the kernel computes that
    loss anyway (``ff.Population``, full-batch ``ff.Empirical``), each row takes it from the next compiled
    call (the loss before its first step) instead of computing it again; with a ``callback`` every row is
    complete when it is logged, so it is computed then. ``callback(step, net, values)`` is called after
    each logging; return ``False`` from it to stop early. ``start_step`` offsets the global step
    (schedules, random streams), so a run continued from a checkpoint reproduces the uninterrupted one.

    Ctrl-C (SIGINT, or SIGTERM where the program made it raise KeyboardInterrupt as ``fastfeat run``
    does) stops the call at the end of the current compiled call, within about a second: with
    ``checkpoint=path`` a checkpoint of that exact step is written (also between two rows), then
    ``ff.TrainingInterrupted`` (a KeyboardInterrupt) is raised with ``.step``, ``.history`` and
    ``.checkpoint``; the net holds the weights of that step, and ``resume=True`` continues bit for bit,
    rows included. A second Ctrl-C stops at once (the last checkpoint written at a row stays).

    ``n_threads``: the threads of this call; None: all of numba's, except one for a population or empirical
    step too small to gain from more (``objective._serial``). The weights do not depend on it.

    Divergence: a step whose loss or gradient is not finite, or after which a weight could overflow
    (reach ``max_float / 4``), is refused, and so is a row whose logged ``"loss"`` is not finite; then
    ``ff.TrainingDiverged`` is raised naming the step and the net keeps its last finite weights. A NaN
    or inf put into the objective's teacher or data after it was built is reported as such (ValueError).

    ``checkpoint=path`` writes an ``ff.Checkpoint`` (weights, global step, history, a description of
    the run) every ``checkpoint_every`` steps from ``start_step`` (a multiple of ``log_every``; default
    ``log_every``) and at the end. A checkpoint is written only from a state training can go on from:
    once the next step from it was accepted (at the end of the call, or when it is interrupted, a step
    with lr 0 from a copy of it is tried instead), so the last good one survives any divergence. ``resume=True`` with an existing checkpoint checks the
    file, the net (shape, dtype, activation) and the run (objective and a digest of its teacher or data,
    lr, the regularizer, the metrics, the float type) before anything of ``net`` changes, then loads the
    weights and runs only the steps from its step to ``start_step + steps``, returning the whole
    history: the weights equal those of the uninterrupted run bit for bit (same thread count). A
    different run raises ValueError saying what differs; ``resume="force"`` continues anyway (the
    history's info records the differences; metrics not logged before or after are NaN in those rows).
    """
    check_net(net)
    if not isinstance(objective, Objective):
        raise TypeError(f"objective must be ff.Population, ff.Empirical or ff.Online, got {type(objective).__name__}")
    objective._check(net)
    # the teacher's and the data's arrays at every call, as the net's: a NaN put there after the objective
    # was built would otherwise train silently on another target (relu maps NaN to 0)
    bad = bad_data_error(objective, "nothing was trained")
    if bad is not None:
        raise bad
    steps = check_int(steps, "steps", minimum=1)
    log_every = check_log_every(log_every, steps)
    start_step = check_int(start_step, "start_step", minimum=0)
    if start_step + steps >= 2**63:
        raise ValueError(f"start_step + steps must be < 2**63 (the step counter is int64), got {start_step + steps}")
    lr_s, lr_a_s = check_lrs(lr, lr_a, start_step)
    reg = check_reg(reg)
    if teacher is None:
        teacher = getattr(objective, "teacher", None)
    else:
        check_teacher(teacher)
    metrics = check_metrics(metrics, teacher, objective)
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    factor = lr_factor(lr_scaling, net)
    if getattr(net, "on_device", False) and device != "cuda":
        raise ValueError("net lives on the GPU (ff.gpu.to_device): train it with device='cuda', "
                         "or bring it back with net.to_host()")
    if callback is not None and not callable(callback):
        raise TypeError("callback must be callable(step, net, values)")
    if n_threads is not None:
        n_threads = check_threads(n_threads)
    if resume not in (False, True, "force"):
        raise ValueError(f"resume must be False, True or 'force', got {resume!r}")
    if checkpoint is None and (resume or checkpoint_every is not None):
        raise ValueError("resume and checkpoint_every need checkpoint=path")
    run = None
    if checkpoint is not None:
        checkpoint = _check_checkpoint_path(checkpoint)
        if isinstance(log_every, np.ndarray):
            if checkpoint_every is not None:
                raise ValueError("checkpoint_every needs an int log_every; with an array of logged steps a "
                                 "checkpoint is written at every logged row")
            checkpoint_every = 1
        if checkpoint_every is None:
            checkpoint_every = log_every
        checkpoint_every = check_int(checkpoint_every, "checkpoint_every")
        if not isinstance(log_every, np.ndarray) and checkpoint_every % log_every:
            raise ValueError(f"checkpoint_every must be a multiple of log_every ({log_every}): checkpoints are "
                             f"written when metrics are logged, got {checkpoint_every}")
        run = _Run(objective, net, lr_s, lr_a_s, reg, metrics, lr_scaling)
    with exclusive(net, "ff.train"):
        previous = partial = None
        origin = start_step  # checkpoints every checkpoint_every steps from here (the same after a resume)
        if resume and os.path.exists(checkpoint):
            saved = Checkpoint.load(checkpoint)  # checked whole before anything of net changes
            saved.check_net(net)
            if not start_step <= saved.step <= start_step + steps:
                raise ValueError(f"checkpoint {checkpoint} is at step {saved.step}, outside this run's steps "
                                 f"{start_step}..{start_step + steps}")
            changes = run.differences(saved, origin)
            if changes and resume != "force":
                raise ValueError(f"checkpoint {checkpoint} was written by another run: " + "; ".join(changes)
                                 + ". Resuming would give weights that match neither run; pass resume='force' "
                                 "to continue it anyway")
            partial = _partial_row(saved, checkpoint)
            saved.restore(net)
            previous = saved.history
            if changes:
                previous.info.setdefault("resumed_with_changes", []).append({"step": saved.step, "changes": changes})
            steps -= saved.step - start_step
            start_step = saved.step
            if steps == 0:
                return previous
        return _train(net, objective, steps, (lr_s, lr_a_s, factor), reg, log_every, teacher, metrics, progress,
                      n_threads, device, callback, start_step, checkpoint, checkpoint_every, previous, origin, run,
                      partial)


def _partial_row(saved, path):
    """The batch losses since the last row of a checkpoint written between rows (when a run was
    interrupted), checked against its history; None for one written at a row."""
    partial = saved.info.get("partial_row")
    if partial is None:
        return None
    try:
        since, total, count = int(partial["since"]), float(partial["sum"]), int(partial["count"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"checkpoint {path} has an unreadable partial row: {partial!r}") from None
    if len(saved.history) == 0 or saved.history.step[-1] != since or not since < saved.step or count < 0:
        raise CheckpointError(f"checkpoint {path}: its partial row (since step {since}) does not follow its "
                              f"history, which ends at step {saved.history.step[-1] if len(saved.history) else None}")
    return {"since": since, "sum": total, "count": count}


def _check_checkpoint_path(path):
    """The checkpoint path as a string; its folder must exist and be writable (checked before training)."""
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"checkpoint must be a path (str or os.PathLike), got {type(path).__name__}") from None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if os.path.isdir(path):
        raise ValueError(f"checkpoint {path} is a folder; give a file name, e.g. {os.path.join(path, 'ckpt.npz')}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"checkpoint {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"checkpoint {path}: the folder {folder} is not writable")
    return path


class _Run:
    """What identifies a training run for its checkpoints: compared on resume."""

    def __init__(self, objective, net, lr_s, lr_a_s, reg, metrics, lr_scaling=None):
        self.objective = objective._fingerprint()
        self.lr_scaling = lr_scaling
        self.lr_s = lr_s
        self.lr_a_s = lr_a_s
        self.reg = reg
        self.dtype = np.dtype(net.dtype).name
        self.metrics = list(metrics)

    def describe(self, step, origin):
        """A JSON-able description of the run at checkpoint ``step`` (callable schedules are described by
        their values at the run's first step, the last step before the checkpoint and the next one)."""
        at = sorted({origin, max(origin, step - 1), step})
        out = {"objective": self.objective, "lr": describe(self.lr_s, at)}
        if self.lr_a_s is not None:  # (absent when it is lr: checkpoints of older runs compare equal)
            out["lr_a"] = describe(self.lr_a_s, at)
        if self.lr_scaling not in (None, "standard"):  # (absent likewise)
            out["lr_scaling"] = self.lr_scaling
        return out | {"reg": None if self.reg is None else self.reg._describe(at), "dtype": self.dtype,
                "metrics": self.metrics}

    def differences(self, saved, origin):
        """What differs between this run and the one that wrote ``saved``, as phrases."""
        then = saved.info.get("run")
        if then is None:
            warnings.warn(f"checkpoint at step {saved.step} was written by an older fastfeat without a description "
                          "of its run; resuming without comparing the runs", stacklevel=3)
            return []
        now = self.describe(saved.step, origin)
        out = []
        for key in dict.fromkeys(list(now) + [k for k in then if k in ("lr_a", "lr_scaling")]):
            a, b = then.get(key), now.get(key)
            if key == "objective" and isinstance(a, dict) and isinstance(b, dict):
                for k in sorted(set(a) | set(b)):
                    if a.get(k) != b.get(k):
                        out.append(f"objective {k}: {a.get(k)!r} in the checkpoint, {b.get(k)!r} now")
            elif a != b:
                out.append(f"{key}: {a!r} in the checkpoint, {b!r} now")
        return out


def _probe(objective, state, step, reg):
    """A step with lr 0 from the weights of ``state`` (a net or a checkpoint) at global ``step`` on copies
    of them (the CPU kernels): the loss the kernel sees before that step (of its batch; the same bits the
    next compiled call would give), or None when the kernels would refuse the step (a loss or gradient
    not finite, an overflow)."""
    probe = TwoLayer(np.array(state.W), np.array(state.a), state.activation, state.scale)
    code, la, lw = reg_arrays(reg, step, 1)
    done, losses = objective._runner_for(probe)(step, np.zeros((2, 1)), code, la, lw)
    return float(losses[0]) if done == 1 else None


def _accepts_a_step(objective, ckpt, reg):
    """Whether the kernels would take the next step from the state of ``ckpt``."""
    return _probe(objective, ckpt, ckpt.step, reg) is not None


def _diagnose(objective, exc):
    """A ValueError instead of ``exc`` (a TrainingDiverged) when the objective's teacher or data hold
    NaN or inf (put there after it was built), else ``exc``."""
    bad = bad_data_error(objective, f"training stopped at step {exc.step}; the net keeps the weights from before "
                                    "that step")
    return exc if bad is None else bad


def _train(net, objective, steps, lrs_s, reg, log_every, teacher, metrics, progress, n_threads, device, callback,
           start_step, checkpoint, checkpoint_every, previous, origin, run, partial):
    try:
        with use_threads(n_threads, objective, net, device):
            return _loop(net, objective, steps, lrs_s, reg, log_every, teacher, metrics, progress, device,
                         callback, start_step, checkpoint, checkpoint_every, previous, origin, run, partial)
    except TrainingDiverged as exc:
        err = _diagnose(objective, exc)
        if err is exc:
            raise
        raise err from exc


def _cuda_runner(objective, net):
    """The objective's runner on the GPU (``fastfeat.gpu``, the layer between the objectives and training;
    imported here, when a CUDA run starts)."""
    from ..gpu import runner_for
    return runner_for(objective, net)


def _loop(net, objective, steps, lrs_s, reg, log_every, teacher, metrics, progress, device, callback,
          start_step, checkpoint, checkpoint_every, previous, origin, run, partial):
    history = History(info={"objective": objective.name, "device": device, "start_step": start_step})
    if objective.name == "online":
        history.info["d"] = net.d  # History.alpha = step / d
    if previous is not None:  # continue the saved history (it ends with the row of start_step)
        history.step, history.metrics = previous.step, previous.metrics
        history.info.update({k: v for k, v in previous.info.items() if k not in history.info})
    bar = Progress(steps, progress)
    runner = None
    unverified = None  # a Checkpoint whose state is not yet known to be able to go on
    # rows every log_every steps from origin (or at origin + log_every[i]); compiled calls end there and at the
    # global multiples of `chunk`
    # (sizes only: a resumed run cuts its calls where the first one did, and no cut changes the weights)
    chunk = steps_per_call(objective, net)
    # the batch losses of the steps since the last row: their sum (each call's np.sum, added in order) and count
    acc = [0.0, 0] if partial is None else [float(partial["sum"]), int(partial["count"])]
    with deferred_interrupts() as stop:
        try:
            runner = objective._runner_for(net, None if device == "cpu" else _cuda_runner)
            # CUDA runners keep the weights on the device: metrics and callbacks see the net and objective
            # through runner.view (the loss is computed on the device, weights are copied only when read)
            log_net, log_obj = getattr(runner, "view", (net, objective))
            # "loss" from the kernel: the row of step s gets the loss the next call computes before step s
            lagged = ("loss" in metrics and callback is None and device == "cpu"
                      and objective._kernel_loss_is_loss(net))
            batch = "batch_loss" in metrics
            pending = None  # (step, values, keys) of a row still waiting for the next call's first loss

            def row(step):
                known = {}
                if lagged:
                    known["loss"] = None
                if batch:
                    known["batch_loss"] = acc[0] / acc[1] if acc[1] else np.nan
                    acc[:] = [0.0, 0]
                return log_values(metrics, log_net, log_obj, teacher, reg, step, known)

            def complete(first):
                """Fill the pending row with the loss the kernel saw before its step (``first``; None when
                that step was refused: then its loss is computed, and its batch loss is NaN)."""
                step, values, keys = pending
                for key in keys:
                    if first is not None:
                        values[key] = first
                    else:
                        values[key] = objective.loss(net) if key == "loss" else np.nan
                history._append(step, values)
                bar.note(values)
                return step, values

            def check_row(step, values):
                """A logged loss that is not finite: the state at ``step`` has diverged."""
                loss = values.get("loss")
                if loss is not None and not np.isfinite(loss):
                    raise TrainingDiverged(step, history, "the loss there is not finite")

            def save(ckpt):
                ckpt.history = History(history.step, history.metrics, history.info)  # the rows up to its step
                ckpt.save(checkpoint)

            def snapshot(step):
                return Checkpoint.of(log_net, step, None,
                                     {"objective": objective.name, "run": run.describe(step, origin)})

            def interrupted(step):
                """Stop at ``step`` (a call boundary): a checkpoint there when asked for (with the batch
                losses since the last row, so the resumed run logs the same row), then TrainingInterrupted."""
                nonlocal unverified, pending
                if pending is not None:  # its loss, as the next call would have given it
                    first = _probe(objective, log_net, step, reg)
                    check_row(*complete(np.nan if first is None else first))
                    pending = None
                written = None
                if checkpoint is not None:
                    ckpt = unverified if unverified is not None and unverified.step == step else snapshot(step)
                    unverified = None
                    if history.step[-1] != step:
                        ckpt.info["partial_row"] = {"since": int(history.step[-1]), "sum": acc[0], "count": acc[1]}
                    if _accepts_a_step(objective, ckpt, reg):
                        save(ckpt)
                        written = checkpoint
                raise TrainingInterrupted(step, history, written, stop.signum)

            if partial is None and (previous is None or len(previous) == 0 or previous.step[-1] != start_step):
                values = row(start_step)
                keys = ["loss"] if lagged else []
                if batch:  # the first row's batch loss: that of the first step's batch, before the step
                    if callback is None:
                        keys.append("batch_loss")  # from the first call
                    else:  # every row complete when it is logged
                        first = _probe(objective, log_net, start_step, reg)
                        values["batch_loss"] = np.nan if first is None else first
                if keys:
                    pending = (start_step, values, keys)
                else:
                    check_row(start_step, values)
                    history._append(start_step, values)
                    if callback is not None and callback(start_step, log_net, values) is False:
                        return history
            s, end = start_step, start_step + steps
            if isinstance(log_every, np.ndarray):
                rows_at = origin + log_every

                def next_row(s):
                    i = int(np.searchsorted(rows_at, s, side="right"))
                    return min(end, int(rows_at[i])) if i < rows_at.size else end
            else:
                def next_row(s):
                    return min(end, s + log_every - (s - origin) % log_every)
            while s < end:
                if stop.requested:
                    interrupted(s)
                row_end = next_row(s)
                n = min(row_end - s, chunk - s % chunk)
                lrs = step_sizes(*lrs_s, s, n)
                code, la, lw = reg_arrays(reg, s, n)
                t_call = time.perf_counter()
                done, losses = runner(s, lrs, code, la, lw)
                bar.timed(time.perf_counter() - t_call, done)
                if done > 0:
                    acc[0] += float(np.sum(losses[:done]))
                    acc[1] += done
                if pending is not None:  # the loss before this call's first step is the pending row's
                    check_row(*complete(float(losses[0]) if done > 0 else None))
                    pending = None
                if unverified is not None:
                    if done > 0:  # a step from its state was accepted: the state was finite
                        save(unverified)
                    unverified = None  # else: not written, the last good checkpoint stays
                s += done
                if done < n:
                    if s > history.step[-1]:
                        values = row(s)
                        if lagged:
                            values["loss"] = objective.loss(net)
                        history._append(s, values)
                    raise TrainingDiverged(s, history)
                if s < row_end:
                    bar.update(s - start_step, {})
                    continue
                values = row(s)
                if checkpoint is not None and ((s - origin) % checkpoint_every == 0 or s == end):
                    unverified = snapshot(s)  # written once a step from it is accepted
                if lagged:
                    pending = (s, values, ["loss"])
                    if s < end:
                        bar.update(s - start_step, values)
                        continue
                    complete(objective.loss(net))
                    pending = None
                else:
                    history._append(s, values)
                check_row(s, values)
                bar.update(s - start_step, values)
                if callback is not None and callback(s, log_net, values) is False:
                    break
            if unverified is not None:  # the last checkpoint: written if a step from it would be accepted
                ckpt, unverified = unverified, None
                if _accepts_a_step(objective, ckpt, reg):
                    save(ckpt)
                else:
                    warnings.warn(f"the state at step {ckpt.step} cannot take another step (its loss or gradient is "
                                  f"not finite): its checkpoint was not written and {checkpoint} keeps the last good "
                                  "one; the next call will raise TrainingDiverged", RuntimeWarning, stacklevel=3)
            if stop.requested:  # arrived during the last call: the run is complete, say so with its history
                raise TrainingInterrupted(history.step[-1], history, checkpoint, stop.signum)
        except (TrainingDiverged, TrainingInterrupted):
            raise  # a pending checkpoint is of a state that cannot go on: the last good one stays
        except BaseException:
            # interrupted otherwise (a callback raised, a second Ctrl-C): keep the latest checkpoint if it is good
            if unverified is not None and _accepts_a_step(objective, unverified, reg):
                save(unverified)
            raise
        finally:
            bar.close()
            if runner is not None and hasattr(runner, "finish"):
                runner.finish()  # CUDA: copy the (last finite) weights back into net, also on errors
    return history
