"""Run the cases of ``cuda_sim_cases`` with ``device="cuda"`` and save the results (an .npz file).

Started by ``test_cuda_sim.py`` in a subprocess with ``NUMBA_ENABLE_CUDASIM=1`` and lowered launch
settings (the variables must be set before numba is imported, so never in the pytest process itself).
Usage: ``python tests/gpu/cuda_sim_worker.py OUT.npz [CASE ...]``.
"""
import os
import sys
import time
import traceback
import warnings

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    sys.exit("cuda_sim_worker.py must run with NUMBA_ENABLE_CUDASIM=1")
# the simulator runs the counter-based generator on numpy uint64 scalars: wrap-around is intended
warnings.filterwarnings("ignore", "overflow encountered", RuntimeWarning)

import numpy as np  # noqa: E402

import cuda_sim_cases  # noqa: E402


def main(out, names):
    from fastfeat.kernels import cuda as fc
    assert fc.available(), "the CUDA simulator should be available"
    results = {}
    for name in names or list(cuda_sim_cases.CASES):
        t0 = time.perf_counter()
        try:
            for k, v in cuda_sim_cases.CASES[name]("cuda").items():
                results[f"{name}::{k}"] = np.asarray(v)
        except Exception:  # noqa: BLE001 - reported to the test, which fails that case
            results[f"{name}::__error__"] = np.array(traceback.format_exc())
        print(f"{name}: {time.perf_counter() - t0:.2f}s", flush=True)
    np.savez(out, **results)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
