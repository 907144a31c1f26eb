"""The objectives: exact population loss, a fixed empirical data set, online SGD."""
from .base import Objective  # noqa: F401
from .population import Population  # noqa: F401
from .empirical import Empirical  # noqa: F401,E402
from .online import Online  # noqa: F401,E402
