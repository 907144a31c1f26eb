"""``ff.ode`` (the order-parameter ODEs of online SGD, erf) against the same ODE written in numpy and
integrated by ``scipy.integrate.solve_ivp`` (RK45, the same tolerances): asv benchmarks, and a script.

    python -m benchmarks.bench_ode [--alpha A]

prints, for m = m* = 4 over alpha = 0..1000 and m = 32, m* = 8 over alpha = 0..A (default 100), the wall
time of each and their ratio, then the cost per unit alpha of ff.ode for erf and relu (whose I4 are
quadratures; no numpy version), with the machine it ran on.
"""
import argparse
import math
import os
import sys
import time

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastfeat as ff  # noqa: E402


def problem(m, ms, d=400, seed=0, activation="erf"):
    """A teacher with orthonormal rows and a small random student (the plateau regime)."""
    Wt = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, ms)))[0].T
    teacher = ff.Teacher(Wt, np.ones(ms), activation)
    W = np.random.default_rng(seed + 1).normal(size=(m, d)) * np.sqrt(0.25 / d)
    return ff.TwoLayer(W, np.full(m, ms / m), activation), teacher


LR, LR_A, RTOL, ATOL = 0.5, 0.2, 1e-8, 1e-10


def numpy_rhs(y, m, ms, P, a_star, lr, lr_a):
    """dy/dalpha of the state (Q, M, a), the equations of ``fastfeat.training.order_parameters``, vectorized with numpy
    (every I3 and I4 as broadcast arrays: O(m^2 (m + m*)^2) memory)."""
    Q = y[:m * m].reshape(m, m)
    M = y[m * m:m * m + m * ms].reshape(m, ms)
    a = y[m * m + m * ms:]
    C = np.block([[Q, M], [M.T, P]])
    c = np.concatenate([a, -a_star])
    dC = 1.0 + np.diag(C)
    # I3(p, q, r) for p students: E[g'(u_p) u_q g(u_r)]
    p = np.arange(m)[:, None, None]
    Cpp, Crr = dC[p] - 1.0, np.diag(C)[None, None, :]
    lam3 = (1.0 + Cpp) * (1.0 + Crr) - C[p, np.arange(m + ms)[None, None, :]] ** 2
    Cqr = C[None, :, :]
    Cpq = C[:m][:, :, None]
    Cpr = C[:m][:, None, :]
    I3 = 2 / np.pi / np.sqrt(lam3) * (Cqr * (1.0 + Cpp) - Cpq * Cpr) / (1.0 + Cpp)
    h3 = I3 @ c  # (m, K)
    # I4(j, k, r, s) for students j, k
    j, k = np.arange(m)[:, None, None, None], np.arange(m)[None, :, None, None]
    r, s = np.arange(m + ms)[None, None, :, None], np.arange(m + ms)[None, None, None, :]
    cpp, cqq, crr, css = C[j, j], C[k, k], C[r, r], C[s, s]
    cpq, cpr, cps, cqr, cqs, crs = C[j, k], C[j, r], C[j, s], C[k, r], C[k, s], C[r, s]
    lam4 = (1 + cpp) * (1 + cqq) - cpq ** 2
    lam0 = lam4 * crs - cqr * cqs * (1 + cpp) - cpr * cps * (1 + cqq) + cpq * cpr * cqs + cpq * cps * cqr
    lam1 = lam4 * (1 + crr) - cqr ** 2 * (1 + cpp) - cpr ** 2 * (1 + cqq) + 2 * cpq * cpr * cqr
    lam2 = lam4 * (1 + css) - cqs ** 2 * (1 + cpp) - cps ** 2 * (1 + cqq) + 2 * cpq * cps * cqs
    I4 = 4 / np.pi ** 2 / np.sqrt(lam4) * np.arcsin(np.clip(lam0 / np.sqrt(lam1 * lam2), -1, 1))
    quad = np.einsum("jkrs,r,s->jk", I4, c, c)
    I2 = 2 / np.pi * np.arcsin(C[:m] / np.sqrt(np.outer(dC[:m], dC)))
    dQ = -lr * (a[:, None] * h3[:, :m] + (a[:, None] * h3[:, :m]).T) + lr ** 2 * np.outer(a, a) * quad
    dM = -lr * a[:, None] * h3[:, m:]
    da = -lr_a * (I2 @ c)
    return np.concatenate([dQ.ravel(), dM.ravel(), da])


