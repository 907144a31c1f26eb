"""The paper's experiment as configured by a TOML file: the configuration (defaults, reading, checking
every value at once), the folder of results and its plots. Used by the command line (``fastfeat run``,
``fastfeat sweep``) and by ``ff.sweep``; problems are raised (``ConfigError``, a ``ValueError``), and
only the command line turns them into exit statuses.

A configuration has a ``[teacher]`` table (keywords of ``ff.Teacher.random``) and a ``[protocol]``
table (``m`` and the keywords of ``ff.paper.three_stage``).
"""
import json
import os
import tempfile

import numpy as np

from .networks import Teacher
from .paper import KEYWORDS, argument_problems


class ConfigError(ValueError):
    """A configuration (or sweep) that cannot run; the message lists every problem found."""


def _raise(msg):
    raise ConfigError(" ".join(str(msg).split()))


DEFAULT_CONFIG = {
    "teacher": {"d": 20, "m_star": 3, "activation": "relu_centered", "signs": "mixed", "seed": 0},
    "protocol": {"m": 256, "seed": 0},
}
TEACHER_KEYS = ("d", "m_star", "activation", "signs", "seed", "dtype")


def read_config(path):
    """The configuration: DEFAULT_CONFIG updated by the tables of the TOML file at ``path``. Problems
    with the file itself raise ``ConfigError``; the keys and values are checked by ``check_config``
    (every problem at once)."""
    cfg = {k: dict(v) for k, v in DEFAULT_CONFIG.items()}
    if path is None:
        return cfg
    import tomllib

    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        _raise(f"cannot read config {path}: {exc.strerror or exc}")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        _raise(f"config {path} is not UTF-8 text (byte {exc.start}): TOML files are UTF-8")
    except tomllib.TOMLDecodeError as exc:
        _raise(f"config {path} is not valid TOML: {exc}")
    problems = []
    unknown = sorted(set(data) - set(cfg))
    if unknown:
        problems.append(f"unknown table(s) {unknown}; use [teacher] and [protocol]")
    for table, values in data.items():
        if table not in cfg:
            continue
        if not isinstance(values, dict):
            problems.append(f"{table} must be a table ([{table}])")
            continue
        cfg[table].update(values)
    if problems:
        _raise(f"config {path}: " + "; ".join(problems))
    return cfg


#: [protocol] keys the command line sets itself
CLI_KEYS = ("progress",)


def check_config(cfg, where="config", plots=False):
    """(teacher, m, protocol keywords) of a configuration, after checking every value (types, ranges, every
    keyword of ``ff.paper.three_stage``) without running or compiling anything; all problems are raised
    together as one ``ConfigError``."""
    teacher, m, proto, problems = config_problems(cfg, plots)
    if problems:
        _raise(f"{where}: " + "; ".join(problems))
    return teacher, m, proto


def _unknown(table, keys, known):
    """The phrase for a key of ``[table]`` that is not in ``known``, with the nearest known one."""
    import difflib

    out = []
    for key in keys:
        near = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
        out.append(f"[{table}]: unknown key {key!r}" + (f" (did you mean {near[0]!r}?)" if near else "")
                   + f"; known: {', '.join(known)}" * (not near))
    return out


def _teacher_problems(values):
    """(teacher or None, problems) of the [teacher] table: every bad key named, not only the first."""
    unknown = [k for k in values if k not in TEACHER_KEYS]
    problems = _unknown("teacher", unknown, list(TEACHER_KEYS))
    given = {k: v for k, v in values.items() if k in TEACHER_KEYS}
    for key in ("d", "m_star"):
        if key not in given:
            problems.append(f"[teacher] needs {key}")
    try:
        return Teacher.random(**given), problems
    except (TypeError, ValueError) as exc:
        whole = exc
    # find each key that fails on its own (over a valid base), so that one bad value hides no other
    base = {"d": 4, "m_star": 2}
    found = []
    for key, value in given.items():
        try:
            Teacher.random(**dict(base, **{key: value}))
        except (TypeError, ValueError) as exc:
            text = str(exc)
            found.append(f"[teacher]: {text}" if key in text else f"[teacher]: {key} = {value!r}: {text}")
    return None, problems + (found or [f"[teacher]: {whole}"])


