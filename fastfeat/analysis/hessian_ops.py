"""The exact Hessian of the population objective: dense, and as products (its spectrum: ``spectrum``).

Parameters and ordering
-----------------------
The parameter vector is ``theta = (w_1, ..., w_m, a)``: the rows of ``W`` one after the other (``W``
row-major, ``W.ravel()``), then ``a``; ``P = m d + m``. Everything is computed in float64 (a float32
net and teacher are converted first). The function differentiated is the population loss of
``ff.Population`` plus the regularizer, with the regularizer's strength taken at ``step``:

    L = 1/2 a^T K(W, W) a - a^T K(W, W*) a* + 1/2 a*^T K(W*, W*) a* (+ noise^2/2) + R(W, a),

``K(u, v) = E[sigma(u.x) sigma(v.x)]`` the closed-form kernels of ``fastfeat.math.activations``.

Blocks
------
Write ``H11(u, v) = grad_u grad_u^T K(u, v)``, ``H12(u, v) = grad_u grad_v^T K(u, v)`` and
``grad_u K(u, v) = gamma u + beta v``. Let the "other rows" ``v_k`` run over the student rows (weights
``c_k = a_k``) and the teacher rows (weights ``c_k = -a*_k``). Then

- ``d2L / da_j da_k = K(w_j, w_k)``;
- ``d2L / dw_j da_k = a_j grad_u K(w_j, w_k) + [j = k] r_j`` with ``r_j = sum_k c_k grad_u K(w_j, v_k)``
  (the sum includes ``k = j``, evaluated at ``u = v = w_j``; ``a_j r_j`` is the gradient in ``w_j``);
- ``d2L / dw_j dw_k^T = a_j a_k H12(w_j, w_k) + [j = k] a_j sum_k c_k H11(w_j, v_k)``, again with the
  self pair ``k = j`` in the sum: the self term ``1/2 a_j^2 K(w_j, w_j)`` contributes
  ``a_j^2 (H11 + H12)(w_j, w_j) = 1/2 a_j^2 grad^2 K(w, w)``.

Kernels written as ``K(p, q, c)`` with ``p = |u|^2``, ``q = |v|^2``, ``c = u.v`` (erf, linear, he2, he3):

    H11 = 2 K_p I + 4 K_pp u u^T + 2 K_pc (u v^T + v u^T) + K_cc v v^T
    H12 = K_c I + 4 K_pq u v^T + 2 K_pc u u^T + 2 K_qc v v^T + K_cc v u^T.

The angular kernels (relu, abs, relu_centered) ``K = |u||v| kappa(rho)``, ``rho = u^.v^``, with
``kappa = scale (s + rho theta + shift)``, ``s = sqrt(1 - rho^2)``, ``theta = off - arccos(rho)``,
``kappa' = scale theta``, ``kappa'' = scale / s`` and ``Phi = kappa - rho kappa' = scale (s + shift)``,
are written with ``g_u = v^ - rho u^`` and ``g_v = u^ - rho v^`` (``|g_u| = |g_v| = s``):

    grad_u K = (|v|/|u|) Phi u + kappa' v
    H11 = (|v|/|u|) (Phi (I - u^ u^^T) + (scale / s) g_u g_u^T)
    H12 = kappa' I + Phi u^ v^^T + (scale / s) g_u g_v^T.

``(scale / s) g g^T`` has norm ``scale s``: the Hessian is finite and continuous at ``rho = +-1``
(a student exactly on a teacher direction, two parallel or antiparallel students, the self pair), where
the term vanishes. It is evaluated so that nothing divides by a small ``s`` unprotected: ``s`` of
nearly parallel pairs (``s^2 < 1e-4``) is recomputed as ``|v^ - rho u^|`` instead of from the Gram
matrix, ``arccos(rho) = atan2(s, rho)``, the term is dropped below ``s = 1e-14`` (its size there is under
``1e-14 scale |v|/|u|``), and the vectors ``g`` are formed (dense) or dotted first (products), never
expanded into ``u``, ``v`` terms with ``1/s`` coefficients.

Regularizers: ``WeightDecay`` adds ``lam_w`` on the ``W`` diagonal and ``lam_a`` on the ``a`` diagonal;
``PathNorm`` (``R = lam sum_j |a_j| |w_j|``) adds ``lam |a_j| / |w_j| (I - w^_j w^_j^T)`` to the
``w_j`` block and ``lam sign(a_j) w^_j`` to the ``(w_j, a_j)`` entries.

Where the Hessian does not exist: for the angular kernels at a zero student row ``w_j = 0`` (``K`` is
positively homogeneous of degree one in ``u``, not differentiable at 0), and for ``PathNorm`` with
``lam > 0`` where ``a_j = 0`` or ``w_j = 0``. Both raise ``ValueError`` naming the neurons. Zero teacher
rows contribute nothing (``K(u, 0) = 0``).

``hessian_vector`` uses the same per-pair coefficients without forming ``H``: every term is an
``m x (m + m*)`` coefficient matrix combined with products of ``W``, ``W*`` and the vector, so a product
costs ``O(m (m + m*) d)`` time (a few matrix products) and ``O(t (m + m*))`` memory for row tiles of
``t`` neurons.
"""
import os

