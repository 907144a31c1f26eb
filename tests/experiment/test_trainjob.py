"""``fastfeat train CONFIG``: one ff.train run of any objective from a TOML file, bit for bit the run the
same ff.train call gives, with every config problem reported at once, Ctrl-C writing what it has and
--resume continuing bit for bit."""
import json
import os
import signal

import numpy as np
import pytest

import fastfeat as ff
from fastfeat import cli

ONLINE = """
[teacher]
d = 30
m_star = 2
activation = "erf"
seed = 4
[student]
m = 5
scale = 0.3
seed = 2
[objective]
kind = "online"
batch_size = 1
noise = 0.1
seed = 5
[train]
steps = 4000
lr = 0.01
lr_a = 0.005
weight_decay = 1e-4
log_rows = 12
metrics = ["batch_loss", "loss"]
"""

EMPIRICAL = """
[teacher]
d = 7
m_star = 2
activation = "relu"
[student]
m = 9
activation = "relu_centered"
[objective]
kind = "empirical"
n = 50
batch_size = 10
[train]
steps = 300
lr = {geometric = {start = 0.2, factor = 0.5, every = 100}}
path_norm = 1e-3
log_every = 50
"""


def _by_hand_online():
    """The ONLINE configuration written with the public API."""
    teacher = ff.Teacher.random(30, 2, activation="erf", signs="mixed", seed=4)
    net = ff.TwoLayer.init(30, 5, activation="erf", scale=0.3, seed=2)
    h = ff.train(net, ff.Online(teacher, batch_size=1, noise=0.1, seed=5), steps=4000, lr=0.01, lr_a=0.005,
                 reg=ff.WeightDecay(1e-4), log_every=ff.log_spaced(4000, 12), metrics=("batch_loss", "loss"))
    return net, h


def test_train_command_is_the_ff_train_call_and_resumes_bit_for_bit(tmp_path, monkeypatch):
    cfg = tmp_path / "online.toml"
    cfg.write_text(ONLINE)
    net, h = _by_hand_online()
    out = str(tmp_path / "run")
    assert cli.main(["train", str(cfg), "--out", out, "--quiet", "--no-plots"]) == 0
    w = np.load(os.path.join(out, "weights.npz"))
    np.testing.assert_array_equal(w["W"], net.W)
    np.testing.assert_array_equal(w["a"], net.a)
    saved = ff.History.load(os.path.join(out, "history.json"))
    assert saved.step.tolist() == h.step.tolist()
    np.testing.assert_array_equal(saved["loss"], h["loss"])
    summary = json.loads(open(os.path.join(out, "summary.json")).read())
    assert summary["step"] == 4000 and summary["alpha"] == pytest.approx(4000 / 30)
    assert not os.path.exists(os.path.join(out, "checkpoint"))

    # Ctrl-C in the third compiled call (calls of 200 steps here), then --resume
    from fastfeat.training import common
    monkeypatch.setattr(common, "CALL_WORK", ff.Online(ff.Teacher.random(30, 2, activation="erf"),
                                                       batch_size=1)._step_work(net) * 200)
    real = ff.Online._runner
    calls = [0]

    def runner(self, n):
        run = real(self, n)

        def counted(*args):
            got = run(*args)
            calls[0] += 1
            if calls[0] == 10:
                os.kill(os.getpid(), signal.SIGINT)
            return got
        return counted

    monkeypatch.setattr(ff.Online, "_runner", runner)
    cut = str(tmp_path / "cut")
    with pytest.raises(SystemExit) as info:
        cli.main(["train", str(cfg), "--out", cut, "--quiet", "--no-plots"])
    assert info.value.code == 130
    stopped = json.loads(open(os.path.join(cut, "summary.json")).read())["interrupted"]
    assert 0 < stopped["step"] < 4000
    monkeypatch.setattr(ff.Online, "_runner", real)
    with pytest.raises(SystemExit):  # a new run there is refused: it holds an interrupted one
        cli.main(["train", str(cfg), "--out", cut, "--quiet", "--no-plots"])
    assert cli.main(["train", "--resume", cut, "--quiet", "--no-plots"]) == 0
    w = np.load(os.path.join(cut, "weights.npz"))
    np.testing.assert_array_equal(w["W"], net.W)
    resumed = ff.History.load(os.path.join(cut, "history.json"))
    assert resumed.step.tolist() == h.step.tolist()
    np.testing.assert_array_equal(resumed["loss"], h["loss"])
    # the batch losses are summed call by call: here the calls were cut every 200 steps (to within rounding)
    np.testing.assert_allclose(resumed["batch_loss"], h["batch_loss"], rtol=1e-13)


