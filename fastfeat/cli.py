"""The ``fastfeat`` command line.

``fastfeat run [CONFIG.toml] [--out DIR] [--force]`` runs the three-stage protocol of
``ff.paper.three_stage`` (the built-in configuration below when no file is given) and writes to ``DIR``:

- ``stage1.json``, ``stage2.json``, ``stage3.json``: the History of each stage;
- ``weights.npz``: the final student (``W``, ``a``) and the teacher (``W_star``, ``a_star``);
- ``summary.json``: final diagnostics, the loss of f == 0, timings and the full configuration;
- ``loss.png``, ``alignment.png``, ``mass_by_angle.png`` (needs matplotlib: the ``plot`` extra);
- with ``hessian = true``: ``hessian.npz`` (the eigenvalues at the end) and ``hessian.png``.

Before anything runs, the whole configuration (every keyword of ``three_stage``, types and ranges) and
``DIR`` are checked (not a file, writable, no results of an earlier run unless ``--force``); all problems
are reported on one ``fastfeat: error:`` line with exit status 2, and nothing is created. A protocol that
diverges ends with one such line and exit status 1.

``fastfeat info`` prints the versions, threads, numba's threading layer and whether CUDA is usable.

A configuration file has a ``[teacher]`` table (keywords of ``ff.Teacher.random``) and a
``[protocol]`` table (``m`` and the keywords of ``ff.paper.three_stage``)::

    [teacher]
    d = 20
    m_star = 3
    activation = "relu_centered"
    signs = "mixed"
    seed = 0

    [protocol]
    m = 256
    # n = 20000          # a sampled data set instead of the exact population objective
    # lam0 = 0.01        # ... any keyword of ff.paper.three_stage
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np

DEFAULT_CONFIG = {
    "teacher": {"d": 20, "m_star": 3, "activation": "relu_centered", "signs": "mixed", "seed": 0},
    "protocol": {"m": 256, "seed": 0},
}
TEACHER_KEYS = ("d", "m_star", "activation", "signs", "seed", "dtype")


def _fail(msg, code=2):
    """Report ``msg`` as one ``fastfeat: error:`` line and exit with ``code`` (2: bad input)."""
    print(f"fastfeat: error: {' '.join(str(msg).split())}", file=sys.stderr)
    raise SystemExit(code)


def load_config(path):
    """The configuration: DEFAULT_CONFIG updated by the tables of the TOML file at ``path``. Problems
    with the file itself end the program (``fastfeat: error:``, exit status 2); the values are checked
    by ``check_config``."""
    cfg = {k: dict(v) for k, v in DEFAULT_CONFIG.items()}
    if path is None:
        return cfg
    import tomllib

    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        _fail(f"cannot read config {path}: {exc.strerror or exc}")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        _fail(f"config {path} is not UTF-8 text (byte {exc.start}): TOML files are UTF-8")
    except tomllib.TOMLDecodeError as exc:
        _fail(f"config {path} is not valid TOML: {exc}")
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
    bad = sorted(set(cfg["teacher"]) - set(TEACHER_KEYS))
    if bad:
        problems.append(f"[teacher]: unknown key(s) {bad}; known: {list(TEACHER_KEYS)}")
    if problems:
        _fail(f"config {path}: " + "; ".join(problems))
    return cfg


#: [protocol] keys the command line sets itself
CLI_KEYS = ("progress",)


def check_config(cfg, where="config"):
    """(teacher, m, protocol keywords) of a configuration, after checking every value (types, ranges, every
    keyword of ``ff.paper.three_stage``) without running or compiling anything; all problems are reported
    together as one ``fastfeat: error:`` line (exit status 2)."""
    teacher, m, proto, problems = config_problems(cfg)
    if problems:
        _fail(f"{where}: " + "; ".join(problems))
    return teacher, m, proto


def config_problems(cfg):
    """(teacher, m, protocol keywords, problems): ``check_config`` without exiting (problems: phrases)."""
    import fastfeat as ff

    problems = []
    teacher = None
    try:
        teacher = ff.Teacher.random(**cfg["teacher"])
    except (TypeError, ValueError) as exc:
        problems.append(f"[teacher]: {exc}")
    proto = dict(cfg["protocol"])
    m = proto.pop("m", None)
    if m is None:
        problems.append("[protocol] needs m (the student width)")
        m = 2
    for key in CLI_KEYS:
        if key in proto:
            problems.append(f"[protocol]: {key} is set by the command line (--quiet), not in the config")
            proto.pop(key)
    problems += [f"[protocol]: {p}" for p in ff.paper.argument_problems(teacher, m, **proto)]
    return teacher, m, proto, problems


#: what ``fastfeat run`` writes into its folder
OUTPUTS = ("stage1.json", "stage2.json", "stage3.json", "weights.npz", "summary.json", "loss.png", "alignment.png",
           "mass_by_angle.png", "hessian.npz", "hessian.png")


def prepare_out(out, force=False):
    """Make sure the results can be written to folder ``out`` before anything runs: not a file, no earlier
    results there unless ``force``, writable (a probe file is created and removed). Creates the folder."""
    if os.path.exists(out) and not os.path.isdir(out):
        _fail(f"--out {out} is a file, not a folder")
    if os.path.isdir(out) and not force:
        old = [name for name in OUTPUTS if os.path.exists(os.path.join(out, name))]
        if old:
            _fail(f"--out {out} already holds results ({', '.join(old)}); choose another folder or pass --force "
                  "to overwrite them")
    try:
        make_writable_folder(out)
    except OSError as exc:
        _fail(f"--out {out} is not writable: {exc.strerror or exc}")


def make_writable_folder(out):
    """Create folder ``out`` (if needed) and check that files can be created in it (a probe file is made
    and removed); raises OSError otherwise."""
    os.makedirs(out, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix=".fastfeat-probe-", dir=out)
    os.close(fd)
    os.unlink(probe)


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        _fail("the plots need matplotlib: pip install 'fastfeat[plot]' (or pass --no-plots)")
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


def run(config_path=None, out="fastfeat-run", plots=True, progress=True, force=False):
    """``fastfeat run``: returns the ``ThreeStageResult``. The whole configuration and the output folder are
    checked before anything runs (``fastfeat: error:``, exit status 2); a run that fails (diverges) ends
    with one ``fastfeat: error:`` line and exit status 1."""
    import fastfeat as ff

    cfg = load_config(config_path)
    teacher, m, proto = check_config(cfg, f"config {config_path}" if config_path else "config")
    plt = _pyplot() if plots else None  # fail before the run, not after it
    prepare_out(out, force)
    say = print if progress else (lambda *a, **k: None)
    say(f"fastfeat {ff.__version__}: three-stage protocol, teacher {cfg['teacher']}, m={m}, {proto or 'defaults'}")
    t0 = time.perf_counter()
    try:
        res = ff.paper.three_stage(teacher, m, progress=progress, **proto)
    except ff.TrainingDiverged as exc:
        _fail(f"the protocol stopped: {exc}", code=1)
    wall = time.perf_counter() - t0
    summary = write_results(res, teacher, cfg, out, plt, wall)
    s = summary
    say(f"done in {wall:.1f} s: population loss {s['loss']:.3g} ({s['relative_loss']:.3g} of f = 0), best cosine "
        f"{np.round(s['best_cos'], 4).tolist()}, captured mass {np.round(s['captured_mass'], 4).tolist()} "
        f"(a* = {s['teacher_a']}), far mass {s['far_mass']:.3g}")
    if res.hessian is not None:
        h = res.hessian
        say(f"Hessian at the end: {h.n_negative} negative and {h.n_zero} near-zero eigenvalues of "
            f"{h.eigenvalues.size}{'' if h.complete else ' computed'} (P = {h.n_params}), smallest "
            f"{h.eigenvalues[0]:.3g}, largest {h.largest:.3g}")
    extra = ", hessian.npz" if res.hessian is not None else ""
    pngs = ", loss.png, alignment.png, mass_by_angle.png" + (", hessian.png" if res.hessian is not None else "")
    say(f"wrote {out}{os.sep}: summary.json, weights.npz, stage1-3.json{extra}" + (pngs if plots else ""))
    return res


def sweep_command(args):
    """``fastfeat sweep``: every run checked first, then the sweep on Dask; results.csv and a summary plot."""
    from . import sweeps as sw

    if args.workers is not None and args.workers < 1:
        _fail(f"--workers must be >= 1, got {args.workers}")
    if args.threads_per_run < 1:
        _fail(f"--threads-per-run must be >= 1, got {args.threads_per_run}")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        _fail(f"--out {args.out} is a file, not a folder")
    try:  # the sweep checks every run, then --out, before it starts anything
        rows = sw.sweep(args.sweep, out=args.out, workers=args.workers, scheduler=args.scheduler,
                        threads_per_run=args.threads_per_run, plots=args.plots, progress=not args.quiet)
    except (ImportError, OSError) as exc:
        _fail(str(exc))
    swept = sw.swept_keys(rows)
    status = {}
    for r in rows:
        status[r["status"]] = status.get(r["status"], 0) + 1
    if swept and args.plot:
        try:
            sw.plot(rows, os.path.join(args.out, "summary.png"), x=swept[0], y=args.plot,
                    by=swept[1] if len(swept) > 1 else None)
        except SystemExit:
            pass  # no matplotlib: the table is what counts
    if not args.quiet:
        print(f"{len(rows)} runs: " + ", ".join(f"{n} {k}" for k, n in sorted(status.items()))
              + f"; wrote {os.path.join(args.out, 'results.csv')}")
    return rows


def _version(module):
    try:
        mod = __import__(module, fromlist=["__version__"])
        return getattr(mod, "__version__", "installed")
    except Exception as exc:  # noqa: BLE001 - report anything, never crash
        return f"not available ({type(exc).__name__})"


def info(file=None):
    """``fastfeat info``: versions, threads, threading layer, CUDA."""
    out = file or sys.stdout
    import numba

    import fastfeat as ff

    lines = [f"fastfeat {ff.__version__}", f"python {platform.python_version()} ({platform.platform()})"]
    for mod in ("numpy", "scipy", "numba", "matplotlib", "numba_cuda"):
        lines.append(f"{mod} {_version(mod)}")
    lines.append(f"numba threads: {numba.get_num_threads()} in use, NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS}")
    try:  # the layer is chosen when the first parallel kernel runs
        ff.kernels.row_norms(np.ones((2, 2)), np.empty(2))
        layer = numba.threading_layer()
    except Exception as exc:  # noqa: BLE001
        layer = f"unknown ({exc})"
    lines.append(f"numba threading layer: {layer}")
    lines.append(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '')}")
    from .kernels import _cache
    dirs = _cache.cache_dirs()
    lines.append(f"kernel cache: {', '.join(dirs) if dirs else 'none'} (NUMBA_CACHE_DIR="
                 f"{os.environ.get('NUMBA_CACHE_DIR', '')}; fill it with `fastfeat warmup`)")
    try:
        from numba import cuda

        if cuda.is_available():
            names = []
            for dev in cuda.list_devices():
                name = dev.name
                names.append(name.decode() if isinstance(name, bytes) else str(name))
            lines.append(f"CUDA: usable ({', '.join(names)})")
        else:
            lines.append("CUDA: not usable (no driver or no GPU found)")
    except Exception as exc:  # noqa: BLE001 - report, never crash
        lines.append(f"CUDA: not usable ({type(exc).__name__}: {exc})")
    print("\n".join(lines), file=out)
    return lines


def _package_version():
    from . import __version__

    return __version__


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastfeat", description="Fast teacher-student two-layer network "
                                     "experiments (Zhou & Ge's three-stage protocol).")
    parser.add_argument("--version", action="version", version=f"fastfeat {_package_version()}")
    sub = parser.add_subparsers(dest="command")
    p_run = sub.add_parser("run", help="run the three-stage experiment and write results to a folder")
    p_run.add_argument("config", nargs="?", help="TOML configuration ([teacher], [protocol]); default: built in")
    p_run.add_argument("--out", default="fastfeat-run", help="output folder (default: fastfeat-run)")
    p_run.add_argument("--no-plots", action="store_true", help="skip the PNG plots (no matplotlib needed)")
    p_run.add_argument("--quiet", action="store_true", help="no progress output")
    p_run.add_argument("--force", action="store_true", help="overwrite the results of an earlier run in --out")
    p_sw = sub.add_parser("sweep", help="run a grid of three-stage experiments on Dask (results.csv per sweep)")
    p_sw.add_argument("sweep", help="TOML: [teacher], [protocol], and [sweep] lists of values and/or [[runs]]")
    p_sw.add_argument("--out", required=True, help="output folder (results.csv, runs/<key>/, summary.png)")
    where = p_sw.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=None, help="local worker processes (default: the cores)")
    where.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler instead")
    p_sw.add_argument("--threads-per-run", type=int, default=1, help="numba and BLAS threads per run (default 1)")
    p_sw.add_argument("--plots", action="store_true", help="write each run's plots too (needs matplotlib)")
    p_sw.add_argument("--plot", default="relative_loss",
                      help="metric of the summary plot against the first swept key (default relative_loss)")
    p_sw.add_argument("--quiet", action="store_true", help="no progress bar")
    sub.add_parser("info", help="versions, threads, threading layer, CUDA, where the kernels are cached")
    p_warm = sub.add_parser("warmup", help="compile the kernels of training, the flow and `fastfeat run` for both "
                            "float types into the disk cache")
    p_warm.add_argument("--dtype", choices=("float32", "float64"), action="append",
                        help="only this float type (repeatable; default both)")
    p_warm.add_argument("--task", action="append",
                        help="only this warm-up task (repeatable; default: online, empirical, flow, population, "
                        "paper; `kernels` adds the public ff.kernels entry points' other argument forms)")
    p_warm.add_argument("--processes", type=int, default=None,
                        help="worker processes (default: the CPU count; 1 compiles in this process)")
    p_warm.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    if args.command is None:  # a bare `fastfeat`: what it can do
        parser.print_help()
        return 0
    if args.command == "run":
        run(args.config, args.out, plots=not args.no_plots, progress=not args.quiet, force=args.force)
    elif args.command == "sweep":
        sweep_command(args)
    elif args.command == "warmup":
        from .kernels._warmup import DTYPES, TASKS, warmup

        import fastfeat  # noqa: F401  (registers the tasks)
        if args.processes is not None and args.processes < 1:
            _fail(f"--processes must be >= 1, got {args.processes}")
        if args.task and any(t not in TASKS for t in args.task):
            _fail(f"--task: unknown task; choose from {sorted(TASKS)}")
        try:
            warmup(tuple(args.dtype or DTYPES), tasks=args.task, processes=args.processes, progress=not args.quiet)
        except RuntimeError as exc:
            _fail(str(exc))
    else:
        info()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
