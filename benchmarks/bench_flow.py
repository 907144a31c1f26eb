"""Gradient flow: ``ff.flow`` against ``scipy.integrate.solve_ivp`` on the same compiled gradient.

A representative teacher-student run (relu, d = 20, m* = 4, small initialization, weight decay 1e-3)
integrated from the same initial point to the same time ``t`` at the same rtol / atol (the defaults of
``ff.flow``: 1e-8 / 1e-10) by

- ``ff.flow`` with each method (``auto``, the default; ``dop853``; ``dopri5``; ``rkc``), logging only the
  endpoints;
- ``solve_ivp`` with ``RK45`` (its default) and ``DOP853``, whose right-hand side calls the compiled
  population gradient directly (``population.loss_grad`` + ``common.add_reg_grad`` on views of the
  state vector, into preallocated arrays), so scipy pays for no validation, only for its own stepping.

Reported per contender: wall time (best of ``--repeat`` round-robin runs), accepted steps, gradient
evaluations, time per evaluation, the endpoint's relative difference from solve_ivp's DOP853 endpoint,
and the speed ratio of each pair. The time of one gradient evaluation, measured in the same run, shows
how much of each contender's time is the gradient itself.

m = 256 runs to ``t = 3000``: the loss is then within 1% of its long-time value under this weight decay
(the small-loss phase, where the far neurons decay on the slow time scale 1/lam while the largest
curvature stays O(1): the ill-conditioned end of training). m = 4096 runs to ``t = 2`` (one gradient
takes a large fraction of a second there; ``--t4096`` changes it) without RKC unless ``--rkc-4096``:
that early stretch is not stiff and RKC, a second-order method, is not meant for it at rtol 1e-8
(``auto`` stays with DOP853 there).

    python -m benchmarks.bench_flow [--quick] [--repeat R] [--skip-4096] [--rkc-4096] [--t256 T] [--t4096 T]
                                    [--rtol R] [--atol A] [--methods auto,dop853,...]

``--quick``: tiny sizes and times (a smoke test of the script, a few seconds after compilation).

``--update-docs``: the documented set instead (``DOC_RUNS``: m = 256 to t = 3000 and to t = 10^4 at the
default tolerances, to t = 3000 at rtol 1e-6, and m = 4096 to t = 2), printed in full and summed up in
the table of docs/guide/flow.md (its ``<!-- perf-flow:start -->`` block), with the machine it ran on.
About 12 minutes on 2 cores.
"""
import argparse
import os
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

D, M_STAR, ACTIVATION, SCALE, LAM = 20, 4, "relu", 0.1, 1e-3
RTOL, ATOL = 1e-8, 1e-10
#: the tolerances of this run (--rtol, --atol)
TOL = {"rtol": RTOL, "atol": ATOL}
FF_METHODS = ("auto", "dop853", "dopri5", "rkc")
SCIPY_METHODS = ("RK45", "DOP853")
#: (ff method, scipy method) pairs compared head to head
PAIRS = [("auto", "DOP853"), ("auto", "RK45"), ("dop853", "DOP853"), ("dopri5", "RK45"), ("dop853", "RK45"),
         ("rkc", "RK45"), ("rkc", "DOP853")]


class FlowToSmallLoss:
    """asv: ``ff.flow`` into the stiff small-loss phase (relu, d = 10, m = 32, m* = 2, initial scale 0.3,
    weight decay 1e-3, to t = 500 at the default tolerances, one thread): the wall time, and the
    gradient evaluations each method needs (deterministic: a change in an integrator's stepping shows
    up there first, free of the machine's noise)."""
    params = (["auto", "dop853", "rkc"],)
    param_names = ["method"]
    timeout = 300

    def setup(self, method):
        import fastfeat as ff

        flow = getattr(ff, "flow", None)
        if flow is None:
            raise NotImplementedError("ff.flow is not in this version")
        import importlib

        mod = importlib.import_module("fastfeat.training.gradient_flow")
        if method not in getattr(mod, "METHODS", ()):
            raise NotImplementedError(f"ff.flow has no method {method!r} in this version")
        self.ff = ff
        self.teacher = ff.Teacher.random(10, 2, activation="relu", seed=0)
        self.net0 = ff.TwoLayer.init(10, 32, activation="relu", scale=0.3, seed=1)
        self.objective = ff.Population(self.teacher)
        self._run(method, 1.0)  # compile (or load from the cache) outside the timing

    def _run(self, method, t):
        ff = self.ff
        return ff.flow(self.net0.copy(), self.objective, t, reg=ff.WeightDecay(LAM), method=method, log_times=1,
                       n_threads=1)

    def time_flow(self, method):
        self._run(method, 500.0)

    def track_gradients(self, method):
        return float(self._run(method, 500.0)["evals"][-1])

    track_gradients.unit = "gradient evaluations"


