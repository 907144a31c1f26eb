"""The CUDA kernels, compiled per (float type, TILE, REG_BLOCK) on first use.

The scalar math is not rewritten here: ``fastfeat.math.activations.build``, ``fastfeat.math.random.build`` and
``fastfeat.math.regularizer.reg_terms`` are the same plain functions as the CPU kernels use, compiled with
``cuda.jit(device=True)``; the kernels below call them through closure names (no attribute access inside a
kernel).

Conventions shared by all kernels: ``state`` is an int32 device array, ``state[0] != 0`` once a step was
refused (every kernel then returns at once, so the rest of a chunk costs only launches), ``state[1] != 0``
when the current step produced a non-finite gradient entry or would move a weight to ``max_float / 4`` or
beyond (the divergence guard of the CPU kernels, ``fastfeat.kernels.cpu.common``: ``|w| + lr |g| < limit``
for every entry, checked by the kernels that finish the gradient rows, before ``sgd`` writes anything). One-dimensional kernels use grid-stride loops
(any grid size is correct); the row reductions use one thread block per row (grid-stride over rows)
and a shared-memory tree; the products use ``TILE x TILE`` thread blocks in which each thread keeps a
``RB x RB`` block of outputs in registers (a ``TILE RB`` square output tile per block, shared-memory
tiles of ``TILE`` along the summed dimension: RB^2 multiply-adds per 2 RB shared loads), with every
out-of-range load replaced by zero (ragged tails).

Math (the same as the CPU kernels, see ``fastfeat.kernels.cpu.population`` for the population gradient):
population columns ``k < m`` are the student rows, ``k >= m`` the teacher rows, with coefficients
``c_k = a_k`` or ``-a*_{k-m}``; then ``g_a[j] = sum_k c_k K_jk``, ``A_j = sum_k c_k alpha_jk``,
``B_jk = a_j c_k beta_jk``, ``g_W[j] = a_j A_j w_j + sum_k B_jk v_k`` and the loss is
``sum_j a_j sum_k e_k K_jk + 1/2 a*^T K* a*`` with ``e_k = c_k / 2`` for student columns, ``c_k`` else.
Empirical, per batch of ``nb`` samples: ``r_s = f(x_s) - y_s``; ``g_a[j] = 1/nb sum_s r_s phi(z_sj)``;
``g_W[j] = a_j/nb (sum_s r_s sigma'(z_sj) x_s + dnorm (sum_s r_s) w_j/|w_j|)``; loss ``sum_s r_s^2 / (2 nb)``.
"""
import math

import numba
import numpy as np

from ...math.activations import build as build_table
from ...math.guard import fits as fits_py
from ...math.guard import limit as guard_limit
from ...math.random import build as build_random
from ...math.regularizer import reg_terms as reg_terms_py

#: largest block of the single-block reductions (shared-memory size, compile time)
MAX_REDUCE_THREADS = 1024

_CACHE = {}
_RANDOM = {}
#: the numba.cuda module, set on first use; kernels must see it as a module global (the simulator
#: swaps the ``cuda`` global of kernel functions for its fake module; a closure variable would escape it)
cuda = None


def kernels(cuda_module, dtype, tile, reg_block=4):
    """The compiled kernel namespace for float ``dtype``, thread-block side ``tile`` and register block
    ``reg_block`` (cached)."""
    global cuda
    cuda = cuda_module
    key = (np.dtype(dtype), int(tile), int(reg_block))
    if key not in _CACHE:
        _CACHE[key] = _make(np.dtype(dtype).type, int(tile), int(reg_block))
    return _CACHE[key]


def _random():
    if "r" not in _RANDOM:
        _RANDOM["r"] = build_random(cuda.jit(device=True))
    return _RANDOM["r"]


