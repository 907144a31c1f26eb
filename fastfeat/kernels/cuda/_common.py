"""CUDA kernels every objective uses: row norms, the single-block sums of a loss, committing a step's
loss (and refusing a non-finite one), and the SGD update (``_build`` has the conventions)."""
import math

#: the numba.cuda module, set by ``_build.kernels`` before ``build`` runs: the kernels must see it as a
#: module global (the simulator swaps the ``cuda`` global of kernel functions for its fake module)
cuda = None


def build(e):
    """The kernels of this module, for the device functions and constants ``e`` (``_build._make``):
    ``row_norms``, ``reduce_sums``, ``commit_loss``, ``sgd``."""
    NR = e.NR
    f64 = e.f64
    zero = e.zero

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

    return row_norms, reduce_sums, commit_loss, sgd
