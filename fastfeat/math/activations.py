"""The activation table: sigma, sigma', and the Gaussian population kernel, written once.

Every scalar function here is a plain Python function of an integer activation code. ``build`` compiles
the whole table for one target (``numba.njit`` on the CPU, ``numba.cuda.jit(device=True)`` on the GPU)
and one float type, so CPU and GPU kernels share the same math and float32 code stays in float32 (all
constants are captured as typed closure constants, never as Python float literals).

Conventions (docs/conventions.md): ``q_u = |u|^2``, ``c = u.v``, ``rho = c / (|u||v|)`` clipped to [-1, 1].
``pair(code, nu, nv, c)`` returns ``(K, alpha_u, alpha_v, beta)`` with

    grad_u K(u, v) = alpha_u * u + beta * v,     grad_v K(u, v) = alpha_v * v + beta * u,

``beta`` being symmetric in (u, v).  For the positively homogeneous kernels the gradient at ``u = 0``
(or ``v = 0``) is 0, as the conventions define it.

The neuron of ``relu_centered`` is ``phi(w, x) = relu(w.x) - w.x/2 - |w|/sqrt(2 pi)``; it depends on
``|w|`` as well as ``w.x``, so ``neuron(code, z, nw)`` takes the norm and ``dneuron_dnorm(code)`` gives the
coefficient of ``w/|w|`` in ``grad_w phi`` (the part that is not ``sigma'(z) x``).
"""
import math
from collections import namedtuple
from decimal import Decimal

import numpy as np

#: One row per activation: every encoding the kernels use is derived from this table.
#:   name         the public name (``ff.ACTIVATIONS``)
#:   even         w and -w are the same neuron (angle metrics use |cos|)
#:   homogeneous  positively homogeneous neuron (norm balancing keeps the function)
#:   kernel       the population kernel's family: "angular" (K = |u||v| kappa(rho), with ``angular``
#:                its constants (off, scale, shift), see ``homog_consts``), "erf", "polynomial", or
#:                None (no closed form: empirical and online objectives only)
#:   pointwise    how the CPU kernels evaluate sigma in their vectorized loops: "alg" (piecewise
#:                polynomial, coefficients ``ALG_PARAMS`` derived from the scalar functions below),
#:                "erf" or "tanh" (the scalar functions with the code fixed at compile time)
Activation = namedtuple("Activation", "name even homogeneous kernel angular pointwise")
_PI = math.pi
SPEC = (
    Activation("relu", False, True, "angular", (_PI, 1.0 / (2 * _PI), 0.0), "alg"),
    Activation("abs", True, True, "angular", (_PI / 2, 2.0 / _PI, 0.0), "alg"),
    Activation("relu_centered", True, True, "angular", (_PI / 2, 1.0 / (2 * _PI), -1.0), "alg"),
    Activation("erf", False, False, "erf", None, "erf"),
    Activation("linear", False, True, "polynomial", None, "alg"),
    Activation("he2", True, False, "polynomial", None, "alg"),
    Activation("he3", False, False, "polynomial", None, "alg"),
    Activation("tanh", False, False, None, None, "tanh"),
)

NAMES = tuple(a.name for a in SPEC)
CODES = {name: code for code, name in enumerate(NAMES)}
#: named codes (the integers the kernels take)
RELU, ABS, RELU_CENTERED, ERF, LINEAR, HE2, HE3, TANH = (CODES[n] for n in (
    "relu", "abs", "relu_centered", "erf", "linear", "he2", "he3", "tanh"))
#: activations whose population kernel has a closed form
HAS_KERNEL = frozenset(a.name for a in SPEC if a.kernel is not None)
#: activations for which w and -w are the same neuron (angle metrics use |cos|)
EVEN = frozenset(a.name for a in SPEC if a.even)
#: positively homogeneous neurons (norm balancing keeps the function)
HOMOGENEOUS = frozenset(a.name for a in SPEC if a.homogeneous)
#: codes whose kernel is of the angular form |u||v| kappa(rho)
ANGULAR_CODES = tuple(CODES[a.name] for a in SPEC if a.kernel == "angular")
#: pointwise kinds of the CPU kernels' vectorized loops, and each code's kind
KIND_ALG, KIND_ERF, KIND_TANH = 0, 1, 2
_KIND = {"alg": KIND_ALG, "erf": KIND_ERF, "tanh": KIND_TANH}
KIND_OF = np.array([_KIND[a.pointwise] for a in SPEC], np.int64)
#: the activation of each pointwise kind that is not ALG (its code is fixed at compile time there)
KIND_CODE = {KIND_ERF: ERF, KIND_TANH: TANH}


