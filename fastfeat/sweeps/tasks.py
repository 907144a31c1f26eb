"""What a sweep's worker runs: the protocol of ``fastfeat run`` or a user function on one configuration,
with numba and BLAS limited to the run's threads, after loading the compiled kernels (filled into the
disk cache first)."""

import os
import time
import warnings

from ..experiment import ConfigError, check_config, pyplot, write_results
from .results import METRIC_COLUMNS, summary_row


def protocol_task(cfg, out, plots=False):
    """One run of the three-stage protocol (what ``fastfeat run`` does), written to folder ``out``;
    returns its row of results.csv (without the swept keys)."""
    from ..paper import three_stage
    from ..training import TrainingDiverged

    t0 = time.perf_counter()
    row = {"status": "ok", "message": ""}
    try:
        teacher, m, proto = check_config(cfg, plots=plots)
        os.makedirs(out, exist_ok=True)
        res = three_stage(teacher, m, **proto)
        plt = pyplot() if plots else None
        s = write_results(res, teacher, cfg, out, plt, time.perf_counter() - t0)
        row.update(summary_row(s))
    except TrainingDiverged as exc:
        row.update(status="diverged", message=str(exc))
    except ConfigError as exc:
        row.update(status="error", message=f"invalid configuration: {exc}")
    except Exception as exc:  # noqa: BLE001 - recorded in the results, the other runs go on
        row.update(status="error", message=f"{type(exc).__name__}: {exc}")
    row["wall_seconds"] = time.perf_counter() - t0
    return row


def user_task(fn, cfg, out):
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
        from ..training import TrainingDiverged
        row = {"status": "diverged" if isinstance(exc, TrainingDiverged) else "error",
               "message": f"{type(exc).__name__}: {exc}"}
    row["wall_seconds"] = time.perf_counter() - t0
    return row


def limit_threads(n):
    """Run this worker's kernels on ``n`` threads (numba's, in the calling thread, and the BLAS's).

    A local cluster's workers are started with ``NUMBA_NUM_THREADS`` = ``n``, but a worker process first
    imports the main module of the script that started the sweep, and a script that imports fastfeat at
    its top starts numba there, with the script's own setting (all cores). numba's compiler reads the
    variable again before every compilation and refuses one that differs from the running pool, so every
    kernel the worker had to compile failed, and the runs used every core. The variable is set back to
    the pool's size, and the pool limited to ``n`` with ``numba.set_num_threads`` instead."""
    import numba

    from ..kernels.cpu._blas import blas_threads
    os.environ["NUMBA_NUM_THREADS"] = str(numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
    blas_threads(n)


def task(fn, cfg, out, plots, threads):
    limit_threads(threads)
    return protocol_task(cfg, out, plots) if fn is None else user_task(fn, cfg, out)


def cache_filled():
    """Whether the kernel cache looks filled (the population run kernel of small sizes has entries)."""
    from ..kernels import _cache
    from ..kernels.cpu import population
    return _cache.has_entries(population.serial_run)


def fill_cache(dtypes):
    """Compile the sweep's kernels into the disk cache in processes of their own (one task per process, in
    parallel), before any run starts, so that the workers load them instead of each compiling the same
    kernels at once."""
    from ..kernels import warmup
    try:
        warmup(tuple(dtypes), tasks=["population", "empirical", "paper"], processes=max(2, os.cpu_count() or 1),
               progress=False)
    except RuntimeError as exc:  # the workers' own warm-up still runs
        warnings.warn(f"fastfeat sweep: filling the kernel cache failed ({exc}); the workers compile what they "
                      "need", RuntimeWarning, stacklevel=3)


def warmup_plugin(dtypes, threads):
    """A Dask worker plugin that loads the compiled kernels (from the disk cache) before the worker takes
    tasks; it runs again on any worker that joins or restarts."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class Warmup(WorkerPlugin):
        name = "fastfeat-warmup"

        def setup(self, worker):
            from ..kernels import warmup
            limit_threads(threads)

            warmup(tuple(dtypes), tasks=["population", "empirical", "paper"], processes=1,
                              progress=False)

    return Warmup()
