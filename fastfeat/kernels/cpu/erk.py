"""The explicit Runge-Kutta pairs of ``ff.flow`` (DOP853, DOPRI5; ``flow`` describes them): one step loop
with Hairer's step-size control, the automatic initial step, the dense output, and the stiffness test
that hands a stiff flow to RKC (``AUTO``)."""
import math

import numpy as np

from ._finite import finite
from ._jit import njit
from .flow_state import (ACC, BAD_STATE, CHUNK, DENSE, D_DOP853, D_DOPRI5, D_H, D_KIND, D_NEW, D_T0, EVALS, H, LOSS,
                         MAX_STEPS, MEM, NONSTIFF, NONSTIFF_RESET, OK, REJ, REJECT, RETRY_T, STIFF, STIFF_HLAMB,
                         STIFF_STEPS, SWITCH_METHOD, T, UNDERFLOW, WIN_EV0, WIN_T0, axpy_to, combine, copy_to,
                         gradient, hermite_rows, lincomb, min_step, refresh, scaled_rms, sqdist)
from .tableaus import (DENSE5_P, DENSE853_D, DENSE853_STAGES, DOPRI5, ERK_A, ERK_B, ERK_BETA, ERK_E3, ERK_E5,
                       ERK_EXPO, ERK_FAC1, ERK_FAC2, ERK_ORDER, ERK_STAGES, SAFE)


@njit
def stiff_count(h, num, den, st, cnt):
    """AUTO, after an accepted DOP853 step of size ``h``: Hairer's stiffness test, ``h * lambda`` with
    ``lambda^2 = num / den`` the squared ratio of the gradients' and the states' difference between the new
    state and the last stage. Returns whether the flow has been stiff for ``STIFF_STEPS`` steps and RKC
    may be tried now; the explicit method's cost is measured from the start of the stiff stretch."""
    hl = h * math.sqrt(num / den) if den > 0.0 else 0.0
    if hl > STIFF_HLAMB:
        cnt[NONSTIFF] = 0
        cnt[STIFF] += 1
        if cnt[STIFF] == 1:
            st[WIN_T0] = st[T]
            cnt[WIN_EV0] = cnt[EVALS]
        return cnt[STIFF] >= STIFF_STEPS and st[T] >= st[RETRY_T] and st[T] > st[WIN_T0]
    cnt[NONSTIFF] += 1
    if cnt[NONSTIFF] >= NONSTIFF_RESET:
        cnt[STIFF] = 0
    return False


@njit
def erk_error(y, yn, K, e5, e3, ns, rtol, atol, s5, s3):
    """(E5, E3): sums over entries of ((sum_j e5_j K_ji) / sk_i)^2 and the same with e3, with
    sk_i = atol + rtol max(|y_i|, |yn_i|); ``s5``, ``s3`` are scratch vectors."""
    n = y.shape[0]
    nch = (n + CHUNK - 1) // CHUNK
    t5 = 0.0
    t3 = 0.0
    for c in range(nch):
        i0 = c * CHUNK
        i1 = min(i0 + CHUNK, n)
        for i in range(i0, i1):
            s5[i] = 0.0
            s3[i] = 0.0
        for j in range(ns):
            c5 = e5[j]
            c3 = e3[j]
            for i in range(i0, i1):
                s5[i] += c5 * K[j, i]
                s3[i] += c3 * K[j, i]
        p5 = 0.0
        p3 = 0.0
        for i in range(i0, i1):
            sk = atol + rtol * max(abs(y[i]), abs(yn[i]))
            p5 += (s5[i] / sk) ** 2
            p3 += (s3[i] / sk) ** 2
        t5 += p5
        t3 += p3
    return t5, t3


