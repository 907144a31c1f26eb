"""The math: activations, their derivatives and their Gaussian population kernels."""
from .activations import (  # noqa: F401
    CODES, EVEN, HAS_KERNEL, HOMOGENEOUS, NAMES, build, code_of, kernel_matrix,
)
