"""The CUDA kernels of online SGD: samples drawn on the device from the counter-based generator, and
the teacher's labels (``_build`` has the conventions)."""
#: the numba.cuda module, set by ``_build.kernels`` before ``build`` runs: the kernels must see it as a
#: module global (the simulator swaps the ``cuda`` global of kernel functions for its fake module)
cuda = None


def build(e):
    """The kernels of this module, for the device functions and constants ``e`` (``_build._make``):
    ``online_draw``, ``teacher_labels``."""
    (ft, neuron, normal_keyed, stream_key, zero) = (
        e.ft, e.neuron, e.normal_keyed, e.stream_key, e.zero)

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

    return online_draw, teacher_labels