def _make(ft, T, RB):
    TR = T * RB  # side of the output tile of one thread block in the products
    tab = build_table(cuda.jit(device=True), ft, fast_acos=False)
    pair = tab.pair
    neuron = tab.neuron
    dneuron = tab.dneuron
    dneuron_dnorm = tab.dneuron_dnorm
    reg_terms = cuda.jit(device=True)(reg_terms_py)  # (extra g_a[j], extra coefficient of w_j in g_W[j])
    rnd = _random()
    stream_key = rnd.stream_key
    normal_keyed = rnd.normal_keyed
    nbt = numba.from_dtype(np.dtype(ft))
    f64 = numba.float64
    zero, half = ft(0.0), ft(0.5)
    big = guard_limit(ft)  # the divergence guard (fastfeat.math.guard): its threshold and test
    fits = cuda.jit(device=True)(fits_py)
    NR = MAX_REDUCE_THREADS

    @cuda.jit
    def row_norms(W, out, off, state):
        """out[off + j] = |W[j]| (float64 accumulation)."""
        if state[0] != 0:
            return
        m, d = W.shape
        for j in range(cuda.grid(1), m, cuda.gridsize(1)):
            s = 0.0
            for i in range(d):
                v = f64(W[j, i])
                s += v * v
            out[off + j] = math.sqrt(s)

    @cuda.jit
    def reduce_sums(vals, n, sums, state):
        """One block: sums[0] = sum(vals[:n]), sums[1] = sum(vals[:n]^2) (float64)."""
        sh0 = cuda.shared.array(NR, f64)
        sh1 = cuda.shared.array(NR, f64)
        t = cuda.threadIdx.x
        nt = cuda.blockDim.x
        s0 = 0.0
        s1 = 0.0
        if state[0] == 0:
            for i in range(t, n, nt):
                v = f64(vals[i])
                s0 += v
                s1 += v * v
        sh0[t] = s0
        sh1[t] = s1
        cuda.syncthreads()
        w = 1
        while w < nt:
            if t % (2 * w) == 0 and t + w < nt:
                sh0[t] += sh0[t + w]
                sh1[t] += sh1[t + w]
            w *= 2
            cuda.syncthreads()
        if t == 0:
            sums[0] = sh0[0]
            sums[1] = sh1[0]

    @cuda.jit
    def commit_loss(sums, which, scale, const, losses, s, state):
        """losses[s] = sums[which] * scale + const; a non-finite loss or gradient refuses the step."""
        if cuda.grid(1) != 0 or state[0] != 0:
            return
        tot = sums[which] * scale + const
        if state[1] != 0 or not math.isfinite(tot):
            losses[s] = math.nan
            state[0] = 1
        else:
            losses[s] = tot

    @cuda.jit
    def sgd(W, a, gW, ga, lr, lr_a, state):
        """W -= lr gW, a -= lr_a ga unless the step was refused (a layer whose step size is 0 is not
        touched)."""
        if state[0] != 0:
            return
        m, d = W.shape
        md = m * d
        for idx in range(cuda.grid(1), md + m, cuda.gridsize(1)):
            if idx < md:
                if lr != zero:
                    j = idx // d
                    i = idx - j * d
                    W[j, i] -= lr * gW[j, i]
            elif lr_a != zero:
                a[idx - md] -= lr_a * ga[idx - md]

    # ---------------------------------------------------------------- the tiled products
    # Each thread block computes a (TR x TR) tile of an output product, each thread an (RB x RB) register
    # block of it (rows u T + ty, columns v T + tx), summing over T positions of the shared tiles at a time.
    # The kernels differ in what they load into the shared tiles and where they write the block; the
    # register block's arithmetic is these two device functions, inlined into every product kernel.
    @cuda.jit(device=True, inline="always")
    def zero_block(acc):
        for u in range(RB):
            for v in range(RB):
                acc[u, v] = zero

    @cuda.jit(device=True, inline="always")
    def tile_product(A, B, acc, ra, rb, ty, tx):
        """acc[u, v] += sum_t A[u T + ty, t] B[v T + tx, t] (pass a tile stored the other way round as
        its ``.T``)."""
        for t in range(T):
            for u in range(RB):
                ra[u] = A[u * T + ty, t]
                rb[u] = B[u * T + tx, t]
            for u in range(RB):
                for v in range(RB):
                    acc[u, v] += ra[u] * rb[v]

    # ---------------------------------------------------------------- population
    @cuda.jit
    def pop_gram(W, Wt, i0, rows, G, state):
        """G[r, k] = w_{i0+r} . v_k for r < rows, k < m + m* (v_k: student rows, then teacher rows)."""
        if state[0] != 0:
            return
        m, d = W.shape
        N = m + Wt.shape[0]
        ty = cuda.threadIdx.y
        tx = cuda.threadIdx.x
        r0 = cuda.blockIdx.y * TR
        c0 = cuda.blockIdx.x * TR
        sa = cuda.shared.array((TR, T), nbt)
        sb = cuda.shared.array((TR, T), nbt)
        acc = cuda.local.array((RB, RB), nbt)
        ra = cuda.local.array(RB, nbt)
        rb = cuda.local.array(RB, nbt)
        zero_block(acc)
        for l0 in range(0, d, T):
            li = l0 + tx
            for u in range(RB):
                rr = r0 + u * T + ty
                if rr < rows and li < d:
                    sa[u * T + ty, tx] = W[i0 + rr, li]
                else:
                    sa[u * T + ty, tx] = zero
                kk = c0 + u * T + ty
                if li < d and kk < m:
                    sb[u * T + ty, tx] = W[kk, li]
                elif li < d and kk < N:
                    sb[u * T + ty, tx] = Wt[kk - m, li]
                else:
                    sb[u * T + ty, tx] = zero
            cuda.syncthreads()
            tile_product(sa, sb, acc, ra, rb, ty, tx)
            cuda.syncthreads()
        for u in range(RB):
            for v in range(RB):
                rr = r0 + u * T + ty
                kk = c0 + v * T + tx
                if rr < rows and kk < N:
                    G[rr, kk] = acc[u, v]

    @cuda.jit
    def pop_pairs(a, at, nrm, i0, rows, code, B, part, want_grad, state):
        """One block per row (grid-stride): the Gram row B[r] -> the kernel pair in place (B_jk when
        want_grad), and the row sums part[0..2, r] = sum_k c_k K_jk, c_k alpha_jk, e_k K_jk."""
        if state[0] != 0:
            return
        m = a.shape[0]
        N = m + at.shape[0]
        sh0 = cuda.shared.array(NR, nbt)
        sh1 = cuda.shared.array(NR, nbt)
        sh2 = cuda.shared.array(NR, nbt)
        t = cuda.threadIdx.x
        nt = cuda.blockDim.x
        for r in range(cuda.blockIdx.x, rows, cuda.gridDim.x):
            j = i0 + r
            nj = nrm[j]
            aj = a[j]
            sK = zero
            sA = zero
            sL = zero
            for k in range(t, N, nt):
                K, au, av, b = pair(code, nj, nrm[k], B[r, k])
                if k < m:
                    ck = a[k]
                    ek = half * ck
                else:
                    ck = -at[k - m]
                    ek = ck
                sK += ck * K
                sA += ck * au
                sL += ek * K
                if want_grad:
                    B[r, k] = aj * ck * b
            sh0[t] = sK
            sh1[t] = sA
            sh2[t] = sL
            cuda.syncthreads()
            w = 1
            while w < nt:
                if t % (2 * w) == 0 and t + w < nt:
                    sh0[t] += sh0[t + w]
                    sh1[t] += sh1[t + w]
                    sh2[t] += sh2[t + w]
                w *= 2
                cuda.syncthreads()
            if t == 0:
                part[0, r] = sh0[0]
                part[1, r] = sh1[0]
                part[2, r] = sh2[0]
            cuda.syncthreads()

    @cuda.jit
    def pop_bv(B, W, Wt, i0, rows, gW, state):
        """gW[i0 + r] = sum_k B[r, k] v_k (v_k: student rows, then teacher rows)."""
        if state[0] != 0:
            return
        m, d = W.shape
        N = m + Wt.shape[0]
        ty = cuda.threadIdx.y
        tx = cuda.threadIdx.x
        r0 = cuda.blockIdx.y * TR
        c0 = cuda.blockIdx.x * TR
        sa = cuda.shared.array((TR, T), nbt)
        sb = cuda.shared.array((T, TR), nbt)
        acc = cuda.local.array((RB, RB), nbt)
        ra = cuda.local.array(RB, nbt)
        rb = cuda.local.array(RB, nbt)
        zero_block(acc)
        for k0 in range(0, N, T):
            kb = k0 + tx
            kv = k0 + ty
            for u in range(RB):
                rr = r0 + u * T + ty
                if rr < rows and kb < N:
                    sa[u * T + ty, tx] = B[rr, kb]
                else:
                    sa[u * T + ty, tx] = zero
                li = c0 + u * T + tx
                if li < d and kv < m:
                    sb[ty, u * T + tx] = W[kv, li]
                elif li < d and kv < N:
                    sb[ty, u * T + tx] = Wt[kv - m, li]
                else:
                    sb[ty, u * T + tx] = zero
            cuda.syncthreads()
            tile_product(sa, sb.T, acc, ra, rb, ty, tx)
            cuda.syncthreads()
        for u in range(RB):
            for v in range(RB):
                rr = r0 + u * T + ty
                li = c0 + v * T + tx
                if rr < rows and li < d:
                    gW[i0 + rr, li] = acc[u, v]

    @cuda.jit
    def pop_rows(W, a, nrm, part, i0, rows, gW, ga, lrow, want_grad, reg, lam_a, lam_w, lr, lr_a, state):
        """Per row: g_a, the loss row, g_W += a_j A_j w_j + regularizer; flags non-finite gradients and
        updates (step sizes ``lr`` of W, ``lr_a`` of a) that fail the guard."""
        if state[0] != 0:
            return
        d = W.shape[1]
        for r in range(cuda.grid(1), rows, cuda.gridsize(1)):
            j = i0 + r
            sK = part[0, r]
            sA = part[1, r]
            sL = part[2, r]
            aj = a[j]
            lrow[j] = aj * sL
            ga[j] = sK
            if want_grad:
                ra, rw = reg_terms(reg, aj, nrm[j], lam_a, lam_w, zero)
                gaj = sK + ra
                ga[j] = gaj
                cw = aj * sA + rw
                ok = math.isfinite(gaj) and fits(aj, gaj, lr_a, big)
                for i in range(d):
                    w = W[j, i]
                    g = gW[j, i] + cw * w
                    gW[j, i] = g
                    ok = ok and math.isfinite(g) and fits(w, g, lr, big)
                if not ok:
                    state[1] = 1

    # ---------------------------------------------------------------- empirical / online
    @cuda.jit
    def emp_forward(X, idx, off, cnt, W, Z, state):
        """Z[s, j] = x_{idx[off+s]} . w_j for s < cnt."""
        if state[0] != 0:
            return
        m, d = W.shape
        ty = cuda.threadIdx.y
        tx = cuda.threadIdx.x
        r0 = cuda.blockIdx.y * TR
        c0 = cuda.blockIdx.x * TR
        sa = cuda.shared.array((TR, T), nbt)
        sb = cuda.shared.array((TR, T), nbt)
        acc = cuda.local.array((RB, RB), nbt)
        ra = cuda.local.array(RB, nbt)
        rb = cuda.local.array(RB, nbt)
        zero_block(acc)
        for l0 in range(0, d, T):
            li = l0 + tx
            for u in range(RB):
                ss = r0 + u * T + ty
                if ss < cnt and li < d:
                    sa[u * T + ty, tx] = X[idx[off + ss], li]
                else:
                    sa[u * T + ty, tx] = zero
                jj = c0 + u * T + ty
                if jj < m and li < d:
                    sb[u * T + ty, tx] = W[jj, li]
                else:
                    sb[u * T + ty, tx] = zero
            cuda.syncthreads()
            tile_product(sa, sb, acc, ra, rb, ty, tx)
            cuda.syncthreads()
        for u in range(RB):
            for v in range(RB):
                ss = r0 + u * T + ty
                jj = c0 + v * T + tx
                if ss < cnt and jj < m:
                    Z[ss, jj] = acc[u, v]

    @cuda.jit
    def emp_resid(Z, a, nrm, y, idx, off, cnt, code, r, roff, state):
        """One block per sample (grid-stride): r[roff+s] = sum_j a_j phi(Z[s, j]) - y[idx[off+s]]."""
        if state[0] != 0:
            return
        m = a.shape[0]
        sh = cuda.shared.array(NR, f64)
        t = cuda.threadIdx.x
        nt = cuda.blockDim.x
        for s in range(cuda.blockIdx.x, cnt, cuda.gridDim.x):
            acc = 0.0
            for j in range(t, m, nt):
                acc += f64(a[j] * neuron(code, Z[s, j], nrm[j]))
            sh[t] = acc
            cuda.syncthreads()
            w = 1
            while w < nt:
                if t % (2 * w) == 0 and t + w < nt:
                    sh[t] += sh[t + w]
                w *= 2
                cuda.syncthreads()
            if t == 0:
                r[roff + s] = sh[0] - f64(y[idx[off + s]])
            cuda.syncthreads()

    @cuda.jit
    def emp_cols(Z, r, roff, cnt, nrm, code, gpart, state):
        """Per (chunk c of TILE samples, column j): gpart[c, j] = sum_{s in c} r_s phi(z_sj), and in place
        Z[s, j] <- r_s sigma'(z_sj) (one thread per pair, columns fastest: coalesced)."""
        if state[0] != 0:
            return
        m = Z.shape[1]
        nch = (cnt + T - 1) // T
        for q in range(cuda.grid(1), nch * m, cuda.gridsize(1)):
            c = q // m
            j = q - c * m
            nj = nrm[j]
            acc = zero
            for s in range(c * T, min(cnt, c * T + T)):
                z = Z[s, j]
                rs = r[roff + s]
                acc += rs * neuron(code, z, nj)
                Z[s, j] = rs * dneuron(code, z)
            gpart[c, j] = acc

    @cuda.jit
    def emp_gsum(gpart, nch, gacc, first, state):
        """gacc[j] (+)= sum_c gpart[c, j] (fixed order)."""
        if state[0] != 0:
            return
        m = gacc.shape[0]
        for j in range(cuda.grid(1), m, cuda.gridsize(1)):
            acc = zero
            for c in range(nch):
                acc += gpart[c, j]
            if first:
                gacc[j] = acc
            else:
                gacc[j] += acc

    @cuda.jit
    def emp_gw(Z, X, idx, off, cnt, gW, first, state):
        """gW[j, l] (+)= sum_s Z[s, j] x_{idx[off+s], l} (the product Z^T X)."""
        if state[0] != 0:
            return
        m, d = gW.shape
        ty = cuda.threadIdx.y
        tx = cuda.threadIdx.x
        r0 = cuda.blockIdx.y * TR
        c0 = cuda.blockIdx.x * TR
        sa = cuda.shared.array((T, TR), nbt)
        sb = cuda.shared.array((T, TR), nbt)
        acc = cuda.local.array((RB, RB), nbt)
        ra = cuda.local.array(RB, nbt)
        rb = cuda.local.array(RB, nbt)
        zero_block(acc)
        for s0 in range(0, cnt, T):
            ss = s0 + ty
            for u in range(RB):
                jj = r0 + u * T + tx
                if ss < cnt and jj < m:
                    sa[ty, u * T + tx] = Z[ss, jj]
                else:
                    sa[ty, u * T + tx] = zero
                li = c0 + u * T + tx
                if ss < cnt and li < d:
                    sb[ty, u * T + tx] = X[idx[off + ss], li]
                else:
                    sb[ty, u * T + tx] = zero
            cuda.syncthreads()
            tile_product(sa.T, sb.T, acc, ra, rb, ty, tx)
            cuda.syncthreads()
        for u in range(RB):
            for v in range(RB):
                jj = r0 + u * T + ty
                li = c0 + v * T + tx
                if jj < m and li < d:
                    if first:
                        gW[jj, li] = acc[u, v]
                    else:
                        gW[jj, li] += acc[u, v]

    @cuda.jit
    def emp_finish(W, a, nrm, gW, ga, sums, scale, code, want_grad, reg, lam_a, lam_w, lr, lr_a, state):
        """g_a = scale gacc + reg; g_W[j] = a_j scale (acc_j + dnorm sum(r) w_j/|w_j|) + reg; flags
        non-finite gradients and updates (step sizes ``lr`` of W, ``lr_a`` of a) that fail the guard."""
        if state[0] != 0:
            return
        m, d = W.shape
        dn = dneuron_dnorm(code)
        rsum = ft(sums[0])
        for j in range(cuda.grid(1), m, cuda.gridsize(1)):
            aj = a[j]
            nj = nrm[j]
            ra, rw = reg_terms(reg, aj, nj, lam_a, lam_w, zero)
            gaj = scale * ga[j] + ra
            ga[j] = gaj
            if want_grad:
                cg = aj * scale
                cw = rw
                if nj > zero:
                    cw += cg * dn * rsum / nj
                ok = math.isfinite(gaj) and fits(aj, gaj, lr_a, big)
                for i in range(d):
                    w = W[j, i]
                    g = cg * gW[j, i] + cw * w
                    gW[j, i] = g
                    ok = ok and math.isfinite(g) and fits(w, g, lr, big)
                if not ok:
                    state[1] = 1

    @cuda.jit
    def online_draw(seed, step, B, noise, X, y, state):
        """Fresh batch of step ``step``: x[b, i] = normal(b (d+1) + i), y[b] = noise * normal(b (d+1) + d)."""
        if state[0] != 0:
            return
        d = X.shape[1]
        key = stream_key(seed, step)
        n = B * (d + 1)
        for q in range(cuda.grid(1), n, cuda.gridsize(1)):
            b = q // (d + 1)
            i = q - b * (d + 1)
            v = ft(normal_keyed(key, q))  # rounded first, as on the CPU
            if i < d:
                X[b, i] = v
            else:
                y[b] = noise * v

    @cuda.jit
    def teacher_labels(X, Wt, at, tnrm, code, y, state):
        """y[b] += f*(x_b) for the batch in X."""
        if state[0] != 0:
            return
        B, d = X.shape
        ms = Wt.shape[0]
        for b in range(cuda.grid(1), B, cuda.gridsize(1)):
            f = zero
            for i in range(ms):
                z = zero
                for l in range(d):
                    z += X[b, l] * Wt[i, l]
                f += at[i] * neuron(code, z, tnrm[i])
            y[b] += f

    class Kernels:
        pass

    ns = Kernels()
    for fn in (row_norms, reduce_sums, commit_loss, sgd, pop_gram, pop_pairs, pop_bv, pop_rows, emp_forward,
               emp_resid, emp_cols, emp_gsum, emp_gw, emp_finish, online_draw, teacher_labels):
        setattr(ns, fn.py_func.__name__, fn)
    ns.ftype = ft
    ns.tile = T
    ns.reg_block = RB
    return ns


