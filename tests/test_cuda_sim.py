"""CUDA kernels against the CPU kernels, on any machine: the GPU side runs in numba's CUDA simulator.

``NUMBA_ENABLE_CUDASIM`` must be set before numba is imported, and this pytest process runs the rest of
the suite with the real CPU JIT, so the CUDA side runs in one subprocess (``cuda_sim_worker.py``) with
lowered launch settings; the CPU side runs here. See ``cuda_sim_cases.py`` for the cases and sizes.
"""
import os
import subprocess
import sys
import types

import numpy as np
import pytest

import fastfeat as ff
from fastfeat.kernels import cuda as fc

import cuda_sim_cases

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def sim_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("cudasim") / "results.npz"
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", FASTFEAT_CUDA_TILE="4", FASTFEAT_CUDA_THREADS="4")
    env.pop("NUMBA_DISABLE_JIT", None)
    proc = subprocess.run([sys.executable, os.path.join(HERE, "cuda_sim_worker.py"), str(out)], cwd=HERE,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"simulator worker failed:\n{proc.stdout}\n{proc.stderr}"
    with np.load(out) as f:
        res = {}
        for key in f.files:
            case, name = key.split("::", 1)
            res.setdefault(case, {})[name] = f[key]
    return res


def _tol(result):
    """float64: rounding-level agreement; float32 (any float32 array in the case): float32 rounding of
    short sums, with float64 scalars (losses) computed from float32 data."""
    f32 = any(np.asarray(v).dtype == np.float32 for v in result.values())
    return dict(rtol=2e-4, atol=2e-5) if f32 else dict(rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("case", list(cuda_sim_cases.CASES))
def test_cuda_matches_cpu(case, sim_results):
    assert case in sim_results, f"the simulator worker produced nothing for {case}"
    gpu = sim_results[case]
    if "__error__" in gpu:
        pytest.fail(f"{case} failed in the simulator:\n{gpu['__error__']}")
    cpu = cuda_sim_cases.CASES[case]("cpu")
    expect = cuda_sim_cases.EXPECT.get(case, {})
    shared = set(cpu) & set(gpu)
    assert shared, f"{case}: no result to compare"
    tol = _tol(cpu)
    for name in sorted(shared):
        c, g = np.asarray(cpu[name]), np.asarray(gpu[name])
        assert c.shape == g.shape, f"{case}.{name}: shape {g.shape} on the GPU, {c.shape} on the CPU"
        if c.dtype.kind == "f":
            assert g.dtype == c.dtype, f"{case}.{name}: dtype {g.dtype} on the GPU, {c.dtype} on the CPU"
            np.testing.assert_allclose(g, c, err_msg=f"{case}.{name}", **tol)
        else:
            np.testing.assert_array_equal(g, c, err_msg=f"{case}.{name}")
    for name, value in expect.items():
        assert int(gpu[name]) == value, f"{case}.{name} = {gpu[name]} on the GPU, expected {value}"


# --------------------------------------------------------------------------- device="cuda" unavailable
def _tiny():
    t = ff.Teacher.random(3, 1)
    return ff.TwoLayer.init(3, 2), ff.Population(t)


def test_missing_numba_cuda_names_the_extra(monkeypatch):
    def no_module():
        raise ImportError("No module named 'numba_cuda'")

    monkeypatch.setattr(fc, "_CUDA", None)
    monkeypatch.setattr(fc, "_import_numba_cuda", no_module)
    net, obj = _tiny()
    W0 = net.W.copy()
    with pytest.raises(fc.CudaUnavailableError, match=r"pip install fastfeat\[cuda\]") as info:
        ff.train(net, obj, steps=2, lr=0.1, device="cuda")
    assert "numba-cuda" in str(info.value)
    np.testing.assert_array_equal(net.W, W0)
    assert not fc.available()
    with pytest.raises(fc.CudaUnavailableError, match="numba-cuda"):
        fc.to_device(net)


def test_no_gpu_names_the_extra(monkeypatch):
    fake = types.SimpleNamespace(is_available=lambda: False)
    monkeypatch.setattr(fc, "_CUDA", None)
    monkeypatch.setattr(fc, "_import_numba_cuda", lambda: fake)
    net, obj = _tiny()
    with pytest.raises(fc.CudaUnavailableError, match=r"pip install fastfeat\[cuda\]") as info:
        ff.train(net, obj, steps=2, lr=0.1, device="cuda")
    assert "no CUDA driver or NVIDIA GPU was found" in str(info.value)
    assert isinstance(fc.CudaUnavailableError("x"), RuntimeError)


def test_broken_driver_is_one_clear_error(monkeypatch):
    def boom():
        raise OSError("libcuda.so: cannot open shared object file")

    monkeypatch.setattr(fc, "_CUDA", None)
    monkeypatch.setattr(fc, "_import_numba_cuda", lambda: types.SimpleNamespace(is_available=boom))
    net, obj = _tiny()
    with pytest.raises(fc.CudaUnavailableError, match=r"pip install fastfeat\[cuda\]") as info:
        ff.train(net, obj, steps=1, lr=0.1, device="cuda")
    assert "OSError: libcuda.so" in str(info.value)


def test_importing_fastfeat_does_not_import_numba_cuda():
    code = ("import sys, fastfeat, fastfeat.kernels.cuda; "
            "assert 'numba_cuda' not in sys.modules and 'numba.cuda' not in sys.modules, 'imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"})
    assert proc.returncode == 0, proc.stderr
