"""The compiled kernels, callable from your own ``@numba.njit`` code.

Every kernel works in place on C-contiguous float32 or float64 arrays of one dtype, allocates nothing
per step, and is one module-level function for both float types (numba compiles it per argument types)
whose machine code is cached on disk: ``warmup()`` (``fastfeat warmup``) compiles the kernels
``ff.train`` and ``ff.flow`` call for both float types once per machine (``warmup(tasks=["kernels"])``
adds the other argument forms documented here), and a process that finds them in the cache starts at once. Integer codes select the activation
(``ACTIVATION_CODES``) and the regularizer (``REG_NONE``, ``REG_WEIGHT_DECAY``, ``REG_PATH_NORM``:
``lam_a/2 |a|^2 + lam_w/2 |W|^2``, or ``lam_w sum_j |a_j||w_j|``).

Population (exact Gaussian loss; ``Wt``, ``at`` the teacher's weights)::

    ws = population_workspace(m, m_star, d, dtype)                 # once, in Python
    loss = population_loss_grad(W, a, Wt, at, act, gW, ga, ws, want_grad)
    loss = population_step(W, a, Wt, at, act, lr, reg, lam_a, lam_w, gW, ga, ws)
    done = population_run(W, a, Wt, at, act, lrs, reg, lam_as, lam_ws, gW, ga, ws, losses)

``population_loss_grad`` returns the loss without label noise and fills ``gW``, ``ga`` (when
``want_grad``) with the gradient of the unregularized loss; it never writes W or a.
``population_step`` performs one regularized gradient step and returns the loss before it, or NaN
when it refused the step: the loss or gradient was not finite, or an updated weight could reach
``max_float / 4`` (then W and a are left unchanged). ``population_run`` does
``len(lrs)`` steps, storing each loss in ``losses`` and returning the number of steps done.
``act`` is the activation's code, or ``population_code(student_code, teacher_code)`` for a teacher
whose activation differs from the student's (both with a closed-form kernel: the cross kernels of
``fastfeat.math.cross``).

Step sizes: every ``lr`` may be one number (both layers) or a pair ``(lr_W, lr_a)``, and every ``lrs``
an array of shape (n,) or (2, n) (row 0 for W, row 1 for a); a layer whose step size is 0 is left
untouched, bit for bit. The kernels bring both forms to the pair and the (2, n) array that ``ff.train``
passes (an (n,) array is copied once per call), so every form runs the one compiled algorithm.

Shared helpers: ``add_reg_grad(W, a, gW, ga, reg, lam_a, lam_w) -> all_finite``,
``sgd_update(W, a, gW, ga, lr)`` and ``guarded_update(W, a, gW, ga, lr) -> taken`` (the update only when
every new weight stays below ``max_float / 4``, checked before anything is written).

Empirical (a fixed data set ``X`` (n, d), ``y`` (n,); ``idx`` int64 sample indices of a minibatch,
empty for all n samples in order; see ``fastfeat.kernels.cpu.empirical``)::

    ws = empirical_workspace(n, m, d, dtype, batch=None, tile=None)  # once, in Python
    loss = empirical_loss_grad(W, a, X, y, idx, act, gW, ga, ws, want_grad)
    loss = empirical_step(W, a, X, y, idx, act, lr, reg, lam_a, lam_w, gW, ga, ws)
    done = empirical_run(W, a, X, y, act, step0, batch, seed, lrs, reg, lam_as, lam_ws, gW, ga, ws, losses)

``empirical_run`` draws minibatches of ``batch`` samples (full batch when ``batch >= n``) from the
per-epoch permutation of ``(seed, epoch)``; global step ``step0 + s`` is batch ``(step0+s) % nb`` of
epoch ``(step0+s) // nb``. The workspace must be built with the same ``batch``.

Online SGD (fresh batches from the teacher ``Wt``, ``at`` with activation ``act_t``, label noise std
``noise``, counter-based samples keyed by ``(seed, step, sample, coordinate)``; see
``fastfeat.kernels.cpu.online``)::

    ws = online_workspace(batch, m, d, dtype)                          # once, in Python
    loss = online_loss_grad(W, a, Wt, at, act, act_t, noise, seed, step, gW, ga, ws)
    loss = online_step(W, a, Wt, at, act, act_t, noise, seed, step, lr, reg, lam_a, lam_w, ws)
    done = online_run(W, a, Wt, at, act, act_t, noise, seed, step0, lrs, reg, lam_as, lam_ws, ws, losses)

``online_loss_grad`` gives the unregularized minibatch gradient of global step ``step`` (the batch
``online_step`` would use there) without writing W, a; ``online_step`` never stores g_W whole. With
batch 1, ``online_run`` works in blocks of ``BLOCK`` = 20 steps that read and write W once per block
(``fastfeat.kernels.cpu.online_single``); a call that starts or stops inside a block starts a block of
its own, so ``online_step`` (a one-step run) makes two passes over W per call. Give ``online_run`` many
steps per call where you can: calls split at multiples of 20 steps give the same weights bit for bit as
one call, other splits the same weights up to rounding. ``online_step`` and ``online_run`` take an optional
last argument ``isa``, the batch-1 path's register-block variant (``fastfeat.kernels.cpu._jit.AVX2`` or
``AVX512``; default: the CPU's); leave it out, or pass a constant from njit code, to compile only one.
Return values and the divergence guard are those of the population kernels. The public empirical
kernels dispatch on ``act`` at run time, so their first call compiles every activation kind of the
dtype; ``ff.Empirical`` compiles only the one it needs.

Warm-up: ``warmup(dtypes=("float32", "float64"), tasks=None, processes=None, progress=True)`` runs the
default tasks of ``WARMUP_TASKS`` (each calls part of the package as users do), or those named;
``register_warmup(name, fn, dtypes=..., default=True)`` adds one (``fn(dtype)``).
"""
from ..math.activations import CODES as ACTIVATION_CODES  # noqa: F401
from ..math.cross import pair_code
from . import cuda  # noqa: F401  (ff.kernels.cuda; free: numba.cuda is imported on first device="cuda" use)
from .cpu import empirical as _emp
from .cpu import online as _onl
from .cpu import population as _pop
from .cpu.common import (  # noqa: F401
    REG_NONE, REG_PATH_NORM, REG_WEIGHT_DECAY, add_reg_grad, guarded_update, reg_value, row_norms, sgd_update,
)

population_workspace = _pop.workspace
population_loss_grad = _pop.loss_grad
population_step = _pop.step
population_run = _pop.run
population_code = pair_code

empirical_workspace = _emp.workspace
empirical_loss_grad = _emp.loss_grad
empirical_step = _emp.step
empirical_run = _emp.run
online_workspace = _onl.workspace
online_loss_grad = _onl.loss_grad
online_step = _onl.step
online_run = _onl.run

from ._warmup import TASKS as WARMUP_TASKS  # noqa: E402,F401
from ._warmup import register as register_warmup  # noqa: E402,F401
from ._warmup import warmup  # noqa: E402,F401
