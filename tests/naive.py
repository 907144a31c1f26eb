"""Slow, obviously-right numpy references for the kernels (float64 / complex128).

Population gradients use complex-step differentiation of the closed-form kernels
(df/dx = Im f(x + ih)/h, exact to rounding), an independent route to the same derivatives.
"""
import numpy as np

from fastfeat.math.activations import kernel_matrix  # noqa: F401  (re-exported for tests)

HOMOG_KAPPA1 = {"relu": 0.5, "abs": 1.0, "relu_centered": (np.pi / 2 - 1) / (2 * np.pi)}


def kernel_c(name, U, V, same=False):
    """K(U, V) in complex arithmetic (no abs, no clip), for complex-step derivatives.
    ``same=True``: U and V are the same rows; the diagonal uses K(u, u) = q_u kappa(1)."""
    qu = np.sum(U * U, axis=1)[:, None]
    qv = np.sum(V * V, axis=1)[None, :]
    c = U @ V.T
    if name in HOMOG_KAPPA1:
        nn = np.sqrt(qu) * np.sqrt(qv)
        zero = nn == 0  # a zero row: K = 0 (rho is irrelevant)
        rho = c / np.where(zero, 1.0, nn)
        if same:
            rho = rho.copy()
            np.fill_diagonal(rho, 0.0)
        sq = np.sqrt(1 - rho**2)
        if name == "relu":
            kap = (sq + (np.pi - np.arccos(rho)) * rho) / (2 * np.pi)
        elif name == "abs":
            kap = 2 / np.pi * (sq + rho * np.arcsin(rho))
        else:
            kap = (sq + rho * np.arcsin(rho) - 1) / (2 * np.pi)
        K = nn * kap
        if same:
            K[np.diag_indices_from(K)] = qu[:, 0] * HOMOG_KAPPA1[name]
        return K
    if name == "erf":
        return 2 / np.pi * np.arcsin(c / np.sqrt((1 + qu) * (1 + qv)))
    if name == "linear":
        return c
    if name == "he2":
        return qu * qv + 2 * c**2 - qu - qv + 1
    if name == "he3":
        return 9 * qu * qv * c + 6 * c**3 - 9 * qu * c - 9 * qv * c + 9 * c
    raise ValueError(name)


def population_loss(name, W, a, Wt, at, noise=0.0):
    W, a, Wt, at = (np.asarray(x, np.float64) for x in (W, a, Wt, at))
    return (0.5 * a @ kernel_matrix(name, W, W) @ a - a @ kernel_matrix(name, W, Wt) @ at
            + 0.5 * at @ kernel_matrix(name, Wt, Wt) @ at + 0.5 * noise**2)


def _kdiag_c(name, U):
    """K(u, u) for each row u of U (complex)."""
    q = np.sum(U * U, axis=1)
    if name in HOMOG_KAPPA1:
        return q * HOMOG_KAPPA1[name]
    if name == "erf":
        return 2 / np.pi * np.arcsin(q / (1 + q))
    if name == "linear":
        return q
    if name == "he2":
        return 3 * q * q - 2 * q + 1
    if name == "he3":
        return 15 * q**3 - 18 * q**2 + 9 * q
    raise ValueError(name)


def population_grad(name, W, a, Wt, at, h=1e-30):
    """(g_W, g_a) of the population loss; g_W by complex step, g_a = K a - K* a* (exact, linear in a).
    Rows with w_j = 0 get gradient 0 for the homogeneous kernels (the conventions' choice).

    The terms of L that depend on w_j are a_j sum_{k != j} a_k K(w_j, w_k) + a_j^2 K(w_j, w_j) / 2
    - a_j sum_i a*_i K(w_j, w*_i); all d perturbations of w_j are evaluated at once."""
    W, a, Wt, at = (np.asarray(x, np.float64) for x in (W, a, Wt, at))
    m, d = W.shape
    ga = kernel_matrix(name, W, W) @ a - kernel_matrix(name, W, Wt) @ at
    gW = np.zeros((m, d))
    zero = np.linalg.norm(W, axis=1) == 0
    for j in range(m):
        if zero[j] and name in HOMOG_KAPPA1:
            continue
        U = W[j][None, :] + 1j * h * np.eye(d)
        others = np.delete(W, j, axis=0)
        f = (a[j] * kernel_c(name, U, others) @ np.delete(a, j) + 0.5 * a[j] ** 2 * _kdiag_c(name, U)
             - a[j] * kernel_c(name, U, Wt) @ at)
        gW[j] = f.imag / h
    return gW, ga


