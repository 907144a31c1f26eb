"""ff.paper.three_stage: the paper's protocol end to end (docs/paper.md)."""
import time

import numpy as np
import pytest

import fastfeat as ff
from fastfeat.math.activations import kernel_matrix
from fastfeat.math.reference import features


def test_three_stage_recovers_the_teacher_within_a_minute():
    """The issue's must-show: relu_centered, d=20, m*=3 mixed signs, m=256, exact population objective."""
    teacher = ff.Teacher.random(d=20, m_star=3, activation="relu_centered", signs="mixed")
    # compile first (a one-time cost per dtype, about 30-60 s): the minute is for the protocol itself
    ff.train(ff.TwoLayer.init(20, 4, activation="relu_centered"), ff.Population(teacher), steps=1, lr=0.1,
             metrics=("loss", "alignment"))
    t0 = time.perf_counter()
    res = ff.paper.three_stage(teacher, 256)
    seconds = time.perf_counter() - t0
    assert seconds < 60, f"protocol took {seconds:.1f} s"
    al = res.alignment
    zero_loss = ff.Population(teacher).loss(ff.TwoLayer(np.zeros((2, 20)), np.zeros(2), "relu_centered"))
    assert res.config["zero_loss"] == pytest.approx(zero_loss, rel=1e-12)
    assert al["loss"] < 1e-3 * zero_loss
    assert np.all(al["best_cos"] > 0.99)
    np.testing.assert_allclose(al["captured_mass"], teacher.a, atol=0.05)
    assert al["far_mass"] < 0.05 * np.sum(np.abs(teacher.a))
    # one History per stage, each logging the diagnostics
    assert [h.info["stage"] for h in res.histories] == [1, 2, 3]
    assert list(res.stage1.step) == [0, 1] and list(res.stage2.step) == [0, 1]
    assert res.stage3.step[-1] == res.config["epochs"] * res.config["epoch_steps"]
    assert res.stage3["alignment.best_cos"].shape[1] == 3
    assert res.stage2["loss"][-1] < res.stage2["loss"][0]
    assert res.stage3["loss"][-1] < res.stage3["loss"][0]
    s = res.summary()
    assert s["relative_loss"] == pytest.approx(al["loss"] / zero_loss)


def test_stage1_is_one_step_of_minus_eta_grad_and_stage2_solves_the_normal_equations():
    teacher = ff.Teacher.random(d=6, m_star=2, activation="relu_centered", signs="mixed", seed=4)
    res = ff.paper.three_stage(teacher, 16, seed=2, eta1=3.0, renormalize=False, ridge=1e-2, balance=False,
                               epochs=0, metrics=("loss",))
    net0 = ff.TwoLayer.init(6, 16, activation="relu_centered", symmetric=True, seed=2)
    gW, _ = ff.Population(teacher).grad(net0)
    np.testing.assert_allclose(res.net.W, -3.0 * gW, rtol=1e-12, atol=1e-15)
    W = res.net.W
    G = kernel_matrix("relu_centered", W, W)
    b = kernel_matrix("relu_centered", W, teacher.W) @ teacher.a
    np.testing.assert_allclose((G + 1e-2 * np.mean(np.diag(G)) * np.eye(16)) @ res.net.a, b, rtol=1e-8, atol=1e-12)


def test_stage3_with_a_frozen_second_layer():
    """lr_a = 0: stage 3 trains W only; a stays as stage 2 (and the balancing) left it, bit for bit."""
    teacher = ff.Teacher.random(d=6, m_star=2, activation="erf", signs="mixed", seed=4)
    kw = dict(seed=2, epochs=2, epoch_steps=10, log_every=10, metrics=("loss",))
    before = ff.paper.three_stage(teacher, 16, epochs=0, **{k: v for k, v in kw.items() if k != "epochs"}).net
    res = ff.paper.three_stage(teacher, 16, lr_a=0.0, **kw)
    assert res.net.a.tobytes() == before.a.tobytes()
    assert not np.array_equal(res.net.W, before.W)
    assert res.config["lr_a"] == 0.0 and res.stage3.info["lr_a"] == 0.0
    assert res.stage3["loss"][-1] < res.stage3["loss"][0]
    with pytest.raises(ValueError, match="lr_a"):
        ff.paper.three_stage(teacher, 16, lr_a=-1.0)


def test_hessian_diagnostic_at_the_end():
    """hessian=True: the spectrum of the population loss + the last weight decay at the final net, with
    "near zero" at least the regularized gradient's norm; the summary carries it; tanh has none."""
    teacher = ff.Teacher.random(d=4, m_star=2, activation="relu_centered", signs="mixed", seed=1)
    res = ff.paper.three_stage(teacher, 8, epochs=2, epoch_steps=20, log_every=20, metrics=("loss",), hessian=True)
    lam = 1e-2 * 0.25
    assert res.config["hessian_lam"] == lam
    reg = ff.WeightDecay(lam)
    pop = ff.Population(teacher)
    ev = np.linalg.eigvalsh(ff.hessian(res.net, pop, reg))
    h = res.hessian
    np.testing.assert_allclose(h.eigenvalues, ev, rtol=1e-10, atol=1e-14)
    gW, ga = pop.grad(res.net, reg)
    assert h.tol >= np.sqrt(np.sum(gW**2) + np.sum(ga**2)) * (1 - 1e-12)
    assert h.n_zero == np.sum(np.abs(ev) <= h.tol) and h.n_negative == np.sum(ev < -h.tol)
    s = res.summary()["hessian"]
    assert s["n_params"] == 8 * 5 and s["smallest"] == pytest.approx(list(ev[:10])) and s["weight_decay"] == lam
    assert ff.paper.three_stage(teacher, 8, epochs=0, metrics=("loss",)).hessian is None
    with pytest.raises(ValueError, match="hessian"):
        ff.paper.three_stage(ff.Teacher.random(d=4, m_star=2, activation="tanh"), 8, n=50, hessian=True)


def test_three_stage_on_data_with_minibatches():
    teacher = ff.Teacher.random(d=5, m_star=2, activation="relu_centered", signs="mixed", seed=1)
    emp = ff.Empirical.sample(teacher, 400, seed=0)
    # stages 1-2 only: a solves the ridge normal equations on the features of the stage-1 weights
    net2 = ff.paper.three_stage(teacher, 24, n=400, ridge=1e-3, balance=False, epochs=0, metrics=("loss",)).net
    Phi = features("relu_centered", emp.X, net2.W)
    G = Phi.T @ Phi / 400
    np.testing.assert_allclose((G + 1e-3 * np.mean(np.diag(G)) * np.eye(24)) @ net2.a, Phi.T @ emp.y / 400,
                               rtol=1e-8, atol=1e-12)
    res = ff.paper.three_stage(teacher, 24, n=400, batch_size=50, ridge=1e-3, epochs=2, epoch_steps=16,
                               log_every=8, metrics=("loss", "alignment"))
    assert res.stage3.info["objective"] == "empirical"
    assert res.stage3.step[-1] == 32 and len(res.stage3) == 5
    assert emp.loss(res.net) < emp.loss(net2)
    assert np.isfinite(res.alignment["loss"])
