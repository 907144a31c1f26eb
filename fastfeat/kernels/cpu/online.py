"""Online (one-pass) SGD: every step draws a fresh Gaussian batch inside the compiled kernel.

Random numbers (``fastfeat.math.random``, counter-based, the same functions the CUDA kernels use):
step ``s`` uses the stream ``key = stream_key(seed, s)``; sample ``k`` of the batch is
``x_k[i] = normal_keyed(key, k (d + 1) + i)`` for ``i < d`` and its label noise is
``xi_k = noise * normal_keyed(key, k (d + 1) + d)``. The label is ``y_k = f*(x_k) + xi_k`` with the
teacher ``f*`` (its own activation code). A step is

    r_k = f(x_k) - y_k,  L_B = 1/(2B) sum_k r_k^2
    g_a[j] = 1/B sum_k r_k phi(w_j, x_k)
    g_W[j] = sum_k c_kj x_k + cw_j w_j,   c_kj = (r_k / B) a_j sigma'(w_j . x_k),
    cw_j = a_j c_norm (1/B sum_k r_k) / |w_j|  (relu_centered's norm term)  + the regularizer's part

and ``W -= lr g_W``, ``a -= lr g_a``, with ``g_W`` never stored whole: each row is built in a
``d``-vector of its chunk and applied at once. No BLAS, no allocation per step.

Parallelism: the neurons are split into fixed chunks of ``NEURON_CHUNK``; the forward pass computes,
per chunk, ``w_j . x_k``, ``phi``, ``sigma'`` and the chunk's partial output ``sum_{j in chunk} a_j
phi_kj``; the partials are summed serially in chunk order, so the outputs, and hence the weights, are
bit-identical for any thread count. The update is parallel over the same chunks (each owns its rows).

Divergence guard (as in the other kernels: a step whose loss or gradient is not finite is refused and
returns NaN, leaving W, a unchanged): with ``xmax_k = max_i |x_k[i]|``,
``|g_W[j, i]| <= sum_k |c_kj| xmax_k + |cw_j| |w_j|``; when that bound is finite and below
``max_float / 4`` for every row (and ``g_a`` is finite) the gradient is finite; otherwise the rare slow
path computes every entry and checks it before anything is written.

Small problems (``B m d < PARALLEL_MIN_WORK``) run a build of the same code without ``prange``: the
fork/join of a parallel region costs more than the work there. The choice depends only on the sizes,
never on the thread count.

Batch 1 (the usual online SGD of the theory papers) takes another path, ``online_single``: blocks of
steps that read and write W once per block, run by a persistent team of threads with one barrier per
step instead of a parallel region per pass. ``step`` and ``run`` use it for batch 1; ``loss_grad``
(which writes no weights) uses the code above for every batch size.
"""
import math

import numpy as np
from numba import prange

from . import online_single as _single
from ._finite import finite, isnan
from ._jit import TABLE32, TABLE64, njit, pnjit
from ._rng import normal_keyed, normals, stream_key

NEURON_CHUNK = 32
#: below this many multiply-adds per step (B * m * d) the serial build is used
PARALLEL_MIN_WORK = 1 << 20


def workspace(batch, m, d, dtype):
    """Buffers for the online kernels (allocated once, reused every step). Returns the tuple
    ``(xb, yb, xmax, phi, dphi, part, rb, nrm, gab, cw, grow, single)``; ``single`` holds the buffers of
    the batch-1 path (``online_single``; empty arrays for other batch sizes)."""
    dtype = np.dtype(dtype)
    nch = (m + NEURON_CHUNK - 1) // NEURON_CHUNK
    return (
        np.empty((batch, d), dtype),     # the batch
        np.empty(batch, dtype),          # its labels
        np.empty(batch, dtype),          # max_i |x_k[i]|
        np.empty((batch, m), dtype),     # phi(w_j, x_k)
        np.empty((batch, m), dtype),     # sigma'(w_j . x_k), then c_kj
        np.empty((batch, nch), dtype),   # per-chunk partial outputs
        np.empty(batch, dtype),          # r_k / B
        np.zeros(m, dtype),              # |w_j| (only filled when needed)
        np.empty(m, dtype),              # g_a
        np.empty(m, dtype),              # cw_j
        np.empty((nch, d), dtype),       # one gradient row per chunk
        _single.workspace(m if batch == 1 else 0, d, dtype),
    )


