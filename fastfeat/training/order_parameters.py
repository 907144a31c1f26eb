"""``ff.ode``: the order-parameter ODEs of online SGD in the limit of high input dimension.

For the two-layer model of ``ff.Online`` (``f(x) = sum_j a_j g(w_j . x)``, ``x ~ N(0, I_d)``, a teacher
``y = sum_n a*_n g(w*_n . x) + noise``, batch 1), the overlaps ``Q = W W^T``, ``M = W W*^T`` and the second
layer ``a`` follow, as ``d -> infinity``, deterministic ODEs in the time ``alpha = steps / d`` (Saad &
Solla, Phys. Rev. E 52, 4225 (1995); Biehl & Schwarze 1995; Goldt et al., NeurIPS 2019 with the second
layer trained), when SGD takes the step sizes ``lr / d`` (W) and ``lr_a / d`` (a). With the local fields
``u = (w_1 . x, ..., w_m . x, w*_1 . x, ..., w*_m* . x) ~ N(0, C)``, ``C = [[Q, M], [M^T, P]]``, and the error
``e = sum_r c_r g(u_r) - zeta`` (``c = (a, -a*)``, ``zeta`` the label noise of variance ``sigma^2``):

    dM_jn/dalpha = -lr a_j sum_r c_r I3(j, m+n, r)                               - lr reg_W(j) M_jn
    dQ_jk/dalpha = -lr (a_j sum_r c_r I3(j, k, r) + a_k sum_r c_r I3(k, j, r))  - lr (reg_W(j) + reg_W(k)) Q_jk
                   + lr^2 a_j a_k (sum_rs c_r c_s I4(j, k, r, s) + sigma^2 J2(j, k))
    da_j/dalpha  = -lr_a (sum_r c_r I2(j, r) + reg_a(j))

with ``I2(p, q) = E[g(u_p) g(u_q)]``, ``J2(p, q) = E[g'(u_p) g'(u_q)]``, ``I3(p, q, r) = E[g'(u_p) u_q g(u_r)]``,
``I4(p, q, r, s) = E[g'(u_p) g'(u_q) g(u_r) g(u_s)]``; weight decay gives ``reg_W(j) = lam_w``,
``reg_a(j) = lam_a a_j``, the path norm ``lam (sum_j |a_j| |w_j|)`` gives ``reg_W(j) = lam |a_j| / sqrt(Q_jj)``,
``reg_a(j) = lam sign(a_j) sqrt(Q_jj)`` (the regularizer's second-order terms vanish as 1/d). The loss
is ``1/2 sum_rs c_r c_s I2(r, s) + sigma^2 / 2``, the population loss of ``ff.Population`` for a network
with these overlaps.

The Gaussian averages, for every activation of ``ODE_ACTIVATIONS`` and every pair of them, are in
``ode_averages``. The ODE is integrated by a compiled Dormand-Prince 5(4) pair with Hairer's step-size control.
"""
import math

import numpy as np

from .._validation import check_float, check_int, check_noise
from numba import prange

from ..kernels.cpu._jit import njit, pnjit
from ..kernels.cpu.scalar import asin
from ..math.regularizer import REG_PATH_NORM, REG_WEIGHT_DECAY
from ..networks import check_net, check_teacher
from ..regularizers import check_reg
from .common import log_grid, reg_pieces
from .history import History
from .ode_averages import (LINEAR_ANGULAR, MIXABLE, ODE_ACTIVATIONS, POLYNOMIAL, _4PI2, _CODES, _i2, _i3, _i4,
                           _j2)


@njit
def _student_pair(idx, m):
    """The ``idx``-th pair (j, k), j <= k < m, in the order (0, 0), (0, 1), ..., (0, m-1), (1, 1), ..."""
    j = np.int64(0)
    rem = np.int64(idx)  # (a prange index may be unsigned: with int64 it would mix to float64)
    while rem >= m - j:
        rem -= m - j
        j += 1
    return j, j + rem


