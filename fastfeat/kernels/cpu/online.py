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

and ``W -= lr g_W``, ``a -= lr_a g_a`` (``lr_a``: the step size of a, by default lr), with ``g_W`` never
stored whole: each row is built in a
``d``-vector of its chunk and applied at once. No BLAS, no allocation per step.

Parallelism: the neurons are split into fixed chunks of ``NEURON_CHUNK``; the forward pass computes,
per chunk, ``w_j . x_k``, ``phi``, ``sigma'`` and the chunk's partial output ``sum_{j in chunk} a_j
phi_kj``; the partials are summed serially in chunk order, so the outputs, and hence the weights, are
bit-identical for any thread count. The update is parallel over the same chunks (each owns its rows).

Divergence guard (as in the other kernels: a step whose loss or gradient is not finite, or after which
a weight could reach ``guard_limit`` = ``max_float / 4``, is refused and returns NaN, leaving W, a
unchanged): with ``xmax_k = max_i |x_k[i]|`` and ``wabs_j = sum_i |w_j[i]|`` (taken in the forward pass;
a sum, which vectorizes, where a max would not),
``|g_W[j, i]| <= b_j = sum_k |c_kj| xmax_k + |cw_j| |w_j|``; when ``wabs_j + lr b_j`` and
``|a_j| + lr_a |g_a[j]|`` are below the limit for every row, every updated weight is; otherwise the rare
slow path computes every entry of the gradient and checks each weight with it (``fits``: ``|w| + lr |g|
< limit``, the rule of the other kernels) before anything is written.

Small problems (``B m d < PARALLEL_MIN_WORK``) run a build of the same code without ``prange``: the
fork/join of a parallel region costs more than the work there. The choice depends only on the sizes,
never on the thread count. The two builds are made by one factory (``_build(parallel)``). The module-level
kernels, generic in the float type and cached on disk: the objective's, which compile only what they
run: ``loss_grad_serial`` / ``loss_grad_parallel``, ``run_serial`` / ``run_parallel`` (batch > 1) and
``run_single`` (batch 1), picked by ``kernels_for``; and the public ``loss_grad``, ``step``, ``run`` (any
sizes), which check their arguments, bring the step sizes to the (2, n) form the objective's kernels take
and call the one the sizes select: they compile only themselves and link the objective's code.

