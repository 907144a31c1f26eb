"""The spectrum of the exact population Hessian (``hessian``): every eigenvalue from the dense matrix, or
the smallest ones by Lanczos on Hessian-vector products, with a budget of products and a stated accuracy."""
from dataclasses import dataclass

import numpy as np

from .._validation import check_float, check_int
from .hessian_ops import Operator, check_dense_memory, dense, prepare

__all__ = ["hessian_spectrum", "HessianSpectrum", "SpectrumNotConverged"]


#: ``hessian_spectrum`` (method "auto") uses the dense Hessian up to this many parameters, also for ``k``:
#: 8 P^2 bytes (0.5 GB) and O(P^3) time (``eigvalsh``: about 8 s at P = 5376 on 2 cores), where Lanczos
#: can need tens of thousands of products on the clusters of near-zero eigenvalues of a trained network
DENSE_MAX = 8192
#: the accuracy of eigenvalues computed by Lanczos (method "lanczos"), relative to the largest |eigenvalue|
LANCZOS_ACCURACY = 1e-10
#: the Hessian-vector products ``hessian_spectrum(k=..., method="lanczos")`` may use, by default, per
#: wanted eigenvalue (and at least ``MIN_PRODUCTS``)
PRODUCTS_PER_EIGENVALUE = 1000
MIN_PRODUCTS = 20000


class SpectrumNotConverged(RuntimeError):
    """``hessian_spectrum(k=..., method="lanczos")`` used its ``max_products`` Hessian-vector products
    without finding the ``k`` smallest eigenvalues to the stated accuracy."""


class _Budget:
    """Counts the Hessian-vector products of a Lanczos computation; raises when they pass the budget."""

    def __init__(self, op, limit, k, P):
        self.op, self.limit, self.k, self.P = op, limit, k, P
        self.used = 0

    def apply(self, X):
        self.used += X.shape[1]
        if self.used > self.limit:
            raise SpectrumNotConverged(
                f"hessian_spectrum(k={self.k}) used max_products={self.limit:,} Hessian-vector products without "
                f"finding the {self.k} smallest eigenvalues to {LANCZOS_ACCURACY:g} of the largest (P = {self.P}); "
                "pass a larger max_products, a smaller k, or method='dense' (8 P^2 bytes)")
        return self.op.apply(X)


def _smallest(op, P, k, max_rounds=64, maxiter=None):
    """The k smallest eigenvalues of the operator (and its largest), by ``eigsh`` with locking, each to
    about ``LANCZOS_ACCURACY`` times the largest |eigenvalue|.

    Lanczos finds one copy of a repeated eigenvalue per run, and exact zero modes come in groups (one
    per neuron): each round runs ``eigsh`` on the operator with the eigenvectors found so far moved to
    the top of its spectrum, adds what it finds, and takes Rayleigh-Ritz values of ``H`` on all of them;
    it stops when a round finds nothing below the current k-th value. ARPACK's stopping test is relative
    to each eigenvalue and never passes at zero, so the rounds work on ``H + sigma I`` (spectrum in
    ``[|top|, 3 |top|]``) and the values come back from Rayleigh quotients of ``H`` itself.
    """
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

    def H(X):
        return op.apply(np.asarray(X, np.float64).reshape(P, -1))

    def operator(fn):
        return LinearOperator((P, P), matvec=lambda x: fn(np.reshape(x, (P, 1)))[:, 0], matmat=fn,
                              dtype=np.float64)

    v0 = np.random.default_rng(0).standard_normal(P)
    lin = operator(H)
    # ARPACK's test ||H x - theta x|| <= tol |theta|: the residuals of the shifted runs below, whose
    # spectrum lies in [|top|, 3 |top|], are then at most about 3 tol |top|, and the Rayleigh-Ritz values
    # of H on the vectors found are at least that accurate (its default tol, machine precision, can take
    # tens of thousands of products on a cluster of near-zero eigenvalues)
    tol = LANCZOS_ACCURACY / 3
    top = float(eigsh(lin, k=1, which="LM", v0=v0, tol=tol, return_eigenvectors=False)[0])
    largest = top if top >= 0 else float(eigsh(lin, k=1, which="LA", v0=v0, tol=tol, return_eigenvectors=False)[0])
    if top == 0.0:
        return np.zeros(k), 0.0
    sigma, tau = 2.0 * abs(top), 4.0 * abs(top)
    Z = np.zeros((P, 0))
    theta = None
    for _ in range(max_rounds):
        def deflated(X, Z=Z):
            X = np.asarray(X, np.float64).reshape(P, -1)
            ZX = Z.T @ X
            Y = X - Z @ ZX
            HY = H(Y) + sigma * Y
            return HY - Z @ (Z.T @ HY) + tau * (Z @ ZX)

        kk = min(k, P - 1)
        start = v0 - Z @ (Z.T @ v0)
        try:
            vals, vecs = eigsh(operator(deflated), k=kk, which="SA", v0=start, maxiter=maxiter, tol=tol)
        except ArpackNoConvergence as exc:  # a cluster it cannot resolve in one run: keep what converged
            vals, vecs = exc.eigenvalues, exc.eigenvectors
        new = vecs[:, vals < 0.5 * (sigma + abs(top) + tau)]  # not the locked vectors (at tau)
        if new.shape[1] == 0 and Z.shape[1] < k:
            raise RuntimeError(f"eigsh found no further eigenvalues ({Z.shape[1]} of k={k}); use k=None")
        Q, R = np.linalg.qr(np.hstack([Z, new]))
        Q = Q[:, np.abs(np.diag(R)) > 1e-8]
        S = Q.T @ H(Q)
        w, Y = np.linalg.eigh(0.5 * (S + S.T))
        order = np.argsort(w)[:k]
        done = (theta is not None and len(theta) == len(order)
                and w[order][-1] >= theta[-1] - LANCZOS_ACCURACY * abs(top))
        theta = w[order]
        Z = Q @ Y[:, order]
        if done:
            break
    return theta, max(largest, float(theta[-1]))


