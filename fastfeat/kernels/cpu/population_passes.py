"""The elementwise passes of the population kernel (``population``): Gram blocks in, ``B`` blocks out.

Each pass turns a block of inner products w_j . w_k (``G``) in place into its block of ``B`` (or ``-B*``
for the teacher) and adds the block's terms to the sums S, T and A (``population``'s docstring), using
the row norms that ``norms3`` (and, for erf, ``erf_norms``) left in ``nrm3``. Three families:

- the angular kernels (``ANGULAR_CODES``, K = |u||v| kappa(rho)) and erf: branch-free passes (``*_h``,
  ``*_e``, ``teacher_pass``) whose loops LLVM vectorizes;
- the others (linear, he2, he3): ``scalar.pair`` per entry.

The diagonal blocks are visited in both triangles (rows of one tile), the upper off-diagonal blocks once,
with the column sums going to the later rows (each chunk of ``CHUNK`` columns owned by one thread).
The student-teacher block is kept transposed, G[i, r] = w*_i . w_{j0 + r} (m* rows): the pass runs along
the students for each teacher, so it vectorizes however small m* is (the paper's m* = 3).
"""
import math

import numpy as np
from numba import prange

from ...math.activations import ANGULAR_CODES, ERF
from ...math.cross import ANGULAR_CROSS
from ._jit import local_array, njit, pnjit
from .scalar import asin, cross_pair, homog_consts, homog_terms, like, pair

CHUNK = 64  # columns per parallel task in the off-diagonal and teacher passes


@pnjit
def norms3(W, nrm3):
    """nrm3[0] = |w_j|, nrm3[1] = 1/|w_j| (0 at w_j = 0), nrm3[2] = 1 if w_j != 0 else 0."""
    m, d = W.shape
    zero = like(nrm3, 0.0)
    one = like(nrm3, 1.0)
    for j in prange(m):
        s = 0.0
        for i in range(d):
            s += np.float64(W[j, i]) * W[j, i]
        n = np.sqrt(s)
        nrm3[0, j] = n
        nrm3[1, j] = 1.0 / n if n > 0 else 0.0
        nrm3[2, j] = one if n > 0 else zero


# The elementwise passes index 1-d views that start at the block's first column, with loop indices
# from 0: an index like ``i1 + k`` (a run-time offset) makes numba emit its negative-index wraparound
# select at every access, and LLVM then does not vectorize the loop (8.9 against 3.1 ns a pair for the
# relu pass in float64 on Zen 4). The column sums into S and A are a second loop over two stack rows.


@pnjit
def diag_block_h(G, nrm3, a, i0, code, S, A):
    """diag_block for the angular kernels: branch-free inner loop that vectorizes."""
    off, scale, shift = homog_consts(code, G)
    zero = like(G, 0.0)
    one = like(G, 1.0)
    t = G.shape[0]
    n0, n1, n2, ab = nrm3[0, i0:i0 + t], nrm3[1, i0:i0 + t], nrm3[2, i0:i0 + t], a[i0:i0 + t]
    for r in prange(t):
        g = G[r]
        nj = n0[r]
        ij = n1[r]
        bj = ab[r] * n2[r]
        sK = zero
        sA = zero
        for k in range(t):
            rho = min(max(g[k] * ij * n1[k], -one), one)
            kap, dkap, perp = homog_terms(rho, off, scale, shift)
            ank = ab[k] * n0[k]
            sK += ank * kap
            sA += ank * perp
            g[k] = bj * ab[k] * n2[k] * dkap
        S[i0 + r] += sK * nj
        A[i0 + r] += sA * ij


