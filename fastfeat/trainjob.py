"""``fastfeat train CONFIG``: one ``ff.train`` run of any objective, described by a TOML file.

A configuration has four tables, each key optional (``DEFAULTS``)::

    [teacher]            # ff.Teacher.random
    d = 20
    m_star = 3
    activation = "relu_centered"

    [student]            # ff.TwoLayer.init
    m = 64
    activation = "relu"  # default: the teacher's
    scale = 0.5

    [objective]          # kind: "population", "empirical" (n samples) or "online"
    kind = "online"
    batch_size = 1

    [train]              # ff.train
    steps = 100000
    lr = 0.01            # a number, or a schedule: {geometric = {start = .., factor = .., every = ..}}
    weight_decay = 1e-4  # ff.WeightDecay(lam) (or path_norm = lam: ff.PathNorm)
    log_rows = 200       # log-spaced rows (ff.log_spaced) instead of every log_every steps

Every problem of a file is reported at once (``experiment.ConfigError``), each naming its table and key.
"""
import json
import os

import numpy as np

from .experiment import TEACHER_KEYS, ConfigError, _unknown
from .networks import Teacher, TwoLayer
from .objectives import Empirical, Online, Population
from .regularizers import PathNorm, WeightDecay
from .schedules import geometric, piecewise
from .training import log_spaced

DEFAULTS = {
    "teacher": {"d": 20, "m_star": 3, "activation": "relu_centered", "signs": "mixed", "seed": 0,
                "dtype": "float64"},
    "student": {"m": 64, "activation": None, "scale": 0.5, "seed": 1, "symmetric": False, "output_scale": None},
    "objective": {"kind": "population", "noise": 0.0, "n": None, "batch_size": None, "seed": 0},
    "train": {"steps": 2000, "lr": 0.5, "lr_a": None, "weight_decay": 0.0, "path_norm": 0.0, "log_every": 100,
              "log_rows": None, "metrics": None, "n_threads": None, "lr_scaling": None},
}
KINDS = ("population", "empirical", "online")
#: what ``fastfeat train`` writes into its folder
OUTPUTS = ("history.json", "weights.npz", "summary.json", "loss.png")