def code_of(name, *, argname="activation"):
    """Validate an activation name and return its integer code."""
    if not isinstance(name, str):
        raise TypeError(f"{argname} must be a string, one of {NAMES}, got {type(name).__name__}")
    if name not in CODES:
        raise ValueError(f"{argname}={name!r} is not a known activation; choose one of {NAMES}")
    return CODES[name]


#: P(u) of asin(t) = t + t u P(u), u = t^2, 0 <= u <= 1/4: coefficients of u^0, u^1, ... fitted to
#: (asin(sqrt(u)) / sqrt(u) - 1) / u (weighted least squares on 400 Chebyshev points, the target computed
#: to 50 digits; ``tests/kernels/test_acos.py`` checks P against that target in exact decimal arithmetic, and the
#: ulp errors of the functions built on it). Relative error of P: 1.9e-15 (float64, degree 11) and 3.9e-7 (float32, degree 4); u P(u) <= 0.05,
#: so P contributes at most 0.1 ulp to asin and acos.
ASIN_P64 = tuple(float.fromhex(h) for h in (
    "0x1.5555555555550p-3", "0x1.3333333336e7bp-4", "0x1.6db6db68385a1p-5", "0x1.f1c71f9f4365fp-6",
    "0x1.6e8b29e333556p-6", "0x1.1c5956de23c30p-6", "0x1.c86fe3768344cp-7", "0x1.853665d1ed399p-7",
    "0x1.fe9d14b752b2cp-8", "0x1.0750196dfd899p-6", "-0x1.624507831a5a8p-7", "0x1.ce4ad36574482p-6"))
ASIN_P32 = tuple(float.fromhex(h) for h in (
    "0x1.55555d0231fc5p-3", "0x1.33273c2792fd3p-4", "0x1.70a51a1dc844fp-5", "0x1.b326d95e0cb46p-6",
    "0x1.37e8f5f0f66b5p-5"))
#: pi / 2 to 40 digits, split into a float and its remainder per float type
_PIO2 = Decimal("1.570796326794896619231321691639751442098585")


def _split(x, ft):
    """(hi, lo): ``hi`` the float of type ``ft`` nearest ``x`` (a Decimal), ``lo`` that of ``x - hi``."""
    hi = ft(float(x))
    return hi, ft(float(x - Decimal(float(hi))))


