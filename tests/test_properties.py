"""Property tests (hypothesis): random bad inputs and random faults thrown at ff.train and the command
line. Every call either succeeds or raises a documented error; the user's net never holds non-finite
weights; the last good checkpoint is never destroyed; an interrupted run resumes bit for bit."""
import math
import os
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import fastfeat as ff
from fastfeat import cli
from kinds import KINDS, objective

D, M = 4, 6
FAULTS = ("none", "nan-teacher", "inf-teacher", "nan-X", "nan-y", "truncate-checkpoint", "flip-checkpoint",
          "garbage-checkpoint", "nan-checkpoint", "interrupt", "other-lr-on-resume")
#: what ff.train may raise; anything else fails the property
DOCUMENTED = (ff.TrainingDiverged, ff.CheckpointError, ValueError, TypeError)


class Interrupt(Exception):
    """Stands for a crash or a Ctrl-C in the middle of a run (raised from the callback)."""


def _objective(kind, t):
    return objective(kind, t, n=20, batch=6 if kind == "empirical-minibatch" else 3, seed=2, online_seed=1)


def _good(path, t, kind):
    """Whether the checkpoint at ``path`` loads, is finite and training can continue from it (a step on
    the objective without the fault is taken)."""
    try:
        c = ff.Checkpoint.load(path)
    except ff.CheckpointError:
        return False
    try:
        ff.train(c.net, _objective(kind, t), steps=1, lr=1e-6, start_step=c.step, metrics=())
    except ff.TrainingDiverged:
        return False
    return c.finite


def _state(path):
    return open(path, "rb").read() if os.path.exists(path) else None


@pytest.mark.filterwarnings("ignore:the state at step")  # a final checkpoint not written: expected here
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(KINDS), dtype=st.sampled_from(["float32", "float64"]),
       activation=st.sampled_from(["relu", "abs", "relu_centered", "erf"]),
       log_lr=st.floats(-3, 40), fault=st.sampled_from(FAULTS), steps=st.integers(1, 40),
       log_every=st.integers(1, 12), resume=st.sampled_from([True, False, "force"]),
       interrupt_at=st.integers(0, 5))