def _setup(m, d=D):
    import fastfeat as ff

    teacher = ff.Teacher.random(d, M_STAR, activation=ACTIVATION, seed=0)
    net = ff.TwoLayer.init(d, m, activation=ACTIVATION, scale=SCALE, seed=1)
    return teacher, net


class ScipyGradient:
    """``fun(t, y)`` for solve_ivp: minus the regularized population gradient at the state ``y`` = (W
    row-major, a), from the compiled kernels, into preallocated arrays (a new output array per call:
    solve_ivp keeps the derivatives it is given)."""

    def __init__(self, net, objective, lam):
        import numpy as np

        from fastfeat.kernels.cpu import common, population

        self.np = np
        self.loss_grad, self.add_reg_grad = population.loss_grad, common.add_reg_grad
        self.reg_code = common.REG_WEIGHT_DECAY
        self.m, self.d, self.code, self.lam = net.m, net.d, net.code, lam
        self.Wt, self.at = objective.teacher.W, objective.teacher.a
        self.ws = objective._workspace(net)
        self.gW = np.empty((net.m, net.d))
        self.ga = np.empty(net.m)
        self.n = net.m * net.d + net.m
        self.calls = 0

    def __call__(self, t, y):
        md = self.m * self.d
        y = self.np.ascontiguousarray(y)
        W = y[:md].reshape(self.m, self.d)
        a = y[md:]
        self.loss_grad(W, a, self.Wt, self.at, self.code, self.gW, self.ga, self.ws, True)
        self.add_reg_grad(W, a, self.gW, self.ga, self.reg_code, self.lam, self.lam)
        out = self.np.empty(self.n)
        self.np.negative(self.gW.ravel(), out=out[:md])
        self.np.negative(self.ga, out=out[md:])
        self.calls += 1
        return out


def _state(net):
    import numpy as np

    return np.concatenate([net.W.ravel(), net.a])


def run_ff(method, net0, objective, t):
    import fastfeat as ff
    from fastfeat.training.gradient_flow import flow

    net = net0.copy()
    t0 = time.perf_counter()
    hist = flow(net, objective, t, reg=ff.WeightDecay(LAM), method=method, rtol=TOL["rtol"], atol=TOL["atol"],
                log_times=1)
    wall = time.perf_counter() - t0
    return dict(wall=wall, steps=int(hist.step[-1]), evals=int(hist["evals"][-1]),
                rejected=int(hist["rejected"][-1]), y=_state(net), loss=float(hist["loss"][-1]))


def run_scipy(method, net0, objective, t):
    from scipy.integrate import solve_ivp

    from fastfeat.training.common import use_threads

    fun = ScipyGradient(net0, objective, LAM)
    with use_threads(None, objective, net0):  # the gradient on the threads ff.flow would use (one for a small one)
        t0 = time.perf_counter()
        sol = solve_ivp(fun, (0.0, t), _state(net0), method=method, rtol=TOL["rtol"], atol=TOL["atol"])
        wall = time.perf_counter() - t0
    if not sol.success:
        raise RuntimeError(f"solve_ivp {method} failed: {sol.message}")
    return dict(wall=wall, steps=len(sol.t) - 1, evals=int(sol.nfev), rejected=None, y=sol.y[:, -1], loss=None)


def gradient_time(net, objective, y=None, repeat=5, number=None):
    """Seconds per evaluation of the compiled gradient (loss_grad + add_reg_grad) at the state ``y``
    (default: the net's), best of ``repeat``."""
    from fastfeat.training.common import use_threads

    fun = ScipyGradient(net, objective, LAM)
    y = _state(net) if y is None else y
    with use_threads(None, objective, net):
        return _best_time(fun, y, repeat, number)


def _best_time(fun, y, repeat, number):
    import numpy as np

    fun(0.0, y)
    number = number or max(1, int(0.2 / max(_once(fun, y), 1e-6)))
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fun(0.0, y)
        best = min(best, (time.perf_counter() - t0) / number)
    return best


