"""Regularizers added to the loss (docs/conventions.md)."""
import numpy as np

from .kernels.cpu.common import reg_value
from .math.regularizer import REG_NONE, REG_PATH_NORM, REG_WEIGHT_DECAY
from .schedules import as_schedule, describe, evaluate


class Regularizer:
    code = REG_NONE

    def lams(self, start, count):
        """(lam_a, lam_w) arrays for steps start .. start+count-1."""
        raise NotImplementedError

    def _describe(self, steps):
        """For comparing runs (checkpoints): the class and its schedules (``schedules.describe``)."""
        raise NotImplementedError

    def value(self, net, step=0):
        """The regularizer's value at the net's current weights (float)."""
        la, lw = self.lams(step, 1)
        return float(reg_value(net.W, net.a, self.code, la[0], lw[0]))


class WeightDecay(Regularizer):
    """``R = lam_a/2 |a|^2 + lam_w/2 |W|_F^2``; ``lam`` sets both unless ``lam_a`` / ``lam_w`` are given.

    Each of ``lam``, ``lam_a``, ``lam_w`` is a float >= 0 or a schedule (step -> value)."""

    code = REG_WEIGHT_DECAY

    def __init__(self, lam=None, *, lam_a=None, lam_w=None):
        if lam is None and (lam_a is None or lam_w is None):
            raise ValueError("WeightDecay needs lam, or both lam_a and lam_w")
        self.lam_a = as_schedule(lam if lam_a is None else lam_a, "lam_a", nonnegative=True)
        self.lam_w = as_schedule(lam if lam_w is None else lam_w, "lam_w", nonnegative=True)

    def lams(self, start, count):
        return (evaluate(self.lam_a, start, count, "lam_a", nonnegative=True),
                evaluate(self.lam_w, start, count, "lam_w", nonnegative=True))

    def __repr__(self):
        return f"WeightDecay(lam_a={self.lam_a!r}, lam_w={self.lam_w!r})"

    def _describe(self, steps):
        return f"WeightDecay(lam_a={describe(self.lam_a, steps)}, lam_w={describe(self.lam_w, steps)})"


class PathNorm(Regularizer):
    """``R = lam * sum_j |a_j| |w_j|``, the balanced form of weight decay (subgradient 0 at a_j = 0 or
    w_j = 0). ``lam`` is a float >= 0 or a schedule."""

    code = REG_PATH_NORM

    def __init__(self, lam):
        self.lam = as_schedule(lam, "lam", nonnegative=True)

    def lams(self, start, count):
        v = evaluate(self.lam, start, count, "lam", nonnegative=True)
        return v, v

    def __repr__(self):
        return f"PathNorm({self.lam!r})"

    def _describe(self, steps):
        return f"PathNorm({describe(self.lam, steps)})"


def check_reg(reg):
    if reg is None or isinstance(reg, Regularizer):
        return reg
    raise TypeError(f"reg must be ff.WeightDecay, ff.PathNorm or None, got {type(reg).__name__}")


def reg_arrays(reg, start, count):
    """(code, lam_a, lam_w) for a chunk of steps; zeros when reg is None."""
    if reg is None:
        z = np.zeros(count)
        return REG_NONE, z, z
    la, lw = reg.lams(start, count)
    return reg.code, la, lw