def signatures(dtype):
    """Argument types of every kernel for one float dtype (as the runners launch them)."""
    ft = numba.from_dtype(np.dtype(dtype))
    i64, u64, b1, f64 = numba.int64, numba.uint64, numba.boolean, numba.float64
    A1, A2, A3 = ft[::1], ft[:, ::1], ft[:, :, ::1]
    st = numba.int32[::1]
    d1 = f64[::1]
    ix = i64[::1]
    return {
        "row_norms": (A2, A1, i64, st),
        "reduce_sums": (A1, i64, d1, st),
        "commit_loss": (d1, i64, f64, f64, d1, i64, st),
        "sgd": (A2, A1, A2, A1, ft, ft, st),
        "pop_gram": (A2, A2, i64, i64, A2, st),
        "pop_pairs": (A1, A1, A1, i64, i64, i64, A2, A2, b1, st),
        "pop_bv": (A2, A2, A2, i64, i64, A2, st),
        "pop_rows": (A2, A1, A1, A2, i64, i64, A2, A1, A1, b1, i64, ft, ft, ft, ft, st),
        "emp_forward": (A2, ix, i64, i64, A2, A2, st),
        "emp_resid": (A2, A1, A1, A1, ix, i64, i64, i64, A1, i64, st),
        "emp_cols": (A2, A1, i64, i64, A1, i64, A2, st),
        "emp_gsum": (A2, i64, A1, b1, st),
        "emp_gw": (A2, A2, ix, i64, i64, A2, b1, st),
        "emp_finish": (A2, A1, A1, A2, A1, d1, ft, i64, b1, i64, ft, ft, ft, ft, st),
        "online_draw": (u64, u64, i64, ft, A2, A1, st),
        "teacher_labels": (A2, A2, A1, A1, i64, A1, st),
    }


def compile_ptx_all(cuda_module, dtype, tile, reg_block=4, cc=(8, 0)):
    """Compile every kernel to PTX for compute capability ``cc`` without a GPU (needs NVVM): proves
    that the kernels type-check on the real CUDA target, which the simulator does not. Returns
    {name: ptx}."""
    import types
    from unittest import mock

    from numba.cuda import dispatcher
    ns = kernels(cuda_module, dtype, tile, reg_block)
    out = {}
    # device functions called from a kernel compile for the current device's cc: pretend there is one
    fake = types.SimpleNamespace(compute_capability=cc)
    with mock.patch.object(dispatcher, "get_current_device", lambda: fake):
        for name, sig in signatures(dtype).items():
            ptx, _ = cuda_module.compile_ptx(getattr(ns, name).py_func, sig, cc=cc)
            out[name] = ptx
    return out