def _make(T, parallel):
    jit = pnjit if parallel else njit
    ft = T.ftype
    zero = ft(0.0)
    one = ft(1.0)
    big = ft(np.finfo(ft).max / 4)
    neuron = T.neuron
    dneuron = T.dneuron
    dneuron_dnorm = T.dneuron_dnorm
    CH = NEURON_CHUNK
    run1 = _single.RUN32 if ft == np.float32 else _single.RUN64

    def draw(key, Wt, at, tcode, noise, xb, yb, xmax):
        """The batch of this step: x, the teacher's labels plus noise, max |x|."""
        B, d = xb.shape
        ms = Wt.shape[0]
        for k in prange(B):
            base = np.uint64(k) * np.uint64(d + 1)
            xk = xb[k]
            normals(key, base, xk)  # numbers base .. base + d - 1, one Box-Muller transform per pair
            mx = zero
            for i in range(d):
                mx = max(mx, abs(xk[i]))
            xmax[k] = mx
            f = zero
            for t in range(ms):
                z = zero
                s = zero
                for i in range(d):
                    z += Wt[t, i] * xb[k, i]
                    s += Wt[t, i] * Wt[t, i]
                f += at[t] * neuron(tcode, z, ft(math.sqrt(s)))
            yb[k] = f + ft(noise) * ft(normal_keyed(key, base + np.uint64(d)))

    draw_par = jit(draw)
    draw = njit(draw)

    @jit
    def forward(W, a, code, xb, need_norm, nrm, phi, dphi, part):
        m, d = W.shape
        B = xb.shape[0]
        nch = (m + CH - 1) // CH
        for c in prange(nch):
            j0 = c * CH
            j1 = min(j0 + CH, m)
            for k in range(B):
                part[k, c] = zero
            for j in range(j0, j1):
                z = zero
                nw = zero
                if need_norm:  # |w_j| rides along with the first sample's product
                    s = zero
                    for i in range(d):
                        z += W[j, i] * xb[0, i]
                        s += W[j, i] * W[j, i]
                    nw = ft(math.sqrt(s))
                    nrm[j] = nw
                else:
                    for i in range(d):
                        z += W[j, i] * xb[0, i]
                aj = a[j]
                for k in range(B):
                    if k > 0:
                        z = zero
                        for i in range(d):
                            z += W[j, i] * xb[k, i]
                    ph = neuron(code, z, nw)
                    phi[k, j] = ph
                    dphi[k, j] = dneuron(code, z)
                    part[k, c] += aj * ph

    @njit
    def coefficients(W, a, code, rb, R, xmax, phi, dphi, nrm, reg, lam_a, lam_w, gab, cw):
        """g_a, cw, and c_kj (into dphi); returns (g_a finite, the bound on |g_W| holds)."""
        m, d = W.shape
        B = rb.shape[0]
        cn = dneuron_dnorm(code)
        ga_ok = True
        bound_ok = True
        for j in range(m):
            aj = a[j]
            nw = nrm[j]
            g = zero
            bound = zero
            for k in range(B):
                g += rb[k] * phi[k, j]
                ck = rb[k] * aj * dphi[k, j]
                dphi[k, j] = ck
                bound += abs(ck) * xmax[k]
            c = zero
            if cn != zero and nw > zero:
                c = aj * ft(cn * R / nw)
            if reg == 1:
                g += ft(lam_a) * aj
                c += ft(lam_w)
            elif reg == 2 and aj != zero and nw > zero:
                g += ft(lam_w) * nw * (one if aj > zero else -one)
                c += ft(lam_w) * abs(aj) / nw
            gab[j] = g
            cw[j] = c
            bound += abs(c) * nw
            if not finite(g):
                ga_ok = False
            if not bound < big:  # also False for NaN
                bound_ok = False
        return ga_ok, bound_ok

    @jit
    def apply(W, a, xb, dphi, gab, cw, grow, lr, gW, ga, write_grad):
        """W -= lr g_W, a -= lr g_a row by row; or, when ``write_grad``, g_W, g_a into gW, ga.
        g_W[j] = cw_j w_j + sum_k c_kj x_k is accumulated in that order."""
        m, d = W.shape
        B = xb.shape[0]
        nch = (m + CH - 1) // CH
        lr_ = ft(lr)
        for c in prange(nch):
            g = grow[c]
            for j in range(c * CH, min(c * CH + CH, m)):
                cj = cw[j]
                c0 = dphi[0, j]
                if B == 1 and not write_grad:
                    a[j] -= lr_ * gab[j]
                    for i in range(d):
                        W[j, i] -= lr_ * (cj * W[j, i] + c0 * xb[0, i])
                    continue
                for i in range(d):
                    g[i] = cj * W[j, i] + c0 * xb[0, i]
                for k in range(1, B):
                    ck = dphi[k, j]
                    for i in range(d):
                        g[i] += ck * xb[k, i]
                if write_grad:
                    ga[j] = gab[j]
                    for i in range(d):
                        gW[j, i] = g[i]
                else:
                    a[j] -= lr_ * gab[j]
                    for i in range(d):
                        W[j, i] -= lr_ * g[i]

    @njit
    def all_finite(W, xb, dphi, cw):
        """The slow exact check of every g_W entry (only when the bound failed)."""
        m, d = W.shape
        B = xb.shape[0]
        for j in range(m):
            for i in range(d):
                g = cw[j] * W[j, i]
                for k in range(B):
                    g += dphi[k, j] * xb[k, i]
                if not finite(g):
                    return False
        return True

    @njit
    def batch_grad(W, a, Wt, at, code, tcode, noise, seed, step, reg, lam_a, lam_w, ws):
        """Draw the batch of ``step``, forward, residuals, coefficients. Returns (loss, ok)."""
        xb, yb, xmax, phi, dphi, part, rb, nrm, gab, cw, grow, _ = ws
        B = xb.shape[0]
        key = stream_key(seed, step)
        if parallel and B >= 4:
            draw_par(key, Wt, at, tcode, noise, xb, yb, xmax)
        else:
            draw(key, Wt, at, tcode, noise, xb, yb, xmax)
        need_norm = reg != 0 or dneuron_dnorm(code) != zero
        forward(W, a, code, xb, need_norm, nrm, phi, dphi, part)
        loss = 0.0
        R = 0.0
        inv_b = ft(1.0 / B)
        for k in range(B):
            f = zero
            for c in range(part.shape[1]):
                f += part[k, c]
            r = f - yb[k]
            loss += np.float64(r) * r
            rb[k] = r * inv_b
            R += rb[k]
        loss = 0.5 * loss / B
        ga_ok, bound_ok = coefficients(W, a, code, rb, R, xmax, phi, dphi, nrm, reg, lam_a, lam_w, gab, cw)
        ok = ga_ok and finite(loss)
        if ok and not bound_ok:
            ok = all_finite(W, xb, dphi, cw)
        return loss, ok

    @njit(inline="always")
    def loss_grad(W, a, Wt, at, code, tcode, noise, seed, step, gW, ga, ws):
        """The minibatch loss and gradient (unregularized) of global step ``step``: the batch that
        ``step``/``run`` use at that step. Fills gW, ga; never writes W, a. Returns the loss."""
        loss, ok = batch_grad(W, a, Wt, at, code, tcode, noise, seed, step, 0, 0.0, 0.0, ws)
        apply(W, a, ws[0], ws[4], ws[8], ws[9], ws[10], 0.0, gW, ga, True)
        return loss

    @njit(inline="always")
    def step(W, a, Wt, at, code, tcode, noise, seed, step_, lr, reg, lam_a, lam_w, ws):
        """One SGD step on the fresh batch of global step ``step_``; returns the batch loss before it
        (float64), or NaN when the loss or the gradient is not finite (W, a are then unchanged).
        Batch 1 runs the blocked path (``online_single``) for one step."""
        if ws[0].shape[0] == 1:
            sc = ws[11][10]
            sc[0, 0] = lr
            sc[1, 0] = lam_a
            sc[2, 0] = lam_w
            done = run1(W, a, Wt, at, code, tcode, noise, seed, step_, sc[0], reg, sc[1], sc[2], ws[11], sc[3])
            return sc[3, 0] if done == 1 else np.nan
        loss, ok = batch_grad(W, a, Wt, at, code, tcode, noise, seed, step_, reg, lam_a, lam_w, ws)
        if not ok:
            return np.nan
        apply(W, a, ws[0], ws[4], ws[8], ws[9], ws[10], lr, W, a, False)
        return loss

    @njit(inline="always")
    def run(W, a, Wt, at, code, tcode, noise, seed, step0, lrs, reg, lam_as, lam_ws, ws, losses):
        """Steps ``step0 .. step0 + len(lrs) - 1``; losses[s] gets the batch loss before step s.
        Returns the number of steps done (fewer when a non-finite loss or gradient stopped it).
        Batch 1 runs the blocked path (``online_single``)."""
        if ws[0].shape[0] == 1:
            return run1(W, a, Wt, at, code, tcode, noise, seed, step0, lrs, reg, lam_as, lam_ws, ws[11], losses)
        for s in range(lrs.shape[0]):
            loss = step(W, a, Wt, at, code, tcode, noise, seed, step0 + s, lrs[s], reg, lam_as[s], lam_ws[s], ws)
            losses[s] = loss
            if isnan(loss):
                return s
        return lrs.shape[0]

    @njit
    def entry(W, a, Wt, at, code, tcode, noise, seed, step0, lrs, reg, lam_as, lam_ws, gW, ga, ws, losses, mode):
        """What the objective calls (one compilation, see ``empirical.entry``): ``mode`` 0 the
        minibatch gradient of step ``step0`` into gW, ga and its loss into losses[0]; 1 ``run``."""
        if mode == 0:
            losses[0] = loss_grad(W, a, Wt, at, code, tcode, noise, seed, step0, gW, ga, ws)
            return 1
        return run(W, a, Wt, at, code, tcode, noise, seed, step0, lrs, reg, lam_as, lam_ws, ws, losses)

    return loss_grad, step, run, entry