def _once(fun, y):
    t0 = time.perf_counter()
    fun(0.0, y)
    return time.perf_counter() - t0


def compare(m, t, methods_ff, methods_scipy, repeat):
    """Round-robin runs of every contender; returns {name: best result} and the gradient time."""
    import numpy as np

    import fastfeat as ff

    teacher, net0 = _setup(m)
    objective = ff.Population(teacher)
    # compile outside the timing (a short run of each method and of the scipy right-hand side)
    for method in methods_ff:
        run_ff(method, net0, objective, min(t, 1e-3))
    ScipyGradient(net0, objective, LAM)(0.0, _state(net0))
    t_start = gradient_time(net0, objective)
    best = {}
    contenders = [("ff." + mth, run_ff, mth) for mth in methods_ff] + \
                 [("scipy." + mth, run_scipy, mth) for mth in methods_scipy]
    for r in range(repeat):
        for name, fn, mth in contenders:
            res = fn(mth, net0, objective, t)
            print(f"  [m={m} repeat {r + 1}/{repeat}] {name}: {res['wall']:.2f} s, {res['evals']} evaluations",
                  file=sys.stderr, flush=True)
            if name not in best or res["wall"] < best[name]["wall"]:
                best[name] = res
    ref = best.get("scipy.DOP853", next(iter(best.values())))["y"]
    # the gradient's cost depends a little on the state: at the start and at the end
    t_grad = (t_start, gradient_time(net0, objective, ref))
    for res in best.values():
        res["diff"] = float(np.linalg.norm(res["y"] - ref) / np.linalg.norm(ref))
    return best, t_grad


def table(m, t, best, t_grad):
    mean_grad = 0.5 * (t_grad[0] + t_grad[1])
    lines = [f"#### d = {D}, m = {m}, m* = {M_STAR}, {ACTIVATION}, init scale {SCALE}, weight decay {LAM}, "
             f"t = {t:g}, rtol = {TOL['rtol']:g}, atol = {TOL['atol']:g}",
             "",
             f"One gradient evaluation (compiled, float64): {t_grad[0] * 1e3:.3g} ms at the initial state, "
             f"{t_grad[1] * 1e3:.3g} ms at the final one (the last column divides by their mean).",
             "",
             "| contender | wall time | accepted steps | rejected | gradient evaluations | time per evaluation "
             "| time per evaluation / gradient | endpoint vs scipy DOP853 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, res in best.items():
        per = res["wall"] / res["evals"]
        rej = "—" if res["rejected"] is None else str(res["rejected"])
        lines.append(f"| {name} | {res['wall']:.2f} s | {res['steps']} | {rej} | {res['evals']} | {per * 1e3:.3g} ms "
                     f"| {per / mean_grad:.2f} | {res['diff']:.1e} |")
    lines += ["",
              "| pair | speed-up of ff.flow | gradient evaluations (scipy / ff) | per-evaluation cost (scipy / ff) |",
              "|---|---:|---:|---:|"]
    for ours, theirs in PAIRS:
        a, b = best.get("ff." + ours), best.get("scipy." + theirs)
        if a is None or b is None:
            continue
        lines.append(f"| ff.flow {ours} vs solve_ivp {theirs} | {b['wall'] / a['wall']:.2f}x "
                     f"| {b['evals'] / a['evals']:.2f} | {(b['wall'] / b['evals']) / (a['wall'] / a['evals']):.2f} |")
    return "\n".join(lines)


#: the documented runs: (m, t, rtol, atol, ff methods, repeats)
DOC_RUNS = [
    (256, 3000.0, RTOL, ATOL, ("auto", "dop853", "dopri5", "rkc"), 2),
    (256, 1e4, RTOL, ATOL, ("auto", "dop853", "rkc"), 1),
    (256, 3000.0, 1e-6, 1e-8, ("auto", "dop853", "rkc"), 1),
    (4096, 2.0, RTOL, ATOL, ("auto", "dop853", "dopri5"), 2),
]
DOCS_FLOW = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "guide", "flow.md")


def _n(x):
    return f"{x:,.0f}"


