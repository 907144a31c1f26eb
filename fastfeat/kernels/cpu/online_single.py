"""Online SGD with batch 1: blocks of ``BLOCK`` steps, run by a persistent team of threads.

A step is ``m d`` multiply-adds for the product ``h_j = w_j . x_s`` and as many for the rank-one update
``w_j <- alpha_j w_j - c_j x_s`` (``c_j = lr r a_j sigma'(h_j)``, ``alpha_j = 1 - lr cw_j`` with
``cw_j`` relu_centered's norm term plus the regularizer's, see ``online``). Done step by step, W crosses
the cache hierarchy twice per step, which costs more than the arithmetic. But the samples do not depend
on the weights, so the block's ``BLOCK`` samples are drawn ahead and, within a block starting from
weights ``W0``:

- ``E[k, j] = w0_j . x_k`` for every block position k is computed once, at the start of the block;
- the step at position k records its update instead of applying it: ``C[k, j] = c_j``, ``Al[k, j] =
  alpha_j``. Its products are brought up to date first (``products_at``): ``E[k, j] <- Al[l, j] E[k, j]
  - C[l, j] G[k, l]`` for the earlier positions l in order, with the block's Gram matrix ``G[k, l] =
  x_k . x_l``: exactly ``E[k, j] = w_j . x_k`` for the current w_j. Done at step k rather than at each
  earlier step, the row E[k] stays in registers while the C and Al rows stream past;
- ``q_j`` follows ``|w_j|^2`` (``|w'|^2 = alpha^2 |w|^2 - 2 alpha c h + c^2 G[k, k]``) where the step
  needs the norm (path norm, relu_centered), else a bound on ``max_i |w_ij|`` for the guard;
- at the end of the block, one pass over each row applies the block's updates, ``w_j <- A_j w0_j -
  sum_k B[k, j] x_k`` (B the C's times the later alphas, A the product of the alphas), in a kernel that
  keeps four rows by four vectors of columns in registers while the block's samples stream past, and
  computes the next block's E and q from the new row while it is in L1.

So W is read and written once per block and the per-step work is a few passes over ``m``-vectors.
The rounding differs from applying each update as it comes (the references agree to ~1e-12 in
float64). Blocks start at global steps that are multiples of ``BLOCK``; a run that starts or stops
inside a block starts a block of its own, so splitting a run at multiples of ``BLOCK`` (``ff.train``
with ``log_every`` 20, 100, 1000, ...) gives the same weights bit for bit, and splitting it elsewhere
changes only the rounding.

Rows are split into fixed chunks of ``CHUNK``; the neuron pass computes, per chunk, phi and the chunk's
part of the output ``sum_j a_j phi_j`` and of the divergence bound. A team (``_sync``) exchanges the
chunk partials at one barrier per step and every worker sums them in chunk order; each worker owns a
contiguous range of chunks and does every pass on its rows, and the block's sample terms (G, labels)
and next samples are split by position with one more barrier per block. After that barrier the ranges
move towards the faster worker (``_sync.rebalance`` on each worker's busy time in the last block: on a
shared machine one core is often slower for a while); the new owner of a row takes over its E and q.
So the weights are bit-identical for any number of threads, solo or in a team, however the rows move.
Nothing is allocated per step and no BLAS is called.

Divergence guard: with ``xmax = max_i |x_i|``, every entry of g_W is bounded by
``B_W = |r| sum_j (|a_j sigma'_j| xmax + |a_j cn / nrm_j| nrm_j) + sum_j |rw_j| nrm_j`` and every g_a by
``B_a = |r| sum_j |phi_j| + sum_j |ra_j|``, and every updated weight by ``sum_j nrm_j + lr B_W`` or
``sum_j |a_j| + lr B_a`` (``nrm_j``: ``|w_j|`` or the bound); the sums are over all chunks and carry NaN
through. When the four bounds are below ``max_float / 4`` the step is taken. Otherwise the block's
updates so far are applied to W, and if the loss is finite ``exact_step`` checks every entry of the
gradient and of the new weights on one thread and takes the step or refuses it; the team then starts
again. So a refused step leaves W, a as they were, and an accepted one never makes them overflow.

Sample layout (the same numbers as ``online`` draws for batch 1): ``x_s[i] = normal(key_s, i)`` for
``i < d``, and the label noise is ``noise * normal(key_s, d)``; numbers ``2p`` and ``2p + 1`` are one
Box-Muller pair (``fastfeat.math.random``).
"""
import math

import numba
import numpy as np
from numba import prange

from ...math.activations import ERF, TANH
from . import _sync
from ._finite import finite
from ._jit import (FASTMATH, TABLE32, TABLE64, VECTOR_BYTES, VECTOR_REGISTERS, aligned, local_array, njit, pnjit,
                   vector_sums, wide_vectors)
from ._rng import pairs_into, stream_key
from .common import row_norms
from .empirical import KIND_ALG, KIND_ERF, KIND_OF, KIND_TANH, PARAMS32, PARAMS64

