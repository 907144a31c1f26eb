"""The second-order Runge-Kutta-Chebyshev method of ``ff.flow`` for its stiff end (``flow`` describes it):
the spectral-radius estimate by a nonlinear power iteration, the stage recurrence, the error estimate
and the step loop."""
import math

import numpy as np

from ._finite import finite
from ._jit import njit
from .flow_state import (ACC, AUTO_WINDOW, BACKOFF, BAD_STATE, DENSE, D_NEW, EIG_AUTO, ERK_RATE, EVALS, H, HOLD, LOSS,
                         MAX_STEPS, MEM, OK, REJ, REJECT, RHO, RHO_EVALS, RHO_EVERY, RHO_ITERS, RKC_ACC, SINCE, SMAX,
                         SWITCH_METHOD, T, TRY_T0, UNDERFLOW, WIN_ACC0, WIN_EV0, axpy_to, copy_to, gradient,
                         hermite_rows, min_step, refresh, scaled_rms, sqdist)


@njit
def _norm2(v):
    s = 0.0
    for i in range(v.shape[0]):
        s += v[i] * v[i]
    return math.sqrt(s)


@njit
def _norm2_diff(u, v):
    return math.sqrt(sqdist(u, v))


@njit
def _shift_along(y, v, scale, out):
    """out = y + scale v."""
    for i in range(y.shape[0]):
        out[i] = y[i] + scale * v[i]


@njit
def _diff_to(u, v, out):
    """out = u - v."""
    for i in range(u.shape[0]):
        out[i] = u[i] - v[i]


@njit
def _shift_along_diff(y, u, v, scale, out):
    """out = y + scale (u - v)."""
    for i in range(y.shape[0]):
        out[i] = y[i] + scale * (u[i] - v[i])


@njit(inline="always")
def spectral_radius(y, g0, v, gv, eig, cnt, Wt, at, code, ws, reg, lam_a, lam_w):
    """An upper estimate (1.2 x) of the spectral radius of the Hessian of L + R at ``y`` (``g0`` its
    gradient), by the nonlinear power iteration of Sommeijer, Shampine & Verwer: ``v`` is moved along the
    last difference ``g(v) - g0``, kept at distance sqrt(eps) |y| from ``y``. ``eig`` holds the direction
    of the previous estimate (the start; zeros the first time) and gets the new one. Returns -1 when a
    gradient is not finite."""
    n = y.shape[0]
    sqrtu = math.sqrt(2.220446049250313e-16)
    ynrm = _norm2(y)
    vnrm = _norm2(eig)
    if vnrm == 0.0:  # first time: start along the gradient
        copy_to(g0, eig)
        vnrm = _norm2(eig)
    if ynrm != 0.0 and vnrm != 0.0:
        dy = ynrm * sqrtu
        _shift_along(y, eig, dy / vnrm, v)
    elif ynrm != 0.0:
        dy = ynrm * sqrtu
        _shift_along(y, y, sqrtu, v)
    elif vnrm != 0.0:
        dy = 2.220446049250313e-16
        _shift_along(y, eig, dy / vnrm, v)
    else:
        dy = 2.220446049250313e-16
        for i in range(n):
            v[i] = y[i] + dy
    sigma = 0.0
    for it in range(RHO_ITERS):
        cnt[EVALS] += 1
        cnt[RHO_EVALS] += 1
        if not finite(gradient(v, gv, Wt, at, code, ws, reg, lam_a, lam_w)):
            return -1.0
        dg = _norm2_diff(gv, g0)
        sigma_last = sigma
        sigma = dg / dy
        if it >= 1 and abs(sigma - sigma_last) <= max(sigma, 1e-300) * 0.01:
            break
        if dg != 0.0:
            _shift_along_diff(y, gv, g0, dy / dg, v)
        else:  # no change along v: flip one entry of the offset and try again
            k = it % n
            v[k] = y[k] - (v[k] - y[k])
    _diff_to(v, y, eig)
    return 1.2 * sigma


