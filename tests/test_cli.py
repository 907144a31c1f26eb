"""The fastfeat command line, run in-process."""
import io
import json

import numpy as np
import pytest

import fastfeat as ff
from fastfeat import cli

SMALL = """
[teacher]
d = 6
m_star = 2
activation = "relu_centered"
seed = 3

[protocol]
m = 16
epochs = 2
epoch_steps = 20
log_every = 10
"""


def test_run_writes_histories_weights_summary_and_plots(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    cfg = tmp_path / "small.toml"
    cfg.write_text(SMALL)
    out = tmp_path / "out"
    assert cli.main(["run", str(cfg), "--out", str(out)]) == 0
    for name in ("stage1.json", "stage2.json", "stage3.json", "weights.npz", "summary.json", "loss.png",
                 "alignment.png", "mass_by_angle.png"):
        assert (out / name).stat().st_size > 0, name
    for name in ("loss.png", "alignment.png", "mass_by_angle.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["m"] == 16 and summary["config"]["epochs"] == 2
    assert len(summary["best_cos"]) == 2 and summary["teacher_a"] == [1.0, -1.0]
    # the summary describes the saved weights
    w = np.load(out / "weights.npz")
    teacher = ff.Teacher(w["W_star"], w["a_star"], "relu_centered")
    net = ff.TwoLayer(w["W"], w["a"], str(w["activation"]))
    assert summary["loss"] == pytest.approx(ff.Population(teacher).loss(net), rel=1e-12)
    assert summary["loss"] < summary["zero_loss"]
    np.testing.assert_allclose(summary["best_cos"], ff.metrics.alignment(net, teacher)["best_cos"], rtol=1e-12)
    stage3 = ff.History.load(out / "stage3.json")
    assert list(stage3.step) == [0, 10, 20, 30, 40]
    assert stage3["loss"][-1] == pytest.approx(summary["loss"], rel=1e-12)
    assert "done in" in capsys.readouterr().out


def test_bad_config_is_a_clear_error(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[protocol]\nm = 16\nlearning_rate = 0.1\n")
    with pytest.raises(SystemExit):
        cli.main(["run", str(cfg), "--out", str(tmp_path / "o"), "--no-plots", "--quiet"])
    assert "learning_rate" in capsys.readouterr().err
    cfg.write_text("[teacher]\nwidth = 3\n")
    with pytest.raises(SystemExit):
        cli.main(["run", str(cfg), "--out", str(tmp_path / "o"), "--no-plots"])
    assert "width" in capsys.readouterr().err


def test_info_never_crashes():
    buf = io.StringIO()
    lines = cli.info(file=buf)
    text = buf.getvalue()
    assert f"fastfeat {ff.__version__}" in text and "numba threading layer:" in text
    assert any(line.startswith("CUDA: ") for line in lines)