def config_problems(cfg, plots=False):
    """(teacher, m, protocol keywords, problems): ``check_config`` without raising (problems: phrases,
    each naming its table and key, every one of them). ``plots``: the run will draw its plots, whose
    alignment panels need the ``alignment`` metric."""
    teacher, problems = _teacher_problems(cfg["teacher"])
    proto = dict(cfg["protocol"])
    m = proto.pop("m", None)
    if m is None:
        problems.append("[protocol] needs m (the student width)")
        m = 2
    for key in CLI_KEYS:
        if key in proto:
            problems.append(f"[protocol]: {key} is set by the command line (--quiet), not in the config")
            proto.pop(key)
    known = ["m"] + [k for k in KEYWORDS if k not in CLI_KEYS]
    unknown = [k for k in proto if k not in known]
    problems += _unknown("protocol", unknown, known)
    for k in unknown:
        proto.pop(k)
    problems += [f"[protocol]: {p}" for p in argument_problems(teacher, m, **proto)]
    metrics = proto.get("metrics", ("loss", "alignment"))
    if plots and isinstance(metrics, (list, tuple)) and "alignment" not in metrics:
        problems.append(f"[protocol]: metrics = {list(metrics)} leaves out 'alignment', which the plots "
                        "(alignment.png, mass_by_angle.png) need; add it, or leave the plots out (--no-plots)")
    return teacher, m, proto, problems


#: what ``fastfeat run`` writes into its folder
OUTPUTS = ("stage1.json", "stage2.json", "stage3.json", "weights.npz", "summary.json", "loss.png", "alignment.png",
           "mass_by_angle.png", "hessian.npz", "hessian.png")


def make_writable_folder(out):
    """Create folder ``out`` (if needed) and check that files can be created in it (a probe file is made
    and removed); raises OSError otherwise."""
    os.makedirs(out, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix=".fastfeat-probe-", dir=out)
    os.close(fd)
    os.unlink(probe)


def pyplot():
    """matplotlib's pyplot on the Agg backend; ImportError (with the install hint) without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("the plots need matplotlib: pip install 'fastfeat[plot]' (or pass --no-plots)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _loss_key(h):
    """The population loss where it was logged and exists (not for tanh), else the objective's loss."""
    pop = h.metrics.get("alignment.loss")
    return "alignment.loss" if pop is not None and np.all(np.isfinite(pop)) else "loss"


#: one colour per teacher direction, the same in every plot (categorical)
_TEACHER_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
                   "tab:gray", "tab:olive", "tab:cyan")


def _teacher_color(i):
    return _TEACHER_COLORS[i % len(_TEACHER_COLORS)]


def save_figure(fig, path, plt, grid=(), dpi=90):
    """The end of every plot: a light grid on the axes ``grid``, tight layout, the PNG, the figure closed."""
    for ax in grid:
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def _epoch_lines(ax, res, label=True):
    """Dashed vertical lines at the stage-3 epoch boundaries (where the weight decay changes)."""
    c = res.config
    for k in range(1, c["epochs"]):
        ax.axvline(k * c["epoch_steps"], color="0.6", ls=":", lw=1,
                   label="weight-decay epoch boundary" if (label and k == 1) else None)


