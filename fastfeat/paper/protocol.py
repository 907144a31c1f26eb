"""``three_stage``: the protocol's three stages (the package docstring describes them), its checkpoints
and the Hessian spectrum at the end."""
import inspect
import os
import time
from dataclasses import replace

import numpy as np

from ..analysis import hessian_spectrum
from ..math.activations import HOMOGENEOUS, kernel_matrix
from ..math.reference import features
from ..metrics.alignment import DEFAULT_RADIUS, alignment
from ..networks import TwoLayer, check_teacher
from ..objectives import Empirical, Population
from ..objectives.base import teacher_digest
from ..regularizers import WeightDecay
from ..schedules import geometric
from ..training.checkpoint import Checkpoint
from ..training.common import TrainingInterrupted, log_values
from ..training.gd import TrainingDiverged, train
from ..training.history import History
from .arguments import KEYWORDS, RUN_KEYWORDS, problems_of
from .result import ThreeStageResult


def _zero_loss(teacher, noise):
    """Population loss of f == 0: 1/2 a*^T K(W*, W*) a* + 1/2 noise^2 (NaN without a closed form)."""
    if not teacher.has_population_kernel:
        return float("nan")
    K = kernel_matrix(teacher.activation, teacher.W, teacher.W)
    at = np.asarray(teacher.a, np.float64)
    return float(0.5 * at @ K @ at + 0.5 * noise**2)


def _over_norms(x, nrm):
    """x / nrm, 0 where the norm is 0 (zero rows stay zero)."""
    return np.where(nrm > 0, x / np.where(nrm > 0, nrm, 1.0), 0.0)


def _ridge(G, b, ridge):
    """Solve (G + ridge * mean(diag G) * I) a = b (G symmetric positive semi-definite, float64)."""
    m = G.shape[0]
    scale = float(np.mean(np.diag(G))) or 1.0
    A = G + (ridge * scale) * np.eye(m)
    try:
        return np.linalg.solve(A, b)
    except np.linalg.LinAlgError:  # singular (ridge=0 and repeated neurons): least squares
        return np.linalg.lstsq(A, b, rcond=None)[0]


def _feature_normal_equations(activation, X, y, W, chunk=4096):
    """(Phi^T Phi / n, Phi^T y / n) for Phi = features(X, W), accumulated over chunks of samples so
    the n x m feature matrix never exists whole (memory O(chunk * m + m^2))."""
    n, m = X.shape[0], W.shape[0]
    G = np.zeros((m, m))
    b = np.zeros(m)
    for k0 in range(0, n, chunk):
        Phi = features(activation, X[k0:k0 + chunk], W)
        G += Phi.T @ Phi
        b += Phi.T @ y[k0:k0 + chunk]
    return G / n, b / n


def _lambda_max(G, iters=200, tol=1e-6):
    """Largest eigenvalue of a symmetric positive semi-definite G (power iteration, float64)."""
    v = np.ones(G.shape[0]) / np.sqrt(G.shape[0])
    lam = 0.0
    for _ in range(iters):
        u = G @ v
        new = float(np.linalg.norm(u))
        if new == 0.0:
            return 1.0  # G == 0 (all neurons zero): any step is stable
        v = u / new
        if abs(new - lam) <= tol * new:
            break
        lam = new
    return new


def argument_problems(teacher, m, **kwargs):
    """Every problem with the arguments of ``three_stage(teacher, m, **kwargs)``, found without running
    anything: a list of exceptions (TypeError or ValueError, each naming its argument), empty when the
    call would start. ``teacher=None`` skips the checks that need the teacher (for callers that report
    the teacher's own problems)."""
    return problems_of(teacher, m, kwargs, DEFAULTS)[1]


def check_arguments(teacher, m, **kwargs):
    """The arguments of ``three_stage`` checked and normalized (a dict); raises the first problem's type
    (TypeError or ValueError) with every problem in its message."""
    check_teacher(teacher)
    args, problems = problems_of(teacher, m, kwargs, DEFAULTS)
    if problems:
        raise type(problems[0])("; ".join(str(p) for p in problems))
    return args


