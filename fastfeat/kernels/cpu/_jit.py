"""Shared compilation settings and the CPU builds of the activation table."""
import numba
import numpy as np

from ...math.activations import build

#: the safe fastmath set: no nnan/ninf, so isfinite checks keep working
FASTMATH = set({"nsz", "arcp", "contract", "afn", "reassoc"})


def njit(*args, **kw):
    kw.setdefault("fastmath", FASTMATH)
    kw.setdefault("nogil", True)
    kw.setdefault("error_model", "numpy")
    return numba.njit(*args, **kw)


def pnjit(*args, **kw):
    kw.setdefault("parallel", True)
    return njit(*args, **kw)


_scalar = numba.njit(fastmath=FASTMATH, error_model="numpy")
#: float32 table uses the vectorizable polynomial arccos; float64 uses libm for full accuracy
TABLE32 = build(_scalar, np.float32, fast_acos=True)
TABLE64 = build(_scalar, np.float64, fast_acos=False)
