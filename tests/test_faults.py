"""Nothing lost, nothing silently wrong: the divergence guard on the new weights, checkpoints that are
checked before use and never overwritten by a diverged state, runs compared on resume, clear errors."""
import json
import os
import zipfile

import numpy as np
import pytest

import fastfeat as ff
from fastfeat.training import checkpoint as ckpt_module
from kinds import KINDS, objective

D, M = 6, 10
HUGE_LR = {"float32": 3e38, "float64": 1e308}  # lr * |gradient| beyond max_float / 4 at the first step


def _objective(kind, t):
    return objective(kind, t, n=64, batch=8, seed=2, online_seed=1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_step_that_would_overflow_the_weights_is_refused(kind, dtype):
    """Before: the population, empirical and online batch>1 kernels checked the loss and the gradient
    only; the update overflowed to inf inside the user's net."""
    t = ff.Teacher.random(D, 2, activation="abs", seed=1, dtype=dtype)
    net = ff.TwoLayer.init(D, M, activation="abs", seed=11, scale=2.0, dtype=dtype)
    start = net.copy()
    with pytest.raises(ff.TrainingDiverged, match="diverged at step 0") as info:
        ff.train(net, _objective(kind, t), steps=5, lr=HUGE_LR[dtype], log_every=5)
    assert info.value.step == 0
    assert np.array_equal(net.W, start.W) and np.array_equal(net.a, start.a)  # untouched, finite


def test_the_reported_float32_run_ends_with_finite_weights():
    """The audit's reproducer: float32 abs, scale 2, lr 10 left +-inf in the net (then a ValueError)."""
    t = ff.Teacher.random(6, 2, activation="abs", seed=1, dtype="float32")
    net = ff.TwoLayer.init(6, 10, activation="abs", seed=11, scale=2.0, dtype="float32")
    with pytest.raises(ff.TrainingDiverged):
        ff.train(net, ff.Population(t), steps=3000, lr=10, log_every=100)
    assert np.all(np.isfinite(net.W)) and np.all(np.isfinite(net.a))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_public_step_kernels_refuse_an_overflowing_update(dtype):
    from fastfeat.kernels.cpu import empirical as emp
    from fastfeat.kernels.cpu import online as onl
    from fastfeat.kernels.cpu import population as pop

    t = ff.Teacher.random(D, 2, activation="relu", seed=1, dtype=dtype)
    net = ff.TwoLayer.init(D, M, activation="relu", seed=3, scale=2.0, dtype=dtype)
    W0, a0 = net.W.copy(), net.a.copy()
    gW, ga = np.empty_like(net.W), np.empty_like(net.a)
    lr = HUGE_LR[dtype]
    ws = pop.workspace(M, 2, D, dtype)
    assert np.isnan(pop.step(net.W, net.a, t.W, t.a, net.code, lr, 0, 0.0, 0.0, gW, ga, ws))
    obj = ff.Empirical.sample(t, 40, seed=1)
    ews = emp.workspace(40, M, D, dtype)
    assert np.isnan(emp.step(net.W, net.a, obj.X, obj.y, np.arange(0), net.code, lr, 0, 0.0, 0.0, gW, ga, ews))
    mws = emp.workspace(40, M, D, dtype, batch=10)
    assert np.isnan(emp.step(net.W, net.a, obj.X, obj.y, np.arange(10), net.code, lr, 0, 0.0, 0.0, gW, ga, mws))
    ows = onl.workspace(4, M, D, dtype)
    assert np.isnan(onl.step(net.W, net.a, t.W, t.a, net.code, t.code, 0.0, 0, 0, lr, 0, 0.0, 0.0, ows))
    assert np.array_equal(net.W, W0) and np.array_equal(net.a, a0)
    # a normal step is still taken
    assert np.isfinite(pop.step(net.W, net.a, t.W, t.a, net.code, 0.01, 0, 0.0, 0.0, gW, ga, ws))
    assert not np.array_equal(net.W, W0)


def test_empirical_kernel_refuses_a_batch_its_workspace_cannot_hold():
    """A minibatch (non-empty idx) with a full-batch workspace wrote past the gather buffer (a crash
    later, in the garbage collector); indices outside the data set read past X."""
    from fastfeat.kernels.cpu import empirical as emp

    t = ff.Teacher.random(D, 2, activation="relu", seed=1)
    net = ff.TwoLayer.init(D, M, activation="relu", seed=3)
    obj = ff.Empirical.sample(t, 40, seed=1)
    gW, ga = np.empty_like(net.W), np.empty_like(net.a)
    with pytest.raises(ValueError, match="workspace was built for the full data set"):
        emp.step(net.W, net.a, obj.X, obj.y, np.arange(40), net.code, 0.1, 0, 0.0, 0.0, gW, ga,
                 emp.workspace(40, M, D, "float64"))
    with pytest.raises(IndexError, match="outside"):
        emp.step(net.W, net.a, obj.X, obj.y, np.array([0, 40]), net.code, 0.1, 0, 0.0, 0.0, gW, ga,
                 emp.workspace(40, M, D, "float64", batch=2))


# ---------------------------------------------------------------------------------------------- resume


def _setup(tmp_path, steps=20, **kw):
    t = ff.Teacher.random(D, 2, activation="relu_centered", seed=0)
    net = ff.TwoLayer.init(D, M, activation="relu_centered", seed=1)
    path = tmp_path / "run.npz"
    args = dict(steps=steps, lr=0.1, log_every=5, checkpoint=path)
    args.update(kw)
    ff.train(net, ff.Population(t), **args)
    return t, net, path


def test_resume_checks_the_checkpoint_before_touching_the_net(tmp_path):
    """Before: NaN weights in the file were copied into the user's net (silently, with no steps left)."""
    t, net, path = _setup(tmp_path)
    saved = ff.Checkpoint.load(path)
    saved.W[0, 0] = np.nan
    saved.save(path)
    user = ff.TwoLayer.init(D, M, activation="relu_centered", seed=7)
    before = user.copy()
    for steps in (20, 30):  # none left, or some
        with pytest.raises(ff.CheckpointError, match="non-finite"):
            ff.train(user, ff.Population(t), steps=steps, lr=0.1, log_every=5, checkpoint=path, resume=True)
        assert np.array_equal(user.W, before.W) and np.array_equal(user.a, before.a)
    with pytest.raises(ValueError, match="non-finite"):
        saved.restore(user)
    assert np.array_equal(user.W, before.W)


@pytest.mark.parametrize("metrics", [("loss",), ()])
def test_divergence_never_overwrites_the_last_good_checkpoint(tmp_path, metrics):
    """Before: a divergence at a checkpoint boundary wrote the diverged state (huge weights, NaN loss)
    over the last good checkpoint."""
    t = ff.Teacher.random(D, 2, activation="relu_centered", seed=0)
    net = ff.TwoLayer.init(D, M, activation="relu_centered", seed=1)
    path = tmp_path / "c.npz"
    with pytest.raises(ff.TrainingDiverged) as info:
        ff.train(net, ff.Population(t), steps=400, lr=1e3, log_every=1, checkpoint=path, metrics=metrics)
    saved = ff.Checkpoint.load(path)
    assert 0 < saved.step <= info.value.step
    assert np.isfinite(ff.Population(t).loss(saved.net))  # a state training can continue from
    assert all(np.all(np.isfinite(v)) for k, v in saved.history.metrics.items())


def test_a_final_state_that_cannot_go_on_keeps_the_previous_checkpoint(tmp_path):
    """The last step is taken (its new weights fit) but from there the gradient overflows float32: the
    final checkpoint is not written (a warning says so) and the file keeps the one before."""
    t = ff.Teacher.random(4, 2, activation="relu", seed=0, dtype="float32")
    obj = ff.Empirical.sample(t, 20, seed=2)
    net = ff.TwoLayer.init(4, 6, activation="relu", seed=1, dtype="float32", scale=1.5)
    path = tmp_path / "c.npz"
    with pytest.warns(RuntimeWarning, match="state at step 5 cannot take another step"):
        ff.train(net, obj, steps=5, lr=ff.schedules.piecewise([4], [0.01, 1e13]), log_every=1, checkpoint=path)
    assert ff.Checkpoint.load(path).step == 4
    with pytest.raises(ff.TrainingDiverged, match="step 5"):
        ff.train(net, obj, steps=1, lr=0.01, start_step=5)


def test_resume_refuses_another_run_and_says_what_differs(tmp_path):
    t, net, path = _setup(tmp_path, reg=ff.WeightDecay(1e-3))
    kw = dict(steps=40, log_every=5, checkpoint=path, resume=True)

    def resume(**changes):
        args = dict(lr=0.1, reg=ff.WeightDecay(1e-3), **kw)
        args.update(changes)
        obj = args.pop("objective", ff.Population(t))
        fresh = ff.TwoLayer.init(D, M, activation="relu_centered", seed=5)
        before = fresh.copy()
        with pytest.raises(ValueError, match="another run") as info:
            ff.train(fresh, obj, **args)
        assert np.array_equal(fresh.W, before.W)  # nothing changed
        return str(info.value)

    assert "lr: 'constant(0.1)' in the checkpoint, 'constant(0.05)' now" in resume(lr=0.05)
    assert "reg" in resume(reg=ff.WeightDecay(1e-2))
    assert "reg" in resume(reg=None)
    assert "objective objective: 'population' in the checkpoint, 'online' now" in resume(objective=ff.Online(t))
    assert "objective noise" in resume(objective=ff.Population(t, noise=0.1))
    other = ff.Teacher.random(D, 2, activation="relu_centered", seed=9)
    assert "objective teacher" in resume(objective=ff.Population(other))
    assert "metrics" in resume(metrics=("loss", "norms"))
    assert "resume='force'" in resume(lr=0.05)
    # the same run resumes
    ff.train(ff.TwoLayer.init(D, M, activation="relu_centered", seed=5), ff.Population(t), lr=0.1,
             reg=ff.WeightDecay(1e-3), **kw)


def test_resume_compares_seeds_data_and_callable_schedules(tmp_path):
    t = ff.Teacher.random(D, 2, activation="relu_centered", seed=0)
    path = tmp_path / "c.npz"
    net = ff.TwoLayer.init(D, M, activation="relu_centered", seed=1)
    kw = dict(log_every=5, checkpoint=path)
    ff.train(net, ff.Online(t, batch_size=4, seed=3), steps=10, lr=lambda s: 0.1 / (1 + s), **kw)
    with pytest.raises(ValueError, match="objective seed"):
        ff.train(net.copy(), ff.Online(t, batch_size=4, seed=4), steps=20, lr=lambda s: 0.1 / (1 + s),
                 resume=True, **kw)
    with pytest.raises(ValueError, match="lr: 'callable"):
        ff.train(net.copy(), ff.Online(t, batch_size=4, seed=3), steps=20, lr=lambda s: 0.2 / (1 + s),
                 resume=True, **kw)
    ff.train(net.copy(), ff.Online(t, batch_size=4, seed=3), steps=20, lr=lambda s: 0.1 / (1 + s), resume=True, **kw)

    obj = ff.Empirical.sample(t, 50, seed=1, batch_size=10)
    path2 = tmp_path / "e.npz"
    ff.train(net.copy(), obj, steps=10, lr=0.1, log_every=5, checkpoint=path2)
    changed = ff.Empirical(obj.X.copy(), obj.y.copy(), batch_size=10, seed=1)
    changed.y[3] += 1
    with pytest.raises(ValueError, match="objective data"):
        ff.train(net.copy(), changed, steps=20, lr=0.1, log_every=5, checkpoint=path2, resume=True)


def test_resume_force_continues_and_keeps_the_history_aligned(tmp_path):
    """Before: other metrics on resume misaligned the columns (5 step rows, 2 rows of norms)."""
    t, net, path = _setup(tmp_path, metrics=("loss",))
    fresh = ff.TwoLayer.init(D, M, activation="relu_centered", seed=5)
    h = ff.train(fresh, ff.Population(t), steps=40, lr=0.05, log_every=5, checkpoint=path, resume="force",
                 metrics=("loss", "norms"))
    assert list(h.step) == list(range(0, 45, 5))
    for k, v in h.metrics.items():
        assert len(v) == len(h.step), k
    assert np.all(np.isnan(h["norms.a"][:5])) and np.all(np.isfinite(h["norms.a"][5:]))
    changes = h.info["resumed_with_changes"][0]
    assert changes["step"] == 20 and any("lr" in c for c in changes["changes"])
    assert ff.Checkpoint.load(path).history.info["resumed_with_changes"]  # kept in the file too
    with pytest.raises(ValueError, match="resume must be"):
        ff.train(fresh, ff.Population(t), steps=40, lr=0.05, checkpoint=path, resume="yes")


def test_checkpoint_every_must_be_a_multiple_of_log_every(tmp_path):
    """Before: checkpoint_every=15 with log_every=10 silently saved every 30 steps."""
    t = ff.Teacher.random(D, 2, activation="relu_centered", seed=0)
    net = ff.TwoLayer.init(D, M, activation="relu_centered", seed=1)
    with pytest.raises(ValueError, match="multiple of log_every"):
        ff.train(net, ff.Population(t), steps=30, lr=0.1, log_every=10, checkpoint=tmp_path / "c.npz",
                 checkpoint_every=15)
    assert not (tmp_path / "c.npz").exists()


def test_checkpoint_path_is_checked_before_training(tmp_path):
    t = ff.Teacher.random(D, 2, activation="relu_centered", seed=0)
    net = ff.TwoLayer.init(D, M, activation="relu_centered", seed=1)
    before = net.copy()
    with pytest.raises(ValueError, match="does not exist"):
        ff.train(net, ff.Population(t), steps=5, lr=0.1, checkpoint=tmp_path / "missing" / "c.npz")
    with pytest.raises(ValueError, match="is a folder"):
        ff.train(net, ff.Population(t), steps=5, lr=0.1, checkpoint=tmp_path)
    with pytest.raises(TypeError, match="checkpoint must be a path"):
        ff.train(net, ff.Population(t), steps=5, lr=0.1, checkpoint=3)
    assert np.array_equal(net.W, before.W)


# ------------------------------------------------------------------------------------- checkpoint files


def _corruptions(data):
    n = len(data)
    flipped = bytearray(data)
    flipped[n // 2] ^= 0xFF
    return {
        "truncated": data[: n // 2],
        "empty": b"",
        "random bytes": np.random.default_rng(0).bytes(4096),
        "one byte altered": bytes(flipped),
        "text": b"hello\n",
    }


def test_corrupt_checkpoints_raise_one_clear_error_naming_the_file(tmp_path):
    """Before: raw zip / numpy errors that did not name the file (random bytes: "pickled data")."""
    _, _, path = _setup(tmp_path)
    data = path.read_bytes()
    for name, bad in _corruptions(data).items():
        target = tmp_path / f"bad-{name.replace(' ', '-')}.npz"
        target.write_bytes(bad)
        with pytest.raises(ff.CheckpointError, match=str(target).replace("\\", "\\\\")):
            ff.Checkpoint.load(target)
    np.save(tmp_path / "plain.npy", np.zeros(3))
    with pytest.raises(ff.CheckpointError, match="single numpy array"):
        ff.Checkpoint.load(tmp_path / "plain.npy")
    np.savez(tmp_path / "other.npz", W=np.zeros((2, 2)))
    with pytest.raises(ff.CheckpointError, match="not a fastfeat checkpoint"):
        ff.Checkpoint.load(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ff.Checkpoint.load(tmp_path / "nothing.npz")
    assert issubclass(ff.CheckpointError, ValueError)


def test_checkpoint_save_uses_unique_temp_names_and_fsync(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    opened = []
    real_open = open

    def spy_open(file, *args, **kw):
        opened.append(os.fspath(file))
        return real_open(file, *args, **kw)

    monkeypatch.setattr("builtins.open", spy_open)
    c = ff.Checkpoint(np.ones((3, 2)), np.ones(3), "relu", 4)
    path = tmp_path / "c.npz"
    c.save(path)
    c.save(path)
    tmps = [p for p in opened if p.endswith(".tmp")]
    assert len(tmps) == 2 and tmps[0] != tmps[1] and all(p.startswith(str(path) + ".") for p in tmps)
    assert len(synced) >= 2  # the file before the rename (and the folder after it)
    assert sorted(os.listdir(tmp_path)) == ["c.npz"]  # no temporary file left behind
    assert ff.Checkpoint.load(path).step == 4


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path):
    path = tmp_path / "c.npz"
    stale = tmp_path / f"c.npz.{ckpt_module._host()}.999999999.abcd.tmp"  # no such process
    stale.write_bytes(b"partial")
    mine = tmp_path / f"c.npz.{ckpt_module._host()}.{os.getpid()}.beef.tmp"  # a live writer's
    mine.write_bytes(b"partial")
    ff.Checkpoint(np.ones((3, 2)), np.ones(3), "relu", 1).save(path)
    assert not stale.exists() and mine.exists()


def test_two_writers_of_one_path_never_collide(tmp_path):
    import threading

    path = tmp_path / "c.npz"
    errors = []

    def write(k):
        try:
            for _ in range(20):
                ff.Checkpoint(np.full((50, 40), float(k)), np.ones(50), "relu", k).save(path)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in (1, 2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    c = ff.Checkpoint.load(path)
    assert c.step in (1, 2) and np.all(c.W == c.step)  # one writer's file, whole


# ------------------------------------------------------------------------------------------ smaller ones


@pytest.mark.parametrize("where", ["teacher.W", "X", "y"])
def test_nan_put_into_the_objective_after_it_was_built_is_named(where):
    """Before: reported as divergence with "Lower lr" advice."""
    t = ff.Teacher.random(D, 2, activation="relu", seed=0)
    obj = ff.Population(t) if where.startswith("teacher") else ff.Empirical.sample(t, 30, seed=1)
    net = ff.TwoLayer.init(D, M, activation="relu", seed=1)
    if where == "teacher.W":
        t.W[0, 0] = np.nan
    else:
        getattr(obj, where)[0] = np.nan
    with pytest.raises(ValueError, match=f"{where} of the objective contains NaN") as info:
        ff.train(net, obj, steps=5, lr=0.1)
    assert "Lower lr" not in str(info.value)
    assert np.all(np.isfinite(net.W))


def test_nan_in_the_online_teacher_is_named():
    t = ff.Teacher.random(D, 2, activation="relu", seed=0)
    obj = ff.Online(t, batch_size=2)
    t.a[1] = np.inf
    net = ff.TwoLayer.init(D, M, activation="relu", seed=1)
    with pytest.raises(ValueError, match="teacher.a of the objective contains NaN"):
        ff.train(net, obj, steps=5, lr=0.1)


@pytest.mark.parametrize("bad", ["0.1", None, [0.1], True])
def test_a_schedule_returning_a_bad_type_names_the_schedule(bad):
    t = ff.Teacher.random(D, 2, activation="relu", seed=0)
    net = ff.TwoLayer.init(D, M, activation="relu", seed=1)
    with pytest.raises(TypeError, match="lr schedule returned"):
        ff.train(net, ff.Population(t), steps=5, lr=lambda s: bad)
    with pytest.raises(TypeError, match="lam_a schedule returned"):
        ff.train(net, ff.Population(t), steps=5, lr=0.1, reg=ff.WeightDecay(lambda s: bad))


def test_start_step_plus_steps_must_fit_int64():
    t = ff.Teacher.random(D, 2, activation="relu", seed=0)
    net = ff.TwoLayer.init(D, M, activation="relu", seed=1)
    with pytest.raises(ValueError, match="2\\*\\*63"):
        ff.train(net, ff.Population(t), steps=10, lr=0.1, start_step=2**63 - 5)


def test_three_stage_checks_everything_before_it_starts(monkeypatch):
    """Before: radius was checked after all three stages, and batch_size was ignored without n."""
    t = ff.Teacher.random(D, 2, activation="relu", seed=0)

    def no_training(*a, **k):
        raise AssertionError("three_stage ran before checking its arguments")

    from fastfeat.paper import protocol
    monkeypatch.setattr(protocol, "train", no_training)
    monkeypatch.setattr(protocol, "alignment", no_training)
    with pytest.raises(ValueError, match="radius"):
        ff.paper.three_stage(t, 8, radius=-0.1)
    with pytest.raises(ValueError, match="batch_size needs a sampled data set"):
        ff.paper.three_stage(t, 8, batch_size=4)
    with pytest.raises(ValueError, match="batch_size must be <= n"):
        ff.paper.three_stage(t, 8, n=10, batch_size=40)
    with pytest.raises(TypeError, match="renormalize must be True or False"):
        ff.paper.three_stage(t, 8, renormalize="no")
    with pytest.raises(TypeError, match="m must be an integer.*lr must be a real number"):
        ff.paper.three_stage(t, "8", lr="0.1")
    problems = ff.paper.argument_problems(t, 7, radius=-1, epochs=-1, colour="red")
    assert len(problems) == 4


def test_history_json_round_trip_after_forced_resume(tmp_path):
    t, net, path = _setup(tmp_path, metrics=("loss",))
    h = ff.train(net.copy(), ff.Population(t), steps=30, lr=0.1, log_every=5, checkpoint=path, resume="force",
                 metrics=("loss", "batch_loss"))
    h.save(tmp_path / "h.json")
    back = ff.History.load(tmp_path / "h.json")
    assert list(back.step) == list(h.step)
    json.loads((tmp_path / "h.json").read_text().replace("NaN", "null"))
    with zipfile.ZipFile(path) as z:
        assert "info.npy" in z.namelist()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_guarded_update_is_all_or_nothing(dtype):
    k = ff.kernels
    W = np.ones((5, 3), dtype)
    a = np.ones(5, dtype)
    gW = np.ones((5, 3), dtype)
    ga = np.ones(5, dtype)
    gW[4, 2] = HUGE_LR[dtype]  # only the last entry would overflow
    assert not k.guarded_update(W, a, gW, ga, HUGE_LR[dtype] / 2 if dtype == "float64" else 1.0)
    assert np.all(W == 1) and np.all(a == 1)
    gW[4, 2] = 1.0
    assert k.guarded_update(W, a, gW, ga, 0.5)
    assert np.all(W == 0.5) and np.all(a == 0.5)


@pytest.mark.parametrize("kind", ["online", "empirical", "population"])
def test_a_nan_put_into_the_target_after_building_the_objective_is_refused_before_training(kind):
    """The teacher's and the data's arrays are checked at every ff.train call (as the net's are): a NaN put
    there later raises ValueError naming the array, before any step, and the net is untouched."""
    teacher = ff.Teacher.random(4, 2, activation="relu", seed=0)
    obj = {"online": lambda: ff.Online(teacher, batch_size=1, seed=1),
           "empirical": lambda: ff.Empirical.sample(teacher, 32, seed=2),
           "population": lambda: ff.Population(teacher)}[kind]()
    net = ff.TwoLayer.init(4, 6, activation="relu", seed=3)
    before = net.copy()
    ff.train(net.copy(), obj, steps=2, lr=0.01)  # fine as built
    if kind == "empirical":
        obj.X[5, 1] = np.nan
        name = "X"
    else:
        teacher.W[1, 0] = np.nan
        name = "teacher.W"
    with pytest.raises(ValueError, match=name):
        ff.train(net, obj, steps=2, lr=0.01)
    assert np.array_equal(net.W, before.W) and np.array_equal(net.a, before.a)


def test_settings_whose_squares_overflow_and_bad_tiles_are_refused_naming_them():
    """noise = 1e300 used to be accepted and fail later with OverflowError; tile = nan / inf gave errors
    that did not name tile."""
    t = ff.Teacher.random(5, 2, activation="relu", seed=0)
    for make in (lambda: ff.Population(t, noise=1e300), lambda: ff.Online(t, noise=1e300),
                 lambda: ff.Empirical.sample(t, 10, noise=1e300), lambda: ff.paper.three_stage(t, 4, noise=1e300)):
        with pytest.raises(ValueError, match="noise"):
            make()
    for tile in (float("nan"), float("inf"), 2.5):
        with pytest.raises((TypeError, ValueError), match="tile"):
            ff.Population(t, tile=tile)


def test_a_dense_hessian_larger_than_memory_says_what_to_use(monkeypatch):
    """ff.hessian at m = 4096, d = 512 (P = 2.1e6, 32 TiB) used to fail with numpy's allocation error."""
    from fastfeat.analysis import hessian_ops
    net = ff.TwoLayer.init(6, 5, activation="relu", seed=1)
    pop = ff.Population(ff.Teacher.random(6, 2, seed=0))
    monkeypatch.setattr(hessian_ops, "_physical_memory", lambda: 1000)  # a machine of 1000 bytes
    for call in (lambda: ff.hessian(net, pop), lambda: ff.hessian_spectrum(net, pop)):
        with pytest.raises(MemoryError, match="hessian_vector"):
            call()
    assert ff.hessian_spectrum(net, pop, k=3, method="lanczos").eigenvalues.size == 3


def test_a_checkpoint_announcing_a_huge_array_is_a_checkpoint_error(tmp_path):
    """An altered header that announces an array larger than any memory raised MemoryError."""
    import zipfile
    net = ff.TwoLayer.init(4, 3, activation="relu", seed=1)
    path = str(tmp_path / "c.npz")
    ff.Checkpoint.of(net, 5).save(path)
    with zipfile.ZipFile(path) as z:
        parts = {n: z.read(n) for n in z.namelist()}
    w = bytearray(parts["W.npy"])
    w[:w.index(b"}") + 1] = bytearray(w[:w.index(b"}") + 1].replace(b"(3, 4)", b"(900000000000, 4)"))
    parts["W.npy"] = bytes(w)
    with zipfile.ZipFile(path, "w") as z:
        for n, data in parts.items():
            z.writestr(n, data)
    with pytest.raises(ff.CheckpointError, match="c.npz"):
        ff.Checkpoint.load(path)


def test_protocol_settings_that_break_a_stage_are_named(tmp_path, capsys):
    """erf, float32, init_scale = 1e6: stage 1 overflows float32; it used to end in "net.W contains NaN or
    Inf" (a net the user never set) and a traceback from fastfeat run. Now the stage and its settings are
    named, a scale whose square would overflow is refused before anything runs, and fastfeat run ends with
    one line and status 1."""
    t32 = ff.Teacher.random(6, 2, activation="erf", seed=0, dtype="float32")
    with pytest.raises(ff.TrainingDiverged, match="stage 1.*init_scale = 1e\\+06"):
        ff.paper.three_stage(t32, 8, dtype="float32", init_scale=1e6, epochs=1, epoch_steps=5)
    t = ff.Teacher.random(6, 2, seed=0)
    for key, value in (("row_norm", 1e200), ("row_norm", 1e-300), ("init_scale", 1e120), ("eta1", 1e-200)):
        with pytest.raises(ValueError, match=key):
            ff.paper.three_stage(t, 8, **{key: value})
    cfg = tmp_path / "c.toml"
    cfg.write_text('[teacher]\nd = 6\nm_star = 2\nactivation = "erf"\ndtype = "float32"\n'
                   '[protocol]\nm = 8\ndtype = "float32"\ninit_scale = 1e6\nepochs = 1\nepoch_steps = 5\n')
    from fastfeat import cli
    with pytest.raises(SystemExit) as info:
        cli.main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet", "--no-plots"])
    err = capsys.readouterr().err
    assert info.value.code == 1 and err.count("\n") == 1 and "stage 1" in err and "Traceback" not in err


def test_public_population_kernels_check_their_buffers():
    """A workspace of other sizes, a teacher of another d, an unknown activation code or gradient buffers of
    the wrong shape segfaulted or returned wrong numbers silently (loss 0.0 for code 99)."""
    from fastfeat import kernels as K
    t = ff.Teacher.random(6, 2, activation="relu", seed=0)
    net = ff.TwoLayer.init(6, 5, activation="relu", seed=1)
    W, a = net.W, net.a
    gW, ga = np.empty_like(W), np.empty_like(a)
    ws = K.population_workspace(5, 2, 6, W.dtype)
    code = K.ACTIVATION_CODES["relu"]
    ok = K.population_loss_grad(W, a, t.W, t.a, code, gW, ga, ws, True)
    assert ok == pytest.approx(ff.Population(t).loss(net), rel=1e-12)
    bad_calls = {
        "small workspace": (W, a, t.W, t.a, code, gW, ga, K.population_workspace(3, 2, 6, W.dtype), True),
        "teacher of another d": (W, a, np.ones((2, 4)), t.a, code, gW, ga, ws, True),
        "code 99": (W, a, t.W, t.a, 99, gW, ga, ws, True),
        "tanh (no kernel)": (W, a, t.W, t.a, K.ACTIVATION_CODES["tanh"], gW, ga, ws, True),
        "a tanh teacher": (W, a, t.W, t.a, K.population_code(code, K.ACTIVATION_CODES["tanh"]), gW, ga, ws, True),
        "a negative code": (W, a, t.W, t.a, -3, gW, ga, ws, True),
        "gradient of another shape": (W, a, t.W, t.a, code, np.empty((2, 6)), ga, ws, True),
    }
    for what, args in bad_calls.items():
        with pytest.raises(ValueError, match="population kernel"):
            K.population_loss_grad(*args)


def test_public_online_kernels_check_their_buffers():
    from fastfeat import kernels as K
    t = ff.Teacher.random(6, 2, activation="relu", seed=0)
    net = ff.TwoLayer.init(6, 5, activation="relu", seed=1)
    W, a = net.W, net.a
    gW, ga = np.empty_like(W), np.empty_like(a)
    code = K.ACTIVATION_CODES["relu"]
    for batch in (1, 3):
        ws = K.online_workspace(batch, 5, 6, W.dtype)
        assert np.isfinite(K.online_loss_grad(W, a, t.W, t.a, code, code, 0.0, 0, 0, gW, ga, ws))
        bad = {"workspace of another width": K.online_workspace(batch, 9, 6, W.dtype),
               "workspace of another d": K.online_workspace(batch, 5, 4, W.dtype)}
        for what, other in bad.items():
            with pytest.raises(ValueError, match="online kernel"):
                K.online_loss_grad(W, a, t.W, t.a, code, code, 0.0, 0, 0, gW, ga, other)
        with pytest.raises(ValueError, match="online kernel"):
            K.online_loss_grad(W, a, t.W, t.a, 99, code, 0.0, 0, 0, gW, ga, ws)
        with pytest.raises(ValueError, match="online kernel"):
            K.online_loss_grad(W, a, np.ones((2, 4)), t.a, code, code, 0.0, 0, 0, gW, ga, ws)
        with pytest.raises(ValueError, match="online kernel"):
            K.online_step(W, a, t.W, t.a, code, code, 0.0, 0, 0, 1e-3, K.REG_NONE, 0.0, 0.0,
                          K.online_workspace(batch, 9, 6, W.dtype))


def test_public_empirical_kernels_check_their_buffers():
    from fastfeat import kernels as K
    net = ff.TwoLayer.init(6, 5, activation="relu", seed=1)
    W, a = net.W, net.a
    X = np.random.default_rng(0).standard_normal((9, 6))
    y = np.ones(9)
    gW, ga = np.empty_like(W), np.empty_like(a)
    code = K.ACTIVATION_CODES["relu"]
    ws = K.empirical_workspace(9, 5, 6, W.dtype)
    idx = np.empty(0, np.int64)
    assert np.isfinite(K.empirical_loss_grad(W, a, X, y, idx, code, gW, ga, ws, True))
    bad = {"workspace of another width": (W, a, X, y, idx, code, gW, ga, K.empirical_workspace(9, 3, 6, W.dtype), True),
           "X of another d": (W, a, X[:, :4], y, idx, code, gW, ga, ws, True),
           "code 99": (W, a, X, y, idx, 99, gW, ga, ws, True),
           "gradient of another shape": (W, a, X, y, idx, code, np.empty((5, 2)), ga, ws, True)}
    for what, args in bad.items():
        with pytest.raises(ValueError, match="empirical kernel"):
            K.empirical_loss_grad(*args)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_guard_is_one_rule_compiled_as_written(dtype):
    """The divergence guard of every kernel (``fastfeat.math.guard``): a step is refused unless
    |w| + lr |g| < max_float / 4, also when w - lr g itself would be small (w and lr g both huge), and
    always for a NaN or infinite gradient, even with step size 0. The CPU build (inlined into the
    kernels, with their fast-math flags) gives what the plain Python rule gives."""
    import numba

    from fastfeat.kernels.cpu.scalar import fits as fits_cpu
    from fastfeat.kernels.cpu.scalar import guard_limit
    from fastfeat.math import guard

    ft = np.dtype(dtype).type
    big = guard.limit(dtype)
    assert big == ft(np.finfo(ft).max / 4) and guard_limit(np.zeros(1, dtype)) == big

    @numba.njit
    def compiled(w, g, lr, big):
        return fits_cpu(w, g, lr, big)

    cases = [(1.0, 2.0, 0.5, True), (big * 0.75, big * 0.75, 1.0, False),  # w - lr g = 0, yet refused
             (big * 0.5, big * 0.25, 1.0, True), (0.0, np.inf, 0.0, False), (0.0, np.nan, 1e-3, False),
             (-big * 0.9, -big * 0.2, 1.0, False), (1.0, -np.inf, 1e-3, False)]
    for w, g, lr, want in cases:
        w, g, lr = ft(w), ft(g), ft(lr)
        with np.errstate(invalid="ignore", over="ignore"):  # 0 * inf is NaN: refused, as compiled
            assert guard.fits(w, g, lr, big) == want, (w, g, lr)
        assert compiled(w, g, lr, big) == want, (w, g, lr)
