"""Empirical loss and gradient on a fixed data set: the fused, sample-tiled CPU kernel.

    L = 1/(2 n) sum_k r_k^2,   r_k = f(x_k) - y_k,   f(x) = sum_j a_j phi(w_j, x)
    g_a[j] = 1/n sum_k r_k phi(w_j, x_k)
    g_W[j] = 1/n sum_k r_k a_j sigma'(z_kj) x_k  +  a_j c_norm (1/n sum_k r_k) w_j / |w_j|

(``c_norm = dneuron_dnorm``: nonzero only for ``relu_centered``, whose neuron has the ``-|w|/sqrt(2 pi)``
term.) Strategy (DESIGN.md section 5): the samples are processed in tiles of ``t`` rows. Per tile

1. ``Z = X_t W^T`` (BLAS, t x m);
2. one parallel pass over the rows of ``Z``: the row's outputs ``phi`` and ``f_k``, the residual, then
   in place ``Z[k, j] <- (r_k / n) a_j sigma'(z_kj)`` (the back-propagated signal ``D``) while
   ``r_k phi_kj / n`` is summed per chunk of ``ROW_CHUNK`` rows in the working precision (a loop that
   vectorizes) and then added to that chunk's float64 partial of ``g_a``;
3. ``g_W += D^T X_t`` (BLAS, with beta = 1 through ``_blas.gemm_tn``: no temporary, no extra pass).

The ``n x m`` matrix never exists: memory is ``O(t m)`` (``t`` chosen so the ``t x m`` block is about
``TILE_BYTES`` = 8 MB). The row chunks are fixed (``ROW_CHUNK`` rows), so apart from BLAS the sums do
not depend on the thread count. Then the regularizer and the guarded update (``common.add_reg_grad``,
``common.sgd_update``).

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

The elementwise pass has no per-element activation branch: kernels are compiled per *kind*
(``KIND_OF[code]``), and each kind's formula is branch-free:

- ``ALG`` (relu, abs, relu_centered, linear, he2, he3): ``phi = sh_j + z (s(z) + z (c2 + z c3))`` with
  ``s(z) = alpha if z > 0 else beta`` and ``sigma' = (alpha | beta | gamma at z = 0) + z (2 c2 + 3 c3 z)``,
  ``sh_j = c0 + c_norm |w_j|``. The coefficients are derived from the activation table
  (``fastfeat.math.activations``) at import and checked against it there, so the table stays the one
  definition.
- ``ERF`` and ``TANH``: the table's ``neuron`` / ``dneuron`` with the code fixed at compile time
  (``tanh`` stores ``tanh z`` in the first sweep and gets ``sigma' = 1 - tanh^2`` from it).

Minibatches: ``idx`` lists the samples of the batch (rows are gathered tile by tile into a ``t x d``
buffer); an empty ``idx`` means the whole data set in order. ``run`` draws the batches: with ``B`` the
batch size and ``nb = ceil(n / B)`` batches per epoch, global step ``s`` is batch ``s % nb`` of epoch
``s // nb``, i.e. samples ``perm_e[b B : min((b + 1) B, n)]`` (the last batch of an epoch may be
smaller) where ``perm_e = _rng.shuffle(seed, e)`` depends only on (seed, epoch): resuming at any step
reproduces an uninterrupted run.
"""

import numba
import numpy as np
from numba import prange

from ...math.activations import ERF, NAMES, TANH
from ._blas import gemm_nt, gemm_tn
from ._finite import finite, isnan
from . import masked
from ._jit import TABLE32, TABLE64, njit, pnjit
from ._rng import shuffle
from .common import add_reg_grad, row_norms, sgd_update

KIND_ALG, KIND_ERF, KIND_TANH, KIND_STEP = 0, 1, 2, 3
#: activation code -> formula kind (ALG, ERF or TANH; shared with the online kernels)
KIND_OF = np.array([KIND_ERF if c == ERF else KIND_TANH if c == TANH else KIND_ALG for c in range(len(NAMES))],
                   np.int64)
#: rows per parallel task in the elementwise pass (fixed: the g_a partial sums do not depend on threads)
ROW_CHUNK = 16
#: bytes of the per-tile pre-activation block (t * m entries) the default tile aims for. Measured at
#: n=8192, d=256, m=2048 float32 on 2 cores (numpy's OpenBLAS, interleaved runs, noisy machine): step /
#: GEMMs 0.97-1.17 for tiles of 2 to 32 MB with no consistent winner; 8 MB keeps the block in the L3
#: cache and memory small (with scipy's BLAS, 4 MB tiles had measured 1.3-1.5 against 1.1-1.2 for 32 MB)
TILE_BYTES = 1 << 23