def three_stage(teacher, m, *, n=None, seed=0, noise=0.0, dtype="float64",
                init_scale=1.0, eta1=1.0, renormalize=True, row_norm=1.0, ridge=1e-3, balance=True, lr=None,
                lr_a=None, lr_scale=0.6, epochs=5, epoch_steps=150, lam0=1e-2, lam_factor=0.25, lam_floor=0.0,
                batch_size=None, log_every=100, metrics=("loss", "alignment"), radius=DEFAULT_RADIUS,
                progress=False, n_threads=None, hessian=False, checkpoint=None, resume=False):
    """Run the three-stage protocol (docs/paper.md) on a fresh student of width ``m``.

    Parameters
    ----------
    teacher : ff.Teacher
        The target; the student uses its activation and ``dtype``.
    m : int
        Student width (even: the initialization is symmetric).
    n : int or None
        None: the exact population objective (``ff.Population``). An integer: a data set of ``n``
        samples drawn with ``ff.Empirical.sample(teacher, n, noise=noise, seed=seed)``; stage 3 then
        uses minibatches of ``batch_size`` (None: full batch).
    seed : int
        Seeds the initialization (and the data set).
    noise : float
        Label-noise standard deviation.
    init_scale : float
        Scale of the symmetric Gaussian initialization (``ff.TwoLayer.init(scale=...)``).
    eta1 : float
        Stage 1 step size; weight decay ``1/eta1`` on W makes ``W1 = -eta1 grad_W L``.
    renormalize, row_norm : bool, float
        Rescale every row of ``W1`` to norm ``row_norm`` (rows that are exactly 0 stay 0).
    ridge : float
        Stage 2 ridge strength, relative to the mean diagonal of the Gram matrix ``G``. Stage 2 forms
        ``G`` (m x m, float64) and solves with LAPACK: O(m^2) memory and O(m^3) time, about 20 s at
        m = 4096 on 2 busy cores; stages 1 and 3 are the compiled kernels' job at any width.
    balance : bool
        Balance the norms before stage 3 (ignored for activations that are not positively homogeneous).
    lr : float or None
        Stage 3 learning rate. None: ``lr_scale / lambda_max``, with ``lambda_max`` the largest eigenvalue
        of the second-layer Hessian ``K(W, W)`` at the start of stage 3 (after balancing): gradient descent
        on the quadratic in ``a`` is stable for ``lr < 2 / lambda_max``, and the curvature differs by an
        order of magnitude between activations (ReLU's is larger than centered ReLU's).
    lr_a : float or None
        Stage 3 step size of the second layer a (None: ``lr``; 0 keeps a as stage 2 fitted it and trains
        only W).
    lr_scale : float
        See ``lr``.
    epochs, epoch_steps : int
        Stage 3 runs ``epochs * epoch_steps`` steps; the weight decay is constant within an epoch.
    lam0, lam_factor, lam_floor : float
        Weight decay of epoch k: ``max(lam0 * lam_factor**k, lam_floor)`` (on both layers).
    log_every, metrics : int, tuple
        What the histories log (``metrics`` names of ``ff.metrics.REGISTRY``).
    radius : float
        Neighbourhood radius (radians) of the final ``alignment``.
    progress, n_threads :
        Passed to ``ff.train`` in stage 3.
    hessian : bool
        At the end, the spectrum of the exact Hessian of the population loss plus the last epoch's weight
        decay (``ff.hessian_spectrum``; the population loss also when training used a data set): all
        ``P = m (d + 1)`` eigenvalues when ``P <= HESSIAN_FULL_MAX``, else the ``HESSIAN_K`` smallest.
        "Near zero" there means ``|lambda|`` at most the norm of the regularized gradient at the end
        (the directions of an exact symmetry have eigenvalues of that size at a point that is only
        approximately stationary), or the rounding threshold if larger. Needs a closed-form kernel.
    checkpoint : path or None
        A folder (created if needed) for the run's state: ``start.npz``, the student and the histories of
        stages 1-2 at the start of stage 3, and ``stage3.npz``, ``ff.train``'s checkpoint, written at every
        logged row and when the run is interrupted.
    resume : bool
        With ``checkpoint``: continue the run saved there (stages 1-2 are not run again; stage 3 goes on
        from its checkpoint), bit for bit as if it had not stopped (same thread count). The saved run must
        have the same teacher and settings (ValueError naming what differs); without saved state the
        run starts from the beginning.

    Ctrl-C (see ``ff.train``) during stage 3 raises ``ff.TrainingInterrupted`` within about a second; its
    ``.result`` is a ``ThreeStageResult`` of the run so far (stage 3's history up to the last row, the
    net at the step reached, its alignment), ``.result.config["interrupted"]`` the stage and step.

    Returns
    -------
    ThreeStageResult
    """
    args = check_arguments(teacher, m, n=n, seed=seed, noise=noise, dtype=dtype, init_scale=init_scale, eta1=eta1,
                           renormalize=renormalize, row_norm=row_norm, ridge=ridge, balance=balance, lr=lr,
                           lr_a=lr_a, lr_scale=lr_scale, epochs=epochs, epoch_steps=epoch_steps, lam0=lam0,
                           lam_factor=lam_factor, lam_floor=lam_floor, batch_size=batch_size, log_every=log_every,
                           metrics=metrics, radius=radius, progress=progress, n_threads=n_threads,
                           hessian=hessian)
    if resume not in (False, True):
        raise TypeError(f"resume must be True or False, got {resume!r}")
    if checkpoint is not None:
        checkpoint = _checkpoint_folder(checkpoint)
    elif resume:
        raise ValueError("resume=True needs checkpoint=folder")
    (m, n, seed, noise, dtype, init_scale, eta1, renormalize, row_norm, ridge, balance, lr, lr_a, lr_scale, epochs,
     epoch_steps, lam0, lam_factor, lam_floor, batch_size, log_every, metrics, radius, progress, n_threads,
     hessian) = (args[k] for k in ("m",) + KEYWORDS)
    teacher = teacher.astype(dtype) if teacher.dtype != np.dtype(dtype) else teacher
    config = dict(d=teacher.d, m_star=teacher.m, m=m, n=n, seed=seed, noise=noise, dtype=np.dtype(dtype).name,
                  activation=teacher.activation, init_scale=init_scale, eta1=eta1, renormalize=bool(renormalize),
                  row_norm=row_norm, ridge=ridge, balance=bool(balance), lr=lr, lr_a=lr_a, lr_scale=lr_scale,
                  epochs=epochs, epoch_steps=epoch_steps, lam0=lam0, lam_factor=lam_factor, lam_floor=lam_floor,
                  batch_size=batch_size, log_every=log_every, radius=radius,
                  zero_loss=_zero_loss(teacher, noise), teacher_a=np.asarray(teacher.a, float).tolist())
    seconds = {}

    net = TwoLayer.init(teacher.d, m, activation=teacher.activation, scale=init_scale, symmetric=True, seed=seed,
                        dtype=dtype)
    if n is None:
        objective = Population(teacher, noise=noise)
        data = None
    else:
        objective = Empirical.sample(teacher, n, noise=noise, seed=seed, batch_size=batch_size)
        data = (np.asarray(objective.X, np.float64), np.asarray(objective.y, np.float64))

    def log(hist, step, reg=None):
        hist._append(step, log_values(metrics, net, objective, teacher, reg, step))

    start = _load_start(checkpoint, config, teacher) if resume else None
    if start is not None:  # stages 1-2 and the balancing as they were run, lr included
        start.restore(net)
        saved = start.info["protocol"]
        stage1, stage2 = (History.from_dict(saved[k]) for k in ("stage1", "stage2"))
        seconds.update(saved["seconds"])
        lr, balanced = saved["lr"], saved["balanced"]
        config["lr"] = saved["config"]["lr"]
    else:
        stage1, stage2, lr, balanced = _stages_1_2(net, objective, teacher, data, config, seconds, log, lr)
        if checkpoint is not None:
            Checkpoint.of(net, 0, None, {"protocol": {
                "config": config, "teacher": teacher_digest(teacher), "stage1": stage1.to_dict(),
                "stage2": stage2.to_dict(), "seconds": seconds, "lr": lr, "balanced": balanced}}).save(
                    os.path.join(checkpoint, START))

    # Stage 3: GD on both layers with geometrically decreasing weight decay.
    t0 = time.perf_counter() - seconds.get("stage3", 0.0)
    if epochs > 0:
        lam = geometric(lam0, lam_factor, epoch_steps, floor=lam_floor)
        kw = {} if checkpoint is None else {"checkpoint": os.path.join(checkpoint, STAGE3), "resume": resume}
        try:
            stage3 = train(net, objective, steps=epochs * epoch_steps, lr=lr, lr_a=lr_a, reg=WeightDecay(lam),
                           log_every=min(log_every, epoch_steps), teacher=teacher, metrics=metrics,
                           progress=progress, n_threads=n_threads, **kw)
        except TrainingInterrupted as exc:
            exc.history.info.update({"stage": 3, "balanced": bool(balanced), "lr": lr,
                                     "lr_a": lr if lr_a is None else lr_a})
            seconds["stage3"] = time.perf_counter() - t0
            config["interrupted"] = {"stage": 3, "step": exc.step, "steps": epochs * epoch_steps}
            exc.result = ThreeStageResult(net=net, stage1=stage1, stage2=stage2, stage3=exc.history,
                                          alignment=alignment(net, teacher, radius=radius), seconds=seconds,
                                          config=config)
            raise
    else:
        stage3 = History()
        log(stage3, 0)
    stage3.info.update({"stage": 3, "balanced": bool(balanced), "lr": lr, "lr_a": lr if lr_a is None else lr_a})
    seconds["stage3"] = time.perf_counter() - t0

    final = alignment(net, teacher, radius=radius)
    spectrum = None
    if hessian:
        t0 = time.perf_counter()
        lam_end = max(lam0 * lam_factor ** (epochs - 1), lam_floor) if epochs > 0 else 0.0
        spectrum = _final_spectrum(net, Population(teacher, noise=noise), WeightDecay(lam_end))
        config["hessian_lam"] = lam_end
        seconds["hessian"] = time.perf_counter() - t0
    return ThreeStageResult(net=net, stage1=stage1, stage2=stage2, stage3=stage3, alignment=final,
                            seconds=seconds, config=config, hessian=spectrum)


