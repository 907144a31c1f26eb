"""The CPU build of the counter-based generator (``fastfeat.math.random``), shared by the kernels."""
import warnings

import numba
import numpy as np

from ...math.random import _C1, build
from ._jit import _scalar

RNG = build(_scalar)
stream_key = RNG.stream_key
normal_keyed = RNG.normal_keyed
normal_pair = RNG.normal_pair
normals = RNG.normals
pairs_into = RNG.pairs_into
mix = RNG.mix


@_scalar
def shuffle(perm, seed, epoch):
    """Fill ``perm`` with the permutation of epoch ``epoch``: Fisher-Yates on 0..n-1 where the swap
    partner of position i (n-1 down to 1) is ``mix(stream_key(seed, epoch) + i * C1) % (i + 1)`` (the
    splitmix64 stream of that key; the modulo bias is below n / 2^64). Depends only on (seed, epoch, n)."""
    n = perm.shape[0]
    for i in range(n):
        perm[i] = i
    key = stream_key(seed, epoch)
    for i in range(n - 1, 0, -1):
        h = mix(key + np.uint64(i) * _C1)
        j = np.int64(h % np.uint64(i + 1))
        t = perm[i]
        perm[i] = perm[j]
        perm[j] = t

if numba.config.DISABLE_JIT:
    # run as Python (NUMBA_DISABLE_JIT=1) the generator's uint64 arithmetic wraps as it does compiled,
    # which numpy reports as an overflow
    warnings.filterwarnings("ignore", "overflow encountered in scalar", RuntimeWarning,
                            r"fastfeat\.(math\.random|kernels\.cpu\._rng)")