def plot_loss(res, path, plt):
    """Left: the loss at the start and after stages 1 and 2; right: stage 3 per step, with the epoch
    boundaries; log scale, the loss of f == 0 dashed."""
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(9.6, 4.0), gridspec_kw={"width_ratios": [1, 3]}, sharey=True)
    h1, h2, h3 = res.histories
    floor = 1e-300
    pre = [h1[_loss_key(h1)][0], h1[_loss_key(h1)][-1], h2[_loss_key(h2)][-1]]
    ax0.semilogy([0, 1, 2], np.maximum(pre, floor), "o-", color="k")
    ax0.set_xticks([0, 1, 2], ["initial\n(f = 0)", "after\nstage 1", "after\nstage 2"])
    ax0.set_xlim(-0.4, 2.4)
    ax0.set_title("stages 1 and 2")
    key3 = _loss_key(h3)
    ax1.semilogy(h3.step, np.maximum(h3[key3], floor), "o-" if len(h3) < 4 else "-", color="tab:blue",
                 ms=4, label="stage 3")
    _epoch_lines(ax1, res)
    c = res.config
    for ax in (ax0, ax1):
        ax.axhline(c["zero_loss"], ls="--", color="gray", lw=1, label="loss of f = 0" if ax is ax1 else None)
    ax0.set_ylabel(("population loss" if key3 == "alignment.loss" else "loss") + " (log scale)")
    ax1.set_xlabel("stage 3 step")
    ax1.set_title("stage 3: gradient descent with decreasing weight decay")
    ax1.legend(fontsize=8)
    fig.suptitle(f"{c['activation']}: d={c['d']}, m*={c['m_star']}, m={c['m']}, "
                 f"{'population loss' if c['n'] is None else 'n=%d samples' % c['n']}")
    save_figure(fig, path, plt, grid=(ax0, ax1))


def plot_alignment(res, path, plt):
    """Stage 3: 1 - best cosine and captured mass per teacher direction, and the far mass."""
    h = res.stage3
    if "alignment.best_cos" not in h.metrics:
        raise ValueError("the alignment plot needs metrics=('loss', 'alignment')")
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 4.0))
    best = np.atleast_2d(h["alignment.best_cos"])
    cap = np.atleast_2d(h["alignment.captured_mass"])
    a_star = res.config["teacher_a"]
    for i in range(best.shape[1]):
        color = _teacher_color(i)
        ax1.semilogy(h.step, np.maximum(1 - best[:, i], 1e-16), color=color, label=f"teacher {i}")
        ax2.plot(h.step, cap[:, i], color=color, label=f"teacher {i}")
        ax2.axhline(a_star[i], color=color, ls="--", lw=1)
    far = np.asarray(h["alignment.far_mass"], float)
    ax3.plot(h.step, far, color="k", label="far mass")
    ax3.set_yscale("symlog", linthresh=1e-3)  # log scale that still shows 0
    ax3.set_ylim(bottom=0, top=max(float(far.max()) * 2, 1e-2))  # 0 in range: tick labels in every case
    radius_deg = np.degrees(res.config["radius"])
    ax1.set_title("1 − best cosine (log scale)")
    ax1.set_ylabel("1 − max_j cos(w_j, w*_i)")
    ax2.set_title("captured mass s_i (dashed: a*_i)")
    ax2.set_ylabel(f"s_i = Σ a_j |w_j| within {radius_deg:.3g}°")
    ax3.set_title(f"far mass (angle > {radius_deg:.3g}° from every teacher)")
    ax3.set_ylabel("Σ |a_j| |w_j| (symmetric log scale)")
    for ax in (ax1, ax2, ax3):
        _epoch_lines(ax, res, label=ax is ax3)
        ax.set_xlabel("stage 3 step")
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    ax3.legend(fontsize=8)
    save_figure(fig, path, plt, grid=(ax1, ax2, ax3), dpi=80)


