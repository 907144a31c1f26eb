"""What the asv suite, ``compare.py``, ``scaling.py`` and ``tests/test_benchmarks.py`` share.

The workloads (one gradient step of each objective at fixed sizes), their flop counts, the GEMMs each
step contains (the roof), timing and memory helpers, and the machine description.

Import this module before torch or jax: importing fastfeat sets ``OMP_WAIT_POLICY=PASSIVE`` before
numba starts its OpenMP pool (see the README's environment variables).
"""
import math
import os
import platform
import subprocess
import sys
import time

import fastfeat as ff  # first: sets OMP_WAIT_POLICY before any OpenMP runtime starts
import numba
import numpy as np

#: issue 2: one population GD step (relu, weight decay)
POPULATION = dict(m=4096, m_star=16, d=128)
#: issue 3: one full-batch empirical GD step (relu, weight decay)
EMPIRICAL = dict(n=8192, d=256, m=2048, m_star=16)
#: issue 3: online SGD, batch 1 (relu, no regularizer)
ONLINE = dict(d=128, m=1024, m_star=16, batch=1)
#: the sizes of the paper's experiments: one population GD step in float64 (relu, weight decay)
PAPER = dict(m=256, m_star=3, d=20)

ACTIVATION = "relu"
LAM = 1e-3  # weight decay of the population and empirical steps


def lr_for(m):
    """A step size that keeps every workload stable over thousands of steps (the a-block of the
    Hessian has largest eigenvalue ~ m/4 at this initialization)."""
    return 0.1 / m


# ----------------------------------------------------------------------------------------------------
# feature detection: parts of the API other issues are still building
# ----------------------------------------------------------------------------------------------------

def has_empirical():
    return hasattr(ff, "Empirical")


def has_online():
    return hasattr(ff, "Online")


def has_alignment():
    return callable(getattr(getattr(ff, "metrics", None), "alignment", None))


# ----------------------------------------------------------------------------------------------------
# flop counts (the straightforward algorithm's multiply-adds x 2; GFLOP/s below are "effective")
# ----------------------------------------------------------------------------------------------------

def population_flops(m, m_star, d):
    """Gram matrices W W^T, W W*^T and the products B W, B* W*: 4 m (m + m*) d. fastfeat exploits the
    symmetry of W W^T and does 3 m^2 d of them, so its effective rate can exceed the GEMM rate."""
    return 4.0 * m * (m + m_star) * d


def empirical_flops(n, m, d):
    """Pre-activations X W^T and the gradient D^T X: 4 n m d."""
    return 4.0 * n * m * d


def online_flops(batch, m, d):
    """Per step: W x (2 m d per sample) and the rank-``batch`` update (2 m d per sample)."""
    return 4.0 * batch * m * d


# ----------------------------------------------------------------------------------------------------
# the workloads, through the public API
# ----------------------------------------------------------------------------------------------------

class Workload:
    """A net, an objective and a regularizer; ``run(k)`` does k steps in one ``ff.train`` call
    (one compiled call, no metrics), ``reset()`` restores the initial weights."""

    def __init__(self, kind, net, objective, reg, lr, flops_per_step, gemm):
        self.kind = kind
        self.net = net
        self.objective = objective
        self.reg = reg
        self.lr = lr
        self.flops_per_step = flops_per_step
        self.gemm = gemm  # callable: the products one step contains, in numpy/BLAS
        self.W0 = net.W.copy()
        self.a0 = net.a.copy()

    def run(self, k=1, n_threads=None):
        ff.train(self.net, self.objective, steps=k, lr=self.lr, reg=self.reg, log_every=k, metrics=(),
                 n_threads=n_threads)

    def reset(self):
        self.net.W[...] = self.W0
        self.net.a[...] = self.a0


def population(m=POPULATION["m"], m_star=POPULATION["m_star"], d=POPULATION["d"], dtype="float32",
               activation=ACTIVATION, seed=0):
    teacher = ff.Teacher.random(d, m_star, activation=activation, signs="mixed", seed=seed, dtype=dtype)
    net = ff.TwoLayer.init(d, m, activation=activation, seed=seed + 1, dtype=dtype)
    gemm = population_gemms(m, d, dtype, seed)
    return Workload("population", net, ff.Population(teacher), ff.WeightDecay(LAM), lr_for(m),
                    population_flops(m, m_star, d), gemm)