#: the files of ``three_stage(checkpoint=folder)``: the state at the start of stage 3, and stage 3's checkpoint
START = "start.npz"
STAGE3 = "stage3.npz"


def _checkpoint_folder(path):
    """The checkpoint folder as a string, created if needed and checked writable."""
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"checkpoint must be a folder path (str or os.PathLike), got {type(path).__name__}") from None
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"checkpoint {path} is a file; give a folder")
    os.makedirs(path, exist_ok=True)
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(f"checkpoint folder {path} is not writable")
    return path


def _load_start(folder, config, teacher):
    """The saved start of stage 3 of this run (None when there is none), after checking that it was
    written by a run with the same teacher and settings."""
    path = os.path.join(folder, START)
    if not os.path.exists(path):
        return None
    start = Checkpoint.load(path)
    saved = start.info.get("protocol")
    if not isinstance(saved, dict) or not {"config", "teacher", "stage1", "stage2", "seconds", "lr",
                                           "balanced"} <= set(saved):
        raise ValueError(f"checkpoint {path} is not the start of a three_stage run")
    then, now = saved["config"], dict(config, lr=saved["config"].get("lr"))
    changes = [f"{k}: {then.get(k)!r} in the checkpoint, {now.get(k)!r} now" for k in sorted(set(then) | set(now))
               if then.get(k) != now.get(k)]
    if saved["teacher"] != teacher_digest(teacher):
        changes.append("the teacher's weights differ")
    if changes:
        raise ValueError(f"checkpoint {path} was written by another run: " + "; ".join(changes)
                         + "; resume it with its own settings, or start over in another folder")
    return start