def read(path):
    """DEFAULTS updated by the tables of the TOML file at ``path`` (None: the defaults). Problems with the
    file itself (unreadable, not TOML, unknown tables) raise ``ConfigError``."""
    import tomllib
    cfg = {k: dict(v) for k, v in DEFAULTS.items()}
    if path is None:
        return cfg
    try:
        with open(path, "rb") as f:
            data = tomllib.loads(f.read().decode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config {path} is not valid UTF-8 TOML: {exc}") from None
    unknown = sorted(set(data) - set(cfg))
    if unknown:
        raise ConfigError(f"config {path}: unknown table(s) {unknown}; use {', '.join(f'[{t}]' for t in cfg)}")
    for table, values in data.items():
        if not isinstance(values, dict):
            raise ConfigError(f"config {path}: {table} must be a table ([{table}])")
        cfg[table].update(values)
    return cfg


#: what a failed conversion leaves (its problem is recorded)
_BAD = object()


def _ok(value):
    return None if value is _BAD else value


def _schedule(value, key):
    """A number, or {geometric = {start, factor, every[, floor]}} / {piecewise = {boundaries, values}}."""
    if not isinstance(value, dict):
        return value
    if len(value) != 1 or next(iter(value)) not in ("geometric", "piecewise"):
        raise ValueError(f"[train] {key}: a number, or a table {{geometric = {{...}}}} or {{piecewise = {{...}}}}, "
                         f"got {value!r}")
    kind, args = next(iter(value.items()))
    if not isinstance(args, dict):
        raise ValueError(f"[train] {key}.{kind} must be a table of its arguments")
    try:
        return geometric(**args) if kind == "geometric" else piecewise(**args)
    except TypeError as exc:
        raise ValueError(f"[train] {key}.{kind}: {exc}") from None


def build(cfg):
    """(teacher, net, objective, keywords of ff.train) of a configuration; every problem raised together as
    one ConfigError, each naming its table and key."""
    problems = []
    for table, known in (("teacher", TEACHER_KEYS),) + tuple((t, tuple(DEFAULTS[t])) for t in DEFAULTS
                                                             if t != "teacher"):
        problems += _unknown(table, [k for k in cfg[table] if k not in known], list(known))
    t, s, o, tr = ({k: v for k, v in cfg[name].items() if k in DEFAULTS[name]} for name in DEFAULTS)

    def attempt(table, fn):
        try:
            return fn()
        except (TypeError, ValueError) as exc:
            text = str(exc)
            problems.append(text if text.startswith(f"[{table}]") else f"[{table}]: {text}")
            return _BAD

    teacher = _ok(attempt("teacher", lambda: Teacher.random(t["d"], t["m_star"], activation=t["activation"],
                                                         signs=t["signs"], seed=t["seed"], dtype=t["dtype"])))
    net = _ok(attempt("student", lambda: TwoLayer.init(t["d"], s["m"], activation=s["activation"] or t["activation"],
                                                   scale=s["scale"], seed=s["seed"], symmetric=s["symmetric"],
                                                   dtype=t["dtype"], output_scale=s["output_scale"])))
    objective = None
    if o["kind"] not in KINDS:
        problems.append(f"[objective]: kind must be one of {KINDS}, got {o['kind']!r}")
    elif teacher is not None:
        if o["kind"] == "population":
            objective = _ok(attempt("objective", lambda: Population(teacher, noise=o["noise"])))
        elif o["kind"] == "empirical":
            if o["n"] is None:
                problems.append("[objective]: kind = \"empirical\" needs n (the number of samples)")
            else:
                objective = _ok(attempt("objective", lambda: Empirical.sample(
                    teacher, o["n"], noise=o["noise"], seed=o["seed"], batch_size=o["batch_size"])))
        else:
            objective = _ok(attempt("objective", lambda: Online(teacher, batch_size=o["batch_size"] or 1,
                                                                noise=o["noise"], seed=o["seed"])))
    kw = {"steps": tr["steps"], "lr": attempt("train", lambda: _schedule(tr["lr"], "lr")),
          "lr_a": attempt("train", lambda: _schedule(tr["lr_a"], "lr_a")), "metrics": tr["metrics"],
          "n_threads": tr["n_threads"], "lr_scaling": tr["lr_scaling"]}
    wd = attempt("train", lambda: _schedule(tr["weight_decay"], "weight_decay"))
    pn = attempt("train", lambda: _schedule(tr["path_norm"], "path_norm"))
    wd, pn = _ok(wd), _ok(pn)
    if wd and pn:
        problems.append("[train]: weight_decay and path_norm: give one of them")
    kw["reg"] = _ok(attempt("train", lambda: WeightDecay(wd)) if wd else
                    attempt("train", lambda: PathNorm(pn)) if pn else None)
    if tr["log_rows"] is not None:
        kw["log_every"] = attempt("train", lambda: log_spaced(tr["steps"], tr["log_rows"]))
    else:
        kw["log_every"] = tr["log_every"]
    # the arguments of ff.train checked without running it (those that need the net and the objective
    # only when both could be built)
    problems += _train_problems(net, objective, kw)
    if problems:
        raise ConfigError("; ".join(problems))
    return teacher, net, objective, kw


def _train_problems(net, objective, kw):
    """The problems ``ff.train`` would raise with these keywords, found without running it."""
    from ._validation import check_int, check_threads
    from .training.common import check_lr_scaling, check_metrics
    from .training.steps import check_log_every, check_lrs

    problems = []
    checks = [lambda: check_int(kw["steps"], "steps", minimum=1),
              lambda: None if kw["n_threads"] is None else check_threads(kw["n_threads"])]
    if kw["lr"] is not _BAD and kw["lr_a"] is not _BAD:
        checks.append(lambda: check_lrs(kw["lr"], kw["lr_a"], 0))
    checks.append(lambda: check_lr_scaling(kw["lr_scaling"]))
    if net is not None and objective is not None:
        checks += [lambda: check_metrics(kw["metrics"], getattr(objective, "teacher", None), objective),
                   lambda: objective._check(net)]
    for check in checks:
        try:
            check()
        except (TypeError, ValueError) as exc:
            problems.append(f"[train]: {exc}")
    if not problems and kw["log_every"] is not _BAD:
        try:
            check_log_every(kw["log_every"], kw["steps"])
        except (TypeError, ValueError) as exc:
            problems.append(f"[train]: {exc}")
    return problems


def summary(history, net, objective, cfg, seconds, interrupted=None):
    """The plain-JSON summary of a run: the last row's scalar values, the loss, timings, the configuration."""
    last = {k: float(v[-1]) for k, v in history.metrics.items() if np.ndim(v[-1]) == 0}
    out = {"step": int(history.step[-1]), "last": last, "loss": float(objective.loss(net)), "seconds": seconds,
           "config": cfg}
    if "d" in history.info:
        out["alpha"] = float(history.alpha[-1])
    if interrupted is not None:
        out["interrupted"] = interrupted
    return out


def write(out, history, net, teacher, objective, cfg, seconds, plt=None, interrupted=None):
    """Write a run's outputs into folder ``out``; returns the summary."""
    history.save(os.path.join(out, "history.json"))
    np.savez(os.path.join(out, "weights.npz"), W=net.W, a=net.a, activation=net.activation, W_star=teacher.W,
             a_star=teacher.a, scale=json.dumps(net.scale))
    s = summary(history, net, objective, cfg, seconds, interrupted)
    tmp = os.path.join(out, "summary.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(s, f, indent=2)
    os.replace(tmp, os.path.join(out, "summary.json"))
    if plt is not None:
        plot(history, os.path.join(out, "loss.png"), plt)
    return s


def plot(history, path, plt):
    """Every scalar metric against the step (log-log where the steps span a decade)."""
    from .experiment import save_figure
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    x = history.alpha if "d" in history.info else history.step
    for name, v in history.metrics.items():
        v = np.asarray(v, float)
        if v.ndim == 1 and np.any(np.isfinite(v)):
            ax.plot(x[1:] if x[0] == 0 else x, v[1:] if x[0] == 0 else v, label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("alpha = steps / d" if "d" in history.info else "step")
    ax.legend(fontsize=8)
    save_figure(fig, path, plt, grid=(ax,))