Batch 1 (the usual online SGD of the theory papers) takes another path, ``online_single``: blocks of
steps that read and write W once per block, run by a persistent team of threads with one barrier per
step instead of a parallel region per pass. ``step`` and ``run`` use it for batch 1 (their argument
``isa``, default the CPU's, picks its register-block variant); ``loss_grad`` (which writes no weights)
uses the code above for every batch size.
"""
import math
from collections import namedtuple

import numpy as np
from numba import prange
from numba.extending import overload

from ...math.activations import NAMES as _NAMES
from ...math.regularizer import REG_NONE
from . import online_single as _single
from ._finite import finite, isnan
from ._jit import HOST_ISA, isa_value, njit, pnjit
from ._rng import normal_keyed, normals, stream_key
from .scalar import as_pairs, dneuron, dneuron_dnorm, fits, guard_limit, like, lr_at, lr_count, lr_pair, neuron, reg_terms

NEURON_CHUNK = 32
#: below this many multiply-adds per step (B * m * d) the serial build is used
PARALLEL_MIN_WORK = 1 << 20

#: the buffers of the online kernels (``workspace``)
OnlineWorkspace = namedtuple("OnlineWorkspace", "xb yb xmax phi dphi part rb nrm wabs gab cw grow single")


def workspace(batch, m, d, dtype):
    """Buffers for the online kernels (allocated once, reused every step), an ``OnlineWorkspace``: ``xb``
    the batch (B, d), ``yb`` its labels, ``xmax`` max_i |x_k[i]|, ``phi`` phi(w_j, x_k) (B, m), ``dphi``
    sigma'(w_j . x_k), then c_kj, ``part`` the per-chunk partial outputs, ``rb`` r_k / B, ``nrm`` |w_j|
    (filled only when needed), ``wabs`` sum_i |w_j[i]|, ``gab`` g_a, ``cw`` cw_j, ``grow`` one gradient
    row per chunk; ``single`` the buffers of the batch-1 path (``online_single.workspace``; empty arrays
    for other batch sizes)."""
    dtype = np.dtype(dtype)
    nch = (m + NEURON_CHUNK - 1) // NEURON_CHUNK
    return OnlineWorkspace(
        xb=np.empty((batch, d), dtype), yb=np.empty(batch, dtype), xmax=np.empty(batch, dtype),
        phi=np.empty((batch, m), dtype), dphi=np.empty((batch, m), dtype), part=np.empty((batch, nch), dtype),
        rb=np.empty(batch, dtype), nrm=np.zeros(m, dtype), wabs=np.empty(m, dtype), gab=np.empty(m, dtype),
        cw=np.empty(m, dtype), grow=np.empty((nch, d), dtype), single=_single.workspace(m if batch == 1 else 0, d, dtype))


@njit
def coefficients(W, a, code, rb, R, xmax, phi, dphi, nrm, wabs, reg, lam_a, lam_w, gab, cw, lr):
    """g_a, cw, and c_kj (into dphi); returns (g_a finite, the bound on the updated weights holds)."""
    m, d = W.shape
    B = rb.shape[0]
    zero = like(W, 0.0)
    big = guard_limit(W)
    lr_w, lr_a = lr_pair(lr)
    lw_ = like(W, lr_w)
    la_ = like(W, lr_a)
    cn = dneuron_dnorm(code, zero)
    la = like(W, lam_a)
    lw = like(W, lam_w)
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
            c = aj * like(W, cn * R / nw)
        r_a, r_w = reg_terms(reg, aj, nw, la, lw, zero)
        g += r_a
        c += r_w
        gab[j] = g
        cw[j] = c
        bound += abs(c) * nw
        if not finite(g):
            ga_ok = False
        if not (fits(wabs[j], bound, lw_, big) and fits(aj, g, la_, big)):  # also False for NaN
            bound_ok = False
    return ga_ok, bound_ok


@njit
def all_finite(W, a, xb, dphi, gab, cw, lr):
    """The slow check with the exact gradient (only when the bound failed): the guard's test (``fits``) for
    every weight and its gradient entry."""
    m, d = W.shape
    B = xb.shape[0]
    lr_w, lr_a = lr_pair(lr)
    lw_ = like(W, lr_w)
    la_ = like(W, lr_a)
    big = guard_limit(W)
    for j in range(m):
        if not fits(a[j], gab[j], la_, big):
            return False
        for i in range(d):
            g = cw[j] * W[j, i]
            for k in range(B):
                g += dphi[k, j] * xb[k, i]
            if not fits(W[j, i], g, lw_, big):
                return False
    return True


def _build(parallel):
    """The kernels of one build: with ``prange`` over samples and neuron chunks (``parallel``), or without.
    Returns (loss_grad, run)."""
    jit = pnjit if parallel else njit
    CH = NEURON_CHUNK

    def draw(key, Wt, at, tcode, noise, xb, yb, xmax):
        """The batch of this step: x, the teacher's labels plus noise, max |x|."""
        B, d = xb.shape
        ms = Wt.shape[0]
        zero = like(xb, 0.0)
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
                f += at[t] * neuron(tcode, z, like(xb, math.sqrt(s)))
            yb[k] = f + like(xb, noise) * like(xb, normal_keyed(key, base + np.uint64(d)))

    draw_par = jit(draw)
    draw = njit(draw)

    @jit
    def forward(W, a, code, xb, need_norm, nrm, wabs, phi, dphi, part):
        m, d = W.shape
        B = xb.shape[0]
        nch = (m + CH - 1) // CH
        zero = like(W, 0.0)
        for c in prange(nch):
            j0 = c * CH
            j1 = min(j0 + CH, m)
            for k in range(B):
                part[k, c] = zero
            for j in range(j0, j1):
                z = zero
                nw = zero
                mx = zero
                if need_norm:  # |w_j| and sum_i |w_j[i]| ride along with the first sample's product
                    s = zero
                    for i in range(d):
                        z += W[j, i] * xb[0, i]
                        s += W[j, i] * W[j, i]
                        mx += abs(W[j, i])
                    nw = like(W, math.sqrt(s))
                    nrm[j] = nw
                else:
                    for i in range(d):
                        z += W[j, i] * xb[0, i]
                        mx += abs(W[j, i])
                wabs[j] = mx
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

    @jit
    def apply(W, a, xb, dphi, gab, cw, grow, lr, gW, ga, write_grad):
        """W -= lr_W g_W, a -= lr_a g_a row by row (``lr``: one step size or the pair; a layer whose step
        size is 0 is not touched); or, when ``write_grad``, g_W, g_a into gW, ga. ``write_grad`` is a
        run-time bool (``np.bool_``, not a literal: one compilation for both; it is tested per row).
        g_W[j] = cw_j w_j + sum_k c_kj x_k is accumulated in that order."""
        m, d = W.shape
        B = xb.shape[0]
        nch = (m + CH - 1) // CH
        lr_w, lr_a = lr_pair(lr)
        lw_ = like(W, lr_w)
        la_ = like(W, lr_a)
        zero = like(W, 0.0)
        for c in prange(nch):
            g = grow[c]
            for j in range(c * CH, min(c * CH + CH, m)):
                cj = cw[j]
                c0 = dphi[0, j]
                if not write_grad:
                    if la_ != zero:
                        a[j] -= la_ * gab[j]
                    if lw_ == zero:
                        continue
                if B == 1 and not write_grad:
                    for i in range(d):
                        W[j, i] -= lw_ * (cj * W[j, i] + c0 * xb[0, i])
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
                    for i in range(d):
                        W[j, i] -= lw_ * g[i]

    @njit
    def batch_grad(W, a, Wt, at, code, tcode, noise, seed, step, reg, lam_a, lam_w, ws, lr):
        """Draw the batch of ``step``, forward, residuals, coefficients. Returns (loss, ok): ok when the
        step with rate ``lr`` may be taken (the divergence guard)."""
        xb, yb, xmax, phi, dphi, part, rb = ws.xb, ws.yb, ws.xmax, ws.phi, ws.dphi, ws.part, ws.rb
        B = xb.shape[0]
        zero = like(W, 0.0)
        key = stream_key(seed, step)
        if parallel and B >= 4:
            draw_par(key, Wt, at, tcode, noise, xb, yb, xmax)
        else:
            draw(key, Wt, at, tcode, noise, xb, yb, xmax)
        need_norm = reg != REG_NONE or dneuron_dnorm(code, zero) != zero
        forward(W, a, code, xb, need_norm, ws.nrm, ws.wabs, phi, dphi, part)
        loss = 0.0
        R = 0.0
        inv_b = like(W, 1.0 / B)
        for k in range(B):
            f = zero
            for c in range(part.shape[1]):
                f += part[k, c]
            r = f - yb[k]
            loss += np.float64(r) * r
            rb[k] = r * inv_b
            R += rb[k]
        loss = 0.5 * loss / B
        ga_ok, bound_ok = coefficients(W, a, code, rb, R, xmax, phi, dphi, ws.nrm, ws.wabs, reg, lam_a, lam_w,
                                       ws.gab, ws.cw, lr)
        ok = ga_ok and finite(loss)
        if ok and not bound_ok:
            ok = all_finite(W, a, xb, dphi, ws.gab, ws.cw, lr)
        return loss, ok

    @njit(inline="always")
    def loss_grad(W, a, Wt, at, code, tcode, noise, seed, step, gW, ga, ws):
        """The minibatch loss and gradient (unregularized) of global step ``step``: the batch that
        ``step``/``run`` use at that step. Fills gW, ga; never writes W, a. Returns the loss."""
        loss, ok = batch_grad(W, a, Wt, at, code, tcode, noise, seed, step, np.int64(REG_NONE), 0.0, 0.0, ws,
                              (0.0, 0.0))
        apply(W, a, ws.xb, ws.dphi, ws.gab, ws.cw, ws.grow, (0.0, 0.0), gW, ga, np.bool_(True))
        return loss

    @njit(inline="always")
    def step(W, a, Wt, at, code, tcode, noise, seed, step_, lr, reg, lam_a, lam_w, ws):
        """One SGD step on the fresh batch of global step ``step_`` by the batch path (any batch size);
        returns the batch loss before it (float64), or NaN when the loss or the gradient is not finite or
        an updated weight would reach ``guard_limit`` (W, a are then unchanged)."""
        loss, ok = batch_grad(W, a, Wt, at, code, tcode, noise, seed, step_, reg, lam_a, lam_w, ws, lr)
        if not ok:
            return np.nan
        apply(W, a, ws.xb, ws.dphi, ws.gab, ws.cw, ws.grow, lr, W, a, np.bool_(False))
        return loss

    @njit(inline="always")
    def run(W, a, Wt, at, code, tcode, noise, seed, step0, lrs, reg, lam_as, lam_ws, ws, losses):
        """Steps ``step0 .. step0 + len(lrs) - 1`` by the batch path; losses[s] gets the batch loss before
        step s. Returns the number of steps done (fewer when a non-finite loss or gradient stopped it)."""
        n = lr_count(lrs)
        for s in range(n):
            loss = step(W, a, Wt, at, code, tcode, noise, seed, step0 + s, lr_at(lrs, s), reg, lam_as[s], lam_ws[s],
                        ws)
            losses[s] = loss
            if isnan(loss):
                return s
        return n

    return loss_grad, run


def use_parallel(batch, m, d):
    """Whether the ``prange`` build runs (a function of the sizes only, never of the thread count)."""
    return batch * m * d >= PARALLEL_MIN_WORK


_lg0, _rn0 = _build(False)
_lg1, _rn1 = _build(True)


# the objective's kernels: one build each, so a run compiles only what it uses


@njit
def loss_grad_serial(W, a, Wt, at, code, tcode, noise, seed, step, gW, ga, ws):
    """``loss_grad`` by the serial build (sizes below ``PARALLEL_MIN_WORK``)."""
    return _lg0(W, a, Wt, at, code, tcode, noise, seed, step, gW, ga, ws)


@njit
def loss_grad_parallel(W, a, Wt, at, code, tcode, noise, seed, step, gW, ga, ws):
    """``loss_grad`` by the ``prange`` build."""
    return _lg1(W, a, Wt, at, code, tcode, noise, seed, step, gW, ga, ws)


@njit
def run_serial(W, a, Wt, at, code, tcode, noise, seed, step0, lrs, reg, lam_as, lam_ws, ws, losses):
    """``run`` by the serial build of the batch path (batch > 1, sizes below ``PARALLEL_MIN_WORK``)."""
    return _rn0(W, a, Wt, at, code, tcode, noise, seed, step0, lrs, reg, lam_as, lam_ws, ws, losses)


@njit
def run_parallel(W, a, Wt, at, code, tcode, noise, seed, step0, lrs, reg, lam_as, lam_ws, ws, losses):
    """``run`` by the ``prange`` build of the batch path (batch > 1)."""
    return _rn1(W, a, Wt, at, code, tcode, noise, seed, step0, lrs, reg, lam_as, lam_ws, ws, losses)


@njit
def run_single(W, a, Wt, at, code, tcode, noise, seed, step0, lrs, reg, lam_as, lam_ws, ws, losses, isa=HOST_ISA):
    """``run`` by the blocked batch-1 path (``online_single.run``; ``ws`` built for batch 1)."""
    return _single.run(W, a, Wt, at, code, tcode, noise, seed, step0, lrs, reg, lam_as, lam_ws, ws.single, losses,
                       isa)


def kernels_for(batch, m, d):
    """(loss_grad, run) for the objective: the build its sizes select, and the blocked path for batch 1.
    ``loss_grad(W, a, Wt, at, code, tcode, noise, seed, step, gW, ga, ws)``;
    ``run(W, a, Wt, at, code, tcode, noise, seed, step0, lrs, reg, lam_as, lam_ws, ws, losses)``."""
    par = use_parallel(batch, m, d)
    run = run_single if batch == 1 else (run_parallel if par else run_serial)
    return (loss_grad_parallel if par else loss_grad_serial), run


# the public kernels (``fastfeat.kernels``): any sizes; they pick the build when they run, so their first
# call compiles both builds (and, for step and run, the blocked batch-1 path)


#: the number of activation codes (0 .. N_ACTIVATIONS - 1)
N_ACTIVATIONS = len(_NAMES)


@njit
def check_args(W, a, Wt, at, code, tcode, ws):
    """ValueError unless the arguments of a public online kernel fit together (the kernels index their
    buffers without bounds checks): shapes, activation codes, and a workspace made for these sizes."""
    m, d = W.shape
    ms = Wt.shape[0]
    if a.shape[0] != m or Wt.shape[1] != d or at.shape[0] != ms:
        raise ValueError("online kernel: W (m, d), a (m,), Wt (m*, d), at (m*,) do not fit together")
    if code < 0 or code >= N_ACTIVATIONS or tcode < 0 or tcode >= N_ACTIVATIONS:
        raise ValueError("online kernel: an activation code is not one of ff.kernels.ACTIVATION_CODES")
    B = ws.xb.shape[0]
    nch = (m + NEURON_CHUNK - 1) // NEURON_CHUNK
    if (B < 1 or ws.xb.shape[1] != d or ws.phi.shape[1] != m or ws.dphi.shape[1] != m or ws.nrm.shape[0] != m
            or ws.grow.shape[1] != d or ws.part.shape[1] < nch or ws.wabs.shape[0] != m):
        raise ValueError("online kernel: the workspace was made for other sizes: use online_workspace(batch, m, "
                         "d, dtype) of these arrays")
    if B == 1 and (ws.single.h.shape[0] < m or ws.single.x.shape[1] < d + 1 or ws.single.E.shape[1] < m):
        raise ValueError("online kernel: the batch-1 workspace was made for other sizes")


def _single_call(W, a, Wt, at, code, tcode, noise, seed, step0, lrs, reg, lam_as, lam_ws, ws, losses, isa):
    """``run_single`` with the batch-1 variant ``isa``."""
    return run_single(W, a, Wt, at, code, tcode, noise, seed, step0, lrs, reg, lam_as, lam_ws, ws, losses, isa)


@overload(_single_call, prefer_literal=True, jit_options={"nogil": True})
def _single_call_ov(W, a, Wt, at, code, tcode, noise, seed, step0, lrs, reg, lam_as, lam_ws, ws, losses, isa):
    # the default variant (an omitted isa, which the body sees as its literal, or the literal HOST_ISA) calls
    # run_single without it, as the objective does from Python: both find one compilation
    if isa_value(isa) == HOST_ISA:
        def impl(W, a, Wt, at, code, tcode, noise, seed, step0, lrs, reg, lam_as, lam_ws, ws, losses, isa):
            return run_single(W, a, Wt, at, code, tcode, noise, seed, step0, lrs, reg, lam_as, lam_ws, ws, losses)
        return impl
    return _single_call


@njit(inline="always")
def _run_any(W, a, Wt, at, code, tcode, noise, seed, step0, lrs, reg, lam_as, lam_ws, ws, losses, isa):
    """The objective's run kernel for these sizes (``kernels_for``), called with (2, n) step sizes and the
    batch-1 variant ``isa``."""
    if ws.xb.shape[0] == 1:
        return _single_call(W, a, Wt, at, code, tcode, noise, seed, step0, lrs, reg, lam_as, lam_ws, ws, losses, isa)
    if ws.xb.shape[0] * W.shape[0] * W.shape[1] >= PARALLEL_MIN_WORK:
        return run_parallel(W, a, Wt, at, code, tcode, noise, seed, step0, lrs, reg, lam_as, lam_ws, ws, losses)
    return run_serial(W, a, Wt, at, code, tcode, noise, seed, step0, lrs, reg, lam_as, lam_ws, ws, losses)


# The public kernels check their arguments, bring the step sizes to the (2, n) form and call the
# objective's kernels above: one compilation of the algorithm serves both, and the public entry points
# compile (or load) only themselves and link the rest.

@njit
def loss_grad(W, a, Wt, at, code, tcode, noise, seed, step, gW, ga, ws):
    """The unregularized minibatch loss and gradient of global step ``step`` into gW, ga (W, a unchanged);
    returns the loss."""
    check_args(W, a, Wt, at, code, tcode, ws)
    if gW.shape[0] != W.shape[0] or gW.shape[1] != W.shape[1] or ga.shape[0] != W.shape[0]:
        raise ValueError("online kernel: gW and ga must have the shapes of W and a")
    if ws.xb.shape[0] * W.shape[0] * W.shape[1] >= PARALLEL_MIN_WORK:
        return loss_grad_parallel(W, a, Wt, at, code, tcode, noise, seed, step, gW, ga, ws)
    return loss_grad_serial(W, a, Wt, at, code, tcode, noise, seed, step, gW, ga, ws)


@njit
def step(W, a, Wt, at, code, tcode, noise, seed, step_, lr, reg, lam_a, lam_w, ws, isa=HOST_ISA):
    """One SGD step on the fresh batch of global step ``step_``; returns the batch loss before it (float64),
    or NaN when the loss or the gradient is not finite (W, a are then unchanged). A run of one step: batch
    1 takes the blocked path (``online_single``) with register-block variant ``isa``, and its arguments go
    through the workspace's ``single.lr1`` and ``single.scratch``, so nothing is allocated."""
    check_args(W, a, Wt, at, code, tcode, ws)
    fw = ws.single
    sc = fw.scratch
    lr1 = fw.lr1
    lr1[0, 0], lr1[1, 0] = lr_pair(lr)
    sc[0, 0] = lam_a
    sc[1, 0] = lam_w
    done = _run_any(W, a, Wt, at, code, tcode, noise, seed, step_, lr1, reg, sc[0], sc[1], ws, sc[2], isa)
    return sc[2, 0] if done == 1 else np.nan


@njit
def run(W, a, Wt, at, code, tcode, noise, seed, step0, lrs, reg, lam_as, lam_ws, ws, losses, isa=HOST_ISA):
    """Steps ``step0 .. step0 + len(lrs) - 1``; losses[s] gets the batch loss before step s. Returns the
    number of steps done (fewer when a non-finite loss or gradient stopped it). Batch 1 runs the blocked
    path (``online_single``), register-block variant ``isa``. Step sizes of shape (n,) are copied into the
    (2, n) form once per call."""
    check_args(W, a, Wt, at, code, tcode, ws)
    if losses.shape[0] < lr_count(lrs) or lam_as.shape[0] < lr_count(lrs) or lam_ws.shape[0] < lr_count(lrs):
        raise ValueError("online kernel: losses, lam_as and lam_ws need an entry per step")
    return _run_any(W, a, Wt, at, code, tcode, noise, seed, step0, as_pairs(lrs), reg, lam_as, lam_ws, ws, losses,
                    isa)
