"""pytest-benchmark: "did this change make a step slower on this machine?"

In the normal suite (``addopts = --benchmark-disable``) each benchmark runs once, at tiny sizes, as a
smoke test of the benchmark code (float32 relu: the specializations the other tests compile anyway).
For real, at the sizes of issues 2 and 3 (several minutes, mostly compilation)::

    FASTFEAT_BENCH_REAL=1 python -m pytest tests/test_benchmarks.py --benchmark-enable --benchmark-only

and compare runs with ``--benchmark-autosave`` / ``--benchmark-compare``. ``extra_info`` carries the
effective GFLOP/s and the ratio to the GEMMs the step contains, measured in the same process.
"""
import os
import sys

import numpy as np
import pytest

pytest.importorskip("pytest_benchmark")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the benchmarks package

from benchmarks import _common as C  # noqa: E402
from benchmarks import compare  # noqa: E402

REAL = os.environ.get("FASTFEAT_BENCH_REAL", "") not in ("", "0")

SIZES = {
    "population": dict(C.POPULATION) if REAL else dict(m=48, m_star=3, d=17),
    "empirical": dict(C.EMPIRICAL) if REAL else dict(n=65, d=17, m=33, m_star=3),
    "online": dict(C.ONLINE) if REAL else dict(d=17, m=33, m_star=3, batch=1),
}
ONLINE_STEPS = 1000 if REAL else 10


def _record(benchmark, w, steps_per_call=1):
    """GFLOP/s and the ratio to the step's GEMMs, timed here (the benchmark's own stats, when enabled)."""
    repeat = 5 if REAL else 1
    t_step = C.best_time(lambda: w.run(steps_per_call), repeat=repeat) / steps_per_call
    k = 1 if w.kind != "online" else 100
    t_gemm = C.best_time(lambda: w.gemm(k), repeat=repeat) / k
    benchmark.extra_info["gflops"] = w.flops_per_step / t_step / 1e9
    benchmark.extra_info["gemm_ratio"] = t_step / t_gemm
    assert t_step > 0 and t_gemm > 0


def _moved_and_finite(w):
    assert np.all(np.isfinite(w.net.W)) and np.all(np.isfinite(w.net.a))
    assert not np.array_equal(w.net.W, w.W0)


def test_population_step(benchmark):
    w = C.population(**SIZES["population"], dtype="float32")
    w.run(1)  # compile outside the timing
    benchmark(w.run)
    _moved_and_finite(w)
    _record(benchmark, w)


@pytest.mark.skipif(not C.has_empirical(), reason="ff.Empirical not available")
def test_empirical_step(benchmark):
    w = C.empirical(**SIZES["empirical"], dtype="float32")
    w.run(1)
    benchmark(w.run)
    _moved_and_finite(w)
    _record(benchmark, w)


def test_masked_product(benchmark):
    rows, m, d = (1024, 2048, 256) if REAL else (40, 33, 17)
    bits, gemm, err = C.masked_product(rows, m, d, "float32")
    assert err < 1e-5
    benchmark(bits)
    repeat = 5 if REAL else 1
    benchmark.extra_info["gemm_over_bits"] = (C.best_time(gemm, repeat=repeat) / C.best_time(bits, repeat=repeat))


@pytest.mark.skipif(not C.has_online(), reason="ff.Online not available")
def test_online_steps(benchmark):
    w = C.online(**SIZES["online"], dtype="float32")
    w.run(ONLINE_STEPS)
    benchmark(w.run, ONLINE_STEPS)
    _moved_and_finite(w)
    _record(benchmark, w, ONLINE_STEPS)


@pytest.mark.skipif(not C.has_alignment(), reason="ff.metrics.alignment not available")
def test_alignment(benchmark):
    import fastfeat as ff

    p = SIZES["population"]
    teacher = ff.Teacher.random(p["d"], p["m_star"], seed=0, dtype="float32")
    net = ff.TwoLayer.init(p["d"], p["m"], seed=1, dtype="float32")
    ff.metrics.alignment(net, teacher, loss=False)
    res = benchmark(ff.metrics.alignment, net, teacher, loss=False)
    assert res["best_cos"].shape == (p["m_star"],)


# -- the comparison script's own honesty check, at tiny sizes -----------------------------------------

def test_numpy_population_peer_matches_fastfeat():
    p = SIZES["population"] if not REAL else dict(m=48, m_star=3, d=17)
    w = C.population(**p, dtype="float32")
    Wf, af = compare._one_step_ff(w, 1.0)
    peer = compare.NumpyPopulation(w.W0, w.a0, w.objective.teacher.W, w.objective.teacher.a, C.LAM)
    peer.step(1.0)
    diff = compare.rel_update_diff(np.float64(w.W0), np.float64(w.a0), Wf, af, *peer.weights())
    assert diff < 1e-4


