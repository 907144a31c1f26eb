"""The three-stage protocol of Zhou & Ge (NeurIPS 2024) as one call: ``ff.paper.three_stage``.

Described in docs/paper.md. From a symmetric initialization (f == 0):

1. **Early feature learning.** One large gradient step on ``W`` only, with weight decay ``1/eta1``, so that
   ``W1 = W0 - eta1 (grad_W L + W0/eta1) = -eta1 grad_W L``: every neuron moves into the span the
   teacher's gradient points to. Optionally each row is rescaled to norm ``row_norm``.
2. **Second layer.** ``W`` frozen, ``a`` is the ridge-regression solution
   ``(G + ridge I) a = b``: with the exact population objective ``G = K(W, W)`` and ``b = K(W, W*) a*``
   (the closed-form kernels); with data the features ``Phi = sigma(X W^T)`` give ``G = Phi^T Phi / n``,
   ``b = Phi^T y / n``.
3. **Local convergence.** Optional norm balancing (``a_j, w_j -> sign(a_j) sqrt(nu_j), sqrt(nu_j) w_j/|w_j|``
   with ``nu_j = |a_j||w_j|``; only for positively homogeneous activations, where it keeps the function),
   then gradient descent on both layers with weight decay ``lam_k = lam0 * lam_factor**k`` in epoch ``k``
   (``epochs`` epochs of ``epoch_steps`` steps, never below ``lam_floor``): far neurons shrink, near
   neurons converge to the teacher directions.

Each stage counts its own steps in its History (stage 1: rows at 0 and 1; stage 2: rows before and
after the solve at 0 and 1; stage 3: every ``log_every`` steps).
"""
from .arguments import KEYWORDS, RUN_KEYWORDS, SCALE_RANGE  # noqa: F401
from .protocol import DEFAULTS, START, argument_problems, check_arguments, three_stage  # noqa: F401
from .result import ThreeStageResult  # noqa: F401
