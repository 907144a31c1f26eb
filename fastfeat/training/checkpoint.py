"""``ff.Checkpoint``: a training state on disk, so an interrupted ``ff.train`` can be resumed exactly.

A checkpoint holds the weights (in their own dtype, bit for bit), the global step they belong to, the
History logged up to that step and a description of the run that wrote it (its objective and a digest
of the objective's teacher or data, lr, the regularizer, the metrics: ``info["run"]``).
``ff.train(..., checkpoint=path, checkpoint_every=k)`` writes one every ``k`` steps from the run's
``start_step`` and at the end, only from a state known to be finite; ``resume=True`` restarts from the
file when it exists, after checking it and comparing the runs. Because every objective keys its random
numbers on the global step (minibatch order, online samples) and the schedules are functions of it,
the resumed run performs exactly the steps the uninterrupted one would: same weights, bit for bit, on
the same machine and thread count.

Writing is atomic: the file is written under a temporary name unique to the writer (host, process,
random suffix) in the same folder, flushed to disk (``fsync``), renamed over ``path`` and the folder
entry is flushed too, so a crash or a kill at any moment leaves either the old checkpoint or the new
one, never a mix; temporary files left by writers that died on this host are removed by the next save.
Reading checks everything before anything is used: a file that cannot be read, is not a fastfeat
checkpoint, is truncated or altered, or holds non-finite weights raises ``ff.CheckpointError`` (a
ValueError) naming the file.
"""
import glob
import json
import os
import secrets
import socket
import zipfile

import numpy as np

from .._validation import FLOAT_DTYPES
from ..math.activations import NAMES
from ..networks import TwoLayer, check_net, check_scale
from .history import History