@dataclass(frozen=True, repr=False, eq=False)
class HessianSpectrum:
    """Eigenvalues of the Hessian and what is near zero among them (``hessian_spectrum``).

    Attributes
    ----------
    eigenvalues : numpy.ndarray
        Ascending, float64: all ``P`` of them, or the ``k`` smallest.
    tol : float
        The threshold below which ``|lambda|`` counts as zero.
    n_zero : int
        The number of eigenvalues with ``|lambda| <= tol`` (among those computed).
    n_negative : int
        The number with ``lambda < -tol`` (among those computed).
    largest : float
        The largest eigenvalue.
    n_params : int
        ``P = m d + m``.
    """

    eigenvalues: np.ndarray
    tol: float
    n_zero: int
    n_negative: int
    largest: float
    n_params: int

    @property
    def complete(self):
        """Whether all ``P`` eigenvalues were computed (``k=None``)."""
        return self.eigenvalues.size == self.n_params

    def __repr__(self):
        ev = self.eigenvalues
        which = "all" if self.complete else f"{ev.size} smallest"
        return (f"HessianSpectrum(P={self.n_params}, eigenvalues: {which}, smallest={ev[0]:.6g}, "
                f"largest={self.largest:.6g}, n_zero={self.n_zero}, n_negative={self.n_negative}, "
                f"tol={self.tol:.3g})")


#: the methods of ``hessian_spectrum``
SPECTRUM_METHODS = ("auto", "dense", "lanczos")