def _alg_params(code):
    """(alpha, beta, gamma, c0, c2, c3, c_norm) of an ALG activation, from the float64 table; checked."""
    T = TABLE64
    phi = lambda z: float(T.neuron.py_func(code, np.float64(z), np.float64(0.0)))  # noqa: E731
    dphi = lambda z: float(T.dneuron.py_func(code, np.float64(z)))  # noqa: E731
    c0 = phi(0.0)
    alpha, c2, c3 = np.linalg.solve(np.array([[1.0, 1, 1], [2, 4, 8], [1, 2, 3]]),
                                    np.array([phi(1.0) - c0, phi(2.0) - c0, dphi(1.0)]))
    beta = c2 - c3 - (phi(-1.0) - c0)
    gamma = dphi(0.0)
    p = np.round(np.array([alpha, beta, gamma, c0, c2, c3, 0.0]), 12)  # simple rationals: drop the
    p[6] = float(T.dneuron_dnorm.py_func(code))                            # solve's rounding
    for z in (-2.5, -0.7, 0.0, 0.4, 1.9, 3.1):
        s = p[0] if z > 0 else p[1]
        ds = p[0] if z > 0 else (p[1] if z < 0 else p[2])
        assert abs(p[3] + z * (s + z * (p[4] + z * p[5])) - phi(z)) <= 1e-12 * (1 + abs(phi(z))), (code, z)
        assert abs(ds + z * (2 * p[4] + 3 * p[5] * z) - dphi(z)) <= 1e-12 * (1 + abs(dphi(z))), (code, z)
    return p


_P = np.zeros((len(NAMES), 7))
for _c in range(len(NAMES)):
    if KIND_OF[_c] == KIND_ALG:
        _P[_c] = _alg_params(_c)
PARAMS64 = _P
PARAMS32 = _P.astype(np.float32)
#: activation code -> empirical kernel kind: ALG activations whose derivative takes two values,
#: ``beta`` for z <= 0 and ``alpha`` for z > 0 (c2 = c3 = 0 and sigma'(0) = beta: relu,
#: relu_centered, linear), get the KIND_STEP kernel, whose weight gradient is a bit-matrix product
#: (``masked``) instead of a GEMM. abs (sigma'(0) = 0, not beta = -1) stays ALG.
EMP_KIND_OF = np.array([KIND_STEP if KIND_OF[c] == KIND_ALG and _P[c, 4] == 0 and _P[c, 5] == 0
                        and _P[c, 1] == _P[c, 2] else KIND_OF[c] for c in range(len(NAMES))], np.int64)


