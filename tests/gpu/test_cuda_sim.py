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
from fastfeat import gpu as ffgpu
from fastfeat.kernels import cuda as fc

import cuda_sim_cases

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """(cpu, gpu): {case: {name: array}}. The simulator worker was started with the session (conftest.py)
    and ran beside the other tests, which pytest runs before these; this process computes the CPU side
    (mostly compilation) meanwhile. Run alone, the worker starts here."""
    from conftest import CUDA_SIM
    if CUDA_SIM["proc"] is not None:  # started with the session (conftest), running beside the other tests
        proc, out, log, own = CUDA_SIM["proc"], CUDA_SIM["out"], CUDA_SIM["log"], False
    else:
        tmp = tmp_path_factory.mktemp("cudasim")
        out = str(tmp / "results.npz")
        env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", FASTFEAT_CUDA_TILE="2", FASTFEAT_CUDA_RB="2",
                   FASTFEAT_CUDA_THREADS="3")
        env.pop("NUMBA_DISABLE_JIT", None)
        log = open(tmp / "worker.log", "w+")
        proc = subprocess.Popen([sys.executable, os.path.join(HERE, "cuda_sim_worker.py"), out], cwd=HERE,
                                env=env, stdout=log, stderr=subprocess.STDOUT)
        own = True
    try:
        cpu = {}
        for case, fn in cuda_sim_cases.CASES.items():
            try:
                cpu[case] = fn("cpu")
            except Exception as exc:  # noqa: BLE001 - reported by that case's test
                cpu[case] = exc
        proc.wait(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    log.seek(0)
    output = log.read()
    if own:
        log.close()
    assert proc.returncode == 0, f"simulator worker failed:\n{output}"
    gpu = {}
    with np.load(out) as f:
        for key in f.files:
            case, name = key.split("::", 1)
            gpu.setdefault(case, {})[name] = f[key]
    return cpu, gpu


def _tol(result):
    """float64: rounding-level agreement; float32 (any float32 array in the case): float32 rounding of
    short sums, with float64 scalars (losses) computed from float32 data."""
    f32 = any(np.asarray(v).dtype == np.float32 for v in result.values())
    return dict(rtol=2e-4, atol=2e-5) if f32 else dict(rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("case", list(cuda_sim_cases.CASES))
def test_cuda_matches_cpu(case, results):
    cpu, gpu = results[0][case], results[1].get(case)
    assert gpu is not None, f"the simulator worker produced nothing for {case}"
    if "__error__" in gpu:
        pytest.fail(f"{case} failed in the simulator:\n{gpu['__error__']}")
    if isinstance(cpu, Exception):
        raise cpu
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
        ffgpu.to_device(net)


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


def test_kernels_compile_for_a_real_gpu():
    """Every kernel compiles to PTX (sm_80) in both dtypes, no GPU needed: the simulator runs the kernels
    as Python and so cannot catch what the CUDA target would not type (float64 creeping into float32
    kernels, unsupported calls). Needs NVVM (e.g. the nvidia-cuda-nvcc-cu12 and nvidia-cuda-nvrtc-cu12
    wheels); skipped without it, and under the simulator."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        pytest.skip("the simulator compiles nothing")
    try:
        import numba_cuda  # noqa: F401
        from numba import cuda, float64

        def probe(x):
            x[0] = 1.0

        cuda.compile_ptx(probe, (float64[::1],), cc=(8, 0))
    except Exception as exc:  # noqa: BLE001 - no numba-cuda, no NVVM, no NVRTC: nothing to compile with
        pytest.skip(f"cannot compile PTX here: {type(exc).__name__}: {str(exc)[:120]}")
    import re

    from fastfeat.kernels.cuda._build import compile_ptx_all, signatures
    for dtype in (np.float32, np.float64):
        ptx = compile_ptx_all(cuda, dtype, 16)
        assert set(ptx) == set(signatures(dtype))
        for name in ("pop_gram", "pop_bv", "emp_forward", "emp_gw"):  # register blocks stay in registers
            assert ".local" not in ptx[name], f"{name} ({dtype.__name__}) spills its accumulators to local memory"
        if dtype == np.float32:  # the products and the elementwise passes stay in float32
            for name in ("pop_gram", "pop_pairs", "pop_bv", "pop_rows", "emp_forward", "emp_cols", "emp_gw", "sgd"):
                assert not re.search(r"\.f64\b", ptx[name]), f"float64 arithmetic in float32 kernel {name}"
