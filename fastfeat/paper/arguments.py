"""The arguments of ``three_stage``: each keyword with the check of its value, and every problem of a call
found at once, before anything runs (``fastfeat run`` reports them all)."""
import numpy as np

from .._validation import as_dtype, check_float, check_int, check_noise, check_threads
from ..networks import check_teacher
from ..training.common import check_metrics


def _check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__}")
    return bool(value)


def _check_seed(value, name="seed"):
    value = check_int(value, name, minimum=0)
    if value >= 2**63:
        raise ValueError(f"{name} must be < 2**63, got {value}")
    return value


def _optional(check):
    return lambda value, name: None if value is None else check(value, name)


def _positive(value, name):
    return check_float(value, name, positive=True)


def _scale(value, name):
    v = check_float(value, name, positive=True)
    if not SCALE_RANGE[0] <= v <= SCALE_RANGE[1]:
        raise ValueError(f"{name} must lie in [{SCALE_RANGE[0]:g}, {SCALE_RANGE[1]:g}] (its square enters the "
                         f"kernels), got {v:g}")
    return v


def _nonnegative(value, name):
    return check_float(value, name, nonnegative=True)


#: the range of the scale settings (init_scale, eta1, row_norm): kernels and Gram matrices hold their
#: squares, which must neither overflow nor vanish in float64
SCALE_RANGE = (1e-100, 1e100)


#: each keyword of ``three_stage`` and the check of its value alone (value, name) -> normalized value
CHECKS = {
    "n": _optional(lambda v, k: check_int(v, k)),
    "seed": _check_seed,
    "noise": check_noise,
    "dtype": lambda v, k: np.dtype(as_dtype(v, k)).name,
    "init_scale": lambda v, k: _scale(v, k),
    "eta1": lambda v, k: _scale(v, k),
    "renormalize": _check_bool,
    "row_norm": lambda v, k: _scale(v, k),
    "ridge": _nonnegative,
    "balance": _check_bool,
    "lr": _optional(_positive),
    "lr_a": _optional(_nonnegative),
    "lr_scale": _positive,
    "epochs": lambda v, k: check_int(v, k, minimum=0),
    "epoch_steps": lambda v, k: check_int(v, k),
    "lam0": _nonnegative,
    "lam_factor": _positive,
    "lam_floor": _nonnegative,
    "batch_size": _optional(lambda v, k: check_int(v, k)),
    "log_every": lambda v, k: check_int(v, k),
    "metrics": None,  # needs the teacher: checked below
    "radius": _nonnegative,
    "progress": _check_bool,
    "n_threads": _optional(check_threads),
    "hessian": _check_bool,
}
#: the keywords of ``three_stage`` (besides ``teacher`` and ``m``) that set up the run (a configuration's
#: [protocol] keys); ``RUN_KEYWORDS`` say where its state is kept, and are no part of a configuration
KEYWORDS = tuple(CHECKS)
RUN_KEYWORDS = ("checkpoint", "resume")


def problems_of(teacher, m, kwargs, defaults):
    """(normalized arguments, problems) of a ``three_stage`` call; ``defaults``: the values of the keywords not
    given (``three_stage``'s)."""
    problems = []
    unknown = sorted(set(kwargs) - set(KEYWORDS))
    if unknown:
        problems.append(TypeError(f"three_stage got unknown keyword(s) {unknown}; known: {list(KEYWORDS)}"))
    if teacher is not None:
        try:
            check_teacher(teacher)
        except TypeError as exc:
            problems.append(exc)
            teacher = None
    args = {}
    try:
        args["m"] = check_int(m, "m", minimum=2)
        if args["m"] % 2:
            raise ValueError(f"m must be even (symmetric initialization), got m={m}")
    except (TypeError, ValueError) as exc:
        problems.append(exc)
    for key, check in CHECKS.items():
        value = kwargs.get(key, defaults[key])
        if check is None:
            args[key] = value
            continue
        try:
            args[key] = check(value, key)
        except (TypeError, ValueError) as exc:
            problems.append(exc)
    n, bs = args.get("n", kwargs.get("n")), args.get("batch_size")
    if bs is not None and "n" in args:
        if n is None:
            problems.append(ValueError("batch_size needs a sampled data set (n=...): the population objective "
                                       "has no batches"))
        elif bs > n:
            problems.append(ValueError(f"batch_size must be <= n = {n}, got {bs}"))
    if teacher is not None:
        if args.get("hessian") and not teacher.has_population_kernel:
            problems.append(ValueError(f"hessian: activation {teacher.activation!r} has no closed-form population "
                                       "kernel, so no exact Hessian"))
        if "n" in args and n is None and not teacher.has_population_kernel:
            problems.append(ValueError(f"activation {teacher.activation!r} has no closed-form population kernel: "
                                       "pass n= to train on a sampled data set"))
        try:
            args["metrics"] = check_metrics(args["metrics"], teacher)
        except (TypeError, ValueError) as exc:
            problems.append(exc)
    return args, problems
