"""Online SGD with batch 1: blocks of ``BLOCK`` steps, run by a persistent team of threads.

A step is ``m d`` multiply-adds for the product ``h_j = w_j . x_s`` and as many for the rank-one update
``w_j <- alpha_j w_j - c_j x_s`` (``c_j = lr r a_j sigma'(h_j)``, ``alpha_j = 1 - lr cw_j``, ``lr`` the step
size of W, ``a`` stepping with its own ``lr_a``; ``cw_j`` relu_centered's norm term plus the regularizer's,
see ``online``). Done step by step, W crosses
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
``sum_j |a_j| + lr_a B_a`` (``nrm_j``: ``|w_j|`` or the bound); the sums are over all chunks and carry NaN
through. When the four bounds are below ``max_float / 4`` the step is taken. Otherwise the block's
updates so far are applied to W, and if the loss is finite ``exact_step`` checks every entry of the
gradient and of the new weights on one thread and takes the step or refuses it; the team then starts
again. So a refused step leaves W, a as they were, and an accepted one never makes them overflow.

Sample layout (the same numbers as ``online`` draws for batch 1): ``x_s[i] = normal(key_s, i)`` for
``i < d``, and the label noise is ``noise * normal(key_s, d)``; numbers ``2p`` and ``2p + 1`` are one
Box-Muller pair (``fastfeat.math.random``).

Machine-specific code: the row update and the products (``regblocks``) and ``products_at`` keep register
blocks sized for the vector registers of an instruction-set variant, ``isa`` (``_jit.AVX512``: 32 registers of 64 bytes,
four rows by four vectors; ``_jit.AVX2``: 16 of 32, where those blocks would spill, so the update and the
products take the row kernels ``update_rows`` and ``dots_pairs``). The variant is an argument of
``run`` (default ``_jit.HOST_ISA``, the CPU's), a compile-time constant inside: only the variant asked for
is compiled, and both compile and give the same results to rounding on any x86 CPU (LLVM splits vectors
wider than the target's), so both are tested everywhere.

Every function is module-level and generic in the float type (numba compiles one build per dtype and
caches it on disk). The sample, its label, the neuron pass (built per activation kind by a small
factory) and the step taken one at a time are in ``online_exact``.
"""
import math
from collections import namedtuple

import numba
import numpy as np
from numba import prange, types
from numba.extending import overload

from ...math.regularizer import NEEDS_NORM, REG_NONE
from . import _sync
from ._finite import finite
from ._jit import (AVX2, AVX512, FASTMATH, HOST_ISA, aligned, isa_value, lanes, local_vectors, njit, pnjit,
                   wide_vectors)
from .online_exact import CHUNK, NPART, PART_STRIDE, exact_step, fill, neuron_step, neurons
from .regblocks import _dots, _update
from .scalar import dneuron_dnorm, fits, guard_limit, like, lr_at, lr_count, neuron

#: rows per pass of the blocked scheme's row work (their rows stay in L1 between its two loops)
ROWS = 32
#: ``FASTMATH`` less ``reassoc``: for loops whose sums must stay in order (see ``products_at``)
ORDERED = FASTMATH - {"reassoc"}
#: below this many weights (m d) a run stays on the calling thread
TEAM_MIN_WEIGHTS = 1 << 14
#: run outcomes
DONE, STOP, NEED_EXACT = 0, 1, 2
#: steps per block of the blocked scheme (a multiple of 4: samples are handled in groups of 4)
BLOCK = 20
#: what the blocked scheme tracks per row: LITE (no regularizer, no norm term: A_j = 1, a bound on
#: max_i |w_ij|), DECAY (a regularizer whose terms need no |w_j| (weight decay), no norm term: a bound on
#: max_i |w_ij|), FULL (|w_j|^2, needed by the path norm and relu_centered's norm term)
LITE, DECAY, FULL = 0, 1, 2

_OPTS = {"fastmath": FASTMATH, "error_model": "numpy", "nogil": True}

