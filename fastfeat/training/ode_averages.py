"""The Gaussian averages of the order-parameter ODEs (``ff.ode``, ``order_parameters``): I2, J2, I3 and I4 of
the local fields ``u ~ N(0, C)`` for every activation of ``ODE_ACTIVATIONS`` and every pair of them.

The Gaussian averages are in closed form for ``erf`` (``g(z) = erf(z / sqrt 2)``, Saad & Solla's), and
for the polynomial activations ``linear``, ``he2`` (``z^2 - 1``) and ``he3`` (``z^3 - 3 z``) by Wick's
(Isserlis') theorem: the moments ``E[u_p^a u_q^b u_r^c u_s^e]`` of jointly Gaussian fields follow from
``E[u_p^a R] = (a - 1) C_pp E[u_p^(a-2) R] + sum over the other factors u_t of R of C_pt E[u_p^(a-1) R / u_t]``,
filled in a table by increasing exponents (exact: no quadrature). The angular activations ``relu``,
``abs`` and ``relu_centered`` (``|z|/2`` less its mean, ``sqrt(C_zz / (2 pi))``) are written as
``g = alpha |z| + beta z + gamma``, ``g' = alpha sign(z) + beta``: I2, J2 and I3 are in closed form (I3 by
Stein's lemma, ``E[u_q F] = sum_k C_qk E[d_k F]``, with ``g'' = 2 alpha delta``); I4 has none and is
reduced to a one-dimensional integral along the covariances between the two pairs of fields, whose
integrand is in closed form, computed by tanh-sinh quadrature on 53 nodes (``_ang_i4``): within 1e-12 of
a rule with 16 times the nodes for generic, repeated, parallel, antiparallel and zero fields, about 1e-10
for distinct fields parallel to within ``1 - rho^2 ~ 1e-9``. A zero weight vector's ``g'`` is 0, as in
the kernels. The same formulas hold with each field's own (alpha, beta, gamma): a teacher whose
activation differs from the student's is integrated when both are among relu, abs, relu_centered,
linear and erf (``MIXABLE``; linear is alpha = 0, beta = 1). erf joins that family as a sign of a noisy
field, ``erf(z / sqrt 2) = E_xi[sign(z + xi)]`` with ``xi ~ N(0, 1)`` drawn anew for each factor, whose
``g'`` is ``2 delta(z + xi)``: a delta conditions the other fields on one more field, so every average
with an erf factor stays in closed form, except I4 of an angular student, which is the quadrature above
with one more conditioning inside its integrand. With erf on both sides this reproduces Saad & Solla's
closed forms to rounding (tests/training/test_ode.py), which the erf ODE keeps using. The polynomials
(linear, he2, he3) mix with each other by Wick's theorem with each factor's own polynomial
(``POLYNOMIAL``). A Hermite activation against relu, abs, relu_centered or erf (``_expect``): after the
deltas condition, a product of at most two factors with a sign or absolute-value part, x and y, and
polynomial ones, whose fields are regressed on (x, y) (the residuals' moments by Wick's theorem), is a
sum of moments ``E[F(x) G(y) x^a y^b]``, F, G in {1, sign, |.|}, each a finite recursion by Stein's lemma
(``_bivariate``); three such factors (an angular student's I4 with an angular or erf g and a Hermite g)
take the quadrature above (``_ang_i4``), ``_expect`` at each node. So every pair of ``ODE_ACTIVATIONS`` is integrated.
"""
import math

import numpy as np

from ..kernels.cpu._jit import njit
from ..kernels.cpu.scalar import asin

