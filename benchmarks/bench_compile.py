"""asv: seconds the first ``ff.train`` step takes in a fresh interpreter (numba compilation), per
objective, at tiny sizes so that the time is all compilation."""
from . import _common as C


class FirstCall:
    params = (["population", "empirical", "online"], ["float32"])
    param_names = ["objective", "dtype"]
    timeout = 1200
    # one sample: each is a whole interpreter start plus compilation
    repeat = 1
    number = 1

    def setup(self, objective, dtype):
        ok = {"population": True, "empirical": C.has_empirical(), "online": C.has_online()}[objective]
        if not ok:
            raise NotImplementedError(f"{objective} is not in this version")

    def track_compile_seconds(self, objective, dtype):
        return C.compile_seconds(objective, dtype)

    track_compile_seconds.unit = "s"
