"""Exact Gaussian population loss and gradient: the fused, tiled CPU kernel.

    L = 1/2 a^T K(W, W) a - a^T K(W, W*) a* + 1/2 a*^T K(W*, W*) a* (+ 1/2 noise^2, added by the caller)

With ``grad_u K(u, v) = alpha_u u + beta v`` (see ``fastfeat.math.activations``) the gradient is

    g_a[j] = S_j - T_j,        S_j = sum_k a_k K(w_j, w_k),   T_j = sum_i a*_i K(w_j, w*_i)
    g_W[j] = a_j A_j w_j + sum_k B_jk w_k - sum_i B*_ji w*_i
    A_j = sum_k a_k alpha(w_j, w_k) - sum_i a*_i alpha(w_j, w*_i),  B_jk = a_j a_k beta_jk (symmetric)

Strategy: rows of W are processed in tiles I = [i0, i1). For each tile the Gram
blocks ``W_I W_I^T`` (diagonal) and ``W_I W_{>I}^T`` (upper off-diagonal) come from BLAS, called outside
any prange; one parallel elementwise pass turns them, in place, into ``B`` while accumulating S and A
for the tile's rows and, by symmetry, for the later rows (each column chunk is owned by one thread, so
no two threads write the same entry); then ``g_W[I] += B_II W_I + B_I> W_>``, ``g_W[>] += B_I>^T W_I``.
Each unordered pair of distinct tiles is visited once: 3 m^2 d flops of BLAS instead of the 4 m^2 d of
the two full products, and m^2/2 kernel evaluations. The student-teacher terms of a small teacher
(m* <= ``SMALL_TEACHER``, the paper's 3) take one pass over all students before the tiles, its thin
products written as loops (``teacher_rows``); a wider teacher's come per tile, from BLAS. Products accumulate straight into g_W (GEMM with
beta = 1), so memory is O(tile * m); below ``_blas.SMALL_WORK`` multiply-adds per tile they are cut
into blocks that BLAS runs on the calling thread, spread over fastfeat's threads (see ``workspace``).
A step too small to gain from more threads than one runs on the calling thread (``serial_begin``),
and one that would not gain from any number of threads runs the serial build (``runs_serially``: the
same code compiled without ``parallel``, whose loops open no parallel region).

Every function here is module-level and generic in the float type (float32 or float64, one type per
call): numba compiles one version per argument types and caches it on disk. Float32 calls keep float32
arithmetic in the elementwise passes (constants come from ``scalar.like`` and the float32 build of the
activation table, whose arccos and arcsin are branch-free). The angular kernels (``ANGULAR_CODES``,
``K = |u||v| kappa(rho)``) and erf take branch-free passes that vectorize; the others go through
``scalar.pair`` (the passes: ``population_passes``).
"""
from collections import namedtuple

import numpy as np
from numba import prange

from ...math.activations import ANGULAR_CODES, CODES, ERF, HAS_KERNEL
from ...math import cross as _cross
from ._blas import SMALL_WORK, matmul_nn, matmul_nt, matmul_tn
from ._finite import finite, isnan
from ._jit import njit, pnjit, serial_build
from ._sync import num_threads, set_num_threads
from .common import add_reg_grad, guarded_update, row_norms
from .population_passes import (CHUNK, diag_block, diag_block_e, diag_block_h, erf_norms, norms3, off_block,
                                off_block_e, off_block_h, teacher_block, teacher_energy, teacher_rows)
from .scalar import lr_at, lr_count, lr_pair

