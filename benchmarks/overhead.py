"""Time that is not training: start-up (compiling or loading the kernels) and logging inside ``ff.train``.

    python benchmarks/overhead.py                   # both parts (start-up with an empty cache: minutes)
    python benchmarks/overhead.py --part logging    # only the logging costs (about a minute)
    python benchmarks/overhead.py --update-readme   # also rewrite its block in docs/performance.md

Start-up: scripts run in new processes with ``NUMBA_CACHE_DIR`` pointing to a new, empty folder (cold:
every kernel they use is compiled) and then again (warm: loaded from the disk cache); wall time of the
whole process, import included. ``fastfeat warmup`` is timed the same way.

Logging: ``ff.train`` with its default metrics and ``log_every`` against the bare kernel (``metrics=()``
and one call for all steps), and the population objective logging "loss" at every step against
``metrics=()``; best of several interleaved repeats, in one process.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks import _common as C  # noqa: E402
else:
    from . import _common as C

import numpy as np  # noqa: E402

import fastfeat as ff  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

QUICKSTART = """
import fastfeat as ff

teacher = ff.Teacher.random(d=20, m_star=3, activation="relu_centered", signs="mixed", seed=0)
net = ff.TwoLayer.init(d=20, m=256, activation="relu_centered", scale=0.5, seed=1)
objective = ff.Population(teacher)                  # exact Gaussian population loss
hist = ff.train(net, objective, steps=2000, lr=0.5, reg=ff.WeightDecay(1e-4), log_every=500)
print(hist.step, hist.metrics["loss"])
"""

THREE_RUNS = """
import fastfeat as ff
t = ff.Teacher.random(10, 2, activation="relu", seed=0)
ff.train(ff.TwoLayer.init(10, 32, seed=1), ff.Population(t), steps=100, lr=0.05, reg=ff.WeightDecay(1e-3))
t32 = t.astype("float32")
ff.train(ff.TwoLayer.init(10, 32, seed=1, dtype="float32"), ff.Empirical.sample(t32, 500, seed=1), steps=100,
         lr=0.05)