def empirical(n=EMPIRICAL["n"], d=EMPIRICAL["d"], m=EMPIRICAL["m"], m_star=EMPIRICAL["m_star"],
              dtype="float32", activation=ACTIVATION, seed=0):
    teacher = ff.Teacher.random(d, m_star, activation=activation, signs="mixed", seed=seed, dtype=dtype)
    net = ff.TwoLayer.init(d, m, activation=activation, seed=seed + 1, dtype=dtype)
    objective = ff.Empirical.sample(teacher, n, seed=seed + 2)
    gemm = empirical_gemms(n, m, d, dtype, seed)
    return Workload("empirical", net, objective, ff.WeightDecay(LAM), lr_for(m),
                    empirical_flops(n, m, d), gemm)


def online(d=ONLINE["d"], m=ONLINE["m"], m_star=ONLINE["m_star"], batch=ONLINE["batch"], dtype="float32",
           activation=ACTIVATION, seed=0):
    teacher = ff.Teacher.random(d, m_star, activation=activation, signs="mixed", seed=seed, dtype=dtype)
    net = ff.TwoLayer.init(d, m, activation=activation, seed=seed + 1, dtype=dtype)
    objective = ff.Online(teacher, batch_size=batch, seed=seed + 2)
    gemm = online_gemms(batch, m, d, dtype, seed)
    return Workload("online", net, objective, None, lr_for(m), online_flops(batch, m, d), gemm)


# ----------------------------------------------------------------------------------------------------
# the GEMMs each step contains, as preallocated numpy/BLAS calls (the roof)
# ----------------------------------------------------------------------------------------------------

def population_gemms(m, d, dtype, seed=0):
    """``G = W W^T`` and ``G W``: two m x m x d products (4 m^2 d flops)."""
    rng = np.random.default_rng(seed)
    W = (rng.standard_normal((m, d)) / math.sqrt(d)).astype(dtype)
    G = np.empty((m, m), dtype)
    out = np.empty((m, d), dtype)

    def gemms(k=1):
        for _ in range(k):
            np.dot(W, W.T, G)
            np.dot(G, W, out)

    return gemms


