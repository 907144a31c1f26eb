"""Empirical loss and gradient on a fixed data set: the fused, sample-tiled CPU kernel.

    L = 1/(2 n) sum_k r_k^2,   r_k = f(x_k) - y_k,   f(x) = sum_j a_j phi(w_j, x)
    g_a[j] = 1/n sum_k r_k phi(w_j, x_k)
    g_W[j] = 1/n sum_k r_k a_j sigma'(z_kj) x_k  +  a_j c_norm (1/n sum_k r_k) w_j / |w_j|

(``c_norm = dneuron_dnorm``: nonzero only for ``relu_centered``, whose neuron has the ``-|w|/sqrt(2 pi)``
term.) Strategy: the samples are processed in tiles of ``t`` rows. Per tile

1. ``Z = X_t W^T`` (BLAS, t x m);
2. one parallel pass over the rows of ``Z``: the row's outputs ``phi`` and ``f_k``, the residual, then
   in place ``Z[k, j] <- (r_k / n) a_j sigma'(z_kj)`` (the back-propagated signal ``D``) while
   ``r_k phi_kj / n`` is summed per chunk of ``ROW_CHUNK`` rows in the working precision (a loop that
   vectorizes) and then added to that chunk's float64 partial of ``g_a``;
3. ``g_W += D^T X_t`` (BLAS, with beta = 1 through ``_blas.gemm_tn``: no temporary, no extra pass).

The ``n x m`` matrix never exists: memory is ``O(t m)`` (``t`` chosen so the ``t x m`` block is about
``TILE_BYTES`` = 8 MB). The row chunks are fixed (``ROW_CHUNK`` rows), so apart from BLAS the sums do
not depend on the thread count. Then the regularizer and the guarded update (``common.add_reg_grad``,
``common.guarded_update``).

Activations whose derivative takes two values (relu, relu_centered, linear: ``KIND_STEP``, chosen from
the activation table by ``EMP_KIND_OF``) replace steps 2 and 3: ``sigma'(z) = beta + (alpha - beta)
[z > 0]``, so ``g_W[j] = a_j ((alpha - beta) S[j] + beta sum_k y_k)`` with ``y_k = (r_k / n) x_k`` and
``S = M^T Y``, ``M[k, j] = [z_kj > 0]``. Per tile the pass (``rows_step``) reads Z once and writes only
the sign bits and the rows ``y_k``; ``masked.masked_tn`` adds ``M^T Y_t`` to ``S`` with 16-entry
subset-sum tables (one vector addition per 4 multiply-adds of a GEMM, no multiplications). After the
tiles, ``step_grad`` forms both gradients from ``S`` in ``O(m d)``: also ``g_a``, since
``phi(z) = sh + beta z + (alpha - beta) z [z > 0]`` and ``z_kj = w_j . x_k`` give
``g_a[j] = sh_j R + w_j . (beta sum_k y_k + (alpha - beta) S[j])`` (``R = sum_k r_k / n``). At
n=8192, d=256, m=2048 (float32, 2 cores) this step took 0.78-0.89x the time of the two GEMMs of the
dense formulation, against 0.96-1.02x for the GEMM path on the same activation.

The elementwise pass has no per-element activation branch: it is built per *kind* (``EMP_KIND_OF[code]``),
and each kind's formula is branch-free:

- ``ALG`` (abs, he2, he3; also relu, relu_centered, linear through ``KIND_STEP``):
  ``phi = sh_j + z (s(z) + z (c2 + z c3))`` with ``s(z) = alpha if z > 0 else beta`` and
  ``sigma' = (alpha | beta | gamma at z = 0) + z (2 c2 + 3 c3 z)``, ``sh_j = c0 + c_norm |w_j|``. The
  coefficients are the activation table's ``ALG_PARAMS`` (``fastfeat.math.activations``: derived from
  the table's scalar functions and checked against them there).
- ``ERF`` and ``TANH``: the table's ``neuron`` / ``dneuron`` with the code fixed at compile time
  (``tanh`` stores ``tanh z`` in the first sweep and gets ``sigma' = 1 - tanh^2`` from it).

Compilation: every function is generic in the float type (numba compiles one version per argument
types) and cached on disk. The kind-specific pieces (the elementwise pass, and the loss, gradient and
steps built on it) are closures made per kind by ``_make``; they are not cached on their own but inlined
into one small module-level entry point per kind, which is, so a process compiles (or loads) only the
kind it uses:

- ``entry_alg``, ``entry_erf``, ``entry_tanh``, ``entry_step`` (``entry_for(code)`` picks one): one
  compilation for the loss, the gradient, a step and a run (``mode``), with the tile loop in it once;
- ``loss_grad``, ``step``, ``run``: the public kernels (``ff.kernels.empirical_*``), which take any
  activation code and dispatch on its kind at run time to the entry points, whose code they link: a
  public kernel compiles only its own few lines, and the first call loads (or compiles) all four kinds.

Minibatches: ``idx`` lists the samples of the batch (rows are gathered tile by tile into a ``t x d``
buffer); an empty ``idx`` means the whole data set in order. ``run`` draws the batches: with ``B`` the
batch size and ``nb = ceil(n / B)`` batches per epoch, global step ``s`` is batch ``s % nb`` of epoch
``s // nb``, i.e. samples ``perm_e[b B : min((b + 1) B, n)]`` (the last batch of an epoch may be
smaller) where ``perm_e = _rng.shuffle(seed, e)`` depends only on (seed, epoch): resuming at any step
reproduces an uninterrupted run.
"""

