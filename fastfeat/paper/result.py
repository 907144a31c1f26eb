"""What ``three_stage`` returns."""
from dataclasses import dataclass, field

import numpy as np

from ..networks import TwoLayer
from ..training.history import History


@dataclass
class ThreeStageResult:
    """What ``three_stage`` returns.

    ``net``: the trained student; ``stage1``, ``stage2``, ``stage3``: one History per stage (also as
    ``histories``); ``alignment``: ``ff.metrics.alignment`` of the final net (with the per-neuron arrays);
    ``seconds``: wall time per stage; ``config``: every constant the run used; ``hessian``: the
    ``ff.HessianSpectrum`` at the end (``three_stage(hessian=True)``), else None.
    """

    net: TwoLayer
    stage1: History
    stage2: History
    stage3: History
    alignment: dict
    seconds: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    hessian: object = None

    @property
    def histories(self):
        return (self.stage1, self.stage2, self.stage3)

    def summary(self):
        """Plain-JSON summary: final metrics, the loss of f == 0, timings and the configuration."""
        al = self.alignment
        keep = ("best_cos", "captured_mass", "far_mass", "angular_spread", "captured_count", "balance_gap",
                "active_neurons", "loss")
        out = {k: np.asarray(al[k]).tolist() for k in keep}
        out["zero_loss"] = self.config["zero_loss"]
        out["relative_loss"] = float(al["loss"] / self.config["zero_loss"]) if self.config["zero_loss"] else None
        out["teacher_a"] = self.config["teacher_a"]
        out["seconds"] = dict(self.seconds)
        out["config"] = {k: v for k, v in self.config.items() if k not in ("zero_loss", "teacher_a")}
        if self.hessian is not None:
            h = self.hessian
            out["hessian"] = {"n_params": h.n_params, "computed": int(h.eigenvalues.size),
                              "smallest": h.eigenvalues[:10].tolist(), "largest": h.largest, "tol": h.tol,
                              "n_zero": h.n_zero, "n_negative": h.n_negative,
                              "weight_decay": self.config.get("hessian_lam")}
        return out