def build(jit, ftype, fast_acos=False):
    """Compile the activation table with decorator ``jit`` for float type ``ftype``.

    Returns a namespace with ``neuron``, ``dneuron``, ``dneuron_dnorm``, ``pair``, ``acos`` and ``asin``.
    ``fast_acos``: arccos and arcsin from a square-root range reduction and a polynomial (``ASIN_P64``,
    ``ASIN_P32``), branch-free so that loops over pairs vectorize, within a few ulp in both precisions
    (``tests/kernels/test_acos.py``); otherwise libm's (the CUDA build: the GPU's own are fast).
    """
    ft = ftype
    zero, one, two, half = ft(0.0), ft(1.0), ft(2.0), ft(0.5)
    three, four, six, nine, eighteen = ft(3.0), ft(4.0), ft(6.0), ft(9.0), ft(18.0)
    two_over_pi = ft(2.0 / math.pi)
    inv_sqrt2, inv_sqrt2pi = ft(1.0 / math.sqrt(2.0)), ft(1.0 / math.sqrt(2.0 * math.pi))
    two_over_sqrtpi_sqrt2 = ft(math.sqrt(2.0 / math.pi))  # d/dz erf(z/sqrt2) = sqrt(2/pi) exp(-z^2/2)
    if fast_acos:
        # asin(t) = t + t u P(u) with u = t^2 for 0 <= t <= 1/2; for |x| > 1/2 the range reduction
        # asin(|x|) = pi/2 - 2 asin(sqrt((1 - |x|) / 2)) (exact: 1 - |x| and the halving are exact there)
        # brings it back to t <= 1/2. Both branches are computed and one is selected, so loops over pairs
        # vectorize (a square root, a Horner polynomial, a few selects). P: ASIN_P64 / ASIN_P32.
        coef = tuple(ft(v) for v in (ASIN_P64 if ft == np.float64 else ASIN_P32))
        pio2_hi, pio2_lo = _split(_PIO2, ft)
        pi_hi, pi_lo = _split(2 * _PIO2, ft)
        deg = len(coef) - 1

        def _asin_reduced(ax):
            """(asin(t), whether |x| > 1/2) for ax = |x| <= 1, t the reduced argument."""
            big = ax > half
            u = half * (one - ax) if big else ax * ax
            sq = math.sqrt(u)
            t = sq if big else ax
            p = coef[deg]
            for i in range(deg - 1, -1, -1):  # a constant trip count: unrolled
                p = p * u + coef[i]
            return t + t * (u * p), big

        _asin_reduced = jit(_asin_reduced)

        def acos(x):
            r, big = _asin_reduced(abs(x))
            if big:
                return two * r if x > zero else pi_hi - (two * r - pi_lo)
            return pio2_hi - (math.copysign(r, x) - pio2_lo)

        def asin(x):
            r, big = _asin_reduced(abs(x))
            return math.copysign(pio2_hi - (two * r - pio2_lo) if big else r, x)
    else:
        def acos(x):
            return math.acos(x)

        def asin(x):
            return math.asin(x)
    asin = jit(asin)
    acos = jit(acos)

    def neuron(code, z, nw):
        """phi(w, x) given z = w.x and nw = |w| (the norm only matters for relu_centered)."""
        if code == RELU:
            return z if z > zero else zero
        elif code == ABS:
            return abs(z)
        elif code == RELU_CENTERED:
            return (z if z > zero else zero) - half * z - inv_sqrt2pi * nw
        elif code == ERF:
            return math.erf(z * inv_sqrt2)
        elif code == LINEAR:
            return z
        elif code == HE2:
            return z * z - one
        elif code == HE3:
            return z * z * z - three * z
        else:
            return math.tanh(z)

    def dneuron(code, z):
        """Coefficient of x in grad_w phi(w, x): sigma'(z) (sigma'(0) = 0 for relu and abs)."""
        if code == RELU:
            return one if z > zero else zero
        elif code == ABS:
            return one if z > zero else (-one if z < zero else zero)
        elif code == RELU_CENTERED:
            return half if z > zero else -half
        elif code == ERF:
            return two_over_sqrtpi_sqrt2 * math.exp(-half * z * z)
        elif code == LINEAR:
            return one
        elif code == HE2:
            return two * z
        elif code == HE3:
            return three * z * z - three
        else:
            t = math.tanh(z)
            return one - t * t

    def dneuron_dnorm(code):
        """Coefficient of w/|w| in grad_w phi (only relu_centered has one)."""
        if code == RELU_CENTERED:
            return -inv_sqrt2pi
        return zero

    consts = {CODES[a.name]: tuple(ft(v) for v in a.angular) for a in SPEC if a.kernel == "angular"}
    (o0, s0, h0), (o1, s1, h1), (o2, s2, h2) = (consts[c] for c in (RELU, ABS, RELU_CENTERED))

    def homog_consts(code):
        """(off, scale, shift) of the angular kernels (``SPEC``): with theta = off - arccos(rho),
        kappa = scale (sqrt(1-rho^2) + rho theta + shift), kappa' = scale theta,
        kappa - rho kappa' = scale (sqrt(1-rho^2) + shift)."""
        if code == RELU:
            return o0, s0, h0
        elif code == ABS:
            return o1, s1, h1
        return o2, s2, h2

    def homog_terms(rho, off, scale, shift):
        """(kappa, kappa', kappa - rho kappa') at rho in [-1, 1]; branch-free so loops vectorize."""
        sq = math.sqrt(one - rho * rho)
        theta = off - acos(rho)
        return scale * (sq + rho * theta + shift), scale * theta, scale * (sq + shift)

    def pair(code, nu, nv, c):
        """(K, alpha_u, alpha_v, beta) of the population kernel; see the module docstring."""
        if code == RELU or code == ABS or code == RELU_CENTERED:  # angular: K = |u||v| kappa(rho)
            if nu == zero or nv == zero:
                return zero, zero, zero, zero
            rho = c / (nu * nv)
            if rho > one:
                rho = one
            elif rho < -one:
                rho = -one
            off, scale, shift = homog_consts(code)
            kap, dkap, perp = homog_terms(rho, off, scale, shift)
            # perp = kappa - rho kappa'
            return nu * nv * kap, nv * perp / nu, nu * perp / nv, dkap
        qu = nu * nu
        qv = nv * nv
        if code == ERF:
            den = math.sqrt((one + qu) * (one + qv))
            s = c / den
            if s > one:
                s = one
            elif s < -one:
                s = -one
            g = two_over_pi / math.sqrt(one - s * s)
            return two_over_pi * asin(s), -g * s / (one + qu), -g * s / (one + qv), g / den
        elif code == LINEAR:
            return c, zero, zero, one
        elif code == HE2:
            return qu * qv + two * c * c - qu - qv + one, two * qv - two, two * qu - two, four * c
        elif code == HE3:
            k = nine * qu * qv * c + six * c * c * c - nine * qu * c - nine * qv * c + nine * c
            beta = nine * qu * qv + eighteen * c * c - nine * qu - nine * qv + nine
            return k, eighteen * c * (qv - one), eighteen * c * (qu - one), beta
        return zero, zero, zero, zero  # tanh: no closed form (callers reject it before)

    class Table:
        pass

    table = Table()
    table.acos = acos
    table.asin = asin
    table.neuron = jit(neuron)
    table.dneuron = jit(dneuron)
    table.dneuron_dnorm = jit(dneuron_dnorm)
    homog_consts = jit(homog_consts)
    homog_terms = jit(homog_terms)
    table.homog_consts = homog_consts
    table.homog_terms = homog_terms
    table.pair = jit(pair)
    table.ftype = ft
    return table


