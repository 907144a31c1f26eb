"""The CUDA kernels of the empirical objective: pre-activations, residuals, the column terms and the
products of the gradient (``_build`` has the conventions and the math)."""
import math

#: the numba.cuda module, set by ``_build.kernels`` before ``build`` runs: the kernels must see it as a
#: module global (the simulator swaps the ``cuda`` global of kernel functions for its fake module)
cuda = None


def build(e):
    """The kernels of this module, for the device functions and constants ``e`` (``_build._make``):
    ``emp_forward``, ``emp_resid``, ``emp_cols``, ``emp_gsum``, ``emp_gw``, ``emp_finish``."""
    (NR, RB, T, TR, big, dneuron, dneuron_dnorm, f64, fits, ft, nbt, neuron, reg_terms,
     tile_product, zero, zero_block) = (
        e.NR, e.RB, e.T, e.TR, e.big, e.dneuron, e.dneuron_dnorm, e.f64, e.fits, e.ft, e.nbt,
        e.neuron, e.reg_terms, e.tile_product, e.zero, e.zero_block)

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

    return emp_forward, emp_resid, emp_cols, emp_gsum, emp_gw, emp_finish
