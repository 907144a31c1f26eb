"""Counter-based Gaussian numbers: the same (seed, step, sample, coordinate) always gives the same
number, on any thread count and on CPU or GPU.

``normal(seed, step, index)`` takes outputs ``2 index`` and ``2 index + 1`` of the splitmix64
stream whose seed is a hash of (seed, step), as two 53-bit uniforms, and applies Box-Muller. ``index`` enumerates the
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


def build(jit):
    def mix(z):
        z = (z ^ (z >> _S30)) * _C2
        z = (z ^ (z >> _S27)) * _C3
        return z ^ (z >> _S31)

    mix = jit(mix)

    def stream_key(seed, step):
        """One 64-bit key per (seed, step)."""
        return mix(mix(np.uint64(seed) * _C1 + np.uint64(1)) ^ (np.uint64(step) * _C3 + _C1))

    def normal_keyed(key, index):
        """Standard normal number ``index`` of the stream ``key`` (float64)."""
        c = np.uint64(index) * np.uint64(2)  # splitmix64 stream of key: states key + k * C1
        h1 = mix(key + c * _C1)
        h2 = mix(key + (c + np.uint64(1)) * _C1)
        u1 = (np.float64(h1 >> _S11) + 1.0) * _INV53  # in (0, 1]
        u2 = np.float64(h2 >> _S11) * _INV53          # in [0, 1)
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(_TWO_PI * u2)

    stream_key = jit(stream_key)
    normal_keyed = jit(normal_keyed)

    def normal(seed, step, index):
        return normal_keyed(stream_key(seed, step), index)

    class Random:
        pass

    r = Random()
    r.mix = mix
    r.stream_key = stream_key
    r.normal_keyed = normal_keyed
    r.normal = jit(normal)
    return r
