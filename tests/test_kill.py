"""A run killed with SIGKILL while it writes a checkpoint resumes bit for bit: the file on disk is always
the previous checkpoint or the new one, never a mix. Each run is its own process (same thread count)."""
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastfeat as ff

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")

CHILD = textwrap.dedent(r"""
    import io, sys, time
    import numpy as np
    import fastfeat as ff

    kind, kill, path, out = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    real_savez = np.savez
    writes = [0]

    def savez(f, **arrays):  # the third checkpoint write stops half way (or before the rename) and waits
        writes[0] += 1
        if kill != "none" and writes[0] == 3:
            buf = io.BytesIO()
            real_savez(buf, **arrays)
            data = buf.getvalue()
            f.write(data[: len(data) // 2] if kill == "mid-data" else data)
            f.flush()
            print("WRITING", flush=True)
            time.sleep(600)
        return real_savez(f, **arrays)

    np.savez = savez
    t = ff.Teacher.random(7, 2, activation="relu_centered", seed=0)
    obj = (ff.Online(t, batch_size=1, seed=3) if kind == "online"
           else ff.Empirical.sample(t, 90, seed=4, batch_size=16))
    net = ff.TwoLayer.init(7, 24, activation="relu_centered", seed=1)
    h = ff.train(net, obj, steps=200, lr=ff.schedules.geometric(0.05, 0.8, 30), reg=ff.WeightDecay(1e-3),
                 log_every=20, checkpoint_every=40, checkpoint=path, resume=True, metrics=("batch_loss", "loss"))
    np.savez(out, W=net.W, a=net.a, step=h.step, loss=h["loss"])
    print("DONE", flush=True)
""")


def _child(tmp_path, kind, kill, path, out):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, NUMBA_NUM_THREADS="2", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, str(script), kind, kill, str(path), str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _finish(proc):
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "DONE" in out


@pytest.mark.parametrize("kind, kill", [("online", "mid-data"), ("empirical-minibatch", "before-rename")])
def test_sigkill_during_a_checkpoint_write_then_resume_is_bit_exact(tmp_path, kind, kill):
    ref = _child(tmp_path, kind, "none", tmp_path / "ref.npz", tmp_path / "ref-out.npz")
    _finish(ref)

    path = tmp_path / "ck.npz"
    victim = _child(tmp_path, kind, kill, path, tmp_path / "never.npz")
    line = victim.stdout.readline()
    assert line.strip() == "WRITING", victim.stderr.read()
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGKILL

    saved = ff.Checkpoint.load(path)  # the previous checkpoint, whole
    assert saved.step == 80 and saved.history.step[-1] == 80
    leftovers = [p for p in os.listdir(tmp_path) if p.startswith("ck.npz.") and p.endswith(".tmp")]
    assert len(leftovers) == 1  # the killed writer's temporary file; ck.npz itself is untouched

    resumed = _child(tmp_path, kind, "none", path, tmp_path / "resumed-out.npz")
    _finish(resumed)
    a, b = np.load(tmp_path / "ref-out.npz"), np.load(tmp_path / "resumed-out.npz")
    assert np.array_equal(a["W"], b["W"]) and np.array_equal(a["a"], b["a"])
    np.testing.assert_array_equal(a["step"], b["step"])
    np.testing.assert_array_equal(a["loss"], b["loss"])
    assert ff.Checkpoint.load(path).step == 200
    assert not [p for p in os.listdir(tmp_path) if p.startswith("ck.npz.") and p.endswith(".tmp")]
