"""ff.metrics.alignment against a slow numpy reference, and its use as a training metric."""
import numpy as np
import pytest

import fastfeat as ff


def naive_alignment(W, a, Wt, even, radius, threshold):
    """Obviously-right loops over neurons (docs/conventions.md)."""
    m, ms = W.shape[0], Wt.shape[0]
    best = np.full(ms, 0.0 if even else -1.0)
    cap = np.zeros(ms)
    spread = np.zeros(ms)
    count = np.zeros(ms, int)
    far = 0.0
    nearest = np.full(m, -1)
    for j in range(m):
        nj = np.linalg.norm(W[j])
        nu = abs(a[j]) * nj
        if nj == 0:
            continue
        cos = np.array([np.clip(W[j] @ Wt[i] / (nj * np.linalg.norm(Wt[i])), -1, 1) for i in range(ms)])
        if even:
            cos = np.abs(cos)
        best = np.maximum(best, cos)
        i = int(np.argmax(cos))
        nearest[j] = i
        angle = np.arccos(cos[i])
        if angle <= radius:
            cap[i] += a[j] * nj
            spread[i] += nu * angle**2
            count[i] += 1
        else:
            far += nu
    mass = np.abs(a) * np.linalg.norm(W, axis=1)
    return dict(best_cos=best, captured_mass=cap, far_mass=far, angular_spread=spread, captured_count=count,
                balance_gap=np.max(np.abs(a**2 - np.sum(W**2, axis=1))), active_neurons=int(np.sum(mass > threshold)),
                M=W @ Wt.T, nearest=nearest, mass=mass)


# m = 2049 crosses the kernel's chunk of 2048 neurons
@pytest.mark.parametrize("activation,m", [("relu", 7), ("relu_centered", 2049), ("abs", 33)])
def test_alignment_matches_reference(activation, m):
    rng = np.random.default_rng(3)
    d, ms = 6, 3
    teacher = ff.Teacher.random(d, ms, activation=activation, seed=1)
    # neurons scattered around +-teacher directions and at random, some exactly zero
    W = rng.standard_normal((m, d))
    idx = rng.integers(0, ms, m)
    sign = rng.choice([-1.0, 1.0], m)
    W[: m // 2] = (sign[:, None] * teacher.W[idx] + 0.08 * W)[: m // 2]
    W *= rng.uniform(0.2, 2.0, (m, 1))
    a = rng.standard_normal(m)
    W[::5] = 0.0
    net = ff.TwoLayer(np.ascontiguousarray(W), a, activation)
    got = ff.metrics.alignment(net, teacher, radius=0.25, threshold=0.1, with_Q=True)
    ref = naive_alignment(W, a, teacher.W, activation != "relu", 0.25, 0.1)
    for k in ("best_cos", "captured_mass", "angular_spread", "M"):
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-10, atol=1e-12, err_msg=k)
    for k in ("far_mass", "balance_gap"):
        assert got[k] == pytest.approx(ref[k], rel=1e-10), k
    assert got["active_neurons"] == ref["active_neurons"]
    np.testing.assert_array_equal(got["captured_count"], ref["captured_count"])
    np.testing.assert_array_equal(got["nearest"], ref["nearest"])
    np.testing.assert_allclose(got["mass"], ref["mass"], rtol=1e-12)
    np.testing.assert_allclose(got["Q"], W @ W.T, rtol=1e-12, atol=1e-12)
    assert got["loss"] == pytest.approx(ff.Population(teacher).loss(net), rel=1e-12)


def test_alignment_teacher_is_perfect_and_no_closed_form_gives_nan():
    teacher = ff.Teacher.random(5, 2, activation="relu_centered", seed=0)
    # the teacher itself, with its even twin (-w, a) split in halves: all mass captured, loss 0
    W = np.concatenate([teacher.W, -teacher.W])
    a = np.concatenate([teacher.a, teacher.a]) / 2
    net = ff.TwoLayer(np.ascontiguousarray(W), a, "relu_centered")
    al = ff.metrics.alignment(net, teacher)
    np.testing.assert_allclose(al["best_cos"], 1.0)
    np.testing.assert_allclose(al["captured_mass"], teacher.a, rtol=1e-12)
    assert al["far_mass"] == 0.0 and al["loss"] == pytest.approx(0.0, abs=1e-12)
    # for relu, -w*_i is another neuron: the twins are far, not captured
    relu = ff.metrics.alignment(ff.TwoLayer(net.W, net.a, "relu"), ff.Teacher(teacher.W, teacher.a, "relu"))
    np.testing.assert_allclose(relu["captured_mass"], teacher.a / 2, rtol=1e-12)
    assert relu["far_mass"] == pytest.approx(np.sum(np.abs(teacher.a)) / 2, rel=1e-12)
    tanh_teacher = ff.Teacher(teacher.W, teacher.a, "tanh")
    assert np.isnan(ff.metrics.alignment(ff.TwoLayer(net.W, net.a, "tanh"), tanh_teacher)["loss"])
    with pytest.raises(ValueError, match="radius"):
        ff.metrics.alignment(net, teacher, radius=-1.0)


def test_alignment_is_a_training_metric():
    teacher = ff.Teacher.random(5, 2, activation="relu_centered", seed=0)
    net = ff.TwoLayer.init(5, 8, activation="relu_centered", seed=2)
    hist = ff.train(net, ff.Population(teacher), steps=4, lr=0.1, log_every=2, metrics=("loss", "alignment"))
    assert hist["alignment.best_cos"].shape == (3, 2)
    assert hist["alignment.captured_mass"].shape == (3, 2)
    assert "alignment.M" not in hist.metrics
    np.testing.assert_allclose(hist["alignment.loss"], hist["loss"], rtol=1e-12)
    final = ff.metrics.alignment(net, teacher)
    np.testing.assert_allclose(hist["alignment.best_cos"][-1], final["best_cos"], rtol=1e-12)
    from fastfeat.training.common import check_metrics

    with pytest.raises(ValueError, match="needs a teacher"):
        check_metrics(("alignment",), None)
