"""Parameter sweeps on Dask distributed: ``ff.sweep`` and ``fastfeat sweep``.

A sweep is a list of runs. From a file: the ``[teacher]`` and ``[protocol]`` tables of ``fastfeat run``
(the base configuration), a ``[sweep]`` table whose keys are dotted names (``"teacher.seed"``,
``"protocol.m"``, ...) and whose values are lists (the runs are their product), and/or a ``[[runs]]`` list
of explicit configurations (dotted keys or ``teacher``/``protocol`` tables, over the base). Each run is
one task: the three-stage protocol as ``fastfeat run`` does it, written to its own folder
``DIR/runs/<key>`` (``key``: a hash of its full configuration), or a user function of one configuration.

The tasks run on Dask distributed: a ``LocalCluster`` of worker processes by default (one per core,
numba and BLAS limited to ``threads_per_run`` threads each, so the workers do not oversubscribe the
cores), or an existing scheduler by address (any cluster: dask-jobqueue on Slurm or PBS, Kubernetes...).
Every worker loads the compiled kernels from the disk cache before it takes tasks.

Results: ``DIR/results.csv`` gets one row per run as it finishes (swept keys, status ``ok`` /
``diverged`` / ``error`` with its message, the summary metrics, wall time); at the end it is rewritten
in sweep order, with ``results.parquet`` when pyarrow is installed. A rerun skips the runs already
finished (``ok`` or ``diverged``) and retries the others; a run that fails is recorded and the others go
on; a worker that dies loses only its current run, which Dask gives to another worker.
"""
import csv
import hashlib
import itertools
import json
import math
import os
import time
import warnings

import numpy as np

from ._validation import check_int
from .experiment import (DEFAULT_CONFIG, ConfigError, check_config, config_problems, make_writable_folder, pyplot,
                         save_figure, write_results)

#: the columns of results.csv after the swept keys
METRIC_COLUMNS = ("status", "message", "relative_loss", "loss", "best_cos_min", "captured_mass_error", "far_mass",
                  "active_neurons", "wall_seconds", "best_cos", "captured_mass", "key")
FINISHED = ("ok", "diverged")


def _set(cfg, dotted, value, where):
    table, _, key = dotted.partition(".")
    if table not in ("teacher", "protocol") or not key or "." in key:
        raise ValueError(f"{where}: {dotted!r} must be 'teacher.<key>' or 'protocol.<key>'")
    cfg[table][key] = value


def expand(base, sweep=None, runs=None, where="sweep"):
    """The runs of a sweep: a list of ``(swept, cfg)``, ``swept`` the dotted keys that vary and their
    values, ``cfg`` the full configuration (``{"teacher": {...}, "protocol": {...}}``)."""
    out = []
    if sweep:
        keys = list(sweep)
        for key in keys:
            if not isinstance(sweep[key], list) or not sweep[key]:
                raise ValueError(f"{where}: [sweep] {key!r} must be a non-empty list of values")
        for values in itertools.product(*(sweep[k] for k in keys)):
            cfg = {t: dict(v) for t, v in base.items()}
            for k, v in zip(keys, values):
                _set(cfg, k, v, where)
            out.append((dict(zip(keys, values)), cfg))
    for i, run in enumerate(runs or ()):
        if not isinstance(run, dict):
            raise ValueError(f"{where}: [[runs]] entry {i} must be a table")
        cfg = {t: dict(v) for t, v in base.items()}
        swept = {}
        for k, v in run.items():
            if k in ("teacher", "protocol") and isinstance(v, dict):
                for kk, vv in v.items():
                    cfg[k][kk] = vv
                    swept[f"{k}.{kk}"] = vv
            else:
                _set(cfg, k, v, f"{where}: [[runs]] entry {i}")
                swept[k] = v
        out.append((swept, cfg))
    if not sweep and not runs:
        out.append(({}, {t: dict(v) for t, v in base.items()}))
    return out


