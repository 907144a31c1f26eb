"""fastfeat's benchmarks: an asv suite (``bench_*.py``), the peer comparison (``compare.py``) and the
scaling figures (``scaling.py``). See ``benchmarks/README.md``."""
import sys

import fastfeat  # noqa: F401  (the installed build, before any script below can touch sys.path)


def _hide_script_helpers(modules=("gpu_check",)):
    """asv imports every module of this package and takes each module-level ``time_*`` / ``track_*``
    function for a benchmark. ``gpu_check.py`` (issue 6) is a script whose ``time_*`` helpers take
    arguments; mark them so asv skips them (asv honours ``skip_benchmark``)."""
    import importlib

    for name in modules:
        try:
            mod = importlib.import_module(f"{__name__}.{name}")
        except Exception:  # a script that cannot be imported here is not a benchmark either
            continue
        for attr in dir(mod):
            if attr.startswith(("time_", "track_", "peakmem_", "mem_", "timeraw_")):
                fn = getattr(mod, attr)
                if callable(fn) and not getattr(fn, "params", None):
                    try:
                        fn.skip_benchmark = True
                    except AttributeError:
                        pass


if "asv_runner" in sys.modules:  # only under asv's discovery and benchmark runs
    _hide_script_helpers()