import numpy as np

from .._validation import check_int
from ..math.activations import SPEC, smooth_kernel_derivatives
from ..math.regularizer import REG_NONE, REG_PATH_NORM, REG_WEIGHT_DECAY
from ..networks import check_net
from ..objectives.population import Population
from ..regularizers import PathNorm, WeightDecay, check_reg

__all__ = ["hessian", "hessian_vector"]

#: pairs with s^2 = 1 - rho^2 below this get s recomputed from the unit vectors (the Gram form loses
#: digits of s as s -> 0: its absolute error is about sqrt(eps))
_NEAR = 1e-4
#: below this s the term (scale / s) g g^T (norm scale s) is dropped
_TINY = 1e-14
#: elements of one coefficient matrix per row tile of the products (8 MiB in float64)
_TILE_ELEMENTS = 1 << 20
#: coefficient matrices kept between products (hessian_spectrum's operator) up to this many bytes
_KEEP_BYTES = 512 << 20

_ANGULAR = {a.name: a.angular for a in SPEC if a.kernel == "angular"}


# --------------------------------------------------------------------------------------------------
# Validation and the float64 model


class _Model:
    """The float64 weights and everything the coefficients need (validated by ``_prepare``)."""

    def __init__(self, net, objective, lam_a, lam_w, reg_kind):
        t = objective.teacher
        self.activation = net.activation
        self.angular = net.activation in _ANGULAR
        self.consts = _ANGULAR.get(net.activation)
        self.W = np.array(net.W, dtype=np.float64, order="C")
        # the loss is that of the standard net of the same function (second layer s a, s = m^-gamma); the
        # Hessian in the stored parameters scales its a-rows and a-columns by s, and the regularizer acts on
        # the stored a (``a_reg``)
        self.s = float(net.output_factor)
        self.a_reg = np.array(net.a, dtype=np.float64)
        self.a = self.a_reg * self.s if net.gamma != 0 else self.a_reg
        Wt = np.array(t.W, dtype=np.float64, order="C")
        at = np.array(t.a, dtype=np.float64)
        self.m, self.d = self.W.shape
        self.md = self.m * self.d
        self.P = self.md + self.m
        self.n = np.linalg.norm(self.W, axis=1)
        self.inv_n = np.where(self.n > 0, 1.0 / np.where(self.n > 0, self.n, 1.0), 0.0)
        self.Wh = self.W * self.inv_n[:, None]
        # the other rows: students then teachers, with weights a and -a*
        self.V = np.concatenate([self.W, Wt])
        self.c = np.concatenate([self.a, -at])
        self.nv = np.concatenate([self.n, np.linalg.norm(Wt, axis=1)])
        self.inv_nv = np.where(self.nv > 0, 1.0 / np.where(self.nv > 0, self.nv, 1.0), 0.0)
        self.Vh = self.V * self.inv_nv[:, None]
        # the angular kernels vanish at a zero teacher row: its weight is dropped (no 0/0 anywhere)
        self.cm = np.where(self.nv > 0, self.c, 0.0) if self.angular else self.c
        self.lam_a, self.lam_w, self.reg_kind = lam_a, lam_w, reg_kind