def _stages_1_2(net, objective, teacher, data, config, seconds, log, lr):
    """Stages 1 and 2, the balancing and the choice of lr, in place on ``net``: (stage1, stage2, lr,
    balanced)."""
    c = config
    # Stage 1: one step on W with weight decay 1/eta1 (lam_a = 0, a untouched): W1 = -eta1 grad_W L.
    t0 = time.perf_counter()
    stage1 = History(info={"stage": 1, "objective": objective.name})
    log(stage1, 0)
    W0 = net.W.copy()
    reg1 = WeightDecay(lam_a=0.0, lam_w=1.0 / c["eta1"])
    gW, _ = objective.grad(net, reg1)
    net.W -= net.W.dtype.type(c["eta1"]) * gW
    if c["renormalize"]:
        nrm = np.linalg.norm(net.W.astype(np.float64), axis=1)
        scale = _over_norms(c["row_norm"], nrm)
        net.W *= scale[:, None].astype(net.W.dtype)
    if not np.all(np.isfinite(net.W)):
        net.W[...] = W0
        raise TrainingDiverged(1, stage1, f"stage 1 (one step of size eta1 = {c['eta1']:g} from weights of scale "
                               f"init_scale = {c['init_scale']:g}, rows rescaled to row_norm = {c['row_norm']:g}) gave "
                               f"weights beyond the range of {net.dtype}; lower init_scale or eta1")
    log(stage1, 1)
    seconds["stage1"] = time.perf_counter() - t0

    # Stage 2: W frozen, a = ridge regression; then the balancing that starts stage 3.
    t0 = time.perf_counter()
    stage2 = History(info={"stage": 2, "objective": objective.name, "ridge": c["ridge"]})
    log(stage2, 0)
    W64 = np.asarray(net.W, np.float64)
    if data is None:
        G = kernel_matrix(teacher.activation, W64, W64)
        b = kernel_matrix(teacher.activation, W64, teacher.W) @ np.asarray(teacher.a, np.float64)
    else:
        G, b = _feature_normal_equations(teacher.activation, *data, W64)
    a_new = _ridge(G, b, c["ridge"])
    if not (np.all(np.isfinite(a_new)) and np.all(np.isfinite(a_new.astype(net.a.dtype)))):
        raise TrainingDiverged(1, stage2, f"stage 2's ridge regression (ridge = {c['ridge']:g}, rows of norm "
                               f"row_norm = {c['row_norm']:g}) gave a second layer beyond the range of {net.dtype}")
    net.a[:] = a_new
    log(stage2, 1)
    balanced = c["balance"] and teacher.activation in HOMOGENEOUS
    if balanced:
        a64 = np.asarray(net.a, np.float64)
        nrm = np.linalg.norm(W64, axis=1)
        root = np.sqrt(np.abs(a64) * nrm)
        rescale = _over_norms(root, nrm)
        net.W[:] = W64 * rescale[:, None]
        net.a[:] = np.sign(a64) * root
        G = G * rescale[:, None] * rescale[None, :]  # homogeneous: K(c u, c' v) = c c' K(u, v)
    if lr is None:
        lam_max = _lambda_max(G)
        lr = c["lr_scale"] / lam_max
        if not (np.isfinite(lr) and lr > 0):
            raise ValueError(f"lr: lr_scale / lambda_max = {c['lr_scale']:g} / {lam_max:g} is not a usable step size; "
                             "give lr explicitly")
        config["lr"] = lr
    seconds["stage2"] = time.perf_counter() - t0
    return stage1, stage2, lr, bool(balanced)


