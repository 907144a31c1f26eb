"""asv: online SGD with fresh Gaussian samples drawn inside the kernel (relu, d = 128)."""
from . import _common as C

STEPS = 1000


class OnlineSteps:
    """Time of 1000 SGD steps (one compiled call), over width and batch size (float64: ``bench_compile``
    and the test suite cover its build; each asv process pays its own compilation)."""

    params = ([256, 1024], [1, 32], ["float32"])
    param_names = ["m", "batch", "dtype"]
    timeout = 900

    def setup(self, m, batch, dtype):
        if not C.has_online():
            raise NotImplementedError("ff.Online is not in this version")
        self.w = C.online(m=m, batch=batch, dtype=dtype)
        self.w.run(STEPS)  # compile

    def time_1000_steps(self, m, batch, dtype):
        self.w.run(STEPS)


class OnlineRoof:
    """At the issue-3 size (batch 1, m = 1024, float32): effective GFLOP/s and the ratio to the BLAS
    calls a step contains (gemv + ger on preallocated arrays, called from Python per step)."""

    params = ([1024], [1], ["float32"])
    param_names = ["m", "batch", "dtype"]
    timeout = 900

    def setup(self, m, batch, dtype):
        if not C.has_online():
            raise NotImplementedError("ff.Online is not in this version")
        self.w = C.online(m=m, batch=batch, dtype=dtype)
        self.w.run(STEPS)  # compile

    def _steps(self):
        self.w.run(STEPS)

    def track_gflops(self, m, batch, dtype):
        return self.w.flops_per_step * STEPS / C.best_time(self._steps, repeat=5) / 1e9

    track_gflops.unit = "GFLOP/s"

    def track_gemm_ratio(self, m, batch, dtype):
        t = C.interleaved_best({"steps": (self._steps, 1, None), "blas": (lambda: self.w.gemm(STEPS), 1, None)},
                               repeat=5)
        return t["steps"] / t["blas"]

    track_gemm_ratio.unit = "x BLAS time"