ff.train(ff.TwoLayer.init(10, 32, seed=1, dtype="float32"), ff.Online(t32), steps=1000, lr=0.01)
"""


def _timed(args, env):
    t0 = time.perf_counter()
    r = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(args[:3])} failed:\n{r.stderr[-2000:]}")
    return time.perf_counter() - t0


def startup(log, warmup=True):
    """{name: (cold seconds, warm seconds)} of new processes."""
    out = {}
    cases = [("README quickstart", [sys.executable, "-c", textwrap.dedent(QUICKSTART)]),
             ("population f64 + empirical f32 + online batch-1 f32, small runs",
              [sys.executable, "-c", textwrap.dedent(THREE_RUNS)])]
    if warmup:
        cases.append(("`fastfeat warmup` (its default tasks, both float types)",
                      [sys.executable, "-m", "fastfeat.cli", "warmup", "--quiet"]))
    for name, args in cases:
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache)
            cold = _timed(args, env)
            warm = min(_timed(args, env) for _ in range(3))
        out[name] = (cold, warm)
        log(f"  {name}: cold {cold:.1f} s, warm {warm:.2f} s")
    return out


def logging_costs(log, repeat=5):
    """{name: (seconds with logging, seconds bare)}."""
    out = {}
    t = ff.Teacher.random(128, 16, activation="relu", seed=0, dtype="float32")
    obj = ff.Online(t, seed=1)
    steps = 20000
    net = ff.TwoLayer.init(128, 1024, seed=2, scale=0.5, dtype="float32")
    W0, a0 = net.W.copy(), net.a.copy()

    def reset():
        net.W[...] = W0
        net.a[...] = a0

    def default():
        ff.train(net, obj, steps=steps, lr=1e-3)

    def bare():
        ff.train(net, obj, steps=steps, lr=1e-3, metrics=(), log_every=steps)

    default()
    bare()
    r = C.interleaved_best({"default": (default, 1, reset), "bare": (bare, 1, reset)}, repeat=repeat)
    out["online batch 1, d=128, m=1024, float32: default metrics, log_every=100 vs metrics=(), one call"] = (
        r["default"] / steps, r["bare"] / steps)
    tp = ff.Teacher.random(128, 16, activation="relu", seed=0, dtype="float32")
    pop = ff.Population(tp)
    pnet = ff.TwoLayer.init(128, 1024, seed=2, scale=0.5, dtype="float32")
    P0 = pnet.W.copy(), pnet.a.copy()
    psteps = 20

    def preset():
        pnet.W[...] = P0[0]
        pnet.a[...] = P0[1]

    def logged():
        ff.train(pnet, pop, steps=psteps, lr=1e-3, log_every=1, metrics=("loss",))

    def pbare():
        ff.train(pnet, pop, steps=psteps, lr=1e-3, log_every=1, metrics=())

    logged()
    pbare()
    r = C.interleaved_best({"logged": (logged, 1, preset), "bare": (pbare, 1, preset)}, repeat=repeat)
    out["population, m=1024, m*=16, d=128, float32: log_every=1 with \"loss\" vs metrics=()"] = (
        r["logged"] / psteps, r["bare"] / psteps)
    # per-call cost of ff.train on a tiny problem: almost all of it is Python around the kernel
    tt = ff.Teacher.random(2, 1, activation="relu", seed=0)
    tobj = ff.Population(tt)
    tnet = ff.TwoLayer.init(2, 2, seed=1)
    n = 2000

    def tiny_calls():
        ff.train(tnet, tobj, steps=n, lr=1e-3, log_every=1, metrics=())

    def tiny_one():
        ff.train(tnet, tobj, steps=n, lr=1e-3, log_every=n, metrics=())

    tiny_calls()
    tiny_one()
    r = C.interleaved_best({"calls": (tiny_calls, 1, None), "one": (tiny_one, 1, None)}, repeat=repeat)
    out["ff.train per-call overhead in Python (d=2, m=2 population, metrics=()): per call, and the kernel's "
        "time per step"] = (
        (r["calls"] - r["one"]) / n, r["one"] / n)
    for k, (x, y) in out.items():
        log(f"  {k}: {C.fmt_time(x)} vs {C.fmt_time(y)} ({x / y:.2f}x)")
    return out


def render(st, lg):
    lines = [f"Measured by `python benchmarks/overhead.py`; {C.cpu_model()}, {os.cpu_count()} cores.", ""]
    if st:
        lines += ["New processes (wall time, import included); cold: an empty kernel cache, warm: best of three "
                  "later runs.", "", "| script | cold | warm |", "|---|---:|---:|"]
        lines += [f"| {k} | {c:.1f} s | {w:.2f} s |" for k, (c, w) in st.items()]
        lines.append("")
    if lg:
        lines += ["Logging inside `ff.train` (best of interleaved repeats, one process):", "",
                  "| case | with logging | without | ratio |", "|---|---:|---:|---:|"]
        for k, (x, y) in lg.items():
            ratio = "—" if k.startswith("ff.train per-call") else f"{x / y:.2f}x"
            lines.append(f"| {k} | {C.fmt_time(x)} | {C.fmt_time(y)} | {ratio} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("all", "startup", "logging"), default="all")
    ap.add_argument("--no-warmup", action="store_true", help="start-up part: skip timing `fastfeat warmup`")
    ap.add_argument("--update-readme", action="store_true")
    args = ap.parse_args(argv)
    log = lambda s: print(s, flush=True)  # noqa: E731
    st = lg = None
    if args.part in ("all", "startup"):
        log("start-up:")
        st = startup(log, warmup=not args.no_warmup)
    if args.part in ("all", "logging"):
        log("logging:")
        lg = logging_costs(log)
    body = "### Start-up and logging\n\n" + render(st, lg)
    print(body)
    if args.update_readme:
        C.update_docs("overhead", body)


if __name__ == "__main__":
    main()