@njit
def _rkc_stage(y, ym1, ym2, G, g0, out, c0, mu, nu, hmus, ajm1, big):
    """out = c0 y + mu ym1 + nu ym2 - hmus (G - ajm1 g0); returns the entries not below ``big``."""
    n = y.shape[0]
    bad = 0
    for i in range(n):
        v = c0 * y[i] + mu * ym1[i] + nu * ym2[i] - hmus * (G[i] - ajm1 * g0[i])
        out[i] = v
        bad += 0 if abs(v) < big else 1
    return bad


@njit
def _rkc_error(y, ys, g0, gs, h, rtol, atol):
    """RMS of (0.8 (y - ys) - 0.4 h (g0 + gs)) / (atol + rtol max(|y|, |ys|)): the local error estimate
    (12 (y_n - y_n+1) + 6 h (f_n + f_n+1)) / 15 with f = -g."""
    n = y.shape[0]
    s = 0.0
    for i in range(n):
        e = 0.8 * (y[i] - ys[i]) - 0.4 * h * (g0[i] + gs[i])
        s += (e / (atol + rtol * max(abs(y[i]), abs(ys[i])))) ** 2
    return math.sqrt(s / n)


@njit(inline="always")
def rkc(t_end, t_log, dbase, y, bufs, st, cnt, Wt, at, code, ws, reg, lam_a, lam_w, rtol, atol, big, max_steps,
         auto):
    g0 = bufs[0]
    G = bufs[4]
    eig = bufs[EIG_AUTO] if auto else bufs[5]
    smax = max(2, int(math.sqrt(rtol / (10.0 * 2.220446049250313e-16))))
    while st[T] < t_end:
        if cnt[ACC] + cnt[REJ] >= max_steps:  # first, before any work (as in erk)
            return MAX_STEPS
        t = st[T]
        fresh_rho = False
        if not refresh(y, g0, st, cnt, Wt, at, code, ws, reg, lam_a, lam_w):
            return BAD_STATE
        if st[RHO] <= 0.0 or cnt[SINCE] >= RHO_EVERY:
            rho = spectral_radius(y, g0, bufs[1], G, eig, cnt, Wt, at, code, ws, reg, lam_a, lam_w)
            if rho < 0.0:
                return BAD_STATE
            st[RHO] = max(rho, 1e-300)
            cnt[SINCE] = 0
            fresh_rho = True
        rho = st[RHO]
        span = t_end - t
        if st[H] <= 0.0:  # the starting step of Sommeijer, Shampine & Verwer
            h = span
            if rho * h > 1.0:
                h = 1.0 / rho
            h = max(h, min_step(t))
            while True:
                if axpy_to(y, h, g0, bufs[1], big) == 0:
                    cnt[EVALS] += 1
                    if finite(gradient(bufs[1], G, Wt, at, code, ws, reg, lam_a, lam_w)):
                        break
                h *= 0.1
                if h < min_step(t):
                    return UNDERFLOW
            est = h * scaled_rms(G, g0, y, rtol, atol)
            if 0.1 * h < span * math.sqrt(est):
                h = max(0.1 * h / math.sqrt(est), min_step(t))
            else:
                h = span
            st[H] = h
        h_prop = st[H]
        h = h_prop
        last = False
        if 1.1 * h >= span:
            h = span
            last = True
        s = 1 + int(math.sqrt(1.0 + 1.54 * h * rho))
        if s > smax:
            s = smax
            h = (s * s - 1) / (1.54 * rho)
            last = False
        cnt[SMAX] = max(cnt[SMAX], s)
        # the stages: rows 1, 2, 3 rotate as Y_{j-1}, Y_{j-2} and the new stage
        w0 = 1.0 + 2.0 / (13.0 * s * s)
        temp1 = w0 * w0 - 1.0
        temp2 = math.sqrt(temp1)
        arg = s * math.log(w0 + temp2)
        w1 = math.sinh(arg) * temp1 / (math.cosh(arg) * s * temp2 - w0 * math.sinh(arg))
        bjm1 = 1.0 / (2.0 * w0) ** 2
        bjm2 = bjm1
        r1, r2, r3 = 1, 2, 3
        copy_to(y, bufs[r2])
        ok = axpy_to(y, h * w1 * bjm1, g0, bufs[r1], big) == 0
        zjm1, zjm2 = w0, 1.0
        dzjm1, dzjm2 = 1.0, 0.0
        d2zjm1, d2zjm2 = 0.0, 0.0
        j = 2
        while ok and j <= s:
            zj = 2.0 * w0 * zjm1 - zjm2
            dzj = 2.0 * w0 * dzjm1 - dzjm2 + 2.0 * zjm1
            d2zj = 2.0 * w0 * d2zjm1 - d2zjm2 + 4.0 * dzjm1
            bj = d2zj / (dzj * dzj)
            ajm1 = 1.0 - zjm1 * bjm1
            mu = 2.0 * w0 * bj / bjm1
            nu = -bj / bjm2
            mus = mu * w1 / w0
            cnt[EVALS] += 1
            if not finite(gradient(bufs[r1], G, Wt, at, code, ws, reg, lam_a, lam_w)):
                ok = False
                break
            if _rkc_stage(y, bufs[r1], bufs[r2], G, g0, bufs[r3], 1.0 - mu - nu, mu, nu, h * mus, ajm1, big) != 0:
                ok = False
                break
            r1, r2, r3 = r3, r1, r2
            bjm2, bjm1 = bjm1, bj
            zjm2, zjm1 = zjm1, zj
            dzjm2, dzjm1 = dzjm1, dzj
            d2zjm2, d2zjm1 = d2zjm1, d2zj
            j += 1
        err = np.inf
        lossn = np.nan
        if ok:  # Y_s is in row r1; its gradient (the next step's first) goes to G
            cnt[EVALS] += 1
            lossn = gradient(bufs[r1], G, Wt, at, code, ws, reg, lam_a, lam_w)
            ok = finite(lossn)
        if ok:
            err = _rkc_error(y, bufs[r1], g0, G, h, rtol, atol)
            ok = finite(err)
        if not ok or err > 1.0:
            cnt[REJ] += 1
            st[REJECT] = 1.0
            hnew = 0.1 * h if not ok else 0.8 * h / err ** (1.0 / 3.0)
            if hnew < min_step(t):
                return UNDERFLOW
            st[H] = hnew
            if not fresh_rho:
                cnt[SINCE] = RHO_EVERY  # re-estimate the spectral radius before retrying
            continue
        if t < t_log < (t_end if last else t + h):
            hermite_rows(y, bufs[r1], g0, G, t, h, bufs[dbase:], st)
        copy_to(bufs[r1], y)
        copy_to(G, g0)
        st[LOSS] = lossn
        st[T] = t_end if last else t + h
        cnt[ACC] += 1
        cnt[SINCE] += 1
        fac = 10.0
        if st[MEM] <= 0.0:
            temp = err ** (1.0 / 3.0)
            if 0.8 < fac * temp:
                fac = 0.8 / temp
        else:
            num = 0.8 * h * st[MEM] ** (1.0 / 3.0)
            den = st[HOLD] * err ** (2.0 / 3.0)
            if num < fac * den:
                fac = num / den
        hnew = max(0.1, fac) * h
        if st[REJECT] != 0.0:
            hnew = min(hnew, h)
        st[REJECT] = 0.0
        st[MEM] = max(err, 1e-10)
        st[HOLD] = h
        if h < h_prop and hnew >= h:
            hnew = max(hnew, h_prop)
        st[H] = hnew
        if auto:  # every AUTO_WINDOW steps, RKC's cost per unit time since it took over against DOP853's
            cnt[RKC_ACC] += 1
            if cnt[ACC] - cnt[WIN_ACC0] >= AUTO_WINDOW and st[T] > st[TRY_T0]:
                if (cnt[EVALS] - cnt[WIN_EV0]) / (st[T] - st[TRY_T0]) > st[ERK_RATE]:
                    return SWITCH_METHOD
                cnt[BACKOFF] = 0
                cnt[WIN_ACC0] = cnt[ACC]
        if st[D_NEW] != 0.0:
            return DENSE
    return OK
