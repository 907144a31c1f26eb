"""The training loop and its record."""
from .checkpoint import Checkpoint, CheckpointError  # noqa: F401
from .history import History  # noqa: F401
from .common import TrainingInterrupted  # noqa: F401
from .gd import TrainingDiverged, train  # noqa: F401
from .steps import log_spaced  # noqa: F401
from .gradient_flow import flow  # noqa: F401
from .order_parameters import ode  # noqa: F401