#: ``three_stage(hessian=True)`` computes every eigenvalue up to this many parameters (eigvalsh of a P x P
#: matrix: 8 P^2 bytes, O(P^3) time, about 10 s at P = 6000 on 2 cores), else the ``HESSIAN_K`` smallest
HESSIAN_FULL_MAX = 6000
HESSIAN_K = 40


def _final_spectrum(net, objective, reg):
    """The Hessian diagnostic of ``three_stage``: ``hessian_spectrum`` with "near zero" meaning at most the
    norm of the regularized gradient (or the rounding threshold)."""
    gW, ga = objective.grad(net, reg)
    gnorm = float(np.sqrt(np.sum(np.asarray(gW, np.float64) ** 2) + np.sum(np.asarray(ga, np.float64) ** 2)))
    P = net.m * (net.d + 1)
    k = None if P <= HESSIAN_FULL_MAX else min(HESSIAN_K, P - 1)
    spec = hessian_spectrum(net, objective, reg, k=k)
    if gnorm > spec.tol:  # the same eigenvalues, counted against the larger threshold
        ev = spec.eigenvalues
        spec = replace(spec, tol=gnorm, n_zero=int(np.sum(np.abs(ev) <= gnorm)), n_negative=int(np.sum(ev < -gnorm)))
    return spec


#: the defaults of ``three_stage``'s keywords (what ``argument_problems`` checks when one is not given)
DEFAULTS = {k: p.default for k, p in inspect.signature(three_stage).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and k not in RUN_KEYWORDS}
assert set(DEFAULTS) == set(KEYWORDS), "every keyword of three_stage needs its check in arguments.CHECKS"
