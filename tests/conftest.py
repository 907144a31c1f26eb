import os
import signal
import subprocess
import sys

os.environ.setdefault("NUMBA_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

CLOSED_FORM = ("relu", "abs", "relu_centered", "erf", "linear", "he2", "he3")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="session", autouse=True)
def _warm_public_kernel_forms():
    """Compile the public ``ff.kernels`` entry points' other argument forms (a scalar step size, (n,) step
    sizes, the one-step kernels: the optional ``kernels`` warm-up task, which ``fastfeat warmup`` leaves
    to first use) in a background process while the first tests run, so that the tests of those forms
    find them in the disk cache instead of compiling them one after the other on one core. The results
    do not depend on it: a test that gets there first compiles what it needs itself, and a run that ends
    first stops it.
    ``FASTFEAT_TEST_BACKGROUND_WARMUP=0`` turns it off."""
    if os.environ.get("FASTFEAT_TEST_BACKGROUND_WARMUP", "1") == "0":
        yield
        return
    proc = subprocess.Popen([sys.executable, "-m", "fastfeat.cli", "warmup", "--task", "kernels", "--processes", "1",
                             "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    yield
    if proc.poll() is None:
        # the tests are done (a partial run may end long before it): numba writes each cache file to a
        # temporary name and renames it, so stopping it leaves no damaged entry (an interrupt also lets
        # it remove the temporary file it was writing)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return
    err = proc.stderr.read().decode()
    assert proc.returncode == 0, f"background warm-up of the public kernels failed: {err[-3000:]}"
