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
    assert not (out / "hessian.png").exists() and "hessian" not in summary


def test_run_with_the_hessian_diagnostic(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    cfg = tmp_path / "small.toml"
    cfg.write_text(SMALL + "hessian = true\n")
    out = tmp_path / "out"
    assert cli.main(["run", str(cfg), "--out", str(out)]) == 0
    assert (out / "hessian.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    ev = np.load(out / "hessian.npz")["eigenvalues"]
    assert ev.shape == (16 * 7,) and np.all(np.diff(ev) >= 0)
    assert summary["hessian"]["smallest"] == pytest.approx(list(ev[:10]))
    assert "Hessian at the end" in capsys.readouterr().out


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


BAD_CONFIGS = {
    "odd m": (b"[protocol]\nm = 255\n", ["m must be even"]),
    "m as a string": (b'[protocol]\nm = "256"\n', ["m must be an integer, got str"]),
    "not UTF-8": (b"[protocol]\nm = 16\n# caf\xe9\n", ["not UTF-8"]),
    "not TOML": (b"[protocol\nm = 16\n", ["not valid TOML"]),
    "unknown keyword": (b"[protocol]\nm = 16\nlearning_rate = 0.1\n", ["learning_rate"]),
    "bad teacher value": (b'[teacher]\nd = 4\nm_star = 9\n[protocol]\nm = 16\n', ["m_star must be <= d"]),
    "negative radius": (b"[protocol]\nm = 16\nradius = -0.5\n", ["radius must be >= 0"]),
    "negative lr_a": (b"[protocol]\nm = 16\nlr_a = -0.1\n", ["lr_a must be >= 0"]),
    "batch_size without n": (b"[protocol]\nm = 16\nbatch_size = 8\n", ["batch_size needs a sampled data set"]),
    "progress in the file": (b"[protocol]\nm = 16\nprogress = true\n", ["set by the command line"]),
    "bool as string": (b'[protocol]\nm = 16\nbalance = "no"\n', ["balance must be True or False"]),
    "unknown metric": (b'[protocol]\nm = 16\nmetrics = ["loss", "speed"]\n', ["unknown metric"]),
    "a table that is a value": (b"teacher = 3\n[protocol]\nm = 16\n", ["teacher must be a table"]),
    "every problem at once": (b'[teacher]\nd = 0\n[protocol]\nm = 7\nlr = "fast"\nepochs = -1\n',
                              ["d must be >= 1", "m must be even", "lr must be a real number", "epochs must be >= 0"]),
}


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_every_invalid_config_is_one_error_line_before_anything_is_created(name, tmp_path, capsys, monkeypatch):
    """Before: only unknown keys were clean errors; other invalid values printed a traceback (rc 1) after
    the --out folder was created."""
    monkeypatch.setattr(ff.paper, "three_stage", lambda *a, **k: pytest.fail("the protocol ran"))
    text, expected = BAD_CONFIGS[name]
    cfg = tmp_path / "c.toml"
    cfg.write_bytes(text)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        cli.main(["run", str(cfg), "--out", str(out), "--no-plots", "--quiet"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastfeat: error: "), err
    for phrase in expected:
        assert phrase in err, (phrase, err)
    assert not out.exists()


def test_every_problem_of_a_file_at_once_each_with_its_table_and_key(tmp_path, capsys):
    """An unknown key hides no other problem; near-misses get a suggestion; a bad seed names its key."""
    path = tmp_path / "c.toml"
    path.write_text('[teacher]\nactivaton = "relu"\nd = -3\nseed = -1\n[protocol]\nm = 255\nepoch = 3\n'
                    'lam0 = -1\n')
    with pytest.raises(SystemExit) as info:
        cli.main(["run", str(path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1
    for part in ("unknown key 'activaton' (did you mean 'activation'?)", "[teacher]: d must be >= 1",
                 "[teacher]: seed = -1", "unknown key 'epoch' (did you mean 'epochs'?)", "m must be even",
                 "lam0 must be >= 0"):
        assert part in err[0], part
    assert "progress" not in err[0] and not (tmp_path / "o").exists()


def test_a_typo_in_a_sweep_is_reported_once(tmp_path):
    runs = [{"protocol": {"m": m, "epoch": 3}} for m in (8, 16, 32)]
    with pytest.raises(ff.ConfigError) as info:
        ff.sweep(runs, out=tmp_path / "o", workers=1, progress=False)
    msg = str(info.value)
    assert msg.count("unknown key 'epoch'") == 1 and "every run" in msg and "3 of 3 runs" in msg
    assert len(msg) < 400


def test_template_is_the_default_configuration_with_every_key(tmp_path, capsys):
    import tomllib

    from fastfeat.paper import KEYWORDS
    assert cli.main(["template"]) == 0
    text = capsys.readouterr().out
    assert tomllib.loads(text) == cli.DEFAULT_CONFIG
    for key in [k for k in KEYWORDS if k != "progress"] + list(cli.TEACHER_KEYS):
        assert f"{key} = " in text, key
    path = tmp_path / "c.toml"
    # every commented key uncommented (its default written out) is still the same valid configuration
    lines = [ln[2:] if ln.startswith("# ") and " = " in ln and "(none)" not in ln else ln for ln in text.splitlines()]
    path.write_text("\n".join(lines) + "\n")
    cfg = cli.load_config(str(path))
    teacher, m, proto = cli.check_config(cfg, plots=True)
    assert m == 256 and proto["epochs"] == 5 and teacher.d == 20


def test_plots_that_cannot_be_made_and_a_sweep_folder_are_refused_first(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text('[teacher]\nd = 4\nm_star = 2\n[protocol]\nm = 8\nmetrics = ["loss"]\n')
    with pytest.raises(SystemExit) as info:
        cli.main(["run", str(path), "--out", str(tmp_path / "o"), "--quiet"])
    assert info.value.code == 2 and "alignment" in capsys.readouterr().err and not (tmp_path / "o").exists()
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "results.csv").write_text("key,status\n")
    with pytest.raises(SystemExit):
        cli.main(["run", "--out", str(tmp_path / "s"), "--quiet"])
    assert "sweep's folder" in capsys.readouterr().err


def test_out_that_is_a_file_or_holds_results_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ff.paper, "three_stage", lambda *a, **k: pytest.fail("the protocol ran"))
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "--out", str(afile), "--no-plots", "--quiet"])
    assert info.value.code == 2 and "is a file, not a folder" in capsys.readouterr().err
    old = tmp_path / "old"
    old.mkdir()
    (old / "summary.json").write_text("{}")
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "--out", str(old), "--no-plots", "--quiet"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "already holds results (summary.json)" in err and "--force" in err
    assert (old / "summary.json").read_text() == "{}"


def test_force_overwrites_earlier_results(tmp_path):
    cfg = tmp_path / "small.toml"
    cfg.write_text(SMALL)
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    (out / "notes.txt").write_text("mine")
    assert cli.main(["run", str(cfg), "--out", str(out), "--no-plots", "--quiet", "--force"]) == 0
    assert json.loads((out / "summary.json").read_text())["config"]["m"] == 16
    assert (out / "notes.txt").read_text() == "mine"


def _unwritable_folder(tmp_path):
    """A folder this process cannot create files in (chmod for normal users; root ignores permissions,
    so a path on a read-only system file system), or None."""
    import os

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    for candidate in (ro / "out", "/sys/fastfeat-out", "/proc/fastfeat-out"):
        try:
            os.makedirs(candidate)
        except OSError:
            return candidate
        os.rmdir(candidate)
    return None


def test_unwritable_out_is_found_before_the_protocol_runs(tmp_path, capsys, monkeypatch):
    """Before: a read-only --out was discovered after the whole protocol ran."""
    out = _unwritable_folder(tmp_path)
    if out is None:
        pytest.skip("no unwritable folder on this machine")
    monkeypatch.setattr(ff.paper, "three_stage", lambda *a, **k: pytest.fail("the protocol ran"))
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "--out", str(out), "--no-plots", "--quiet"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "is not writable" in err and len(err.strip().splitlines()) == 1


def test_a_diverging_protocol_is_one_error_line_with_status_1(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(SMALL.replace("log_every = 10", "log_every = 10\nlr = 1e6"))
    with pytest.raises(SystemExit) as info:
        cli.main(["run", str(cfg), "--out", str(tmp_path / "o"), "--no-plots", "--quiet"])
    err = capsys.readouterr().err
    assert info.value.code == 1 and err.startswith("fastfeat: error: the protocol stopped: training diverged")


def test_version_and_bare_command_print_help(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"fastfeat {ff.__version__}"
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: fastfeat") and "run" in out and "warmup" in out


def test_info_never_crashes():
    buf = io.StringIO()
    lines = cli.info(file=buf)
    text = buf.getvalue()
    assert f"fastfeat {ff.__version__}" in text and "numba threading layer:" in text
    assert any(line.startswith("CUDA: ") for line in lines)
