"""Online SGD with batch 1: one pass over W per step, by a persistent team of threads.

With one sample per step the work is ``m d`` multiply-adds, a few microseconds, so the cost is in
touching W (read and written once per step at least) and in synchronisation, not in arithmetic. The
step ``s`` update and the step ``s + 1`` forward pass share one pass over each row::

    w_j <- (w_j - gw_j w_j) - coef_j x_s,        h_j = w_j . x_{s+1},        nrm_j = |w_j|

with ``coef_j = lr r a_j sigma'(w_j . x_s)`` and ``gw_j = lr cw_j`` (``cw_j`` is relu_centered's norm
term plus the regularizer's, see ``online``): two FMAs for the update, two for the product and the norm.
Sample ``s + 1`` is therefore drawn one step ahead. A run starts with the same pass with
``gw = coef = 0``, which leaves W as it is and gives exactly the products a previous step's pass would
have given, so a run split into pieces (logging, checkpoints) gives the same weights bit for bit.

Rows are split into fixed chunks of ``CHUNK``; for each chunk, the neuron pass after the row pass
computes phi, the chunk's part of the output ``sum_j a_j phi_j`` and the chunk's terms of the divergence
bound. The only value a step needs from every chunk is that output, so a team (``_sync``) exchanges the
chunk partials at one barrier per step and every worker sums them in chunk order: the weights are
bit-identical for any number of threads, solo or in a team. Each worker owns a contiguous range of
chunks; the ranges follow the workers' measured speed (``_sync.rebalance``), which moves work between
cores but never changes a result. The workers also split the Box-Muller pairs of the next sample between
them. Nothing is allocated per step and no BLAS is called.

Divergence guard: with ``xmax = max_i |x_i|``, every entry of g_W is bounded by
``B_W = |r| sum_j (|a_j sigma'_j| xmax + |a_j cn / nrm_j| nrm_j) + sum_j |rw_j| nrm_j`` and every g_a by
``B_a = |r| sum_j |phi_j| + sum_j |ra_j|``, and every updated weight by ``sum_j nrm_j + lr B_W`` or
``sum_j |a_j| + lr B_a``; the sums are over all chunks and carry NaN through. When the four bounds are
below ``max_float / 4`` the step is taken. Otherwise, if the loss is finite, the exact check of every
entry of the gradient and of the new weights decides (done by one worker: a team hands that step back to
``run``, which does it solo and then starts the team again; the results are the same). So a refused step
leaves W, a as they were, and an accepted one never makes them overflow.

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
from ._jit import TABLE32, TABLE64, njit, pnjit
from ._rng import pairs_into, stream_key
from .common import row_norms
from .empirical import KIND_ALG, KIND_ERF, KIND_OF, KIND_TANH, PARAMS32, PARAMS64

#: rows per chunk (the unit of the fixed split, and of the per-chunk partial sums)
CHUNK = 32
#: terms per chunk kept for the step: output part, sum |phi|, sum |ra|, g_W bound (r part, rest),
#: sum |w_j|, sum |a_j|
NPART = 7
#: below this many weights (m d) a run stays on the calling thread
TEAM_MIN_WEIGHTS = 1 << 14
#: run outcomes
DONE, STOP, NEED_EXACT, LEFT = 0, 1, 2, 3


def workspace(m, d, dtype):
    """The batch-1 buffers: ``(xs, h, nrm, phi, A1, coef, gw, part, sync, status, scratch, times)``
    (``scratch``: the arguments of a single step, so ``online.step`` allocates nothing; ``times``: each
    worker's time on its rows, by step parity, for ``_sync.rebalance``)."""
    dtype = np.dtype(dtype)
    nch = (m + CHUNK - 1) // CHUNK
    npair = (d + 2) // 2
    width = -(-2 * npair // 16) * 16  # whole 64-byte lines per sample: the three never share a line
    v = [np.zeros(m, dtype) for _ in range(6)]
    return (np.zeros((3, width), dtype), *v, np.zeros((2, max(nch, 1), NPART), dtype), _sync.new_sync(),
            np.zeros((max(numba.config.NUMBA_NUM_THREADS, 1), 2), np.int64), np.zeros((4, 1)),
            np.zeros((2, max(numba.config.NUMBA_NUM_THREADS, 1)), np.int64))


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

    @njit
    def rows_lite(W, x, xn, coef, h, nrm, xmax, j0, j1):
        """The row pass when gw = 0 and |w_j| is not needed (no regularizer, an activation without a norm
        term): w_j <- w_j - coef_j x, h_j = w_j . xn, two FMAs instead of four. nrm_j is then only a bound
        on max_i |w_ij| for the guard, carried as nrm_j + |coef_j| max_i |x_i| (exact at each run start)."""
        d = W.shape[1]
        for j in range(j0, j1):
            cj = coef[j]
            z = zero
            for i in range(d):
                w = W[j, i] - cj * x[i]
                W[j, i] = w
                z += w * xn[i]
            h[j] = z
            nrm[j] = nrm[j] + abs(cj) * xmax

    @njit
    def max_abs_rows(W, nrm, j0, j1):
        """nrm_j = max_i |w_ij| (the starting bound of ``rows_lite``)."""
        d = W.shape[1]
        for j in range(j0, j1):
            v = zero
            for i in range(d):
                v = max(v, abs(W[j, i]))
            nrm[j] = v

    @njit(inline="always")
    def reg_terms(reg, aj, nw, la, lw):
        """(the regularizer's g_a[j], its coefficient of w_j in g_W[j])."""
        if reg == 1:
            return la * aj, lw
        if reg == 2 and aj != zero and nw > zero:
            return (lw * nw if aj > zero else -(lw * nw)), lw * (abs(aj) / nw)
        return zero, zero

    def make_neurons(kind):
        """The neuron pass of one activation kind (as in ``empirical``: ``ALG`` covers the piecewise
        polynomial activations through their coefficients ``p``, ``ERF`` and ``TANH`` use the table with
        the code fixed at compile time): no per-element branch on the activation, so the loop vectorizes
        (it writes only two arrays and indexes them unsigned: no wraparound branch, few alias checks)."""
        fixed = ERF if kind == KIND_ERF else TANH

        @njit
        def neurons(a, h, nrm, phi, A1, p, cn, reg, lam_a, lam_w, xmax, j0, j1, out):
            la = ft(lam_a)
            lw = ft(lam_w)
            pf = zero
            sph = zero
            sra = zero
            g1 = zero
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
                a2 = aj * (cn / nw) if nw > zero else zero
                r_a, r_w = reg_terms(reg, aj, nw, la, lw)
                phi[j] = ph
                A1[j] = a1
                pf += aj * ph
                sph += abs(ph)
                sra += abs(r_a)
                g1 += abs(a1) * xmax + abs(a2) * nw
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

        return neurons

    NALG, NERF, NTANH = make_neurons(KIND_ALG), make_neurons(KIND_ERF), make_neurons(KIND_TANH)

    @njit
    def neurons(a, code, h, nrm, phi, A1, reg, lam_a, lam_w, xmax, j0, j1, out):
        """phi, a_j sigma'_j and the chunk's terms (output part, bound terms) into ``out``."""
        p = (P[code, 0], P[code, 1], P[code, 2], P[code, 3], P[code, 4], P[code, 5])
        cn = P[code, 6]
        kind = KIND_OF[code]
        if kind == KIND_ALG:
            NALG(a, h, nrm, phi, A1, p, cn, reg, lam_a, lam_w, xmax, j0, j1, out)
        elif kind == KIND_ERF:
            NERF(a, h, nrm, phi, A1, p, cn, reg, lam_a, lam_w, xmax, j0, j1, out)
        else:
            NTANH(a, h, nrm, phi, A1, p, cn, reg, lam_a, lam_w, xmax, j0, j1, out)

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
    def worker(w, n_workers, W, a, Wt, at, tnorm, code, tcode, noise, seed, step0, t0, t1, lrs, reg, lam_as,
               lam_ws, fw, losses):
        """Steps t0 .. t1-1 of the run (global step step0 + t); see the module docstring. ``tnorm``: the
        teacher's row norms. Returns (steps done from t0, outcome), outcome -1 for a worker that left."""
        xs, h, nrm, phi, A1, coef, gw, part, sync, status, _, times = fw
        mode = _sync.join(sync, n_workers)
        if mode == 0:
            return 0, -1
        m, d = W.shape
        nch = (m + CH - 1) // CH
        npair = (d + 2) // 2
        team = mode == _sync.TEAM
        nt = n_workers if team else 1
        bounds = np.empty(nt + 1, np.int64)  # worker k owns chunks bounds[k] .. bounds[k+1]-1
        for k in range(nt + 1):
            bounds[k] = k * nch // nt
        me = w if team else 0
        c0, c1 = bounds[me], bounds[me + 1]
        p0, p1 = me * npair // nt, (me + 1) * npair // nt
        writer = not team or w == 0
        cn = dneuron_dnorm(code)
        lite = reg == 0 and cn == zero  # then gw = 0 and nrm is only the guard's bound (rows_lite)
        nb = 0
        tot = np.empty(NPART, ft)  # the step's sums over all chunks, in chunk order

        s = step0 + t0
        fill(seed, s, xs[s % 3], p0, p1)
        fill(seed, s + 1, xs[(s + 1) % 3], p0, p1)
        if team:
            nb += 1
            _sync.arrive_and_wait(sync, n_workers * nb)
        y, xmax = label(xs[s % 3], d, Wt, at, tnorm, tcode, noise)
        for c in range(c0, c1):  # the forward pass: the row pass with gw = coef = 0 leaves W as it is
            j0, j1 = c * CH, min(c * CH + CH, m)
            for j in range(j0, j1):
                coef[j] = zero
                gw[j] = zero
            if lite:
                max_abs_rows(W, nrm, j0, j1)
                rows_lite(W, xs[s % 3], xs[s % 3], coef, h, nrm, zero, j0, j1)
            else:
                rows(W, xs[s % 3], xs[s % 3], coef, gw, h, nrm, j0, j1)
            neurons(a, code, h, nrm, phi, A1, reg, lam_as[t0], lam_ws[t0], xmax, j0, j1, part[s % 2, c])
        for t in range(t0, t1):
            s = step0 + t
            if team:
                nb += 1
                _sync.arrive_and_wait(sync, n_workers * nb)
                if t > t0:  # the split follows the workers' speed (it never changes a result)
                    _sync.rebalance(bounds, times[(t - 1) % 2], 1)
                    c0, c1 = bounds[me], bounds[me + 1]
            pt = part[s % 2]
            tot[:] = zero
            for c in range(nch):
                for k in range(NPART):
                    tot[k] += pt[c, k]
            f, sph, sra, g1, g0, snw, sa = tot[0], tot[1], tot[2], tot[3], tot[4], tot[5], tot[6]
            r = f - y
            loss = 0.5 * (np.float64(r) * r)
            if not finite(loss):
                if writer:
                    losses[t] = np.nan
                return t - t0, STOP
            ar = abs(r)
            lr = ft(lrs[t])
            bga = ar * sph + sra  # bounds on |g_a|, |g_W| entries
            bgw = ar * g1 + g0
            if not (bga < big and bgw < big and sa + lr * bga < big and snw + lr * bgw < big):
                if team:
                    return t - t0, NEED_EXACT
                if not exact_ok(W, xs[s % 3], a, nrm, phi, A1, cn, reg, lam_as[t], lam_ws[t], r, lr, m):
                    losses[t] = np.nan
                    return t - t0, STOP
            if writer:
                losses[t] = loss
            xn = xs[(s + 1) % 3]
            xmax_s = xmax
            y, xmax = label(xn, d, Wt, at, tnorm, tcode, noise)
            last = t + 1 == t1
            tick = _sync.cycles()
            for c in range(c0, c1):
                j0, j1 = c * CH, min(c * CH + CH, m)
                coefficients(a, nrm, phi, A1, coef, gw, cn, reg, lam_as[t], lam_ws[t], r, lr, j0, j1)
                if lite:
                    rows_lite(W, xs[s % 3], xn, coef, h, nrm, xmax_s, j0, j1)
                else:
                    rows(W, xs[s % 3], xn, coef, gw, h, nrm, j0, j1)
                if not last:
                    neurons(a, code, h, nrm, phi, A1, reg, lam_as[t + 1], lam_ws[t + 1], xmax, j0, j1,
                            part[(s + 1) % 2, c])
            times[t % 2, me] = _sync.cycles() - tick
            if not last:
                fill(seed, s + 2, xs[(s + 2) % 3], p0, p1)
        return t1 - t0, DONE

    @pnjit
    def team_run(n_workers, W, a, Wt, at, tnorm, code, tcode, noise, seed, step0, t0, t1, lrs, reg, lam_as,
                 lam_ws, fw, losses):
        status = fw[9]
        for w in prange(n_workers):
            done, outcome = worker(np.int64(w), n_workers, W, a, Wt, at, tnorm, code, tcode, noise, seed, step0, t0,
                                   t1, lrs, reg, lam_as, lam_ws, fw, losses)
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
                t += done
                if outcome != NEED_EXACT:
                    return t
                done, outcome = worker(0, 1, W, a, Wt, at, tnorm, code, tcode, noise, seed, step0, t, t + 1, lrs,
                                       reg, lam_as, lam_ws, fw, losses)
            else:
                done, outcome = worker(0, 1, W, a, Wt, at, tnorm, code, tcode, noise, seed, step0, t, S, lrs, reg,
                                       lam_as, lam_ws, fw, losses)
            t += done
            if outcome == STOP:
                return t
        return t

    parts = {"fill": fill, "label": label, "rows": rows, "neurons": neurons, "coefficients": coefficients,
             "worker": worker, "team_run": team_run}
    return run, parts


RUN32, PARTS32 = _make(TABLE32)
RUN64, PARTS64 = _make(TABLE64)