@pytest.mark.skipif(not C.has_empirical(), reason="ff.Empirical not available")
def test_numpy_empirical_peer_matches_fastfeat():
    p = SIZES["empirical"] if not REAL else dict(n=65, d=17, m=33, m_star=3)
    w = C.empirical(**p, dtype="float32")
    Wf, af = compare._one_step_ff(w, 10.0)
    peer = compare.NumpyEmpirical(w.W0, w.a0, w.objective.X, w.objective.y, C.LAM)
    peer.step(10.0)
    diff = compare.rel_update_diff(np.float64(w.W0), np.float64(w.a0), Wf, af, *peer.weights())
    assert diff < 1e-4


def test_update_readme_touches_only_its_region(tmp_path):
    path = tmp_path / "README.md"
    head, tail = "# x\n\nintro\n\n## Performance\n\n", "\n## After\n\ntext\n"
    path.write_text(head + C.PERF_START + "\nintro\n" + C.PERF_END + tail)
    C.update_readme("scaling", "figure", path=str(path))
    C.update_readme("compare", "table 1", path=str(path))
    C.update_readme("compare", "table 2", path=str(path))
    C.update_readme("scaling", "figure 2", path=str(path))
    text = path.read_text()
    assert text.startswith(head) and text.endswith(C.PERF_END + tail)
    assert "table 2" in text and "table 1" not in text and "figure 2" in text and "figure\n" not in text
    assert text.index("intro") < text.index("table 2") < text.index("figure 2")
    assert text.count("perf-compare:start") == 1 and text.count("perf-scaling:start") == 1


def test_replace_marked_rewrites_only_its_block(tmp_path):
    path = tmp_path / "page.md"
    path.write_text("# page\n\n<!-- t:start -->\nold\n<!-- t:end -->\n\nafter\n")
    C.replace_marked(str(path), "t", "new\n")
    C.replace_marked(str(path), "t", "newer")
    assert path.read_text() == "# page\n\n<!-- t:start -->\nnewer\n<!-- t:end -->\n\nafter\n"
    with pytest.raises(SystemExit, match="no <!-- u:start -->"):
        C.replace_marked(str(path), "u", "x")


def test_machine_description():
    text = C.machine_description()
    assert "CPU" in text and "numba" in text and "BLAS" in text


def test_peak_rss_increase_sees_an_allocation():
    mib = C.peak_rss_increase_mib(lambda: np.ones(64 * 2**20 // 8).sum())
    assert np.isnan(mib) or mib > 40


def test_flow_benchmarks():
    """The asv class of bench_flow runs and counts gradients, and the docs' table is built from the
    results of a run (a made-up one here)."""
    from benchmarks import bench_flow as B

    bench = B.FlowToSmallLoss()
    bench.setup("auto")
    assert bench.track_gradients("auto") > 0 and bench.track_gradients("dop853") > 0
    res = lambda wall, evals, diff: dict(wall=wall, evals=evals, diff=diff)  # noqa: E731
    best = {"ff.auto": res(2.0, 100, 1e-7), "ff.dop853": res(8.0, 400, 1e-10),
            "scipy.RK45": res(9.0, 420, 5e-9), "scipy.DOP853": res(8.5, 400, 0.0)}
    rows = B.summary_rows(256, 3000.0, best)
    assert rows[0].startswith("| m = 256, t = 3000, rtol") and "`ff.flow` auto (default)" in rows[0]
    assert "4.25x vs DOP853, 4.50x vs RK45" in rows[0] and "| 100 |" in rows[0]
    assert rows[-1].startswith("| | `solve_ivp` RK45 / DOP853 | 9.0 s / 8.5 s | 420 / 400 |")
    table = B.docs_table([rows], "- CPU: test")
    assert table.startswith("| run | contender |") and table.endswith("- CPU: test")


def test_paper_regime_benchmark_runs():
    """The asv class of the paper's sizes sets up, steps, and reports a finite per-pair time."""
    from benchmarks import bench_population as B

    bench = B.PopulationPaperRegime()
    bench.setup(256, "erf", "float64")
    bench.time_step(256, "erf", "float64")
    ns = bench.track_ns_per_pair_one_thread(256, "erf", "float64")
    assert np.isfinite(ns) and ns > 0


def test_ode_benchmarks():
    """bench_ode's asv class runs, and its numpy version of the ODE agrees with ff.ode."""
    from benchmarks import bench_ode as B

    for cls in (B.OdeErf, B.OdeRelu):
        bench = cls()
        bench.setup((3, 2, 1.0))
        bench.time_ode((3, 2, 1.0))
    net, teacher = B.problem(3, 2, d=30)
    sol = B.run_numpy(net, teacher, 2.0)
    h = B.run_ff(net, teacher, 2.0)
    np.testing.assert_allclose(sol.y[:9, -1], h["Q"][-1].ravel(), rtol=1e-6)
