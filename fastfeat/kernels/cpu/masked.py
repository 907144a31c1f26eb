"""``S += M^T Y`` for a 0/1 matrix ``M`` stored as bits: the gradient product of the activations whose
derivative takes two values (relu, relu_centered), by the method of the four Russians.

For such an activation ``sigma'(z) = beta + (alpha - beta) [z > 0]``, so the weight gradient of the
empirical loss is ``g_W[j] = a_j ((alpha - beta) S[j] + beta sum_k y_k)`` with ``y_k = (r_k / n) x_k``
and ``S = M^T Y``, ``M[k, j] = [z_kj > 0]``. A dense GEMM spends one multiply-add per entry of ``M``
and column of ``Y``. Here, for every group of 4 rows of ``Y`` (a *nibble*) and every block of ``COLS``
columns, a table holds the 16 sums of the subsets of those rows; then ``S[j, block]`` adds, for each
nibble, the one table row that the 4 bits ``M[4g:4g+4, j]`` select. One vector addition does the work
of 4 multiply-adds, with no multiplications at all; the 16 x ``COLS`` table of a nibble is built with
16 vector additions per 16 lanes, shared by all ``m`` rows of ``S``.

Layout:

- ``bits[g, j]`` (uint8) = ``sum_{i < 8} M[8 g + i, j] << i``: the low nibble is rows ``8g..8g+3``,
  the high one rows ``8g+4..8g+7``. Rows past the end of the data have bit 0, so whatever their rows of
  ``Y`` hold is never selected.
- ``Y`` is ``tp x dp`` and ``S`` is ``m x dp`` with ``dp`` a multiple of ``COLS`` (zero columns pad
  ``d``); ``tp``, a multiple of 8, is the number of rows used.
- ``tabs``: one table set per worker, ``(workers, NIBBLES, 16, COLS)``, starting on a 64-byte line.

Work split: each worker owns a range of rows of ``S`` (units of ``UNIT`` rows; the ranges follow the
workers' measured speed, ``_split``) and builds its own tables (16 additions per nibble next to the
accumulation's one per row of S it owns). Each ``S[j, c]`` is summed in an order fixed by the data
alone (row blocks of ``ROWS``, nibbles in order, each table entry as built), so the result does not
depend on the number of threads or on the split.

Every function is generic in the float type of ``Y``/``S`` (float32 or float64) and cached on disk; the
thread count comes from the threading layer's symbol (``_sync.num_threads``), not numba's ctypes call.

Measured on the 2-core Xeon (AVX-512) of this project, a 1024 x 2048 bit matrix against 1024 x 256
rows, against OpenBLAS's GEMM of the same product with M stored as 0.0/1.0, in one process:

- float32, one thread: 3.9-5.3 ms against 7.8-8.4 ms (1.6-2.0x), about 1.1-1.4 cycles per 64-byte
  vector addition (the machine's two load ports would allow 0.5: the loop is bound by its instruction
  count and by the tables' reads from L2);
- float32, two threads (this split): 2.6-4.0 ms against 4.3-8.3 ms (1.5-2.1x);
- float64, two threads: 12.0-13.3 ms against 13.9-19.7 ms (1.15-1.5x).
"""
from collections import namedtuple

import numpy as np
from numba import prange

from . import _sync
from ._jit import aligned, local_array, njit, pnjit, wide_vectors
from .scalar import like

#: columns per block: the accumulator of one row of S, 4 (float32) or 8 (float64) 512-bit registers
COLS = 64
#: rows of Y per table set: 16 nibble tables of 16 x COLS entries (64 KB in float32, more than this
#: machine's 48 KB L1). Measured per 1024-row tile (m=2048, d=256, float32, 2 workers, best of 20):
#: 32 rows 3.1-3.3 ms, 48 rows 2.8-3.0, 64 rows 2.7-2.9, 96-128 rows 2.6-2.9, 256 rows 3.1: each row
#: of S is loaded and stored once per ROWS rows, and the tables stay in L2
ROWS = 64
NIBBLES = ROWS // 4

#: the buffers of ``masked_tn`` (``workspace``): ``bits`` (tp / 8, m) uint8, ``S`` (m, dp), ``Y`` (tp, dp),
#: ``tabs`` (workers, NIBBLES, 16, COLS), ``plan`` (2 workers + 2,) int64
Workspace = namedtuple("Workspace", "bits S Y tabs plan")


