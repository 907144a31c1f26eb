import os
import signal
import subprocess
import sys
import tempfile
import threading
import warnings

os.environ.setdefault("NUMBA_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

CLOSED_FORM = ("relu", "abs", "relu_centered", "erf", "linear", "he2", "he3")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="session", autouse=True)
def _warm_public_kernel_forms():
    """Compile what ``fastfeat warmup`` leaves to first use (the optional warm-up tasks: online SGD's
    large-batch build and ``Online.grad``; the gradient flow and the order-parameter ODEs; the population
    kernels' parallel build; the public ``ff.kernels`` entry points' other argument forms, a
    scalar step size, (n,) step sizes, the one-step kernels) in a background process while the first
    tests run, so that the tests of those forms find them in the disk cache instead of compiling them one after the other on one core. The results
    do not depend on it: a test that gets there first compiles what it needs itself, and a run that ends
    first stops it.
    ``FASTFEAT_TEST_BACKGROUND_WARMUP=0`` turns it off."""
    if os.environ.get("FASTFEAT_TEST_BACKGROUND_WARMUP", "1") == "0":
        yield
        return
    tasks = [arg for name in ("online_extra", "flow", "ode", "wide", "kernels") for arg in ("--task", name)]
    proc = subprocess.Popen([sys.executable, "-m", "fastfeat.cli", "warmup", *tasks, "--processes", "1", "--quiet"],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
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
    assert proc.returncode == 0, f"background warm-up of the optional tasks failed: {err[-3000:]}"


def _restore_default_handlers(test=None):
    """Put Python's default SIGINT handler (and SIGTERM's) back where another one is set; with ``test``,
    warn that it left that handler."""
    if threading.current_thread() is not threading.main_thread():
        return
    for name, default in (("SIGINT", signal.default_int_handler), ("SIGTERM", signal.SIG_DFL)):
        sig = getattr(signal, name, None)
        now = None if sig is None else signal.getsignal(sig)
        if sig is not None and now is not default:
            signal.signal(sig, default)
            if test is not None:
                warnings.warn(f"{test} left the {name} handler {now!r}; restored the default")


@pytest.fixture(autouse=True)
def _default_signal_handlers(request):
    """Every test starts with Python's default SIGINT and SIGTERM handlers: ``ff.train`` defers only
    signals whose handler is the default one (a program's own handler stays in charge), so the interrupt
    tests need it. A process started as a background job of a non-interactive shell inherits SIGINT
    ignored (Python then keeps SIG_IGN), which made those tests fail; a handler that a test leaves
    behind is put back too, with a warning that names the test."""
    _restore_default_handlers()
    yield
    _restore_default_handlers(request.node.nodeid)


HERE = os.path.dirname(os.path.abspath(__file__))
#: the CUDA-simulator worker of test_cuda_sim.py, started with the session (None: not started)
CUDA_SIM = {"proc": None, "out": None, "log": None}


def pytest_collection_modifyitems(session, config, items):
    """test_cuda_sim.py's tests last: its simulator worker (one core, about a minute of pure Python) then
    runs beside the rest of the suite, started with the session, instead of being waited for."""
    items.sort(key=lambda item: os.path.basename(str(item.fspath)) == "test_cuda_sim.py")


@pytest.fixture(scope="session", autouse=True)
def _cuda_sim_worker(request):
    """Start test_cuda_sim.py's simulator worker now, when its tests are selected (they read its results)."""
    if not any(os.path.basename(str(item.fspath)) == "test_cuda_sim.py" for item in request.session.items):
        yield
        return
    folder = tempfile.mkdtemp(prefix="fastfeat-cudasim-")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", FASTFEAT_CUDA_TILE="2", FASTFEAT_CUDA_RB="2",
               FASTFEAT_CUDA_THREADS="3")
    env.pop("NUMBA_DISABLE_JIT", None)
    log = open(os.path.join(folder, "worker.log"), "w+")
    out = os.path.join(folder, "results.npz")
    CUDA_SIM.update(proc=subprocess.Popen([sys.executable, os.path.join(HERE, "gpu", "cuda_sim_worker.py"), out],
                                          cwd=os.path.join(HERE, "gpu"),
                                          env=env, stdout=log, stderr=subprocess.STDOUT), out=out, log=log)
    yield
    proc = CUDA_SIM["proc"]
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    log.close()
