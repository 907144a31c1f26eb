"""Ctrl-C (SIGINT) and SIGTERM: ff.train and ff.flow stop within a compiled call, keep a consistent state
(the net, the history, a checkpoint of the exact step), and a resumed run continues bit for bit; compiled
calls are cut by work, never by log_every, and the cut does not change the weights."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fastfeat as ff
from fastfeat.kernels.cpu import flow as flow_kernels
from fastfeat.training import common

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGINT") or os.name != "posix", reason="POSIX signals")


def _objective(kind, t):
    if kind == "population":
        return ff.Population(t)
    if kind == "empirical":
        return ff.Empirical.sample(t, 90, seed=4, batch_size=16)
    return ff.Online(t, batch_size=1, seed=3)


def _setup(kind, dtype="float64"):
    t = ff.Teacher.random(7, 2, activation="relu_centered", seed=0, dtype=dtype)
    net = ff.TwoLayer.init(7, 5, activation="relu_centered", seed=1, scale=0.5, dtype=dtype)
    return t, net, _objective(kind, t)


def _signal_on_call(obj, k, sig=signal.SIGINT):
    """Make the k-th compiled call of the next runner of ``obj`` send ``sig`` to this process (a real signal,
    through the real handler, at a reproducible point)."""
    made = type(obj)._runner
    calls = [0]
    state = {"armed": True}

    def runner_of(net):
        run = made(obj, net)
        if not state["armed"]:
            return run
        state["armed"] = False

        def wrapped(*args):
            out = run(*args)
            calls[0] += 1
            if calls[0] == k:
                os.kill(os.getpid(), sig)
            return out
        return wrapped

    obj._runner = runner_of
    return calls


def _equal_histories(h1, h2):
    assert h1.step.tolist() == h2.step.tolist()
    assert list(h1.metrics) == list(h2.metrics)
    for key in h1.metrics:
        np.testing.assert_array_equal(h1[key], h2[key], err_msg=key)


@pytest.mark.parametrize("kind", ["population", "empirical", "online"])
def test_train_interrupted_between_rows_resumes_bit_for_bit(kind, tmp_path, monkeypatch):
    """Calls of 20 steps, rows every 60: SIGINT during the 5th call stops at step 100 (between rows) with a
    checkpoint there; the resumed run gives the uninterrupted run's weights and history bit for bit (its
    batch losses since the last row included: the calls are cut where they were), and a run with the
    default cut the same weights."""
    metrics = ("batch_loss", "loss", "norms")
    kw = dict(steps=200, lr=0.05, log_every=60, metrics=metrics)
    t, net0, obj = _setup(kind)
    default_net = net0.copy()
    default = ff.train(default_net, obj, **kw)
    monkeypatch.setattr(common, "CALL_WORK", obj._step_work(net0) * 20)
    assert common.steps_per_call(obj, net0) == 20
    ref_net = net0.copy()
    ref = ff.train(ref_net, obj, **kw)
    # the cut changes no weight; the batch losses are summed call by call (to within rounding)
    np.testing.assert_allclose(ref["batch_loss"], default["batch_loss"], rtol=1e-14)
    np.testing.assert_array_equal(ref["loss"], default["loss"])

    path = str(tmp_path / "ck.npz")
    net = net0.copy()
    _signal_on_call(obj, 5)
    with pytest.raises(ff.TrainingInterrupted) as info:
        ff.train(net, obj, checkpoint=path, **kw)
    exc = info.value
    assert isinstance(exc, KeyboardInterrupt) and exc.signum == signal.SIGINT
    assert exc.step == 100 and exc.checkpoint == path
    assert exc.history.step.tolist() == [0, 60]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    check = net0.copy()
    ff.train(check, obj, steps=100, lr=0.05, log_every=100, metrics=())
    np.testing.assert_array_equal(net.W, check.W)  # the net holds step 100
    assert ff.Checkpoint.load(path).step == 100

    del obj._runner
    resumed = ff.train(net, obj, checkpoint=path, resume=True, **kw)
    _equal_histories(resumed, ref)
    np.testing.assert_array_equal(net.W, ref_net.W)
    np.testing.assert_array_equal(net.a, ref_net.a)
    np.testing.assert_array_equal(default_net.W, ref_net.W)  # the cut of the calls changes nothing


def test_train_interrupted_at_a_row_without_checkpoint(monkeypatch):
    """SIGTERM made a KeyboardInterrupt (as fastfeat run does) stops too; without a checkpoint nothing is
    written, the history holds the rows so far (the pending loss of the last row filled as the kernel
    gives it) and the net the step reached, in float32 as well."""
    t, net0, obj = _setup("population", "float32")
    monkeypatch.setattr(common, "CALL_WORK", obj._step_work(net0) * 30)
    ref_net = net0.copy()
    ref = ff.train(ref_net, obj, steps=90, lr=0.05, log_every=30)
    old = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        net = net0.copy()
        _signal_on_call(obj, 2, signal.SIGTERM)
        with pytest.raises(ff.TrainingInterrupted) as info:
            ff.train(net, obj, steps=90, lr=0.05, log_every=30)
        assert signal.getsignal(signal.SIGTERM) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, old)
    exc = info.value
    assert exc.signum == signal.SIGTERM and exc.checkpoint is None and exc.step == 60
    assert exc.history.step.tolist() == [0, 30, 60]
    np.testing.assert_array_equal(exc.history["loss"], ref["loss"][:3])  # bit for bit: the kernel's loss
    short = net0.copy()
    ff.train(short, ff.Population(t), steps=60, lr=0.05, metrics=())
    np.testing.assert_array_equal(net.W, short.W)


def test_a_programs_own_sigint_handler_stays_in_charge():
    """A program with its own SIGINT handler keeps it during ff.train (nothing is deferred or replaced)."""
    seen = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    try:
        t, net, obj = _setup("population")
        _signal_on_call(obj, 1)
        ff.train(net, obj, steps=10, lr=0.05)
        assert seen == [signal.SIGINT]
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, old)


def test_flow_stops_at_the_last_accepted_state(monkeypatch):
    """ff.flow cuts its compiled calls by attempted steps (the cut changes nothing: same weights as one call
    per logged time); SIGINT during one stops there: the net holds the last accepted state, the history's
    last row is it, marked interrupted."""
    t = ff.Teacher.random(6, 2, activation="relu", seed=0)
    net0 = ff.TwoLayer.init(6, 8, activation="relu", seed=2, scale=0.5)
    obj = ff.Population(t)
    reg = ff.WeightDecay(1e-3)
    whole = net0.copy()
    h_whole = ff.flow(whole, obj, 200.0, reg=reg, log_times=2)
    monkeypatch.setattr(common, "CALL_WORK", obj._step_work(net0) * 16 * 3)  # 3 attempted steps a call
    cut = net0.copy()
    h_cut = ff.flow(cut, obj, 200.0, reg=reg, log_times=2)
    np.testing.assert_array_equal(cut.W, whole.W)
    np.testing.assert_array_equal(h_cut["evals"], h_whole["evals"])

    calls = [0]

    def signalling(advance):
        def call(*args):
            calls[0] += 1
            out = advance(*args)
            if calls[0] == 4:
                os.kill(os.getpid(), signal.SIGINT)
            return out
        return call

    for name in ("advance", "serial_advance"):  # the builds of both size ranges
        monkeypatch.setattr(flow_kernels, name, signalling(getattr(flow_kernels, name)))
    net = net0.copy()
    with pytest.raises(ff.TrainingInterrupted) as info:
        ff.flow(net, obj, 200.0, reg=reg, log_times=2)
    exc = info.value
    h = exc.history
    assert h.info["stopped"] == "interrupted" and 0 < exc.time < 100.0
    assert h["time"][-1] == exc.time and h.step[-1] == exc.step > 0
    assert h["loss"][-1] == pytest.approx(obj.loss(net), rel=1e-13)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_flow_rtol_is_bounded():
    t = ff.Teacher.random(4, 2, activation="relu", seed=0)
    net = ff.TwoLayer.init(4, 4, activation="relu", seed=2)
    with pytest.raises(ValueError, match="rtol"):
        ff.flow(net, ff.Population(t), 1.0, rtol=1.0)


CHILD = textwrap.dedent(r"""
    import os, sys
    import fastfeat as ff
    from fastfeat import cli

    real = ff.Population._runner

    def runner(self, net):  # say when stage 3's training begins
        run = real(self, net)
        def first(*args):
            if not first.said:
                print("STAGE3", flush=True)
                first.said = True
            return run(*args)
        first.said = False
        return first

    ff.Population._runner = runner
    sys.exit(cli.main(sys.argv[1:]))