@njit(inline="always")
def _erk_initial_step(method, y, bufs, st, cnt, span, Wt, at, code, ws, reg, lam_a, lam_w, rtol, atol, big):
    """Hairer's starting step (RMS norms), at most ``span``; 0 when no finite trial state was found."""
    S = ERK_STAGES[method]
    g0 = bufs[0]
    Y = bufs[S]
    G = bufs[S + 1]
    dnf = scaled_rms(g0, None, y, rtol, atol)
    dny = scaled_rms(y, None, y, rtol, atol)
    if dnf > 1e-5 and dny > 1e-5:
        h = 0.01 * dny / dnf
    else:
        h = 1e-6
    h = min(h, span)
    hmin = min_step(st[T])
    while True:
        if axpy_to(y, h, g0, Y, big) == 0:
            cnt[EVALS] += 1
            if finite(gradient(Y, G, Wt, at, code, ws, reg, lam_a, lam_w)):
                break
        h *= 0.1
        if h < hmin:
            return 0.0
    der2 = scaled_rms(G, g0, y, rtol, atol) / h
    der12 = max(der2, dnf)
    if der12 > 1e-15:
        h1 = (0.01 / der12) ** (1.0 / ERK_ORDER[method])
    else:
        h1 = max(1e-6, h * 1e-3)
    return min(100.0 * h, h1, span)


@njit(inline="always")
def erk(method, t_end, t_log, dbase, y, bufs, st, cnt, Wt, at, code, ws, reg, lam_a, lam_w, rtol, atol, big,
         max_steps, detect):
    S = ERK_STAGES[method]
    A = ERK_A[method]
    B = ERK_B[method]
    E5 = ERK_E5[method]
    E3 = ERK_E3[method]
    expo = ERK_EXPO[method]
    beta = ERK_BETA[method]
    fac1 = ERK_FAC1[method]
    fac2 = ERK_FAC2[method]
    fsal_stage = method == DOPRI5  # the last stage is the new state
    n = y.shape[0]
    K = bufs[:S]
    Y = bufs[S]        # stage state, then scratch of the error estimate
    Yn = bufs[S + 1]   # the new state
    Er = bufs[S + 2]   # scratch of the error estimate
    Gn = bufs[S + 3]   # DOP853: the gradient at the new state
    while st[T] < t_end:
        # first, before any work: a call stopped here and called again continues bit for bit
        if cnt[ACC] + cnt[REJ] >= max_steps:
            return MAX_STEPS
        t = st[T]
        if not refresh(y, K[0], st, cnt, Wt, at, code, ws, reg, lam_a, lam_w):
            return BAD_STATE
        if st[MEM] <= 0.0:
            st[MEM] = 1e-4
        if st[H] <= 0.0:
            st[H] = _erk_initial_step(method, y, bufs, st, cnt, t_end - t, Wt, at, code, ws, reg, lam_a, lam_w,
                                      rtol, atol, big)
            if st[H] <= 0.0:
                return UNDERFLOW
        h_prop = st[H]
        h = h_prop
        last = False
        if 1.01 * h >= t_end - t:
            h = t_end - t
            last = True
        ok = True
        lossn = np.nan
        for i in range(1, S):
            target = Yn if (fsal_stage and i == S - 1) else Y
            if combine(y, K, A[i], i, h, target, big) != 0:
                ok = False
                break
            cnt[EVALS] += 1
            li = gradient(target, K[i], Wt, at, code, ws, reg, lam_a, lam_w)
            if not finite(li):
                ok = False
                break
            lossn = li
        if ok and not fsal_stage:
            ok = combine(y, K, B, S, h, Yn, big) == 0
        stden = 0.0
        if ok and detect:  # Hairer's stiffness test: the last stage and the new state are both at t + h
            stden = sqdist(Yn, Y)
        err = np.inf
        if ok:
            e5, e3 = erk_error(y, Yn, K, E5, E3, S, rtol, atol, Er, Y)
            if fsal_stage:
                err = abs(h) * math.sqrt(e5 / n)
            else:
                deno = e5 + 0.01 * e3
                if deno <= 0.0:
                    deno = 1.0
                err = abs(h) * e5 * math.sqrt(1.0 / (n * deno))
            if not finite(err):
                ok = False
        if ok and err <= 1.0 and not fsal_stage:
            cnt[EVALS] += 1
            lossn = gradient(Yn, Gn, Wt, at, code, ws, reg, lam_a, lam_w)
            ok = finite(lossn)
        if not ok:  # left the finite range: refused, shrunk as far as the controller ever shrinks
            cnt[REJ] += 1
            st[REJECT] = 1.0
            hnew = h * fac1
            if hnew < min_step(t):
                return UNDERFLOW
            st[H] = hnew
            continue
        fac11 = err ** expo
        fac = fac11 / st[MEM] ** beta
        fac = max(1.0 / fac2, min(1.0 / fac1, fac / SAFE))
        if err <= 1.0:
            if t < t_log < (t_end if last else t + h):
                _erk_dense(method, t, h, y, K, K[S - 1] if fsal_stage else Gn, Yn, bufs[dbase:], st, cnt, Wt, at,
                           code, ws, reg, lam_a, lam_w, big)
            st[MEM] = max(err, 1e-4)
            copy_to(Yn, y)
            copy_to(K[S - 1] if fsal_stage else Gn, K[0])
            st[LOSS] = lossn
            st[T] = t_end if last else t + h
            cnt[ACC] += 1
            hnew = h / fac
            if st[REJECT] != 0.0:
                hnew = min(hnew, h)
            st[REJECT] = 0.0
            if h < h_prop and hnew >= h:  # a clamped step that asked for no shrinking: keep the proposal
                hnew = max(hnew, h_prop)
            st[H] = hnew
            if detect and stiff_count(h, sqdist(K[0], K[S - 1]), stden, st, cnt):
                return SWITCH_METHOD
            if st[D_NEW] != 0.0:
                return DENSE
        else:
            cnt[REJ] += 1
            st[REJECT] = 1.0
            hnew = h / min(1.0 / fac1, fac11 / SAFE)
            if hnew < min_step(t):
                return UNDERFLOW
            st[H] = hnew
    return OK