def workspace(m, d, rows, dtype, workers):
    """A ``Workspace`` for products of at most ``rows`` rows (rounded up to 8: ``tp``) and ``d`` columns
    (padded to a multiple of COLS: ``dp``), for up to ``workers`` workers; Y's padding is zero. ``plan``
    keeps the split of S's rows among the workers and their last times (``_split``)."""
    dp = max(COLS, -(-d // COLS) * COLS)
    tp = max(8, -(-rows // 8) * 8)
    nw = max(workers, 1)
    return Workspace(bits=np.zeros((tp // 8, m), np.uint8), S=aligned((m, dp), dtype), Y=aligned((tp, dp), dtype),
                     tabs=aligned((nw, NIBBLES, 16, COLS), dtype), plan=np.zeros(2 * nw + 2, np.int64))


@njit
def _split(plan, nt, units):
    """Set ``plan[:nt + 1]`` (worker k owns units plan[k] .. plan[k+1]-1 of S's rows) for this call.
    With the times of the last call on the same split (``plan[nt+1:2nt+1]``, cycles), each worker's
    share moves halfway to what its measured speed would give: the two cores of a shared machine are
    often unequal (one measured 1.3-1.8x slower for minutes). The split changes only who computes a row,
    never how, so results do not depend on it."""
    last = plan.shape[0] - 1
    if plan[last] != nt or plan[nt] != units:
        for k in range(nt + 1):
            plan[k] = k * units // nt
        for k in range(nt):
            plan[nt + 1 + k] = 0
        plan[last] = nt
        return
    rate = 0.0
    for k in range(nt):
        t = plan[nt + 1 + k]
        if t <= 0:
            return
        rate += (plan[k + 1] - plan[k]) / t
    acc = 0.0
    prev = plan[0]
    for k in range(nt - 1):
        t = plan[nt + 1 + k]
        own = plan[k + 1] - prev  # plan[k + 1] still holds the old split here
        prev = plan[k + 1]
        want = units * (own / t) / rate
        acc += 0.5 * (own + want)
        b = int(acc + 0.5)
        plan[k + 1] = min(max(b, plan[k] + 1), units - (nt - 1 - k))


@njit
def _tables(Y, r0, nn, c0, T):
    """T[g, s, :] = sum of the rows r0 + 4 g + b of Y[:, c0:c0+COLS] over the bits b of s, g < nn."""
    wide_vectors()
    for g in range(nn):
        Tg = T[g]
        t0 = Tg[0]
        for c in range(COLS):
            t0[c] = 0
        for b in range(4):
            h = 1 << b
            y = Y[r0 + 4 * g + b, c0:c0 + COLS]
            for s in range(h):
                src = Tg[s]
                dst = Tg[h + s]
                for c in range(COLS):
                    dst[c] = src[c] + y[c]


@njit
def _accumulate(bits, g0, nb, T, S, c0, j0, j1, load):
    """S[j, c0:c0+COLS] (+)= the table rows selected by bits[g0:g0+nb, j], j0 <= j < j1 (``load``
    False: the sum starts at 0, S's old values are ignored)."""
    wide_vectors()
    acc = local_array(S, COLS)  # in registers once the c loops are unrolled
    zero = like(S, 0.0)
    lo = np.uint64(15)
    four = np.uint64(4)
    for j in range(j0, j1):
        row = S[j, c0:c0 + COLS]
        if load:
            for c in range(COLS):
                acc[c] = row[c]
        else:
            for c in range(COLS):
                acc[c] = zero
        for q in range(nb):
            byte = np.uint64(bits[g0 + q, j])
            t = T[2 * q, byte & lo]
            for c in range(COLS):
                acc[c] += t[c]
            t = T[2 * q + 1, byte >> four]
            for c in range(COLS):
                acc[c] += t[c]
        for c in range(COLS):
            row[c] = acc[c]


#: rows of S per scheduling unit
UNIT = 8




@pnjit
def masked_tn(bits, Y, S, tabs, tp, accumulate, plan):
    """``S (+)= M^T Y[:tp]`` with M given by ``bits[:tp // 8]`` (module docstring); ``accumulate``
    False overwrites S. ``tp`` must be a multiple of 8. ``plan``: the workspace's split state."""
    m, dp = S.shape
    units = (m + UNIT - 1) // UNIT
    nt = max(1, min(_sync.num_threads(), tabs.shape[0], units))
    _split(plan, nt, units)
    for w in prange(nt):
        t0 = _sync.cycles()
        j0 = min(plan[w] * UNIT, m)
        j1 = min(plan[w + 1] * UNIT, m)
        T = tabs[w]
        for c0 in range(0, dp, COLS):
            for r0 in range(0, tp, ROWS):
                rows = min(ROWS, tp - r0)
                _tables(Y, r0, rows // 4, c0, T)
                _accumulate(bits, r0 // 8, rows // 8, T, S, c0, j0, j1, accumulate or r0 > 0)
        plan[nt + 1 + w] = _sync.cycles() - t0