def test_train_under_faults(kind, dtype, activation, log_lr, fault, steps, log_every, resume, interrupt_at):
    lr = 10.0 ** log_lr
    t = ff.Teacher.random(D, 2, activation=activation, seed=0, dtype=dtype)
    clean = ff.Teacher(t.W.copy(), t.a.copy(), activation)
    obj = _objective(kind, t)
    net = ff.TwoLayer.init(D, M, activation=activation, seed=1, dtype=dtype, scale=1.5)
    kw = dict(steps=steps, lr=lr, log_every=log_every, checkpoint_every=log_every)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ck.npz")
        # a first, sane run leaves a good checkpoint
        ff.train(net, obj, steps=4, lr=0.01, log_every=2, checkpoint=path)
        assert _good(path, clean, kind)
        before = _state(path)
        callback = None
        if fault == "nan-teacher":
            t.W[0, 0] = np.nan
        elif fault == "inf-teacher":
            t.a[0] = np.inf
        elif fault in ("nan-X", "nan-y") and kind.startswith("empirical"):
            getattr(obj, fault[-1])[3] = np.nan
        elif fault == "truncate-checkpoint":
            open(path, "wb").write(before[: len(before) // 3])
        elif fault == "flip-checkpoint":
            data = bytearray(before)
            data[len(data) // 2] ^= 0x5A
            open(path, "wb").write(bytes(data))
        elif fault == "garbage-checkpoint":
            open(path, "wb").write(os.urandom(300))
        elif fault == "nan-checkpoint":
            c = ff.Checkpoint.load(path)
            c.a[0] = np.nan
            c.save(path)
        elif fault == "interrupt":
            rows = []

            def interrupt(step, n, values):
                rows.append(step)
                if len(rows) > interrupt_at:
                    raise Interrupt

            callback = interrupt
        damaged = _state(path) != before
        start = net.copy()
        run_lr = lr * 1.5 if fault == "other-lr-on-resume" else lr
        target = os.path.join(tmp, "run2.npz") if fault == "interrupt" else path
        try:
            ff.train(net, obj, checkpoint=target, resume=resume if fault != "interrupt" else False,
                     callback=callback, **dict(kw, lr=run_lr))
            event("trained")
        except Interrupt:
            event("interrupted")
        except DOCUMENTED as exc:
            event(type(exc).__name__)
            if isinstance(exc, ff.CheckpointError) or "another run" in str(exc):
                assert np.array_equal(net.W, start.W) and np.array_equal(net.a, start.a)
        assert np.all(np.isfinite(net.W)) and np.all(np.isfinite(net.a))
        if not damaged:  # the last good checkpoint survives: unchanged, or a newer good one
            assert _state(path) == before or _good(path, clean, kind)
        if fault == "interrupt" and resume is not False:
            # resume the interrupted run (from its checkpoint, else from the start): it must equal the
            # uninterrupted run bit for bit, or diverge at the same step
            ref = start.copy()
            outcome = []
            plain = {k: v for k, v in kw.items() if k != "checkpoint_every"}
            for n_, o_, extra in ((ref, _objective(kind, clean), plain),
                                  (start, obj, dict(kw, checkpoint=target, resume=resume))):
                try:
                    ff.train(n_, o_, **extra)
                    outcome.append(None)
                except ff.TrainingDiverged as exc:
                    outcome.append(exc.step)
            assert outcome[0] == outcome[1]
            assert np.array_equal(start.W, ref.W) and np.array_equal(start.a, ref.a)


def _toml(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if value != value else ("inf" if value > 0 else "-inf"))
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


#: any value (mostly invalid somewhere)
VALUES = st.one_of(st.integers(-3, 40), st.floats(allow_nan=True, allow_infinity=True, width=32),
                   st.booleans(), st.sampled_from(["relu", "float32", "x", "", "loss"]),
                   st.lists(st.sampled_from(["loss", "norms", "nope"]), max_size=2))
_f = st.floats
#: values each key accepts (tiny runs), mixed with VALUES so that valid, invalid and mixed configs occur
VALID = {
    "n": st.integers(10, 30), "seed": st.integers(0, 3), "noise": _f(0, 0.1), "dtype": st.sampled_from(
        ["float32", "float64"]), "init_scale": _f(0.5, 2), "eta1": _f(0.5, 2), "renormalize": st.booleans(),
    "row_norm": _f(0.5, 2), "ridge": _f(0, 0.01), "balance": st.booleans(), "lr": _f(0.01, 0.5),
    "lr_scale": _f(0.1, 1), "epochs": st.integers(0, 2), "epoch_steps": st.integers(1, 5), "lam0": _f(0, 0.1),
    "lam_factor": _f(0.1, 1), "lam_floor": _f(0, 0.01), "batch_size": st.integers(1, 10),
    "log_every": st.integers(1, 5), "metrics": st.sampled_from([["loss"], ["loss", "alignment"]]),
    "radius": _f(0.1, 1), "n_threads": st.integers(1, 2), "bogus": VALUES,
}


@st.composite
def protocols(draw):
    """A few [protocol] keys, each value valid three times in four."""
    keys = draw(st.lists(st.sampled_from(sorted(VALID)), max_size=5, unique=True))
    return {k: draw(st.one_of(VALID[k], VALID[k], VALID[k], VALUES)) for k in keys}


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(m=st.one_of(st.sampled_from([2, 4, 6]), st.sampled_from([3, 0, -2]), VALUES),
       teacher=st.fixed_dictionaries({}, optional={"m_star": st.one_of(st.integers(1, 2), VALUES),
                                                   "activation": st.one_of(st.sampled_from(
                                                       ["relu", "abs", "erf", "tanh"]), VALUES),
                                                   "signs": st.sampled_from(["mixed", "positive", "odd"]),
                                                   "seed": st.integers(-1, 3)}),
       d=st.one_of(st.integers(1, 4), st.integers(0, 4), VALUES),
       protocol=protocols(),
       bad_bytes=st.integers(0, 9), out_kind=st.sampled_from(["new", "new", "file", "results", "empty"]))
def test_cli_under_bad_input(m, teacher, d, protocol, bad_bytes, out_kind, capsys):
    bad_bytes = bad_bytes == 0  # a non-UTF-8 file one time in ten
    teacher["d"] = d
    protocol.setdefault("epochs", 1)
    protocol.setdefault("epoch_steps", 3)
    lines = ["[teacher]"] + [f"{k} = {_toml(v)}" for k, v in teacher.items()]
    lines += ["[protocol]", f"m = {_toml(m)}"] + [f"{k} = {_toml(v)}" for k, v in protocol.items()]
    text = "\n".join(lines).encode() + (b"\n# \xff\xfe\n" if bad_bytes else b"\n")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "c.toml")
        open(cfg, "wb").write(text)
        out = os.path.join(tmp, "out")
        if out_kind == "file":
            open(out, "w").write("x")
        elif out_kind in ("results", "empty"):
            os.mkdir(out)
            if out_kind == "results":
                open(os.path.join(out, "summary.json"), "w").write("{}")
        before = sorted(os.listdir(out)) if os.path.isdir(out) else None
        capsys.readouterr()
        try:
            rc = cli.main(["run", cfg, "--out", out, "--no-plots", "--quiet"])
        except SystemExit as exc:
            rc = exc.code
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and err[0].startswith("fastfeat: error: "), err
            assert rc in (1, 2)
            if rc == 2:  # nothing created or changed
                assert (sorted(os.listdir(out)) if os.path.isdir(out) else None) == before
            event(f"exit status {rc}")
            return
        event("ran")
        assert rc == 0 and not bad_bytes and out_kind in ("new", "empty")
        assert os.path.exists(os.path.join(out, "summary.json"))


@pytest.mark.parametrize("fault", ["nan-X", "truncate-checkpoint"])
def test_property_faults_are_reachable(fault, tmp_path):
    """The faults above do happen (guards the generator against silently testing nothing)."""
    t = ff.Teacher.random(D, 2, activation="relu", seed=0)
    obj = ff.Empirical.sample(t, 20, seed=2)
    net = ff.TwoLayer.init(D, M, activation="relu", seed=1)
    path = tmp_path / "ck.npz"
    ff.train(net, obj, steps=4, lr=0.01, log_every=2, checkpoint=path)
    if fault == "nan-X":
        obj.X[3] = np.nan
        with pytest.raises(ValueError, match="X of the objective contains NaN"):
            ff.train(net, obj, steps=4, lr=0.01, checkpoint=path)
    else:
        path.write_bytes(path.read_bytes()[:100])
        with pytest.raises(ff.CheckpointError):
            ff.train(net, obj, steps=4, lr=0.01, checkpoint=path, resume=True)