from collections import namedtuple

import numba
import numpy as np
from numba import prange

from ...math.activations import (
    ERF, KIND_ALG, KIND_ERF, KIND_OF, KIND_TANH, NAMES, TANH, TWO_VALUED_DERIVATIVE,
)
from ...math.regularizer import REG_NONE
from . import masked
from ._blas import gemm_nt, gemm_tn
from ._finite import finite
from ._jit import njit, pnjit
from ._rng import shuffle
from .common import add_reg_grad, guarded_update, row_norms
from .scalar import alg_params, as_pairs, dneuron, like, lr_at, lr_count, lr_pair, neuron

#: the empirical kernels' own kind: ALG activations whose derivative takes two values (see the module
#: docstring and ``TWO_VALUED_DERIVATIVE``), whose weight gradient is a bit-matrix product (``masked``)
KIND_STEP = 3
#: activation code -> empirical kernel kind: the table's pointwise kind (``KIND_OF``), KIND_STEP for the
#: codes of ``TWO_VALUED_DERIVATIVE`` (relu, relu_centered, linear; abs, with sigma'(0) = 0, stays ALG)
EMP_KIND_OF = np.array([KIND_STEP if c in TWO_VALUED_DERIVATIVE else KIND_OF[c] for c in range(len(NAMES))],
                       np.int64)
EMP_KIND_OF.setflags(write=False)  # compiled into the cached public kernels: a constant
#: what an entry point does (its ``mode``): the loss; the loss and gradient; a run of steps; one step
LOSS, GRAD, RUN, STEP = 0, 1, 2, 3
#: rows per parallel task in the elementwise pass (fixed: the g_a partial sums do not depend on threads)
ROW_CHUNK = 16
#: bytes of the per-tile pre-activation block (t * m entries) the default tile aims for. Measured at
#: n=8192, d=256, m=2048 float32 on 2 cores (numpy's OpenBLAS, interleaved runs, noisy machine): step /
#: GEMMs 0.97-1.17 for tiles of 2 to 32 MB with no consistent winner; 8 MB keeps the block in the L3
#: cache and memory small (with scipy's BLAS, 4 MB tiles had measured 1.3-1.5 against 1.1-1.2 for 32 MB)
TILE_BYTES = 1 << 23