def run_key(cfg):
    """A short hash of a run's full configuration (its folder name and its identity across reruns)."""
    text = json.dumps(cfg, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load(path):
    """(base configuration, runs) of a sweep file; problems raise ``ConfigError``."""
    import tomllib

    def _fail(msg):
        raise ConfigError(msg)

    try:
        with open(path, "rb") as f:
            data = tomllib.loads(f.read().decode("utf-8"))
    except OSError as exc:
        _fail(f"cannot read sweep {path}: {exc.strerror or exc}")
    except UnicodeDecodeError:
        _fail(f"sweep {path} is not UTF-8 text")
    except tomllib.TOMLDecodeError as exc:
        _fail(f"sweep {path} is not valid TOML: {exc}")
    unknown = sorted(set(data) - {"teacher", "protocol", "sweep", "runs"})
    if unknown:
        _fail(f"sweep {path}: unknown table(s) {unknown}; use [teacher], [protocol], [sweep] and [[runs]]")
    base = {k: dict(v) for k, v in DEFAULT_CONFIG.items()}
    for t in ("teacher", "protocol"):
        if t in data:
            if not isinstance(data[t], dict):
                _fail(f"sweep {path}: {t} must be a table")
            base[t].update(data[t])
    runs = data.get("runs")
    if runs is not None and not isinstance(runs, list):
        _fail(f"sweep {path}: runs must be a list of tables ([[runs]])")
    try:
        return base, expand(base, data.get("sweep"), runs, f"sweep {path}")
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def check_runs(runs, where="sweep", plots=False):
    """Check every run's configuration before anything starts; all problems raised as one ``ConfigError``."""
    # each problem once, with the runs that have it (a typo in the base is in every run)
    runs_of = {}
    bad = 0
    for swept, cfg in runs:
        found = config_problems(cfg, plots)[3]
        bad += bool(found)
        for p in found:
            runs_of.setdefault(p, []).append(str(swept or "(the base configuration)"))
    if runs_of:
        parts = []
        for p, which in runs_of.items():
            where_ = "every run" if len(which) == len(runs) else (
                f"run {which[0]}" if len(which) == 1 else f"{len(which)} runs, e.g. {which[0]}")
            parts.append(f"{p} ({where_})")
        raise ConfigError(f"{where}: {bad} of {len(runs)} runs are invalid: " + " | ".join(parts[:8])
                          + (f" | and {len(parts) - 8} more problems" if len(parts) > 8 else ""))


def protocol_task(cfg, out, plots=False):
    """One run of the three-stage protocol (what ``fastfeat run`` does), written to folder ``out``;
    returns its row of results.csv (without the swept keys)."""
    from .paper import three_stage
    from .training import TrainingDiverged

    t0 = time.perf_counter()
    row = {"status": "ok", "message": ""}
    try:
        teacher, m, proto = check_config(cfg, plots=plots)
        os.makedirs(out, exist_ok=True)
        res = three_stage(teacher, m, **proto)
        plt = pyplot() if plots else None
        s = write_results(res, teacher, cfg, out, plt, time.perf_counter() - t0)
        row.update(_summary_row(s))
    except TrainingDiverged as exc:
        row.update(status="diverged", message=str(exc))
    except ConfigError as exc:
        row.update(status="error", message=f"invalid configuration: {exc}")
    except Exception as exc:  # noqa: BLE001 - recorded in the results, the other runs go on
        row.update(status="error", message=f"{type(exc).__name__}: {exc}")
    row["wall_seconds"] = time.perf_counter() - t0
    return row


def _summary_row(s):
    """The metric columns of results.csv from a run's summary.json."""
    a_star = np.asarray(s["teacher_a"], float)
    return dict(relative_loss=s["relative_loss"], loss=s["loss"], best_cos_min=float(np.min(s["best_cos"])),
                captured_mass_error=float(np.max(np.abs(np.asarray(s["captured_mass"]) - a_star))),
                far_mass=s["far_mass"], active_neurons=s["active_neurons"], best_cos=json.dumps(s["best_cos"]),
                captured_mass=json.dumps(s["captured_mass"]))


def _user_task(fn, cfg, out):
    t0 = time.perf_counter()
    try:
        got = fn(cfg)
        row = {"status": "ok", "message": ""}
        if isinstance(got, dict):
            # the sweep's own columns stay its own: a value of the user's under one of their names is kept
            # as "fn.<name>" (a returned "status" would otherwise decide whether the run counts as finished)
            row.update({(f"fn.{k}" if k in METRIC_COLUMNS else k): v for k, v in got.items()})
        elif got is not None:
            row["value"] = got
    except Exception as exc:  # noqa: BLE001
        from .training import TrainingDiverged
        row = {"status": "diverged" if isinstance(exc, TrainingDiverged) else "error",
               "message": f"{type(exc).__name__}: {exc}"}
    row["wall_seconds"] = time.perf_counter() - t0
    return row


def _limit_threads(n):
    """Run this worker's kernels on ``n`` threads (numba's, in the calling thread, and the BLAS's).

    A local cluster's workers are started with ``NUMBA_NUM_THREADS`` = ``n``, but a worker process first
    imports the main module of the script that started the sweep, and a script that imports fastfeat at
    its top starts numba there, with the script's own setting (all cores). numba's compiler reads the
    variable again before every compilation and refuses one that differs from the running pool, so every
    kernel the worker had to compile failed, and the runs used every core. The variable is set back to
    the pool's size, and the pool limited to ``n`` with ``numba.set_num_threads`` instead."""
    import numba

    from .kernels.cpu._blas import blas_threads
    os.environ["NUMBA_NUM_THREADS"] = str(numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
    blas_threads(n)


def _task(fn, cfg, out, plots, threads):
    _limit_threads(threads)
    return protocol_task(cfg, out, plots) if fn is None else _user_task(fn, cfg, out)


def _cache_filled():
    """Whether the kernel cache looks filled (the population run kernel of small sizes has entries)."""
    from .kernels import _cache
    from .kernels.cpu import population
    return _cache.has_entries(population.serial_run)


def _fill_cache(dtypes):
    """Compile the sweep's kernels into the disk cache in processes of their own (one task per process, in
    parallel), before any run starts, so that the workers load them instead of each compiling the same
    kernels at once."""
    from .kernels import warmup
    try:
        warmup(tuple(dtypes), tasks=["population", "empirical", "paper"], processes=max(2, os.cpu_count() or 1),
               progress=False)
    except RuntimeError as exc:  # the workers' own warm-up still runs
        warnings.warn(f"fastfeat sweep: filling the kernel cache failed ({exc}); the workers compile what they "
                      "need", RuntimeWarning, stacklevel=3)


def _warmup_plugin(dtypes, threads):
    """A Dask worker plugin that loads the compiled kernels (from the disk cache) before the worker takes
    tasks; it runs again on any worker that joins or restarts."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class Warmup(WorkerPlugin):
        name = "fastfeat-warmup"

        def setup(self, worker):
            from .kernels import warmup
            _limit_threads(threads)

            warmup(tuple(dtypes), tasks=["population", "empirical", "paper"], processes=1,
                              progress=False)

    return Warmup()


def _read_rows(path):
    """(rows by key, header, what was skipped) of a results.csv: the rows that read back whole. A line that
    is not UTF-8, has another number of fields than the header (a truncated last line) or no key is
    skipped and counted, never an error: the runs it stood for are recovered from their folders, or run
    again."""
    if not os.path.exists(path):
        return {}, [], []
    with open(path, "rb") as f:
        raw = f.read().split(b"\n")
    text, skipped = [], []
    for i, line in enumerate(raw):
        try:
            text.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            skipped.append(f"line {i + 1} (not UTF-8)")
    lines = [t for t in text if t.strip()]
    if not lines:
        return {}, [], skipped
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except csv.Error:
        return {}, [], skipped + ["the header"]
    rows = {}
    n = 1
    while True:
        n += 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error:
            skipped.append(f"row {n} (not CSV)")
            continue
        if len(fields) != len(header):
            skipped.append(f"row {n} ({len(fields)} fields, the header has {len(header)})")
            continue
        r = dict(zip(header, fields))
        if not r.get("key"):
            skipped.append(f"row {n} (no key)")
            continue
        rows[r["key"]] = r
    return rows, header, skipped


def _recover(out, todo, rows, listed):
    """Rows of this sweep's protocol runs that results.csv does not list (``listed``) but whose folder holds
    the summary.json a finished protocol writes: rebuilt from it into ``rows``. Returns the keys recovered."""
    found = []
    for swept, _, key in todo:
        if key in rows or key in listed:
            continue
        try:
            with open(os.path.join(out, "runs", key, "summary.json")) as f:
                s = json.load(f)
            row = dict(status="ok", message="recovered from runs/" + key, **_summary_row(s))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        row["wall_seconds"] = s.get("wall_seconds", math.nan)
        rows[key] = dict(row, key=key, **swept)
        found.append(key)
    return found


class SweepBusyError(RuntimeError):
    """Another sweep is writing into the same folder."""


def _lock(out):
    """An exclusive lock on the sweep folder ``out`` (held until the returned file is closed; the system
    releases it if the process dies); ``SweepBusyError`` when another sweep holds it."""
    f = open(os.path.join(out, ".sweep.lock"), "a+")
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no flock (Windows): no protection against a second sweep
        return f
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise SweepBusyError(f"another sweep is writing into {out}; wait for it to finish, or give this one "
                             "another --out") from None
    return f


def _append_row(path, row, columns):
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        if f.tell() == 0:
            w.writeheader()
        w.writerow(row)
        f.flush()
        os.fsync(f.fileno())


def swept_keys(rows):
    """The swept keys of a sweep's rows, in order (the columns before ``status``)."""
    if not rows:
        return []
    keys = list(rows[0])

    def given(v):  # (results.csv keeps other sweeps' keys: empty in the rows of this one)
        return v is not None and v != "" and not (isinstance(v, float) and math.isnan(v))

    return [k for k in keys[:keys.index("status")] if k.partition(".")[0] in ("teacher", "protocol")
            and any(given(r.get(k)) for r in rows)]


def _write_rows(path, rows, columns):
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def sweep(runs, *, out, fn=None, workers=None, scheduler=None, threads_per_run=1, plots=False, progress=True,
          retries=2, client=None):
    """Run every configuration of ``runs`` on Dask distributed; returns the rows of ``results.csv``.

    ``runs``: a sweep file's path, or a list of configurations (``{"teacher": {...}, "protocol": {...}}``,
    each over the built-in configuration of ``fastfeat run``), or of ``(swept, cfg)`` pairs.
    ``fn(cfg)``: a user function of one configuration to run instead of the protocol (it returns a dict
    of values for the row, or a number); None runs the protocol. ``workers``: processes of the
    ``LocalCluster`` (default: the cores); ``scheduler``: the address of an existing Dask scheduler
    instead; ``client``: an existing ``distributed.Client``. ``threads_per_run``: numba and BLAS
    threads of each worker (at most the cores, for a local cluster). ``retries``: how often Dask retries a
    run whose worker died. Every argument is checked before the folder is created or anything written.
    A user function's values named like the sweep's own columns (``status``, ``wall_seconds``, ...) are
    kept as ``fn.<name>``.
    """
    try:
        import distributed  # noqa: F401  (installed?)
    except ImportError:
        raise ImportError("ff.sweep needs Dask distributed: pip install 'fastfeat[sweep]'") from None
    where = "sweep"
    if isinstance(runs, (str, os.PathLike)):
        where = f"sweep {os.fspath(runs)}"
        _, runs = load(os.fspath(runs))
    else:
        pairs = []
        for r in runs:
            if isinstance(r, tuple):
                pairs.append(r)
            else:
                cfg = {k: dict(v) for k, v in DEFAULT_CONFIG.items()}
                for t in ("teacher", "protocol"):
                    cfg[t].update(r.get(t, {}))
                swept = {f"{t}.{k}": v for t in ("teacher", "protocol") for k, v in r.get(t, {}).items()}
                pairs.append((swept, cfg))
        runs = pairs
    if fn is None:
        check_runs(runs, where, plots)
        if plots:
            pyplot()  # no matplotlib: ImportError before anything runs
    threads_per_run = check_int(threads_per_run, "threads_per_run")
    if workers is not None:
        workers = check_int(workers, "workers")
    if scheduler is None and client is None and threads_per_run > (os.cpu_count() or 1):
        raise ValueError(f"threads_per_run must be <= the {os.cpu_count()} cores of this machine for a local cluster, "
                         f"got {threads_per_run}")
    out = os.fspath(out)
    connected = None
    if scheduler is not None and client is None:  # reachable? (before the folder is created)
        import dask
        from distributed import Client
        try:  # (dask's connect timeout, distributed.comm.timeouts.connect: 30 s by default)
            client = connected = Client(scheduler, timeout=dask.config.get("distributed.comm.timeouts.connect"))
        except (OSError, TimeoutError, ValueError) as exc:
            raise OSError(f"cannot reach the Dask scheduler {scheduler}: {type(exc).__name__}: {exc}") from None
    try:
        try:
            make_writable_folder(os.path.join(out, "runs"))
        except OSError as exc:
            raise PermissionError(f"the sweep's folder {out} is not writable: {exc.strerror or exc}") from None
        lock = _lock(out)
        try:
            return _run_sweep(runs, out, fn, workers, scheduler, threads_per_run, plots, progress, retries, client)
        finally:
            lock.close()
    finally:
        if connected is not None:
            connected.close()


def _run_sweep(runs, out, fn, workers, scheduler, threads_per_run, plots, progress, retries, client):
    path = os.path.join(out, "results.csv")
    todo = [(s, c, run_key(c)) for s, c in runs]
    keys_in_order = list(dict.fromkeys(k for _, _, k in todo))
    previous, header, skipped = _read_rows(path)
    if skipped:
        warnings.warn(f"fastfeat sweep: {path} was damaged; skipped " + ", ".join(skipped[:5])
                      + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
                      + "; the runs they stood for are recovered from their folders or run again",
                      RuntimeWarning, stacklevel=3)
    done = {k: r for k, r in previous.items() if r.get("status") in FINISHED}
    if fn is None:
        recovered = _recover(out, todo, done, previous)
        if recovered and not skipped:
            warnings.warn(f"fastfeat sweep: {len(recovered)} finished run(s) missing from {path} were recovered "
                          "from their folders", RuntimeWarning, stacklevel=3)
    # results.csv is the union of every finished run in the folder: other sweeps' rows are kept, after
    # this sweep's, under the union of the swept keys
    old_swept = header[:header.index("status")] if "status" in header else []
    swept_keys = list(dict.fromkeys([k for swept, _, _ in todo for k in swept]
                                    + [k for k in old_swept if k.partition(".")[0] in ("teacher", "protocol")]))
    extra = list(dict.fromkeys(k for r in done.values() for k in r
                               if k not in swept_keys and k not in METRIC_COLUMNS))  # a user function's values
    columns = swept_keys + extra + list(METRIC_COLUMNS)
    others = [k for k in previous if k in done and k not in set(keys_in_order)]
    pending = [(s, c, k) for s, c, k in todo if k not in done]
    rows = dict(done)

    def table():
        return [rows[k] for k in keys_in_order + others if k in rows]

    def record(swept, key, row):
        row = dict(row, key=key, **swept)
        rows[key] = row
        new = [k for k in row if k not in columns]
        if new:  # a user function's own values: new columns, the table rewritten once
            columns[len(swept_keys):len(swept_keys)] = new
            _write_rows(path, table(), columns)
            return
        _append_row(path, row, columns)  # as runs finish, never only at the end

    if os.path.exists(path) or rows:  # the finished rows only, under this sweep's columns
        _write_rows(path, table(), columns)
    t_start = time.perf_counter()
    first_task = None
    if pending:
        own = None
        if client is None:
            from distributed import Client, LocalCluster
            if scheduler is not None:
                client = own = Client(scheduler)
            else:
                import dask
                n = workers if workers is not None else (os.cpu_count() or 1)
                n = check_int(n, "workers")
                env = {v: str(threads_per_run) for v in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS",
                                                         "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
                with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
                    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, env=env,
                                           dashboard_address=None)
                client = own = Client(cluster)
        try:
            dtypes = sorted({str(c["protocol"].get("dtype", "float64")) for _, c, _ in pending})
            if own is not None and scheduler is None and not _cache_filled():
                _fill_cache(dtypes)
            try:
                client.register_plugin(_warmup_plugin(dtypes, threads_per_run))
            except Exception as exc:  # noqa: BLE001 - a worker that died meanwhile: the tasks still run
                warnings.warn(f"fastfeat sweep: warming up the workers failed ({type(exc).__name__}: {exc}); "
                              "each run loads its kernels itself", RuntimeWarning, stacklevel=2)
            futures = {}
            for swept, cfg, key in pending:
                fut = client.submit(_task, fn, cfg, os.path.join(out, "runs", key), plots, threads_per_run,
                                    key=f"fastfeat-run-{key}",
                                    retries=retries, pure=False)
                futures[fut] = (swept, key)
            from distributed import as_completed

            bar = None
            if progress:
                from tqdm.auto import tqdm
                bar = tqdm(total=len(keys_in_order), initial=len(keys_in_order) - len(pending), unit="run",
                           dynamic_ncols=True)
            failed = 0
            for fut in as_completed(futures):
                swept, key = futures[fut]
                if first_task is None:
                    first_task = time.perf_counter() - t_start
                try:
                    row = fut.result()
                except Exception as exc:  # noqa: BLE001 - e.g. the worker died more often than retries
                    row = {"status": "error", "message": f"{type(exc).__name__}: {exc}", "wall_seconds": math.nan}
                failed += row["status"] != "ok"
                record(swept, key, row)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(f"failed {failed}, remaining {bar.total - bar.n}")
            if bar is not None:
                bar.close()
        finally:
            if own is not None:
                cluster = getattr(own, "cluster", None)
                own.close()
                if cluster is not None:
                    cluster.close()
    _write_rows(path, table(), columns)
    try:  # typed rows (the finished ones were read back from the CSV as text), and Parquet
        import pandas as pd
    except ImportError:
        pd = None
    if pd is not None:
        frame = pd.read_csv(path, dtype={"key": str, "message": str}, keep_default_na=False, na_values=[""])
        typed = {r["key"]: r for r in frame.to_dict("records")}
        ordered = [typed[k] for k in keys_in_order if k in typed]
        try:
            frame.to_parquet(os.path.join(out, "results.parquet"))
        except ImportError:  # no pyarrow / fastparquet
            pass
    else:
        ordered = [rows[k] for k in keys_in_order if k in rows]
    with open(os.path.join(out, "sweep.json"), "w") as f:
        json.dump({"runs": len(keys_in_order), "skipped": len(keys_in_order) - len(pending), "computed": len(pending),
                   "rows_in_results": len(table()),
                   "seconds": time.perf_counter() - t_start, "seconds_to_first_result": first_task}, f, indent=2)
    return ordered


#: the metrics of results.csv a summary plot can show (numbers)
PLOT_METRICS = ("relative_loss", "loss", "best_cos_min", "captured_mass_error", "far_mass", "active_neurons",
                "wall_seconds")


def check_plot(y):
    """ValueError unless ``y`` is a metric a summary plot can show (checked before a sweep runs)."""
    if y not in PLOT_METRICS:
        raise ValueError(f"plot: unknown metric {y!r}; choose one of {list(PLOT_METRICS)}")


def _number(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def plot(rows, path, *, x, y, by=None, logy=None):
    """A summary plot of metric ``y`` against swept key ``x`` (one line per value of swept key ``by``): the
    mean over the other swept keys (seeds, ...) with their spread (min to max) as a band, every run as a
    faint dot. A key whose values are not all numbers (an activation) is shown as categories; a numeric
    one spanning a factor 4 or more on a log axis. ``logy`` None: a log axis for a metric spanning a factor
    10 or more (losses), else linear (cosines)."""
    check_plot(y)
    plt = pyplot()
    ok = [r for r in rows if r.get("status") == "ok" and _number(r.get(y)) is not None]
    numeric = all(_number(r.get(x)) is not None for r in ok)
    if numeric:
        def pos(v):
            return _number(v)
        ticks = None
    else:
        cats = list(dict.fromkeys(str(r.get(x)) for r in ok))
        def pos(v):
            return float(cats.index(str(v)))
        ticks = cats
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    groups = {}
    for r in ok:
        groups.setdefault(r.get(by) if by else None, []).append((pos(r[x]), _number(r[y])))
    def order(kv):  # numbers in numeric order, then the rest by name
        v = _number(kv[0])
        return (0, v, "") if v is not None else (1, 0.0, str(kv[0]))

    for g, pts in sorted(groups.items(), key=order):
        xs = sorted({p[0] for p in pts})
        vals = [[p[1] for p in pts if p[0] == v] for v in xs]
        line = ax.plot(xs, [np.mean(v) for v in vals], "o-", label=f"{by} = {g}" if by else None)[0]
        if any(len(v) > 1 for v in vals):
            ax.fill_between(xs, [min(v) for v in vals], [max(v) for v in vals], color=line.get_color(), alpha=0.2,
                            linewidth=0)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], ".", color=line.get_color(), alpha=0.35)
    ys_all = [_number(r[y]) for r in ok]
    if logy is None:
        logy = bool(ys_all) and min(ys_all) > 0 and max(ys_all) >= 10 * min(ys_all)
    ax.set_xlabel(x)
    ax.set_ylabel(y + (" (log scale)" if logy else ""))
    ax.set_title(f"{y} against {x}" + (f", one line per {by}" if by else "")
                 + "\n(mean over the other swept keys, band: min to max, dots: runs)", fontsize=10)
    if ticks is not None:
        ax.set_xticks(range(len(ticks)))
        ax.set_xticklabels(ticks)
    else:
        xs_all = [pos(r[x]) for r in ok]
        if xs_all and min(xs_all) > 0 and max(xs_all) / min(xs_all) >= 4:  # widths, sample sizes: log axis
            ax.set_xscale("log")
    if logy and ys_all and min(ys_all) > 0:
        ax.set_yscale("log")
    if by:
        ax.legend(fontsize=8)
    save_figure(fig, path, plt, grid=(ax,))