@pnjit
def off_block_h(G, nrm3, a, i0, i1, code, S, A, part):
    """off_block for the angular kernels: branch-free inner loops that vectorize."""
    off, scale, shift = homog_consts(code, G)
    zero = like(G, 0.0)
    one = like(G, 1.0)
    t, mo = G.shape
    nch = (mo + CHUNK - 1) // CHUNK
    for ch in prange(nch):
        k0 = ch * CHUNK
        k1 = min(k0 + CHUNK, mo)
        c0, c1 = i1 + k0, i1 + k1
        n0, n1, n2, ac = nrm3[0, c0:c1], nrm3[1, c0:c1], nrm3[2, c0:c1], a[c0:c1]
        Sc, Ac = S[c0:c1], A[c0:c1]
        colK = local_array(G, CHUNK)
        colA = local_array(G, CHUNK)
        for r in range(t):
            j = i0 + r
            g = G[r, k0:k1]
            nj = nrm3[0, j]
            ij = nrm3[1, j]
            aj = a[j]
            bj = aj * nrm3[2, j]
            sK = zero
            sA = zero
            for k in range(k1 - k0):
                ik = n1[k]
                rho = min(max(g[k] * ij * ik, -one), one)
                kap, dkap, perp = homog_terms(rho, off, scale, shift)
                nkap = n0[k] * kap
                sK += ac[k] * nkap
                sA += ac[k] * n0[k] * perp
                colK[k] = nkap
                colA[k] = perp * ik
                g[k] = bj * ac[k] * n2[k] * dkap
            cj = aj * nj
            for k in range(k1 - k0):
                Sc[k] += cj * colK[k]
                Ac[k] += cj * colA[k]
            part[0, ch, r] = sK * nj
            part[1, ch, r] = sA * ij
    _fold_partials(part, t, nch, i0, S, A)


@pnjit
def erf_norms(nrm3):
    """Rows 1 and 2 of ``nrm3`` (after ``norms3``) for the erf passes: e_j = 1/sqrt(1 + q_j) and
    f_j = 1/(1 + q_j), q_j = |w_j|^2. erf's kernel is K = (2/pi) asin(s) with s = c e_u e_v, and its
    gradient terms alpha_u = -g s f_u, beta = g e_u e_v with g = (2/pi) / sqrt(1 - s^2)."""
    one = like(nrm3, 1.0)
    for j in prange(nrm3.shape[1]):
        q = nrm3[0, j] * nrm3[0, j]
        f = one / (one + q)
        nrm3[1, j] = math.sqrt(f)
        nrm3[2, j] = f


@pnjit
def diag_block_e(G, nrm3, a, i0, S, A):
    """diag_block for erf (``erf_norms``): branch-free inner loop that vectorizes."""
    zero = like(G, 0.0)
    one = like(G, 1.0)
    two_over_pi = like(G, 2.0 / math.pi)
    t = G.shape[0]
    e, ab = nrm3[1, i0:i0 + t], a[i0:i0 + t]
    for r in prange(t):
        g = G[r]
        ej = e[r]
        bj = ab[r] * ej
        sK = zero
        sA = zero
        for k in range(t):
            s = min(max(g[k] * ej * e[k], -one), one)
            h = two_over_pi / math.sqrt(one - s * s)
            sK += ab[k] * asin(s)
            sA += ab[k] * h * s
            g[k] = bj * ab[k] * e[k] * h
        S[i0 + r] += sK * two_over_pi
        A[i0 + r] -= sA * nrm3[2, i0 + r]


@pnjit
def off_block_e(G, nrm3, a, i0, i1, S, A, part):
    """off_block for erf (``erf_norms``): branch-free inner loops that vectorize (as ``off_block_h``)."""
    zero = like(G, 0.0)
    one = like(G, 1.0)
    two_over_pi = like(G, 2.0 / math.pi)
    t, mo = G.shape
    nch = (mo + CHUNK - 1) // CHUNK
    for ch in prange(nch):
        k0 = ch * CHUNK
        k1 = min(k0 + CHUNK, mo)
        c0, c1 = i1 + k0, i1 + k1
        e, f, ac = nrm3[1, c0:c1], nrm3[2, c0:c1], a[c0:c1]
        Sc, Ac = S[c0:c1], A[c0:c1]
        colK = local_array(G, CHUNK)
        colA = local_array(G, CHUNK)
        for r in range(t):
            j = i0 + r
            g = G[r, k0:k1]
            ej = nrm3[1, j]
            aj = a[j]
            bj = aj * ej
            sK = zero
            sA = zero
            for k in range(k1 - k0):
                s = min(max(g[k] * ej * e[k], -one), one)
                h = two_over_pi / math.sqrt(one - s * s)
                th = asin(s)
                hs = h * s
                sK += ac[k] * th
                sA += ac[k] * hs
                colK[k] = th
                colA[k] = hs * f[k]
                g[k] = bj * ac[k] * e[k] * h
            cK = aj * two_over_pi
            for k in range(k1 - k0):
                Sc[k] += cK * colK[k]
                Ac[k] -= aj * colA[k]
            part[0, ch, r] = sK * two_over_pi
            part[1, ch, r] = -sA * nrm3[2, j]
    _fold_partials(part, t, nch, i0, S, A)


