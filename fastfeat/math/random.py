"""Counter-based Gaussian numbers: the same (seed, step, sample, coordinate) always gives the same
number, on any thread count and on CPU or GPU.

``normal(seed, step, index)``: numbers ``2p`` and ``2p + 1`` are the two outputs (cosine, sine) of one
Box-Muller transform of outputs ``2p`` and ``2p + 1`` of the splitmix64 stream whose seed is a hash of
(seed, step), taken as two 53-bit uniforms; ``normal_pair`` gives both at the cost of one. The logarithm
and the sine/cosine are written out here (fdlibm's kernels, errors of about 1e-16) instead of calling
libm, so a loop drawing many numbers vectorizes on the CPU and the GPU computes the same function. ``index`` enumerates the
numbers of one step (e.g. ``sample * (d + 1) + coordinate``). Written once as plain functions and
compiled per target by ``build(jit)``, like the activation table.
"""
import math

import numpy as np

_C1 = np.uint64(0x9E3779B97F4A7C15)
_C2 = np.uint64(0xBF58476D1CE4E5B9)
_C3 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0  # 2^-53
_TWO_PI = 2.0 * math.pi
_P32, _M32, _P16, _M16 = 2.0**32, 2.0**-32, 2.0**16, 2.0**-16
_SQRT_HALF = math.sqrt(0.5)
# fdlibm (e_log.c, k_sin.c, k_cos.c) coefficients
_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
_LG1, _LG2, _LG3, _LG4 = 6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01, \
    2.222219843214978396e-01
_LG5, _LG6, _LG7 = 1.818357216161805012e-01, 1.531383769920937332e-01, 1.479819860511658591e-01
_S1, _S2, _S3 = -1.66666666666666324348e-01, 8.33333333332248946124e-03, -1.98412698298579493134e-04
_S4, _S5, _S6 = 2.75573137070700676789e-06, -2.50507602534068634195e-08, 1.58969099521155010221e-10
_C1c, _C2c, _C3c = 4.16666666666666019037e-02, -1.38888888888741095749e-03, 2.48015872894767294178e-05
_C4c, _C5c, _C6c = -2.75573143513906633035e-07, 2.08757232129817482790e-09, -1.13596475577881948265e-11