def prepare(net, objective, reg, step):
    check_net(net)
    if not isinstance(objective, Population):
        raise TypeError(
            f"objective must be an ff.Population, got {type(objective).__name__}: the Hessian is exact only "
            "for the population loss (closed-form kernels)")
    objective._check(net)
    if objective.teacher.activation != net.activation:
        raise ValueError(
            f"ff.hessian needs the teacher's activation to be the student's ({net.activation!r}), got "
            f"{objective.teacher.activation!r}: the second derivatives of the cross kernels are not written "
            "out (ff.Population's loss and gradient take such a teacher)")
    bad = objective._bad_data()
    if bad is not None:
        raise ValueError(f"objective's {bad} contains NaN or Inf")
    reg = check_reg(reg)
    step = check_int(step, "step", minimum=0)
    lam_a = lam_w = 0.0
    kind = REG_NONE
    if isinstance(reg, WeightDecay):
        la, lw = reg.lams(step, 1)
        lam_a, lam_w, kind = float(la[0]), float(lw[0]), REG_WEIGHT_DECAY
    elif isinstance(reg, PathNorm):
        lam_w = float(reg.lams(step, 1)[1][0])
        kind = REG_PATH_NORM if lam_w > 0 else REG_NONE
    elif reg is not None:
        raise TypeError(f"reg must be ff.WeightDecay, ff.PathNorm or None, got {type(reg).__name__}")
    W = np.asarray(net.W, dtype=np.float64)
    a = np.asarray(net.a, dtype=np.float64)
    zero_rows = np.flatnonzero(~np.any(W != 0, axis=1))
    if net.activation in _ANGULAR and zero_rows.size:
        raise ValueError(
            f"net.W has zero rows (neurons {_listing(zero_rows)}): the population loss of activation "
            f"{net.activation!r} has no Hessian there (its kernel |u||v| kappa(rho) is not differentiable "
            "at u = 0)")
    if kind == REG_PATH_NORM:
        kinks = np.flatnonzero((a == 0) | ~np.any(W != 0, axis=1))
        if kinks.size:
            raise ValueError(
                f"reg: PathNorm (lam={lam_w:g} at step {step}) is not twice differentiable where a_j = 0 or "
                f"w_j = 0, which holds for neurons {_listing(kinks)} of net")
    return _Model(net, objective, lam_a, lam_w, kind)


def _listing(idx, limit=10):
    idx = [int(i) for i in idx]
    more = f", ... ({len(idx)} in all)" if len(idx) > limit else ""
    return "[" + ", ".join(map(str, idx[:limit])) + more + "]"


# --------------------------------------------------------------------------------------------------
# Per-pair coefficients, one tile of rows j0:j1 against every other row (n = m + m* columns)
#
# A tile keeps the x-independent matrices its products need and applies the blocks of the tile's rows
# to a vector; the dense assembly asks it for the same coefficients block row by block row. "c" below
# is a_j c_k (premultiplied), the students' columns are the first m.


