"""The activation table: sigma, sigma', and the Gaussian population kernel, written once.

Every scalar function here is a plain Python function of an integer activation code. ``build`` compiles
the whole table for one target (``numba.njit`` on the CPU, ``numba.cuda.jit(device=True)`` on the GPU)
and one float type, so CPU and GPU kernels share the same math and float32 code stays in float32 (all
constants are captured as typed closure constants, never as Python float literals).

Conventions (DESIGN.md section 1): ``q_u = |u|^2``, ``c = u.v``, ``rho = c / (|u||v|)`` clipped to [-1, 1].
``pair(code, nu, nv, c)`` returns ``(K, alpha_u, alpha_v, beta)`` with

    grad_u K(u, v) = alpha_u * u + beta * v,     grad_v K(u, v) = alpha_v * v + beta * u,

``beta`` being symmetric in (u, v).  For the positively homogeneous kernels the gradient at ``u = 0``
(or ``v = 0``) is 0, as DESIGN.md asks.

The neuron of ``relu_centered`` is ``phi(w, x) = relu(w.x) - w.x/2 - |w|/sqrt(2 pi)``; it depends on
``|w|`` as well as ``w.x``, so ``neuron(code, z, nw)`` takes the norm and ``dneuron_dnorm(code)`` gives the
coefficient of ``w/|w|`` in ``grad_w phi`` (the part that is not ``sigma'(z) x``).
"""
import math

import numpy as np

NAMES = ("relu", "abs", "relu_centered", "erf", "linear", "he2", "he3", "tanh")
RELU, ABS, RELU_CENTERED, ERF, LINEAR, HE2, HE3, TANH = range(len(NAMES))
CODES = {name: code for code, name in enumerate(NAMES)}
#: activations whose population kernel has a closed form
HAS_KERNEL = frozenset(n for n in NAMES if n != "tanh")
#: activations for which w and -w are the same neuron (angle metrics use |cos|)
EVEN = frozenset(("abs", "relu_centered", "he2"))
#: positively homogeneous neurons (norm balancing keeps the function)
HOMOGENEOUS = frozenset(("relu", "abs", "relu_centered", "linear"))


def code_of(name, *, argname="activation"):
    """Validate an activation name and return its integer code."""
    if not isinstance(name, str):
        raise TypeError(f"{argname} must be a string, one of {NAMES}, got {type(name).__name__}")
    if name not in CODES:
        raise ValueError(f"{argname}={name!r} is not a known activation; choose one of {NAMES}")
    return CODES[name]


