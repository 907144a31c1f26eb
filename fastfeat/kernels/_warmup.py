"""``ff.kernels.warmup()`` / ``fastfeat warmup``: compile the kernels for both float types, once per machine.

The kernels are cached on disk (``fastfeat.kernels._cache``), so a process that finds them there starts
at once; warming up fills the cache ahead of time, e.g. once after installing, in a container image, or
before a sweep starts its workers. Each task exercises a part of the package exactly as users call it
(the same argument types, so the same cache entries); tasks run in parallel worker processes, and a
task whose kernels are already cached takes a fraction of a second.

The tasks are registered by the layers that call the kernels (``register``; fastfeat's own are in
``fastfeat._warmup_tasks``), so this module imports nothing above ``fastfeat.kernels``. A task says
which float types it compiles anything for (the gradient-flow integrator works in float64 for both),
and whether it runs by default: the default set is what ``ff.train``, ``ff.flow``, the objectives and
``fastfeat run`` call; other tasks (the ``ff.kernels`` entry points called with the other documented
argument forms) are compiled on first use and cached, or warmed up on request (``tasks=``).
"""
import os
import sys
import time

#: name -> fn(dtype): one warm-up task per (name, dtype)
TASKS = {}
DTYPES = ("float32", "float64")
#: name -> the float types the task is run for (its ``dtype`` argument)
TASK_DTYPES = {}
#: the tasks ``warmup()`` runs when no ``tasks`` are named, in the order they are started
DEFAULT_TASKS = []


def register(name, fn, *, dtypes=DTYPES, default=True):
    """Add ``fn(dtype)`` as warm-up task ``name`` (it should call the kernels as users do, on tiny inputs).

    ``dtypes``: the float types it is run for (a task whose compiled code is the same for both names
    one); ``default``: whether ``warmup()`` runs it when no tasks are named."""
    dtypes = tuple(dtypes)
    if not dtypes or any(dt not in DTYPES for dt in dtypes):
        raise ValueError(f"dtypes: expected some of {DTYPES}, got {dtypes}")
    TASKS[name] = fn
    TASK_DTYPES[name] = dtypes
    if default and name not in DEFAULT_TASKS:
        DEFAULT_TASKS.append(name)
    elif not default and name in DEFAULT_TASKS:
        DEFAULT_TASKS.remove(name)


def _run_task(name, dtype):
    """Run one task in this process; returns (name, dtype, seconds, error text or None)."""
    t0 = time.perf_counter()
    try:  # (a worker process imported this module, so the fastfeat package first: its tasks are registered)
        TASKS[name](dtype)
        err = None
    except Exception as exc:  # noqa: BLE001 - reported, the other tasks go on
        err = f"{type(exc).__name__}: {exc}"
    return name, dtype, time.perf_counter() - t0, err


def warmup(dtypes=DTYPES, *, tasks=None, processes=None, progress=True, file=None):
    """Compile (or load from the cache) the kernels of ``tasks`` for ``dtypes``.

    ``tasks``: names from ``TASKS`` (default ``DEFAULT_TASKS``: what ``ff.train``, ``ff.flow`` and
    ``fastfeat run`` call); each runs for those of ``dtypes`` it compiles anything for; ``processes``: worker processes (default the CPU count,
    at most the number of jobs; 1 runs in this process); ``progress``: one line per finished task on
    ``file`` (default stderr). Returns a list of ``(task, dtype, seconds)``; raises ``RuntimeError``
    naming the tasks that failed, after running all of them.
    """
    # the package's own tasks are registered when the fastfeat package is imported, which importing this
    # module (a submodule of it) always does first
    out = file or sys.stderr
    names = list(DEFAULT_TASKS) if tasks is None else list(tasks)
    for n in names:
        if n not in TASKS:
            raise ValueError(f"tasks: unknown warm-up task {n!r}; known: {sorted(TASKS)}")
    dtypes = (dtypes,) if isinstance(dtypes, str) else tuple(dtypes)
    for dt in dtypes:
        if dt not in DTYPES:
            raise ValueError(f"dtypes: {dt!r} is not one of {DTYPES}")
    jobs = [(n, dt) for n in names for dt in dtypes if dt in TASK_DTYPES.get(n, DTYPES)]
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