def smooth_kernel_derivatives(name, p, q, c):
    """The kernel of a smooth activation (erf, linear, he2, he3) as ``K(p, q, c)`` with ``p = |u|^2``,
    ``q = |v|^2``, ``c = u.v``, and its derivatives: ``(K, K_p, K_c, K_pp, K_pq, K_pc, K_qc, K_cc)``, numpy
    arrays broadcast to the shape of ``c`` (float64; constants and row or column vectors are broadcast
    views, not copies). The exact Hessian (``ff.hessian``) is built from them."""
    shape = np.shape(c)
    full = lambda x: np.broadcast_to(x, shape)  # noqa: E731  (constant or row/column: no copy)
    zero = full(0.0)
    if name == "linear":
        return c, zero, full(1.0), zero, zero, zero, zero, zero
    if name == "he2":                              # K = (p-1)(q-1) + 2c^2
        return ((p - 1) * (q - 1) + 2 * c * c, full(q - 1), 4 * c,
                zero, full(1.0), zero, zero, full(4.0))
    if name == "he3":                              # K = c (9 (p-1)(q-1) + 6c^2)
        pq = 9 * (p - 1) * (q - 1)
        c2 = c * c
        return (c * (pq + 6 * c2), 9 * c * (q - 1), pq + 18 * c2,
                zero, 9 * c, full(9 * (q - 1)), full(9 * (p - 1)), 36 * c)
    if name == "erf":                              # K = (2/pi) arcsin(s), s = c / sqrt((1 + p)(1 + q))
        A = 1 + p
        B = 1 + q
        r = np.sqrt(A * B)
        s = np.clip(c / r, -1.0, 1.0)
        w1 = 1.0 / np.sqrt(1.0 - s * s)
        g1 = (2 / math.pi) * w1                   # dK/ds
        g2 = (2 / math.pi) * s * w1 ** 3          # d2K/ds2
        sp, sq, sc = -s / (2 * A), -s / (2 * B), 1.0 / r
        return ((2 / math.pi) * np.arcsin(s), g1 * sp, g1 * sc,
                g1 * (3 * s / (4 * A * A)) + g2 * sp * sp,
                g1 * (s / (4 * A * B)) + g2 * sp * sq,
                g1 * (-1.0 / (2 * A * r)) + g2 * sp * sc,
                g1 * (-1.0 / (2 * B * r)) + g2 * sq * sc,
                g2 * sc * sc)
    raise ValueError(f"activation {name!r} has no smooth closed-form population kernel")