#: the activations whose Gaussian averages ``ff.ode`` has (in closed form, the angular ones' I4 by quadrature)
ODE_ACTIVATIONS = ("erf", "linear", "he2", "he3", "relu", "abs", "relu_centered")
_CODES = {"erf": 0, "linear": 1, "he2": 2, "he3": 3, "relu": 4, "abs": 5, "relu_centered": 6}
#: the angular activations (kind >= 4) as g(z) = alpha |z| + beta z + gamma, g'(z) = alpha sign(z) + beta
#: (sign(0) = 0: g'(0) = beta), gamma = -cent sqrt(C_zz / (2 pi)) (relu_centered: |z|/2 minus its mean)
#: (kind 7: linear written in that form, alpha = 0, beta = 1, for a teacher and student of two activations;
#: kind 8: erf(z / sqrt 2) = E_xi[sign(z + xi)], xi ~ N(0, 1) independent, a sign of magnitude sigma = 1 on a
#: slot of variance C_zz + tau, tau = 1, whose g' is 2 delta(z + xi); every factor draws its own xi)
#: (kinds 9, 10: he2, he3 among them, polynomials: ``_expect``)
_ALPHA = np.array([0.0, 0.0, 0.0, 0.0, 0.5, 1.0, 0.5, 0.0, 0.0, 0.0, 0.0])
_BETA = np.array([0.0, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
_CENT = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0])
_SIGMA = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0])
_TAU = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0])
LINEAR_ANGULAR = 7
ERF_SIGN = 8
HERMITE = 9  # kinds >= 9: he2, he3 in the family
#: the activations a student and a teacher may mix (the angular family, linear, erf, he2 and he3): their kinds
MIXABLE = {"relu": 4, "abs": 5, "relu_centered": 6, "linear": LINEAR_ANGULAR, "erf": ERF_SIGN, "he2": 9, "he3": 10}
#: the polynomial activations, which mix with each other by Wick's theorem (each field its own polynomial)
POLYNOMIAL = {"linear": 1, "he2": 2, "he3": 3}
_SQ2PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
#: tanh-sinh (double exponential) nodes and weights on [0, 1]: x = k h, |x| <= 3.25, h = 1/8 (53 nodes: within
#: 1e-14 of a rule with 16 times as many on generic and degenerate covariances, tests/training/test_ode.py)
_TS_X = np.arange(-26, 27) / 8.0
_TS_T = 0.5 * (1.0 + np.tanh(0.5 * math.pi * np.sinh(_TS_X)))
_TS_W = (0.25 * math.pi / 8.0) * np.cosh(_TS_X) / np.cosh(0.5 * math.pi * np.sinh(_TS_X)) ** 2
#: the polynomial activations (kind >= 1): coefficients of g and of g' in 1, z, z^2, z^3 (row = kind)
_G = np.array([[0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [-1.0, 0.0, 1.0, 0.0], [0.0, -3.0, 0.0, 1.0]])
_DG = np.array([[0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [-3.0, 0.0, 3.0, 0.0]])
_DEG = np.array([0, 1, 2, 3], np.int64)  # the degree of g (g' has one less)
_ONE = np.array([1.0, 0.0, 0.0, 0.0])  # the polynomial 1
_Z = np.array([0.0, 1.0, 0.0, 0.0])  # the polynomial z
_2PI = 2.0 / math.pi
_4PI2 = 4.0 / math.pi**2
# integer arguments as int64 (a literal would compile another specialization of the callee: 5 s each)
_N0, _N1, _N2, _N3, _N4 = (np.int64(k) for k in range(5))


@njit
def _wick(C, p, q, r, s, f0, d0, f1, d1, f2, d2, f3, d3):
    """E[f0(u_p) f1(u_q) f2(u_r) f3(u_s)] for polynomials f_t (coefficients of 1, z, z^2, z^3) of degrees
    d_t <= 3 and fields u of covariance C (indices may repeat; C may be singular), from the moment table
    (``_moment_table``)."""
    T = _moment_table(C, p, q, r, s, d0, d1, d2, d3)
    total = 0.0
    for a in range(d0 + 1):
        for b in range(d1 + 1):
            for c in range(d2 + 1):
                for e in range(d3 + 1):
                    total += f0[a] * f1[b] * f2[c] * f3[e] * T[a, b, c, e]
    return total


@njit
def _moment_table(C, p, q, r, s, d0, d1, d2, d3):
    """T[a, b, c, e] = E[u_p^a u_q^b u_r^c u_s^e] for exponents up to d0..d3, by the recursion on the first
    nonzero exponent (module docstring), in lexicographic order (each entry needs only smaller ones)."""
    T = np.empty((d0 + 1, d1 + 1, d2 + 1, d3 + 1))
    cpp, cpq, cpr, cps = C[p, p], C[p, q], C[p, r], C[p, s]
    cqq, cqr, cqs, crr, crs, css = C[q, q], C[q, r], C[q, s], C[r, r], C[r, s], C[s, s]
    for a in range(d0 + 1):
        for b in range(d1 + 1):
            for c in range(d2 + 1):
                for e in range(d3 + 1):
                    n = a + b + c + e
                    v = 0.0
                    if n == 0:
                        v = 1.0
                    elif n % 2 == 1:
                        v = 0.0
                    elif a > 0:
                        if a >= 2:
                            v += (a - 1) * cpp * T[a - 2, b, c, e]
                        if b >= 1:
                            v += b * cpq * T[a - 1, b - 1, c, e]
                        if c >= 1:
                            v += c * cpr * T[a - 1, b, c - 1, e]
                        if e >= 1:
                            v += e * cps * T[a - 1, b, c, e - 1]
                    elif b > 0:
                        if b >= 2:
                            v += (b - 1) * cqq * T[0, b - 2, c, e]
                        if c >= 1:
                            v += c * cqr * T[0, b - 1, c - 1, e]
                        if e >= 1:
                            v += e * cqs * T[0, b - 1, c, e - 1]
                    elif c > 0:
                        if c >= 2:
                            v += (c - 1) * crr * T[0, 0, c - 2, e]
                        if e >= 1:
                            v += e * crs * T[0, 0, c - 1, e - 1]
                    else:
                        v = (e - 1) * css * T[0, 0, 0, e - 2]
                    T[a, b, c, e] = v
    return T


@njit
def _corr(cab, caa, cbb):
    """The correlation of two fields (0 where one of them is identically 0), within [-1, 1]."""
    if caa <= 0.0 or cbb <= 0.0:
        return 0.0
    return min(1.0, max(-1.0, cab / math.sqrt(caa * cbb)))


@njit
def _gamma(kind, cvv):
    """The constant of the angular activation ``kind`` for a field of variance ``cvv``."""
    return -_CENT[kind] * _INV_SQRT_2PI * math.sqrt(max(cvv, 0.0))


@njit
def _dzero(kind):
    """g' of a zero weight vector: 0 for the angular activations (sigma'(0) = 0, as in the kernels), beta for
    linear (``LINEAR_ANGULAR``: alpha = 0)."""
    return _BETA[kind] if _ALPHA[kind] == 0.0 else 0.0


# The family below takes each field's kind (``fk``): the student's and the teacher's activations may differ
# (``MIXABLE``), linear written as alpha = 0, beta = 1, erf as a sign of a noisy slot, he2 and he3 through
# ``_expect``.


@njit
def _var(kind, c):
    """The variance of a field's slot: the field's own, plus erf's independent noise (``_TAU``)."""
    return c + _TAU[kind]


@njit
def _fam_i2(kp, kq, vp, vq, cpq, gp, gq):
    """E[g_p(v_p) g_q(v_q)] for two zero-mean fields of variances vp, vq (their slots') and covariance cpq,
    g = alpha |v| + beta v + gamma + sigma sign(v) with the constants gp, gq: alpha_p alpha_q E|v_p||v_q|
    + beta_p beta_q C_pq + sigma_p sigma_q (2/pi) asin(rho) + sigma_p beta_q sqrt(2/pi) C_pq / sqrt(v_p)
    + beta_p sigma_q (the same) + alpha_p gamma_q E|v_p| + gamma_p alpha_q E|v_q| + gamma_p gamma_q (a sign
    against an even function or a constant averages to 0)."""
    ap, aq = _ALPHA[kp], _ALPHA[kq]
    sp, sq = _SIGMA[kp], _SIGMA[kq]
    rho = _corr(cpq, vp, vq)
    np_, nq = math.sqrt(max(vp, 0.0)), math.sqrt(max(vq, 0.0))
    out = _BETA[kp] * _BETA[kq] * cpq + ap * gq * _SQ2PI * np_ + gp * aq * _SQ2PI * nq + gp * gq
    if ap != 0.0 and aq != 0.0:
        out += ap * aq * _2PI * np_ * nq * (math.sqrt(max(0.0, 1.0 - rho * rho)) + rho * math.asin(rho))
    if sp != 0.0 or sq != 0.0:
        out += sp * sq * _2PI * math.asin(rho)
        if np_ > 0.0:
            out += sp * _BETA[kq] * _SQ2PI * cpq / np_
        if nq > 0.0:
            out += _BETA[kp] * sq * _SQ2PI * cpq / nq
    return out


@njit
def _ang_i2(kp, kq, cpp, cqq, cpq):
    """E[g_p(u_p) g_q(u_q)] for fields of variances cpp, cqq and covariance cpq (``_fam_i2`` on their
    slots: erf's with its noise, so that g_p and g_q of the same field take independent ones)."""
    return _fam_i2(kp, kq, _var(kp, cpp), _var(kq, cqq), cpq, _gamma(kp, cpp), _gamma(kq, cqq))


@njit
def _hat(kind, v):
    """The constant part of g' (beta) on a slot of variance v; a zero weight vector's g' is ``_dzero``."""
    return _BETA[kind] if v > 0.0 else _dzero(kind)


@njit
def _ang_j2(kp, kq, cpp, cqq, cpq):
    """E[g_p'(u_p) g_q'(u_q)], g' = alpha sign(v) + beta + 2 sigma delta(v) on each field's slot:
    alpha_p alpha_q (2/pi) asin(rho) + beta_p beta_q + 2 sigma_p beta_q / sqrt(2 pi v_p) + (p <-> q)
    + 4 sigma_p sigma_q / (2 pi sqrt(v_p v_q - C_pq^2)) (E[sign | the other = 0] = 0); a field that is
    identically 0 (a zero weight vector) has g' = ``_dzero`` and no sign part."""
    vp, vq = _var(kp, cpp), _var(kq, cqq)
    bp, bq = _hat(kp, vp), _hat(kq, vq)
    out = bp * bq
    if vp > 0.0 and vq > 0.0:
        out += _ALPHA[kp] * _ALPHA[kq] * _2PI * math.asin(_corr(cpq, vp, vq))
    sp, sq = _SIGMA[kp], _SIGMA[kq]
    if sp != 0.0:
        out += 2.0 * sp * bq / math.sqrt(2.0 * math.pi * vp)
    if sq != 0.0:
        out += 2.0 * sq * bp / math.sqrt(2.0 * math.pi * vq)
    if sp != 0.0 and sq != 0.0:
        out += 4.0 * sp * sq / (2.0 * math.pi * math.sqrt(max(vp * vq - cpq * cpq, 0.0)))
    return out


@njit
def _ang_i3(fk, C, p, q, r):
    """E[g_p'(u_p) u_q g_r(u_r)] by Stein's lemma on u_q (uncorrelated with erf's noise): C_qp E[g_p''(v_p)
    g_r(v_r)] + C_qr E[g_p'(v_p) g_r'(v_r)], with g'' = 2 alpha delta + 2 sigma delta':
    E[delta(v_p) g_r(v_r)] = (alpha_r E[|v_r| | v_p = 0] + gamma_r) / sqrt(2 pi v_p) and
    E[delta'(v_p) g_r(v_r)] = -(C_pr / v_p) E[g_r'(v_r) | v_p = 0] / sqrt(2 pi v_p) (Gaussian integration by
    parts: d/dx of E[g_r(v_r) | v_p = x] p(x) at 0)."""
    kp, kr = fk[p], fk[r]
    cpp, crr, cpr = C[p, p], C[r, r], C[p, r]
    out = C[q, r] * _ang_j2(kp, kr, cpp, crr, cpr)
    vp, vr = _var(kp, cpp), _var(kr, crr)
    al, sg = _ALPHA[kp], _SIGMA[kp]
    if vp > 0.0 and (al != 0.0 or sg != 0.0):
        v = max(0.0, vr - cpr * cpr / vp)  # the variance of v_r given v_p = 0
        dens = 1.0 / math.sqrt(2.0 * math.pi * vp)
        if al != 0.0:
            out += C[q, p] * 2.0 * al * dens * (_ALPHA[kr] * _SQ2PI * math.sqrt(v) + _gamma(kr, crr))
        if sg != 0.0:
            dr = _hat(kr, vr)
            if _SIGMA[kr] != 0.0:
                dr += 2.0 * _SIGMA[kr] / math.sqrt(2.0 * math.pi * v)
            out -= C[q, p] * 2.0 * sg * dens * cpr / vp * dr
    return out


@njit
def _delta_i4(fk, C, p, q, r, s):
    """I4 for a student whose g' is a delta on its slot (erf: g' = 2 delta(u + xi), alpha = beta = 0), in
    closed form: 4 sigma_p sigma_q p(v_p = v_q = 0) E[g_r(v_r) g_s(v_s) | v_p = v_q = 0], the last a
    two-field average (``_fam_i2``) under the covariance of (v_r, v_s) given (v_p, v_q) = 0. Each of the
    four factors has its own slot: erf's noise is drawn for each factor, so that a repeated index still
    leaves the 2 x 2 covariance of (v_p, v_q) regular."""
    kp, kq, kr, ks = fk[p], fk[q], fk[r], fk[s]
    app, aqq, apq = _var(kp, C[p, p]), _var(kq, C[q, q]), C[p, q]
    det = app * aqq - apq * apq
    # (v_r, v_s) given (v_p, v_q) = 0: the Schur complement of the (p, q) block
    brp, brq, bsp, bsq = C[r, p], C[r, q], C[s, p], C[s, q]
    vr = _var(kr, C[r, r]) - (aqq * brp * brp - 2.0 * apq * brp * brq + app * brq * brq) / det
    vs = _var(ks, C[s, s]) - (aqq * bsp * bsp - 2.0 * apq * bsp * bsq + app * bsq * bsq) / det
    crs = C[r, s] - (aqq * brp * bsp - apq * (brp * bsq + brq * bsp) + app * brq * bsq) / det
    two = _fam_i2(kr, ks, vr, vs, crs, _gamma(kr, C[r, r]), _gamma(ks, C[s, s]))
    return 4.0 * _SIGMA[kp] * _SIGMA[kq] / (2.0 * math.pi * math.sqrt(det)) * two


@njit
def _corr_bf(cab, caa, cbb):
    """``_corr`` without branches (selects), for the loops over quadrature nodes to vectorize."""
    ok = (caa > 0.0) & (cbb > 0.0)
    r = cab / math.sqrt(caa * cbb if ok else 1.0)
    return min(1.0, max(-1.0, r)) if ok else 0.0


@njit
def _over_sqrt(x, v):
    """x / sqrt(v) where v > 0, else 0 (branch-free)."""
    return x / math.sqrt(v if v > 0.0 else 1.0) if v > 0.0 else 0.0


@njit
def _cov_at(t, a01, a02, e11, f11, e22, f22, e12, f12):
    """(S01, S02, S11, S22, S12) at the node t of I4's path (``_path_term``'s polynomials in t)."""
    t2 = t * t
    return t * a01, t * a02, e11 - t2 * f11, e22 - t2 * f22, e12 - t2 * f12


@njit
def _nodes_general(T, W, k0, k1, k2, g3, s00, a01, a02, e11, f11, e22, f22, e12, f12):
    """sum_n W_n J3(t_n), J3 = E[g_0'(v_0) g_1'(v_1) g_2(v_2)] at the node t of the path, where the covariance
    S of (v0, v1, v2) given u_i = 0 is S00 = s00, S01 = t a01, S02 = t a02, S11 = e11 - t^2 f11,
    S22 = e22 - t^2 f22, S12 = e12 - t^2 f12, and g3 is the constant of g_2:
    J3 = a0 a1 a2 E[s0 s1 |v2|] + a0 a1 g3 E[s0 s1] + a0 b1 b2 E[s0 v2] + b0 a1 b2 E[s1 v2] + b0 b1 a2 E|v2|
    + b0 b1 g3 + a0 b1 sigma2 E[s0 s2] + b0 a1 sigma2 E[s1 s2] (the odd averages vanish; g_1' without its
    delta part, ``_nodes_delta``), with E[s0 s1 |v2|] = sqrt(2/pi) (2/pi) sum_k S_2k / sqrt(S_kk)
    asin(rho of the other two given v_k = 0). Written without branches over the nodes (the arcsine ``asin``
    of the kernels), so that the loop vectorizes."""
    a0, a1, a2 = _ALPHA[k0], _ALPHA[k1], _ALPHA[k2]
    b0, b1, b2 = _BETA[k0], _BETA[k1], _BETA[k2]
    s2 = _SIGMA[k2]
    c_const = b0 * b1 * g3
    c_s01 = a0 * a1 * g3 * _2PI
    c_lin0, c_lin1 = a0 * b1 * b2 * _SQ2PI, b0 * a1 * b2 * _SQ2PI
    c_abs = b0 * b1 * a2 * _SQ2PI
    c_sg0, c_sg1 = s2 * _2PI * a0 * b1, s2 * _2PI * b0 * a1
    c_tri = a0 * a1 * a2 * _SQ2PI * _2PI
    acc = 0.0
    for n in range(T.shape[0]):
        s01, s02, s11, s22, s12 = _cov_at(T[n], a01, a02, e11, f11, e22, f22, e12, f12)
        v = (c_const + c_s01 * asin(_corr_bf(s01, s00, s11)) + c_lin0 * _over_sqrt(s02, s00)
             + c_lin1 * _over_sqrt(s12, s11) + c_abs * math.sqrt(max(s22, 0.0))
             + c_sg0 * asin(_corr_bf(s02, s00, s22)) + c_sg1 * asin(_corr_bf(s12, s11, s22)))
        # E[s0 s1 |v2|]: sum_k S_2k / sqrt(S_kk) asin(the correlation of the other two given v_k = 0)
        i00 = 1.0 / s00 if s00 > 0.0 else 0.0
        i11 = 1.0 / s11 if s11 > 0.0 else 0.0
        i22 = 1.0 / s22 if s22 > 0.0 else 0.0
        tri = (_over_sqrt(s02, s00) * asin(_corr_bf(s12 - s01 * s02 * i00, s11 - s01 * s01 * i00,
                                                    s22 - s02 * s02 * i00))
               + _over_sqrt(s12, s11) * asin(_corr_bf(s02 - s01 * s12 * i11, s00 - s01 * s01 * i11,
                                                      s22 - s12 * s12 * i11))
               + _over_sqrt(s22, s22) * asin(_corr_bf(s01 - s02 * s12 * i22, s00 - s02 * s02 * i22,
                                                      s11 - s12 * s12 * i22)))
        acc += W[n] * (v + c_tri * tri)
    return acc


@njit
def _nodes_delta(T, W, k0, k2, g3, sj, s00, a01, a02, e11, f11, e22, f22, e12, f12):
    """sum_n W_n of the delta part of g_j' (an erf slot v1: g_j' = 2 sigma_j delta(v1)) at the nodes:
    2 sigma_j E[g'(v0) g_j'(v2) | v1 = 0] / sqrt(2 pi S11), a two-field average under the covariance w
    given v1 = 0 as well (a loop of its own: in ``_nodes_general`` it slowed the other pairs by 15%)."""
    a0, b0, a2, b2, s2 = _ALPHA[k0], _BETA[k0], _ALPHA[k2], _BETA[k2], _SIGMA[k2]
    acc = 0.0
    for n in range(T.shape[0]):
        s01, s02, s11, s22, s12 = _cov_at(T[n], a01, a02, e11, f11, e22, f22, e12, f12)
        w00 = s00 - s01 * s01 / s11
        w22 = s22 - s12 * s12 / s11
        w02 = s02 - s01 * s12 / s11
        two = (b0 * (a2 * _SQ2PI * math.sqrt(max(w22, 0.0)) + g3) + a0 * s2 * _2PI * asin(_corr_bf(w02, w00, w22))
               + a0 * b2 * _SQ2PI * _over_sqrt(w02, w00))
        acc += W[n] * 2.0 * sj * two / math.sqrt(2.0 * math.pi * s11)
    return acc


@njit
def _nodes_same(T, W, k0, k1, g3, s00, a01, e11, f11):
    """``_nodes_general`` when v_2 is v_1 (I4 with r = s: the same field twice, for every t of the path):
    E[g_0'(v_0) h(v_1)] with h = g_1' g_1 = (a1^2 + b1^2) v + 2 a1 b1 |v| + a1 g3 sign(v) + b1 g3, by
    E[s0 v1] = sqrt(2/pi) S_01 / sqrt(S_00), E[s0 |v1|] = 0, E[s0 s1] = (2/pi) asin(rho_01). Written out
    because the general formula divides residual covariances of two identical fields, which are 0 only
    up to rounding: the quadrature's integrand was noisy (1e-8 relative) and did not converge."""
    a0, b0, a1, b1 = _ALPHA[k0], _BETA[k0], _ALPHA[k1], _BETA[k1]
    c_abs = b0 * 2.0 * a1 * b1 * _SQ2PI
    c_lin = a0 * (a1 * a1 + b1 * b1) * _SQ2PI
    c_s01 = a0 * a1 * g3 * _2PI
    acc = 0.0
    for n in range(T.shape[0]):
        t = T[n]
        s01, s11 = t * a01, e11 - t * t * f11
        acc += W[n] * (b0 * b1 * g3 + c_abs * math.sqrt(max(s11, 0.0)) + c_lin * _over_sqrt(s01, s00)
                       + c_s01 * asin(_corr_bf(s01, s00, s11)))
    return acc


@njit
def _path_term(Cs, kk, same_pq, i, j):
    """The term (i, j) of I4's path (``_ang_i4``): (False, ...) where it vanishes (u_i or its alpha is zero,
    C_ij = 0, or a zero weight vector's g' among the others is 0), else (True, s00, a01, a02, e11, f11, e22,
    f22, e12, f12): the covariance of the other slots (v0, v1, v2) = (u_i', u_j, u_j') given u_i = 0 under
    C(t), a polynomial in t: S00 = s00, S01 = t a01, S02 = t a02, S11 = e11 - t^2 f11, S22 = e22 - t^2 f22,
    S12 = e12 - t^2 f12 (``same_pq``: u_i' is u_i, exactly 0 given u_i = 0)."""
    cii = Cs[i, i]
    o0, o1, o2 = 1 - i, j, 5 - j
    if (cii <= 0.0 or _ALPHA[kk[i]] == 0.0 or Cs[i, j] == 0.0
            or (Cs[o0, o0] <= 0.0 and _dzero(kk[o0]) == 0.0) or (Cs[o1, o1] <= 0.0 and _dzero(kk[o1]) == 0.0)):
        return False, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    ci0, ci1, ci2 = Cs[o0, i], Cs[o1, i], Cs[o2, i]
    if same_pq:
        s00 = a01 = a02 = 0.0
    else:
        s00 = Cs[o0, o0] - ci0 * ci0 / cii
        a01 = Cs[o0, o1] - ci0 * ci1 / cii
        a02 = Cs[o0, o2] - ci0 * ci2 / cii
    return (True, s00, a01, a02, Cs[o1, o1], ci1 * ci1 / cii, Cs[o2, o2], ci2 * ci2 / cii, Cs[o1, o2],
            ci1 * ci2 / cii)


@njit
def _slots(C, idx, kinds, n, Cs, raw):
    """The slot covariance (erf's noise on the diagonal) and the raw variances of the fields idx[:n]."""
    for x in range(n):
        raw[x] = C[idx[x], idx[x]]
        for y in range(n):
            Cs[x, y] = C[idx[x], idx[y]]
        Cs[x, x] += _TAU[kinds[x]]


@njit
def _nodes_expect(T, W, k3, r3, s00, a01, a02, e11, f11, e22, f22, e12, f12):
    """sum_n W_n E[g_0'(v_0) g_1'(v_1) g_2(v_2)] by ``_expect`` at the nodes (``_nodes_general``'s
    covariance; the kinds ``k3`` and raw variances ``r3`` of the three slots), for a Hermite factor."""
    S = np.zeros((4, 4))
    d3 = np.array([1, 1, 0, 0], np.int64)
    acc = 0.0
    for n in range(T.shape[0]):
        s01, s02, s11, s22, s12 = _cov_at(T[n], a01, a02, e11, f11, e22, f22, e12, f12)
        S[0, 0] = s00
        S[0, 1], S[0, 2], S[1, 1], S[2, 2], S[1, 2] = s01, s02, s11, s22, s12
        S[1, 0], S[2, 0], S[2, 1] = s01, s02, s12
        acc += W[n] * _expect(S, k3, d3, r3, _N3)
    return acc


@njit
def _ang_i4(fk, C, p, q, r, s):
    """E[g'(u_p) g'(u_q) g_r(u_r) g_s(u_s)] for angular students, which has no closed form: along the
    path C(t) that scales the covariances between {u_p, u_q} and {u_r, u_s} by t (independent at t = 0,
    where the average factorizes into J2 I2), dE/dt = sum_{i in {p,q}, j in {r,s}} C_ij E_t[d_i d_j F] and
    d_i d_j F = 2 alpha_i delta(u_i) g'(u_i') g_j'(u_j) g_j'(u_j'): a three-field average given u_i = 0 in
    closed form (``_nodes_general``; an erf field's g_j' is a delta on its slot, which conditions once more). The
    integral over t by tanh-sinh quadrature (``_TS_*``), which the endpoint singularities of degenerate
    (parallel, repeated) fields leave exponentially convergent. The four factors are four slots of
    covariance ``Cs``: erf's (a sign of the field plus its own noise) have variance C_rr + 1. Given u_i = 0,
    the covariance of the other three slots is a polynomial in t (``_nodes_general``), so each of the four
    (i, j) terms is one loop over the nodes, which vectorizes; with a Hermite factor (three factors with a
    sign or |.| part, which ``_herm_closed`` does not take) the average at each node is ``_expect``'s."""
    idx = np.array([p, q, r, s], np.int64)
    kk = np.array([fk[p], fk[q], fk[r], fk[s]], np.int64)
    Cs, raw = np.empty((4, 4)), np.empty(4)
    _slots(C, idx, kk, _N4, Cs, raw)
    herm = kk.max() >= HERMITE  # a Hermite factor: the averages by ``_expect``
    if herm:
        base = (_herm2(kk[0], kk[1], raw[0], raw[1], C[p, q], _N1)
                * _herm2(kk[2], kk[3], raw[2], raw[3], C[r, s], _N0))
    else:
        base = _ang_j2(kk[0], kk[1], C[p, p], C[q, q], C[p, q]) * _ang_i2(kk[2], kk[3], C[r, r], C[s, s], C[r, s])
    same = idx[2] == idx[3] and _TAU[kk[2]] == 0.0  # the same field twice among the g factors
    k3, r3 = np.zeros(4, np.int64), np.zeros(4)
    total = 0.0
    for i in range(2):
        for j in range(2, 4):
            ok, s00, a01, a02, e11, f11, e22, f22, e12, f12 = _path_term(Cs, kk, idx[0] == idx[1], i, j)
            if not ok:
                continue
            o0, o1, o2 = 1 - i, j, 5 - j
            g3 = _gamma(kk[o2], raw[o2])
            if herm:
                k3[0], k3[1], k3[2] = kk[o0], kk[o1], kk[o2]
                r3[0], r3[1], r3[2] = raw[o0], raw[o1], raw[o2]
                acc = _nodes_expect(_TS_T, _TS_W, k3, r3, s00, a01, a02, e11, f11, e22, f22, e12, f12)
            elif same:
                acc = _nodes_same(_TS_T, _TS_W, kk[o0], kk[o1], g3, s00, a01, e11, f11)
            else:
                acc = _nodes_general(_TS_T, _TS_W, kk[o0], kk[o1], kk[o2], g3, s00, a01, a02, e11, f11, e22, f22,
                                     e12, f12)
            sj = _SIGMA[kk[j]]
            if sj != 0.0 and not herm:
                acc += _nodes_delta(_TS_T, _TS_W, kk[o0], kk[o2], g3, sj, s00, a01, a02, e11, f11, e22, f22, e12, f12)
            total += Cs[i, j] * 2.0 * _ALPHA[kk[i]] * acc / math.sqrt(2.0 * math.pi * Cs[i, i])
    return base + total


# ---------------------------------------------------------------------------------------------------------
# Averages with Hermite factors in the family (kinds 9, 10: he2, he3 against relu, abs, relu_centered, erf).
# Every factor is sum_{F, k} W[F, k] F(v) v^k with F in {1, sign, |.|} (``_factor``), plus a delta (erf's g');
# a delta conditions the other slots on its own being 0; the polynomial factors are regressed on the (at most
# two) others, x and y, and what is left are the moments E[F(x) G(y) x^a y^b] (``_bivariate``), each a
# finite recursion by Stein's lemma down to closed forms.
# ---------------------------------------------------------------------------------------------------------


@njit
def _binom(n, k):
    out = 1.0
    for i in range(k):
        out = out * (n - i) / (i + 1)
    return out


@njit
def _absmom(n, v):
    """E|y|^n for y ~ N(0, v): (n - 1)!! v^(n/2), times sqrt(2/pi) for odd n."""
    if v <= 0.0:
        return 1.0 if n == 0 else 0.0
    f = 1.0
    for k in range(n - 1, 0, -2):
        f *= k
    f *= v ** (0.5 * n)
    return f * _SQ2PI if n % 2 == 1 else f


@njit
def _m1(F, b, v):
    """E[y^b F(y)] for y ~ N(0, v), F = 0 (one), 1 (sign), 2 (|.|); sign(0) = 0."""
    if (F == 1) == (b % 2 == 0):  # an odd function
        return 0.0
    if v <= 0.0:
        return 1.0 if (F == 0 and b == 0) else 0.0
    return _absmom(b + 1 if F == 2 else b, v)


@njit
def _bivariate(sxx, syy, sxy, D, M):
    """M[F, G, a, b] = E[F(x) G(y) x^a y^b] for a + b <= D, F, G in {one, sign, |.|}: by increasing a + b,
    Stein's lemma on the first monomial, E[x h] = S_xx E[d_x h] + S_xy E[d_y h], with |.|' = sign and
    sign' = 2 delta, and a delta conditions: E[delta(x) y^b G(y)] = E[y^b G(y) | x = 0] / sqrt(2 pi S_xx)."""
    px = 1.0 / math.sqrt(2.0 * math.pi * sxx) if sxx > 0.0 else 0.0
    py = 1.0 / math.sqrt(2.0 * math.pi * syy) if syy > 0.0 else 0.0
    vyx = max(syy - sxy * sxy / sxx, 0.0) if sxx > 0.0 else syy  # var(y | x = 0)
    vxy = max(sxx - sxy * sxy / syy, 0.0) if syy > 0.0 else sxx
    rho = _corr(sxy, sxx, syy)
    nx, ny = math.sqrt(max(sxx, 0.0)), math.sqrt(max(syy, 0.0))
    for n in range(D + 1):
        for a in range(n + 1):
            b = n - a
            for F in range(3):
                for G in range(3):
                    if n == 0:
                        if F == 1 and G == 1:
                            v = _2PI * math.asin(rho)
                        elif F == 2 and G == 2:
                            v = _2PI * nx * ny * (math.sqrt(max(0.0, 1.0 - rho * rho)) + rho * math.asin(rho))
                        elif F == 0 and G == 0:
                            v = 1.0
                        elif F == 0 and G == 2:
                            v = _SQ2PI * ny
                        elif F == 2 and G == 0:
                            v = _SQ2PI * nx
                        else:  # an odd function of (x, y)
                            v = 0.0
                        M[F, G, a, b] = v
                        continue
                    # the monomial to lower: x (a >= 1) or y; dx: E[F'(x) x^a' y^b' G], dy: E[F x^a' y^b' G'(y)]
                    if a >= 1:
                        ap, bp = a - 1, b
                    else:
                        ap, bp = 0, b - 1
                    dx = 0.0
                    if F == 2:
                        dx = M[1, G, ap, bp]
                    elif F == 1 and ap == 0:
                        dx = 2.0 * px * _m1(G, bp, vyx)
                    dy = 0.0
                    if G == 2:
                        dy = M[F, 1, ap, bp]
                    elif G == 1 and bp == 0:
                        dy = 2.0 * py * _m1(F, ap, vxy)
                    if a >= 1:
                        v = sxx * dx + sxy * dy
                        if a >= 2:
                            v += sxx * (a - 1) * M[F, G, a - 2, b]
                        if b >= 1:
                            v += sxy * b * M[F, G, a - 1, b - 1]
                    else:
                        v = syy * dy + sxy * dx
                        if b >= 2:
                            v += syy * (b - 1) * M[F, G, 0, b - 2]
                    M[F, G, a, b] = v


@njit
def _factor(kind, deriv, raw_var, W):
    """g (deriv 0) or g' (deriv 1) of a family kind as W[F, k] (F: one, sign, |.|; the power k of v <= 3);
    returns the coefficient of its delta (erf's g' = 2 delta on its slot). A zero weight vector's g' is
    ``_dzero`` (sigma'(0) = 0 for the angular activations, as in the kernels)."""
    for F in range(3):
        for k in range(4):
            W[F, k] = 0.0
    if kind >= HERMITE:  # he2, he3: polynomials
        row = _prow(kind)
        for k in range(4):
            W[0, k] = _DG[row, k] if deriv else _G[row, k]
        return 0.0
    if deriv:
        if raw_var <= 0.0 and _TAU[kind] == 0.0:
            W[0, 0] = _dzero(kind)
            return 0.0
        W[0, 0] = _BETA[kind]
        W[1, 0] = _ALPHA[kind]
        return 2.0 * _SIGMA[kind]
    W[0, 0] = _gamma(kind, raw_var)
    W[0, 1] = _BETA[kind]
    W[2, 0] = _ALPHA[kind]
    W[1, 0] = _SIGMA[kind]
    return 0.0


@njit
def _expect(S, kinds, deriv, raw, n):
    """E[prod_t h_t(v_t)] over n <= 4 slots of covariance S (their variances with erf's noise), h_t = g or g'
    (``deriv``) of ``kinds[t]`` (``raw``: the fields' own variances, for relu_centered's constant and zero
    weight vectors); after the deltas condition, at most two factors may be other than polynomials."""
    S0 = S
    S = np.empty((n, n))
    for a in range(n):
        for b in range(n):
            S[a, b] = S0[a, b]
    Ws = np.zeros((n, 3, 4))
    poly = np.zeros(n, np.bool_)
    scale = 1.0
    for t in range(n):
        dc = _factor(kinds[t], deriv[t], raw[t], Ws[t])
        if dc != 0.0:  # a delta: condition the other slots on v_t = 0
            stt = S[t, t]
            scale *= dc / math.sqrt(2.0 * math.pi * stt)
            col = np.empty(n)
            for a in range(n):
                col[a] = S[a, t]
            for a in range(n):
                for b in range(n):
                    S[a, b] -= col[a] * col[b] / stt
            Ws[t, 0, 0] = 1.0  # (the delta was its only term: 1 from here)
        poly[t] = Ws[t, 1, 0] == 0.0 and Ws[t, 2, 0] == 0.0
    # x, y: the factors that are not polynomials (-1: none, a constant 1 of variance 0)
    xs = np.full(2, -1, np.int64)
    cnt = 0
    for t in range(n):
        if not poly[t]:
            if cnt == 2:  # (not asked for: the callers route three such factors to the quadrature)
                return np.nan
            xs[cnt] = t
            cnt += 1
    sxx = S[xs[0], xs[0]] if xs[0] >= 0 else 0.0
    syy = S[xs[1], xs[1]] if xs[1] >= 0 else 0.0
    sxy = S[xs[0], xs[1]] if xs[0] >= 0 and xs[1] >= 0 else 0.0
    # the pseudo-inverse of the 2 x 2 covariance of (x, y): the regression of the polynomial slots on them
    det = sxx * syy - sxy * sxy
    tr = sxx + syy
    if det > 1e-13 * tr * tr:
        i00, i11, i01 = syy / det, sxx / det, -sxy / det
    elif tr > 0.0:
        i00, i11, i01 = sxx / (tr * tr), syy / (tr * tr), sxy / (tr * tr)
    else:
        i00 = i11 = i01 = 0.0
    B = np.zeros((n, 2))
    for t in range(n):
        if poly[t]:
            cx = S[t, xs[0]] if xs[0] >= 0 else 0.0
            cy = S[t, xs[1]] if xs[1] >= 0 else 0.0
            B[t, 0] = i00 * cx + i01 * cy
            B[t, 1] = i01 * cx + i11 * cy
    # the residual covariance of the polynomial slots (its moments E[prod e_t^r_t]: ``_moment_table`` below)
    R = np.zeros((4, 4))
    for t in range(n):
        for u in range(n):
            if poly[t] and poly[u]:
                cx = S[u, xs[0]] if xs[0] >= 0 else 0.0
                cy = S[u, xs[1]] if xs[1] >= 0 else 0.0
                R[t, u] = S[t, u] - B[t, 0] * cx - B[t, 1] * cy
    deg = np.zeros(4, np.int64)
    for t in range(n):
        if poly[t]:
            for k in range(4):
                if Ws[t, 0, k] != 0.0:
                    deg[t] = k
    # the polynomial in (x, y) of E[prod_poly P_t(B_t . (x, y) + e_t) | x, y]: over the terms c v^k of each
    # factor, the split k = j + r (binomial) into (B_t . (x, y))^j e_t^r, and the powers x^i y^(j - i) of the
    # first; the combinations are counted flat (mixed radix), which keeps the loops shallow
    T = _moment_table(R, _N0, _N1, _N2, _N3, deg[0], deg[1], deg[2], deg[3])
    L = np.zeros((4, 4, 4))  # L[t, j, i]: the coefficient of x^i y^(j - i) in (B_t . (x, y))^j
    for t in range(4):
        L[t, 0, 0] = 1.0
    for t in range(n):
        for j in range(4):
            for i in range(j + 1):
                L[t, j, i] = _binom(j, i) * B[t, 0] ** i * B[t, 1] ** (j - i)
    P = np.zeros((13, 13))
    ks = np.zeros(4, np.int64)
    js = np.zeros(4, np.int64)
    nk = (deg[0] + 1) * (deg[1] + 1) * (deg[2] + 1) * (deg[3] + 1)
    for kc in range(nk):
        rem = kc
        c = 1.0
        for t in range(4):
            ks[t] = rem % (deg[t] + 1)
            rem //= deg[t] + 1
            if t < n and poly[t]:
                c *= Ws[t, 0, ks[t]]
        if c == 0.0:
            continue
        nj = (ks[0] + 1) * (ks[1] + 1) * (ks[2] + 1) * (ks[3] + 1)
        for jc in range(nj):
            rem = jc
            cc = c
            for t in range(4):
                js[t] = rem % (ks[t] + 1)
                rem //= ks[t] + 1
                cc *= _binom(ks[t], js[t])
            cc *= T[ks[0] - js[0], ks[1] - js[1], ks[2] - js[2], ks[3] - js[3]]
            if cc == 0.0:
                continue
            ni = (js[0] + 1) * (js[1] + 1) * (js[2] + 1) * (js[3] + 1)
            for ic in range(ni):
                rem = ic
                v = cc
                ea = 0
                eb = 0
                for t in range(4):
                    i = rem % (js[t] + 1)
                    rem //= js[t] + 1
                    v *= L[t, js[t], i]
                    ea += i
                    eb += js[t] - i
                P[ea, eb] += v
    # E = sum over the non-polynomial factors' terms W[F, k] F(x) x^k, times P's monomials
    D = deg.sum() + 2  # P's degree, and the power of x or y in a non-polynomial factor (at most 1)
    M = np.empty((3, 3, D + 1, D + 1))
    _bivariate(sxx, syy, sxy, D, M)
    Wx = np.zeros((3, 4))
    Wy = np.zeros((3, 4))
    for F in range(3):
        for k in range(4):
            one = 1.0 if F == 0 and k == 0 else 0.0  # (no such factor: the constant 1)
            Wx[F, k] = Ws[xs[0], F, k] if xs[0] >= 0 else one
            Wy[F, k] = Ws[xs[1], F, k] if xs[1] >= 0 else one
    total = 0.0
    for F in range(3):
        for kx in range(4):
            wx = Wx[F, kx]
            if wx == 0.0:
                continue
            for G in range(3):
                for ky in range(4):
                    wy = Wy[G, ky]
                    if wy == 0.0:
                        continue
                    for a in range(D - 1):
                        for b in range(D - 1 - a):
                            if P[a, b] != 0.0:
                                total += wx * wy * P[a, b] * M[F, G, a + kx, b + ky]
    return scale * total


@njit
def _prow(kind):
    """The row of ``_G`` / ``_DG`` of a polynomial kind of the family (linear 7, he2 9, he3 10)."""
    return 1 if kind == LINEAR_ANGULAR else kind - 7


@njit
def _herm2(kp, kq, cpp, cqq, cpq, deriv):
    """I2 (deriv 0) or J2 (deriv 1) of two fields, one of them Hermite (``_expect``)."""
    S = np.zeros((4, 4))
    S[0, 0], S[1, 1] = _var(kp, cpp), _var(kq, cqq)
    S[0, 1] = S[1, 0] = cpq
    return _expect(S, np.array([kp, kq, 0, 0]), np.array([deriv, deriv, 0, 0]), np.array([cpp, cqq, 0.0, 0.0]), _N2)


@njit
def _herm_i3(fk, C, p, q, r):
    """I3 = E[g_p'(u_p) u_q g_r(u_r)] with a Hermite factor: three slots, u_q the linear one (kind 7)."""
    idx = np.array([p, q, r, 0], np.int64)
    kinds = np.array([fk[p], LINEAR_ANGULAR, fk[r], 0], np.int64)
    Cs, raw = np.zeros((4, 4)), np.zeros(4)
    _slots(C, idx, kinds, _N3, Cs, raw)
    return _expect(Cs, kinds, np.array([1, 0, 0, 0], np.int64), raw, _N3)


@njit
def _nonpoly(kind, deriv, raw_var):
    """Whether g (or g') of ``kind`` has a sign or absolute-value part (a delta does not count: it conditions)."""
    if kind >= HERMITE or kind == LINEAR_ANGULAR:
        return False
    if deriv:
        return _ALPHA[kind] != 0.0 and raw_var > 0.0
    return _ALPHA[kind] != 0.0 or _SIGMA[kind] != 0.0


@njit
def _herm_closed(fk, C, p, q, r, s):
    """I4 with a Hermite factor where at most two factors have a sign or |.| part: (True, the value) by
    ``_wick`` (four polynomials) or ``_expect``; (False, 0) with three (angular students, an angular or erf g
    on one of r, s and a Hermite one on the other), which the quadrature of ``_ang_i4`` takes."""
    idx = np.array([p, q, r, s], np.int64)
    kinds = np.array([fk[p], fk[q], fk[r], fk[s]], np.int64)
    deriv = np.array([1, 1, 0, 0], np.int64)
    Cs, raw = np.zeros((4, 4)), np.zeros(4)
    _slots(C, idx, kinds, _N4, Cs, raw)
    cnt, polys = 0, 0
    for t in range(4):
        if _nonpoly(kinds[t], deriv[t], raw[t]):
            cnt += 1
        elif kinds[t] == LINEAR_ANGULAR or kinds[t] >= HERMITE:
            polys += 1
    if polys == 4:  # four polynomials (students and teachers among linear, he2, he3): Wick's theorem
        r0, r1, r2, r3 = _prow(kinds[0]), _prow(kinds[1]), _prow(kinds[2]), _prow(kinds[3])
        return True, _wick(C, p, q, r, s, _DG[r0], _DEG[r0] - 1, _DG[r1], _DEG[r1] - 1, _G[r2], _DEG[r2], _G[r3],
                           _DEG[r3])
    if cnt <= 2:
        return True, _expect(Cs, kinds, deriv, raw, _N4)
    return False, 0.0


@njit
def _i2(kind, kp, kq, cpp, cqq, cpq):
    """E[g(u_p) g(u_q)] for fields of variances cpp, cqq and covariance cpq (``kp``, ``kq``: their kinds in
    the angular family)."""
    if kind >= 4:
        if kp >= HERMITE or kq >= HERMITE:  # (the Hermite averages only here: one compiled copy each)
            return _herm2(kp, kq, cpp, cqq, cpq, _N0)
        return _ang_i2(kp, kq, cpp, cqq, cpq)
    if kind == 1:
        return cpq
    if kind >= 2:  # the polynomials (each field's own: linear, he2, he3) by Wick's theorem
        C = np.array([[cpp, cpq], [cpq, cqq]])
        return _wick(C, _N0, _N1, _N0, _N0, _G[kp], _DEG[kp], _G[kq], _DEG[kq], _ONE, _N0, _ONE, _N0)
    return _2PI * math.asin(cpq / math.sqrt((1.0 + cpp) * (1.0 + cqq)))


@njit
def _j2(kind, kp, kq, cpp, cqq, cpq):
    """E[g'(u_p) g'(u_q)]."""
    if kind >= 4:
        if kp >= HERMITE or kq >= HERMITE:
            return _herm2(kp, kq, cpp, cqq, cpq, _N1)
        return _ang_j2(kp, kq, cpp, cqq, cpq)
    if kind == 1:
        return 1.0
    if kind >= 2:
        C = np.array([[cpp, cpq], [cpq, cqq]])
        return _wick(C, _N0, _N1, _N0, _N0, _DG[kp], _DEG[kp] - 1, _DG[kq], _DEG[kq] - 1, _ONE, _N0, _ONE, _N0)
    return _2PI / math.sqrt((1.0 + cpp) * (1.0 + cqq) - cpq * cpq)


@njit
def _i3(kind, fk, C, p, q, r):
    """E[g'(u_p) u_q g(u_r)] (``fk``: the fields' kinds in the angular family)."""
    if kind >= 4:
        if fk[p] >= HERMITE or fk[r] >= HERMITE:
            return _herm_i3(fk, C, p, q, r)
        return _ang_i3(fk, C, p, q, r)
    if kind == 1:
        return C[q, r]
    if kind >= 2:
        kp, kr = fk[p], fk[r]
        return _wick(C, p, q, r, p, _DG[kp], _DEG[kp] - 1, _Z, _N1, _G[kr], _DEG[kr], _ONE, _N0)
    cpp, crr = C[p, p], C[r, r]
    lam3 = (1.0 + cpp) * (1.0 + crr) - C[p, r] ** 2
    return _2PI / math.sqrt(lam3) * (C[q, r] * (1.0 + cpp) - C[p, q] * C[p, r]) / (1.0 + cpp)


@njit
def _i4(kind, fk, C, p, q, r, s):
    """E[g'(u_p) g'(u_q) g(u_r) g(u_s)]."""
    if kind >= 4:
        if max(max(fk[p], fk[q]), max(fk[r], fk[s])) >= HERMITE:
            ok, v = _herm_closed(fk, C, p, q, r, s)
            if ok:
                return v
        elif _SIGMA[fk[p]] != 0.0:
            return _delta_i4(fk, C, p, q, r, s)
        return _ang_i4(fk, C, p, q, r, s)
    if kind == 1:
        return C[r, s]
    if kind >= 2:
        kp, kq, kr, ks = fk[p], fk[q], fk[r], fk[s]
        return _wick(C, p, q, r, s, _DG[kp], _DEG[kp] - 1, _DG[kq], _DEG[kq] - 1, _G[kr], _DEG[kr], _G[ks], _DEG[ks])
    cpp, cqq, crr, css = C[p, p], C[q, q], C[r, r], C[s, s]
    cpq, cpr, cps, cqr, cqs, crs = C[p, q], C[p, r], C[p, s], C[q, r], C[q, s], C[r, s]
    lam4 = (1.0 + cpp) * (1.0 + cqq) - cpq * cpq
    lam0 = lam4 * crs - cqr * cqs * (1.0 + cpp) - cpr * cps * (1.0 + cqq) + cpq * cpr * cqs + cpq * cps * cqr
    lam1 = lam4 * (1.0 + crr) - cqr * cqr * (1.0 + cpp) - cpr * cpr * (1.0 + cqq) + 2.0 * cpq * cpr * cqr
    lam2 = lam4 * (1.0 + css) - cqs * cqs * (1.0 + cpp) - cps * cps * (1.0 + cqq) + 2.0 * cpq * cps * cqs
    x = lam0 / math.sqrt(lam1 * lam2)
    return _4PI2 / math.sqrt(lam4) * math.asin(min(1.0, max(-1.0, x)))
