"""The CUDA kernels of the population objective: the Gram tiles, the pair terms, the products B V and the
rows' finish (``_build`` has the conventions and the math)."""
import math

#: the numba.cuda module, set by ``_build.kernels`` before ``build`` runs: the kernels must see it as a
#: module global (the simulator swaps the ``cuda`` global of kernel functions for its fake module)
cuda = None


def build(e):
    """The kernels of this module, for the device functions and constants ``e`` (``_build._make``):
    ``pop_gram``, ``pop_pairs``, ``pop_bv``, ``pop_rows``."""
    (NR, RB, T, TR, big, cross_pair, fits, half, nbt, pair, reg_terms, split_code, tile_product, zero,
     zero_block) = (e.NR, e.RB, e.T, e.TR, e.big, e.cross_pair, e.fits, e.half, e.nbt, e.pair, e.reg_terms,
                    e.split_code, e.tile_product, e.zero, e.zero_block)
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
        want_grad), and the row sums part[0..2, r] = sum_k c_k K_jk, c_k alpha_jk, e_k K_jk. ``code``: the
        activation, or the pair of the student's and the teacher's (``math.cross.pair_code``)."""
        if state[0] != 0:
            return
        cs, ct = split_code(code)
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
                if k < m or cs == ct:
                    K, au, av, b = pair(cs, nj, nrm[k], B[r, k])
                else:
                    K, au, b = cross_pair(cs, ct, nj, nrm[k], B[r, k])
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

    return pop_gram, pop_pairs, pop_bv, pop_rows
