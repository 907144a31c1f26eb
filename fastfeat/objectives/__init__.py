"""The objectives: exact population loss, a fixed empirical data set, online SGD."""
from .base import Objective  # noqa: F401
from .population import Population  # noqa: F401
