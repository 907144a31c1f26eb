"""The numbers and the figure of docs/guide/hessian.md's "At the end of the paper's protocol": the
built-in protocol run (``fastfeat run``'s configuration) with ``hessian=True``, then the dense
eigendecomposition of the same Hessian to say which neurons carry the negative eigenvectors.

    python benchmarks/docs_hessian.py        # about a minute on 2 cores

Writes docs/paper_hessian.png (the run's ``hessian.png``) and the block between
``<!-- hessian-run:start -->`` and ``<!-- hessian-run:end -->`` of docs/guide/hessian.md.
"""
import os
import time

import numpy as np

import fastfeat as ff
from fastfeat import experiment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.path.join(ROOT, "docs", "guide", "hessian.md")
FIGURE = os.path.join(ROOT, "docs", "paper_hessian.png")
START, END = "<!-- hessian-run:start -->", "<!-- hessian-run:end -->"


def _sci(x):
    """A number for the page: 2 significant digits, as a power of ten where small."""
    if x == 0:
        return "0"
    e = int(np.floor(np.log10(abs(x))))
    if -2 <= e <= 2:
        return f"{x:.2g}"
    return f"{x / 10**e:.2g}·10^{e}".replace("^", "<sup>", 1) + "</sup>"


def _neuron_mass(vec, m, d):
    """The share of a unit eigenvector on each neuron j (its w_j entries and a_j)."""
    W = vec[:m * d].reshape(m, d)
    return np.sum(W**2, axis=1) + vec[m * d:]**2


def main():
    cfg = experiment.DEFAULT_CONFIG
    teacher, m, proto = experiment.check_config({k: dict(v) for k, v in cfg.items()})
    t0 = time.perf_counter()
    res = ff.paper.three_stage(teacher, m, hessian=True, **proto)
    seconds = res.seconds["hessian"]
    spec = res.hessian
    lam = res.config["hessian_lam"]
    net, d = res.net, teacher.d
    reg = ff.WeightDecay(lam)
    pop = ff.Population(teacher)
    gW, ga = pop.grad(net, reg)
    gnorm = float(np.sqrt(np.sum(gW**2) + np.sum(ga**2)))
    H = ff.hessian(net, pop, reg)
    ev, vecs = np.linalg.eigh(H)
    ev_check = spec.eigenvalues
    assert spec.complete and np.allclose(ev, ev_check, rtol=0, atol=1e-12 * spec.largest)
    thr = spec.tol
    P = spec.n_params

    neg = np.flatnonzero(ev < -thr)
    zero = np.flatnonzero(np.abs(ev) <= thr)
    rounding = int(np.sum(np.abs(ev) <= 1e-11))
    pos = ev[ev > thr]
    large = pos[pos > 100 * lam]  # the stiff directions, far above the weight decay's scale
    bulk = pos[pos <= 100 * lam]
    # the mode of the large ones: the most populated 10 % band
    centers = np.unique(np.round(large, 2))
    counts = [int(np.sum(np.abs(large - c) <= 0.1 * c)) for c in centers]
    mode = float(centers[int(np.argmax(counts))]) if len(centers) else float("nan")
    n_mode = max(counts) if counts else 0

    # the neurons the negative eigenvectors lie on
    W = np.asarray(net.W, np.float64)
    norms = np.linalg.norm(W, axis=1)
    Wt = np.asarray(teacher.W, np.float64)
    cos_t = (W / np.where(norms > 0, norms, 1)[:, None]) @ (Wt / np.linalg.norm(Wt, axis=1)[:, None]).T
    pairs = {}
    for i in neg:
        mass = _neuron_mass(vecs[:, i], m, d)
        top2 = tuple(sorted(np.argsort(mass)[-2:].tolist()))
        share = float(mass[list(top2)].sum())
        pairs.setdefault(top2, []).append(share)
    lines, mirrored = [], []
    for (j, k), shares in sorted(pairs.items(), key=lambda kv: -len(kv[1])):
        mirror = np.linalg.norm(W[j] + W[k]) / max(norms[j], norms[k])
        mirrored.append(mirror < 1e-6 and abs(net.a[j] - net.a[k]) <= 1e-6 * abs(net.a[j]))
        t_j = int(np.argmax(np.abs(cos_t[j])))
        angle = np.degrees(np.arccos(min(1.0, abs(cos_t[j, t_j]))))
        lines.append(f"{len(shares)} on neurons {j} and {k} (at least {min(shares):.0%} of each eigenvector; "
                     f"|w_{j} + w_{k}| = {mirror:.1e} of their norm, {angle:.0f}° from teacher direction {t_j})")

    body = [
        f"For the built-in configuration (`relu_centered`, `d = {d}`, `m* = {teacher.m}`, `m = {m}`: "
        f"`P = {P}`, all eigenvalues, {seconds:.0f} s on {os.cpu_count()} cores; "
        f"last weight decay `λ = {lam:.2g}`, final gradient norm `{gnorm:.2g}`, so \"near zero\" means "
        f"`|λ| ≤ {thr:.2g}`):",
        "",
        "![Hessian spectrum at the end of the built-in protocol run](../paper_hessian.png)",
        "",
        f"- {len(large)} large eigenvalues, from {large.min():.2g} to {large.max():.2g} ({n_mode} of them within "
        f"10 % of {mode:.2g}): the stiff directions of the neurons that carry the teacher's directions."
        if len(large) else "- no eigenvalue above 100 λ.",
        f"- The bulk, {len(bulk)} eigenvalues, lies between {bulk.min():.2g} and {bulk.max():.2g} "
        f"({bulk.min() / lam:.2g} λ to {bulk.max() / lam:.2g} λ)." if len(bulk) else "- no bulk.",
        f"- {len(zero)} are near zero; {rounding} of them are zero to rounding (`|λ| ≤ 10⁻¹¹`).",
        f"- {len(neg)} are negative beyond the threshold (the smallest {ev[0]:.2g} ≈ {ev[0] / lam:.2g} λ). "
        "Their eigenvectors, by the two neurons that hold most of each: " + "; ".join(lines) + ".",
    ]
    if mirrored and all(mirrored):
        body.append("  Each such pair is a mirror image that the symmetric initialization made (`w_j = −w_k`, "
                    "`a_j = a_k`); the negative directions break that symmetry, which gradient descent keeps "
                    "(up to rounding): the run ends at a saddle of the full parameter space that is a minimum "
                    "within the mirrored subspace.")
    text = open(PAGE, encoding="utf-8").read()
    i, j = text.index(START), text.index(END)
    text = text[:i + len(START)] + "\n" + "\n".join(body) + "\n" + text[j:]
    with open(PAGE, "w", encoding="utf-8") as f:
        f.write(text)
    experiment.plot_hessian(res, FIGURE, experiment.pyplot())
    print("\n".join(body))
    print(f"wrote {PAGE} and {FIGURE} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
