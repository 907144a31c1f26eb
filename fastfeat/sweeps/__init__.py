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
from .driver import sweep  # noqa: F401
from .figures import PLOT_METRICS, check_plot, plot  # noqa: F401
from .results import FINISHED, METRIC_COLUMNS, SweepBusyError, swept_keys  # noqa: F401
from .spec import check_runs, expand, load, run_key  # noqa: F401
from .tasks import protocol_task  # noqa: F401
