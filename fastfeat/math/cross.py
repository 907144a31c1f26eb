"""Cross kernels: ``K(u, v) = E[s(u.x) t(v.x)]`` for a student activation ``s`` and a teacher activation
``t`` that differ, both with a closed-form population kernel, and the student side of its gradient.

Every such activation is a combination of six basis functions of the field ``z = w.x`` and of ``|w|``:
three odd ones, ``z``, ``He3(z) = z^3 - 3z`` and ``erf(z / sqrt 2)``, and three even ones, ``|z|``,
``He2(z) = z^2 - 1`` and the constant ``|w|`` (``BASIS``):

    relu = z/2 + |z|/2,   abs = |z|,   relu_centered = |z|/2 - |w|/sqrt(2 pi),
    erf, linear, he2, he3 = the basis function of that name.

An odd and an even function of two jointly Gaussian fields are uncorrelated, so a cross kernel is a
weighted sum of at most 3 x 3 + 3 x 3 basis kernels ``G(p, q, c)`` (``p = |u|^2``, ``q = |v|^2``,
``c = u.v``), each in closed form (``_basis``; r2 = sqrt(2/pi), A = 1 + p, B = 1 + q, rho = c/sqrt(pq);
a basis function with itself, but |w|, is the kernel ``pair`` of the activation it is):

    z     z     c                       |z|   |z|   sqrt(pq) (2/pi) (sqrt(1 - rho^2) + rho asin rho)
    z     He3   3c (q - 1)              |z|   He2   r2 (sqrt(p) (q - 1) + c^2 / sqrt(p))
    z     erf   r2 c / sqrt(B)          |z|   |w|   r2 sqrt(p q)
    He3   He3   c (9 (p-1)(q-1) + 6c^2)  He2   He2   (p - 1)(q - 1) + 2 c^2
    He3   erf   r2 (3c (p-1) / sqrt(B) - c^3 / B^(3/2))
    erf   erf   (2/pi) asin(c / sqrt(A B))           He2   |w|   (p - 1) sqrt(q)
                                                     |w|   |w|   sqrt(p q)

and the transposed entries with p and q exchanged. They follow from Stein's lemma and from conditioning
one field on the other (``E[z2^k | z1]`` is a polynomial in z1). With ``grad_u G = 2 G_p u + G_c v``,
``cross_pair`` returns ``(K, alpha_u, beta)`` with ``grad_u K = alpha_u u + beta v``. As for the
same-activation kernels, the gradient and the kernel are 0 where a positively homogeneous side (relu,
abs, relu_centered) has a zero weight vector, which is also where ``1/sqrt(p)`` or ``1/sqrt(q)`` appear.

Two angular activations give an angular kernel again, ``|u||v| kappa(rho)`` with constants
``(off, scale, shift)`` (``ANGULAR_CROSS``), so the CPU kernels' vectorized angular pass serves them.
The kernels take the pair as one integer code (``pair_code``).
"""
import math

import numpy as np

from .activations import ABS, ANGULAR_CODES, ERF, HAS_KERNEL, HE2, HE3, LINEAR, NAMES, RELU, RELU_CENTERED, SPEC

#: the basis functions (columns of ``BASIS``): odd ones first, then even ones
B_LIN, B_HE3, B_ERF, B_ABS, B_HE2, B_NORM = range(6)
N_ODD = 3
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)
#: the activation that is each basis function but the constant |w| (its kernel with itself is that one's)
_OWN_CODE = (LINEAR, HE3, ERF, ABS, HE2)
#: BASIS[code] = the coefficients of an activation on the six basis functions (0 for tanh: no kernel)
BASIS = np.zeros((len(NAMES), 6))
BASIS[RELU, B_LIN] = BASIS[RELU, B_ABS] = 0.5
BASIS[ABS, B_ABS] = 1.0
BASIS[RELU_CENTERED, B_ABS] = 0.5
BASIS[RELU_CENTERED, B_NORM] = -_INV_SQRT2PI
BASIS[ERF, B_ERF] = 1.0
BASIS[LINEAR, B_LIN] = 1.0
BASIS[HE2, B_HE2] = 1.0
BASIS[HE3, B_HE3] = 1.0
BASIS.setflags(write=False)


def angular_consts(cs, ct):
    """``(off, scale, shift)`` of the kernel of two angular activations (codes), from their coefficients
    ``(alpha |z| + beta z + gamma |w|)``: ``K = |u||v| scale (sqrt(1-rho^2) + rho (off - acos rho) + shift)``.
    For one activation these are its ``SPEC`` constants (exactly: taken from there)."""
    if cs == ct:
        return tuple(SPEC[cs].angular)
    a1, b1, g1 = BASIS[cs, B_ABS], BASIS[cs, B_LIN], BASIS[cs, B_NORM]
    a2, b2, g2 = BASIS[ct, B_ABS], BASIS[ct, B_LIN], BASIS[ct, B_NORM]
    aa = a1 * a2
    const = (a1 * g2 + g1 * a2) * math.sqrt(2.0 / math.pi) + g1 * g2
    return (math.pi / 2 + math.pi * b1 * b2 / (2 * aa), 2 * aa / math.pi, math.pi * const / (2 * aa))


