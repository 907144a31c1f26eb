"""The convergence table of docs/guide/ode.md: online SGD against ``ff.ode`` at d = 1,000 and d = 10,000.

    python benchmarks/docs_ode_convergence.py [--update-docs]     # about 4 minutes on 2 cores

For each setting (erf and relu, the second layer fixed or trained, with and without weight decay, and a
relu student with an erf teacher) and each seed, ``ff.train`` runs online SGD (batch 1, step sizes lr / d)
from a random student and ``ff.ode`` integrates the ODE from that student's own overlaps; the table gives
the root mean square over seeds and logged times of the difference of the two population losses at both
dimensions, their ratio (the fluctuations of SGD around its d -> infinity limit shrink like 1 / sqrt(d):
sqrt(1000 / 10000) = 0.32 expected), and how far the seed mean lies from the ODE at d = 10,000 in standard
errors (no bias: within a few). ``--update-docs`` writes the table into docs/guide/ode.md.
"""
import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import _common as C  # noqa: E402
from benchmarks.docs_ode import both_layers, committee, relu_weight_decay  # noqa: E402

import fastfeat as ff  # noqa: E402

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "guide", "ode.md")
DIMS = (1000, 10000)
SEEDS = range(1, 7)
ROWS = 8


def relu_learns_erf(d, seed):
    """A relu student (m = 4) learning an erf teacher of two orthonormal directions."""
    Wt = np.linalg.qr(np.random.default_rng(0).standard_normal((d, 2)))[0].T
    W = np.random.default_rng(seed).normal(size=(4, d)) * np.sqrt(0.3 / d)
    return ff.TwoLayer(W, np.full(4, 0.1), "relu"), ff.Teacher(Wt, np.array([1.0, 0.6]), "erf")


#: (label, network maker, alpha, lr, lr_a, regularizer)
SETTINGS = [
    ("erf, K = M = 2, a fixed (Saad & Solla)", committee, 8.0, 1.0, 0.0, None),
    ("erf, m = 4, m* = 2, both layers, weight decay 1e-3", both_layers, 8.0, 0.5, 0.3, ff.WeightDecay(1e-3)),
    ("relu, m = 4, m* = 2, a fixed", relu_weight_decay, 8.0, 0.5, 0.0, None),
    ("relu, m = 4, m* = 2, both layers, weight decay 1e-3", relu_weight_decay, 8.0, 0.5, 0.3, ff.WeightDecay(1e-3)),
    ("relu student, erf teacher, both layers, weight decay 1e-3", relu_learns_erf, 8.0, 0.5, 0.3,
     ff.WeightDecay(1e-3)),
]


def one(job):
    """The loss of online SGD minus the ODE's at the logged times, for one setting, d and seed."""
    k, d, seed = job
    _, make, alpha, lr, lr_a, reg = SETTINGS[k]
    net, teacher = make(d, seed)
    ode = ff.ode(net, teacher, alpha, lr=lr, lr_a=lr_a, reg=reg, log_times=ROWS)
    steps = int(alpha * d)
    sim = ff.train(net, ff.Online(teacher, batch_size=1, seed=seed), steps=steps, lr=lr / d, lr_a=lr_a / d, reg=reg,
                   log_every=steps // ROWS, metrics=("loss",))
    return k, d, seed, sim["loss"] - ode["loss"], ode["loss"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--update-docs", action="store_true", help="write the table into docs/guide/ode.md")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    jobs = [(k, d, s) for d in DIMS[::-1] for k in range(len(SETTINGS)) for s in SEEDS]
    with ProcessPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(one, jobs))
    diff = {(k, d, s): x for k, d, s, x, _ in results}
    ode = {k: x for k, d, s, _, x in results if s == SEEDS[0] and d == DIMS[1]}
    n = len(SEEDS)
    expected = np.sqrt(DIMS[0] / DIMS[1])
    out = [f"| setting | α | ODE loss, start → end | RMS of sim − ODE, d = {DIMS[0]:,} | d = {DIMS[1]:,} | ratio "
           f"({expected:.2f} expected) | seed mean − ODE at d = {DIMS[1]:,}, largest z-score (absolute) |",
           "|---|---:|---|---:|---:|---:|---:|"]
    for k, (label, _, alpha, *_rest) in enumerate(SETTINGS):
        rms = []
        for d in DIMS:
            X = np.array([diff[k, d, s][1:] for s in SEEDS])  # the start is the same network: no difference
            rms.append(float(np.sqrt(np.mean(X ** 2))))
        X = np.array([diff[k, DIMS[1], s][1:] for s in SEEDS])
        z = np.abs(X.mean(axis=0)) / (X.std(axis=0, ddof=1) / np.sqrt(n))
        out.append(f"| {label} | {alpha:g} | {ode[k][0]:.3g} → {ode[k][-1]:.3g} | {rms[0]:.2e} | {rms[1]:.2e} | "
                   f"{rms[1] / rms[0]:.2f} | {z.max():.1f} |")
    table = "\n".join(out)
    note = (f"{n} seeds per setting and dimension, {ROWS} logged times each; the ODE starts from each seed's "
            f"own initial overlaps. {C.cpu_model()}, {os.cpu_count()} logical cores, "
            f"{time.perf_counter() - t0:.0f} s in all.")
    print(table)
    print()
    print(note)
    if args.update_docs:
        C.replace_marked(DOC, "ode-convergence", table + "\n\n" + note)
        print(f"updated {DOC}")


if __name__ == "__main__":
    main()