""")


def _start(args, env=None):
    return subprocess.Popen([sys.executable, "-c", CHILD] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def test_fastfeat_run_ctrl_c_writes_what_it_has_and_resumes_bit_for_bit(tmp_path):
    """A real SIGINT from outside, half a second into stage 3 (rows every 2000 steps, several seconds
    apart): the run stops within 3 s, exits 130 saying how to resume, and leaves the histories so far,
    the weights and a summary marked interrupted; `fastfeat run --resume` finishes it with the weights and
    histories of an uninterrupted run, bit for bit, and removes its checkpoint. (SIGTERM, which fastfeat
    run makes a KeyboardInterrupt as the test above does, stops it the same way, with exit status 143.)"""
    cfg = tmp_path / "c.toml"
    cfg.write_text('[teacher]\nd = 50\nm_star = 3\nactivation = "relu"\nseed = 0\n'
                   '[protocol]\nm = 512\nepochs = 2\nepoch_steps = 2000\nlog_every = 2000\nn_threads = 1\n')
    runs = {}
    for name, sig in (("int", signal.SIGINT),):
        out = str(tmp_path / name)
        p = _start(["run", str(cfg), "--out", out, "--no-plots", "--quiet"])
        assert p.stdout.readline().strip() == "STAGE3"
        time.sleep(0.5)
        p.send_signal(sig)
        t0 = time.perf_counter()
        _, err = p.communicate(timeout=120)
        latency = time.perf_counter() - t0
        assert p.returncode == 128 + sig, err
        assert latency < 3.0, f"stopped {latency:.1f} s after the signal"
        assert f"fastfeat run --resume {out}" in err and "Traceback" not in err
        summary = json.loads(open(os.path.join(out, "summary.json")).read())
        stopped = summary["interrupted"]
        assert stopped["stage"] == 3 and 0 < stopped["step"] < 4000
        for f in ("stage1.json", "stage2.json", "stage3.json", "weights.npz", "config.json"):
            assert os.path.exists(os.path.join(out, f)), f
        runs[name] = out
    from fastfeat import cli
    with pytest.raises(SystemExit):  # a new run into the folder is refused: it holds an interrupted one
        cli.main(["run", str(cfg), "--out", runs["int"], "--quiet", "--no-plots"])
    # each run in a process of its own, as the interrupted one (the same threads for stages 1-2's BLAS)
    ref = str(tmp_path / "ref")
    for args in (["run", "--resume", runs["int"]], ["run", str(cfg), "--out", ref]):
        p = _start(args + ["--quiet", "--no-plots"])
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    a, b = np.load(os.path.join(ref, "weights.npz")), np.load(os.path.join(runs["int"], "weights.npz"))
    np.testing.assert_array_equal(a["W"], b["W"])
    np.testing.assert_array_equal(a["a"], b["a"])
    h_ref = ff.History.load(os.path.join(ref, "stage3.json"))
    _equal_histories(ff.History.load(os.path.join(runs["int"], "stage3.json")), h_ref)
    assert not os.path.exists(os.path.join(runs["int"], "checkpoint"))
    assert "interrupted" not in json.loads(open(os.path.join(runs["int"], "summary.json")).read())
    with pytest.raises(SystemExit):  # finished: nothing left to resume
        cli.main(["run", "--resume", runs["int"], "--quiet", "--no-plots"])
