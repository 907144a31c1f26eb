"""Compile once: the kernels load from numba's disk cache in a new process, a source change never loads
stale machine code, and ``fastfeat warmup`` covers what the objectives call."""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

import fastfeat as ff
from fastfeat.kernels import _cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(ff.__file__)))


def _python(code, env=None, cwd=None, timeout=600, unset=()):
    """Run ``code`` in a new interpreter with this environment, updated by ``env`` and without the
    variables ``unset``; returns its stdout (fails the test on a non-zero exit)."""
    full = {k: v for k, v in os.environ.items() if k not in unset}
    full.update(env or {})
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=full,
                       cwd=cwd, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


# counts, over every dispatcher defined in a fastfeat module, the signatures compiled in this process
# (cache misses) and loaded from the cache (hits)
_STATS = """
import sys, json
def _stats():
    hits = misses = 0
    missed = []
    for name, mod in list(sys.modules.items()):
        if not name.startswith("fastfeat"):
            continue
        for v in vars(mod).values():
            st = getattr(v, "stats", None)
            py = getattr(v, "py_func", None)
            if st is None or py is None or py.__module__ != name or not hasattr(st, "cache_hits"):
                continue
            hits += sum(st.cache_hits.values())
            misses += sum(st.cache_misses.values())
            missed += [f"{name}.{py.__name__}{k}" for k in st.cache_misses]
    return {"hits": hits, "misses": misses, "missed": missed[:20]}
"""

_SMALL_RUNS = _STATS + """
import numpy as np
import fastfeat as ff
t = ff.Teacher.random(6, 2, activation="relu", seed=0)
ff.train(ff.TwoLayer.init(6, 8, seed=1), ff.Population(t), steps=3, lr=0.1, reg=ff.WeightDecay(1e-3), log_every=1)
t32 = t.astype("float32")
ff.train(ff.TwoLayer.init(6, 8, seed=1, dtype="float32"), ff.Empirical.sample(t32, 40, seed=1), steps=3, lr=0.1)
ff.train(ff.TwoLayer.init(6, 8, seed=1, dtype="float32"), ff.Online(t32), steps=40, lr=0.01, log_every=20)
print(json.dumps(_stats()))
"""


def test_locator_covers_the_package_and_hashes_imports():
    """Every module-level kernel is cached through fastfeat's locator; the stamp of a kernel module covers
    the modules it imports (the activation table, the regularizer terms) and not unrelated ones."""
    from fastfeat.kernels.cpu import common, population
    assert isinstance(population.run._cache._impl.locator, _cache.FastfeatCacheLocator)
    deps = {os.path.relpath(p, os.path.dirname(ff.__file__)) for p in _cache.dependencies(population.__file__)}
    assert {os.path.join("math", "activations.py"), os.path.join("math", "regularizer.py"),
            os.path.join("kernels", "cpu", "scalar.py"), os.path.join("kernels", "cpu", "_blas.py")} <= deps
    assert not deps & {os.path.join("paper", "protocol.py"), "cli.py", os.path.join("training", "gd.py")}
    assert os.path.join("kernels", "cpu", "online_single.py") not in {
        os.path.relpath(p, os.path.dirname(ff.__file__)) for p in _cache.dependencies(common.__file__)}


def test_warm_cache_after_warmup():
    """In the test process's own cache (CI runs ``fastfeat warmup`` first): a new process running the small
    runs compiles nothing. Without a prior warm-up the first run of this test fills the cache itself."""
    _python(_SMALL_RUNS)
    stats = json.loads(_python(_SMALL_RUNS).strip().splitlines()[-1])
    assert stats["misses"] == 0, stats["missed"]


_REG_VALUE = """
import numpy as np, json
from fastfeat.kernels.cpu import common
W = np.ones((3, 4)); a = np.full(3, 2.0)
v = common.reg_value(W, a, common.REG_WEIGHT_DECAY, 1.0, 1.0)
st = common.reg_value.stats
print(json.dumps({"value": float(v), "hits": sum(st.cache_hits.values()), "misses": sum(st.cache_misses.values())}))
"""