DEFAULT_TILE = 256
#: up to this width the default tile is ``SMALL_TILE``: smaller diagonal blocks (whose pairs are
#: evaluated in both triangles) took 8-12% off a step at d = 20, m = 256 and 1024 (one Zen 4 core); above
#: it, each tile's parallel regions cost more than that
SMALL_WIDTH, SMALL_TILE = 2048, 128
#: the default tile of a step that runs the serial build (``runs_serially``), where a tile costs no
#: parallel regions: fewer pairs evaluated twice in the diagonal blocks (5% off an erf or relu step at
#: d = 20, m = 256 in float64 against 128 rows, 2% at m = 1024; the same in float32; one Zen 4 core)
SERIAL_TILE = 64
#: up to this many teacher neurons the student-teacher products are loops over all rows at once
#: (``teacher_rows``), above it BLAS calls per tile: at d = 20, m = 256, m* = 3 the eight thin BLAS calls
#: of the tiles cost 20 us of a 180 us erf step (one Zen 4 core), the loops 2 us
SMALL_TEACHER = 16
# A parallel region costs ~50 us to wake the other threads (fastfeat sets OMP_WAIT_POLICY=PASSIVE, so
# idle threads sleep instead of spinning on the cores), and a step opens about 10 per tile of rows plus
# 5. At the paper's sizes (d = 20, m = 256) that is several times the step's work: a step runs on the
# calling thread when the time the other threads would save, work * (n - 1) / n, is below what waking
# them costs. Work: m (m + m*) (d + WORK_D) units of about 0.06 ns on one core (the pair terms ~2 ns
# a pair, the products ~0.06 ns a multiply-add); REGION_COST: a region's cost in those units.
WORK_D = 33
REGION_COST = 830_000

#: Buffers of the population kernels (``workspace``):
#:   gbuf    (tile * m,)        Gram / B block of the current tile
#:   gsbuf   (c * max(m*, 1),)  student-teacher Gram / -B*^T block (m*, c), c = ``teacher_columns``
#:   nrm3    (3, m)             student norms |w_j|, inverse norms (0 at w_j = 0), masks (1 where w_j != 0);
#:                              for erf, rows 1 and 2 hold 1/sqrt(1 + |w_j|^2) and 1/(1 + |w_j|^2) (``erf_norms``)
#:   tnorms  (max(m*, 1),)      teacher norms
#:   S, T, A (m,)               the sums of the module docstring
#:   part    (2, nch, tile)     per-chunk partial row sums of the off-diagonal pass
#:   tile    int                rows of W per tile
#:   blas    bool               whole BLAS calls (True) or ``_blas``'s single-threaded blocks (False)
PopulationWorkspace = namedtuple("PopulationWorkspace", "gbuf gsbuf nrm3 tnorms S T A part tile blas")


def workspace(m, m_star, d, dtype, tile=None, blas=None):
    """Buffers for the population kernels (allocated once, reused every step): O(tile * m) memory.

    ``tile``: rows of W per block (None: ``SERIAL_TILE`` where the step runs the serial build, else
    ``SMALL_TILE`` up to ``SMALL_WIDTH`` neurons, else ``DEFAULT_TILE``). ``blas``: one BLAS call per Gram
    block and product (True: BLAS's own threads), blocks of them that BLAS runs on the calling thread,
    spread over fastfeat's threads (False), or decide by size (None: whole calls when a full tile's
    product has at least ``_blas.SMALL_WORK`` multiply-adds). Returns a ``PopulationWorkspace``.
    """
    dtype = np.dtype(dtype)
    if tile is None:
        tile = SMALL_TILE if m <= SMALL_WIDTH else DEFAULT_TILE
        if runs_serially(m, m_star, d, tile):  # (then also with the smaller tile's more regions)
            tile = SERIAL_TILE
    tile = int(max(1, min(tile, m)))
    nch = (m + CHUNK - 1) // CHUNK
    if blas is None:
        blas = tile * m * d >= SMALL_WORK
    return PopulationWorkspace(
        gbuf=np.empty(tile * m, dtype),
        gsbuf=np.empty(teacher_columns(m, m_star, tile) * max(m_star, 1), dtype),
        nrm3=np.empty((3, m), dtype),
        tnorms=np.empty(max(m_star, 1), dtype),
        S=np.empty(m, dtype),
        T=np.empty(m, dtype),
        A=np.empty(m, dtype),
        part=np.empty((2, nch, tile), dtype),
        tile=tile,
        blas=bool(blas),
    )


@njit
def teacher_columns(m, m_star, tile):
    """Students per student-teacher block: all of them for a small teacher (``teacher_rows``), else a tile."""
    return m if m_star <= SMALL_TEACHER else tile