@pnjit
def _quad_all(kind, fk, C, c, K, m, noise2, quad):
    """quad[j, k] = sum_rs c_r c_s I4(j, k, r, s) + noise2 J2(j, k) for the students j <= k (the second-order
    term of dQ), in parallel over j. For erf the (j, k) factors are taken out of the double sum, whose
    inner loop is then a few multiply-adds and the branch-free arcsine: it vectorizes. For he2 and he3 each
    term is a table of Gaussian moments (``_wick``), O(deg^4) operations; for the angular activations a
    quadrature in one variable (``_ang_i4``), of each unordered pair (r, s) once, in parallel over the
    student pairs (j, k) rather than over j, whose rows hold m - j pairs each: with 2 threads and m = 4
    one thread had 7 of the 10 quadratures."""
    if kind >= 4:  # the angular activations: I4 by quadrature, symmetric in (r, s)
        for idx in prange(m * (m + 1) // 2):
            j, k = _student_pair(idx, m)
            s = 0.0
            for r in range(K):
                s += c[r] * c[r] * _i4(kind, fk, C, j, k, r, r)
                for q in range(r + 1, K):
                    s += 2.0 * c[r] * c[q] * _i4(kind, fk, C, j, k, r, q)
            quad[j, k] = s + noise2 * _j2(kind, fk[j], fk[k], C[j, j], C[k, k], C[j, k])
        return
    for j in prange(m):
        L1 = np.empty(K)
        for k in range(j, m):
            if kind >= 2:
                s = 0.0
                for r in range(K):
                    for q in range(K):
                        s += c[r] * c[q] * _i4(kind, fk, C, j, k, r, q)
                quad[j, k] = s + noise2 * _j2(kind, fk[j], fk[k], C[j, j], C[k, k], C[j, k])
                continue
            if kind == 1:
                s = 0.0
                for r in range(K):
                    for q in range(K):
                        s += c[r] * c[q] * C[r, q]
                quad[j, k] = s + noise2
                continue
            cpp, cqq, cpq = C[j, j], C[k, k], C[j, k]
            lam4 = (1.0 + cpp) * (1.0 + cqq) - cpq * cpq
            for r in range(K):
                cpr, cqr = C[j, r], C[k, r]
                lam1 = lam4 * (1.0 + C[r, r]) - cqr * cqr * (1.0 + cpp) - cpr * cpr * (1.0 + cqq) + 2.0 * cpq * cpr * cqr
                L1[r] = 1.0 / math.sqrt(lam1)
            total = 0.0
            for r in range(K):
                cpr, cqr, lr_ = C[j, r], C[k, r], L1[r]
                acc = 0.0
                for s_ in range(K):
                    cps, cqs = C[j, s_], C[k, s_]
                    lam0 = (lam4 * C[r, s_] - cqr * cqs * (1.0 + cpp) - cpr * cps * (1.0 + cqq)
                            + cpq * (cpr * cqs + cps * cqr))
                    x = min(1.0, max(-1.0, lam0 * lr_ * L1[s_]))
                    acc += c[s_] * asin(x)
                total += c[r] * acc
            quad[j, k] = _4PI2 / math.sqrt(lam4) * total + noise2 * _j2(kind, fk[j], fk[k], cpp, cqq, cpq)


@njit
def _unpack(y, m, ms, P, C, c, a_star):
    """The covariance C of the local fields and the coefficients c = (a, -a*) of the state y = (Q, M, a)."""
    K = m + ms
    for j in range(m):
        for k in range(m):
            C[j, k] = y[j * m + k]
        for n in range(ms):
            C[j, m + n] = C[m + n, j] = y[m * m + j * ms + n]
        c[j] = y[m * m + m * ms + j]
    for n in range(ms):
        for o in range(ms):
            C[m + n, m + o] = P[n, o]
        c[m + n] = -a_star[n]
    return K


@njit
def _loss(kind, fk, C, c, K, half_noise):
    s = 0.0
    for r in range(K):
        for q in range(K):
            s += c[r] * c[q] * _i2(kind, fk[r], fk[q], C[r, r], C[q, q], C[r, q])
    return 0.5 * s + half_noise


@njit
def _rhs(kind, fk, y, out, m, ms, P, a_star, lr, lr_a, noise2, reg, lam_a, lam_w, C, c, h3, quad):
    """out = dy/dalpha at y; returns the loss at y."""
    K = _unpack(y, m, ms, P, C, c, a_star)
    if lr != 0.0:
        _quad_all(kind, fk, C, c, K, m, noise2, quad)
    # h3[j, q] = sum_r c_r I3(j, q, r): the drift of the fields of student j along field q
    for j in range(m):
        for q in range(K):
            s = 0.0
            for r in range(K):
                s += c[r] * _i3(kind, fk, C, j, q, r)
            h3[j, q] = s
    for j in range(m):
        aj = c[j]
        nj = math.sqrt(C[j, j]) if C[j, j] > 0.0 else 0.0
        if reg == REG_WEIGHT_DECAY:
            rw_j, ra_j = lam_w, lam_a * aj
        elif reg == REG_PATH_NORM:
            rw_j = lam_w * abs(aj) / nj if nj > 0.0 else 0.0
            ra_j = lam_w * (nj if aj > 0.0 else (-nj if aj < 0.0 else 0.0))
        else:
            rw_j, ra_j = 0.0, 0.0
        for n in range(ms):
            out[m * m + j * ms + n] = -lr * aj * h3[j, m + n] - lr * rw_j * C[j, m + n]
        s = 0.0
        for r in range(K):
            s += c[r] * _i2(kind, fk[j], fk[r], C[j, j], C[r, r], C[j, r])
        out[m * m + m * ms + j] = -lr_a * (s + ra_j)
        for k in range(j, m):
            ak = c[k]
            nk = math.sqrt(C[k, k]) if C[k, k] > 0.0 else 0.0
            if reg == REG_WEIGHT_DECAY:
                rw_k = lam_w
            elif reg == REG_PATH_NORM:
                rw_k = lam_w * abs(ak) / nk if nk > 0.0 else 0.0
            else:
                rw_k = 0.0
            v = -lr * (aj * h3[j, k] + ak * h3[k, j]) - lr * (rw_j + rw_k) * C[j, k]
            if lr != 0.0:
                v += lr * lr * aj * ak * quad[j, k]
            out[j * m + k] = v
            out[k * m + j] = v
    return _loss(kind, fk, C, c, K, 0.5 * noise2)


# Dormand-Prince 5(4) (Hairer, Norsett & Wanner), the coefficients of scipy's RK45
_A = np.array([[0, 0, 0, 0, 0, 0],
               [1 / 5, 0, 0, 0, 0, 0],
               [3 / 40, 9 / 40, 0, 0, 0, 0],
               [44 / 45, -56 / 15, 32 / 9, 0, 0, 0],
               [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729, 0, 0],
               [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656, 0]])
_B = np.array([35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84])
_E = np.array([71 / 57600, 0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40])


@njit
def _integrate(kind, fk, y, t0, t1, h, m, ms, P, a_star, lr, lr_a, noise2, reg, lam_a, lam_w, rtol, atol, max_steps,
               K6, ynew, f_new, C, c, h3, quad, cnt):
    """Integrate y from t0 to t1 in place (DOPRI5 with FSAL, Hairer's controller); K6[0] must hold f(y).
    Returns (h for the next call, status): 0 reached t1, 1 step size underflow, 2 max_steps, 3 not finite.
    cnt[0] accepted, cnt[1] rejected, cnt[2] evaluations."""
    n = y.shape[0]
    t = t0
    err_old = 1e-4
    while t < t1:
        if cnt[0] + cnt[1] >= max_steps:
            return h, 2
        last = False
        if t + h >= t1:
            h = t1 - t
            last = True
        for s in range(1, 6):
            for i in range(n):
                acc = 0.0
                for q in range(s):
                    acc += _A[s, q] * K6[q, i]
                ynew[i] = y[i] + h * acc
            _rhs(kind, fk, ynew, K6[s], m, ms, P, a_star, lr, lr_a, noise2, reg, lam_a, lam_w, C, c, h3, quad)
            cnt[2] += 1
        for i in range(n):
            acc = 0.0
            for q in range(6):
                acc += _B[q] * K6[q, i]
            ynew[i] = y[i] + h * acc
        _rhs(kind, fk, ynew, f_new, m, ms, P, a_star, lr, lr_a, noise2, reg, lam_a, lam_w, C, c, h3, quad)
        cnt[2] += 1
        err = 0.0
        finite = True
        for i in range(n):
            e = _E[6] * f_new[i]
            for q in range(6):
                e += _E[q] * K6[q, i]
            e *= h
            if not (math.isfinite(ynew[i]) and math.isfinite(f_new[i])):
                finite = False
            sc = atol + rtol * max(abs(y[i]), abs(ynew[i]))
            err += (e / sc) ** 2
        err = math.sqrt(err / n)
        if not finite:
            cnt[1] += 1
            h *= 0.25
            if h < 1e-14 * max(1.0, abs(t)):
                return h, 3
            continue
        if err <= 1.0:
            t = t1 if last else t + h
            for i in range(n):
                y[i] = ynew[i]
                K6[0, i] = f_new[i]
            cnt[0] += 1
            # Hairer's PI controller (beta = 0.04) with the factor bounds of DOPRI5
            fac = 0.9 * max(err, 1e-10) ** -0.17 * max(err_old, 1e-10) ** 0.04
            err_old = max(err, 1e-4)
            h_next = h * min(10.0, max(0.2, fac))
            if not last:
                h = h_next
            else:
                h = max(h, h_next)
        else:
            cnt[1] += 1
            h *= max(0.2, 0.9 * err ** -0.2)
            if h < 1e-14 * max(1.0, abs(t)):
                return h, 1
    return h, 0


def overlaps(net, teacher):
    """(Q, M, P): ``W W^T``, ``W W*^T`` and ``W* W*^T`` of a student and a teacher, in float64."""
    W = np.asarray(net.W, np.float64)
    Wt = np.asarray(teacher.W, np.float64)
    return W @ W.T, W @ Wt.T, Wt @ Wt.T


def ode(net, teacher, alpha, *, lr, lr_a=0.0, reg=None, noise=0.0, log_times=100, rtol=1e-8, atol=1e-10,
        max_steps=1_000_000):
    """Integrate the order-parameter ODEs of online SGD (module docstring) from the overlaps of ``net``
    and ``teacher`` over ``alpha`` units of time; returns an ``ff.History``.

    Convention: ``ff.train(net, ff.Online(teacher, batch_size=1, noise=noise), lr=lr / d, lr_a=lr_a / d,
    reg=reg)`` follows it in ``alpha = steps / d`` as ``d -> infinity`` (``lr_a = 0``: the soft committee
    machine, a fixed; ``reg``: ``ff.WeightDecay`` or ``ff.PathNorm``, the same objects as in ``ff.train``).
    A regularizer's schedule takes alpha here, as ``ff.flow``'s takes time: the strength on ``[k, k+1)`` is
    ``schedule(k)`` for integer ``k`` (for ``ff.train``, a schedule of the step ``s`` that gives the same
    is ``lambda s: schedule(s // d)``); each stretch of constant strength is integrated on its own.

    ``net`` gives the initial overlaps and the activation (``ODE_ACTIVATIONS``: ``"erf"``, ``"linear"``,
    ``"he2"``, ``"he3"``, whose Gaussian averages are in closed form, and ``"relu"``, ``"abs"``,
    ``"relu_centered"``, whose four-field average is a one-dimensional quadrature; the teacher may have
    any other of them).
    ``log_times``: an int ``n`` logs ``n + 1`` evenly spaced times in ``[0, alpha]``, or an
    increasing array of times in ``(0, alpha]`` (0 and ``alpha`` are always logged). Each logged time
    ends an integration step (no interpolation). ``rtol``, ``atol``: the tolerances of the
    Dormand-Prince 5(4) error control over the state ``(Q, M, a)``.

    The history: ``step`` the accepted integration steps so far; ``"time"`` (alpha), ``"loss"`` (the
    population loss of a network with these overlaps, noise included), ``"best_cos"`` (for each teacher
    direction the largest cosine ``M_jn / sqrt(Q_jj P_nn)`` over the students), ``"Q"``, ``"M"`` and
    ``"a"`` (arrays per row); ``info`` holds ``P``, ``a_star``, the settings and the evaluation counts.
    """
    check_net(net)
    if net.gamma != 0:
        raise ValueError(f"net has output scale {net.scale!r}: ff.ode follows standard nets only (its overlaps "
                         "and a are those of f = sum_j a_j sigma(w_j . x)); pass net.as_standard() (the same "
                         "function with second layer m^-gamma a)")
    check_teacher(teacher)
    for who, act in (("net", net.activation), ("teacher", teacher.activation)):
        if act not in ODE_ACTIVATIONS:
            raise ValueError(f"ff.ode has the Gaussian averages of {ODE_ACTIVATIONS} (in closed form or by "
                             f"quadrature); the {who}'s activation {act!r} is not among them")
    pair = (net.activation, teacher.activation)
    if teacher.d != net.d:
        raise ValueError(f"teacher has d = {teacher.d}, net has d = {net.d}")
    alpha = check_float(alpha, "alpha", positive=True)
    lr = check_float(lr, "lr", nonnegative=True)
    lr_a = check_float(lr_a, "lr_a", nonnegative=True)
    if lr == 0.0 and lr_a == 0.0:
        raise ValueError("lr and lr_a are both 0: nothing would change")
    noise = check_noise(noise)
    rtol = check_float(rtol, "rtol", positive=True)
    atol = check_float(atol, "atol", positive=True)
    max_steps = check_int(max_steps, "max_steps", minimum=1)
    reg = check_reg(reg)
    pieces = reg_pieces(reg, alpha)  # [(alpha where a strength starts, code, lam_a, lam_w)]: checked here
    changes = {p[0]: p for p in pieces[1:]}
    times = log_grid(log_times, alpha)

    Q, M, P = overlaps(net, teacher)
    m, ms = Q.shape[0], P.shape[0]
    a_star = np.asarray(teacher.a, np.float64).copy()
    y = np.concatenate([Q.ravel(), M.ravel(), np.asarray(net.a, np.float64)])
    K = m + ms
    if teacher.activation == net.activation:
        kind = _CODES[net.activation]
        fk = np.full(K, kind, np.int64)
    else:  # two activations of one family (MIXABLE, or the polynomials): each field has its own kind
        table = POLYNOMIAL if set(pair) <= set(POLYNOMIAL) else MIXABLE
        kind = 2 if table is POLYNOMIAL else LINEAR_ANGULAR  # (2: Wick's theorem, whatever each polynomial)
        fk = np.array([table[net.activation]] * m + [table[teacher.activation]] * ms, np.int64)
    C, c, h3, quad = np.empty((K, K)), np.empty(K), np.empty((m, K)), np.empty((m, m))
    K6 = np.empty((6, y.size))
    ynew, f_new = np.empty(y.size), np.empty(y.size)
    cnt = np.zeros(3, np.int64)

    def args_of(piece):
        """The right-hand side's arguments with the regularizer of ``piece`` (an entry of ``pieces``)."""
        _, code, lam_a, lam_w = piece
        return m, ms, P, a_star, lr, lr_a, noise * noise, code, lam_a, lam_w

    args = args_of(pieces[0])
    loss = _rhs(kind, fk, y, K6[0], *args, C, c, h3, quad)
    cnt[2] += 1
    history = History(info={"objective": "ode", "activation": net.activation, "lr": lr, "lr_a": lr_a,
                            "noise": noise, "reg": None if reg is None else reg._describe([0]), "rtol": rtol,
                            "atol": atol, "P": P.tolist(), "a_star": a_star.tolist()})

    def log(t, loss):
        Qt = y[:m * m].reshape(m, m)
        Mt = y[m * m:m * m + m * ms].reshape(m, ms)
        norms = np.sqrt(np.maximum(np.diag(Qt), 0.0))
        cos = Mt / np.where(norms > 0, norms, 1.0)[:, None] / np.sqrt(np.diag(P))[None, :]
        history._append(int(cnt[0]), {"time": float(t), "loss": float(loss), "best_cos": cos.max(axis=0),
                                      "Q": Qt.copy(), "M": Mt.copy(), "a": y[m * m + m * ms:].copy()})

    if not np.isfinite(loss) or not np.all(np.isfinite(K6[0])):
        raise FloatingPointError("ff.ode: the right-hand side at the initial overlaps is not finite")
    log(0.0, loss)
    h = min(1e-2, alpha) if lr > 0 else min(1.0, alpha)
    logged = set(times[1:].tolist())
    ends = sorted(logged | {s for s in changes if s < alpha})
    t0 = 0.0
    for t1 in ends:
        h, status = _integrate(kind, fk, y, t0, t1, h, *args, rtol, atol, max_steps, K6, ynew, f_new, C, c, h3, quad,
                               cnt)
        if status != 0:
            reason = {1: "the step size fell below 1e-14 alpha", 2: f"max_steps={max_steps} were used up",
                      3: "the overlaps stopped being finite (lr too large for this problem?)"}[status]
            history.info.update({"stopped": reason, "evals": int(cnt[2]), "rejected": int(cnt[1])})
            raise FloatingPointError(f"ff.ode stopped at alpha = {t0:.6g}: {reason}")
        if t1 in logged:
            _unpack(y, m, ms, P, C, c, a_star)
            log(t1, _loss(kind, fk, C, c, K, 0.5 * noise * noise))
        if t1 in changes:  # a new strength from here: the derivative at y again (the integrator's FSAL stage)
            args = args_of(changes[t1])
            _rhs(kind, fk, y, K6[0], *args, C, c, h3, quad)
            cnt[2] += 1
        t0 = t1
    history.info.update({"evals": int(cnt[2]), "rejected": int(cnt[1])})
    return history
