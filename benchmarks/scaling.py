"""Scaling figures: time per step against width, the fitted log-log slopes, the 1 -> 2 thread speedup.

    python benchmarks/scaling.py                  # full sweep (a few minutes), writes docs/scaling.png
    python benchmarks/scaling.py --quick          # fewer sizes and repeats
    python benchmarks/scaling.py --update-readme  # also rewrite its block in docs/performance.md

- population GD step (relu, weight decay, m* = 16, d = 128, float32) against the width m: the step costs
  O(m (m + m*) d), so the slope in m should be close to 2 once the m^2 part dominates;
- full-batch empirical GD step (relu, weight decay, d = 256, m = 2048, float32) against the number of
  samples n: O(n m d), slope close to 1.

The GEMMs each step contains are timed at every size in the same run (grey in the figure). The thread
speedup compares ``ff.train(n_threads=1)`` with BLAS limited to one thread (threadpoolctl) against two
threads, at the sizes of issues 2 and 3.
"""
import argparse
import contextlib
import math
import os
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks import _common as C  # noqa: E402
else:
    from . import _common as C

import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextlib.contextmanager
def blas_threads(n):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        yield
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield


def sweep(make, sizes, repeat, log):
    """(step seconds, GEMM seconds) at each size, timed round-robin."""
    steps, gemms = [], []
    for s in sizes:
        w = make(s)
        w.run(1)
        w.gemm()
        t = C.interleaved_best({"step": (w.run, 1, w.reset), "gemm": (w.gemm, 1, None)}, repeat=repeat)
        steps.append(t["step"])
        gemms.append(t["gemm"])
        log(f"  {s}: step {t['step'] * 1e3:.2f} ms, GEMMs {t['gemm'] * 1e3:.2f} ms")
    return np.array(steps), np.array(gemms)


def slope(x, t):
    return float(np.polyfit(np.log(x), np.log(t), 1)[0])


def thread_speedup(w, k, repeat):
    """(t1, t2): seconds per step with 1 thread (numba and BLAS) and with 2."""
    import numba

    w.run(k)

    def one():
        with blas_threads(1):
            w.run(k, n_threads=1)

    def two():
        w.run(k, n_threads=min(2, numba.config.NUMBA_NUM_THREADS))

    t = C.interleaved_best({"1": (one, 1, w.reset), "2": (two, 1, w.reset)}, repeat=repeat)
    return t["1"] / k, t["2"] / k


