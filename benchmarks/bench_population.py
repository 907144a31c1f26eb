"""asv: one exact population GD step (relu, weight decay; m* = 16, d = 128)."""
from . import _common as C


class PopulationStep:
    """Time of one step, over width and dtype (compiled in setup)."""

    params = ([1024, 4096], ["float32", "float64"])
    param_names = ["m", "dtype"]
    timeout = 900

    def setup(self, m, dtype):
        self.w = C.population(m=m, dtype=dtype)
        self.w.run(1)  # compile

    def time_step(self, m, dtype):
        self.w.run(1)


class PopulationRoof:
    """Derived figures at the issue-2 size: effective GFLOP/s, the ratio to the two m x m x d GEMMs the
    step contains (measured round-robin in the same process), memory."""

    params = ([4096], ["float32"])
    param_names = ["m", "dtype"]
    timeout = 900

    def setup(self, m, dtype):
        self.w = C.population(m=m, dtype=dtype)
        self.w.run(1)  # compile
        self.w.gemm()

    def track_gflops(self, m, dtype):
        return self.w.flops_per_step / C.best_time(self.w.run, repeat=5) / 1e9

    track_gflops.unit = "GFLOP/s"

    def track_gemm_ratio(self, m, dtype):
        t = C.interleaved_best({"step": (self.w.run, 1, None), "gemm": (self.w.gemm, 1, None)}, repeat=5)
        return t["step"] / t["gemm"]

    track_gemm_ratio.unit = "x GEMM time"

    def track_step_peak_increase(self, m, dtype):
        return C.peak_rss_increase_mib(self.w.run)

    track_step_peak_increase.unit = "MiB"

    def peakmem_step(self, m, dtype):
        self.w.run(1)


class PopulationPaperRegime:
    """The sizes of the paper's experiments (d = 20, m* = 3, weight decay), where the step is the m^2
    elementwise pair terms more than its products: time of a step, and nanoseconds per pair of neurons
    (m (m + m*)) on one thread, over width, activation and dtype."""

    params = ([256, 1024], ["relu", "relu_centered", "erf"], ["float64", "float32"])
    param_names = ["m", "activation", "dtype"]
    timeout = 900

    def setup(self, m, activation, dtype):
        self.w = C.population(m=m, m_star=3, d=20, dtype=dtype, activation=activation)
        self.w.run(1)  # compile
        self.pairs = m * (m + 3)

    def time_step(self, m, activation, dtype):
        self.w.run(1)

    def track_ns_per_pair_one_thread(self, m, activation, dtype):
        k = 20
        return C.best_time(lambda: self.w.run(k, n_threads=1), repeat=5) / k / self.pairs * 1e9

    track_ns_per_pair_one_thread.unit = "ns"