@njit(inline="always")
def _erk_dense(method, t, h, y, K, Gn, Yn, D, st, cnt, Wt, at, code, ws, reg, lam_a, lam_w, big):
    """The dense output of the accepted explicit step from (t, y) to (t + h, Yn), before ``y`` and ``K[0]``
    are overwritten: DOPRI5's free interpolant, or DOP853's (3 more gradients; should a stage leave the
    finite range, the step falls back to the cubic Hermite interpolant). The flow is dy/dt = -g, so each
    derivative is minus a stored gradient."""
    n = y.shape[0]
    if method == DOPRI5:
        copy_to(y, D[0])
        for k in range(4):
            D[1 + k, :] = 0.0
            lincomb(D[1 + k], K, DENSE5_P[:, k], 7, -h)
        st[D_T0] = t
        st[D_H] = h
        st[D_KIND] = D_DOPRI5
        st[D_NEW] = 1.0
        return
    X = D[8:11]
    Z = D[7]  # the extra stages' states (the last coefficient vector is written after them)
    for e in range(3):
        a = DENSE853_STAGES[e]
        Z[:] = 0.0
        lincomb(Z, K, a, 12, 1.0)
        c = a[12]
        for i in range(n):
            Z[i] += c * Gn[i]
        lincomb(Z, X, a[13:], e, 1.0)
        bad = 0
        for i in range(n):
            v = y[i] - h * Z[i]
            Z[i] = v
            bad += 0 if abs(v) < big else 1
        ok = bad == 0
        if ok:
            cnt[EVALS] += 1
            ok = finite(gradient(Z, X[e], Wt, at, code, ws, reg, lam_a, lam_w))
        if not ok:
            hermite_rows(y, Yn, K[0], Gn, t, h, D, st)
            return
    for k in range(4):  # rows 4..7: -h sum_j D853[k, j] g_j over the stages, g(Yn) and the extra stages
        row = D[4 + k]
        dk = DENSE853_D[k]
        row[:] = 0.0
        lincomb(row, K, dk, 12, -h)
        c = -h * dk[12]
        for i in range(n):
            row[i] += c * Gn[i]
        lincomb(row, X, dk[13:], 3, -h)
    for i in range(n):
        dy = Yn[i] - y[i]
        D[1, i] = dy
        D[2, i] = -h * K[0, i] - dy
        D[3, i] = 2.0 * dy + h * (Gn[i] + K[0, i])
        D[0, i] = y[i]
    st[D_T0] = t
    st[D_H] = h
    st[D_KIND] = D_DOP853
    st[D_NEW] = 1.0