@pnjit
def finish(W, a, gW, ga, S, T, A, want_grad):
    """g_a = S - T; g_W[j] += a_j A_j w_j; returns 1/2 a^T K a - a^T K* a* (float64), summed by a serial
    loop of its own: a parallel reduction's order depended on the thread count and, on one thread, on
    ``want_grad`` (the loss ``ff.train`` takes from a step then differed from ``objective.loss`` in the
    last bit)."""
    m, d = W.shape
    for j in prange(m):
        ga[j] = S[j] - T[j]
        if want_grad:
            c = a[j] * A[j]
            for i in range(d):
                gW[j, i] += c * W[j, i]
    total = 0.0
    for j in range(m):
        total += np.float64(a[j]) * (0.5 * np.float64(S[j]) - np.float64(T[j]))
    return total


@njit
def one_thread_suffices(m, m_star, d, tile, n):
    """Whether a step of these sizes (``tile`` rows per block) gains nothing from ``n`` threads over one:
    the time the other threads would save, work * (n - 1) / n, is below what waking them for each of the
    step's parallel regions costs (``REGION_COST``). The one rule for the kernels (``serial_begin``) and
    for ``ff.train`` and ``ff.flow``, which then run the whole call on one thread."""
    if n <= 1:
        return True
    work, regions = _work_and_regions(m, m_star, d, tile)
    return work * (n - 1) < regions * n * REGION_COST