#: The buffers of the empirical kernels (``workspace``), allocated once and reused every step:
#:   z       (t m,) the Z / D block of one tile
#:   xg, yg  (t, d), (t,) the gathered rows and labels of a minibatch tile (xg is (1, d) for full batches)
#:   rb      (t,) r_k / n of the tile
#:   lrow    (t,) float64 r_k^2 of the tile
#:   gpart   (nrc, m) float64 per-row-chunk partials of g_a (all tiles)
#:   gchunk  (nrc, m) the same for the current tile, in the working precision
#:   sh, nrm (m,) the shift sh_j = c0 + c_norm |w_j|, and |w_j|
#:   perm    (n,) int64 the epoch's permutation (empty for full batches)
#:   bits, S, ybuf, tabs, plan: the KIND_STEP product (``masked.workspace``: the tile's sign bits, the
#:           product M^T Y over all tiles, the tile's rows y_k = (r_k / n) x_k, the workers' tables and
#:           work split)
#:   ypart   (nrc, d) float64 per-row-chunk partials of sum_k y_k (KIND_STEP)
#:   lr1, scratch (2, 1), (3, 1) float64: a public kernel's single step sizes, and lam_a, lam_w, loss
#: (``t`` samples per tile, ``nrc = ceil(t / ROW_CHUNK)``)
Workspace = namedtuple("Workspace", "z xg yg rb lrow gpart gchunk sh nrm perm bits S ybuf tabs plan ypart lr1 "
                                     "scratch")