#: rows per chunk (the unit of the fixed split, and of the per-chunk partial sums)
CHUNK = 64
#: rows per pass of the blocked scheme's row work (their rows stay in L1 between its two loops)
ROWS = 32
#: terms per chunk kept for the step: output part, sum |phi|, sum |ra|, sum |a_j sigma'_j|, the rest of
#: the g_W bound, sum |w_j|, sum |a_j|, sum |a2_j| |w_j|; each chunk's terms fill one 64-byte line
NPART = 8
PART_STRIDE = 16
#: ``FASTMATH`` less ``reassoc``: for loops whose sums must stay in order (see ``products_at``)
ORDERED = FASTMATH - {"reassoc"}
#: below this many weights (m d) a run stays on the calling thread
TEAM_MIN_WEIGHTS = 1 << 14
#: run outcomes
DONE, STOP, NEED_EXACT = 0, 1, 2
#: steps per block of the blocked scheme (a multiple of 4: samples are handled in groups of 4)
BLOCK = 20
#: what the blocked scheme tracks per row: LITE (no regularizer, no norm term: A_j = 1, a bound on
#: max_i |w_ij|), DECAY (weight decay, no norm term: a bound on max_i |w_ij|), FULL (|w_j|^2, needed by
#: the path norm and relu_centered's norm term)
LITE, DECAY, FULL = 0, 1, 2