def hessian_spectrum(net, objective, reg=None, *, step=0, k=None, tol=None, method="auto", max_products=None):
    """Eigenvalues of the exact Hessian, with counts of zero and negative ones.

    Parameters
    ----------
    net : ff.TwoLayer
        The student (float32 is converted to float64).
    objective : ff.Population
        The population objective.
    reg : ff.WeightDecay, ff.PathNorm or None
        Added to the loss, with its strength at ``step``.
    step : int
        The global step at which a scheduled regularizer strength is evaluated.
    k : int or None
        None: all ``P`` eigenvalues. An integer ``1 <= k < P``: the ``k`` smallest (and the largest).
    method : "auto", "dense" or "lanczos"
        "dense": ``numpy.linalg.eigvalsh`` of ``hessian`` (memory ``8 P^2`` bytes, time O(P^3); exact to
        rounding). "lanczos" (needs ``k``): ``scipy.sparse.linalg.eigsh`` on products from
        ``hessian_vector`` (``H`` is never formed), run again with the eigenvectors found so far
        locked until no new eigenvalue appears among the ``k`` smallest (Lanczos finds one copy of a
        repeated eigenvalue per run), and the largest by ``eigsh`` as well; each eigenvalue to about
        ``LANCZOS_ACCURACY`` (1e-10) times the largest |eigenvalue|, a thousandth of the smallest
        threshold ``three_stage``'s diagnostic counts with. "auto" (default): "dense" up to
        ``DENSE_MAX`` parameters, and for ``k=None``; else "lanczos".
    max_products : int or None
        "lanczos": the most Hessian-vector products it may use (None: ``PRODUCTS_PER_EIGENVALUE`` per
        wanted eigenvalue, at least ``MIN_PRODUCTS``); beyond it ``SpectrumNotConverged`` is raised
        (a trained network's thousands of near-zero eigenvalues can make Lanczos crawl).
    tol : float or None
        Eigenvalues with ``|lambda| <= tol`` count as zero. Default ``P * eps * max|lambda|`` (``eps``
        the float64 machine epsilon; ``max|lambda|`` from the largest and the smallest eigenvalue):
        the rank threshold of ``numpy.linalg.matrix_rank``, a bound on the rounding error of a
        backward-stable symmetric eigensolver applied to ``H`` and of ``H``'s own entries (sums of
        ``m + m*`` terms each). It counts eigenvalues that are exactly zero in exact arithmetic; at a
        point that is only approximately stationary (after training) the same directions have
        eigenvalues of the size of the gradient: pass a larger ``tol`` to count them.

    Returns
    -------
    HessianSpectrum
        ``eigenvalues`` (ascending), ``tol``, ``n_zero``, ``n_negative``, ``largest``, ``n_params``.
        With ``k``, the counts are among the ``k`` computed eigenvalues.

    Notes
    -----
    Exact zero modes (checked in the tests unless said otherwise):

    - Rescalings. A positively homogeneous neuron (relu, abs, relu_centered, linear) is unchanged by
      ``(w_j, a_j) -> (w_j / c, c a_j)``, and ``H t_j = (grad_{w_j} L, -grad_{a_j} L)`` for
      ``t_j = (-w_j, a_j)``: a zero mode only where that gradient vanishes. At a global minimum made of
      positive multiples of distinct teacher neurons (``w_j = c_j w*_j``, ``a_j = a*_j / c_j``) there
      are ``m`` zero modes for relu, abs and relu_centered; at a generic point, none.
    - Neurons sharing a direction. A group of ``g`` students that are positive multiples of the same
      teacher neuron, at a global minimum, has ``g (d + 1) - d`` zero modes (mass and direction can be
      exchanged within the group).
    - Neurons with ``a_j = 0``: at least ``d - 1`` zero modes each (the ``w_j`` directions orthogonal
      to ``r_j = d2L / dw_j da_j = E[(f - y) sigma'(w_j . x) x]``), at any point, for every activation;
      ``d`` where ``r_j = 0`` (at a global minimum).
    - linear: the loss depends on ``W^T a`` only; ``P - d`` zero modes at a global minimum.
    - Weight decay ``lam`` adds ``lam`` to every eigenvalue at a global minimum of the loss, so none
      remain there; at a stationary point of the regularized loss the rescaling directions become
      eigenvectors of eigenvalue ``2 lam``, but an exchange of mass between two parallel balanced
      neurons changes neither the network nor the weight decay and stays flat (seen at a point
      converged by BFGS, not in the tests).
    """
    if not isinstance(method, str) or method not in SPECTRUM_METHODS:
        raise ValueError(f"method must be one of {SPECTRUM_METHODS}, got {method!r}")
    if max_products is not None:
        max_products = check_int(max_products, "max_products")
    M = prepare(net, objective, reg, step)
    P = M.P
    if k is not None:
        k = check_int(k, "k")
        if k >= P:
            raise ValueError(f"k must be < P = {P} (use k=None for all eigenvalues), got k={k}")
    elif method == "lanczos":
        raise ValueError("method='lanczos' computes the k smallest eigenvalues: pass k")
    if tol is not None:
        tol = check_float(tol, "tol", nonnegative=True)
    if method == "auto":
        method = "dense" if k is None or P <= DENSE_MAX else "lanczos"
    if method == "dense":
        check_dense_memory(P, "hessian_spectrum(method='dense')")
        ev = np.linalg.eigvalsh(dense(M))
        largest = float(ev[-1])
        ev = ev if k is None else ev[:k]
    else:
        limit = max_products or max(MIN_PRODUCTS, PRODUCTS_PER_EIGENVALUE * k)
        ev, largest = _smallest(_Budget(Operator(M, keep=True), limit, k, P), P, k)
    if tol is None:
        tol = P * np.finfo(np.float64).eps * max(abs(largest), abs(float(ev[0])))
    return HessianSpectrum(eigenvalues=ev, tol=float(tol), n_zero=int(np.sum(np.abs(ev) <= tol)),
                           n_negative=int(np.sum(ev < -tol)), largest=largest, n_params=P)
