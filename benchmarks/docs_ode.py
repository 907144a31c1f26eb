"""The figure and the numbers of docs/guide/ode.md: ``ff.ode`` against online SGD (``ff.train`` on
``ff.Online``, batch 1, step sizes lr / d) at two input dimensions.

    python benchmarks/docs_ode.py        # about a minute on 2 cores

Left: Saad & Solla's soft committee machine (erf, K = M = 2, the second layer fixed to 1, eta = 1): the
plateau and its escape. Middle: erf with both layers trained and weight decay (m = 4, m* = 2). Right: the
same with relu (I4 by quadrature). Writes docs/ode.png and prints the plateau's height and length, the
distance of each simulation from the ODE and the ODE's cost.
"""
import os
import sys
import time

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastfeat as ff  # noqa: E402
from fastfeat import experiment  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIGURE = os.path.join(ROOT, "docs", "ode.png")


def committee(d, seed, k=2):
    """Saad & Solla's setting: orthonormal teacher rows, a* = a = 1, a small random student."""
    Wt = np.linalg.qr(np.random.default_rng(0).standard_normal((d, k)))[0].T
    W = np.random.default_rng(seed).normal(size=(k, d)) * np.sqrt(0.25 / d)
    return ff.TwoLayer(W, np.ones(k), "erf"), ff.Teacher(Wt, np.ones(k), "erf")


def both_layers(d, seed):
    Wt = np.linalg.qr(np.random.default_rng(0).standard_normal((d, 2)))[0].T
    W = np.random.default_rng(seed).normal(size=(4, d)) * np.sqrt(0.3 / d)
    return ff.TwoLayer(W, np.full(4, 0.1), "erf"), ff.Teacher(Wt, np.array([1.0, 0.6]), "erf")


def relu_weight_decay(d, seed):
    """relu, both layers, weight decay: four students against two orthonormal teacher directions."""
    Wt = np.linalg.qr(np.random.default_rng(0).standard_normal((d, 2)))[0].T
    W = np.random.default_rng(seed).normal(size=(4, d)) * np.sqrt(0.3 / d)
    return ff.TwoLayer(W, np.full(4, 0.1), "relu"), ff.Teacher(Wt, np.array([1.0, 0.6]), "relu")


def simulate(make, d, seed, alpha, lr, lr_a, reg, rows):
    net, teacher = make(d, seed)
    steps = int(alpha * d)
    h = ff.train(net, ff.Online(teacher, batch_size=1, seed=seed), steps=steps, lr=lr / d, lr_a=lr_a / d, reg=reg,
                 log_every=steps // rows, metrics=("loss",))
    return h.alpha, h["loss"]


def main():
    plt = experiment.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15.0, 4.0))
    panels = [("soft committee machine: erf, K = M = 2, a fixed, lr = 1", committee, 300.0, 1.0, 0.0, None),
              ("both layers, weight decay 1e-3: erf, m = 4, m* = 2, lr 0.5, lr_a 0.3", both_layers, 100.0, 0.5,
               0.3, ff.WeightDecay(1e-3)),
              ("relu, both layers, weight decay 1e-3: m = 4, m* = 2, lr 0.5, lr_a 0.3", relu_weight_decay, 400.0,
               0.5, 0.3, ff.WeightDecay(1e-3))]
    lines = []
    for ax, (title, make, alpha, lr, lr_a, reg) in zip(axes, panels):
        net, teacher = make(2000, 1)
        t0 = time.perf_counter()
        h = ff.ode(net, teacher, alpha, lr=lr, lr_a=lr_a, reg=reg, log_times=600)
        lines.append(f"{title.split(':')[0]}: ff.ode to alpha = {alpha:g} in {time.perf_counter() - t0:.2f} s "
                     f"({h.info['evals']} right-hand sides)")
        ax.plot(h["time"], h["loss"], color="k", lw=2, label="ff.ode (d → ∞)")
        for d, color in ((250, "tab:orange"), (2000, "tab:blue")):
            for seed in (1, 2):
                t, loss = simulate(make, d, seed, alpha, lr, lr_a, reg, 300)
                ax.plot(t, loss, color=color, lw=0.8, alpha=0.8, label=f"online SGD, d = {d}" if seed == 1 else None)
                ode_here = np.interp(t, h["time"], h["loss"])
                lines.append(f"{title.split(':')[0]}: d = {d}, seed {seed}: max |log10 sim - log10 ode| = "
                             f"{np.max(np.abs(np.log10(loss) - np.log10(ode_here))):.2f}")
        if make is committee:
            window = (h["time"] >= 20) & (h["time"] <= 60)
            plateau = float(np.median(h["loss"][window]))
            below = h["time"][(h["loss"] < plateau / 2) & (h["time"] > 5)]
            lines.insert(0, f"plateau (ODE): loss {plateau:.4g}, left (below half of it) at alpha = {below[0]:.1f}")
        ax.set_yscale("log")
        ax.set_xlabel("alpha = steps / d")
        ax.set_ylabel("population loss")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
    experiment.save_figure(fig, FIGURE, plt, grid=tuple(axes))
    print("\n".join(lines))
    print(f"wrote {FIGURE}")


if __name__ == "__main__":
    main()