def default_tile(m, rows, itemsize=4):
    """Samples per tile: about ``TILE_BYTES / (m itemsize)``, a multiple of 16, at most ``rows``."""
    t = max(16, min(16384, (TILE_BYTES // (max(m, 1) * itemsize)) // 16 * 16))
    return int(max(1, min(t, rows)))


def workspace(n, m, d, dtype, batch=None, tile=None):
    """Buffers for the empirical kernels on ``n`` samples (allocated once, reused every step).

    ``batch``: the minibatch size (None or >= n: full batch). ``tile``: samples per tile (default
    ``default_tile``). Returns the tuple ``(zbuf, xg, yg, rb, lrow, gpart, gchunk, sh, nrm, perm, bits,
    S, ybuf, tabs, plan, ypart)``; the last six serve the KIND_STEP kernels (``masked.workspace``:
    the tile's sign bits, the product ``M^T Y`` over all tiles, the tile's rows ``y_k = (r_k / n) x_k``,
    the workers' tables and work split) and ``ypart`` the row-chunk partials of ``sum_k y_k``.
    """
    dtype = np.dtype(dtype)
    full = batch is None or batch >= n
    rows = n if full else batch
    t = default_tile(m, rows, dtype.itemsize) if tile is None else int(max(1, min(tile, rows)))
    nrc = (t + ROW_CHUNK - 1) // ROW_CHUNK
    return (
        np.empty(t * m, dtype),                       # Z / D block of one tile
        np.empty((t if not full else 1, d), dtype),   # gathered rows of a minibatch tile
        np.empty(t, dtype),                           # gathered labels / tile labels
        np.empty(t, dtype),                           # r_k / n of the tile
        np.empty(t, np.float64),                      # r_k^2 of the tile
        np.empty((nrc, m), np.float64),               # per-row-chunk partials of g_a (all tiles)
        np.empty((nrc, m), dtype),                    # the same for the current tile
        np.empty(m, dtype),                           # shift sh_j = c0 + c_norm |w_j|
        np.empty(m, dtype),                           # |w_j|
        np.empty(0 if full else n, np.int64),         # the epoch's permutation
        *masked.workspace(m, d, t, dtype, numba.config.NUMBA_NUM_THREADS),
        np.zeros((nrc, d), np.float64),               # per-row-chunk partials of sum_k y_k
    )


@njit
def _gather(X, y, idx, k0, xg, yg):
    """Rows idx[k0:k0+t] of X, y into xg, yg (serial: a t x d copy next to t m d multiply-adds)."""
    t = yg.shape[0]
    d = X.shape[1]
    for r in range(t):
        k = idx[k0 + r]
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


def _make(T, kind):
    ft = T.ftype
    zero = ft(0.0)
    one = ft(1.0)
    three = ft(3.0)
    neuron = T.neuron
    dneuron = T.dneuron
    P = PARAMS32 if ft == np.float32 else PARAMS64
    store_v = kind == KIND_TANH
    RC = ROW_CHUNK

    if kind == KIND_ALG or kind == KIND_STEP:
        @njit(inline="always")
        def fwd(z, sh, p):
            s = p[0] if z > zero else p[1]
            return sh + z * (s + z * (p[4] + z * p[5])), z

        @njit(inline="always")
        def bwd(z, sh, p):
            s = p[0] if z > zero else p[1]
            ds = p[0] if z > zero else (p[1] if z < zero else p[2])
            return sh + z * (s + z * (p[4] + z * p[5])), ds + z * (p[4] + p[4] + three * p[5] * z)
    elif kind == KIND_ERF:
        @njit(inline="always")
        def fwd(z, sh, p):
            return neuron(ERF, z, zero), z

        @njit(inline="always")
        def bwd(z, sh, p):
            return neuron(ERF, z, zero), dneuron(ERF, z)
    else:
        @njit(inline="always")
        def fwd(z, sh, p):
            t = neuron(TANH, z, zero)
            return t, t

        @njit(inline="always")
        def bwd(t, sh, p):
            return t, one - t * t

    @pnjit
    def rows(Z, a, sh, p, yt, inv_n, rb, lrow, gpart, gchunk, want_grad):
        """The fused elementwise pass over one tile (see the module docstring)."""
        t, m = Z.shape
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

    @pnjit
    def rows_step(Z, a, sh, p, yt, Xt, inv_n, rb, lrow, bits, ybuf, ypart, want_grad, want_bits, want_ysum):
        """The elementwise pass of a KIND_STEP kernel over one tile: only the forward sweep of ``rows``.
        The sign bits ``[z_kj > 0]`` go to ``bits`` (``masked``'s layout: a chunk of RC rows fills whole
        bytes) and the rows ``y_k = (r_k / n) x_k`` to ``ybuf``; ``ypart`` sums them per chunk (float64)
        when ``want_ysum``. Z is only read, and once: ``step_grad`` gets g_a from the products."""
        t, m = Z.shape
        d = Xt.shape[1]
        nrc = (t + RC - 1) // RC
        for c in prange(nrc):
            r0 = c * RC
            r1 = min(r0 + RC, t)
            for r in range(r0, r1):
                zr = Z[r]
                f = zero
                if want_bits:
                    br = bits[r >> 3]
                    sft = r & 7
                    keep = np.uint8(0 if sft == 0 else 0xFF)  # the group's first row starts the bytes
                    for j in range(m):
                        z = zr[j]
                        f += a[j] * fwd(z, sh[j], p)[0]
                        br[j] = (br[j] & keep) | np.uint8(np.uint8(z > zero) << sft)
                else:
                    for j in range(m):
                        f += a[j] * fwd(zr[j], sh[j], p)[0]
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
                    v += beta * ft(ys[i])
                gW[j, i] = aj * v
                dot += np.float64(W[j, i]) * v
            ga[j] = ft(np.float64(sh[j]) * R + dot)

    @njit(inline="always")
    def loss_grad(W, a, X, y, idx, code, gW, ga, ws, want_grad):
        """Empirical loss 1/(2 n_b) sum_k (f(x_k) - y_k)^2 over the samples ``idx`` (all n, in order,
        when ``idx`` is empty); fills gW, ga with its gradient when ``want_grad``. Never writes W, a.
        Returns the loss as float64."""
        zbuf, xg, yg, rb, lrow, gpart, gchunk, sh, nrm = ws[:9]
        m, d = W.shape
        full = idx.shape[0] == 0
        nb = X.shape[0] if full else idx.shape[0]
        tile = yg.shape[0]
        p = (P[code, 0], P[code, 1], P[code, 2], P[code, 3], P[code, 4], P[code, 5])
        cn = P[code, 6]
        if cn != 0:
            row_norms(W, nrm)
            for j in range(m):
                sh[j] = P[code, 3] + cn * nrm[j]
        else:
            sh[:] = P[code, 3]
        nrc = (min(tile, nb) + RC - 1) // RC
        gpart[:nrc] = 0.0
        inv_n = ft(1.0 / nb)
        bits, S, ybuf, tabs, plan, ypart = ws[10], ws[11], ws[12], ws[13], ws[14], ws[15]
        da = P[code, 0] - P[code, 1]
        beta = P[code, 1]
        want_bits = want_grad and da != 0
        want_ysum = want_grad and beta != 0
        if kind == KIND_STEP and want_ysum:
            ypart[:nrc] = 0.0
        loss = 0.0
        R = 0.0
        for k0 in range(0, nb, tile):
            k1 = min(k0 + tile, nb)
            t = k1 - k0
            if full:
                Xt = X[k0:k1]
                yt = y[k0:k1]
            else:
                Xt = xg[:t]
                yt = yg[:t]
                _gather(X, y, idx, k0, Xt, yt)
            Z = zbuf[: t * m].reshape(t, m)
            gemm_nt(Xt, W, Z, False)
            if kind == KIND_STEP:
                rows_step(Z, a, sh, p, yt, Xt, inv_n, rb, lrow, bits, ybuf, ypart, want_grad, want_bits, want_ysum)
            else:
                rows(Z, a, sh, p, yt, inv_n, rb, lrow, gpart, gchunk, want_grad)
            for r in range(t):
                loss += lrow[r]
                R += rb[r]
            if want_grad:
                if kind != KIND_STEP:
                    gemm_tn(Z, Xt, gW, k0 > 0)
                elif want_bits:
                    masked.masked_tn(bits, ybuf, S, tabs, (t + 7) // 8 * 8, k0 > 0, plan)
        if want_grad:
            if kind == KIND_STEP:
                step_grad(W, a, S, ypart, nrc, da, beta, sh, R, gW, ga)
            _finish(W, a, gW, ga, gpart, nrc, cn, R, nrm, kind != KIND_STEP)
        return 0.5 * loss / nb

    @njit(inline="always")
    def step(W, a, X, y, idx, code, lr, reg, lam_a, lam_w, gW, ga, ws):
        """One gradient step on the samples ``idx`` (empty: all) in place; returns the loss before it
        (float64), or NaN when the loss or gradient is not finite (W, a are then left unchanged)."""
        loss = loss_grad(W, a, X, y, idx, code, gW, ga, ws, True)
        ok = add_reg_grad(W, a, gW, ga, reg, lam_a, lam_w)
        if not (ok and finite(loss)):
            return np.nan
        sgd_update(W, a, gW, ga, lr)
        return loss

    @njit(inline="always")
    def run(W, a, X, y, code, step0, batch, seed, lrs, reg, lam_as, lam_ws, gW, ga, ws, losses):
        """len(lrs) steps starting at global step ``step0``: full batch when ``batch >= n``, else the
        minibatches of the module docstring. losses[s] gets the (minibatch) loss before step s.
        Returns the number of steps done (fewer when a non-finite loss or gradient stopped it)."""
        perm = ws[9]
        n = X.shape[0]
        full = batch >= n
        nb = (n + batch - 1) // batch
        for s in range(lrs.shape[0]):
            g = step0 + s
            if full:
                idx = perm[:0]
            else:
                b = g % nb
                if s == 0 or b == 0:
                    shuffle(perm, seed, g // nb)
                idx = perm[b * batch: min(n, (b + 1) * batch)]
            loss = step(W, a, X, y, idx, code, lrs[s], reg, lam_as[s], lam_ws[s], gW, ga, ws)
            losses[s] = loss
            if isnan(loss):
                return s
        return lrs.shape[0]

    @njit
    def entry(W, a, X, y, code, step0, batch, seed, lrs, reg, lam_as, lam_ws, gW, ga, ws, losses, mode):
        """What the objective calls: ``mode`` 0 the full-data loss into losses[0], 1 the loss and the
        full-batch gradient, 2 ``run``. Returns ``run``'s count (1 for modes 0 and 1).

        Numba re-generates machine code for every compiled caller of a function, so the kernels above
        are inlined into this one entry point: one compilation serves ``Empirical.loss``, ``grad`` and
        ``ff.train`` (the public ``loss_grad``/``step``/``run`` compile on demand)."""
        if mode < 2:
            losses[0] = loss_grad(W, a, X, y, ws[9][:0], code, gW, ga, ws, mode == 1)
            return 1
        return run(W, a, X, y, code, step0, batch, seed, lrs, reg, lam_as, lam_ws, gW, ga, ws, losses)

    return loss_grad, step, run, entry


#: KERNELS[(kind, dtype)] = (loss_grad, step, run, entry); compiled lazily on first call
KERNELS = {}
for _k in (KIND_ALG, KIND_ERF, KIND_TANH, KIND_STEP):
    KERNELS[(_k, np.dtype(np.float32))] = _make(TABLE32, _k)
    KERNELS[(_k, np.dtype(np.float64))] = _make(TABLE64, _k)


def kernels(code, dtype):
    """(loss_grad, step, run, entry) for activation ``code`` and float ``dtype``."""
    return KERNELS[(int(EMP_KIND_OF[code]), np.dtype(dtype))]


def _any_kind(dtype):
    """njit kernels that dispatch on the activation code at run time (compile all four kinds)."""
    (lg0, st0, rn0, _), (lg1, st1, rn1, _), (lg2, st2, rn2, _), (lg3, st3, rn3, _) = (
        KERNELS[(k, np.dtype(dtype))] for k in range(4))
    kind_of = EMP_KIND_OF

    @njit
    def loss_grad(W, a, X, y, idx, code, gW, ga, ws, want_grad):
        k = kind_of[code]
        if k == KIND_STEP:
            return lg3(W, a, X, y, idx, code, gW, ga, ws, want_grad)
        elif k == KIND_ALG:
            return lg0(W, a, X, y, idx, code, gW, ga, ws, want_grad)
        elif k == KIND_ERF:
            return lg1(W, a, X, y, idx, code, gW, ga, ws, want_grad)
        return lg2(W, a, X, y, idx, code, gW, ga, ws, want_grad)

    @njit
    def step(W, a, X, y, idx, code, lr, reg, lam_a, lam_w, gW, ga, ws):
        k = kind_of[code]
        if k == KIND_STEP:
            return st3(W, a, X, y, idx, code, lr, reg, lam_a, lam_w, gW, ga, ws)
        elif k == KIND_ALG:
            return st0(W, a, X, y, idx, code, lr, reg, lam_a, lam_w, gW, ga, ws)
        elif k == KIND_ERF:
            return st1(W, a, X, y, idx, code, lr, reg, lam_a, lam_w, gW, ga, ws)
        return st2(W, a, X, y, idx, code, lr, reg, lam_a, lam_w, gW, ga, ws)

    @njit
    def run(W, a, X, y, code, step0, batch, seed, lrs, reg, lam_as, lam_ws, gW, ga, ws, losses):
        k = kind_of[code]
        if k == KIND_STEP:
            return rn3(W, a, X, y, code, step0, batch, seed, lrs, reg, lam_as, lam_ws, gW, ga, ws, losses)
        elif k == KIND_ALG:
            return rn0(W, a, X, y, code, step0, batch, seed, lrs, reg, lam_as, lam_ws, gW, ga, ws, losses)
        elif k == KIND_ERF:
            return rn1(W, a, X, y, code, step0, batch, seed, lrs, reg, lam_as, lam_ws, gW, ga, ws, losses)
        return rn2(W, a, X, y, code, step0, batch, seed, lrs, reg, lam_as, lam_ws, gW, ga, ws, losses)

    return loss_grad, step, run


LOSS_GRAD32, STEP32, RUN32 = _any_kind(np.float32)
LOSS_GRAD64, STEP64, RUN64 = _any_kind(np.float64)
