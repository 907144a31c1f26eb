"""Feature-learning diagnostics (docs/conventions.md): how well the student's neurons capture the teacher's.

For neuron ``j``: direction ``w_j/|w_j|``, mass ``nu_j = |a_j| |w_j|``; for teacher ``i`` the cosines
``rho_ij`` (``|rho_ij|`` for even activations, where ``w`` and ``-w`` are the same neuron). Each neuron
belongs to its nearest teacher ``i(j)`` (largest cosine); the neighbourhood ``T_i`` holds the neurons
with ``i(j) = i`` and angle at most ``radius``; every other neuron is "far".

The per-neuron pass is one compiled parallel kernel (chunks of neurons, each chunk with its own partial
sums, merged afterwards: no shared ``+=`` inside ``prange``), so the diagnostics cost ``O(m m* d)`` and
can be logged during training at any width. The overlaps ``M = W W*^T`` come from one BLAS product.
"""
import math
import weakref

import numpy as np
from numba import prange

from .._validation import check_float
from ..kernels.cpu._jit import njit, pnjit
from ..math.cross import exact_pair
from ..networks import check_net, check_teacher

DEFAULT_RADIUS = 0.2
DEFAULT_THRESHOLD = 1e-3
_CHUNK = 2048


@pnjit
def _neuron_pass(W, a, M, tnorm, even, cos_radius, nearest, cosn, mass, norms, best, cap, spread, far, gap,
                 active, threshold):
    """Per-neuron pass. Outputs per neuron: ``nearest`` (-1 for w_j = 0), cosine to it ``cosn``, mass,
    norm. Per chunk c (rows of best/cap/spread, entries of far/gap/active): partial reductions."""
    m, d = W.shape
    ms = M.shape[1]
    nch = best.shape[0]
    for c in prange(nch):
        j0 = c * _CHUNK
        j1 = min(j0 + _CHUNK, m)
        f = 0.0
        g = 0.0
        act = 0
        for j in range(j0, j1):
            s = 0.0
            for k in range(d):
                s += np.float64(W[j, k]) * W[j, k]
            nj = math.sqrt(s)
            aj = np.float64(a[j])
            nu = abs(aj) * nj
            norms[j] = nj
            mass[j] = nu
            g = max(g, abs(aj * aj - s))
            if nu > threshold:
                act += 1
            if nj == 0.0:
                nearest[j] = -1
                cosn[j] = 0.0
                continue
            ib = -1
            cb = -2.0
            for i in range(ms):
                if tnorm[i] == 0.0:
                    continue
                r = np.float64(M[j, i]) / (nj * tnorm[i])
                r = min(max(r, -1.0), 1.0)
                if even:
                    r = abs(r)
                if r > best[c, i]:
                    best[c, i] = r
                if r > cb:
                    cb = r
                    ib = i
            nearest[j] = ib
            cosn[j] = cb if ib >= 0 else 0.0
            if ib >= 0 and cb >= cos_radius:
                ang = math.acos(cb)
                cap[c, ib] += aj * nj
                spread[c, ib] += nu * ang * ang
            else:
                f += nu
        far[c] = f
        gap[c] = g
        active[c] = act


# Population objectives for the loss, one per teacher (the workspace is reused across calls).
_POPULATION = weakref.WeakKeyDictionary()


def population_for(teacher):
    """The cached ``ff.Population(teacher)`` (one per teacher, so its workspace is reused); raises like
    ``Population`` for a teacher without a closed form."""
    from ..objectives.population import Population

    pop = _POPULATION.get(teacher)
    if pop is None:
        pop = _POPULATION[teacher] = Population(teacher)
    return pop


def _population_loss(net, teacher):
    """Exact population loss of ``net`` against ``teacher``, or NaN where no closed form applies."""
    if not exact_pair(net.activation, teacher.activation) or net.dtype != teacher.dtype:
        return float("nan")
    return population_for(teacher).loss(net)