def test_empirical_with_a_schedule_and_the_path_norm(tmp_path):
    cfg = tmp_path / "emp.toml"
    cfg.write_text(EMPIRICAL)
    out = str(tmp_path / "run")
    assert cli.main(["train", str(cfg), "--out", out, "--quiet", "--no-plots"]) == 0
    teacher = ff.Teacher.random(7, 2, activation="relu", signs="mixed", seed=0)
    net = ff.TwoLayer.init(7, 9, activation="relu_centered", scale=0.5, seed=1)
    ff.train(net, ff.Empirical.sample(teacher, 50, seed=0, batch_size=10), steps=300,
             lr=ff.schedules.geometric(0.2, 0.5, 100), reg=ff.PathNorm(1e-3), log_every=50)
    np.testing.assert_array_equal(np.load(os.path.join(out, "weights.npz"))["W"], net.W)


def test_every_config_problem_at_once_and_nothing_created(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[teacher]\nd = -3\nactivaton = "erf"\n[objective]\nkind = "onlin"\n[train]\nlr = -1\n'
                   'stepz = 4\nweight_decay = {cosine = 1}\n')
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as info:
        cli.main(["train", str(cfg), "--out", str(out)])
    assert info.value.code == 2 and not out.exists()
    err = capsys.readouterr().err
    for part in ("'activaton' (did you mean 'activation'?)", "'stepz' (did you mean 'steps'?)", "d must be >= 1",
                 "kind must be one of", "lr must be > 0", "weight_decay: a number, or a table"):
        assert part in err, part
    assert err.count("fastfeat: error:") == 1


def test_a_mean_field_student_with_its_step_sizes(tmp_path, capsys):
    cfg = tmp_path / "mf.toml"
    cfg.write_text('[teacher]\nd = 6\nm_star = 2\nactivation = "relu"\n[student]\nm = 24\nscale = 1.0\n'
                   'output_scale = "mean_field"\n[train]\nsteps = 60\nlr = 0.3\nlr_scaling = "mean_field"\n'
                   'weight_decay = 1e-3\nlog_every = 20\n')
    out = str(tmp_path / "run")
    assert cli.main(["train", str(cfg), "--out", out, "--quiet", "--no-plots"]) == 0
    teacher = ff.Teacher.random(6, 2, activation="relu", seed=0)
    net = ff.TwoLayer.init(6, 24, activation="relu", scale=1.0, seed=1, output_scale="mean_field")
    ff.train(net, ff.Population(teacher), steps=60, lr=0.3 * 24, reg=ff.WeightDecay(1e-3), log_every=20)
    w = np.load(os.path.join(out, "weights.npz"))
    np.testing.assert_array_equal(w["W"], net.W)
    np.testing.assert_array_equal(w["a"], net.a)
    assert json.loads(str(w["scale"])) == "mean_field"
    bad = tmp_path / "bad.toml"
    bad.write_text('[student]\noutput_scale = "meanfield"\n[train]\nlr_scaling = "mf"\n')
    with pytest.raises(SystemExit):
        cli.main(["train", str(bad), "--out", str(tmp_path / "never")])
    err = capsys.readouterr().err
    assert "output_scale='meanfield'" in err and "lr_scaling must be" in err