def reg_grad(kind, W, a, lam_a, lam_w):
    W = np.asarray(W, np.float64)
    a = np.asarray(a, np.float64)
    if kind is None:
        return np.zeros_like(W), np.zeros_like(a)
    if kind == "wd":
        return lam_w * W, lam_a * a
    nw = np.linalg.norm(W, axis=1)
    ok = (nw > 0) & (a != 0)
    ga = np.where(ok, lam_w * np.sign(a) * nw, 0.0)
    gW = np.where(ok[:, None], lam_w * np.abs(a)[:, None] * W / np.where(nw > 0, nw, 1)[:, None], 0.0)
    return gW, ga


# ---------------------------------------------------------------------------------------------------
# Empirical and online references (plain numpy, float64; derivatives written out per activation)

def dsigma(name, Z):
    """sigma'(z), with sigma'(0) = 0 for relu and abs; relu_centered's x-coefficient sigma'(z) - 1/2."""
    if name == "relu":
        return (Z > 0).astype(float)
    if name == "abs":
        return np.sign(Z)
    if name == "relu_centered":
        return np.where(Z > 0, 0.5, -0.5)
    if name == "erf":
        return np.sqrt(2 / np.pi) * np.exp(-Z**2 / 2)
    if name == "linear":
        return np.ones_like(Z)
    if name == "he2":
        return 2 * Z
    if name == "he3":
        return 3 * Z**2 - 3
    if name == "tanh":
        return 1 - np.tanh(Z) ** 2
    raise ValueError(name)


def empirical_loss_grad(name, W, a, X, y):
    """(L, g_W, g_a) of L = 1/(2n) sum_k (f(x_k) - y_k)^2."""
    from fastfeat.math.reference import features
    W, a, X, y = (np.asarray(v, np.float64) for v in (W, a, X, y))
    n = X.shape[0]
    F = features(name, X, W)
    r = F @ a - y
    D = dsigma(name, X @ W.T) * (r[:, None] * a[None, :]) / n
    gW = D.T @ X
    if name == "relu_centered":  # d/dw of -|w|/sqrt(2 pi): -w/(|w| sqrt(2 pi)); 0 at w = 0
        nw = np.linalg.norm(W, axis=1)
        coef = np.where(nw > 0, -a * r.sum() / n / (np.sqrt(2 * np.pi) * np.where(nw > 0, nw, 1)), 0.0)
        gW = gW + coef[:, None] * W
    return 0.5 * np.mean(r**2), gW, F.T @ r / n


def _py_random():
    from fastfeat.math.random import build
    return build(lambda f: f)  # the generator as plain Python on numpy scalars


def online_batch(seed, step, B, d, Wt, at, tname, noise):
    """The batch (X, y) of online step ``step``, from the generator run as plain Python:
    x_k[i] = normal(key, k (d+1) + i), label noise = noise * normal(key, k (d+1) + d)."""
    from fastfeat.math.reference import features
    R = _py_random()
    with np.errstate(over="ignore"):
        key = R.stream_key(seed, step)
        v = np.array([R.normal_keyed(key, i) for i in range(B * (d + 1))]).reshape(B, d + 1)
    X = v[:, :d]
    y = features(tname, X, np.asarray(Wt, np.float64)) @ np.asarray(at, np.float64) + noise * v[:, d]
    return X, y


def epoch_permutation(seed, epoch, n):
    """Fisher-Yates with swap partner mix(stream_key(seed, epoch) + i C1) % (i + 1), i = n-1 .. 1."""
    from fastfeat.math.random import _C1
    R = _py_random()
    perm = list(range(n))
    with np.errstate(over="ignore"):
        key = R.stream_key(seed, epoch)
        for i in range(n - 1, 0, -1):
            j = int(R.mix(key + np.uint64(i) * _C1) % np.uint64(i + 1))
            perm[i], perm[j] = perm[j], perm[i]
    return np.array(perm)
