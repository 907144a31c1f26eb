"""Online SGD with batch 1, one step at a time: the sample and its label (drawn from the counter-based
generator by global step), the per-neuron terms of the step, and the step itself with every update
applied in order (``exact_step``). The blocked path (``online_single``) shares the sample, the label and
the neuron terms, and falls back to this step where a block cannot run (``NEED_EXACT``)."""
import math

import numpy as np

from ...math.activations import KIND_ALG, KIND_CODE, KIND_ERF, KIND_OF, KIND_TANH
from ...math.regularizer import NEEDS_NORM
from ._finite import finite
from ._jit import njit
from ._rng import pairs_into, stream_key
from .scalar import alg_params, dneuron, dneuron_dnorm, like, lr_at, neuron, reg_terms

#: rows per chunk (the unit of the fixed split, and of the per-chunk partial sums)
CHUNK = 64
#: terms per chunk kept for the step: output part, sum |phi|, sum |ra|, sum |a_j sigma'_j|, the rest of
#: the g_W bound, sum |w_j|, sum |a_j|, sum |a2_j| |w_j|; each chunk's terms fill one 64-byte line
NPART = 8
PART_STRIDE = 16


@njit
def fill(seed, step, buf, p0, p1):
    """Box-Muller pairs p0 .. p1-1 of the sample of ``step`` into ``buf``."""
    pairs_into(stream_key(seed, step), p0, p1, buf, 2 * p0)


@njit
def label(x, d, Wt, at, tnorm, tcode, noise):
    """(y, max_i |x_i|) of the sample in ``x`` (its entry d is the noise number)."""
    mx = like(x, 0.0)
    f = like(x, 0.0)
    for i in range(d):
        mx = max(mx, abs(x[i]))
    for t in range(Wt.shape[0]):
        z = like(x, 0.0)
        for i in range(d):
            z += Wt[t, i] * x[i]
        f += at[t] * neuron(tcode, z, tnorm[t])
    return like(x, f + like(x, noise) * x[d]), mx


@njit
def rows(W, x, xn, coef, gw, h, nrm, j0, j1, write):
    """w_j <- w_j - gw_j w_j - coef_j x (two FMAs), h_j = w_j . xn, nrm_j = |w_j| for rows j0 .. j1-1; W is
    written only when ``write`` (with zero coefficients the new rows equal the old ones, but a -0.0
    entry would come back as +0.0)."""
    d = W.shape[1]
    zero = like(W, 0.0)
    for j in range(j0, j1):
        cj = coef[j]
        gj = gw[j]
        z = zero
        q = zero
        for i in range(d):
            w = W[j, i]
            w = (w - gj * w) - cj * x[i]
            if write:
                W[j, i] = w
            z += w * xn[i]
            q += w * w
        h[j] = z
        nrm[j] = like(W, math.sqrt(q))