def alignment(net, teacher, *, radius=DEFAULT_RADIUS, threshold=DEFAULT_THRESHOLD, with_Q=False, neurons=True,
              loss=True):
    """Feature-learning diagnostics of ``net`` against ``teacher`` (defined in docs/conventions.md).

    Parameters
    ----------
    radius : float
        Angle (radians) that defines the neighbourhood ``T_i`` of teacher direction ``i``. Default 0.2.
    threshold : float
        A neuron is active when its mass ``|a_j| |w_j|`` exceeds this. Default 1e-3.
    with_Q : bool
        Also return ``Q = W W^T`` (m x m: only for moderate widths).
    neurons : bool
        Also return the per-neuron arrays ``nearest``, ``cos``, ``angle``, ``mass``.
    loss : bool
        Compute the exact population loss (a full loss evaluation, ``O(m^2 d)``).

    Returns
    -------
    dict with
        ``best_cos`` (m*,): largest cosine (|cosine| for even activations) of any neuron to teacher i;
        ``captured_mass`` (m*,): signed ``s_i = sum_{T_i} a_j |w_j|``, to compare with ``a*_i |w*_i|``;
        ``far_mass``: ``sum`` of ``|a_j| |w_j|`` outside every ``T_i``;
        ``angular_spread`` (m*,): ``sum_{T_i} nu_j angle_j^2``;
        ``captured_count`` (m*,): number of neurons in ``T_i``;
        ``balance_gap``: ``max_j |a_j^2 - |w_j|^2|``;
        ``active_neurons``: number of neurons with mass above ``threshold``;
        ``M`` (m, m*): overlaps ``W W*^T``; ``Q`` (m, m) when ``with_Q``;
        ``loss``: the exact population loss, NaN when an activation has no closed-form kernel (tanh),
        when the student's dtype differs from the teacher's, or when ``loss=False``;
        with ``neurons``: ``nearest`` (m,) index of the nearest teacher (-1 for a zero neuron),
        ``cos`` and ``angle`` to it, ``mass`` (m,).

    Neurons with ``w_j = 0`` have no direction: they are far (with mass 0) and never count for
    ``best_cos``, which is -1 (0 for even activations) when no neuron has a direction.

    A net with an output scale (``ff.TwoLayer(scale=...)``, f = m^-gamma sum_j a_j sigma(w_j . x)): the
    masses (``mass``, ``captured_mass``, ``far_mass``, ``angular_spread``, ``active_neurons``) use the
    function's second layer m^-gamma a_j, which is what compares with the teacher's ``a*_i``; the
    ``balance_gap`` uses the stored a_j, which regularized gradient descent on the stored parameters
    balances against |w_j|.
    """
    check_net(net)
    check_teacher(teacher)
    if net.d != teacher.d:
        raise ValueError(f"net has input dimension d={net.d} but the teacher has d={teacher.d}")
    radius = check_float(radius, "radius", nonnegative=True)
    threshold = check_float(threshold, "threshold", nonnegative=True)
    W = net.W
    Wt = np.ascontiguousarray(teacher.W, dtype=W.dtype)
    M = np.dot(W, Wt.T)
    m, ms = M.shape
    even = bool(net.even)
    nch = (m + _CHUNK - 1) // _CHUNK
    best = np.full((nch, ms), 0.0 if even else -1.0)
    cap = np.zeros((nch, ms))
    spread = np.zeros((nch, ms))
    count = np.zeros(ms, np.int64)
    far = np.empty(nch)
    gap = np.empty(nch)
    active = np.empty(nch, np.int64)
    nearest = np.empty(m, np.int64)
    cosn = np.empty(m)
    mass = np.empty(m)
    norms = np.empty(m)
    tnorm = np.linalg.norm(np.asarray(teacher.W, np.float64), axis=1)
    cos_radius = math.cos(min(radius, math.pi))
    a_fn = net.as_standard().a  # the function's second layer (net.a for the standard scaling)
    _neuron_pass(W, a_fn, M, tnorm, even, cos_radius, nearest, cosn, mass, norms, best, cap, spread, far, gap,
                 active, threshold)
    if net.gamma != 0:  # the balance of the stored parameters
        gap[:] = np.max(np.abs(np.asarray(net.a, np.float64) ** 2 - norms ** 2))
    inside = (nearest >= 0) & (cosn >= cos_radius)
    count[:] = np.bincount(nearest[inside], minlength=ms)[:ms]
    out = {
        "best_cos": best.max(axis=0),
        "captured_mass": cap.sum(axis=0),
        "far_mass": float(far.sum()),
        "angular_spread": spread.sum(axis=0),
        "captured_count": count,
        "balance_gap": float(gap.max()),
        "active_neurons": int(active.sum()),
        "M": M,
        "loss": _population_loss(net, teacher) if loss else float("nan"),
    }
    if with_Q:
        out["Q"] = np.dot(W, W.T)
    if neurons:
        out["nearest"] = nearest
        out["cos"] = cosn
        out["angle"] = np.arccos(np.clip(cosn, -1.0, 1.0))
        out["mass"] = mass
    return out


#: what the "alignment" metric of ff.train logs (M, Q and per-neuron arrays are left out to keep the
#: history small; call ``alignment`` on the final net for them)
LOGGED = ("best_cos", "captured_mass", "far_mass", "angular_spread", "balance_gap", "active_neurons", "loss")


def alignment_metric(net, objective, teacher, reg, step):
    """``ff.train(metrics=("alignment",))``: the scalar and per-teacher entries of ``alignment``."""
    same = (objective.name == "population" and getattr(objective, "teacher", None) is teacher
            and objective.noise == 0)
    res = alignment(net, teacher, neurons=False, loss=not same)
    if same:  # the objective's own exact loss: no second Population workspace
        res["loss"] = objective.loss(net)
    return {k: res[k] for k in LOGGED}
