"""asv: one full-batch empirical GD step (relu, weight decay; d = 256, m = 2048)."""
from . import _common as C


class EmpiricalStep:
    """Time of one step, over the number of samples and dtype (compiled in setup)."""

    params = ([2048, 8192], ["float32", "float64"])
    param_names = ["n", "dtype"]
    timeout = 900

    def setup(self, n, dtype):
        if not C.has_empirical():
            raise NotImplementedError("ff.Empirical is not in this version")
        self.w = C.empirical(n=n, dtype=dtype)
        self.w.run(1)  # compile

    def time_step(self, n, dtype):
        self.w.run(1)


class EmpiricalRoof:
    """Derived figures at the issue-3 size: effective GFLOP/s, the ratio to the two n x m x d GEMMs the
    step contains (measured round-robin in the same process), and memory: the tiled kernel must not
    materialize the n x m pre-activations (64 MiB here in float32)."""

    params = ([8192], ["float32"])
    param_names = ["n", "dtype"]
    timeout = 900

    def setup(self, n, dtype):
        if not C.has_empirical():
            raise NotImplementedError("ff.Empirical is not in this version")
        self.w = C.empirical(n=n, dtype=dtype)
        self.w.run(1)  # compile
        self.w.gemm()

    def track_gflops(self, n, dtype):
        return self.w.flops_per_step / C.best_time(self.w.run, repeat=5) / 1e9

    track_gflops.unit = "GFLOP/s"

    def track_gemm_ratio(self, n, dtype):
        t = C.interleaved_best({"step": (self.w.run, 1, None), "gemm": (self.w.gemm, 1, None)}, repeat=5)
        return t["step"] / t["gemm"]

    track_gemm_ratio.unit = "x GEMM time"

    def track_step_peak_increase(self, n, dtype):
        return C.peak_rss_increase_mib(self.w.run)

    track_step_peak_increase.unit = "MiB"

    def peakmem_step(self, n, dtype):
        self.w.run(1)


class MaskedProduct:
    """The relu kernel's gradient product of one 1024-row tile (m = 2048, d = 256): the bit-matrix sum of
    table rows against the GEMM it replaces, on the same 0/1 matrix (compiled in setup)."""

    params = (["float32", "float64"],)
    param_names = ["dtype"]
    timeout = 600

    def setup(self, dtype):
        self.bits, self.gemm, self.err = C.masked_product(1024, 2048, 256, dtype)

    def time_bits(self, dtype):
        self.bits()

    def time_gemm(self, dtype):
        self.gemm()

    def track_gemm_over_bits(self, dtype):
        t = C.interleaved_best({"bits": (self.bits, 1, None), "gemm": (self.gemm, 1, None)}, repeat=7)
        return t["gemm"] / t["bits"]

    track_gemm_over_bits.unit = "x faster than the GEMM"
