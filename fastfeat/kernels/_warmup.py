"""``ff.kernels.warmup()`` / ``fastfeat warmup``: compile every kernel for both float types, once per machine.

The kernels are cached on disk (``fastfeat.kernels._cache``), so a process that finds them there starts
at once; warming up fills the cache ahead of time, e.g. once after installing, in a container image, or
before a sweep starts its workers. Each task exercises a part of the package exactly as users call it
(the same argument types, so the same cache entries); tasks run in parallel worker processes, and a
task whose kernels are already cached takes a fraction of a second.

The tasks are registered by the layers that call the kernels (``register``; fastfeat's own are in
``fastfeat._warmup_tasks``), so this module imports nothing above ``fastfeat.kernels``.
"""
import os
import sys
import time

#: name -> fn(dtype): one warm-up task per (name, dtype)
TASKS = {}
DTYPES = ("float32", "float64")


def register(name, fn):
    """Add ``fn(dtype)`` as warm-up task ``name`` (it should call the kernels as users do, on tiny inputs)."""
    TASKS[name] = fn


def _run_task(name, dtype):
    """Run one task in this process; returns (name, dtype, seconds, error text or None)."""
    t0 = time.perf_counter()
    try:
        import fastfeat  # noqa: F401  (registers the package's tasks)
        TASKS[name](dtype)
        err = None
    except Exception as exc:  # noqa: BLE001 - reported, the other tasks go on
        err = f"{type(exc).__name__}: {exc}"
    return name, dtype, time.perf_counter() - t0, err


def warmup(dtypes=DTYPES, *, tasks=None, processes=None, progress=True, file=None):
    """Compile (or load from the cache) every kernel for ``dtypes``.

    ``tasks``: names from ``TASKS`` (default all); ``processes``: worker processes (default the CPU count,
    at most the number of jobs; 1 runs in this process); ``progress``: one line per finished task on
    ``file`` (default stderr). Returns a list of ``(task, dtype, seconds)``; raises ``RuntimeError``
    naming the tasks that failed, after running all of them.
    """
    import fastfeat  # noqa: F401  (registers the package's tasks)

    out = file or sys.stderr
    names = list(TASKS) if tasks is None else list(tasks)
    for n in names:
        if n not in TASKS:
            raise ValueError(f"tasks: unknown warm-up task {n!r}; known: {sorted(TASKS)}")
    dtypes = (dtypes,) if isinstance(dtypes, str) else tuple(dtypes)
    for dt in dtypes:
        if dt not in DTYPES:
            raise ValueError(f"dtypes: {dt!r} is not one of {DTYPES}")
    jobs = [(n, dt) for n in names for dt in dtypes]
    if processes is None:
        processes = os.cpu_count() or 1
    processes = max(1, min(int(processes), len(jobs)))
    t0 = time.perf_counter()
    results = []
    failed = []

    def report(res):
        name, dt, sec, err = res
        results.append((name, dt, sec))
        if err is not None:
            failed.append(f"{name} ({dt}): {err}")
        if progress:
            state = "failed: " + err if err else f"{sec:.1f} s"
            print(f"fastfeat warmup [{len(results)}/{len(jobs)}] {name} {dt}: {state}", file=out, flush=True)

    if processes == 1:
        for n, dt in jobs:
            report(_run_task(n, dt))
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # the slowest (compiling) jobs first would be best; the order of TASKS puts the big ones first
        with ProcessPoolExecutor(processes, mp_context=mp.get_context("spawn")) as pool:
            futures = [pool.submit(_run_task, n, dt) for n, dt in jobs]
            for f in as_completed(futures):
                report(f.result())
    if progress:
        print(f"fastfeat warmup: {len(jobs)} tasks in {time.perf_counter() - t0:.1f} s with {processes} "
              f"process{'es' if processes > 1 else ''}", file=out, flush=True)
    if failed:
        raise RuntimeError("warm-up tasks failed: " + "; ".join(failed))
    return results
