"""Where the compile time of ``fastfeat warmup`` goes: per warm-up task and float type, and per kernel.

    python benchmarks/compile_profile.py                        # every task (the optional ones too)
    python benchmarks/compile_profile.py --task online --dtype float64 --top 15

Each (task, float type) runs in a new process with an empty kernel cache (``NUMBA_CACHE_DIR`` in a new
folder), alone, so its time is everything that task compiles, shared code included; ``fastfeat warmup``
runs the tasks one after the other in one cache, where code an earlier task compiled is loaded instead.
numba's compile events give, per jitted function, the time spent compiling it outside the functions it
calls (``self``: typing, lowering and the LLVM optimization and code generation of its module, which
includes the code of the callees linked into it) and, for functions called from Python (``entry``),
the whole time including every callee compiled on the way. Closures made by factories (``<locals>``)
are compiled into each kernel that calls them, once per caller.
"""
import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time

_CHILD = r"""
import collections, json, sys, time
from numba.core import event
import fastfeat  # noqa: F401  (registers the tasks)
from fastfeat.kernels import _warmup
task, dtype = sys.argv[1], sys.argv[2]
rec = event.RecordingListener()
t0 = time.perf_counter()
with event.install_listener("numba:compile", rec):
    _warmup.TASKS[task](dtype)
wall = time.perf_counter() - t0
stack, own, entry, count = [], collections.Counter(), collections.Counter(), collections.Counter()
for ts, ev in rec.buffer:
    fn = ev.data["dispatcher"].py_func
    name = f"{fn.__module__.replace('fastfeat.', '')}.{fn.__qualname__}"
    if ev.is_start:
        stack.append([name, ts, 0.0])
        continue
    name, start, children = stack.pop()
    own[name] += ts - start - children
    count[name] += 1
    if stack:
        stack[-1][2] += ts - start
    else:
        entry[name] += ts - start
print(json.dumps({"wall": wall, "own": own, "entry": entry, "count": count}))
"""


def profile(task, dtype):
    """The compile profile of one warm-up task in a new process with an empty cache."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-c", _CHILD, task, dtype], capture_output=True, text=True, env=env)
        if r.returncode:
            raise RuntimeError(f"{task} {dtype} failed:\n{r.stderr[-3000:]}")
        out = json.loads(r.stdout.strip().splitlines()[-1])
        out["process"] = time.perf_counter() - t0
        return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", action="append", help="warm-up task (repeatable; default: all of them)")
    ap.add_argument("--dtype", action="append", choices=("float32", "float64"), help="default: the task's own")
    ap.add_argument("--top", type=int, default=10, help="kernels listed per task (default 10)")
    args = ap.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import fastfeat  # noqa: F401
    from fastfeat.kernels import _warmup
    from benchmarks._common import machine_description

    print(machine_description())
    print(f"- NUMBA_CPU_NAME={os.environ.get('NUMBA_CPU_NAME', 'host')}\n")
    tasks = args.task or list(_warmup.TASKS)
    print("| task | float type | default | process (s) | compiling (s) | functions compiled |")
    print("|---|---|---|---:|---:|---:|")
    details = []
    for task in tasks:
        for dt in args.dtype or _warmup.TASK_DTYPES[task]:
            res = profile(task, dt)
            n = sum(res["count"].values())
            print(f"| {task} | {dt} | {'yes' if task in _warmup.DEFAULT_TASKS else 'no'} | {res['process']:.1f} | "
                  f"{res['wall']:.1f} | {n} |", flush=True)
            details.append((task, dt, res))
    for task, dt, res in details:
        print(f"\n{task} {dt}: functions called from Python (entry, with what they compile), then the most "
              "costly functions by their own time")
        for name, sec in collections.Counter(res["entry"]).most_common(args.top):
            print(f"  entry {sec:7.2f} s  {name}")
        for name, sec in collections.Counter(res["own"]).most_common(args.top):
            print(f"  self  {sec:7.2f} s  x{res['count'][name]:<2d} {name}")


if __name__ == "__main__":
    main()