def plot(path, pop, emp, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for ax, (name, xs, ts, gs, xlabel, expect) in zip(axes, (pop, emp)):
        xs = np.asarray(xs, float)
        ax.loglog(xs, ts * 1e3, "o-", color="C0", label="fastfeat step")
        ax.loglog(xs, gs * 1e3, "s--", color="0.55", label="its GEMMs (numpy BLAS)")
        big = xs >= xs[len(xs) // 2]
        k = slope(xs[big], ts[big])
        b = np.polyfit(np.log(xs[big]), np.log(ts[big] * 1e3), 1)[1]
        xx = np.array([xs[0], xs[-1]])
        ax.loglog(xx, np.exp(b) * xx**k, ":", color="C3",
                  label=f"fit on the upper half: slope {k:.2f} (expect ≈ {expect})")
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{int(x)}" for x in xs])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(xlabel)
        ax.set_ylabel("time per step (ms)")
        ax.set_title(name)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    ap.add_argument("--png", default=os.path.join(ROOT, "docs", "scaling.png"))
    ap.add_argument("--update-readme", action="store_true")
    ap.add_argument("--ms", help="comma-separated widths m for the population sweep (default by mode)")
    ap.add_argument("--ns", help="comma-separated sample counts n for the empirical sweep")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    repeat = 3 if args.quick else 5
    p, e = C.POPULATION, C.EMPIRICAL
    ms = [256, 512, 1024, 2048, 4096] if args.quick else [256, 512, 1024, 2048, 4096, 8192]
    ns = [1024, 2048, 4096, 8192] if args.quick else [1024, 2048, 4096, 8192, 16384, 32768]
    if args.ms:
        ms = [int(x) for x in args.ms.split(",")]
    if args.ns:
        ns = [int(x) for x in args.ns.split(",")]

    log(f"population, m in {ms} ...")
    pt, pg = sweep(lambda m: C.population(m=m, m_star=p["m_star"], d=p["d"], dtype="float32"), ms, repeat, log)
    rows = [("population step vs m", ms, pt, pg)]
    have_emp = C.has_empirical()
    if have_emp:
        log(f"empirical, n in {ns} ...")
        et, eg = sweep(lambda n: C.empirical(n=n, d=e["d"], m=e["m"], m_star=e["m_star"], dtype="float32"),
                       ns, repeat, log)
        rows.append(("empirical step vs n", ns, et, eg))
    else:
        log("ff.Empirical not available: population only")

    log("threads ...")
    speed = [("population", p, *thread_speedup(C.population(dtype="float32"), 1, repeat))]
    if have_emp:
        speed.append(("empirical", e, *thread_speedup(C.empirical(dtype="float32"), 1, repeat)))
    if C.has_online():
        speed.append(("online (batch 1)", C.ONLINE, *thread_speedup(C.online(dtype="float32"), 2000, repeat)))

    lines = ["| step | sizes | time per step (ms) | GEMMs (ms) | step / GEMMs |", "|---|---|---|---|---|"]
    slopes = []
    for name, xs, ts, gs in rows:
        var = "m" if "population" in name else "n"
        for x, t, g in zip(xs, ts, gs):
            lines.append(f"| {name.split()[0]} | {var}={x} | {t * 1e3:.2f} | {g * 1e3:.2f} | {t / g:.2f} |")
        xs_a = np.asarray(xs, float)
        big = xs_a >= xs_a[len(xs_a) // 2]
        expect = 2 if var == "m" else 1
        slopes.append(f"- {name.split()[0]} step against {var}: log–log slope {slope(xs_a[big], ts[big]):.2f} "
                      f"over {var} ≥ {xs[len(xs) // 2]} ({slope(xs_a, ts):.2f} over all sizes; expected ≈ "
                      f"{expect}); GEMMs alone: {slope(xs_a[big], gs[big]):.2f}")
    threads = [f"- {name} ({', '.join(f'{k}={v}' for k, v in sz.items())}): 1 thread {C.fmt_time(t1)}, "
               f"2 threads {C.fmt_time(t2)} per step, speedup {t1 / t2:.2f}x" for name, sz, t1, t2 in speed]

    title = f"fastfeat scaling, float32 relu, {C.cpu_model()}, {os.cpu_count()} cores"
    emp = rows[1] if have_emp else None
    pop_panel = ("population GD step (m*=16, d=128)", ms, pt, pg, "width m", 2)
    panels = [pop_panel]
    if emp is not None:
        panels.append(("full-batch empirical GD step (d=256, m=2048)", ns, et, eg, "samples n", 1))
    else:  # keep the two-panel layout
        panels.append(pop_panel)
    plot(args.png, panels[0], panels[1], title)
    rel_png = os.path.relpath(args.png, ROOT)

    cmd = "python benchmarks/scaling.py" + (" --quick" if args.quick else "")
    out = (f"Measured by `{cmd}`, best of {repeat} "
           f"round-robin repeats; {C.cpu_model()}, {os.cpu_count()} cores.\n\n"
           f"![time per step against width]({rel_png})\n\n" + "\n".join(slopes) + "\n\n"
           "Thread speedup (1 thread: numba and BLAS both limited to one):\n\n" + "\n".join(threads) + "\n\n"
           + "\n".join(lines))
    print(out)
    log(f"wrote {args.png}; total {time.perf_counter() - t_start:.0f} s")
    if args.update_readme:
        C.update_docs("scaling", "### Scaling with width and threads\n\n" + out)
        log("updated " + ", ".join(C.TARGETS["scaling"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