def _neurons_of(kind, plain):
    """The neuron pass of one activation kind (as in ``empirical``: ``ALG`` covers the piecewise
    polynomial activations through their coefficients ``p``, ``ERF`` and ``TANH`` use the table with
    the code fixed at compile time): no per-element branch on the activation, so the loop vectorizes
    (it writes only two arrays and indexes them unsigned: no wraparound branch, few alias checks).
    ``plain``: for runs without a norm term (cn = 0) and whose regularizer's terms need no |w_j|: the
    vectorized loop would compute the divisions by |w_j| of the general terms for every neuron (they are a
    third of the pass) only to multiply them by zero; the regularizer's terms are then taken at |w_j| = 0,
    which leaves LLVM only their norm-free branch."""
    fixed = KIND_CODE.get(kind, 0)

    @njit(inline="always")
    def chunk(a, h, nrm, phi, A1, p, cn, reg, lam_a, lam_w, j0, j1, out):
        zero = like(h, 0.0)
        three = like(h, 3.0)
        la = like(h, lam_a)
        lw = like(h, lam_w)
        pf = zero
        sph = zero
        sra = zero
        g1 = zero
        g2 = zero
        g0 = zero
        snw = zero
        sa = zero
        for jj in range(j1 - j0):
            j = np.uint64(j0 + jj)
            z = h[j]
            nw = nrm[j]
            aj = a[j]
            if kind == KIND_ALG:
                s = p[0] if z > zero else p[1]
                ds = p[0] if z > zero else (p[1] if z < zero else p[2])
                ph = (p[3] + cn * nw) + z * (s + z * (p[4] + z * p[5]))
                a1 = aj * (ds + z * (p[4] + p[4] + three * p[5] * z))
            else:
                ph = neuron(fixed, z, nw)
                a1 = aj * dneuron(fixed, z)
            if plain:
                a2 = zero
                r_a, r_w = reg_terms(reg, aj, zero, la, lw, zero)
            else:
                a2 = aj * (cn / nw) if nw > zero else zero
                r_a, r_w = reg_terms(reg, aj, nw, la, lw, zero)
            phi[j] = ph
            A1[j] = a1
            pf += aj * ph
            sph += abs(ph)
            sra += abs(r_a)
            g1 += abs(a1)
            g2 += abs(a2) * nw
            g0 += abs(r_w) * nw
            snw += nw
            sa += abs(aj)
        out[0] = pf
        out[1] = sph
        out[2] = sra
        out[3] = g1
        out[4] = g0
        out[5] = snw
        out[6] = sa
        out[7] = g2

    @njit
    def neurons(a, h, nrm, phi, A1, p, cn, reg, lam_a, lam_w, c0, c1, m, part):
        for c in range(c0, c1):
            chunk(a, h, nrm, phi, A1, p, cn, reg, lam_a, lam_w, c * CHUNK, min(c * CHUNK + CHUNK, m), part[c])

    return neurons


def _by_kind(plain):
    """The neuron pass that picks its activation kind's variant (``_neurons_of``) at run time."""
    alg, erf, tanh = _neurons_of(KIND_ALG, plain), _neurons_of(KIND_ERF, plain), _neurons_of(KIND_TANH, plain)

    @njit
    def by_kind(kind, a, h, nrm, phi, A1, p, cn, reg, lam_a, lam_w, c0, c1, m, part):
        if kind == KIND_ALG:
            alg(a, h, nrm, phi, A1, p, cn, reg, lam_a, lam_w, c0, c1, m, part)
        elif kind == KIND_ERF:
            erf(a, h, nrm, phi, A1, p, cn, reg, lam_a, lam_w, c0, c1, m, part)
        else:
            tanh(a, h, nrm, phi, A1, p, cn, reg, lam_a, lam_w, c0, c1, m, part)

    return by_kind


_PLAIN, _GENERAL = _by_kind(True), _by_kind(False)


@njit
def neurons(a, code, h, nrm, phi, A1, reg, lam_a, lam_w, c0, c1, m, part):
    """phi, a_j sigma'_j and, for each chunk c0 .. c1-1, its terms (output part, bound terms) into
    ``part[c]``."""
    p, cn = alg_params(code, a)
    if cn == like(a, 0.0) and not NEEDS_NORM[reg]:
        _PLAIN(KIND_OF[code], a, h, nrm, phi, A1, p, cn, reg, lam_a, lam_w, c0, c1, m, part)
    else:
        _GENERAL(KIND_OF[code], a, h, nrm, phi, A1, p, cn, reg, lam_a, lam_w, c0, c1, m, part)


@njit(inline="always")
def neuron_step(a, j, nw, phi, A1, cn, reg, la, lw, r, eta_w, eta_a, zero):
    """The step of neuron j (residual r; eta_w, eta_a the step sizes of W and a; nw = |w_j|, or 0 where
    neither the regularizer nor a norm term needs it): a_j -= eta_a g_a[j] (not at all when eta_a = 0).
    Returns (c_j, cw_j) of the row update w_j <- (1 - eta_w cw_j) w_j - c_j x, c_j = eta_w r a_j sigma'_j
    (``A1[j] = a_j sigma'_j``), cw_j relu_centered's norm term plus the regularizer's."""
    aj = a[j]
    a2 = aj * (cn / nw) if nw > zero else zero
    r_a, r_w = reg_terms(reg, aj, nw, la, lw, zero)
    na = aj - eta_a * (r * phi[j] + r_a)
    a[j] = na if eta_a != zero else aj
    return eta_w * (r * A1[j]), r * a2 + r_w