def test_source_change_in_a_dependency_never_loads_stale_code(tmp_path):
    """A copy of the package with its own cache: after editing the regularizer's terms (a file the cached
    kernel only imports), the kernel is compiled anew and returns the new value; after editing a module it
    does not import, the cache entry is still used."""
    pkg = tmp_path / "src"
    shutil.copytree(os.path.join(ROOT, "fastfeat"), pkg / "fastfeat",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(pkg)}
    run = lambda: json.loads(_python(_REG_VALUE, env, cwd=str(tmp_path)).strip().splitlines()[-1])  # noqa: E731
    first = run()
    assert first["value"] == pytest.approx(0.5 * (12 + 3 * 4)) and first["misses"] == 1
    assert _compiled_files(tmp_path / "cache") and not _compiled_files(pkg)  # NUMBA_CACHE_DIR is honoured
    assert run()["hits"] == 1
    # an edit of a module the kernel does not import: still cached
    paper = pkg / "fastfeat" / "paper" / "protocol.py"
    paper.write_text(paper.read_text() + "\n# edited\n")
    again = run()
    assert again["hits"] == 1 and again["misses"] == 0
    # the one definition of the terms, edited: R = lam_a/4 |a|^2 + ... must show at once
    reg = pkg / "fastfeat" / "math" / "regularizer.py"
    src = reg.read_text()
    assert "return 0.5 * (lam_a * aj * aj + lam_w * nw * nw)" in src
    reg.write_text(src.replace("return 0.5 * (lam_a * aj * aj + lam_w * nw * nw)",
                               "return 0.25 * (lam_a * aj * aj + lam_w * nw * nw)"))
    edited = run()
    assert edited["misses"] == 1 and edited["value"] == pytest.approx(0.25 * (12 + 3 * 4))