class _AngularTile:
    """relu, abs, relu_centered: K = |u||v| kappa(rho)."""

    def __init__(self, M, j0, j1):
        off, scale, shift = M.consts
        self.M, self.j0, self.j1, self.scale = M, j0, j1, scale
        t, m = j1 - j0, M.m
        inu = M.inv_n[j0:j1]
        rho = M.W[j0:j1] @ M.V.T
        rho *= inu[:, None]
        rho *= M.inv_nv[None, :]
        np.clip(rho, -1.0, 1.0, out=rho)
        s = rho * rho
        np.subtract(1.0, s, out=s)
        np.maximum(s, 0.0, out=s)
        rows = np.arange(t)
        rho[rows, j0 + rows] = 1.0  # the self pairs: exactly parallel
        s[rows, j0 + rows] = 0.0
        near = s < _NEAR
        near[rows, j0 + rows] = False
        near[:, M.nv == 0] = False
        np.sqrt(s, out=s)
        r_, k_ = np.nonzero(near)
        chunk = max(1, (1 << 18) // M.d)
        for i in range(0, r_.size, chunk):  # nearly parallel: s = |v^ - rho u^| (the Gram form loses digits)
            rr, kk = r_[i:i + chunk], k_[i:i + chunk]
            g = M.Vh[kk] - rho[rr, kk][:, None] * M.Wh[j0 + rr]
            s[rr, kk] = np.sqrt(np.einsum("ij,ij->i", g, g))
        theta = np.arctan2(s, rho)
        np.subtract(off, theta, out=theta)             # theta = off - arccos(rho)
        phi = scale * (s + shift)                      # kappa - rho kappa'
        big = s > _TINY
        lam = np.divide(scale, s, out=np.zeros_like(s), where=big)  # kappa'' (0 where g = 0)
        aj = M.a[j0:j1]
        cn = M.cm * M.nv
        S1 = phi @ cn
        self.d11 = aj * inu * S1                       # sum_k c (|v|/|u|) Phi
        self.dA = -self.d11 * inu * inu
        self.r = (inu * S1)[:, None] * M.W[j0:j1] + scale * (theta @ (M.cm[:, None] * M.V))
        lam *= (aj * inu)[:, None]
        lam *= cn[None, :]
        self.mL = lam                                  # c (|v|/|u|) kappa''
        self.rho, self.theta, self.phi = rho, theta, phi
        self.mL12 = np.divide(scale, s[:, :m], out=np.zeros((t, m)), where=big[:, :m])
        self.mL12 *= aj[:, None]
        self.mL12 *= M.a[None, :]                      # a_j a_k kappa''
        K = scale * rho[:, :m] * theta[:, :m]
        K += phi[:, :m]
        K *= M.n[j0:j1, None]
        K *= M.n[None, :]
        self.K = K                                     # |u||v| kappa

    # the dense assembly's view of the coefficients
    def h12_row(self, j):
        M, i = self.M, j - self.j0
        aa = M.a[j] * M.a[j:]
        ks = slice(j, M.m)
        return dict(a12=aa * self.scale * self.theta[i, ks],
                    E=aa * self.phi[i, ks] * M.inv_n[j] * M.inv_n[ks], L12=self.mL12[i, ks], rho=self.rho[i, ks])

    def diag_h11(self):
        M = self.M
        W = M.W[self.j0:self.j1]
        D = self.d11[:, None, None] * np.eye(M.d) + self.dA[:, None, None] * W[:, :, None] * W[:, None, :]
        for i in range(self.j1 - self.j0):
            g = M.Vh - self.rho[i][:, None] * M.Wh[self.j0 + i]  # g_u for every other row
            D[i] += (g * self.mL[i][:, None]).T @ g
        return D

    def cross(self):
        """(a_j gamma_jk, a_j beta_jk) over the students k."""
        M, m = self.M, self.M.m
        J = slice(self.j0, self.j1)
        gam = (M.a[J] * M.inv_n[J])[:, None] * self.phi[:, :m] * M.n[None, :]
        bet = (M.a[J] * self.scale)[:, None] * self.theta[:, :m]
        return gam, bet

    def apply(self, X, y, xw, oW, oa):
        M, m, scale = self.M, self.M.m, self.scale
        J = slice(self.j0, self.j1)
        WJ, WhJ, XJ, xwJ, aJ, inuJ = M.W[J], M.Wh[J], X[J], xw[J], M.a[J], M.inv_n[J]
        rho, rhoS = self.rho, self.rho[:, :m]
        thetaS, phiS = self.theta[:, :m], self.phi[:, :m]
        # sum_k c H11(w_j, v_k) X_j: the vectors g_u dotted with X_j first
        MXn = XJ @ M.Vh.T                              # X_j . v^_k
        T = np.multiply(rho, (xwJ * inuJ)[:, None])
        np.subtract(MXn, T, out=T)                     # g_u . X_j
        T *= self.mL
        res = T @ M.Vh
        coefh = np.einsum("jk,jk->j", T, rho)
        res += self.d11[:, None] * XJ
        wcoef = self.dA * xwJ
        # sum_k a_j a_k H12(w_j, w_k) X_k
        MWn = WhJ @ X.T                                # w^_j . X_k
        T2 = np.multiply(rhoS, (xw * M.inv_n)[None, :])
        np.subtract(MWn, T2, out=T2)                   # g_v . X_k
        T2 *= self.mL12
        res += T2 @ M.Wh
        coefh += np.einsum("jk,jk->j", T2, rhoS)
        # kappa' X_k (H12) and the cross block's beta terms share theta; Phi terms share phi
        res += (aJ * scale)[:, None] * (thetaS @ (M.a[:, None] * X + y[:, None] * M.W))
        wcoef += aJ * inuJ * (phiS @ (M.a * M.inv_n * xw + M.n * y))
        res += wcoef[:, None] * WJ - coefh[:, None] * WhJ + self.r * y[J][:, None]
        oW[J] += res
        oa += M.n * (phiS.T @ (aJ * inuJ * xwJ))
        oa += (scale * M.n) * np.einsum("j,jk,jk->k", aJ, thetaS, MXn[:, :m])
        oa += self.K.T @ y[J]
        oa[J] += np.einsum("ja,ja->j", self.r, XJ)


class _SmoothTile:
    """erf, linear, he2, he3: K(p, q, c) with p = |u|^2, q = |v|^2, c = u.v."""

    def __init__(self, M, j0, j1):
        self.M, self.j0, self.j1 = M, j0, j1
        m = M.m
        c = M.W[j0:j1] @ M.V.T
        p = (M.n[j0:j1] ** 2)[:, None]
        q = (M.nv ** 2)[None, :]
        K, Kp, Kc, Kpp, Kpq, Kpc, Kqc, Kcc = smooth_kernel_derivatives(M.activation, p, q, c)
        aj = M.a[j0:j1]
        cV = M.c[:, None] * M.V
        self.d11 = aj * (2 * Kp @ M.c)
        self.dA = aj * (4 * Kpp @ M.c)
        self.r = (2 * Kp @ M.c)[:, None] * M.W[j0:j1] + Kc @ cV
        self.mBV = aj[:, None] * (2 * Kpc @ cV)       # sum_k c B11 v_k
        self.Kpc, self.Kcc = 2 * Kpc, Kcc
        self.Kp2, self.Kc = 2 * Kp[:, :m], np.ascontiguousarray(Kc[:, :m])
        self.Kpq4, self.Kqc2 = 4 * Kpq[:, :m], 2 * Kqc[:, :m]
        self.K = np.array(K[:, :m])

    def h12_row(self, j):
        M, i = self.M, j - self.j0
        aa = M.a[j] * M.a[j:]
        ks = slice(j, M.m)
        return dict(a12=aa * self.Kc[i, ks], E=aa * self.Kpq4[i, ks], F=aa * self.Kpc[i, ks],
                    G=aa * self.Kqc2[i, ks], J=aa * self.Kcc[i, ks])

    def diag_h11(self):
        M = self.M
        d = M.d
        J = slice(self.j0, self.j1)
        W = M.W[J]
        b = self.mBV
        D = self.d11[:, None, None] * np.eye(d) + self.dA[:, None, None] * W[:, :, None] * W[:, None, :]
        D += W[:, :, None] * b[:, None, :] + b[:, :, None] * W[:, None, :]
        VV = (M.V[:, :, None] * M.V[:, None, :]).reshape(-1, d * d)
        D += (M.a[J][:, None] * ((self.Kcc * M.c[None, :]) @ VV)).reshape(-1, d, d)
        return D

    def cross(self):
        aJ = self.M.a[self.j0:self.j1][:, None]
        return aJ * self.Kp2, aJ * self.Kc

    def apply(self, X, y, xw, oW, oa):
        M, m = self.M, self.M.m
        J = slice(self.j0, self.j1)
        WJ, XJ, xwJ, aJ = M.W[J], X[J], xw[J], M.a[J]
        a = M.a
        MX = XJ @ M.V.T                                # X_j . v_k
        # sum_k c H11(w_j, v_k) X_j
        res = self.d11[:, None] * XJ + xwJ[:, None] * self.mBV
        res += aJ[:, None] * ((self.Kcc * MX) @ (M.c[:, None] * M.V))
        wcoef = self.dA * xwJ + aJ * np.einsum("jk,jk,k->j", self.Kpc, MX, M.c)
        # sum_k a_j a_k H12(w_j, w_k) X_k, and the cross block applied to y
        MW = WJ @ X.T                                  # w_j . X_k
        res += aJ[:, None] * (self.Kc @ (a[:, None] * X + y[:, None] * M.W))
        res += aJ[:, None] * (self.Kqc2 @ ((a * xw)[:, None] * M.W))
        res += aJ[:, None] * ((self.Kcc[:, :m] * MW) @ (a[:, None] * M.W))
        wcoef += aJ * (self.Kpq4 @ (a * xw) + np.einsum("jk,jk,k->j", self.Kpc[:, :m], MW, a) + self.Kp2 @ y)
        res += wcoef[:, None] * WJ + self.r * y[J][:, None]
        oW[J] += res
        oa += self.Kp2.T @ (aJ * xwJ) + np.einsum("j,jk,jk->k", aJ, self.Kc, MX[:, :m]) + self.K.T @ y[J]
        oa[J] += np.einsum("ja,ja->j", self.r, XJ)


def _tile(M, j0, j1):
    return _AngularTile(M, j0, j1) if M.angular else _SmoothTile(M, j0, j1)


# --------------------------------------------------------------------------------------------------
# Dense assembly


def dense(M):
    m, d, md, P = M.m, M.d, M.md, M.P
    co = _tile(M, 0, m)
    W, Wh = M.W, M.Wh
    H = np.zeros((P, P))
    D = co.diag_h11()                                  # a_j sum_k c_k H11(w_j, v_k)
    for j in range(m):
        # block row j of a_j a_k H12(w_j, w_k) for k >= j, as (d, m - j, d), then its mirror
        blk = H[j * d:(j + 1) * d, j * d:md].reshape(d, m - j, d)
        cf = co.h12_row(j)
        Wk = W[j:]
        wj = W[j]
        for i in range(d):
            blk[i, :, i] += cf["a12"]
        blk += wj[:, None, None] * (cf["E"][:, None] * Wk)[None, :, :]
        if "F" in cf:
            blk += (wj[:, None] * cf["F"][None, :])[:, :, None] * wj[None, None, :]
            blk += (cf["G"][:, None] * Wk).T[:, :, None] * Wk[None, :, :]
            blk += (cf["J"][:, None] * Wk).T[:, :, None] * wj[None, None, :]
        if "L12" in cf:
            rho = cf["rho"][:, None]
            gu = Wh[j:] - rho * Wh[j]
            gv = Wh[j] - rho * Wh[j:]
            blk += (cf["L12"][:, None] * gu).T[:, :, None] * gv[None, :, :]
        diag = blk[:, 0, :] + D[j]
        blk[:, 0, :] = 0.5 * (diag + diag.T)
        if j + 1 < m:
            H[(j + 1) * d:md, j * d:(j + 1) * d] = H[j * d:(j + 1) * d, (j + 1) * d:md].T
    # the cross block (w_j, a_k) and its mirror; the a block
    gam, bet = co.cross()
    cross = W[:, :, None] * gam[:, None, :] + np.einsum("jk,kb->jbk", bet, W)
    cross[np.arange(m), :, np.arange(m)] += co.r
    H[:md, md:] = cross.reshape(md, m)
    H[md:, :md] = H[:md, md:].T
    H[md:, md:] = 0.5 * (co.K + co.K.T)
    if M.s != 1.0:  # to the stored parameters (a = b / s)
        H[:md, md:] *= M.s
        H[md:, :md] *= M.s
        H[md:, md:] *= M.s * M.s
    _add_regdense(M, H)
    return H


def _add_regdense(M, H):
    m, d, md = M.m, M.d, M.md
    if M.reg_kind == REG_WEIGHT_DECAY:
        idx = np.arange(md)
        H[idx, idx] += M.lam_w
        idx = np.arange(md, md + m)
        H[idx, idx] += M.lam_a
    elif M.reg_kind == REG_PATH_NORM:
        lam = M.lam_w
        for j in range(m):
            wh = M.Wh[j]
            sl = slice(j * d, (j + 1) * d)
            H[sl, sl] += (lam * abs(M.a_reg[j]) * M.inv_n[j]) * (np.eye(d) - np.outer(wh, wh))
            v = lam * np.sign(M.a_reg[j]) * wh
            H[sl, md + j] += v
            H[md + j, sl] += v


# --------------------------------------------------------------------------------------------------
# Products


class Operator:
    """v -> H v from the per-pair coefficients, in row tiles; ``keep`` holds the tiles between calls when
    they fit in ``_KEEP_BYTES``."""

    def __init__(self, M, keep=False):
        self.M = M
        n = M.V.shape[0]
        t = max(1, min(M.m, _TILE_ELEMENTS // max(n, 1)))
        self.tiles = [(j0, min(j0 + t, M.m)) for j0 in range(0, M.m, t)]
        self._kept = None
        if keep and M.m * n * 8 * 8 <= _KEEP_BYTES:
            self._kept = [_tile(M, j0, j1) for j0, j1 in self.tiles]

    def apply(self, Vm):
        """Vm: (P, k) float64 -> (P, k)."""
        M = self.M
        m, d, md = M.m, M.d, M.md
        k = Vm.shape[1]
        out = np.zeros((M.P, k))
        Xs = [np.ascontiguousarray(Vm[:md, i].reshape(m, d)) for i in range(k)]
        ys = [np.ascontiguousarray(Vm[md:, i]) for i in range(k)]
        ys_fn = ys if M.s == 1.0 else [M.s * y for y in ys]  # the directions of the function's second layer
        xws = [np.einsum("ja,ja->j", X, M.W) for X in Xs]
        oWs = [np.zeros((m, d)) for _ in range(k)]
        oas = [np.zeros(m) for _ in range(k)]
        for ti, (j0, j1) in enumerate(self.tiles):
            tile = self._kept[ti] if self._kept is not None else _tile(M, j0, j1)
            for i in range(k):
                tile.apply(Xs[i], ys_fn[i], xws[i], oWs[i], oas[i])
        for i in range(k):
            if M.s != 1.0:
                oas[i] *= M.s
            self._reg(Xs[i], ys[i], oWs[i], oas[i])
            out[:md, i] = oWs[i].ravel()
            out[md:, i] = oas[i]
        return out

    def _reg(self, X, y, oW, oa):
        M = self.M
        if M.reg_kind == REG_WEIGHT_DECAY:
            oW += M.lam_w * X
            oa += M.lam_a * y
        elif M.reg_kind == REG_PATH_NORM:
            lam = M.lam_w
            t = np.einsum("ja,ja->j", M.Wh, X)
            sa = np.sign(M.a_reg)
            oW += (lam * np.abs(M.a_reg) * M.inv_n)[:, None] * (X - M.Wh * t[:, None]) + (lam * sa * y)[:, None] * M.Wh
            oa += lam * sa * t


# --------------------------------------------------------------------------------------------------
# Public API


def hessian(net, objective, reg=None, *, step=0):
    """The exact Hessian of the population loss plus a regularizer, as a dense matrix.

    Parameters
    ----------
    net : ff.TwoLayer
        The student; float32 weights are converted to float64 first.
    objective : ff.Population
        The population objective (its teacher and activation). Other objectives raise ``TypeError``:
        the Hessian is exact only for the closed-form population loss.
    reg : ff.WeightDecay, ff.PathNorm or None
        Added to the loss, with its strength at ``step``.
    step : int
        The global step at which a scheduled regularizer strength is evaluated.

    Returns
    -------
    numpy.ndarray
        ``(P, P)`` float64, ``P = m d + m``, symmetric: parameters ordered as ``W.ravel()`` (rows
        ``w_1, ..., w_m``) then ``a``.

    Raises
    ------
    ValueError
        Where the Hessian does not exist: a zero row ``w_j`` for relu, abs or relu_centered, or
        ``PathNorm`` (strength > 0) at a neuron with ``a_j = 0`` or ``w_j = 0``; the message names the
        neurons.

    Notes
    -----
    Memory is ``8 P^2`` bytes (231 MB for m = 256, d = 20); for wider nets use ``hessian_vector``. A
    matrix larger than the machine's memory raises ``MemoryError`` saying so, before anything is built.
    """
    M = prepare(net, objective, reg, step)
    check_dense_memory(M.P, "ff.hessian")
    return dense(M)


def _physical_memory():
    """The machine's memory in bytes (None where it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_dense_memory(P, who):
    """MemoryError naming the way out when a dense P x P float64 matrix exceeds the machine's memory."""
    need, have = 8 * P * P, _physical_memory()
    if have is not None and need > have:
        raise MemoryError(f"{who} needs the dense Hessian of P = {P} parameters: {need / 2**30:,.1f} GiB, more than "
                          f"this machine's {have / 2**30:,.1f} GiB; use ff.hessian_vector for products, or "
                          "ff.hessian_spectrum(k=..., method='lanczos') for the smallest eigenvalues")


def _check_vector(v, P):
    if not isinstance(v, np.ndarray):
        try:
            v = np.asarray(v)
        except Exception as exc:  # pragma: no cover - odd objects
            raise TypeError(f"v must be an array of shape ({P},) or ({P}, k)") from exc
    if v.dtype.kind not in "fiu" or v.dtype == np.bool_:
        raise TypeError(f"v must be a real numeric array of shape ({P},) or ({P}, k), got dtype {v.dtype}")
    if v.ndim not in (1, 2) or v.shape[0] != P or (v.ndim == 2 and v.shape[1] < 1):
        raise ValueError(f"v must have shape ({P},) or ({P}, k) (P = m d + m), got shape {v.shape}")
    v = np.asarray(v, dtype=np.float64)
    if not np.all(np.isfinite(v)):
        raise ValueError("v contains NaN or Inf")
    return v


def hessian_vector(net, objective, v, reg=None, *, step=0):
    """Hessian-vector products ``H v`` without forming ``H``.

    Parameters
    ----------
    net : ff.TwoLayer
        The student (float32 is converted to float64).
    objective : ff.Population
        The population objective.
    v : array_like
        Shape ``(P,)`` or ``(P, k)``, ``P = m d + m``, in the parameter order of ``hessian``
        (``W.ravel()`` then ``a``).
    reg : ff.WeightDecay, ff.PathNorm or None
        Added to the loss, with its strength at ``step``.
    step : int
        The global step at which a scheduled regularizer strength is evaluated.

    Returns
    -------
    numpy.ndarray
        ``H v``, float64, of the shape of ``v``; equal to ``hessian(...) @ v`` up to rounding.

    Notes
    -----
    Time ``O(m (m + m*) d)`` per column (a few matrix products of that size plus elementwise passes over
    ``m x (m + m*)`` coefficient matrices); memory ``O(t (m + m*))`` for row tiles of ``t`` neurons
    (about 8 MiB per coefficient matrix), never ``O(P^2)``. The coefficients are computed once per call
    and shared by the columns of a 2-d ``v``.
    """
    M = prepare(net, objective, reg, step)
    v = _check_vector(v, M.P)
    Vm = v[:, None] if v.ndim == 1 else v
    out = Operator(M).apply(Vm)
    return out[:, 0] if v.ndim == 1 else out
