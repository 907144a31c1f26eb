"""Analysis of a trained network: the exact Hessian of the population objective (``hessian_ops``: dense and
as products) and its spectrum (``spectrum``). The alignment diagnostics are in ``fastfeat.metrics``."""
from .hessian_ops import hessian, hessian_vector  # noqa: F401
from .spectrum import HessianSpectrum, SpectrumNotConverged, hessian_spectrum  # noqa: F401