#: ANGULAR_CROSS[cs, ct] = ``angular_consts(cs, ct)`` for two angular codes, NaN otherwise
ANGULAR_CROSS = np.full((len(NAMES), len(NAMES), 3), np.nan)
for _s in ANGULAR_CODES:
    for _t in ANGULAR_CODES:
        ANGULAR_CROSS[_s, _t] = angular_consts(_s, _t)
ANGULAR_CROSS.setflags(write=False)


#: the kernels take one integer ``code`` for the pair of activations: the activation's code when student
#: and teacher share it, else ``student + CROSS * (teacher + 1)`` (``pair_code``; one compiled kernel
#: serves every pair)
CROSS = 256


def pair_code(cs, ct):
    """The kernels' ``code`` argument for student activation code ``cs`` and teacher activation code ``ct``."""
    return int(cs) if cs == ct else int(cs) + CROSS * (int(ct) + 1)


def split_code(code):
    """``(student code, teacher code)`` of a kernels' ``code`` argument (``pair_code``)."""
    if code < CROSS:
        return code, code
    return code % CROSS, code // CROSS - 1


def exact_pair(student, teacher):
    """Whether the population loss of a ``student`` net against a ``teacher`` (activation names) is in
    closed form: both activations have a kernel (the same one, or a cross kernel from here)."""
    return student in HAS_KERNEL and teacher in HAS_KERNEL


def build_cross(jit, ftype, table):
    """Compile ``cross_pair(cs, ct, nu, nv, c) -> (K, alpha_u, beta)`` with decorator ``jit`` for float
    type ``ftype``; ``table``: the activation table of that build (``activations.build``), whose ``pair``
    gives the kernel of a basis function with itself."""
    ft = ftype
    zero, one, half, two, three = ft(0.0), ft(1.0), ft(0.5), ft(2.0), ft(3.0)
    r2 = ft(math.sqrt(2.0 / math.pi))
    three_halves = ft(1.5)
    basis = BASIS.astype(ft)  # read in the build's float type (no float64 arithmetic in float32 kernels)
    angular = ANGULAR_CODES
    pair = table.pair
    own = _OWN_CODE

    def _basis(i, j, p, q, c, sp, sq):
        """(G, G_p, G_c) of basis functions i (student) and j (teacher) of the same parity."""
        if i == j and i != B_NORM:  # a basis function with itself: the kernel of that activation
            K, au, av, b = pair(own[i], sp, sq, c)
            return K, half * au, b
        if i == B_LIN:
            if j == B_HE3:
                return three * c * (q - one), zero, three * (q - one)
            ib = one / math.sqrt(one + q)
            return r2 * c * ib, zero, r2 * ib                                           # erf
        if i == B_HE3:
            if j == B_LIN:
                return three * c * (p - one), three * c, three * (p - one)
            ib = one / math.sqrt(one + q)                                                # erf
            ib3 = ib * ib * ib
            return (r2 * (three * c * (p - one) * ib - c * c * c * ib3), three * r2 * c * ib,
                    r2 * (three * (p - one) * ib - three * c * c * ib3))
        if i == B_ERF:
            ia = one / math.sqrt(one + p)
            ia3 = ia * ia * ia
            if j == B_LIN:
                return r2 * c * ia, -half * r2 * c * ia3, r2 * ia
            return (r2 * (three * c * (q - one) * ia - c * c * c * ia3),                 # He3
                    r2 * three_halves * (c * c * c * ia3 * ia * ia - c * (q - one) * ia3),
                    r2 * (three * (q - one) * ia - three * c * c * ia3))
        if i == B_ABS:
            if j == B_HE2:
                return (r2 * (sp * (q - one) + c * c / sp), r2 * half * ((q - one) - c * c / p) / sp,
                        two * r2 * c / sp)
            return r2 * sp * sq, half * r2 * sq / sp, zero                              # |w|
        if i == B_HE2:
            if j == B_ABS:
                return r2 * (sq * (p - one) + c * c / sq), r2 * sq, two * r2 * c / sq
            return (p - one) * sq, sq, zero                                              # |w|
        if j == B_ABS:                                                                   # |w| (student)
            return r2 * sp * sq, half * r2 * sq / sp, zero
        if j == B_HE2:
            return sp * (q - one), half * (q - one) / sp, zero
        return sp * sq, half * sq / sp, zero

    _basis = jit(_basis)

    def cross_pair(cs, ct, nu, nv, c):
        """(K, alpha_u, beta) of the kernel of student activation ``cs`` and teacher activation ``ct``."""
        if (cs in angular and nu == zero) or (ct in angular and nv == zero):
            return zero, zero, zero
        p = nu * nu
        q = nv * nv
        K = zero
        Kp = zero
        Kc = zero
        for i in range(6):
            wi = basis[cs, i]
            if wi == zero:
                continue
            for j in range(6):
                wj = basis[ct, j]
                if wj == zero or (i < N_ODD) != (j < N_ODD):
                    continue
                g, gp, gc = _basis(i, j, p, q, c, nu, nv)
                w = wi * wj
                K += w * g
                Kp += w * gp
                Kc += w * gc
        return K, two * Kp, Kc

    return jit(cross_pair)


def cross_names():
    """Every ordered (student, teacher) pair of different activations with a closed-form cross kernel."""
    names = [n for n in NAMES if n in HAS_KERNEL]
    return [(s, t) for s in names for t in names if s != t]