def summary_rows(m, t, best):
    """Rows of the docs' summary table for one run: each ff.flow method with its speed-ups, then the two
    solve_ivp contenders on one row."""
    run = f"m = {m}, t = {t:g}, rtol {TOL['rtol']:g}, atol {TOL['atol']:g}"
    rows = []
    for name, res in best.items():
        if not name.startswith("ff."):
            continue
        method = name[3:]
        vs = []
        for theirs in reversed(SCIPY_METHODS):  # DOP853 first: the same method's ratio
            other = best.get("scipy." + theirs)
            if other is not None and (method, theirs) in PAIRS:
                vs.append(f"{other['wall'] / res['wall']:.2f}x vs {theirs}")
        label = f"`ff.flow` {method}" + (" (default)" if method == "auto" else "")
        rows.append(f"| {run if not rows else ''} | {label} | {res['wall']:.1f} s | {_n(res['evals'])} "
                    f"| {', '.join(vs)} | {res['diff']:.0e} |")
    names = [x for x in SCIPY_METHODS if "scipy." + x in best]
    sc = [best["scipy." + x] for x in names]
    walls = " / ".join("%.1f s" % r["wall"] for r in sc)
    evals = " / ".join(_n(r["evals"]) for r in sc)
    diffs = " / ".join("%.0e" % r["diff"] for r in sc)
    rows.append(f"| | `solve_ivp` {' / '.join(names)} | {walls} | {evals} | | {diffs} |")
    return rows


def docs_table(results, machine):
    lines = ["| run | contender | wall time | gradients | ff.flow faster by | endpoint vs DOP853 |",
             "|---|---|---:|---:|---:|---:|"]
    for rows in results:
        lines += rows
    return "\n".join(lines + ["", "Measured on:", "", machine.strip()])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes and times (smoke test)")
    ap.add_argument("--repeat", type=int, default=3, help="round-robin repeats (best of)")
    ap.add_argument("--skip-4096", action="store_true", help="only m = 256")
    ap.add_argument("--rkc-4096", action="store_true", help="also RKC at m = 4096")
    ap.add_argument("--t256", type=float, default=3000.0, help="end time at m = 256")
    ap.add_argument("--t4096", type=float, default=2.0, help="end time at m = 4096")
    ap.add_argument("--rtol", type=float, default=RTOL, help="relative tolerance of every contender")
    ap.add_argument("--atol", type=float, default=ATOL, help="absolute tolerance of every contender")
    ap.add_argument("--methods", default=",".join(FF_METHODS),
                    help="the ff.flow methods to run, comma-separated (default: all; RKC at m = 4096 only with "
                         "--rkc-4096)")
    ap.add_argument("--update-docs", action="store_true",
                    help="run the documented set (DOC_RUNS) and write its table into docs/guide/flow.md")
    args = ap.parse_args(argv)
    chosen = tuple(x for x in args.methods.split(",") if x)
    unknown = sorted(set(chosen) - set(FF_METHODS))
    if unknown or not chosen:
        ap.error(f"--methods: choose from {', '.join(FF_METHODS)} (got {args.methods!r})")
    TOL.update(rtol=args.rtol, atol=args.atol)

    if __package__ in (None, ""):
        from benchmarks import _common as C
    else:
        from . import _common as C

    print("### ff.flow against scipy.integrate.solve_ivp\n")
    print(C.machine_description(), "\n")
    if args.update_docs:
        results = []
        for m, t, rtol, atol, methods, repeat in DOC_RUNS:
            TOL.update(rtol=rtol, atol=atol)
            best, t_grad = compare(m, t, methods, SCIPY_METHODS, repeat)
            print(table(m, t, best, t_grad), "\n", flush=True)
            results.append(summary_rows(m, t, best))
        machine = C.machine_description()
        print(machine, "\n")
        C.update_readme("flow", docs_table(results, machine), path=DOCS_FLOW)
        print(f"updated {os.path.relpath(DOCS_FLOW)}")
        return
    explicit = tuple(x for x in chosen if x != "rkc")
    runs = [(256, args.t256, chosen)]
    if not args.skip_4096:
        runs.append((4096, args.t4096, chosen if args.rkc_4096 else explicit))
    if args.quick:
        runs = [(32, 5.0, chosen), (64, 1.0, explicit)]
    for m, t, methods in runs:
        best, t_grad = compare(m, t, methods, SCIPY_METHODS, 1 if args.quick else args.repeat)
        print(table(m, t, best, t_grad), "\n", flush=True)
    print(C.machine_description(), "\n")


if __name__ == "__main__":
    main()