#: the batch-1 buffers (``workspace``)
SingleWorkspace = namedtuple("SingleWorkspace", "x h nrm phi A1 coef gw part sync status scratch lr1 "
                                                "X E C A q Al aux busy")


def workspace(m, d, dtype):
    """The batch-1 buffers, a ``SingleWorkspace``. ``x`` .. ``gw``: the one-step path (``exact_step``; ``x``
    the sample, ``h`` the products, ``nrm`` the norms, ``phi``, ``A1`` = a_j sigma'_j, ``coef``, ``gw`` the
    row update's coefficients); ``part``: per chunk and step parity, the chunk's partial sums (one 64-byte
    line each); ``sync``, ``status``: the team's (``status[w]`` = worker w's (steps done, outcome));
    ``scratch``, ``lr1``: the arguments of a single step (rows: lam_a, lam_w, loss; the step sizes of W and
    a), so ``online.step`` allocates nothing. The blocked scheme's:
    ``X`` the samples of blocks ``b mod 3`` (row k: the sample at block position k, its entry d the noise
    number), ``E``, ``C``, ``Al`` (block position by row), ``A``, ``q`` (by row), see the module docstring;
    ``aux[b mod 2]`` the terms of block b's samples: ``G[k, l] = x_k . x_l``, the label y_k in column BLOCK
    and ``max_i |x_k[i]|`` in BLOCK + 1; ``busy[b mod 2, w]`` worker w's time on block b, less its waits."""
    dtype = np.dtype(dtype)
    nch = (m + CHUNK - 1) // CHUNK
    npair = (d + 2) // 2
    width = -(-2 * npair // 16) * 16  # whole 64-byte lines per sample: samples never share a line
    nt = max(numba.config.NUMBA_NUM_THREADS, 1)
    mp = -(-m // 16) * 16  # rows of E, C, Al start on cache lines ...
    if mp % 256 == 0:      # ... and are not a multiple of 1 KB apart (those share L1 sets)
        mp += 16
    return SingleWorkspace(
        x=aligned((1, width), dtype), h=aligned(m, dtype), nrm=aligned(m, dtype), phi=aligned(m, dtype),
        A1=aligned(m, dtype), coef=aligned(m, dtype), gw=aligned(m, dtype),
        part=aligned((2, max(nch, 1), PART_STRIDE), dtype), sync=_sync.new_sync(),
        status=np.zeros((nt, 2), np.int64), scratch=np.zeros((3, 1)), lr1=np.zeros((2, 1)),
        X=aligned((3, BLOCK, width), dtype), E=aligned((BLOCK, mp), dtype), C=aligned((BLOCK, mp), dtype),
        A=aligned(m, dtype, 1.0), q=aligned(m, dtype), Al=aligned((BLOCK, mp), dtype, 1.0),
        aux=aligned((2, BLOCK, -(-(BLOCK + 2) // 16) * 16), dtype), busy=np.zeros((2, nt), np.int64))




@njit
def block_mode(reg, cn):
    """LITE, DECAY or FULL (see above) for regularizer ``reg`` and the norm term's coefficient ``cn``."""
    if cn != 0:
        return FULL
    if reg == REG_NONE:
        return LITE
    return FULL if NEEDS_NORM[reg] else DECAY



# ----------------------------------------------------------------------------------------------------
# The blocked scheme (see the module docstring)
# ----------------------------------------------------------------------------------------------------

@njit
def row_stats(W, q, full, j0, j1):
    """q_j = |w_j|^2 (``full``), else |w_j| (the starting bound on max_i |w_ij|: a sum of squares
    vectorizes, a running maximum does not), for rows j0 .. j1-1."""
    d = W.shape[1]
    for j in range(j0, j1):
        v = like(W, 0.0)
        for i in range(d):
            v += W[j, i] * W[j, i]
        q[j] = v if full else like(W, math.sqrt(v))


@njit
def block_terms(isa, X, kb, L, d, G, Z, Wt, at, tnorm, tcode, noise, me, nt):
    """The worker's share of the block's sample terms: for the groups of 4 positions that meet kb .. L-1,
    group g done by worker (g - kb // 4) % nt: G[k, l] = x_k . x_l (every l < BLOCK), the label y_k and
    max_i |x_k[i]| (columns BLOCK, BLOCK + 1), with the teacher's products Z[k, t] = w*_t . x_k by the
    same four-rows-by-four-samples kernel as the block's products."""
    ms = Wt.shape[0]
    for g in range(kb // 4 + me, (L + 3) // 4, nt):
        k0 = 4 * g
        _dots(isa, X, X, G, k0, k0 + 4, np.int64(0), np.int64(BLOCK), d)
        _dots(isa, Wt, X, Z, k0, k0 + 4, np.int64(0), ms, d)
        for k in range(max(k0, kb), min(k0 + 4, L)):
            mx = like(X, 0.0)
            for i in range(d):
                mx = max(mx, abs(X[k, i]))
            f = like(X, 0.0)
            for t in range(ms):
                f += at[t] * neuron(tcode, Z[k, t], tnorm[t])
            G[k, BLOCK] = like(X, f + like(X, noise) * X[k, d])
            G[k, BLOCK + 1] = mx


@njit(fastmath=ORDERED)
def products_block(isa, E, C, Al, G, kb, k, mode, j0, j1):
    """E[k, j] <- w_j . x_k for the current weights, rows j0 .. j1-1: E[k, j] holds the product with
    the block's starting weights, and the recorded updates of positions kb .. k-1 are applied in that
    order, E <- Al[l, j] E - C[l, j] x_k . x_l (LITE: E - C[l, j] x_k . x_l). ``KL`` rows (four vectors
    of variant ``isa``) at a time stay in registers while the positions stream past (one load and one
    store of E[k] per step). Compiled without ``reassoc``: with it, LLVM takes the loop over positions
    for a reduction and vectorizes it with gathers, ten times slower than the register block, and out
    of order."""
    wide_vectors()
    if k == kb:
        return
    KL = 4 * lanes(E, isa)
    n = j1 - j0
    nw = n - n % KL
    acc = local_vectors(E, 4, isa)
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


def _products_at(isa, E, C, Al, G, kb, k, mode, j0, j1):  # without the JIT (NUMBA_DISABLE_JIT=1)
    products_block(isa, E, C, Al, G, kb, k, mode, j0, j1)


@overload(_products_at, prefer_literal=True, inline="always", jit_options=_OPTS)
def _products_variant(isa, E, C, Al, G, kb, k, mode, j0, j1):
    v = isa_value(isa)
    if v is not None:
        def fixed(isa, E, C, Al, G, kb, k, mode, j0, j1):
            products_block(v, E, C, Al, G, kb, k, mode, j0, j1)

        return fixed
    if isinstance(isa, types.Integer):
        def chosen(isa, E, C, Al, G, kb, k, mode, j0, j1):
            if isa == AVX512:
                products_block(AVX512, E, C, Al, G, kb, k, mode, j0, j1)
            else:
                products_block(AVX2, E, C, Al, G, kb, k, mode, j0, j1)

        return chosen
    return None


@njit
def products_at(isa, E, C, Al, G, kb, k, mode, j0, j1):
    """``products_block`` with the register block of variant ``isa`` (compiled as ``update``'s)."""
    _products_at(isa, E, C, Al, G, kb, k, mode, j0, j1)


@njit
def block_coefficients(a, nrm, phi, A1, E, q, C, Al, cn, reg, lam_a, lam_w, r, eta_w, eta_a, mode, k, G, j0, j1):
    """Step at block position k for rows j0 .. j1-1 (step sizes eta_w of W, eta_a of a): a_j -= eta_a g_a[j]
    (not at all when eta_a = 0); the row update w_j <- alpha_j w_j - c_j x_k (alpha_j = 1 - eta_w cw_j,
    c_j = eta_w r a_j sigma'_j) is recorded as
    C[k, j] = c_j, Al[k, j] = alpha_j (``products_at`` applies it to the later positions' products);
    q_j follows it: exactly |w'|^2 = alpha^2 |w|^2 - 2 alpha c (w . x_k) + c^2 |x_k|^2 (FULL), or the
    bound |alpha| q_j + |c_j| max_i |x_k[i]|. The regularizer's terms are ``reg_terms``' (DECAY: at
    |w_j| = 0, which its regularizers ignore, so no division by |w_j| is left in the loop)."""
    wide_vectors()
    zero = like(a, 0.0)
    one = like(a, 1.0)
    two = like(a, 2.0)
    la = like(a, lam_a)
    lw = like(a, lam_w)
    gkk = G[k, k]
    xmax = G[k, BLOCK + 1]
    if mode == LITE:  # no regularizer, no norm term
        for jj in range(j1 - j0):
            j = np.uint64(j0 + jj)
            c = eta_w * (r * A1[j])
            aj = a[j]
            na = aj - eta_a * (r * phi[j])
            a[j] = na if eta_a != zero else aj
            C[k, j] = c
            q[j] = q[j] + abs(c) * xmax
    elif mode == DECAY:  # a regularizer whose terms need no norm, no norm term
        for jj in range(j1 - j0):
            j = np.uint64(j0 + jj)
            c, cw = neuron_step(a, j, zero, phi, A1, cn, reg, la, lw, r, eta_w, eta_a, zero)
            C[k, j] = c
            al = one - eta_w * cw
            Al[k, j] = al
            q[j] = abs(al) * q[j] + abs(c) * xmax
    else:
        for jj in range(j1 - j0):
            j = np.uint64(j0 + jj)
            c, cw = neuron_step(a, j, nrm[j], phi, A1, cn, reg, la, lw, r, eta_w, eta_a, zero)
            C[k, j] = c
            al = one - eta_w * cw
            Al[k, j] = al
            q[j] = ((al * al) * q[j] - (two * al * c) * E[k, j]) + (c * c) * gkk


@njit
def norms_of(q, nrm, j0, j1):
    """nrm_j = sqrt(q_j) (FULL mode: q_j is |w_j|^2)."""
    zero = like(q, 0.0)
    for jj in range(j1 - j0):
        j = np.uint64(j0 + jj)
        nrm[j] = like(q, math.sqrt(max(q[j], zero)))


@njit
def pending(C, Al, A, kb, k, mode, j0, j1):
    """The updates of block positions kb .. k-1 as w_j <- A_j w_j - sum_l C[l, j] x_l: C[l, j] becomes
    c_l times the alphas of the later steps, A_j the product of all (LITE: C as it is, A = 1)."""
    if mode == LITE:
        return
    one = like(A, 1.0)
    for jj in range(j1 - j0):
        j = np.uint64(j0 + jj)
        A[j] = one
    for l in range(k - 1, kb - 1, -1):
        for jj in range(j1 - j0):
            j = np.uint64(j0 + jj)
            C[l, j] = C[l, j] * A[j]
            A[j] = A[j] * Al[l, j]


@njit
def apply_pending(isa, W, A, C, Al, X, kb, k, mode, r0, r1):
    """W <- the weights after block positions kb .. k-1 (rows r0 .. r1-1)."""
    pending(C, Al, A, kb, k, mode, r0, r1)
    for j0 in range(r0, r1, ROWS):
        _update(isa, W, A, C, X, kb, k, mode != LITE, j0, min(j0 + ROWS, r1))


@njit
def base_pass(isa, W, X, E, q, full, k0, k1, j0, j1):
    """The start of a block from the weights in W: q_j and E[k, j] = w_j . x_k for the block positions
    k0 .. k1-1 (whole groups of 4)."""
    row_stats(W, q, full, j0, j1)
    _dots(isa, W, X, E, k0 // 4 * 4, min(BLOCK, -(-k1 // 4) * 4), j0, j1, W.shape[1])


@njit
def block_worker(isa, w, n_workers, W, a, Wt, at, tnorm, code, tcode, noise, seed, step0, t0, t1, lrs, reg,
                 lam_as, lam_ws, fw, losses):
    """Steps t0 .. t1-1 of the run (global step step0 + t) by the blocked scheme. Returns (steps done
    from t0, outcome), outcome -1 for a worker that left."""
    nrm, phi, A1, part, sync = fw.nrm, fw.phi, fw.A1, fw.part, fw.sync
    X3, E, C, A, q, Al, aux, busy = fw.X, fw.E, fw.C, fw.A, fw.q, fw.Al, fw.aux, fw.busy
    mode_ = _sync.join(sync, n_workers)
    if mode_ == 0:
        return 0, -1
    KB = BLOCK
    m, d = W.shape
    zero = like(W, 0.0)
    big = guard_limit(W)
    nch = (m + CHUNK - 1) // CHUNK
    npair = (d + 2) // 2
    team = mode_ == _sync.TEAM
    nt = n_workers if team else 1
    me = w if team else 0
    bounds = np.empty(nt + 1, np.int64)  # worker k owns chunks bounds[k] .. bounds[k+1]-1
    for k in range(nt + 1):
        bounds[k] = k * nch // nt
    c0, c1 = bounds[me], bounds[me + 1]
    r0, r1 = c0 * CHUNK, min(c1 * CHUNK, m)  # the worker's rows
    writer = not team or w == 0
    cn = dneuron_dnorm(code, zero)
    mode = block_mode(reg, cn)
    full = mode == FULL
    hnorm = nrm if full else q  # the norms the neuron pass sees: |w_j|, or the bound
    tot = np.empty(NPART, W.dtype)
    Z = np.empty((KB, max(Wt.shape[0], 1)), W.dtype)  # the teacher's products with the block's samples
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
    for j0 in range(r0, r1, ROWS):
        base_pass(isa, W, Xb, E, q, full, kb, L, j0, min(j0 + ROWS, r1))
    b0 = b
    while True:
        tick = _sync.cycles()
        waited = 0
        Ln = min(KB, S1 - (b + 1) * KB)  # positions of block b + 1 in the run
        Xn = X3[(b + 1) % 3]
        for k in range(me, Ln, nt):  # drawn now, visible to all after the barrier below
            fill(seed, (b + 1) * KB + k, Xn[k], 0, npair)
        G = aux[b % 2]  # written by all workers, read by all after the barrier
        block_terms(isa, Xb, kb, L, d, G, Z, Wt, at, tnorm, tcode, noise, me, nt)
        if team:
            nb += 1
            w0 = _sync.cycles()
            _sync.arrive_and_wait(sync, n_workers * nb)
            waited += _sync.cycles() - w0
            if b > b0:  # rows move towards the faster worker (it never changes a result)
                _sync.rebalance(bounds, busy[(b - 1) % 2], 1)
                c0, c1 = bounds[me], bounds[me + 1]
                r0, r1 = c0 * CHUNK, min(c1 * CHUNK, m)
        moves = False  # whether a step of this block has a nonzero step size for W (else W is not written)
        for k in range(kb, L):
            s = b * KB + k
            t = s - step0
            y, xmax = G[k, KB], G[k, KB + 1]
            _products_at(isa, E, C, Al, G, kb, k, mode, r0, r1)
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
            lr_w, lr_a = lr_at(lrs, t)
            lw = like(W, lr_w)
            la = like(W, lr_a)
            ar = abs(r)
            bga = ar * sph + sra  # bounds on |g_a|, |g_W| entries
            bgw = ar * (g1 * xmax + g2) + g0
            ok = finite(loss)
            if not (ok and bga < big and bgw < big and fits(sa, bga, la, big) and fits(snw, bgw, lw, big)):
                if moves:
                    apply_pending(isa, W, A, C, Al, Xb, kb, k, mode, r0, r1)  # W <- W(s): the weights before s
                if not ok:
                    if writer:
                        losses[t] = np.nan
                    return t - t0, STOP
                return t - t0, NEED_EXACT
            if writer:
                losses[t] = loss
            moves = moves or lw != zero
            block_coefficients(a, nrm, phi, A1, E, q, C, Al, cn, reg, lam_as[t], lam_ws[t], r, lw, la, mode, k, G,
                               r0, r1)
        pending(C, Al, A, kb, L, mode, r0, r1)
        for j0 in range(r0, r1, ROWS):  # the block's updates, then the next block's products
            j1 = min(j0 + ROWS, r1)
            if moves:
                _update(isa, W, A, C, Xb, kb, L, mode != LITE, j0, j1)
            if Ln > 0:
                base_pass(isa, W, Xn, E, q, full, np.int64(0), Ln, j0, j1)
        busy[b % 2, me] = _sync.cycles() - tick - waited
        if Ln <= 0:
            return t1 - t0, DONE
        b += 1
        kb = 0
        L = Ln
        Xb = Xn


@pnjit
def team_run(n_workers, W, a, Wt, at, tnorm, code, tcode, noise, seed, step0, t0, t1, lrs, reg, lam_as, lam_ws,
             fw, losses, isa=HOST_ISA):
    """``n_workers`` workers of ``block_worker`` in a ``prange`` (they form a team, or one goes solo);
    each writes its (steps done, outcome) into ``fw.status``."""
    status = fw.status
    for w in prange(n_workers):
        done, outcome = block_worker(isa, np.int64(w), n_workers, W, a, Wt, at, tnorm, code, tcode, noise, seed,
                                     step0, t0, t1, lrs, reg, lam_as, lam_ws, fw, losses)
        status[w, 0] = done
        status[w, 1] = outcome


@njit(inline="always")
def run(W, a, Wt, at, code, tcode, noise, seed, step0, lrs, reg, lam_as, lam_ws, fw, losses, isa=HOST_ISA):
    """Steps step0 .. step0 + n - 1 (``lrs`` of shape (n,), or (2, n): rows W, a); returns the number done
    (see ``online.run``). ``isa``: the
    register-block variant (``_jit.AVX2``, ``_jit.AVX512``; a compile-time constant where it can be).
    Inlined into its callers (``online.run_single`` and the public kernels): one compilation less."""
    S = lr_count(lrs)
    if S == 0:
        return 0
    m, d = W.shape
    n_workers = min(_sync.num_threads(), fw.status.shape[0])
    if m * d < TEAM_MIN_WEIGHTS or m < 2 * CHUNK:
        n_workers = 1
    tnorm = np.empty(Wt.shape[0], np.float64)
    for t_ in range(Wt.shape[0]):  # the teacher's few rows: serial (a parallel region costs ~30 us a call)
        s_ = 0.0
        for i in range(d):
            s_ += np.float64(Wt[t_, i]) * Wt[t_, i]
        tnorm[t_] = np.sqrt(s_)
    t = np.int64(0)  # (not the literal 0: the callees would be compiled for it too)
    while t < S:
        if n_workers > 1:
            sync = fw.sync
            sync[:] = 0
            status = fw.status
            status[:] = 0
            for k in range(n_workers):
                status[k, 1] = -1
            team_run(n_workers, W, a, Wt, at, tnorm, code, tcode, noise, seed, step0, t, S, lrs, reg, lam_as,
                     lam_ws, fw, losses, isa)
            done, outcome = 0, -1
            for k in range(n_workers):
                if status[k, 1] >= 0:
                    done, outcome = status[k, 0], status[k, 1]
                    break
        else:
            # (not the literals 0, 1: a second build of block_worker, no faster when measured)
            done, outcome = block_worker(isa, np.int64(0), np.int64(1), W, a, Wt, at, tnorm, code, tcode, noise, seed,
                                         step0, t, S, lrs, reg, lam_as, lam_ws, fw, losses)
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