@njit
def _work_and_regions(m, m_star, d, tile):
    """(work units, parallel regions) of one step of these sizes (see ``REGION_COST``)."""
    tile = max(tile, 1)
    return float(m) * (m + m_star) * (d + WORK_D), float(10 * ((m + tile - 1) // tile) + 5)


@njit
def runs_serially(m, m_star, d, tile):
    """Whether a step of these sizes runs the serial build (``serial_build``): when one thread suffices
    whatever the thread count (``one_thread_suffices`` for every n), the parallel regions would only
    cost their launch (about a microsecond each even on one thread; 13% of the step at d = 20,
    m = 256). A rule of the sizes only, so the results do not depend on the thread count."""
    work, regions = _work_and_regions(m, m_star, d, tile)
    return work < regions * REGION_COST


@njit
def serial_begin(W, Wt, ws):
    """Before a step's parallel regions: the calling thread's thread count, to give to ``serial_end``;
    switched to 1 when the step is too small to gain from more (see ``REGION_COST``). The thread count
    is per calling thread (numba's), and the results do not depend on it."""
    n = num_threads()
    m, d = W.shape
    if n > 1 and one_thread_suffices(m, Wt.shape[0], d, ws.tile, n):
        set_num_threads(1)
    return n


@njit
def serial_end(n):
    """After the step: the thread count ``serial_begin`` found."""
    set_num_threads(n)


#: ``(student code, teacher code)`` of the kernels' ``code`` argument (``math.cross.pair_code``)
split_code = njit(_cross.split_code)

#: the activation codes with a population kernel (the others, tanh, have no closed form)
_KERNEL_CODES = np.array(sorted(CODES[n] for n in HAS_KERNEL), np.int64)


@njit
def check_args(W, a, Wt, at, code, gW, ga, ws, want_grad):
    """ValueError unless the arguments fit together: the kernels index buffers by these sizes without
    bounds checks, so a workspace of other sizes or a teacher of another d would read or write outside
    them (a segmentation fault or wrong numbers). A few integer comparisons per call."""
    m, d = W.shape
    ms = Wt.shape[0]
    if a.shape[0] != m or Wt.shape[1] != d or at.shape[0] != ms:
        raise ValueError("population kernel: W (m, d), a (m,), Wt (m*, d), at (m*,) do not fit together")
    cs, ct = split_code(code)
    ok = tok = False
    for c in _KERNEL_CODES:
        ok = ok or cs == c
        tok = tok or ct == c
    if not (ok and tok):
        raise ValueError("population kernel: code is not an activation with a closed-form population kernel "
                         "(or a pair of them, population_code(student, teacher))")
    if want_grad and (gW.shape[0] != m or gW.shape[1] != d or ga.shape[0] != m):
        raise ValueError("population kernel: gW and ga must have the shapes of W and a")
    t = ws.tile
    nch = (m + CHUNK - 1) // CHUNK
    if (t < 1 or t > m or ws.gbuf.shape[0] < t * m or ws.gsbuf.shape[0] < teacher_columns(m, ms, t) * max(ms, 1)
            or ws.nrm3.shape[1] != m or ws.tnorms.shape[0] < max(ms, 1) or ws.S.shape[0] != m
            or ws.T.shape[0] != m or ws.A.shape[0] != m or ws.part.shape[1] < nch or ws.part.shape[2] < t):
        raise ValueError("population kernel: the workspace was made for other sizes: "
                         "use population_workspace(m, m_star, d, dtype) of these arrays")


@njit
def loss_grad(W, a, Wt, at, code, gW, ga, ws, want_grad):
    """Population loss (without noise) at (W, a); fills gW, ga with its gradient if want_grad.

    W (m, d), a (m,), Wt (m*, d), at (m*,) of one float dtype; ``ws`` from ``workspace``.
    Never modifies W or a. Returns the loss as float64. The build (``runs_serially``) is chosen here;
    code that calls it from Python takes the one build it needs from ``builds``.
    """
    if runs_serially(W.shape[0], Wt.shape[0], W.shape[1], ws.tile):
        return serial_loss_grad(W, a, Wt, at, code, gW, ga, ws, want_grad)
    return parallel_loss_grad(W, a, Wt, at, code, gW, ga, ws, want_grad)


@njit
def parallel_loss_grad(W, a, Wt, at, code, gW, ga, ws, want_grad):
    """``loss_grad`` in the parallel build (``serial_loss_grad``: the serial one)."""
    check_args(W, a, Wt, at, code, gW, ga, ws, want_grad)
    code, tcode = split_code(code)
    m, d = W.shape
    ms = Wt.shape[0]
    tile = ws.tile
    blas = ws.blas
    threads = serial_begin(W, Wt, ws)
    S, T, A = ws.S, ws.T, ws.A
    nrm3 = ws.nrm3
    tnrm = ws.tnorms
    norms3(W, nrm3)
    row_norms(Wt, tnrm)
    angular = code in ANGULAR_CODES
    erf = code == ERF
    if erf:
        erf_norms(nrm3)
    S[:] = 0
    A[:] = 0
    T[:] = 0
    if want_grad:
        gW[:, :] = 0
    if 0 < ms <= SMALL_TEACHER:
        teacher_rows(W, a, Wt, at, nrm3, tnrm, code, tcode, ws.gsbuf[: ms * m].reshape(ms, m), T, A, gW, want_grad)
    for i0 in range(0, m, tile):
        i1 = min(i0 + tile, m)
        t = i1 - i0
        WI = W[i0:i1]
        gI = gW[i0:i1]
        # diagonal block: both triangles, rows of this tile only
        Gd = ws.gbuf[: t * t].reshape(t, t)
        matmul_nt(WI, WI, Gd, False, blas)
        if angular:
            diag_block_h(Gd, nrm3, a, i0, code, S, A)
        elif erf:
            diag_block_e(Gd, nrm3, a, i0, S, A)
        else:
            diag_block(Gd, nrm3, a, i0, code, S, A)
        if want_grad:
            matmul_nn(Gd, WI, gI, True, blas)              # g_W[I] += B_II W_I
        if ms > SMALL_TEACHER:
            Gs = ws.gsbuf[: ms * t].reshape(ms, t)
            matmul_nt(Wt, WI, Gs, False, blas)
            teacher_block(Gs, nrm3, tnrm, a, at, i0, code, tcode, T, A)
            if want_grad:
                matmul_tn(Gs, Wt, gI, True, blas)           # g_W[I] -= B*_I W*
        mo = m - i1
        if mo > 0:
            # upper off-diagonal block: each pair of tiles once, by symmetry
            Go = ws.gbuf[: t * mo].reshape(t, mo)
            WO = W[i1:]
            matmul_nt(WI, WO, Go, False, blas)
            if angular:
                off_block_h(Go, nrm3, a, i0, i1, code, S, A, ws.part)
            elif erf:
                off_block_e(Go, nrm3, a, i0, i1, S, A, ws.part)
            else:
                off_block(Go, nrm3, a, i0, i1, code, S, A, ws.part)
            if want_grad:
                matmul_nn(Go, WO, gI, True, blas)          # g_W[I] += B_I> W_>
                matmul_tn(Go, WI, gW[i1:], True, blas)     # g_W[>] += B_I>^T W_I
    loss = finish(W, a, gW, ga, S, T, A, want_grad) + 0.5 * teacher_energy(Wt, at, tnrm, tcode)
    serial_end(threads)
    # the loss is a mean of squares: at the teacher the three terms cancel to rounding noise, which may
    # fall below 0 (and break log-scale plots); the gradient is computed apart and unaffected (NaN stays NaN)
    if loss < 0.0:
        loss = 0.0
    return loss


@njit
def parallel_step(W, a, Wt, at, code, lr, reg, lam_a, lam_w, gW, ga, ws):
    """One step with ``lr`` the pair (lr_W, lr_a): what ``step`` and ``run`` share, in the parallel build
    (``serial_step``: the serial one)."""
    threads = serial_begin(W, Wt, ws)
    # np.bool_(True), a run-time bool: the loss_grad the objective calls from Python, not a second
    # compilation for the literal True
    loss = parallel_loss_grad(W, a, Wt, at, code, gW, ga, ws, np.bool_(True))
    ok = add_reg_grad(W, a, gW, ga, reg, lam_a, lam_w)
    done = ok and finite(loss) and guarded_update(W, a, gW, ga, lr)
    serial_end(threads)
    return loss if done else np.nan


@njit
def step(W, a, Wt, at, code, lr, reg, lam_a, lam_w, gW, ga, ws):
    """One gradient step in place (``lr``: one step size, or a pair (lr_W, lr_a)); returns the loss before
    the step (float64, NaN when the step was refused because the loss or the gradient is not finite or an
    updated weight would reach ``guard_limit``: W, a are then unchanged)."""
    if runs_serially(W.shape[0], Wt.shape[0], W.shape[1], ws.tile):
        return serial_step(W, a, Wt, at, code, lr_pair(lr), reg, lam_a, lam_w, gW, ga, ws)
    return parallel_step(W, a, Wt, at, code, lr_pair(lr), reg, lam_a, lam_w, gW, ga, ws)


@njit
def run(W, a, Wt, at, code, lrs, reg, lam_as, lam_ws, gW, ga, ws, losses):
    """``n`` steps; ``lrs`` has shape (n,) (one step size per step) or (2, n) (rows: W, a); losses[s] gets
    the loss before step s. Returns the number of steps done (fewer when a non-finite loss or gradient
    stopped it; W, a keep their last finite values)."""
    if runs_serially(W.shape[0], Wt.shape[0], W.shape[1], ws.tile):
        return serial_run(W, a, Wt, at, code, lrs, reg, lam_as, lam_ws, gW, ga, ws, losses)
    return parallel_run(W, a, Wt, at, code, lrs, reg, lam_as, lam_ws, gW, ga, ws, losses)


@njit
def parallel_run(W, a, Wt, at, code, lrs, reg, lam_as, lam_ws, gW, ga, ws, losses):
    """``run`` in the parallel build (``serial_run``: the serial one)."""
    n = lr_count(lrs)
    for s in range(n):
        loss = parallel_step(W, a, Wt, at, code, lr_at(lrs, s), reg, lam_as[s], lam_ws[s], gW, ga, ws)
        losses[s] = loss
        if isnan(loss):
            return s
    return n


# The builds that open no parallel region, for the sizes ``runs_serially`` picks (built last: they look
# up the functions above). The public kernels hold both builds; Python code takes only the one it needs
# (``builds``), so that a process compiles (and the warm-up caches) the serial build alone at the small
# sizes and the parallel one alone at the large.
serial_loss_grad = serial_build(parallel_loss_grad)
serial_step = serial_build(parallel_step)
serial_run = serial_build(parallel_run)

#: ``builds(...)``: the (loss_grad, run) kernels of one build
Builds = namedtuple("Builds", "loss_grad run serial")
_BUILDS = {False: Builds(parallel_loss_grad, parallel_run, False),
           True: Builds(serial_loss_grad, serial_run, True)}


def builds(m, m_star, d, tile):
    """The build of ``loss_grad`` and ``run`` (``Builds``) that the public kernels run at these sizes,
    for callers in Python: they compile only that one."""
    return _BUILDS[bool(runs_serially(m, m_star, d, tile))]