def plot_mass_by_angle(res, path, plt):
    """Final neurons: mass |a_j||w_j| against the angle (degrees) to the nearest teacher direction,
    coloured by that teacher; and the total mass per angle bin (log scale)."""
    al = res.alignment
    ang = np.degrees(al["angle"])
    mass = al["mass"]
    near = al["nearest"]
    radius_deg = np.degrees(res.config["radius"])
    threshold = 1e-3  # ff.metrics.alignment's default: "active" neurons
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10.5, 4.0))
    live = mass > 0
    for i in range(res.config["m_star"]):
        sel = live & (near == i)
        ax1.scatter(ang[sel], mass[sel], s=12, color=_teacher_color(i), label=f"nearest: teacher {i}")
    ax1.set_yscale("log")
    ax1.axvline(radius_deg, color="k", ls="--", lw=1, label=f"neighbourhood radius {radius_deg:.3g}°")
    ax1.axhline(threshold, color="0.5", ls=":", lw=1, label=f"active threshold {threshold:g}")
    ax1.set_xlabel("angle to the nearest teacher direction (degrees)")
    ax1.set_ylabel("neuron mass |a_j| |w_j| (log scale)")
    ax1.set_title(f"{int(al['active_neurons'])} active neurons (mass > {threshold:g}) of {len(mass)}")
    ax1.legend(fontsize=8)
    hi = max(float(ang.max()) if ang.size else 1.0, radius_deg) * 1.05
    bins = np.linspace(0.0, hi, 40)
    ax2.hist(ang, bins=bins, weights=mass, color="tab:blue")
    ax2.set_yscale("log")
    ax2.axvline(radius_deg, color="k", ls="--", lw=1, label=f"neighbourhood radius {radius_deg:.3g}°")
    ax2.set_xlabel("angle to the nearest teacher direction (degrees)")
    ax2.set_ylabel("total mass in the bin (log scale)")
    ax2.set_title("mass by angle")
    ax2.legend(fontsize=8)
    save_figure(fig, path, plt, grid=(ax1, ax2))


def plot_hessian(res, path, plt):
    """The Hessian spectrum at the end (``three_stage(hessian=True)``): every computed eigenvalue in
    ascending order on a symmetric log scale, with the near-zero band and the last weight decay marked;
    and the histogram of log10 |lambda| by sign."""
    h = res.hessian
    ev = h.eigenvalues
    lam = res.config.get("hessian_lam", 0.0)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10.5, 4.0))
    ax1.plot(np.arange(ev.size), ev, ".", ms=2, color="tab:blue")
    ax1.set_yscale("symlog", linthresh=max(h.tol, 1e-300))
    ax1.axhspan(-h.tol, h.tol, color="0.85", label=f"near zero: |λ| ≤ {h.tol:.2g}")
    if lam > 0:
        ax1.axhline(lam, color="tab:green", ls="--", lw=1, label=f"last weight decay λ = {lam:.3g}")
    ax1.set_xlabel("index (ascending)" + ("" if h.complete else f" of the {ev.size} smallest"))
    ax1.set_ylabel("eigenvalue (symmetric log scale)")
    ax1.set_title(f"P = {h.n_params}: {h.n_negative} negative, {h.n_zero} near zero, largest {h.largest:.3g}")
    ax1.legend(fontsize=8, loc="upper left")
    mag = np.abs(ev[np.abs(ev) > 0])
    lo = np.floor(np.log10(mag.min())) if mag.size else -1
    hi = np.ceil(np.log10(mag.max())) if mag.size else 1
    bins = np.linspace(lo, max(hi, lo + 1), 50)
    ax2.hist(np.log10(ev[ev > 0]), bins=bins, color="tab:blue", label="λ > 0")
    ax2.hist(np.log10(-ev[ev < 0]), bins=bins, color="tab:red", alpha=0.7, label="λ < 0 (as |λ|)")
    ax2.axvline(np.log10(h.tol), color="0.4", ls=":", lw=1, label="near-zero threshold")
    if lam > 0:
        ax2.axvline(np.log10(lam), color="tab:green", ls="--", lw=1, label="last weight decay")
    ax2.set_yscale("log")
    ax2.set_xlabel("log10 |eigenvalue|")
    ax2.set_ylabel("count (log scale)")
    ax2.set_title("at the end: population loss + weight decay")
    ax2.legend(fontsize=8)
    save_figure(fig, path, plt, grid=(ax1, ax2))


