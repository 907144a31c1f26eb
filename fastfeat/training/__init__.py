"""The training loop and its record."""
from .checkpoint import Checkpoint, CheckpointError  # noqa: F401
from .history import History  # noqa: F401
from .common import TrainingInterrupted  # noqa: F401
from .train import TrainingDiverged, log_spaced, train  # noqa: F401
from .flow import flow  # noqa: F401
from .ode import ode  # noqa: F401
