"""asv: the feature-learning diagnostics ``ff.metrics.alignment``, without the
population loss (that is ``bench_population``): one BLAS product ``W W*^T`` and one parallel pass."""
import fastfeat as ff

from . import _common as C

D, M_STAR = 128, 16


class Alignment:
    params = ([4096, 65536], ["float32", "float64"])
    param_names = ["m", "dtype"]
    timeout = 900

    def setup(self, m, dtype):
        if not C.has_alignment():
            raise NotImplementedError("ff.metrics.alignment is not in this version")
        self.teacher = ff.Teacher.random(D, M_STAR, seed=0, dtype=dtype)
        self.net = ff.TwoLayer.init(D, m, seed=1, dtype=dtype)
        ff.metrics.alignment(self.net, self.teacher, loss=False)  # compile

    def time_alignment(self, m, dtype):
        ff.metrics.alignment(self.net, self.teacher, loss=False)