def kernel_matrix(name, U, V):
    """Slow, plain numpy reference of K(U, V) (rows of U against rows of V), float64."""
    U = np.asarray(U, np.float64)
    V = np.asarray(V, np.float64)
    nu = np.linalg.norm(U, axis=1)[:, None]
    nv = np.linalg.norm(V, axis=1)[None, :]
    c = U @ V.T
    spec = SPEC[CODES[name]] if name in CODES else None
    if spec is not None and spec.kernel == "angular":  # K = |u||v| scale (s + rho (off - arccos rho) + shift)
        off, scale, shift = spec.angular
        with np.errstate(invalid="ignore", divide="ignore"):
            rho = np.clip(np.where(nu * nv > 0, c / np.where(nu * nv > 0, nu * nv, 1), 0.0), -1, 1)
        kap = scale * (np.sqrt(1 - rho**2) + rho * (off - np.arccos(rho)) + shift)
        return nu * nv * kap
    if spec is not None and spec.kernel in ("erf", "polynomial"):
        return smooth_kernel_derivatives(name, nu**2, nv**2, c)[0] + np.zeros_like(c)
    raise ValueError(f"activation {name!r} has no closed-form population kernel")


def _alg_params(code):
    """(alpha, beta, gamma, c0, c2, c3, c_norm) of an ALG activation, derived from the scalar functions
    (plain Python, float64) and checked: phi(z) = c0 + c_norm |w| + z (s(z) + z (c2 + z c3)) with
    s(z) = alpha if z > 0 else beta, and sigma'(z) = (alpha | beta | gamma at z = 0) + z (2 c2 + 3 c3 z)."""
    T = build(lambda f: f, np.float64)
    phi = lambda z: float(T.neuron(code, np.float64(z), np.float64(0.0)))  # noqa: E731
    dphi = lambda z: float(T.dneuron(code, np.float64(z)))  # noqa: E731
    c0 = phi(0.0)
    alpha, c2, c3 = np.linalg.solve(np.array([[1.0, 1, 1], [2, 4, 8], [1, 2, 3]]),
                                    np.array([phi(1.0) - c0, phi(2.0) - c0, dphi(1.0)]))
    beta = c2 - c3 - (phi(-1.0) - c0)
    gamma = dphi(0.0)
    p = np.round(np.array([alpha, beta, gamma, c0, c2, c3, 0.0]), 12)  # simple rationals: drop the
    p[6] = float(T.dneuron_dnorm(code))                                  # solve's rounding
    for z in (-2.5, -0.7, 0.0, 0.4, 1.9, 3.1):
        s = p[0] if z > 0 else p[1]
        ds = p[0] if z > 0 else (p[1] if z < 0 else p[2])
        if not (abs(p[3] + z * (s + z * (p[4] + z * p[5])) - phi(z)) <= 1e-12 * (1 + abs(phi(z)))
                and abs(ds + z * (2 * p[4] + 3 * p[5] * z) - dphi(z)) <= 1e-12 * (1 + abs(dphi(z)))):
            raise AssertionError(f"activation {NAMES[code]!r} is not piecewise polynomial as SPEC says")
    return p


#: ALG_PARAMS[code] = (alpha, beta, gamma, c0, c2, c3, c_norm) for the "alg" activations (zeros for the
#: others), derived from the scalar functions and checked at import
ALG_PARAMS = np.zeros((len(NAMES), 7))
for _c in range(len(NAMES)):
    if KIND_OF[_c] == KIND_ALG:
        ALG_PARAMS[_c] = _alg_params(_c)
ALG_PARAMS.setflags(write=False)
#: codes whose sigma' takes two values, beta for z <= 0 and alpha for z > 0 (an "alg" activation with
#: c2 = c3 = 0 and sigma'(0) = beta: relu, relu_centered, linear; abs has sigma'(0) = 0, not beta = -1)
TWO_VALUED_DERIVATIVE = tuple(c for c in range(len(NAMES)) if KIND_OF[c] == KIND_ALG and ALG_PARAMS[c, 4] == 0
                              and ALG_PARAMS[c, 5] == 0 and ALG_PARAMS[c, 1] == ALG_PARAMS[c, 2])
