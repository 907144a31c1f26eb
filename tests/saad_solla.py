"""The Saad–Solla ODEs of online SGD for the soft committee machine (reference for the tests).

Student ``sigma(x) = sum_i g(J_i . x)``, teacher ``tau(x) = sum_n g(B_n . x)``, ``g(z) = erf(z / sqrt 2)``,
``x ~ N(0, I_N)``; SGD ``J_i <- J_i + (eta / N) g'(J_i . x) (tau - sigma) x`` (the second layer fixed to 1).
For N -> infinity the overlaps ``Q = J J^T``, ``R = J B^T`` (``T = B B^T`` fixed) follow, in time
``alpha = steps / N`` (D. Saad and S. A. Solla, Phys. Rev. E 52, 4225 (1995), eqs. (7)-(8)):

    dR_in/dalpha = eta <delta_i y_n>
    dQ_ik/dalpha = eta (<delta_i x_k> + <delta_k x_i>) + eta^2 <delta_i delta_k>,

``delta_i = g'(x_i) (sum_n g(y_n) - sum_j g(x_j))``, with the Gaussian averages I3 = <g'(u_a) u_b g(u_c)> and
I4 = <g'(u_a) g'(u_b) g(u_c) g(u_d)> in closed form for this g (written out below and checked against Monte
Carlo in the tests), and the generalization error (the population loss of fastfeat, 1/2 E (sigma - tau)^2)

    eps_g = 1/pi (sum_ik asin(Q_ik / sqrt((1+Q_ii)(1+Q_kk))) + sum_nm asin(T_nm / ...) - 2 sum_in asin(R_in / ...)).
"""
import numpy as np


def I3(C, a, b, c):
    """<g'(u_a) u_b g(u_c)> for u ~ N(0, C) (index arrays broadcast)."""
    caa, ccc = C[a, a], C[c, c]
    cab, cac, cbc = C[a, b], C[a, c], C[b, c]
    lam3 = (1 + caa) * (1 + ccc) - cac**2
    return 2 / np.pi / np.sqrt(lam3) * (cbc * (1 + caa) - cab * cac) / (1 + caa)


def I4(C, a, b, c, d):
    """<g'(u_a) g'(u_b) g(u_c) g(u_d)> for u ~ N(0, C) (index arrays broadcast)."""
    caa, cbb, ccc, cdd = C[a, a], C[b, b], C[c, c], C[d, d]
    cab, cac, cad, cbc, cbd, ccd = C[a, b], C[a, c], C[a, d], C[b, c], C[b, d], C[c, d]
    lam4 = (1 + caa) * (1 + cbb) - cab**2
    lam0 = lam4 * ccd - cbc * cbd * (1 + caa) - cac * cad * (1 + cbb) + cab * cac * cbd + cab * cad * cbc
    lam1 = lam4 * (1 + ccc) - cbc**2 * (1 + caa) - cac**2 * (1 + cbb) + 2 * cab * cac * cbc
    lam2 = lam4 * (1 + cdd) - cbd**2 * (1 + caa) - cad**2 * (1 + cbb) + 2 * cab * cad * cbd
    return 4 / np.pi**2 / np.sqrt(lam4) * np.arcsin(lam0 / np.sqrt(lam1 * lam2))


def covariance(Q, R, T):
    return np.block([[Q, R], [R.T, T]])


def eps_g(Q, R, T):
    dq, dt = np.diag(Q), np.diag(T)
    s = np.arcsin(Q / np.sqrt(np.outer(1 + dq, 1 + dq))).sum()
    s += np.arcsin(T / np.sqrt(np.outer(1 + dt, 1 + dt))).sum()
    s -= 2 * np.arcsin(R / np.sqrt(np.outer(1 + dq, 1 + dt))).sum()
    return s / np.pi


def rhs(Q, R, T, eta):
    """(dQ/dalpha, dR/dalpha)."""
    K, M = R.shape
    C = covariance(Q, R, T)
    st = np.arange(K)
    te = K + np.arange(M)
    i = st[:, None, None]
    # <delta_i u_b> for every unit b: sum over teachers m minus sum over students j of I3(i, b, .)
    b = np.arange(K + M)[None, :, None]
    dx = I3(C, i, b, te[None, None, :]).sum(-1) - I3(C, i, b, st[None, None, :]).sum(-1)  # (K, K+M)
    ii, kk = st[:, None, None, None], st[None, :, None, None]
    tt = I4(C, ii, kk, te[None, None, :, None], te[None, None, None, :]).sum((-1, -2))
    ts = I4(C, ii, kk, st[None, None, :, None], te[None, None, None, :]).sum((-1, -2))
    ss = I4(C, ii, kk, st[None, None, :, None], st[None, None, None, :]).sum((-1, -2))
    dd = tt - 2 * ts + ss
    dR = eta * dx[:, K:]
    dQ = eta * (dx[:, :K] + dx[:, :K].T) + eta**2 * dd
    return dQ, dR


def integrate(Q0, R0, T, eta, alphas):
    """eps_g at the times ``alphas`` (increasing, from 0), integrating the ODEs with scipy (rtol 1e-8)."""
    from scipy.integrate import solve_ivp
    K, M = R0.shape

    def f(_, y):
        Q = y[:K * K].reshape(K, K)
        R = y[K * K:].reshape(K, M)
        dQ, dR = rhs(Q, R, T, eta)
        return np.concatenate([dQ.ravel(), dR.ravel()])

    y0 = np.concatenate([Q0.ravel(), R0.ravel()])
    sol = solve_ivp(f, (0.0, float(alphas[-1])), y0, t_eval=alphas, rtol=1e-8, atol=1e-11, method="DOP853")
    out = np.empty(len(alphas))
    for k in range(len(alphas)):
        y = sol.y[:, k]
        out[k] = eps_g(y[:K * K].reshape(K, K), y[K * K:].reshape(K, M), T)
    return out