@pnjit
def _fold_partials(part, t, nch, i0, S, A):
    """S, A of the tile's rows += their per-chunk partial row sums (in chunk order)."""
    zero = like(S, 0.0)
    for r in prange(t):
        sK = zero
        sA = zero
        for ch in range(nch):
            sK += part[0, ch, r]
            sA += part[1, ch, r]
        S[i0 + r] += sK
        A[i0 + r] += sA


@pnjit
def diag_block(G, nrm3, a, i0, code, S, A):
    """Diagonal tile: G (t x t) -> B in place; S, A for the tile rows (both triangles visited)."""
    zero = like(G, 0.0)
    t = G.shape[0]
    for r in prange(t):
        j = i0 + r
        nj = nrm3[0, j]
        aj = a[j]
        sK = zero
        sA = zero
        for k in range(t):
            K, au, av, b = pair(code, nj, nrm3[0, i0 + k], G[r, k])
            ak = a[i0 + k]
            sK += ak * K
            sA += ak * au
            G[r, k] = aj * ak * b
        S[j] += sK
        A[j] += sA


@pnjit
def off_block(G, nrm3, a, i0, i1, code, S, A, part):
    """Off-diagonal tile: G (t x (m - i1)) -> B in place; row sums for the tile rows via per-chunk
    partials, column sums straight into S, A of the later rows (each chunk owns its columns)."""
    zero = like(G, 0.0)
    t, mo = G.shape
    nch = (mo + CHUNK - 1) // CHUNK
    for ch in prange(nch):
        k0 = ch * CHUNK
        k1 = min(k0 + CHUNK, mo)
        for r in range(t):
            j = i0 + r
            nj = nrm3[0, j]
            aj = a[j]
            sK = zero
            sA = zero
            for k in range(k0, k1):
                kk = i1 + k
                ak = a[kk]
                K, au, av, b = pair(code, nj, nrm3[0, kk], G[r, k])
                sK += ak * K
                sA += ak * au
                S[kk] += aj * K
                A[kk] += aj * av
                G[r, k] = aj * ak * b
            part[0, ch, r] = sK
            part[1, ch, r] = sA
    _fold_partials(part, t, nch, i0, S, A)


