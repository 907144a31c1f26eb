"""The training loop and its record."""
from .history import History  # noqa: F401
from .train import TrainingDiverged, train  # noqa: F401