def test_warmup_cli(tmp_path):
    """``fastfeat warmup`` runs its tasks with a progress line per task; bad options are clear errors."""
    r = subprocess.run([sys.executable, "-m", "fastfeat.cli", "warmup", "--task", "paper", "--dtype", "float64",
                        "--processes", "1"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "fastfeat warmup [1/1] paper float64:" in r.stderr
    bad = subprocess.run([sys.executable, "-m", "fastfeat.cli", "warmup", "--task", "nope"], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "fastfeat: error: --task" in bad.stderr and "Traceback" not in bad.stderr
    both = subprocess.run([sys.executable, "-m", "fastfeat.cli", "warmup", "--all", "--task", "paper"],
                          capture_output=True, text=True, timeout=120)
    assert both.returncode == 2 and "--all" in both.stderr and "Traceback" not in both.stderr
    with pytest.raises(ValueError, match="tasks"):
        ff.kernels.warmup(tasks=["nope"])
    with pytest.raises(ValueError, match="dtypes"):
        ff.kernels.warmup(dtypes=["float16"])


def test_default_warmup_tasks():
    """The default warm-up is what training and ``fastfeat run`` call; the flow and ODE integrators (one
    float64 job each for both float types), online SGD's large-batch build and ``Online.grad``, the
    population kernels' parallel build, and the
    public kernels' other argument forms, are warmed up on request (``--task``, ``--all``)."""
    from fastfeat.kernels import _warmup
    assert set(_warmup.DEFAULT_TASKS) == {"online", "empirical", "population", "paper"}
    for optional in ("kernels", "online_extra", "flow", "ode", "wide"):
        assert optional in _warmup.TASKS and optional not in _warmup.DEFAULT_TASKS
    done = ff.kernels.warmup(tasks=["flow"], processes=1, progress=False)
    assert [(n, dt) for n, dt, _ in done] == [("flow", "float64")]
    assert ff.kernels.warmup(("float32",), tasks=["flow"], processes=1, progress=False) == []
    with pytest.raises(ValueError, match="dtypes"):
        _warmup.register("bad", lambda dt: None, dtypes=("float16",))


def test_cache_dirs_reported():
    dirs = _cache.cache_dirs()
    assert dirs and all(os.path.isdir(d) for d in dirs)
    assert np.all([isinstance(d, str) for d in dirs])
    root = _cache.cache_root()
    assert all(d.startswith(os.path.join(root, "")) for d in dirs), (root, dirs)
    from fastfeat import cli
    with open(os.devnull, "w") as null:
        lines = cli.info(file=null)
    assert any(line.startswith("kernel cache: ") and root in line for line in lines)


def _compiled_files(folder):
    return sorted(os.path.join(p, f) for p, _, files in os.walk(folder) for f in files
                  if f.endswith((".nbi", ".nbc")))


def test_nothing_is_written_inside_the_package():
    """The kernels this process ran are cached in the per-user folder, none beside the source: a folder
    written into site-packages outlives ``pip uninstall`` as an empty namespace package that shadows a
    later install, and cannot be written where the installation is read-only."""
    ff.kernels.row_norms(np.ones((2, 3)), np.empty(2))
    assert _compiled_files(os.path.dirname(ff.__file__)) == []
    assert not os.path.abspath(_cache.cache_root()).startswith(os.path.join(os.path.dirname(ff.__file__), ""))


def test_default_cache_folder_is_per_user_and_shared_by_installs(tmp_path):
    """Without NUMBA_CACHE_DIR the kernels go to the platform's per-user cache folder
    (``$XDG_CACHE_HOME/fastfeat`` on Linux), under the numba version and the module's path in the package,
    and two copies of the same source (a regular and an editable install) share the entries."""
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg"), "PYTHONDONTWRITEBYTECODE": "1"}
    copies = []
    for name in ("site", "checkout"):
        pkg = tmp_path / name
        shutil.copytree(os.path.join(ROOT, "fastfeat"), pkg / "fastfeat",
                        ignore=shutil.ignore_patterns("__pycache__"))
        copies.append(pkg)

    def run(pkg):
        out = _python(_REG_VALUE, dict(env, PYTHONPATH=str(pkg)), cwd=str(tmp_path), unset=("NUMBA_CACHE_DIR",))
        return json.loads(out.strip().splitlines()[-1])

    first = run(copies[0])
    assert first["misses"] == 1 and first["value"] == pytest.approx(12.0)
    assert run(copies[1])["hits"] == 1  # the other copy loads what the first compiled
    files = _compiled_files(tmp_path / "xdg")
    where = os.path.join(str(tmp_path / "xdg"), "fastfeat", f"numba-{numba.__version__}", "fastfeat", "kernels",
                         "cpu")
    assert files and all(f.startswith(where + os.sep) for f in files), files
    for pkg in copies:
        assert _compiled_files(pkg) == []


_ROW_NORMS = """
import json, warnings
import numpy as np
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from fastfeat.kernels.cpu.common import row_norms
    out = np.empty(3)
    row_norms(np.arange(6.0).reshape(3, 2), out)
    st = row_norms.stats
print(json.dumps({"norms": out.tolist(), "hits": sum(st.cache_hits.values()), "misses": sum(st.cache_misses.values()),
                  "warnings": [str(w.message) for w in caught if "damaged" in str(w.message)]}))
"""


def test_a_damaged_cache_file_is_a_miss_that_gets_repaired(tmp_path):
    """A truncated, emptied or overwritten .nbi / .nbc of a fastfeat kernel: the next process compiles the
    kernel again with one warning naming the file and replaces the file; the one after loads it. (The four
    kinds of damage one after another on one cache: each starts from the repaired files of the last.)"""
    env = {"NUMBA_CACHE_DIR": str(tmp_path)}
    first = json.loads(_python(_ROW_NORMS, env))
    assert first["misses"] == 1 and not first["warnings"]
    for damage in ("empty index", "garbage index", "truncated data", "garbage data"):
        files = sorted(p for p in tmp_path.rglob("common.row_norms-*") if p.suffix in (".nbi", ".nbc"))
        index = [p for p in files if p.suffix == ".nbi"]
        data = [p for p in files if p.suffix == ".nbc"]
        assert index and data, damage
        target = index[0] if "index" in damage else data[0]
        raw = target.read_bytes()
        target.write_bytes({"empty index": b"", "garbage index": b"\x80\x05garbage" * 7,
                            "truncated data": raw[: len(raw) // 3],
                            "garbage data": (bytes(range(256)) * (len(raw) // 256 + 1))[:len(raw)]}[damage])
        again = json.loads(_python(_ROW_NORMS, env))
        assert again["norms"] == first["norms"] and again["misses"] == 1, damage
        assert len(again["warnings"]) == 1 and target.name in again["warnings"][0], damage
    last = json.loads(_python(_ROW_NORMS, env))
    assert last["hits"] == 1 and last["misses"] == 0 and not last["warnings"]


def test_compiled_here_and_loaded_from_the_cache_give_the_same_bits(tmp_path):
    """A kernel compiled by the process that runs it and the same kernel loaded from the disk cache by
    another process give the same bits. Before, the compiling process ran the callees' own libraries
    while the cache stored the re-optimized copies linked into the caller's module: the population
    gradient at m = 17, d = 33 differed in 268 of 561 entries (relu, float64) and ff.train's weights after
    5 steps in 13. This test compiles the population kernels into an empty cache folder (about 30 s: what
    it checks is that compilation itself)."""
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    worker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cache_bits_worker.py")
    outs = []
    for name in ("compiled", "loaded"):
        out = str(tmp_path / f"{name}.npz")
        _python(f"import runpy, sys; sys.argv = [{worker!r}, {out!r}]; runpy.run_path({worker!r}, run_name='__main__')",
                env=env)
        outs.append(np.load(out))
    compiled, loaded = outs
    assert sorted(compiled.files) == sorted(loaded.files) and len(compiled.files) == 8
    differ = {k: int(np.sum(compiled[k] != loaded[k])) for k in compiled.files}
    assert not any(differ.values()), differ
