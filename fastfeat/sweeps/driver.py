"""``ff.sweep``: runs the tasks of a sweep on Dask distributed and writes their results as they finish."""

import json
import math
import os
import time
import warnings

from .._validation import check_int
from ..experiment import DEFAULT_CONFIG, make_writable_folder, pyplot
from .results import FINISHED, METRIC_COLUMNS, append_row, read_rows, recover, take_lock, write_rows
from .spec import check_runs, load, run_key
from .tasks import cache_filled, fill_cache, task, warmup_plugin


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
        lock = take_lock(out)
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
    previous, header, skipped = read_rows(path)
    if skipped:
        warnings.warn(f"fastfeat sweep: {path} was damaged; skipped " + ", ".join(skipped[:5])
                      + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
                      + "; the runs they stood for are recovered from their folders or run again",
                      RuntimeWarning, stacklevel=3)
    done = {k: r for k, r in previous.items() if r.get("status") in FINISHED}
    if fn is None:
        recovered = recover(out, todo, done, previous)
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
            write_rows(path, table(), columns)
            return
        append_row(path, row, columns)  # as runs finish, never only at the end

    if os.path.exists(path) or rows:  # the finished rows only, under this sweep's columns
        write_rows(path, table(), columns)
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
            if own is not None and scheduler is None and not cache_filled():
                fill_cache(dtypes)
            try:
                client.register_plugin(warmup_plugin(dtypes, threads_per_run))
            except Exception as exc:  # noqa: BLE001 - a worker that died meanwhile: the tasks still run
                warnings.warn(f"fastfeat sweep: warming up the workers failed ({type(exc).__name__}: {exc}); "
                              "each run loads its kernels itself", RuntimeWarning, stacklevel=2)
            futures = {}
            for swept, cfg, key in pending:
                fut = client.submit(task, fn, cfg, os.path.join(out, "runs", key), plots, threads_per_run,
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
    write_rows(path, table(), columns)
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
