"""fastfeat: compiled kernels for training wide two-layer networks in the teacher-student setting.

The math conventions and a user guide are in docs/ (``mkdocs serve``); ``import fastfeat as ff``.
"""
import os as _os

# numba's default "omp" threading layer (GNU OpenMP) keeps its workers spinning after each parallel
# region, and so does OpenBLAS after each call: the kernels alternate BLAS products with parallel
# elementwise passes, and the two spinning pools were measured to slow a population step 5-8x on
# 2 cores. Passive waiting costs nothing measurable here. Only a default: set it yourself to override.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# OpenBLAS's own workers spin ~2^28 cycles after each call unless told otherwise (2^4: sleep at once).
# Takes effect for the OpenBLAS the kernels call (scipy's) when fastfeat is imported before
# scipy.linalg; measured 10% off an empirical step (n=8192, d=256, m=2048, 2 cores).
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from ._version import __version__  # noqa: E402,F401

from . import kernels, metrics, schedules  # noqa: E402,F401
from . import gpu, paper  # noqa: E402,F401
from .math.activations import NAMES as ACTIVATIONS  # noqa: E402,F401
from .networks import Teacher, TwoLayer  # noqa: E402,F401
from .objectives import Empirical, Objective, Online, Population  # noqa: E402,F401
from .regularizers import PathNorm, WeightDecay  # noqa: E402,F401
from .training import (Checkpoint, CheckpointError, History, TrainingDiverged, TrainingInterrupted,  # noqa: E402,F401
                       flow, log_spaced, ode, train)
from .analysis import (HessianSpectrum, SpectrumNotConverged, hessian, hessian_spectrum,  # noqa: E402,F401
                       hessian_vector)
from .experiment import ConfigError  # noqa: E402,F401
from .sweeps import sweep  # noqa: E402,F401  (Dask is imported only when a sweep runs)
from . import _warmup_tasks  # noqa: E402,F401  (ff.kernels.warmup's tasks)