def default_tile(m, rows, itemsize=4):
    """Samples per tile: about ``TILE_BYTES / (m itemsize)``, a multiple of 16, at most ``rows``."""
    t = max(16, min(16384, (TILE_BYTES // (max(m, 1) * itemsize)) // 16 * 16))
    return int(max(1, min(t, rows)))


def workspace(n, m, d, dtype, batch=None, tile=None):
    """A ``Workspace`` for the empirical kernels on ``n`` samples, ``m`` neurons, ``d`` inputs.

    ``batch``: the minibatch size (None or >= n: full batch). ``tile``: samples per tile (default
    ``default_tile``)."""
    dtype = np.dtype(dtype)
    full = batch is None or batch >= n
    rows = n if full else batch
    t = default_tile(m, rows, dtype.itemsize) if tile is None else int(max(1, min(tile, rows)))
    nrc = (t + ROW_CHUNK - 1) // ROW_CHUNK
    bits, S, ybuf, tabs, plan = masked.workspace(m, d, t, dtype, numba.config.NUMBA_NUM_THREADS)
    return Workspace(
        z=np.empty(t * m, dtype), xg=np.empty((t if not full else 1, d), dtype), yg=np.empty(t, dtype),
        rb=np.empty(t, dtype), lrow=np.empty(t, np.float64), gpart=np.empty((nrc, m), np.float64),
        gchunk=np.empty((nrc, m), dtype), sh=np.empty(m, dtype), nrm=np.empty(m, dtype),
        perm=np.empty(0 if full else n, np.int64), bits=bits, S=S, ybuf=ybuf, tabs=tabs, plan=plan,
        ypart=np.zeros((nrc, d), np.float64), lr1=np.zeros((2, 1)), scratch=np.zeros((3, 1)),
    )


@njit
def _gather(X, y, idx, k0, xg, yg):
    """Rows idx[k0:k0+t] of X, y into xg, yg (serial: a t x d copy next to t m d multiply-adds)."""
    t = yg.shape[0]
    n, d = X.shape
    for r in range(t):
        k = idx[k0 + r]
        if k < 0 or k >= n:
            raise IndexError("empirical kernels: a sample index in idx is outside 0 .. n - 1")
        yg[r] = y[k]
        for i in range(d):
            xg[r, i] = X[k, i]


@njit
def _finish(W, a, gW, ga, gpart, nrc, cn, R, nrm, sum_ga):
    """g_a = sum of the row-chunk partials (fixed order; only when ``sum_ga``); the relu_centered norm
    term of g_W. Serial: O(m (nrc + d)) next to the O(n m d) of the products (and one parallel region
    less)."""
    m, d = W.shape
    for j in range(m):
        if sum_ga:
            s = 0.0
            for c in range(nrc):
                s += gpart[c, j]
            ga[j] = s
        if cn != 0 and nrm[j] > 0:
            coef = a[j] * (cn * R / nrm[j])
            for i in range(d):
                gW[j, i] += coef * W[j, i]


# The pointwise formulas of each kind: ``fwd(z, sh, p) -> (phi, v)`` (``v`` is what the backward sweep
# needs of z: z itself, or tanh z) and ``bwd(v, sh, p) -> (phi, sigma')``; ``p`` holds the ALG
# coefficients (alpha, beta, gamma, c0, c2, c3) in the working precision.

@njit(inline="always")
def _alg_fwd(z, sh, p):
    s = p[0] if z > like(z, 0.0) else p[1]
    return sh + z * (s + z * (p[4] + z * p[5])), z


@njit(inline="always")
def _alg_bwd(z, sh, p):
    zero = like(z, 0.0)
    s = p[0] if z > zero else p[1]
    ds = p[0] if z > zero else (p[1] if z < zero else p[2])
    return sh + z * (s + z * (p[4] + z * p[5])), ds + z * (p[4] + p[4] + like(z, 3.0) * p[5] * z)


@njit(inline="always")
def _erf_fwd(z, sh, p):
    return neuron(ERF, z, like(z, 0.0)), z


@njit(inline="always")
def _erf_bwd(z, sh, p):
    return neuron(ERF, z, like(z, 0.0)), dneuron(ERF, z)


@njit(inline="always")
def _tanh_fwd(z, sh, p):
    t = neuron(TANH, z, like(z, 0.0))
    return t, t


@njit(inline="always")
def _tanh_bwd(t, sh, p):
    return t, like(t, 1.0) - t * t


_POINTWISE = {KIND_ALG: (_alg_fwd, _alg_bwd), KIND_ERF: (_erf_fwd, _erf_bwd), KIND_TANH: (_tanh_fwd, _tanh_bwd)}


def _make_rows(kind):
    """The fused elementwise pass over one tile (module docstring, step 2) for an ALG, ERF or TANH kind."""
    fwd, bwd = _POINTWISE[kind]
    store_v = kind == KIND_TANH
    RC = ROW_CHUNK

    @pnjit
    def rows(Z, a, sh, p, yt, inv_n, rb, lrow, gpart, gchunk, want_grad):
        t, m = Z.shape
        zero = like(Z, 0.0)
        nrc = (t + RC - 1) // RC
        for c in prange(nrc):
            r0 = c * RC
            r1 = min(r0 + RC, t)
            g = gchunk[c]  # this chunk's g_a partial in the working precision (vectorizes), then
            g[:] = zero    # added to the float64 partial once per chunk
            for r in range(r0, r1):
                zr = Z[r]  # a row view: the inner loops index one dimension (measured: the grad
                f = zero   # sweep vectorizes better, 0.39 against 0.55 ns per element)
                for j in range(m):
                    phi, v = fwd(zr[j], sh[j], p)
                    f += a[j] * phi
                    if store_v:
                        zr[j] = v
                res = f - yt[r]
                lrow[r] = np.float64(res) * res
                rr = res * inv_n
                rb[r] = rr
                if want_grad:
                    for j in range(m):
                        phi, dphi = bwd(zr[j], sh[j], p)
                        g[j] += rr * phi
                        zr[j] = rr * a[j] * dphi
            if want_grad:
                gp = gpart[c]
                for j in range(m):
                    gp[j] += g[j]

    return rows


@pnjit
def rows_step(Z, a, sh, p, yt, Xt, inv_n, rb, lrow, bits, ybuf, ypart, want_grad, want_bits, want_ysum):
    """The elementwise pass of a KIND_STEP kernel over one tile: only the forward sweep of ``rows``.
    The sign bits ``[z_kj > 0]`` go to ``bits`` (``masked``'s layout: a chunk of ROW_CHUNK rows fills
    whole bytes) and the rows ``y_k = (r_k / n) x_k`` to ``ybuf``; ``ypart`` sums them per chunk
    (float64) when ``want_ysum``. Z is only read, and once: ``step_grad`` gets g_a from the products."""
    t, m = Z.shape
    d = Xt.shape[1]
    zero = like(Z, 0.0)
    nrc = (t + ROW_CHUNK - 1) // ROW_CHUNK
    for c in prange(nrc):
        r0 = c * ROW_CHUNK
        r1 = min(r0 + ROW_CHUNK, t)
        for r in range(r0, r1):
            zr = Z[r]
            f = zero
            if want_bits:
                br = bits[r >> 3]
                sft = r & 7
                keep = np.uint8(0 if sft == 0 else 0xFF)  # the group's first row starts the bytes
                for j in range(m):
                    z = zr[j]
                    f += a[j] * _alg_fwd(z, sh[j], p)[0]
                    br[j] = (br[j] & keep) | np.uint8(np.uint8(z > zero) << sft)
            else:
                for j in range(m):
                    f += a[j] * _alg_fwd(zr[j], sh[j], p)[0]
            res = f - yt[r]
            lrow[r] = np.float64(res) * res
            rr = res * inv_n
            rb[r] = rr
            if want_grad:
                yr = ybuf[r]
                xr = Xt[r]
                for i in range(d):
                    yr[i] = rr * xr[i]
                if want_ysum:
                    yp = ypart[c]
                    for i in range(d):
                        yp[i] += yr[i]


@pnjit
def step_grad(W, a, S, ypart, nrc, da, beta, sh, R, gW, ga):
    """Both gradients of a KIND_STEP kernel from the products (module docstring of ``masked``): with
    ``v_j = da S[j] + beta sum_k y_k``, ``g_W[j] = a_j v_j`` (the relu_centered norm term is added by
    ``_finish``) and ``g_a[j] = sh_j R + w_j . v_j``, because ``phi(z) = sh + beta z + da z [z > 0]``
    and ``z_kj = w_j . x_k``: ``sum_k r_k/n phi(z_kj) = sh_j R + w_j . (beta sum_k y_k + da S[j])``.
    ``R = sum_k r_k / n``. The chunk partials of ``sum_k y_k`` are first added in order into
    ypart[0]."""
    m, d = gW.shape
    zero = like(gW, 0.0)
    if beta != 0:
        for c in range(1, nrc):
            for i in range(d):
                ypart[0, i] += ypart[c, i]
    ys = ypart[0]
    for j in prange(m):
        aj = a[j]
        dot = 0.0
        for i in range(d):
            v = da * S[j, i] if da != 0 else zero
            if beta != 0:
                v += beta * like(gW, ys[i])
            gW[j, i] = aj * v
            dot += np.float64(W[j, i]) * v
        ga[j] = like(ga, np.float64(sh[j]) * R + dot)


def _make(kind):
    """The ``entry`` of one kernel kind: inlined into the module-level entry point of the kind, with the
    loss and gradient pass ``loss_grad`` inlined into it (the kind is fixed at compile time; the float type
    is the arguments')."""
    is_step = kind == KIND_STEP
    rows = None if is_step else _make_rows(kind)
    RC = ROW_CHUNK

    @njit(inline="always")
    def loss_grad(W, a, X, y, idx, code, gW, ga, ws, want_grad):
        """Empirical loss 1/(2 n_b) sum_k (f(x_k) - y_k)^2 over the samples ``idx`` (all n, in order,
        when ``idx`` is empty); fills gW, ga with its gradient when ``want_grad``. Never writes W, a.
        Returns the loss as float64."""
        m, d = W.shape
        full = idx.shape[0] == 0
        nb = X.shape[0] if full else idx.shape[0]
        tile = ws.yg.shape[0]
        if not full and ws.xg.shape[0] < min(tile, nb):  # a gather buffer too small: never write past it
            raise ValueError("empirical kernels: idx given, but the workspace was built for the full data set; "
                             "build it with workspace(..., batch=len(idx))")
        p, cn = alg_params(code, W)
        c0 = p[3]
        sh = ws.sh
        nrm = ws.nrm
        if cn != 0:
            row_norms(W, nrm)
            for j in range(m):
                sh[j] = c0 + cn * nrm[j]
        else:
            sh[:] = c0
        nrc = (min(tile, nb) + RC - 1) // RC
        ws.gpart[:nrc] = 0.0
        inv_n = like(W, 1.0 / nb)
        da = p[0] - p[1]
        beta = p[1]
        want_bits = want_grad and da != 0
        want_ysum = want_grad and beta != 0
        if is_step and want_ysum:
            ws.ypart[:nrc] = 0.0
        loss = 0.0
        R = 0.0
        for k0 in range(0, nb, tile):
            k1 = min(k0 + tile, nb)
            t = k1 - k0
            if full:
                Xt = X[k0:k1]
                yt = y[k0:k1]
            else:
                Xt = ws.xg[:t]
                yt = ws.yg[:t]
                _gather(X, y, idx, k0, Xt, yt)
            Z = ws.z[: t * m].reshape(t, m)
            gemm_nt(Xt, W, Z, False)
            if is_step:
                rows_step(Z, a, sh, p, yt, Xt, inv_n, ws.rb, ws.lrow, ws.bits, ws.ybuf, ws.ypart, want_grad,
                          want_bits, want_ysum)
            else:
                rows(Z, a, sh, p, yt, inv_n, ws.rb, ws.lrow, ws.gpart, ws.gchunk, want_grad)
            for r in range(t):
                loss += ws.lrow[r]
                R += ws.rb[r]
            if want_grad:
                if not is_step:
                    gemm_tn(Z, Xt, gW, k0 > 0)
                elif want_bits:
                    masked.masked_tn(ws.bits, ws.ybuf, ws.S, ws.tabs, (t + 7) // 8 * 8, k0 > 0, ws.plan)
        if want_grad:
            if is_step:
                step_grad(W, a, ws.S, ws.ypart, nrc, da, beta, sh, R, gW, ga)
            _finish(W, a, gW, ga, ws.gpart, nrc, cn, R, nrm, not is_step)
        return 0.5 * loss / nb

    @njit(inline="always")
    def entry(W, a, X, y, idx, code, step0, batch, seed, lrs, reg, lam_as, lam_ws, gW, ga, ws, losses, mode):
        """What every kernel of this kind does, by ``mode``: ``LOSS`` the loss over the samples ``idx``
        (empty: all) into losses[0]; ``GRAD`` also its gradient into gW, ga; ``STEP`` one regularized
        step on ``idx`` with step sizes ``lrs[:, 0]`` and ``lam_as[0]``, ``lam_ws[0]``, its loss (or NaN)
        into losses[0]; ``RUN`` ``len(lrs)`` steps from global step ``step0``: full batch when ``batch
        >= n``, else the minibatches of the module docstring (``idx`` unused), losses[s] the (minibatch)
        loss before step s. Returns the number of steps done (1 for ``LOSS`` and ``GRAD``; fewer than
        asked when a non-finite loss or gradient, or an update that would reach ``guard_limit``, stopped
        it: W, a are then left as they were before that step). One function, with the loss and gradient
        pass in it once, so that one compilation serves ``Empirical.loss``, ``grad``, ``ff.train`` and the
        public kernels."""
        perm = ws.perm
        n = X.shape[0]
        count = lr_count(lrs) if mode == RUN else 1
        full = batch >= n
        nb = (n + batch - 1) // batch
        for s in range(count):
            ix = idx
            if mode == RUN:
                g = step0 + s
                if full:
                    ix = perm[:0]
                else:
                    b = g % nb
                    if s == 0 or b == 0:
                        shuffle(perm, seed, g // nb)
                    ix = perm[b * batch: min(n, (b + 1) * batch)]
            loss = loss_grad(W, a, X, y, ix, code, gW, ga, ws, mode != LOSS)
            if mode == LOSS or mode == GRAD:
                losses[0] = loss
                return 1
            ok = add_reg_grad(W, a, gW, ga, reg, lam_as[s], lam_ws[s])
            if not (ok and finite(loss) and guarded_update(W, a, gW, ga, lr_at(lrs, s))):
                losses[s] = np.nan
                return s
            losses[s] = loss
        return count

    return entry


_en_alg = _make(KIND_ALG)
_en_erf = _make(KIND_ERF)
_en_tanh = _make(KIND_TANH)
_en_step = _make(KIND_STEP)


# The entry points, one per kind (``entry_for``), each compiled (or loaded from the cache) only when a net
# of its kind is trained or a public kernel dispatches to it. Arguments: ``(W, a, X, y, idx, code, step0,
# batch, seed, lrs, reg, lam_as, lam_ws, gW, ga, ws, losses, mode)``, see ``_make``'s ``entry``.

@njit
def entry_alg(W, a, X, y, idx, code, step0, batch, seed, lrs, reg, lam_as, lam_ws, gW, ga, ws, losses, mode):
    """The ALG kind's entry (abs, he2, he3)."""
    return _en_alg(W, a, X, y, idx, code, step0, batch, seed, lrs, reg, lam_as, lam_ws, gW, ga, ws, losses, mode)


@njit
def entry_erf(W, a, X, y, idx, code, step0, batch, seed, lrs, reg, lam_as, lam_ws, gW, ga, ws, losses, mode):
    """The ERF kind's entry."""
    return _en_erf(W, a, X, y, idx, code, step0, batch, seed, lrs, reg, lam_as, lam_ws, gW, ga, ws, losses, mode)


@njit
def entry_tanh(W, a, X, y, idx, code, step0, batch, seed, lrs, reg, lam_as, lam_ws, gW, ga, ws, losses, mode):
    """The TANH kind's entry."""
    return _en_tanh(W, a, X, y, idx, code, step0, batch, seed, lrs, reg, lam_as, lam_ws, gW, ga, ws, losses, mode)


@njit
def entry_step(W, a, X, y, idx, code, step0, batch, seed, lrs, reg, lam_as, lam_ws, gW, ga, ws, losses, mode):
    """The KIND_STEP entry (relu, relu_centered, linear)."""
    return _en_step(W, a, X, y, idx, code, step0, batch, seed, lrs, reg, lam_as, lam_ws, gW, ga, ws, losses, mode)


#: kernel kind -> its entry point
ENTRIES = {KIND_ALG: entry_alg, KIND_ERF: entry_erf, KIND_TANH: entry_tanh, KIND_STEP: entry_step}


def entry_for(code):
    """The entry point of activation ``code``'s kernel kind (``EMP_KIND_OF``, read at each call)."""
    return ENTRIES[int(EMP_KIND_OF[code])]


# The public kernels (``ff.kernels.empirical_*``): any activation code, dispatched on its kind at run time
# to the entry points above (which they link: the algorithm is compiled once for both), with the
# arguments of a single call passed through the workspace's ``lr1`` and ``scratch``.

@njit
def check_args(W, a, X, y, code, gW, ga, ws, want_grad):
    """ValueError unless the arguments of a public empirical kernel fit together (the kernels index their
    buffers without bounds checks): shapes, the activation code, a workspace made for these sizes."""
    m, d = W.shape
    n = X.shape[0]
    if a.shape[0] != m or X.shape[1] != d or y.shape[0] != n:
        raise ValueError("empirical kernel: W (m, d), a (m,), X (n, d), y (n,) do not fit together")
    if code < 0 or code >= EMP_KIND_OF.shape[0]:
        raise ValueError("empirical kernel: code is not one of ff.kernels.ACTIVATION_CODES")
    if want_grad and (gW.shape[0] != m or gW.shape[1] != d or ga.shape[0] != m):
        raise ValueError("empirical kernel: gW and ga must have the shapes of W and a")
    t = ws.yg.shape[0]
    if (ws.xg.shape[1] != d or ws.z.shape[0] < t * m or ws.sh.shape[0] != m or ws.nrm.shape[0] != m
            or ws.gpart.shape[1] != m or ws.gchunk.shape[1] != m):
        raise ValueError("empirical kernel: the workspace was made for other sizes: use empirical_workspace(n, m, "
                         "d, dtype) of these arrays")


@njit(inline="always")
def _entry(W, a, X, y, idx, code, step0, batch, seed, lrs, reg, lam_as, lam_ws, gW, ga, ws, losses, mode):
    """The entry point of ``code``'s kind, chosen at run time."""
    k = EMP_KIND_OF[code]
    if k == KIND_STEP:
        return entry_step(W, a, X, y, idx, code, step0, batch, seed, lrs, reg, lam_as, lam_ws, gW, ga, ws, losses,
                          mode)
    elif k == KIND_ALG:
        return entry_alg(W, a, X, y, idx, code, step0, batch, seed, lrs, reg, lam_as, lam_ws, gW, ga, ws, losses,
                         mode)
    elif k == KIND_ERF:
        return entry_erf(W, a, X, y, idx, code, step0, batch, seed, lrs, reg, lam_as, lam_ws, gW, ga, ws, losses,
                         mode)
    return entry_tanh(W, a, X, y, idx, code, step0, batch, seed, lrs, reg, lam_as, lam_ws, gW, ga, ws, losses, mode)


@njit
def loss_grad(W, a, X, y, idx, code, gW, ga, ws, want_grad):
    """Empirical loss 1/(2 n_b) sum_k (f(x_k) - y_k)^2 over the samples ``idx`` (all n, in order, when
    ``idx`` is empty) as float64; fills gW, ga with its gradient when ``want_grad``. Never writes W, a."""
    check_args(W, a, X, y, code, gW, ga, ws, want_grad)
    sc = ws.scratch
    _entry(W, a, X, y, idx, code, np.int64(0), np.int64(X.shape[0]), np.int64(0), ws.lr1, np.int64(REG_NONE), sc[0],
           sc[1], gW, ga, ws, sc[2], np.int64(GRAD if want_grad else LOSS))
    return sc[2, 0]


@njit
def step(W, a, X, y, idx, code, lr, reg, lam_a, lam_w, gW, ga, ws):
    """One regularized gradient step on the samples ``idx`` (empty: all) in place; returns the loss before
    it (float64), or NaN when the loss or gradient is not finite (W, a are then left unchanged)."""
    check_args(W, a, X, y, code, gW, ga, ws, True)
    sc = ws.scratch
    lr1 = ws.lr1
    lr1[0, 0], lr1[1, 0] = lr_pair(lr)
    sc[0, 0] = lam_a
    sc[1, 0] = lam_w
    _entry(W, a, X, y, idx, code, np.int64(0), np.int64(X.shape[0]), np.int64(0), lr1, reg, sc[0], sc[1], gW, ga,
           ws, sc[2], np.int64(STEP))
    return sc[2, 0]


@njit
def run(W, a, X, y, code, step0, batch, seed, lrs, reg, lam_as, lam_ws, gW, ga, ws, losses):
    """``len(lrs)`` steps from global step ``step0`` (full batch when ``batch >= n``, else the minibatches
    of the module docstring); losses[s] gets the loss before step s. Returns the number of steps done
    (fewer when a non-finite loss or gradient stopped the run). Step sizes of shape (n,) are copied into
    the (2, n) form once per call."""
    check_args(W, a, X, y, code, gW, ga, ws, True)
    if batch < X.shape[0] and ws.perm.shape[0] != X.shape[0]:
        raise ValueError("empirical kernel: minibatches need a workspace made with batch < n")
    n = lr_count(lrs)
    if losses.shape[0] < n or lam_as.shape[0] < n or lam_ws.shape[0] < n:
        raise ValueError("empirical kernel: losses, lam_as and lam_ws need an entry per step")
    return _entry(W, a, X, y, ws.perm, code, step0, batch, seed, as_pairs(lrs), reg, lam_as, lam_ws, gW, ga, ws,
                  losses, np.int64(RUN))