def run_numpy(net, teacher, alpha):
    from scipy.integrate import solve_ivp
    W, Wt = np.asarray(net.W, float), np.asarray(teacher.W, float)
    m, ms = W.shape[0], Wt.shape[0]
    P = Wt @ Wt.T
    y0 = np.concatenate([(W @ W.T).ravel(), (W @ Wt.T).ravel(), np.asarray(net.a, float)])
    a_star = np.asarray(teacher.a, float)
    return solve_ivp(lambda t, y: numpy_rhs(y, m, ms, P, a_star, LR, LR_A), (0.0, alpha), y0, method="RK45",
                     rtol=RTOL, atol=ATOL)


def run_ff(net, teacher, alpha):
    return ff.ode(net, teacher, alpha, lr=LR, lr_a=LR_A, rtol=RTOL, atol=ATOL, log_times=1)


class _Ode:
    """ff.ode from ``problem`` at the params' sizes, compiled in ``setup``."""

    activation = "erf"
    param_names = ["m, m*, alpha"]
    timeout = 600

    def setup(self, case):
        m, ms, _ = case
        self.net, self.teacher = problem(m, ms, activation=self.activation)
        run_ff(self.net, self.teacher, 0.5)  # compiled

    def time_ode(self, case):
        run_ff(self.net, self.teacher, case[2])


class OdeErf(_Ode):
    """ff.ode for erf: m = m* = 4 over alpha = 0..1000, and m = 32, m* = 8 over alpha = 0..100."""

    params = [(4, 4, 1000.0), (32, 8, 100.0)]


class OdeRelu(_Ode):
    """ff.ode for relu (I4 by quadrature): m = m* = 4 and m = 8, m* = 4 over alpha = 0..20."""

    activation = "relu"
    params = [(4, 4, 20.0), (8, 4, 20.0)]


def _best(fn, repeat):
    best = math.inf
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alpha", type=float, default=100.0, help="alpha of the m = 32, m* = 8 comparison")
    args = parser.parse_args(argv)
    from benchmarks._common import machine_description
    rows = []
    timed = {}  # (activation, m, m*, alpha) -> (seconds, right-hand sides) of ff.ode
    for m, ms, alpha in ((4, 4, 1000.0), (32, 8, args.alpha)):
        net, teacher = problem(m, ms)
        run_ff(net, teacher, 1.0)
        t_ff, h = _best(lambda: run_ff(net, teacher, alpha), 3)
        timed["erf", m, ms, alpha] = t_ff, h.info["evals"]
        t_np, sol = _best(lambda: run_numpy(net, teacher, alpha), 1)
        Q = sol.y[:m * m, -1].reshape(m, m)
        diff = np.abs(Q - h["Q"][-1]).max() / np.abs(Q).max()
        rows.append(f"| m = {m}, m* = {ms}, alpha = 0..{alpha:g} | {t_ff:.3g} s ({h.info['evals']:,} evaluations) | "
                    f"{t_np:.3g} s ({sol.nfev:,} evaluations) | {t_np / t_ff:.1f}x | {diff:.0e} |")
    print("| ODE | ff.ode | numpy + solve_ivp RK45 | speed-up | final Q, relative difference |")
    print("|---|---:|---:|---:|---:|")
    print("\n".join(rows))
    print()
    print("| ODE | alpha | ff.ode | right-hand sides | per unit alpha | per right-hand side |")
    print("|---|---:|---:|---:|---:|---:|")
    for key in [("erf", 4, 4, 1000.0), ("erf", 32, 8, args.alpha), ("relu", 4, 4, 100.0), ("relu", 8, 4, 20.0),
                ("relu", 16, 4, 5.0)]:
        act, m, ms, alpha = key
        if key not in timed:  # (the erf rows were timed above)
            net, teacher = problem(m, ms, activation=act)
            run_ff(net, teacher, 0.5)
            t_ff, h = _best(lambda: run_ff(net, teacher, alpha), 2)
            timed[key] = t_ff, h.info["evals"]
        t_ff, n = timed[key]
        print(f"| {act}, m = {m}, m* = {ms} | 0..{alpha:g} | {t_ff:.3g} s | {n:,} | {t_ff / alpha * 1e3:.3g} ms | "
              f"{t_ff / n * 1e3:.3g} ms |")
    print()
    print(machine_description())


if __name__ == "__main__":
    main()