def build(jit, ftype, fast_acos=False):
    """Compile the activation table with decorator ``jit`` for float type ``ftype``.

    Returns a namespace with ``neuron``, ``dneuron``, ``dneuron_dnorm``, ``pair`` and ``acos``.
    ``fast_acos`` uses a polynomial arccos (absolute error < 2e-8, Abramowitz & Stegun 4.4.46) that
    vectorizes; it is only accurate enough for float32.
    """
    ft = ftype
    zero, one, two, half = ft(0.0), ft(1.0), ft(2.0), ft(0.5)
    three, four, six, nine, eighteen = ft(3.0), ft(4.0), ft(6.0), ft(9.0), ft(18.0)
    pi, half_pi = ft(math.pi), ft(math.pi / 2)
    inv_2pi, two_over_pi = ft(1.0 / (2.0 * math.pi)), ft(2.0 / math.pi)
    inv_sqrt2, inv_sqrt2pi = ft(1.0 / math.sqrt(2.0)), ft(1.0 / math.sqrt(2.0 * math.pi))
    two_over_sqrtpi_sqrt2 = ft(math.sqrt(2.0 / math.pi))  # d/dz erf(z/sqrt2) = sqrt(2/pi) exp(-z^2/2)
    c0, c1, c2, c3 = ft(1.5707963050), ft(-0.2145988016), ft(0.0889789874), ft(-0.0501743046)
    c4, c5, c6, c7 = ft(0.0308918810), ft(-0.0170881256), ft(0.0066700901), ft(-0.0012624911)

    if fast_acos:
        def acos(x):
            ax = abs(x)
            p = c7
            p = p * ax + c6
            p = p * ax + c5
            p = p * ax + c4
            p = p * ax + c3
            p = p * ax + c2
            p = p * ax + c1
            p = p * ax + c0
            r = math.sqrt(one - ax) * p
            return r if x >= zero else pi - r
    else:
        def acos(x):
            return math.acos(x)
    acos = jit(acos)

    def neuron(code, z, nw):
        """phi(w, x) given z = w.x and nw = |w| (the norm only matters for relu_centered)."""
        if code == 0:
            return z if z > zero else zero
        elif code == 1:
            return abs(z)
        elif code == 2:
            return (z if z > zero else zero) - half * z - inv_sqrt2pi * nw
        elif code == 3:
            return math.erf(z * inv_sqrt2)
        elif code == 4:
            return z
        elif code == 5:
            return z * z - one
        elif code == 6:
            return z * z * z - three * z
        else:
            return math.tanh(z)

    def dneuron(code, z):
        """Coefficient of x in grad_w phi(w, x): sigma'(z) (sigma'(0) = 0 for relu and abs)."""
        if code == 0:
            return one if z > zero else zero
        elif code == 1:
            return one if z > zero else (-one if z < zero else zero)
        elif code == 2:
            return half if z > zero else -half
        elif code == 3:
            return two_over_sqrtpi_sqrt2 * math.exp(-half * z * z)
        elif code == 4:
            return one
        elif code == 5:
            return two * z
        elif code == 6:
            return three * z * z - three
        else:
            t = math.tanh(z)
            return one - t * t

    def dneuron_dnorm(code):
        """Coefficient of w/|w| in grad_w phi (only relu_centered has one)."""
        if code == 2:
            return -inv_sqrt2pi
        return zero

    def homog_consts(code):
        """(off, scale, shift) of the homogeneous kernels relu (0), abs (1), relu_centered (2):
        with theta = off - arccos(rho):  kappa = scale (sqrt(1-rho^2) + rho theta + shift),
        kappa' = scale theta,  kappa - rho kappa' = scale (sqrt(1-rho^2) + shift)."""
        if code == 0:
            return pi, inv_2pi, zero
        elif code == 1:
            return half_pi, two_over_pi, zero
        return half_pi, inv_2pi, -one

    def homog_terms(rho, off, scale, shift):
        """(kappa, kappa', kappa - rho kappa') at rho in [-1, 1]; branch-free so loops vectorize."""
        sq = math.sqrt(one - rho * rho)
        theta = off - acos(rho)
        return scale * (sq + rho * theta + shift), scale * theta, scale * (sq + shift)

    def pair(code, nu, nv, c):
        """(K, alpha_u, alpha_v, beta) of the population kernel; see the module docstring."""
        if code <= 2:  # positively homogeneous, K = |u||v| kappa(rho)
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
        if code == 3:
            den = math.sqrt((one + qu) * (one + qv))
            s = c / den
            if s > one:
                s = one
            elif s < -one:
                s = -one
            g = two_over_pi / math.sqrt(one - s * s)
            return two_over_pi * (half_pi - acos(s)), -g * s / (one + qu), -g * s / (one + qv), g / den
        elif code == 4:
            return c, zero, zero, one
        elif code == 5:
            return qu * qv + two * c * c - qu - qv + one, two * qv - two, two * qu - two, four * c
        elif code == 6:
            k = nine * qu * qv * c + six * c * c * c - nine * qu * c - nine * qv * c + nine * c
            beta = nine * qu * qv + eighteen * c * c - nine * qu - nine * qv + nine
            return k, eighteen * c * (qv - one), eighteen * c * (qu - one), beta
        return zero, zero, zero, zero  # tanh: no closed form (callers reject it before)

    class Table:
        pass

    table = Table()
    table.acos = acos
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


def kernel_matrix(name, U, V):
    """Slow, plain numpy reference of K(U, V) (rows of U against rows of V), float64."""
    U = np.asarray(U, np.float64)
    V = np.asarray(V, np.float64)
    nu = np.linalg.norm(U, axis=1)[:, None]
    nv = np.linalg.norm(V, axis=1)[None, :]
    c = U @ V.T
    if name in ("relu", "abs", "relu_centered"):
        with np.errstate(invalid="ignore", divide="ignore"):
            rho = np.clip(np.where(nu * nv > 0, c / np.where(nu * nv > 0, nu * nv, 1), 0.0), -1, 1)
        sq = np.sqrt(1 - rho**2)
        if name == "relu":
            kap = (sq + (np.pi - np.arccos(rho)) * rho) / (2 * np.pi)
        elif name == "abs":
            kap = 2 / np.pi * (sq + rho * np.arcsin(rho))
        else:
            kap = (sq + rho * np.arcsin(rho) - 1) / (2 * np.pi)
        return nu * nv * kap
    qu, qv = nu**2, nv**2
    if name == "erf":
        return 2 / np.pi * np.arcsin(c / np.sqrt((1 + qu) * (1 + qv)))
    if name == "linear":
        return c
    if name == "he2":
        return qu * qv + 2 * c**2 - qu - qv + 1
    if name == "he3":
        return 9 * qu * qv * c + 6 * c**3 - 9 * qu * c - 9 * qv * c + 9 * c
    raise ValueError(f"activation {name!r} has no closed-form population kernel")