def write_results(res, teacher, cfg, out, plt, wall):
    """Write a finished protocol into folder ``out`` (histories, weights, summary.json, and the plots when
    ``plt`` is matplotlib's pyplot); returns the summary."""
    for k, h in enumerate(res.histories, 1):
        h.save(os.path.join(out, f"stage{k}.json"))
    np.savez(os.path.join(out, "weights.npz"), W=res.net.W, a=res.net.a, activation=res.net.activation,
             W_star=teacher.W, a_star=teacher.a)
    summary = res.summary()
    summary["wall_seconds"] = wall
    summary["teacher"] = cfg["teacher"]
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    if res.hessian is not None:
        h = res.hessian
        np.savez(os.path.join(out, "hessian.npz"), eigenvalues=h.eigenvalues, tol=h.tol, n_params=h.n_params,
                 largest=h.largest, weight_decay=res.config.get("hessian_lam", 0.0))
    if plt is not None:
        plot_loss(res, os.path.join(out, "loss.png"), plt)
        plot_alignment(res, os.path.join(out, "alignment.png"), plt)
        plot_mass_by_angle(res, os.path.join(out, "mass_by_angle.png"), plt)
        if res.hessian is not None:
            plot_hessian(res, os.path.join(out, "hessian.png"), plt)
    return summary


#: one line on each [protocol] key of the template (``fastfeat template``)
_KEY_NOTES = {
    "n": "None: the exact population loss; an integer: a data set of n samples",
    "seed": "the initialization (and the data set)",
    "noise": "label-noise standard deviation",
    "dtype": '"float64" or "float32"',
    "init_scale": "scale of the symmetric Gaussian initialization",
    "eta1": "stage 1 step size (weight decay 1/eta1 on W)",
    "renormalize": "rescale every row of W after stage 1 ...",
    "row_norm": "... to this norm",
    "ridge": "stage 2 ridge strength, relative to the mean diagonal of the Gram matrix",
    "balance": "balance the norms before stage 3 (positively homogeneous activations)",
    "lr": "stage 3 step size (None: lr_scale / the largest eigenvalue of K(W, W))",
    "lr_a": "stage 3 step size of a (None: lr; 0 trains only W)",
    "lr_scale": "see lr (gradient descent on a is stable below 2)",
    "epochs": "stage 3 epochs; the weight decay is multiplied by lam_factor after each",
    "epoch_steps": "steps per epoch",
    "lam0": "stage 3 weight decay of the first epoch",
    "lam_factor": "its factor from one epoch to the next",
    "lam_floor": "its smallest value (on both layers)",
    "batch_size": "stage 3 minibatch size (with n; None: full batch)",
    "log_every": "steps between logged rows",
    "metrics": "what the histories log (the plots need \"alignment\")",
    "radius": "neighbourhood radius (radians) of the final alignment",
    "n_threads": "threads of stage 3 (None: all)",
    "hessian": "also the Hessian's spectrum at the end (hessian.npz, hessian.png)",
}


def _toml(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def template():
    """A commented configuration file with every key at its default (``fastfeat template``): the teacher
    and the width of the built-in run set, every other key commented out at its default value."""
    from .paper import DEFAULTS

    lines = ["# fastfeat run CONFIG.toml: the three-stage protocol of ff.paper.three_stage (docs/cli.md)", "",
             "[teacher]  # ff.Teacher.random"]
    notes = {"d": "input dimension", "m_star": "teacher neurons (orthonormal directions, m_star <= d)",
             "activation": "relu, abs, relu_centered, erf, linear, he2, he3, tanh",
             "signs": '"mixed" (+1, -1, ...) or "positive" second layer', "seed": "the teacher's directions",
             "dtype": '"float64" or "float32"'}
    teacher = dict(DEFAULT_CONFIG["teacher"], dtype="float64")
    for key in TEACHER_KEYS:
        prefix = "" if key in DEFAULT_CONFIG["teacher"] else "# "
        lines.append(f"{prefix}{key} = {_toml(teacher[key])}".ljust(34) + f"# {notes[key]}")
    lines += ["", "[protocol]  # m and the keywords of ff.paper.three_stage",
              f"m = {DEFAULT_CONFIG['protocol']['m']}".ljust(34) + "# student width (even)"]
    for key in KEYWORDS:
        if key in CLI_KEYS:
            continue
        value = DEFAULT_CONFIG["protocol"].get(key, DEFAULTS[key])
        prefix = "" if key in DEFAULT_CONFIG["protocol"] else "# "
        shown = "(none)" if value is None else _toml(value)
        lines.append(f"{prefix}{key} = {shown}".ljust(34) + f"# {_KEY_NOTES.get(key, '')}")
    return "\n".join(lines) + "\n"
