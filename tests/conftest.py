import os

os.environ.setdefault("NUMBA_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

CLOSED_FORM = ("relu", "abs", "relu_centered", "erf", "linear", "he2", "he3")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