@njit
def coefficients(a, nrm, phi, A1, coef, gw, cn, reg, lam_a, lam_w, r, eta_w, eta_a, j0, j1):
    """a_j -= eta_a g_a[j] (not at all when eta_a = 0); coef_j = eta_w r a_j sigma'_j and gw_j = eta_w cw_j of
    the row update (``neuron_step``)."""
    zero = like(a, 0.0)
    la = like(a, lam_a)
    lw = like(a, lam_w)
    for jj in range(j1 - j0):
        j = np.uint64(j0 + jj)
        c, cw = neuron_step(a, j, nrm[j], phi, A1, cn, reg, la, lw, r, eta_w, eta_a, zero)
        coef[j] = c
        gw[j] = eta_w * cw


@njit
def exact_ok(W, x, a, nrm, phi, A1, cn, reg, lam_a, lam_w, r, eta_w, eta_a, m):
    """Every entry of the step's gradient and of the updated weights is finite (the slow check behind
    the bound; the same arithmetic as ``coefficients`` and ``rows``)."""
    d = W.shape[1]
    zero = like(W, 0.0)
    la = like(W, lam_a)
    lw = like(W, lam_w)
    for j in range(m):
        aj = a[j]
        nw = nrm[j]
        a2 = aj * (cn / nw) if nw > zero else zero
        r_a, r_w = reg_terms(reg, aj, nw, la, lw, zero)
        ga = r * phi[j] + r_a
        if not (finite(ga) and finite(aj - eta_a * ga)):
            return False
        cw = r * a2 + r_w
        c = r * A1[j]
        cj = eta_w * c
        gj = eta_w * cw
        for i in range(d):
            w = W[j, i]
            if not (finite(cw * w + c * x[i]) and finite((w - gj * w) - cj * x[i])):
                return False
    return True


@njit
def exact_step(W, a, Wt, at, tnorm, code, tcode, noise, seed, step0, t, lrs, reg, lam_as, lam_ws, fw, losses):
    """Step t of the run (global step step0 + t) on the calling thread, where the blocked scheme's
    bound failed: W holds the weights of step t; the step is taken only when every entry of its
    gradient and of the new weights is finite. Returns 1 when taken, else 0 (losses[t] = NaN)."""
    x, h, nrm, phi, A1, coef, gw, part = fw.x[0], fw.h, fw.nrm, fw.phi, fw.A1, fw.coef, fw.gw, fw.part
    m, d = W.shape
    zero = like(W, 0.0)
    nch = (m + CHUNK - 1) // CHUNK
    s = step0 + t
    fill(seed, s, x, 0, (d + 2) // 2)
    y, xmax = label(x, d, Wt, at, tnorm, tcode, noise)
    cn = dneuron_dnorm(code, zero)
    tot = np.zeros(NPART, W.dtype)
    for c in range(nch):  # the forward pass: the row pass with gw = coef = 0, not writing W
        j0, j1 = c * CHUNK, min(c * CHUNK + CHUNK, m)
        for j in range(j0, j1):
            coef[j] = zero
            gw[j] = zero
        rows(W, x, x, coef, gw, h, nrm, j0, j1, False)
    neurons(a, code, h, nrm, phi, A1, reg, lam_as[t], lam_ws[t], np.int64(0), nch, m, part[0])
    for c in range(nch):
        for u in range(NPART):
            tot[u] += part[0, c, u]
    r = tot[0] - y
    loss = 0.5 * (np.float64(r) * r)
    lr_w, lr_a = lr_at(lrs, t)
    lw = like(W, lr_w)
    la = like(W, lr_a)
    if not (finite(loss) and exact_ok(W, x, a, nrm, phi, A1, cn, reg, lam_as[t], lam_ws[t], r, lw, la, m)):
        losses[t] = np.nan
        return 0
    losses[t] = loss
    for c in range(nch):
        j0, j1 = c * CHUNK, min(c * CHUNK + CHUNK, m)
        coefficients(a, nrm, phi, A1, coef, gw, cn, reg, lam_as[t], lam_ws[t], r, lw, la, j0, j1)
        rows(W, x, x, coef, gw, h, nrm, j0, j1, lw != zero)  # lr 0: W stays bit for bit
    return 1
