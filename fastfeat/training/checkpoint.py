"""``ff.Checkpoint``: a training state on disk, so an interrupted ``ff.train`` can be resumed exactly.

A checkpoint holds the weights (in their own dtype, bit for bit), the global step they belong to and
the History logged up to that step. ``ff.train(..., checkpoint=path, checkpoint_every=k)`` writes one
every ``k`` steps from the run's ``start_step`` (at logging boundaries) and at the end;
``resume=True`` restarts from the file when it exists. Because every objective keys its random numbers
on the global step (minibatch order, online samples) and the schedules are functions of it, the
resumed run performs exactly the steps the uninterrupted one would: same weights, bit for bit, on the
same machine and thread count.
"""
import json
import os

import numpy as np

from ..networks import TwoLayer, check_net
from .history import History

_FORMAT = 1


class Checkpoint:
    """Weights ``W``, ``a``, their ``activation``, the global ``step`` and the ``history`` so far."""

    def __init__(self, W, a, activation, step, history=None, info=None):
        self.W = np.array(W, order="C")
        self.a = np.array(a, order="C")
        self.activation = activation
        self.step = int(step)
        self.history = history if history is not None else History()
        self.info = dict(info or {})

    @classmethod
    def of(cls, net, step, history=None, info=None):
        """The state of ``net`` at global ``step`` (copies the weights)."""
        return cls(np.asarray(net.W), np.asarray(net.a), net.activation, step, history, info)

    @property
    def net(self):
        """A new ``ff.TwoLayer`` with the saved weights."""
        return TwoLayer(self.W.copy(), self.a.copy(), self.activation)

    def save(self, path):
        """Write to ``path`` (a numpy archive) atomically: a crash while writing leaves the old file."""
        path = os.fspath(path)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            np.savez(f, W=self.W, a=self.a, activation=self.activation, step=self.step, format=_FORMAT,
                     history=json.dumps(self.history.to_dict()), info=json.dumps(self.info))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path):
        with np.load(os.fspath(path)) as z:
            if int(z["format"]) != _FORMAT:
                raise ValueError(f"checkpoint {path} has format {int(z['format'])}; this fastfeat reads {_FORMAT}")
            return cls(z["W"], z["a"], str(z["activation"]), int(z["step"]),
                       History.from_dict(json.loads(str(z["history"]))), json.loads(str(z["info"])))

    def restore(self, net, name="net"):
        """Copy the saved weights into ``net`` in place (shape, dtype and activation must match)."""
        check_net(net, name)
        if net.W.shape != self.W.shape or net.dtype != self.W.dtype:
            raise ValueError(f"checkpoint holds W of shape {self.W.shape} and dtype {self.W.dtype}, but {name} has "
                             f"{net.W.shape} and {net.dtype}")
        if net.activation != self.activation:
            raise ValueError(f"checkpoint activation {self.activation!r} differs from {name}'s {net.activation!r}")
        net.W[...] = self.W
        net.a[...] = self.a
        if getattr(net, "on_device", False):  # a GPU net (ff.gpu.to_device): W, a are host copies
            net.push()
        return net

    def __repr__(self):
        return f"Checkpoint(step={self.step}, m={self.W.shape[0]}, d={self.W.shape[1]}, activation={self.activation!r})"