@njit
def teacher_pass(G, k0, k1, nrm3, tnrm, a, at, j0, code, tcode, T, A):
    """Student-teacher pass over columns k0..k1 of G (m*, c), at most ``CHUNK``, students j0, j0 + 1, ...:
    those columns -> -B*^T in place; T of those rows, and the teacher part of their A. ``code``, ``tcode``:
    the student's and the teacher's activations. Branch-free along the students for two angular
    activations (the same or not: ``ANGULAR_CROSS``) and for erf (``erf_norms`` has run), ``scalar.pair``
    for the other kernels of one activation and ``scalar.cross_pair`` for the other pairs.
    (Rows of G are sliced here, ``G[i, k0:k1]``: a 2-d column slice passed in would be strided to numba,
    and its loops would not vectorize.)"""
    zero = like(G, 0.0)
    one = like(G, 1.0)
    two_over_pi = like(G, 2.0 / math.pi)
    ms = G.shape[0]
    t = k1 - k0
    sK = local_array(G, CHUNK)
    sA = local_array(G, CHUNK)
    for r in range(t):
        sK[r] = zero
        sA[r] = zero
    n0, n1, n2, ab = nrm3[0, j0:j0 + t], nrm3[1, j0:j0 + t], nrm3[2, j0:j0 + t], a[j0:j0 + t]
    angular = code in ANGULAR_CODES and tcode in ANGULAR_CODES
    erf = code == ERF and tcode == ERF
    same = code == tcode
    if angular:
        off = like(G, ANGULAR_CROSS[code, tcode, 0])
        scale = like(G, ANGULAR_CROSS[code, tcode, 1])
        shift = like(G, ANGULAR_CROSS[code, tcode, 2])
    for i in range(ms):
        g = G[i, k0:k1]
        nt = tnrm[i]
        ai = at[i]
        if angular:
            it = one / nt if nt > zero else zero
            bi = -ai * (one if nt > zero else zero)
            ank = ai * nt
            for r in range(t):
                rho = min(max(g[r] * n1[r] * it, -one), one)
                kap, dkap, perp = homog_terms(rho, off, scale, shift)
                sK[r] += ank * kap
                sA[r] += ank * perp
                g[r] = bi * ab[r] * n2[r] * dkap
        elif erf:
            et = one / math.sqrt(one + nt * nt)
            bi = -ai * et
            for r in range(t):
                e = n1[r]
                s = min(max(g[r] * e * et, -one), one)
                h = two_over_pi / math.sqrt(one - s * s)
                sK[r] += ai * asin(s)
                sA[r] += ai * h * s
                g[r] = bi * ab[r] * e * h
        else:
            for r in range(t):
                if same:
                    K, au, av, b = pair(code, n0[r], nt, g[r])
                else:
                    K, au, b = cross_pair(code, tcode, n0[r], nt, g[r])
                sK[r] += ai * K
                sA[r] += ai * au
                g[r] = -ab[r] * ai * b
    for r in range(t):
        if angular:
            T[j0 + r] = sK[r] * n0[r]
            A[j0 + r] -= sA[r] * n1[r]
        elif erf:
            T[j0 + r] = sK[r] * two_over_pi
            A[j0 + r] += sA[r] * n2[r]
        else:
            T[j0 + r] = sK[r]
            A[j0 + r] -= sA[r]


@pnjit
def teacher_block(G, nrm3, tnrm, a, at, i0, code, tcode, T, A):
    """Student-teacher tile of students i0, i0 + 1, ...: G (m*, t) -> -B*^T in place (``teacher_pass`` on
    each chunk of ``CHUNK`` columns)."""
    t = G.shape[1]
    for ch in prange((t + CHUNK - 1) // CHUNK):
        k0 = ch * CHUNK
        teacher_pass(G, k0, min(k0 + CHUNK, t), nrm3, tnrm, a, at, i0 + k0, code, tcode, T, A)


@pnjit
def teacher_rows(W, a, Wt, at, nrm3, tnrm, code, tcode, G, T, A, gW, want_grad):
    """All student-teacher terms of a small teacher (``population.SMALL_TEACHER``), in one parallel region over
    chunks of students: the block G (m*, m) of products w*_i . w_j, ``teacher_pass``, and
    g_W[j] -= sum_i B*_ji w*_i, by loops (BLAS calls for products this thin cost more than their work)."""
    m, d = W.shape
    ms = Wt.shape[0]
    zero = like(W, 0.0)
    for ch in prange((m + CHUNK - 1) // CHUNK):
        j0 = ch * CHUNK
        j1 = min(j0 + CHUNK, m)
        for i in range(ms):
            wt = Wt[i]
            g = G[i, j0:j1]
            for r in range(j1 - j0):
                w = W[j0 + r]
                c = zero
                for k in range(d):
                    c += w[k] * wt[k]
                g[r] = c
        teacher_pass(G, j0, j1, nrm3, tnrm, a, at, j0, code, tcode, T, A)
        if want_grad:
            for r in range(j1 - j0):
                gj = gW[j0 + r]
                for i in range(ms):
                    b = G[i, j0 + r]
                    wt = Wt[i]
                    for k in range(d):
                        gj[k] += b * wt[k]


@njit
def teacher_energy(Wt, at, tnrm, code):
    """a*^T K(W*, W*) a* (float64)."""
    zero = like(Wt, 0.0)
    ms = Wt.shape[0]
    e = 0.0
    for i in range(ms):
        for k in range(ms):
            c = zero
            for l in range(Wt.shape[1]):
                c += Wt[i, l] * Wt[k, l]
            K, au, av, b = pair(code, tnrm[i], tnrm[k], c)
            e += np.float64(at[i]) * at[k] * K
    return e