def build(jit):
    def mix(z):
        z = (z ^ (z >> _S30)) * _C2
        z = (z ^ (z >> _S27)) * _C3
        return z ^ (z >> _S31)

    mix = jit(mix)

    def stream_key(seed, step):
        """One 64-bit key per (seed, step)."""
        return mix(mix(np.uint64(seed) * _C1 + np.uint64(1)) ^ (np.uint64(step) * _C3 + _C1))

    def uniform_pair(key, p):
        """Outputs 2p and 2p + 1 of the splitmix64 stream of ``key`` as (u1 in (0, 1], u2 in [0, 1))."""
        key = np.uint64(key)  # (an int64 key would turn key + c * C1 into a float)
        c = np.uint64(p) * np.uint64(2)  # splitmix64 stream of key: states key + k * C1
        h1 = mix(key + c * _C1)
        h2 = mix(key + (c + np.uint64(1)) * _C1)
        return (np.float64(h1 >> _S11) + 1.0) * _INV53, np.float64(h2 >> _S11) * _INV53

    uniform_pair = jit(uniform_pair)

    def log_unit(u):
        """log(u) for u in (0, 1] in plain float arithmetic (no bit tricks, no libm), so the loop that
        draws numbers vectorizes and every target computes the same thing: u = 2^e v with v in
        [sqrt(1/2), sqrt(2)) by exact power-of-two scalings, then fdlibm's log kernel (error < 1 ulp)."""
        v = u
        e = 0.0
        v, e = (v * _P32, e - 32.0) if v < _M32 else (v, e)
        v, e = (v * _P16, e - 16.0) if v < _M16 else (v, e)
        v, e = (v * 256.0, e - 8.0) if v < 0.00390625 else (v, e)
        v, e = (v * 16.0, e - 4.0) if v < 0.0625 else (v, e)
        v, e = (v * 4.0, e - 2.0) if v < 0.25 else (v, e)
        v, e = (v * 2.0, e - 1.0) if v < 0.5 else (v, e)
        v, e = (v * 2.0, e - 1.0) if v < _SQRT_HALF else (v, e)
        f = v - 1.0
        s = f / (2.0 + f)
        z = s * s
        w = z * z
        R = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7))) + w * (_LG2 + w * (_LG4 + w * _LG6))
        hfsq = 0.5 * f * f
        return e * _LN2_HI - ((hfsq - (s * (hfsq + R) + e * _LN2_LO)) - f)

    def cos_sin_turns(t):
        """(cos 2 pi t, sin 2 pi t) for t in [0, 1]: exact reduction to r = 2 pi (t - k/4), |r| <= pi/4,
        then fdlibm's sine and cosine kernels (error below 1e-15) and the quadrant's swap and signs."""
        k = math.floor(4.0 * t + 0.5)
        r = (t - 0.25 * k) * _TWO_PI
        z = r * r
        sn = r + r * z * (_S1 + z * (_S2 + z * (_S3 + z * (_S4 + z * (_S5 + z * _S6)))))
        cs = 1.0 - 0.5 * z + z * z * (_C1c + z * (_C2c + z * (_C3c + z * (_C4c + z * (_C5c + z * _C6c)))))
        q = int(k) & 3
        c = sn if q & 1 else cs
        s = cs if q & 1 else sn
        c = -c if q == 1 or q == 2 else c
        s = -s if q >= 2 else s
        return c, s

    log_unit = jit(log_unit)
    cos_sin_turns = jit(cos_sin_turns)

    def normal_pair(key, p):
        """Standard normal numbers ``2p`` and ``2p + 1`` of the stream ``key`` (float64): both outputs of
        one Box-Muller transform."""
        u1, u2 = uniform_pair(key, p)
        r = math.sqrt(-2.0 * log_unit(u1))
        c, s = cos_sin_turns(u2)
        return r * c, r * s

    def normal_keyed(key, index):
        """Standard normal number ``index`` of the stream ``key`` (float64): the cosine (even ``index``)
        or sine (odd) half of Box-Muller pair ``index // 2``."""
        z0, z1 = normal_pair(key, np.uint64(index) >> np.uint64(1))
        if np.uint64(index) & np.uint64(1):
            return z1
        return z0

    stream_key = jit(stream_key)
    normal_pair = jit(normal_pair)
    normal_keyed = jit(normal_keyed)

    def pairs_into(key, p0, p1, out, o):
        """Pairs ``p0 .. p1-1`` of the stream ``key`` into ``out[o:o + 2 (p1 - p0)]`` (its one
        ``normal_pair`` call site keeps the loop inlined and vectorized)."""
        for q in range(p1 - p0):
            z0, z1 = normal_pair(key, p0 + q)
            i = np.uint64(o + 2 * q)  # unsigned: no negative-index branch
            out[i] = z0
            out[i + np.uint64(1)] = z1

    pairs_into = jit(pairs_into)

    def normals(key, lo, out):
        """``out[i]`` = number ``lo + i`` of the stream ``key``, one Box-Muller transform per pair (a
        pair cut by either end of the range is computed for its one member)."""
        lo = np.int64(lo)
        n = out.shape[0]
        i = 0
        if n > 0 and lo % 2 == 1:
            out[0] = normal_keyed(key, lo)
            i = 1
        npair = (n - i) // 2
        pairs_into(key, (lo + i) // 2, (lo + i) // 2 + npair, out, i)
        if i + 2 * npair < n:
            out[n - 1] = normal_keyed(key, lo + n - 1)

    normals = jit(normals)

    def normal(seed, step, index):
        return normal_keyed(stream_key(seed, step), index)

    class Random:
        pass

    r = Random()
    r.mix = mix
    r.stream_key = stream_key
    r.normal_pair = normal_pair
    r.normal_keyed = normal_keyed
    r.pairs_into = pairs_into
    r.normals = normals
    r.normal = jit(normal)
    return r
