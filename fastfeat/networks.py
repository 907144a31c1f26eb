"""The student (``TwoLayer``) and the target (``Teacher``): f(x) = sum_j a_j sigma(w_j . x)."""
import numpy as np

from ._validation import as_dtype, check_array, check_int
from .math.activations import EVEN, HAS_KERNEL, code_of


class _Network:
    _mutable = False

    def __init__(self, W, a, activation="relu"):
        self.code = code_of(activation)
        self.activation = activation
        kw = dict(writable=True, contiguous=True) if self._mutable else {}
        W = check_array(W, "W", 2, **kw)
        a = check_array(a, "a", 1, **kw)
        if a.dtype != W.dtype:
            raise TypeError(f"a has dtype {a.dtype} but W has dtype {W.dtype}; they must match")
        if a.shape[0] != W.shape[0]:
            raise ValueError(f"a has {a.shape[0]} entries but W has {W.shape[0]} rows; they must match")
        if not self._mutable:  # the teacher is never written: keep a private contiguous copy (left
            W = np.array(W, order="C")  # writable, so kernels see the same array type as the student's)
            a = np.array(a, order="C")
        self.W = W
        self.a = a

    @property
    def m(self):
        return self.W.shape[0]

    @property
    def d(self):
        return self.W.shape[1]

    @property
    def dtype(self):
        return self.W.dtype

    @property
    def even(self):
        """True when w and -w are the same neuron (abs, relu_centered, he2)."""
        return self.activation in EVEN

    @property
    def has_population_kernel(self):
        return self.activation in HAS_KERNEL

    def __call__(self, X):
        """f(X) for inputs X of shape (n, d) (numpy, float64 accumulation): the network's output."""
        X = check_array(np.asarray(X, dtype=self.dtype) if not isinstance(X, np.ndarray) else X, "X", 2)
        if X.shape[1] != self.d:
            raise ValueError(f"X has {X.shape[1]} columns but the network has input dimension d={self.d}")
        from .math.reference import features
        return features(self.activation, np.asarray(X, np.float64), np.asarray(self.W, np.float64)) @ np.asarray(
            self.a, np.float64)

    def astype(self, dtype):
        dt = as_dtype(dtype)
        return type(self)(np.ascontiguousarray(self.W, dt), np.ascontiguousarray(self.a, dt), self.activation)

    def copy(self):
        return type(self)(self.W.copy(), self.a.copy(), self.activation)

    def __repr__(self):
        return f"{type(self).__name__}(m={self.m}, d={self.d}, activation={self.activation!r}, dtype={self.dtype.name})"


#: the named output scalings of ``TwoLayer(scale=...)``: their exponent gamma in f = m^-gamma sum_j ...
SCALES = {"standard": 0.0, "ntk": 0.5, "mean_field": 1.0}


def check_scale(scale, name="scale"):
    """``(scale, gamma)`` of an output scaling: None or ``"standard"`` (gamma = 0), ``"ntk"`` (1/2),
    ``"mean_field"`` (1) or a number gamma >= 0 (kept as a float; 0 is ``"standard"``)."""
    if scale is None:
        return "standard", 0.0
    if isinstance(scale, str):
        if scale not in SCALES:
            raise ValueError(f"{name}={scale!r} is not a known output scaling; choose one of {sorted(SCALES)} "
                             "or a number gamma >= 0 (f = m^-gamma sum_j a_j sigma(w_j . x))")
        return scale, SCALES[scale]
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)) \
            or not np.isfinite(scale) or scale < 0:
        raise ValueError(f"{name} must be 'standard', 'ntk', 'mean_field' or a finite number gamma >= 0, got {scale!r}")
    gamma = float(scale)
    return ("standard" if gamma == 0 else gamma), gamma