def empirical_gemms(n, m, d, dtype, seed=0):
    """``Z = X W^T`` (n x d x m) and ``D^T X`` (m x n x d): the two n x m x d products (4 n m d flops).
    Z is n x m here, which is exactly what fastfeat's tiled kernel avoids materializing."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(dtype)
    W = (rng.standard_normal((m, d)) / math.sqrt(d)).astype(dtype)
    Z = np.empty((n, m), dtype)
    out = np.empty((m, d), dtype)

    def gemms(k=1):
        for _ in range(k):
            np.dot(X, W.T, Z)
            np.dot(Z.T, X, out)

    return gemms


def masked_product(rows, m, d, dtype, seed=0):
    """The weight-gradient product of one tile of fastfeat's relu empirical kernel, two ways, on the same
    data: ``bits`` (fastfeat.kernels.cpu.masked: ``S = M^T Y`` with M a random 0/1 ``rows x m`` matrix
    given as sign bits) and ``gemm`` (numpy's BLAS on M stored as 0.0/1.0). Returns (bits, gemm, error):
    the largest difference of the two results relative to the largest entry."""
    from fastfeat.kernels.cpu import masked

    rng = np.random.default_rng(seed)
    rows = max(8, rows // 8 * 8)
    M = rng.random((rows, m)) < 0.5
    b, S, Y, tabs, plan = masked.workspace(m, d, rows, dtype, numba.config.NUMBA_NUM_THREADS)
    for i in range(8):
        b |= M[i::8].astype(np.uint8) << i
    Y[:rows, :d] = rng.standard_normal((rows, d))
    Mf = M.astype(dtype)
    Yd = np.ascontiguousarray(Y[:rows, :d])
    out = np.empty((m, d), dtype)

    def bits(k=1):
        for _ in range(k):
            masked.masked_tn(b, Y, S, tabs, rows, False, plan)

    def gemm(k=1):
        for _ in range(k):
            np.dot(Mf.T, Yd, out)

    bits()
    gemm()
    err = float(np.abs(S[:, :d] - out).max() / max(np.abs(out).max(), 1e-300))
    return bits, gemm, err


def online_gemms(batch, m, d, dtype, seed=0):
    """``k`` steps of: ``z = W x`` and the rank-``batch`` update ``W += c x^T``, one BLAS call each
    (gemv/ger for batch 1, gemm otherwise) on preallocated arrays, with BLAS limited to one thread
    (threaded OpenBLAS ger on a 1024 x 128 matrix was measured 200x slower than single-threaded)."""
    from scipy.linalg import blas
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    W = (rng.standard_normal((m, d)) / math.sqrt(d)).astype(dtype)
    X = rng.standard_normal((batch, d)).astype(dtype)
    C = (1e-6 * rng.standard_normal((batch, m))).astype(dtype)
    Z = np.empty((batch, m), dtype)
    if batch == 1:
        ger = blas.sger if np.dtype(dtype) == np.float32 else blas.dger
        WT = W.T  # Fortran-ordered view: BLAS updates it in place
        x, c, z = X[0], C[0], Z[0]

        def one():
            np.dot(W, x, z)
            ger(1.0, x, c, a=WT, overwrite_a=True)
    else:
        upd = np.empty((m, d), dtype)

        def one():
            np.dot(X, W.T, Z)
            np.dot(C.T, X, upd)
            np.add(W, upd, out=W)

    def steps(k=1):
        with threadpool_limits(limits=1, user_api="blas"):
            for _ in range(k):
                one()

    return steps


# ----------------------------------------------------------------------------------------------------
# timing and memory
# ----------------------------------------------------------------------------------------------------

def best_time(fn, *, repeat=5, number=1, before=None):
    """min over ``repeat`` rounds of the mean time of ``number`` calls (seconds); ``before()`` runs
    untimed before each round."""
    best = math.inf
    for _ in range(repeat):
        if before is not None:
            before()
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


def interleaved_best(contenders, *, repeat=5):
    """Time several ``name -> (fn, number, before)`` round-robin (one round of each per repeat, so that
    load changes on a shared machine hit all alike) and return ``name -> best seconds per call``."""
    best = {name: math.inf for name in contenders}
    for _ in range(repeat):
        for name, (fn, number, before) in contenders.items():
            if before is not None:
                before()
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            best[name] = min(best[name], (time.perf_counter() - t0) / number)
    return best


def _status_kib(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_increase_mib(fn):
    """How far ``fn()`` raises the process's peak resident memory above its resident memory before the
    call, in MiB (Linux: resets the high-water mark through /proc/self/clear_refs). NaN elsewhere."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return float("nan")
    before = _status_kib("VmRSS")
    fn()
    peak = _status_kib("VmHWM")
    if before is None or peak is None:
        return float("nan")
    return max(peak - before, 0) / 1024.0


# ----------------------------------------------------------------------------------------------------
# compile time of the first call, in a fresh interpreter
# ----------------------------------------------------------------------------------------------------

_COMPILE_SNIPPET = """
import importlib.util, time
spec = importlib.util.spec_from_file_location("_ff_bench_common", {path!r})
c = importlib.util.module_from_spec(spec)
spec.loader.exec_module(c)  # imports the installed fastfeat (the interpreter runs in a temporary dir)
w = c.{kind}(**{sizes!r}, dtype={dtype!r})
t0 = time.perf_counter()
w.run(1)
print(time.perf_counter() - t0)
"""

#: tiny sizes: the first call's time is then all compilation
COMPILE_SIZES = {
    "population": dict(m=32, m_star=4, d=8),
    "empirical": dict(n=64, m=32, m_star=4, d=8),
    "online": dict(m=32, m_star=4, d=8),
}


def compile_seconds(kind, dtype="float32", timeout=900):
    """Seconds the first ``ff.train`` step of ``kind`` takes in a fresh interpreter (compilation).

    The interpreter runs in a temporary directory, so it imports the fastfeat installed in (or put on
    PYTHONPATH for) this environment, as asv benchmarks a commit's build, not the working tree."""
    import tempfile

    code = _COMPILE_SNIPPET.format(path=os.path.abspath(__file__), kind=kind, sizes=COMPILE_SIZES[kind],
                                   dtype=dtype)
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                             check=True, cwd=tmp)
    return float(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------------
# the machine
# ----------------------------------------------------------------------------------------------------

def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return [x for x in ("avx2", "fma", "avx512f") if x in flags]
    except OSError:
        pass
    return []


def blas_description():
    """The BLAS libraries loaded (numpy's, and scipy's, which numba's np.dot calls)."""
    try:
        from threadpoolctl import threadpool_info
        import scipy.linalg  # noqa: F401  (loads scipy's BLAS)
        out = []
        for info in threadpool_info():
            if info.get("user_api") == "blas":
                owner = os.path.basename(os.path.dirname(info.get("filepath", "")))
                out.append(f"{info.get('internal_api')} {info.get('version')} in {owner} "
                           f"({info.get('architecture')}, {info.get('num_threads')} threads)")
        if out:
            return "; ".join(out)
    except Exception:  # pragma: no cover - description only
        pass
    return "unknown BLAS"


def versions(peers=()):
    import numba
    import scipy

    out = {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
           "numba": numba.__version__, "fastfeat": ff.__version__}
    for name in peers:
        mod = sys.modules.get(name)
        if mod is not None:
            out[name] = getattr(mod, "__version__", "?")
    return out


def machine_description(peers=()):
    """A few markdown lines: CPU, cores, threads, BLAS, versions."""
    import numba

    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel region has run yet
        layer = "not yet chosen"
    v = versions(peers)
    lines = [
        f"- CPU: {cpu_model()} ({os.cpu_count()} logical cores; {', '.join(cpu_flags()) or 'no AVX2'}), "
        f"{platform.system()} {platform.release()}",
        f"- threads: numba {numba.get_num_threads()} (layer {layer}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}); BLAS: {blas_description()}",
        "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# README regions
# ----------------------------------------------------------------------------------------------------

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
PERF_START, PERF_END = "<!-- perf:start -->", "<!-- perf:end -->"


#: the order of the script-written blocks inside the perf region
SECTIONS = ("compare", "scaling", "overhead")


def _markers(section):
    return f"<!-- perf-{section}:start -->", f"<!-- perf-{section}:end -->"


DOCS_PERF = os.path.join(os.path.dirname(README), "docs", "performance.md")
#: where each block is written: the README keeps the comparison table, the docs' performance page all
TARGETS = {"compare": (README, DOCS_PERF), "scaling": (DOCS_PERF,), "overhead": (DOCS_PERF,)}


def update_docs(section, body):
    """``update_readme`` on every file of ``TARGETS[section]`` (links to ``docs/...`` made relative for
    the files inside docs/)."""
    for path in TARGETS[section]:
        text = body
        if os.path.dirname(path) == os.path.dirname(DOCS_PERF):
            text = text.replace("](docs/", "](")
        update_readme(section, text, path=path)


def update_readme(section, body, path=README):
    """Replace the block ``<!-- perf-<section>:start -->`` .. ``end`` inside the README's perf region
    (the blocks are kept in the order of ``SECTIONS``, after any hand-written text of the region);
    nothing outside the perf region changes."""
    with open(path) as f:
        text = f.read()
    i, j = text.find(PERF_START), text.find(PERF_END)
    if i < 0 or j < i:
        raise SystemExit(f"{path}: no {PERF_START} ... {PERF_END} region")
    region = text[i + len(PERF_START):j]
    blocks = {}
    for name in dict.fromkeys(SECTIONS + (section,)):
        s, e = _markers(name)
        a, b = region.find(s), region.find(e)
        if a >= 0 and b > a:
            blocks[name] = region[a:b + len(e)]
            region = region[:a] + region[b + len(e):]
    s, e = _markers(section)
    blocks[section] = f"{s}\n{body.strip()}\n{e}"
    intro = region.strip("\n")
    parts = ([intro] if intro else []) + [blocks[n] for n in dict.fromkeys(SECTIONS + (section,)) if n in blocks]
    with open(path, "w") as f:
        f.write(text[:i + len(PERF_START)] + "\n" + "\n\n".join(parts) + "\n" + text[j:])


def replace_marked(path, name, body):
    """Replace the text between ``<!-- name:start -->`` and ``<!-- name:end -->`` in ``path`` by ``body``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    with open(path) as f:
        text = f.read()
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        raise SystemExit(f"{path}: no {start} ... {end} block")
    with open(path, "w") as f:
        f.write(text[:i + len(start)] + "\n" + body.strip() + "\n" + text[j:])


def fmt_time(s):
    """A time in seconds as text in s, ms or µs."""
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.1f} µs"