_FORMAT = 2
#: formats this version reads (1: no run description, so resuming cannot compare the runs)
_READS = (1, 2)
_KEYS = ("W", "a", "activation", "step", "format", "history", "info")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: unreadable, not a fastfeat checkpoint, truncated or altered,
    or holding non-finite weights. The message names the file."""


def _host():
    return socket.gethostname().replace(".", "_") or "host"


class Checkpoint:
    """Weights ``W``, ``a``, their ``activation`` and output ``scale``, the global ``step``, the
    ``history`` so far and ``info`` (``info["run"]``: the run that wrote it)."""

    def __init__(self, W, a, activation, step, history=None, info=None, scale="standard"):
        self.W = np.array(W, order="C")
        self.a = np.array(a, order="C")
        self.activation = activation
        self.scale = check_scale(scale)[0]
        self.step = int(step)
        self.history = history if history is not None else History()
        self.info = dict(info or {})

    @classmethod
    def of(cls, net, step, history=None, info=None):
        """The state of ``net`` at global ``step`` (copies the weights)."""
        return cls(np.asarray(net.W), np.asarray(net.a), net.activation, step, history, info, net.scale)

    @property
    def net(self):
        """A new ``ff.TwoLayer`` with the saved weights."""
        return TwoLayer(self.W.copy(), self.a.copy(), self.activation, self.scale)

    @property
    def finite(self):
        """Whether every saved weight is finite."""
        return bool(np.all(np.isfinite(self.W)) and np.all(np.isfinite(self.a)))

    def save(self, path):
        """Write to ``path`` (a numpy archive) atomically: a crash while writing leaves the old file."""
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        tmp = f"{path}.{_host()}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            with open(tmp, "wb") as f:
                np.savez(f, W=self.W, a=self.a, activation=self.activation, step=self.step, format=_FORMAT,
                         history=json.dumps(self.history.to_dict()), info=json.dumps(self.info),
                         scale=json.dumps(self.scale))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        _fsync_folder(folder)
        _remove_stale(path)

    @classmethod
    def load(cls, path):
        """Read and check a checkpoint; ``ff.CheckpointError`` (naming the file) when it cannot be used."""
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"checkpoint {path} does not exist")
        try:
            z = np.load(path, allow_pickle=False)
            if not hasattr(z, "files"):  # a plain .npy array
                raise CheckpointError(f"checkpoint {path} is not a fastfeat checkpoint (a single numpy array)")
            with z:
                missing = [k for k in _KEYS if k not in z.files]
                if missing:
                    raise CheckpointError(f"checkpoint {path} is not a fastfeat checkpoint (no {', '.join(missing)})")
                fmt = int(z["format"])
                if fmt not in _READS:
                    raise CheckpointError(f"checkpoint {path} has format {fmt}; this fastfeat reads {list(_READS)}")
                W, a, act, step = z["W"], z["a"], z["activation"], z["step"]
                history, info = str(z["history"]), str(z["info"])
                scale = json.loads(str(z["scale"])) if "scale" in z.files else "standard"  # (older files)
        except CheckpointError:
            raise
        except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile, UnicodeDecodeError,
                MemoryError) as exc:  # (an altered header can announce an array larger than any memory)
            raise CheckpointError(f"checkpoint {path} cannot be read (truncated, altered or not a fastfeat "
                                  f"checkpoint): {type(exc).__name__}: {exc}") from None
        problem = _check_arrays(W, a, act, step)
        if problem is None:
            try:
                scale = check_scale(scale)[0]
            except ValueError as exc:
                problem = f"has an unreadable output scale: {exc}"
        if problem:
            raise CheckpointError(f"checkpoint {path} {problem}")
        try:
            history = History.from_dict(json.loads(history))
            info = json.loads(info)
            if not isinstance(info, dict):
                raise ValueError("info is not a table")
            for k, v in history.metrics.items():
                if len(v) != len(history.step):
                    raise ValueError(f"history column {k!r} has {len(v)} rows for {len(history.step)} steps")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"checkpoint {path} has an unreadable history or info: {exc}") from None
        out = cls(W, a, str(act), int(step), history, info, scale)
        if not out.finite:
            raise CheckpointError(f"checkpoint {path} holds non-finite weights (NaN or inf)")
        return out

    def check_net(self, net, name="net"):
        """Raise ValueError unless ``net`` can take the saved weights (shape, dtype, activation and output
        scale match)."""
        check_net(net, name)
        if net.W.shape != self.W.shape or net.dtype != self.W.dtype:
            raise ValueError(f"checkpoint holds W of shape {self.W.shape} and dtype {self.W.dtype}, but {name} has "
                             f"{net.W.shape} and {net.dtype}")
        if net.activation != self.activation:
            raise ValueError(f"checkpoint activation {self.activation!r} differs from {name}'s {net.activation!r}")
        if net.scale != self.scale:
            raise ValueError(f"checkpoint output scale {self.scale!r} differs from {name}'s {net.scale!r}")

    def restore(self, net, name="net"):
        """Copy the saved weights into ``net`` in place (shape, dtype and activation must match; checked
        before anything is copied)."""
        self.check_net(net, name)
        if not self.finite:
            raise ValueError("checkpoint holds non-finite weights (NaN or inf); the net was left as it was")
        net.W[...] = self.W
        net.a[...] = self.a
        if getattr(net, "on_device", False):  # a GPU net (ff.gpu.to_device): W, a are host copies
            net.push()
        return net

    def __repr__(self):
        return f"Checkpoint(step={self.step}, m={self.W.shape[0]}, d={self.W.shape[1]}, activation={self.activation!r})"


def _check_arrays(W, a, act, step):
    """What is wrong with the loaded arrays (a phrase), or None."""
    if W.ndim != 2 or W.dtype not in FLOAT_DTYPES or 0 in W.shape:
        return f"holds W of shape {W.shape} and dtype {W.dtype}, not a non-empty float matrix"
    if a.shape != (W.shape[0],) or a.dtype != W.dtype:
        return f"holds a of shape {a.shape} and dtype {a.dtype} for W of shape {W.shape} and dtype {W.dtype}"
    if act.shape != () or act.dtype.kind != "U" or str(act) not in NAMES:
        return f"names an unknown activation {act!r}"
    if step.shape != () or step.dtype.kind not in "iu" or int(step) < 0:
        return f"holds step {step!r}, not an integer >= 0"
    return None


def _fsync_folder(folder):
    """Flush the folder entry of a rename to disk (POSIX; elsewhere the rename is all there is)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_stale(path):
    """Remove temporary files of ``path`` left by writers on this host whose process is gone (POSIX)."""
    if os.name != "posix":
        return
    prefix = f"{path}.{_host()}."
    for tmp in glob.glob(glob.escape(prefix) + "*.tmp"):
        try:
            pid = int(tmp[len(prefix):].split(".")[0])
        except ValueError:
            continue
        if pid == os.getpid() or _alive(pid):
            continue
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True