class TwoLayer(_Network):
    """The student network ``f(x) = m^-gamma sum_j a_j sigma(w_j . x)``. ``W`` (m, d) and ``a`` (m,) are
    float32 or float64, C-contiguous and writable: training updates them in place (no copies are made).

    ``scale``: the output scaling, ``"standard"`` (default, gamma = 0), ``"ntk"`` (gamma = 1/2),
    ``"mean_field"`` (gamma = 1) or a number gamma >= 0. ``W`` and ``a`` are the stored parameters:
    every objective's ``loss`` is that of f, its ``grad`` the gradient in ``W`` and ``a`` (the ``a``
    part carries the factor m^-gamma), and regularizers act on ``W`` and ``a`` as stored.
    """

    _mutable = True
    scale, gamma = "standard", 0.0  # (class defaults: also those of the GPU's device nets)

    def __init__(self, W, a, activation="relu", scale=None):
        super().__init__(W, a, activation)
        self.scale, self.gamma = check_scale(scale)

    @property
    def output_factor(self):
        """m^-gamma, the factor in front of the sum (1.0 for the standard scaling)."""
        return 1.0 if self.gamma == 0 else float(self.m) ** -self.gamma

    def as_standard(self):
        """The same function as a standard network: ``self`` when gamma = 0, else a ``TwoLayer`` that shares
        ``W`` and holds a new array ``m^-gamma a`` (in the net's float type)."""
        if self.gamma == 0:
            return self
        return TwoLayer(self.W, self.a * self.dtype.type(self.output_factor), self.activation)

    def __call__(self, X):
        out = super().__call__(X)
        return out if self.gamma == 0 else out * self.output_factor

    def astype(self, dtype):
        dt = as_dtype(dtype)
        return TwoLayer(np.ascontiguousarray(self.W, dt), np.ascontiguousarray(self.a, dt), self.activation,
                        self.scale)

    def copy(self):
        return TwoLayer(self.W.copy(), self.a.copy(), self.activation, self.scale)

    def __repr__(self):
        r = super().__repr__()
        return r if self.gamma == 0 else r[:-1] + f", scale={self.scale!r})"

    @classmethod
    def init(cls, d, m, *, activation="relu", scale=1.0, symmetric=False, seed=0, dtype="float64",
             output_scale=None):
        """Gaussian initialization: rows ``w_j ~ N(0, scale^2/d I)``, ``a_j ~ N(0, scale^2/m)``.

        ``symmetric=True`` pairs neurons ``(w, a)``, ``(w, -a)`` so that f == 0 (m must be even).
        ``output_scale``: the net's output scaling (the constructor's ``scale``: ``"ntk"``,
        ``"mean_field"`` or gamma). With gamma > 0 the second layer is drawn ``a_j ~ N(0, scale^2)``, of
        order one, as the NTK and mean-field literature draw it (f is then of order m^(1/2 - gamma) at
        initialization); the same seed gives the same ``W`` and the same signs and shape of ``a``.
        """
        out_scale, gamma = check_scale(output_scale, "output_scale")
        d = check_int(d, "d")
        m = check_int(m, "m")
        code_of(activation)
        dt = as_dtype(dtype)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not np.isfinite(scale) or scale < 0:
            raise ValueError(f"scale must be a finite number >= 0, got {scale!r}")
        if symmetric and m % 2:
            raise ValueError(f"m must be even when symmetric=True, got m={m}")
        rng = np.random.default_rng(seed)
        half = m // 2 if symmetric else m
        W = rng.standard_normal((half, d)) * (scale / np.sqrt(d))
        a = rng.standard_normal(half) * (scale / np.sqrt(m) if gamma == 0 else scale)
        if symmetric:
            W = np.concatenate([W, W])
            a = np.concatenate([a, -a])
        return cls(np.ascontiguousarray(W, dt), np.ascontiguousarray(a, dt), activation, out_scale)


class Teacher(_Network):
    """The target network; its weights are copied on construction (fastfeat never writes them)."""

    @classmethod
    def random(cls, d, m_star, *, activation="relu", signs="mixed", seed=0, dtype="float64"):
        """Orthonormal unit rows (``m_star <= d``); ``a*_i = +1`` (``signs="positive"``) or
        ``+1, -1, +1, ...`` (``signs="mixed"``)."""
        d = check_int(d, "d")
        m_star = check_int(m_star, "m_star")
        if m_star > d:
            raise ValueError(f"m_star must be <= d for orthonormal teacher rows, got m_star={m_star}, d={d}")
        if signs not in ("mixed", "positive"):
            raise ValueError(f"signs must be 'mixed' or 'positive', got {signs!r}")
        code_of(activation)
        dt = as_dtype(dtype)
        rng = np.random.default_rng(seed)
        q, r = np.linalg.qr(rng.standard_normal((d, m_star)))
        W = (q * np.sign(np.diag(r))).T
        a = np.ones(m_star) if signs == "positive" else np.where(np.arange(m_star) % 2 == 0, 1.0, -1.0)
        return cls(np.ascontiguousarray(W, dt), np.ascontiguousarray(a, dt), activation)


def check_net(net, name="net"):
    if not isinstance(net, TwoLayer):
        raise TypeError(f"{name} must be an ff.TwoLayer, got {type(net).__name__}")
    if getattr(net, "on_device", False):  # weights on the GPU (ff.gpu.to_device)
        return net._validate(name)
    # the arrays may have been replaced or modified since construction
    check_array(net.W, f"{name}.W", 2, writable=True, contiguous=True)
    check_array(net.a, f"{name}.a", 1, dtype=net.W.dtype, writable=True, contiguous=True)
    if net.a.shape[0] != net.W.shape[0]:
        raise ValueError(f"{name}.a has {net.a.shape[0]} entries but {name}.W has {net.W.shape[0]} rows")
    return net


def check_teacher(teacher, name="teacher"):
    if not isinstance(teacher, Teacher):
        raise TypeError(f"{name} must be an ff.Teacher, got {type(teacher).__name__}")
    return teacher


def check_pair(net, teacher, *, same_activation=True):
    """The student and the teacher must agree on d, dtype (and activation, for closed forms)."""
    if net.d != teacher.d:
        raise ValueError(f"net has input dimension d={net.d} but the teacher has d={teacher.d}")
    if net.dtype != teacher.dtype:
        raise TypeError(
            f"net has dtype {net.dtype} but the teacher has dtype {teacher.dtype}; build both with the same "
            f"dtype (e.g. teacher.astype('{net.dtype.name}'))")
    if same_activation and net.activation != teacher.activation:
        raise ValueError(f"net activation {net.activation!r} differs from the teacher's {teacher.activation!r}")