def workspace(m, d, dtype):
    """The batch-1 buffers: ``(x, h, nrm, phi, A1, coef, gw, part, sync, status, scratch, X, E, C, A, q,
    Al, aux, busy)``. ``x`` .. ``gw``: the one-step path (``exact_step``); ``part``: per chunk and step parity,
    the chunk's partial sums (one 64-byte line each); ``sync``, ``status``: the team's; ``scratch``: the
    arguments of a single step, so ``online.step`` allocates nothing. The blocked scheme's: ``X`` the
    samples of blocks ``b mod 3`` (row k: the sample at block position k, its entry d the noise number),
    ``E``, ``C``, ``Al`` (block position by row), ``A``, ``q`` (by row), see ``_make``; ``aux[b mod 2]``
    the terms of block b's samples: ``G[k, l] = x_k . x_l``, the label y_k in column BLOCK and
    ``max_i |x_k[i]|`` in BLOCK + 1; ``busy[b mod 2, w]`` worker w's time on block b, less its waits."""
    dtype = np.dtype(dtype)
    nch = (m + CHUNK - 1) // CHUNK
    npair = (d + 2) // 2
    width = -(-2 * npair // 16) * 16  # whole 64-byte lines per sample: samples never share a line
    nt = max(numba.config.NUMBA_NUM_THREADS, 1)
    mp = -(-m // 16) * 16  # rows of E, C, Al start on cache lines ...
    if mp % 256 == 0:      # ... and are not a multiple of 1 KB apart (those share L1 sets)
        mp += 16
    v = [aligned(m, dtype) for _ in range(6)]
    return (aligned((1, width), dtype), *v, aligned((2, max(nch, 1), PART_STRIDE), dtype), _sync.new_sync(),
            np.zeros((nt, 2), np.int64), np.zeros((4, 1)),
            aligned((3, BLOCK, width), dtype), aligned((BLOCK, mp), dtype), aligned((BLOCK, mp), dtype),
            aligned(m, dtype, 1.0), aligned(m, dtype), aligned((BLOCK, mp), dtype, 1.0),
            aligned((2, BLOCK, -(-(BLOCK + 2) // 16) * 16), dtype), np.zeros((2, nt), np.int64))


def _make(T):
    ft = T.ftype
    zero = ft(0.0)
    one = ft(1.0)
    three = ft(3.0)
    P = PARAMS32 if ft == np.float32 else PARAMS64
    big = ft(np.finfo(ft).max / 4)
    neuron = T.neuron
    dneuron = T.dneuron
    dneuron_dnorm = T.dneuron_dnorm
    CH = CHUNK

    @njit
    def fill(seed, step, buf, p0, p1):
        """Box-Muller pairs p0 .. p1-1 of the sample of ``step`` into ``buf``."""
        pairs_into(stream_key(seed, step), p0, p1, buf, 2 * p0)

    @njit
    def label(x, d, Wt, at, tnorm, tcode, noise):
        """(y, max_i |x_i|) of the sample in ``x`` (its entry d is the noise number)."""
        mx = zero
        for i in range(d):
            mx = max(mx, abs(x[i]))
        f = zero
        for t in range(Wt.shape[0]):
            z = zero
            for i in range(d):
                z += Wt[t, i] * x[i]
            f += at[t] * neuron(tcode, z, tnorm[t])
        return ft(f + ft(noise) * x[d]), mx

    @njit
    def rows(W, x, xn, coef, gw, h, nrm, j0, j1):
        """w_j <- w_j - gw_j w_j - coef_j x (two FMAs), h_j = w_j . xn, nrm_j = |w_j| for rows j0 .. j1-1."""
        d = W.shape[1]
        for j in range(j0, j1):
            cj = coef[j]
            gj = gw[j]
            z = zero
            q = zero
            for i in range(d):
                w = W[j, i]
                w = (w - gj * w) - cj * x[i]
                W[j, i] = w
                z += w * xn[i]
                q += w * w
            h[j] = z
            nrm[j] = ft(math.sqrt(q))

    @njit(inline="always")
    def reg_terms(reg, aj, nw, la, lw):
        """(the regularizer's g_a[j], its coefficient of w_j in g_W[j])."""
        if reg == 1:
            return la * aj, lw
        if reg == 2 and aj != zero and nw > zero:
            return (lw * nw if aj > zero else -(lw * nw)), lw * (abs(aj) / nw)
        return zero, zero

    def make_neurons(kind, plain):
        """The neuron pass of one activation kind (as in ``empirical``: ``ALG`` covers the piecewise
        polynomial activations through their coefficients ``p``, ``ERF`` and ``TANH`` use the table with
        the code fixed at compile time): no per-element branch on the activation, so the loop vectorizes
        (it writes only two arrays and indexes them unsigned: no wraparound branch, few alias checks).
        ``plain``: for runs without a norm term (cn = 0) and without the path norm, whose terms divide by
        |w_j|: the vectorized loop would compute those divisions for every neuron (they are a third of
        the pass) only to multiply them by zero."""
        fixed = ERF if kind == KIND_ERF else TANH

        @njit(inline="always")
        def chunk(a, h, nrm, phi, A1, p, cn, reg, lam_a, lam_w, j0, j1, out):
            la = ft(lam_a)
            lw = ft(lam_w)
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
                    r_a, r_w = (la * aj, lw) if reg == 1 else (zero, zero)
                else:
                    a2 = aj * (cn / nw) if nw > zero else zero
                    r_a, r_w = reg_terms(reg, aj, nw, la, lw)
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
                chunk(a, h, nrm, phi, A1, p, cn, reg, lam_a, lam_w, c * CH, min(c * CH + CH, m), part[c])

        return neurons

    def make_by_kind(plain):
        """The neuron pass that picks its activation kind's variant (``make_neurons``)."""
        alg, erf, tanh = make_neurons(KIND_ALG, plain), make_neurons(KIND_ERF, plain), make_neurons(KIND_TANH, plain)

        @njit
        def by_kind(kind, a, h, nrm, phi, A1, p, cn, reg, lam_a, lam_w, c0, c1, m, part):
            if kind == KIND_ALG:
                alg(a, h, nrm, phi, A1, p, cn, reg, lam_a, lam_w, c0, c1, m, part)
            elif kind == KIND_ERF:
                erf(a, h, nrm, phi, A1, p, cn, reg, lam_a, lam_w, c0, c1, m, part)
            else:
                tanh(a, h, nrm, phi, A1, p, cn, reg, lam_a, lam_w, c0, c1, m, part)

        return by_kind

    PLAIN, GENERAL = make_by_kind(True), make_by_kind(False)

    @njit
    def neurons(a, code, h, nrm, phi, A1, reg, lam_a, lam_w, c0, c1, m, part):
        """phi, a_j sigma'_j and, for each chunk c0 .. c1-1, its terms (output part, bound terms) into
        ``part[c]``."""
        p = (P[code, 0], P[code, 1], P[code, 2], P[code, 3], P[code, 4], P[code, 5])
        cn = P[code, 6]
        if cn == zero and reg != 2:
            PLAIN(KIND_OF[code], a, h, nrm, phi, A1, p, cn, reg, lam_a, lam_w, c0, c1, m, part)
        else:
            GENERAL(KIND_OF[code], a, h, nrm, phi, A1, p, cn, reg, lam_a, lam_w, c0, c1, m, part)

    @njit
    def coefficients(a, nrm, phi, A1, coef, gw, cn, reg, lam_a, lam_w, r, lr, j0, j1):
        """a_j -= lr g_a[j]; coef_j = lr r a_j sigma'_j and gw_j = lr cw_j of the row update (residual r)."""
        la = ft(lam_a)
        lw = ft(lam_w)
        for jj in range(j1 - j0):
            j = np.uint64(j0 + jj)
            aj = a[j]
            nw = nrm[j]
            a2 = aj * (cn / nw) if nw > zero else zero
            r_a, r_w = reg_terms(reg, aj, nw, la, lw)
            coef[j] = lr * (r * A1[j])
            gw[j] = lr * (r * a2 + r_w)
            a[j] = aj - lr * (r * phi[j] + r_a)

    @njit
    def exact_ok(W, x, a, nrm, phi, A1, cn, reg, lam_a, lam_w, r, lr, m):
        """Every entry of the step's gradient and of the updated weights is finite (the slow check behind
        the bound; the same arithmetic as ``coefficients`` and ``rows``)."""
        d = W.shape[1]
        la = ft(lam_a)
        lw = ft(lam_w)
        for j in range(m):
            aj = a[j]
            nw = nrm[j]
            a2 = aj * (cn / nw) if nw > zero else zero
            r_a, r_w = reg_terms(reg, aj, nw, la, lw)
            ga = r * phi[j] + r_a
            if not (finite(ga) and finite(aj - lr * ga)):
                return False
            cw = r * a2 + r_w
            c = r * A1[j]
            cj = lr * c
            gj = lr * cw
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
        x, h, nrm, phi, A1, coef, gw, part = fw[0][0], fw[1], fw[2], fw[3], fw[4], fw[5], fw[6], fw[7]
        m, d = W.shape
        nch = (m + CH - 1) // CH
        s = step0 + t
        fill(seed, s, x, 0, (d + 2) // 2)
        y, xmax = label(x, d, Wt, at, tnorm, tcode, noise)
        cn = dneuron_dnorm(code)
        tot = np.zeros(NPART, ft)
        for c in range(nch):  # the forward pass: the row pass with gw = coef = 0 leaves W as it is
            j0, j1 = c * CH, min(c * CH + CH, m)
            for j in range(j0, j1):
                coef[j] = zero
                gw[j] = zero
            rows(W, x, x, coef, gw, h, nrm, j0, j1)
        neurons(a, code, h, nrm, phi, A1, reg, lam_as[t], lam_ws[t], 0, nch, m, part[0])
        for c in range(nch):
            for u in range(NPART):
                tot[u] += part[0, c, u]
        r = tot[0] - y
        loss = 0.5 * (np.float64(r) * r)
        lr = ft(lrs[t])
        if not (finite(loss) and exact_ok(W, x, a, nrm, phi, A1, cn, reg, lam_as[t], lam_ws[t], r, lr, m)):
            losses[t] = np.nan
            return 0
        losses[t] = loss
        for c in range(nch):
            j0, j1 = c * CH, min(c * CH + CH, m)
            coefficients(a, nrm, phi, A1, coef, gw, cn, reg, lam_as[t], lam_ws[t], r, lr, j0, j1)
            rows(W, x, x, coef, gw, h, nrm, j0, j1)
        return 1

    # ------------------------------------------------------------------------------------------------
    # The blocked scheme (see the module docstring)
    # ------------------------------------------------------------------------------------------------
    two = ft(2.0)
    KB = BLOCK
    RW = ROWS
    # register blocks of 16 accumulators, for targets with 32 vector registers (AVX-512); with 16 (AVX2)
    # they would spill, and update and dots fall back to update_rows and dots_pairs below
    VD = VECTOR_BYTES // np.dtype(ft).itemsize  # lanes of a vector register
    LN = 4 * VD  # update: columns per register block (4 rows by 4 vectors)
    NACC = 4 * LN
    NDOT = 16 * VD  # dots: 4 rows by 4 samples, one vector each
    KL = 4 * VD  # products_at: rows per register block

    @njit
    def update(W, A, B, X, l0, l1, scale, j0, j1):
        """w_j <- A_j w_j (when ``scale``), then w_j <- w_j - B[l, j] x_l for l = l0 .. l1-1 in that
        order, one rounding per term, for rows j0 .. j1-1. Four rows by ``LN`` columns at a time stay in
        registers (``acc``) while the samples stream past, so each weight is loaded and stored once, not
        once per sample; the columns left over (d mod LN) and the rows left over (fewer than four) take
        one pass per sample, with the same arithmetic per weight."""
        wide_vectors()
        d = W.shape[1]
        dw = d - d % LN
        acc = local_array(W, NACC)
        j = j0
        while j + 4 <= j1:
            for i0 in range(0, dw, LN):
                if scale:
                    a0, a1, a2, a3 = A[j], A[j + 1], A[j + 2], A[j + 3]
                    for c in range(LN):
                        acc[c] = a0 * W[j, i0 + c]
                        acc[LN + c] = a1 * W[j + 1, i0 + c]
                        acc[2 * LN + c] = a2 * W[j + 2, i0 + c]
                        acc[3 * LN + c] = a3 * W[j + 3, i0 + c]
                else:
                    for c in range(LN):
                        acc[c] = W[j, i0 + c]
                        acc[LN + c] = W[j + 1, i0 + c]
                        acc[2 * LN + c] = W[j + 2, i0 + c]
                        acc[3 * LN + c] = W[j + 3, i0 + c]
                for l in range(l0, l1):
                    b0, b1, b2, b3 = B[l, j], B[l, j + 1], B[l, j + 2], B[l, j + 3]
                    for c in range(LN):
                        x = X[l, i0 + c]
                        acc[c] = acc[c] - b0 * x
                        acc[LN + c] = acc[LN + c] - b1 * x
                        acc[2 * LN + c] = acc[2 * LN + c] - b2 * x
                        acc[3 * LN + c] = acc[3 * LN + c] - b3 * x
                for c in range(LN):
                    W[j, i0 + c] = acc[c]
                    W[j + 1, i0 + c] = acc[LN + c]
                    W[j + 2, i0 + c] = acc[2 * LN + c]
                    W[j + 3, i0 + c] = acc[3 * LN + c]
            j += 4
        for jj in range(j0, j1):
            i_start = dw if jj < j else 0
            if scale:
                aj = A[jj]
                for i in range(i_start, d):
                    W[jj, i] = aj * W[jj, i]
            for l in range(l0, l1):
                b0 = B[l, jj]
                for i in range(i_start, d):
                    W[jj, i] = W[jj, i] - b0 * X[l, i]

    @njit
    def dots(W, X, P, k0, k1, j0, j1, d):
        """P[k, j] = w_j[:d] . x_k[:d] for k = k0 .. k1-1 (k0, k1 multiples of 4) and rows j0 .. j1-1: four
        rows and four samples per pass, 16 vector accumulators folded by ``vector_sums``; the columns left
        over (d mod VD) are added one by one, and the rows left over (fewer than four) summed one at a
        time. (``d`` is passed, not sliced off: a sliced array has runtime strides, which LLVM turns into
        gathers.)"""
        wide_vectors()
        dv = d - d % VD
        acc = local_array(W, NDOT)
        out = local_array(W, 16)
        j = j0
        while j + 4 <= j1:
            for k in range(k0, k1, 4):
                for c in range(NDOT):
                    acc[c] = zero
                for i0 in range(0, dv, VD):
                    for c in range(VD):
                        i = np.uint64(i0 + c)
                        w0, w1, w2, w3 = W[j, i], W[j + 1, i], W[j + 2, i], W[j + 3, i]
                        x0, x1, x2, x3 = X[k, i], X[k + 1, i], X[k + 2, i], X[k + 3, i]
                        acc[c] += w0 * x0
                        acc[VD + c] += w0 * x1
                        acc[2 * VD + c] += w0 * x2
                        acc[3 * VD + c] += w0 * x3
                        acc[4 * VD + c] += w1 * x0
                        acc[5 * VD + c] += w1 * x1
                        acc[6 * VD + c] += w1 * x2
                        acc[7 * VD + c] += w1 * x3
                        acc[8 * VD + c] += w2 * x0
                        acc[9 * VD + c] += w2 * x1
                        acc[10 * VD + c] += w2 * x2
                        acc[11 * VD + c] += w2 * x3
                        acc[12 * VD + c] += w3 * x0
                        acc[13 * VD + c] += w3 * x1
                        acc[14 * VD + c] += w3 * x2
                        acc[15 * VD + c] += w3 * x3
                vector_sums(acc, out, 16)
                for q in range(16):
                    r, kk = q // 4, q % 4
                    z = out[q]
                    for i in range(dv, d):
                        z += W[j + r, i] * X[k + kk, i]
                    P[k + kk, j + r] = z
            j += 4
        while j < j1:
            for k in range(k0, k1):
                z = zero
                for i in range(d):
                    z += W[j, i] * X[k, i]
                P[k, j] = z
            j += 1

    @njit
    def update_rows(W, A, B, X, l0, l1, scale, j0, j1):
        """``update`` for targets with 16 vector registers (AVX2), where its register block would spill:
        four rows and four samples per pass over the rows (each x_l loaded once for four rows, each row
        stored once per four terms)."""
        d = W.shape[1]
        if scale:
            for j in range(j0, j1):
                aj = A[j]
                for i in range(d):
                    W[j, i] = aj * W[j, i]
        j = j0
        while j + 4 <= j1:
            l = l0
            while l + 4 <= l1:
                b0, b1, b2, b3 = B[l, j], B[l + 1, j], B[l + 2, j], B[l + 3, j]
                e0, e1, e2, e3 = B[l, j + 1], B[l + 1, j + 1], B[l + 2, j + 1], B[l + 3, j + 1]
                f0, f1, f2, f3 = B[l, j + 2], B[l + 1, j + 2], B[l + 2, j + 2], B[l + 3, j + 2]
                g0, g1, g2, g3 = B[l, j + 3], B[l + 1, j + 3], B[l + 2, j + 3], B[l + 3, j + 3]
                for i in range(d):
                    x0, x1, x2, x3 = X[l, i], X[l + 1, i], X[l + 2, i], X[l + 3, i]
                    W[j, i] = (((W[j, i] - b0 * x0) - b1 * x1) - b2 * x2) - b3 * x3
                    W[j + 1, i] = (((W[j + 1, i] - e0 * x0) - e1 * x1) - e2 * x2) - e3 * x3
                    W[j + 2, i] = (((W[j + 2, i] - f0 * x0) - f1 * x1) - f2 * x2) - f3 * x3
                    W[j + 3, i] = (((W[j + 3, i] - g0 * x0) - g1 * x1) - g2 * x2) - g3 * x3
                l += 4
            while l < l1:
                b0, e0, f0, g0 = B[l, j], B[l, j + 1], B[l, j + 2], B[l, j + 3]
                for i in range(d):
                    x0 = X[l, i]
                    W[j, i] = W[j, i] - b0 * x0
                    W[j + 1, i] = W[j + 1, i] - e0 * x0
                    W[j + 2, i] = W[j + 2, i] - f0 * x0
                    W[j + 3, i] = W[j + 3, i] - g0 * x0
                l += 1
            j += 4
        while j < j1:
            for l in range(l0, l1):
                b0 = B[l, j]
                for i in range(d):
                    W[j, i] = W[j, i] - b0 * X[l, i]
            j += 1

    @njit
    def dots_pairs(W, X, P, k0, k1, j0, j1, d):
        """``dots`` for targets with 16 vector registers (AVX2), where 16 accumulators would spill: two
        rows and four samples per pass (eight independent sums, each reduced by LLVM)."""
        wide_vectors()
        j = j0
        while j + 2 <= j1:
            for k in range(k0, k1, 4):
                z00, z01, z02, z03 = zero, zero, zero, zero
                z10, z11, z12, z13 = zero, zero, zero, zero
                for i in range(d):
                    w0 = W[j, i]
                    w1 = W[j + 1, i]
                    x0, x1, x2, x3 = X[k, i], X[k + 1, i], X[k + 2, i], X[k + 3, i]
                    z00 += w0 * x0
                    z01 += w0 * x1
                    z02 += w0 * x2
                    z03 += w0 * x3
                    z10 += w1 * x0
                    z11 += w1 * x1
                    z12 += w1 * x2
                    z13 += w1 * x3
                P[k, j], P[k + 1, j], P[k + 2, j], P[k + 3, j] = z00, z01, z02, z03
                P[k, j + 1], P[k + 1, j + 1], P[k + 2, j + 1], P[k + 3, j + 1] = z10, z11, z12, z13
            j += 2
        if j < j1:
            for k in range(k0, k1, 4):
                z00, z01, z02, z03 = zero, zero, zero, zero
                for i in range(d):
                    w0 = W[j, i]
                    z00 += w0 * X[k, i]
                    z01 += w0 * X[k + 1, i]
                    z02 += w0 * X[k + 2, i]
                    z03 += w0 * X[k + 3, i]
                P[k, j], P[k + 1, j], P[k + 2, j], P[k + 3, j] = z00, z01, z02, z03

    if VECTOR_REGISTERS < 32:  # AVX2: the register blocks above would spill
        update, dots = update_rows, dots_pairs

    @njit
    def row_stats(W, q, full, j0, j1):
        """q_j = |w_j|^2 (``full``), else |w_j| (the starting bound on max_i |w_ij|: a sum of squares
        vectorizes, a running maximum does not), for rows j0 .. j1-1."""
        d = W.shape[1]
        for j in range(j0, j1):
            v = zero
            for i in range(d):
                v += W[j, i] * W[j, i]
            q[j] = v if full else ft(math.sqrt(v))

    @njit
    def block_terms(X, kb, L, d, G, Z, Wt, at, tnorm, tcode, noise, me, nt):
        """The worker's share of the block's sample terms: for the groups of 4 positions that meet kb .. L-1,
        group g done by worker (g - kb // 4) % nt: G[k, l] = x_k . x_l (every l < KB), the label y_k and
        max_i |x_k[i]| (columns KB, KB + 1), with the teacher's products Z[k, t] = w*_t . x_k by the same
        four-rows-by-four-samples kernel as the block's products."""
        ms = Wt.shape[0]
        for g in range(kb // 4 + me, (L + 3) // 4, nt):
            k0 = 4 * g
            dots(X, X, G, k0, k0 + 4, 0, KB, d)
            dots(Wt, X, Z, k0, k0 + 4, 0, ms, d)
            for k in range(max(k0, kb), min(k0 + 4, L)):
                mx = zero
                for i in range(d):
                    mx = max(mx, abs(X[k, i]))
                f = zero
                for t in range(ms):
                    f += at[t] * neuron(tcode, Z[k, t], tnorm[t])
                G[k, KB] = ft(f + ft(noise) * X[k, d])
                G[k, KB + 1] = mx

    @njit(fastmath=ORDERED)
    def products_at(E, C, Al, G, kb, k, mode, j0, j1):
        """E[k, j] <- w_j . x_k for the current weights, rows j0 .. j1-1: E[k, j] holds the product with
        the block's starting weights, and the recorded updates of positions kb .. k-1 are applied in that
        order, E <- Al[l, j] E - C[l, j] x_k . x_l (LITE: E - C[l, j] x_k . x_l). ``KL`` rows at a time
        stay in registers while the positions stream past (one load and one store of E[k] per step).
        Compiled without ``reassoc``: with it, LLVM takes the loop over positions for a reduction and
        vectorizes it with gathers, ten times slower than the register block, and out of order."""
        wide_vectors()
        if k == kb:
            return
        n = j1 - j0
        nw = n - n % KL
        acc = local_array(E, KL)
        for jb in range(j0, j0 + nw, KL):  # unsigned indices below: no wraparound checks (gathers)
            for c in range(KL):
                acc[c] = E[k, np.uint64(jb + c)]
            if mode == LITE:
                for l in range(kb, k):
                    g = G[k, l]
                    for c in range(KL):
                        acc[c] = acc[c] - C[l, np.uint64(jb + c)] * g
            else:
                for l in range(kb, k):
                    g = G[k, l]
                    for c in range(KL):
                        j = np.uint64(jb + c)
                        acc[c] = Al[l, j] * acc[c] - C[l, j] * g
            for c in range(KL):
                E[k, np.uint64(jb + c)] = acc[c]
        for l in range(kb, k):
            g = G[k, l]
            for jj in range(nw, n):
                j = np.uint64(j0 + jj)
                if mode == LITE:
                    E[k, j] = E[k, j] - C[l, j] * g
                else:
                    E[k, j] = Al[l, j] * E[k, j] - C[l, j] * g

    @njit
    def block_coefficients(a, nrm, phi, A1, E, q, C, Al, cn, reg, lam_a, lam_w, r, lr, mode, k, G, j0, j1):
        """Step at block position k for rows j0 .. j1-1: a_j -= lr g_a[j]; the row update
        w_j <- alpha_j w_j - c_j x_k (alpha_j = 1 - lr cw_j, c_j = lr r a_j sigma'_j) is recorded as
        C[k, j] = c_j, Al[k, j] = alpha_j (``products_at`` applies it to the later positions' products);
        q_j follows it: exactly |w'|^2 = alpha^2 |w|^2 - 2 alpha c (w . x_k) + c^2 |x_k|^2 (FULL), or the
        bound |alpha| q_j + |c_j| max_i |x_k[i]|."""
        wide_vectors()
        la = ft(lam_a)
        lw = ft(lam_w)
        gkk = G[k, k]
        xmax = G[k, KB + 1]
        if mode == LITE:  # no regularizer, no norm term
            for jj in range(j1 - j0):
                j = np.uint64(j0 + jj)
                c = lr * (r * A1[j])
                a[j] = a[j] - lr * (r * phi[j])
                C[k, j] = c
                q[j] = q[j] + abs(c) * xmax
        elif mode == DECAY:  # weight decay, no norm term: no division by |w_j|
            for jj in range(j1 - j0):
                j = np.uint64(j0 + jj)
                aj = a[j]
                c = lr * (r * A1[j])
                a[j] = aj - lr * (r * phi[j] + la * aj)
                C[k, j] = c
                al = one - lr * lw
                Al[k, j] = al
                q[j] = abs(al) * q[j] + abs(c) * xmax
        else:
            for jj in range(j1 - j0):
                j = np.uint64(j0 + jj)
                aj = a[j]
                nw = nrm[j]
                a2 = aj * (cn / nw) if nw > zero else zero
                r_a, r_w = reg_terms(reg, aj, nw, la, lw)
                c = lr * (r * A1[j])
                a[j] = aj - lr * (r * phi[j] + r_a)
                C[k, j] = c
                al = one - lr * (r * a2 + r_w)
                Al[k, j] = al
                q[j] = ((al * al) * q[j] - (two * al * c) * E[k, j]) + (c * c) * gkk

    @njit
    def norms_of(q, nrm, j0, j1):
        """nrm_j = sqrt(q_j) (FULL mode: q_j is |w_j|^2)."""
        for jj in range(j1 - j0):
            j = np.uint64(j0 + jj)
            nrm[j] = ft(math.sqrt(max(q[j], zero)))

    @njit
    def pending(C, Al, A, kb, k, mode, j0, j1):
        """The updates of block positions kb .. k-1 as w_j <- A_j w_j - sum_l C[l, j] x_l: C[l, j] becomes
        c_l times the alphas of the later steps, A_j the product of all (LITE: C as it is, A = 1)."""
        if mode == LITE:
            return
        for jj in range(j1 - j0):
            j = np.uint64(j0 + jj)
            A[j] = one
        for l in range(k - 1, kb - 1, -1):
            for jj in range(j1 - j0):
                j = np.uint64(j0 + jj)
                C[l, j] = C[l, j] * A[j]
                A[j] = A[j] * Al[l, j]

    @njit
    def apply_pending(W, A, C, Al, X, kb, k, mode, r0, r1):
        """W <- the weights after block positions kb .. k-1 (rows r0 .. r1-1)."""
        pending(C, Al, A, kb, k, mode, r0, r1)
        for j0 in range(r0, r1, RW):
            update(W, A, C, X, kb, k, mode != LITE, j0, min(j0 + RW, r1))

    @njit
    def base_pass(W, X, E, q, full, k0, k1, j0, j1):
        """The start of a block from the weights in W: q_j and E[k, j] = w_j . x_k for the block positions
        k0 .. k1-1 (whole groups of 4)."""
        row_stats(W, q, full, j0, j1)
        dots(W, X, E, k0 // 4 * 4, min(KB, -(-k1 // 4) * 4), j0, j1, W.shape[1])

    @njit
    def block_worker(w, n_workers, W, a, Wt, at, tnorm, code, tcode, noise, seed, step0, t0, t1, lrs, reg,
                     lam_as, lam_ws, fw, losses):
        """Steps t0 .. t1-1 of the run (global step step0 + t) by the blocked scheme. Returns (steps done
        from t0, outcome), outcome -1 for a worker that left."""
        nrm, phi, A1, part, sync = fw[2], fw[3], fw[4], fw[7], fw[8]
        X3, E, C, A, q, Al, aux, busy = fw[11], fw[12], fw[13], fw[14], fw[15], fw[16], fw[17], fw[18]
        mode_ = _sync.join(sync, n_workers)
        if mode_ == 0:
            return 0, -1
        m, d = W.shape
        nch = (m + CH - 1) // CH
        npair = (d + 2) // 2
        team = mode_ == _sync.TEAM
        nt = n_workers if team else 1
        me = w if team else 0
        bounds = np.empty(nt + 1, np.int64)  # worker k owns chunks bounds[k] .. bounds[k+1]-1
        for k in range(nt + 1):
            bounds[k] = k * nch // nt
        c0, c1 = bounds[me], bounds[me + 1]
        r0, r1 = c0 * CH, min(c1 * CH, m)  # the worker's rows
        writer = not team or w == 0
        cn = dneuron_dnorm(code)
        mode = LITE if reg == 0 and cn == zero else (DECAY if reg == 1 and cn == zero else FULL)
        full = mode == FULL
        hnorm = nrm if full else q  # the norms the neuron pass sees: |w_j|, or the bound
        tot = np.empty(NPART, ft)
        Z = np.empty((KB, max(Wt.shape[0], 1)), ft)  # the teacher's products with the block's samples
        nb = 0
        S1 = step0 + t1
        b = (step0 + t0) // KB
        kb = step0 + t0 - b * KB  # the run's first position in block b
        L = min(KB, S1 - b * KB)  # positions < L of block b are in the run
        Xb = X3[b % 3]
        for k in range(kb + me, L, nt):  # whole samples: each worker its share
            fill(seed, b * KB + k, Xb[k], 0, npair)
        if team:
            nb += 1
            _sync.arrive_and_wait(sync, n_workers * nb)
        for j0 in range(r0, r1, RW):
            base_pass(W, Xb, E, q, full, kb, L, j0, min(j0 + RW, r1))
        b0 = b
        while True:
            tick = _sync.cycles()
            waited = 0
            Ln = min(KB, S1 - (b + 1) * KB)  # positions of block b + 1 in the run
            Xn = X3[(b + 1) % 3]
            for k in range(me, Ln, nt):  # drawn now, visible to all after the barrier below
                fill(seed, (b + 1) * KB + k, Xn[k], 0, npair)
            G = aux[b % 2]  # written by all workers, read by all after the barrier
            block_terms(Xb, kb, L, d, G, Z, Wt, at, tnorm, tcode, noise, me, nt)
            if team:
                nb += 1
                w0 = _sync.cycles()
                _sync.arrive_and_wait(sync, n_workers * nb)
                waited += _sync.cycles() - w0
                if b > b0:  # rows move towards the faster worker (it never changes a result)
                    _sync.rebalance(bounds, busy[(b - 1) % 2], 1)
                    c0, c1 = bounds[me], bounds[me + 1]
                    r0, r1 = c0 * CH, min(c1 * CH, m)
            for k in range(kb, L):
                s = b * KB + k
                t = s - step0
                y, xmax = G[k, KB], G[k, KB + 1]
                products_at(E, C, Al, G, kb, k, mode, r0, r1)
                if full:
                    norms_of(q, nrm, r0, r1)
                neurons(a, code, E[k], hnorm, phi, A1, reg, lam_as[t], lam_ws[t], c0, c1, m, part[s % 2])
                if team:
                    nb += 1
                    w0 = _sync.cycles()
                    _sync.arrive_and_wait(sync, n_workers * nb)
                    waited += _sync.cycles() - w0
                pt = part[s % 2]
                tot[:] = zero
                for c in range(nch):
                    for u in range(NPART):
                        tot[u] += pt[c, u]
                f, sph, sra, g1, g0, snw, sa, g2 = tot[0], tot[1], tot[2], tot[3], tot[4], tot[5], tot[6], tot[7]
                r = f - y
                loss = 0.5 * (np.float64(r) * r)
                lr = ft(lrs[t])
                ar = abs(r)
                bga = ar * sph + sra  # bounds on |g_a|, |g_W| entries
                bgw = ar * (g1 * xmax + g2) + g0
                ok = finite(loss)
                if not (ok and bga < big and bgw < big and sa + lr * bga < big and snw + lr * bgw < big):
                    apply_pending(W, A, C, Al, Xb, kb, k, mode, r0, r1)  # W <- W(s): the weights before step s
                    if not ok:
                        if writer:
                            losses[t] = np.nan
                        return t - t0, STOP
                    return t - t0, NEED_EXACT
                if writer:
                    losses[t] = loss
                block_coefficients(a, nrm, phi, A1, E, q, C, Al, cn, reg, lam_as[t], lam_ws[t], r, lr, mode, k, G,
                                   r0, r1)
            pending(C, Al, A, kb, L, mode, r0, r1)
            for j0 in range(r0, r1, RW):  # the block's updates, then the next block's products
                j1 = min(j0 + RW, r1)
                update(W, A, C, Xb, kb, L, mode != LITE, j0, j1)
                if Ln > 0:
                    base_pass(W, Xn, E, q, full, 0, Ln, j0, j1)
            busy[b % 2, me] = _sync.cycles() - tick - waited
            if Ln <= 0:
                return t1 - t0, DONE
            b += 1
            kb = 0
            L = Ln
            Xb = Xn

    @pnjit
    def team_run(n_workers, W, a, Wt, at, tnorm, code, tcode, noise, seed, step0, t0, t1, lrs, reg, lam_as,
                 lam_ws, fw, losses):
        status = fw[9]
        for w in prange(n_workers):
            done, outcome = block_worker(np.int64(w), n_workers, W, a, Wt, at, tnorm, code, tcode, noise, seed,
                                         step0, t0, t1, lrs, reg, lam_as, lam_ws, fw, losses)
            status[w, 0] = done
            status[w, 1] = outcome

    @njit
    def run(W, a, Wt, at, code, tcode, noise, seed, step0, lrs, reg, lam_as, lam_ws, fw, losses):
        """Steps step0 .. step0 + len(lrs) - 1; returns the number done (see ``online.run``)."""
        S = lrs.shape[0]
        if S == 0:
            return 0
        m, d = W.shape
        n_workers = min(numba.get_num_threads(), fw[9].shape[0])
        if m * d < TEAM_MIN_WEIGHTS or m < 2 * CH:
            n_workers = 1
        tnorm = np.empty(Wt.shape[0], np.float64)
        row_norms(Wt, tnorm)
        t = 0
        while t < S:
            if n_workers > 1:
                sync = fw[8]
                sync[:] = 0
                status = fw[9]
                status[:] = 0
                for k in range(n_workers):
                    status[k, 1] = -1
                team_run(n_workers, W, a, Wt, at, tnorm, code, tcode, noise, seed, step0, t, S, lrs, reg, lam_as,
                         lam_ws, fw, losses)
                done, outcome = 0, -1
                for k in range(n_workers):
                    if status[k, 1] >= 0:
                        done, outcome = status[k, 0], status[k, 1]
                        break
            else:
                done, outcome = block_worker(0, 1, W, a, Wt, at, tnorm, code, tcode, noise, seed, step0, t, S, lrs,
                                             reg, lam_as, lam_ws, fw, losses)
            t += done
            if outcome == NEED_EXACT:  # W holds the weights of step t
                done = exact_step(W, a, Wt, at, tnorm, code, tcode, noise, seed, step0, t, lrs, reg, lam_as, lam_ws,
                                  fw, losses)
                if done == 0:
                    return t
                t += done
            elif outcome == STOP:
                return t
        return t

    parts = {"fill": fill, "label": label, "rows": rows, "neurons": neurons, "coefficients": coefficients,
             "exact_step": exact_step, "update": update, "dots": dots, "block_terms": block_terms,
             "block_coefficients": block_coefficients, "products_at": products_at, "block_worker": block_worker,
             "team_run": team_run}
    return run, parts


RUN32, PARTS32 = _make(TABLE32)
RUN64, PARTS64 = _make(TABLE64)
