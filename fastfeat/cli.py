"""The ``fastfeat`` command line.

``fastfeat run [CONFIG.toml] [--out DIR] [--force]`` runs the three-stage protocol of
``ff.paper.three_stage`` (the built-in configuration below when no file is given) and writes to ``DIR``:

- ``stage1.json``, ``stage2.json``, ``stage3.json``: the History of each stage;
- ``weights.npz``: the final student (``W``, ``a``) and the teacher (``W_star``, ``a_star``);
- ``summary.json``: final diagnostics, the loss of f == 0, timings and the full configuration;
- ``loss.png``, ``alignment.png``, ``mass_by_angle.png`` (needs matplotlib: the ``plot`` extra);
- with ``hessian = true``: ``hessian.npz`` (the eigenvalues at the end) and ``hessian.png``;
- ``config.json``: the configuration, written first; while the run goes on, ``checkpoint/`` holds its
  state (removed when it finishes).

Ctrl-C (or SIGTERM) stops the run within about a second. Interrupted in stage 3, the run writes what it
has (the histories so far, the weights of the step reached, ``summary.json`` with ``"interrupted"``),
keeps its checkpoint, prints how to resume, and exits with 130 (SIGINT) or 143 (SIGTERM);
``fastfeat run --resume DIR`` continues it bit for bit (same thread count) and writes every output.

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
import contextlib
import json
import os
import platform
import shutil
import signal
import sys
import time

import numpy as np

from . import experiment
from ._version import __version__
# (CLI_KEYS, DEFAULT_CONFIG, TEACHER_KEYS: also read as fastfeat.cli's, where they were first)
from .experiment import CLI_KEYS, DEFAULT_CONFIG, TEACHER_KEYS  # noqa: F401
from .experiment import OUTPUTS, ConfigError, make_writable_folder, read_config, write_results

def _fail(msg, code=2):
    """Report ``msg`` as one ``fastfeat: error:`` line and exit with ``code`` (2: bad input)."""
    print(f"fastfeat: error: {' '.join(str(msg).split())}", file=sys.stderr)
    raise SystemExit(code)


def load_config(path):
    """``experiment.read_config``; problems with the file end the program (``fastfeat: error:``, exit
    status 2)."""
    try:
        return read_config(path)
    except ConfigError as exc:
        _fail(str(exc))


def check_config(cfg, where="config", plots=False):
    """``experiment.check_config``; all problems end the program as one ``fastfeat: error:`` line (exit
    status 2)."""
    try:
        return experiment.check_config(cfg, where, plots)
    except ConfigError as exc:
        _fail(str(exc))


#: the run's configuration and its state while it goes on (in the output folder)
CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoint"


def prepare_out(out, force=False, resume=False, outputs=OUTPUTS, command="run"):
    """Make sure the results can be written to folder ``out`` before anything runs: not a file, no earlier
    results there unless ``force`` (or ``resume``: the interrupted run's own), writable (a probe file is
    created and removed). Creates the folder."""
    flag = "--resume" if resume else "--out"
    if os.path.exists(out) and not os.path.isdir(out):
        _fail(f"{flag} {out} is a file, not a folder")
    if os.path.isdir(out) and any(os.path.exists(os.path.join(out, f)) for f in ("results.csv", "sweep.json")):
        _fail(f"{flag} {out} is a sweep's folder (results.csv, runs/); give the run a folder of its own")
    if os.path.isdir(out) and not force and not resume:
        if os.path.isdir(os.path.join(out, CHECKPOINT_DIR)):
            _fail(f"--out {out} holds an interrupted run; continue it with `fastfeat {command} --resume {out}`, or pass "
                  "--force to start over there")
        old = [name for name in tuple(outputs) + (CONFIG_FILE,) if os.path.exists(os.path.join(out, name))]
        if old:
            _fail(f"--out {out} already holds results ({', '.join(old)}); choose another folder or pass --force "
                  "to overwrite them")
    try:
        make_writable_folder(out)
    except OSError as exc:
        _fail(f"{flag} {out} is not writable: {exc.strerror or exc}")


def _resume_config(folder, tables=("teacher", "protocol")):
    """The configuration an interrupted run in ``folder`` was started with (its ``config.json``)."""
    if not os.path.isdir(folder):
        _fail(f"--resume {folder} is not a folder")
    path = os.path.join(folder, CONFIG_FILE)
    if not os.path.isdir(os.path.join(folder, CHECKPOINT_DIR)):
        done = os.path.exists(os.path.join(folder, "summary.json"))
        _fail(f"--resume {folder}: " + ("the run there has finished (no checkpoint/ left)" if done else
                                        f"no interrupted run there (no {CHECKPOINT_DIR}/)"))
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
        if not (isinstance(cfg, dict) and set(cfg) == set(tables)):
            raise ValueError("not a configuration of " + ", ".join(f"[{t}]" for t in tables)
                             + (" (was the run there started by the other command?)" if isinstance(cfg, dict)
                                else ""))
    except (OSError, ValueError) as exc:
        _fail(f"--resume {folder}: cannot read {path}: {exc}")
    return cfg


def _start_state(out, cfg, force, resume):
    """The run's state folder in ``out`` (its checkpoints): a new run writes its configuration first and,
    with ``force``, gives up an interrupted run's state there; a resumed run keeps both."""
    state = os.path.join(out, CHECKPOINT_DIR)
    if not resume:
        if force and os.path.isdir(state):
            shutil.rmtree(state)  # --force: the interrupted run there is given up
        _write_json(os.path.join(out, CONFIG_FILE), cfg)
    os.makedirs(state, exist_ok=True)
    return state


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (a batch system's stop) stops a run as Ctrl-C does, while the run goes on."""
    old = signal.getsignal(signal.SIGTERM) if hasattr(signal, "SIGTERM") else None
    if old is not None:
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def _write_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def _pyplot():
    """``experiment.pyplot``; without matplotlib the program ends (``fastfeat: error:``)."""
    try:
        return experiment.pyplot()
    except ImportError as exc:
        _fail(str(exc))


def run(config_path=None, out="fastfeat-run", plots=True, progress=True, force=False, resume=False):
    """``fastfeat run``: returns the ``ThreeStageResult``. The whole configuration and the output folder are
    checked before anything runs (``fastfeat: error:``, exit status 2); a run that fails (diverges) ends
    with one ``fastfeat: error:`` line and exit status 1. ``resume=True``: ``out`` holds an interrupted
    run, continued with its own configuration. Ctrl-C / SIGTERM: see the module's docstring."""
    from .paper import START, three_stage
    from .training import TrainingDiverged, TrainingInterrupted

    if resume:
        if config_path is not None:
            _fail("--resume takes the configuration from the run's folder (config.json); leave CONFIG out")
        cfg = _resume_config(out)
        where = f"config {os.path.join(out, CONFIG_FILE)}"
    else:
        cfg = load_config(config_path)
        where = f"config {config_path}" if config_path else "config"
    teacher, m, proto = check_config(cfg, where, plots)
    plt = _pyplot() if plots else None  # fail before the run, not after it
    prepare_out(out, force, resume)
    state = _start_state(out, cfg, force, resume)
    say = print if progress else (lambda *a, **k: None)
    say(f"fastfeat {__version__}: three-stage protocol, teacher {cfg['teacher']}, m={m}, {proto or 'defaults'}"
        + (f"; resuming {out}" if resume else ""))
    t0 = time.perf_counter()
    with _sigterm_as_interrupt():  # (also while the handlers below write what the run has)
        try:
            res = three_stage(teacher, m, progress=progress, checkpoint=state, resume=resume, **proto)
        except TrainingDiverged as exc:
            _fail(f"the protocol stopped: {exc}", code=1)
        except (ValueError, OverflowError, FloatingPointError, MemoryError, RuntimeError) as exc:
            # what the settings lead to only once the run is under way (a step size from the curvature, the
            # Hessian of the end state): one line, as a divergence
            _fail(f"the protocol stopped: {type(exc).__name__}: {exc}", code=1)
        except TrainingInterrupted as exc:
            _interrupted(exc, teacher, cfg, out, time.perf_counter() - t0)
        except KeyboardInterrupt:  # outside stage 3's training (stages 1-2, the final diagnostics)
            if os.path.exists(os.path.join(state, START)):
                print(f"\nfastfeat: interrupted; continue with: fastfeat run --resume {out}", file=sys.stderr)
            else:
                print("\nfastfeat: interrupted before stage 3 began; nothing was saved: run it again",
                      file=sys.stderr)
            raise SystemExit(130)
    wall = time.perf_counter() - t0
    summary = write_results(res, teacher, cfg, out, plt, wall)
    shutil.rmtree(state, ignore_errors=True)  # finished: every output is written
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


def train_command(config_path=None, out="fastfeat-train", plots=True, progress=True, force=False, resume=False):
    """``fastfeat train``: one ``ff.train`` run (``fastfeat.trainjob``); returns the History. Configuration and
    folder are checked first (exit status 2), a divergence ends with exit status 1, Ctrl-C / SIGTERM as
    ``fastfeat run`` (the outputs so far, exit 130 / 143, ``--resume`` continues bit for bit)."""
    from . import trainjob
    from .training import TrainingDiverged, TrainingInterrupted, train

    if resume:
        if config_path is not None:
            _fail("--resume takes the configuration from the run's folder (config.json); leave CONFIG out")
        cfg = _resume_config(out, tuple(trainjob.DEFAULTS))
    else:
        try:
            cfg = trainjob.read(config_path)
        except ConfigError as exc:
            _fail(str(exc))
    try:
        teacher, net, objective, kw = trainjob.build(cfg)
    except ConfigError as exc:
        _fail(f"config {config_path or os.path.join(out, CONFIG_FILE)}: {exc}")
    plt = _pyplot() if plots else None
    prepare_out(out, force, resume, trainjob.OUTPUTS, "train")
    state = _start_state(out, cfg, force, resume)
    say = print if progress else (lambda *a, **k: None)
    say(f"fastfeat {__version__}: train {cfg['objective']['kind']}, teacher {cfg['teacher']}, student "
        f"{cfg['student']}" + (f"; resuming {out}" if resume else ""))
    t0 = time.perf_counter()
    with _sigterm_as_interrupt():  # (also while the handlers below write what the run has)
        try:
            hist = train(net, objective, teacher=teacher, progress=progress,
                         checkpoint=os.path.join(state, "train.npz"), resume=resume, **kw)
        except TrainingDiverged as exc:
            _fail(f"training stopped: {exc}", code=1)
        except TrainingInterrupted as exc:
            where = {"step": exc.step, "steps": kw["steps"]}
            trainjob.write(out, exc.history, net, teacher, objective, cfg, time.perf_counter() - t0,
                           interrupted=where)
            print(f"\nfastfeat: interrupted at step {exc.step} of {kw['steps']}; wrote the run so far to "
                  f"{out}{os.sep}; " + (f"continue with: fastfeat train --resume {out}" if exc.checkpoint else
                                         "its state could not be saved: run it again"), file=sys.stderr)
            raise SystemExit(128 + int(exc.signum))
    s = trainjob.write(out, hist, net, teacher, objective, cfg, time.perf_counter() - t0, plt)
    shutil.rmtree(state, ignore_errors=True)
    say(f"done in {s['seconds']:.1f} s: {s['step']} steps, loss {s['loss']:.4g}; wrote {out}{os.sep}: summary.json, "
        "history.json, weights.npz" + (", loss.png" if plots else ""))
    return hist


def _interrupted(exc, teacher, cfg, out, wall):
    """Write what an interrupted run has (histories, weights, a summary marked interrupted; no plots), say
    how to resume, and exit with 128 + the signal's number."""
    res = exc.result
    summary = write_results(res, teacher, cfg, out, None, wall)
    where = res.config["interrupted"]
    summary["interrupted"] = where
    _write_json(os.path.join(out, "summary.json"), summary)
    print(f"\nfastfeat: interrupted in stage 3 at step {where['step']} of {where['steps']}; wrote the run so far "
          f"to {out}{os.sep}; " + (f"continue with: fastfeat run --resume {out}" if exc.checkpoint else
                                   "its state could not be saved: run it again"), file=sys.stderr)
    raise SystemExit(128 + int(exc.signum))


def sweep_command(args):
    """``fastfeat sweep``: every run checked first, then the sweep on Dask; results.csv and a summary plot."""
    from . import sweeps as sw

    if args.workers is not None and args.workers < 1:
        _fail(f"--workers must be >= 1, got {args.workers}")
    if args.threads_per_run < 1:
        _fail(f"--threads-per-run must be >= 1, got {args.threads_per_run}")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        _fail(f"--out {args.out} is a file, not a folder")
    if args.plot:
        try:
            sw.check_plot(args.plot)
        except ValueError as exc:
            _fail(f"--plot: {exc}")
    try:  # the sweep checks every run, then --out, before it starts anything
        rows = sw.sweep(args.sweep, out=args.out, workers=args.workers, scheduler=args.scheduler,
                        threads_per_run=args.threads_per_run, plots=args.plots, progress=not args.quiet)
    except (ImportError, OSError, ConfigError, sw.SweepBusyError, ValueError, TypeError) as exc:
        _fail(str(exc))
    swept = sw.swept_keys(rows)
    status = {}
    for r in rows:
        status[r["status"]] = status.get(r["status"], 0) + 1
    if swept and args.plot:
        try:
            # one line per value of the next swept key that is not a seed: seeds are what the band spreads over
            by = next((k for k in swept[1:] if not k.endswith("seed")), None)
            sw.plot(rows, os.path.join(args.out, "summary.png"), x=swept[0], y=args.plot, by=by)
        except ImportError:
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

    from .kernels import row_norms

    lines = [f"fastfeat {__version__}", f"python {platform.python_version()} ({platform.platform()})"]
    for mod in ("numpy", "scipy", "numba", "matplotlib", "numba_cuda"):
        lines.append(f"{mod} {_version(mod)}")
    lines.append(f"numba threads: {numba.get_num_threads()} in use, NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS}")
    try:  # the layer is chosen when the first parallel kernel runs
        row_norms(np.ones((2, 2)), np.empty(2))
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
    return __version__


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastfeat", description="Fast teacher-student two-layer network "
                                     "experiments (Zhou & Ge's three-stage protocol).")
    parser.add_argument("--version", action="version", version=f"fastfeat {_package_version()}")
    sub = parser.add_subparsers(dest="command")
    p_run = sub.add_parser("run", help="run the three-stage experiment and write results to a folder")
    p_run.add_argument("config", nargs="?", help="TOML configuration ([teacher], [protocol]); default: built in")
    p_run.add_argument("--out", default=None, help="output folder (default: fastfeat-run)")
    p_run.add_argument("--no-plots", action="store_true", help="skip the PNG plots (no matplotlib needed)")
    p_run.add_argument("--quiet", action="store_true", help="no progress output")
    p_run.add_argument("--force", action="store_true", help="overwrite the results of an earlier run in --out")
    p_run.add_argument("--resume", metavar="DIR", default=None,
                       help="continue the interrupted run in DIR (its config.json and checkpoint/), bit for bit")
    p_tr = sub.add_parser("train", help="one ff.train run of any objective ([teacher], [student], [objective], "
                          "[train]) into a folder")
    p_tr.add_argument("config", nargs="?", help="TOML configuration; default: built in (fastfeat.trainjob.DEFAULTS)")
    p_tr.add_argument("--out", default=None, help="output folder (default: fastfeat-train)")
    p_tr.add_argument("--no-plots", action="store_true", help="skip loss.png (no matplotlib needed)")
    p_tr.add_argument("--quiet", action="store_true", help="no progress output")
    p_tr.add_argument("--force", action="store_true", help="overwrite the results of an earlier run in --out")
    p_tr.add_argument("--resume", metavar="DIR", default=None, help="continue the interrupted run in DIR")
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
    sub.add_parser("template", help="print a commented configuration file with every key at its default")
    p_warm = sub.add_parser("warmup", help="compile the kernels of training and `fastfeat run` for both "
                            "float types into the disk cache")
    p_warm.add_argument("--dtype", choices=("float32", "float64"), action="append",
                        help="only this float type (repeatable; default both)")
    p_warm.add_argument("--task", action="append",
                        help="only this warm-up task (repeatable; default: online, empirical, population, paper; "
                        "on request: flow and ode, the integrators of ff.flow and ff.ode; `online_extra`, online "
                        "SGD's large-batch build and Online.grad; `wide`, the population kernels' parallel build "
                        "for many neurons; `kernels`, the public ff.kernels entry points' other argument forms)")
    p_warm.add_argument("--all", action="store_true", help="every task, the optional ones too")
    p_warm.add_argument("--processes", type=int, default=None,
                        help="worker processes (default: the CPU count; 1 compiles in this process)")
    p_warm.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    if args.command is None:  # a bare `fastfeat`: what it can do
        parser.print_help()
        return 0
    if args.command in ("run", "train"):
        command = run if args.command == "run" else train_command
        if args.resume is not None:
            if args.force:
                _fail("--resume continues a run; --force starts one over: give one of them")
            if args.out is not None and os.path.abspath(args.out) != os.path.abspath(args.resume):
                _fail("--resume DIR writes into DIR; leave --out out")
            command(args.config, args.resume, plots=not args.no_plots, progress=not args.quiet, resume=True)
        else:
            command(args.config, args.out or f"fastfeat-{args.command}", plots=not args.no_plots,
                    progress=not args.quiet, force=args.force)
    elif args.command == "sweep":
        sweep_command(args)
    elif args.command == "template":
        print(experiment.template(), end="")
    elif args.command == "warmup":
        from .kernels._warmup import DTYPES, TASKS, warmup
        # (the package's tasks are registered: importing this module imported the fastfeat package first)
        if args.processes is not None and args.processes < 1:
            _fail(f"--processes must be >= 1, got {args.processes}")
        if args.task and any(t not in TASKS for t in args.task):
            _fail(f"--task: unknown task; choose from {sorted(TASKS)}")
        if args.all and args.task:
            _fail("--all runs every task; leave --task out")
        try:
            warmup(tuple(args.dtype or DTYPES), tasks=list(TASKS) if args.all else args.task,
                   processes=args.processes, progress=not args.quiet)
        except RuntimeError as exc:
            _fail(str(exc))
    else:
        info()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