def use_parallel(batch, m, d):
    """Whether the ``prange`` build runs (a function of the sizes only, never of the thread count)."""
    return batch * m * d >= PARALLEL_MIN_WORK


#: KERNELS[(parallel, dtype)] = (loss_grad, step, run, entry); compiled lazily on first call
KERNELS = {(p, np.dtype(t)): _make(T, p) for p in (False, True) for t, T in ((np.float32, TABLE32),
                                                                           (np.float64, TABLE64))}


def kernels(batch, m, d, dtype):
    """(loss_grad, step, run, entry) for these sizes and float ``dtype``."""
    return KERNELS[(use_parallel(batch, m, d), np.dtype(dtype))]


def _sized(dtype):
    """njit kernels that pick the serial or parallel build from the sizes at run time."""
    (lg0, st0, rn0, _), (lg1, st1, rn1, _) = KERNELS[(False, np.dtype(dtype))], KERNELS[(True, np.dtype(dtype))]
    pmin = PARALLEL_MIN_WORK

    @njit
    def loss_grad(W, a, Wt, at, code, tcode, noise, seed, step, gW, ga, ws):
        if ws[0].shape[0] * W.shape[0] * W.shape[1] >= pmin:
            return lg1(W, a, Wt, at, code, tcode, noise, seed, step, gW, ga, ws)
        return lg0(W, a, Wt, at, code, tcode, noise, seed, step, gW, ga, ws)

    @njit
    def step(W, a, Wt, at, code, tcode, noise, seed, step_, lr, reg, lam_a, lam_w, ws):
        if ws[0].shape[0] * W.shape[0] * W.shape[1] >= pmin:
            return st1(W, a, Wt, at, code, tcode, noise, seed, step_, lr, reg, lam_a, lam_w, ws)
        return st0(W, a, Wt, at, code, tcode, noise, seed, step_, lr, reg, lam_a, lam_w, ws)

    @njit
    def run(W, a, Wt, at, code, tcode, noise, seed, step0, lrs, reg, lam_as, lam_ws, ws, losses):
        if ws[0].shape[0] * W.shape[0] * W.shape[1] >= pmin:
            return rn1(W, a, Wt, at, code, tcode, noise, seed, step0, lrs, reg, lam_as, lam_ws, ws, losses)
        return rn0(W, a, Wt, at, code, tcode, noise, seed, step0, lrs, reg, lam_as, lam_ws, ws, losses)

    return loss_grad, step, run


LOSS_GRAD32, STEP32, RUN32 = _sized(np.float32)
LOSS_GRAD64, STEP64, RUN64 = _sized(np.float64)
