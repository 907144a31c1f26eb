"""GPU check for a session that has an NVIDIA GPU: correctness against the CPU kernels, then timings.

    python benchmarks/gpu_check.py [--quick] [--out results.json]

1. Correctness: small problems (ragged sizes) of every objective, float64 and float32: the CUDA runner's
   loss and gradient against the CPU kernels, and a few ``ff.train(..., device="cuda")`` steps against
   ``device="cpu"`` (relative errors printed; ``FAIL`` lines and exit status 1 on a mismatch).
2. Timings (float32, relu; the sizes of issue 6): a population step at m = 16384 and 65536 (d = 512,
   m* = 8) and a full-batch empirical step at n = 65536, m = 8192, d = 512; each against the same step
   written in PyTorch on the same GPU (row/sample-chunked so its temporaries fit), and against the
   GEMMs the step contains (cuBLAS through PyTorch, same run): the roof of the performance model of docs/performance-notes.md.
   ``--quick`` uses smaller sizes.

Without numba-cuda or a GPU it says why and exits 0 (so it can run anywhere); without PyTorch it times
the fastfeat kernels only. ``--out`` writes every figure as JSON. Expect a few minutes: most of the
correctness part is the CPU kernels' compilation on the host (``--skip-correctness`` skips it).
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import fastfeat as ff  # noqa: E402
from fastfeat import gpu as ffgpu  # noqa: E402
from fastfeat.kernels import cuda as fc  # noqa: E402

RESULTS = {"correctness": [], "timings": []}
FAILED = []


def _rel(x, y):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return float(np.max(np.abs(x - y)) / max(np.max(np.abs(y)), 1e-30))


def _report(name, err, tol):
    ok = err <= tol
    RESULTS["correctness"].append({"case": name, "rel_err": err, "tol": tol, "ok": ok})
    print(f"  {'ok  ' if ok else 'FAIL'} {name:<44} rel err {err:.2e} (tol {tol:.0e})", flush=True)
    if not ok:
        FAILED.append(name)


def correctness(smoke=False):
    print("correctness against the CPU kernels", flush=True)
    d, m, ms, n = (5, 7, 2, 9) if smoke else (19, 37, 3, 101)
    # few activations and dtypes: every one costs CPU compilation time (tens of seconds) on the host,
    # and a GPU session is short; the simulator tests cover every activation
    for dtype, acts in (("float64", ("relu", "erf")), ("float32", ("relu_centered",))):
        tol = 1e-9 if dtype == "float64" else 2e-4
        for act in acts:
            t = ff.Teacher.random(d, ms, activation=act, dtype=dtype, seed=1)
            net = ff.TwoLayer.init(d, m, activation=act, dtype=dtype, seed=2)
            reg = ff.PathNorm(0.03)
            for oname, obj in (("population", ff.Population(t, noise=0.1)),
                               ("empirical", ff.Empirical.sample(t, n, noise=0.1, seed=3))):
                L, gW, ga = ffgpu.runner_for(obj, net).loss_grad(reg)
                cW, ca = obj.grad(net, reg)
                _report(f"{oname} {act} {dtype} loss", _rel(L, obj.loss(net)), tol)
                _report(f"{oname} {act} {dtype} grad", max(_rel(gW, cW), _rel(ga, ca)), tol)
            obj = ff.Online(t, batch_size=5, noise=0.1, seed=4)
            _, gW, ga = ffgpu.runner_for(obj, net).loss_grad(reg, step=9)
            cW, ca = obj.grad(net, reg, step=9)
            _report(f"online {act} {dtype} grad (step 9)", max(_rel(gW, cW), _rel(ga, ca)), tol)
        if dtype != "float64":
            continue
        t = ff.Teacher.random(d, ms, dtype=dtype, seed=1)
        for oname, obj in (("population", ff.Population(t)),
                           ("empirical minibatch", ff.Empirical.sample(t, n, seed=3, batch_size=max(1, n // 6))),
                           ("online", ff.Online(t, batch_size=4, seed=5))):
            nets = [ff.TwoLayer.init(d, m, dtype=dtype, seed=6) for _ in range(2)]
            hs = [ff.train(nt, obj, steps=12, lr=0.05, reg=ff.WeightDecay(0.01), log_every=5, device=dev)
                  for nt, dev in zip(nets, ("cpu", "cuda"))]
            err = max(_rel(nets[1].W, nets[0].W), _rel(nets[1].a, nets[0].a),
                      _rel(hs[1].metrics["loss"], hs[0].metrics["loss"]))
            _report(f"train 12 steps {oname} {dtype}", err, 10 * tol)
        host = ff.TwoLayer.init(d, m, seed=6)
        dnet = ffgpu.to_device(ff.TwoLayer.init(d, m, seed=6))
        obj = ff.Population(t)
        ff.train(host, obj, steps=6, lr=0.05, log_every=3)
        ff.train(dnet, obj, steps=3, lr=0.05, log_every=3, device="cuda")
        ff.train(dnet, obj, steps=3, lr=0.05, log_every=3, device="cuda", start_step=3)
        back = dnet.to_host()
        _report("device net, two train calls", max(_rel(back.W, host.W), _rel(back.a, host.a)), 10 * tol)


def _sync():
    from numba import cuda
    cuda.synchronize()
    torch = _torch()
    if torch is not None:
        torch.cuda.synchronize()


def _time(fn, reps):
    fn()  # warm-up (compilation, allocation)
    _sync()
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        _sync()
        best = min(best, time.perf_counter() - t0)
    return best


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _record(kind, size, ff_s, torch_s, gemm_s, flops):
    row = {"kind": kind, "size": size, "fastfeat_s": ff_s, "torch_s": torch_s, "gemm_s": gemm_s,
           "gflops_fastfeat": flops / ff_s / 1e9}
    RESULTS["timings"].append(row)
    extra = ""
    if torch_s is not None:
        extra = (f"  torch {torch_s * 1e3:9.2f} ms  (fastfeat/torch {ff_s / torch_s:5.2f})  "
                 f"GEMMs {gemm_s * 1e3:9.2f} ms  (fastfeat/GEMMs {ff_s / gemm_s:5.2f})")
    print(f"  {kind:<10} {size:<28} fastfeat {ff_s * 1e3:9.2f} ms  {flops / ff_s / 1e12:6.2f} TFLOP/s{extra}",
          flush=True)


def torch_population_grad(torch, W, a, V, c, e, R):
    """relu population loss (without the teacher's constant) and gradient, rows in chunks of R: the
    same math as the kernels. V = [W; W*], c = [a; -a*], e = [a/2; -a*]."""
    m = W.shape[0]
    nrm = V.norm(dim=1)
    gW = torch.empty_like(W)
    ga = torch.empty_like(a)
    loss = torch.zeros((), device=W.device, dtype=W.dtype)
    for i0 in range(0, m, R):
        i1 = min(m, i0 + R)
        G = W[i0:i1] @ V.T
        nn = nrm[i0:i1, None] * nrm[None, :]
        rho = (G / nn).clamp_(-1, 1)
        theta = math.pi - torch.arccos(rho)
        sq = torch.sqrt(1 - rho * rho)
        K = nn * (sq + rho * theta) / (2 * math.pi)
        ga[i0:i1] = K @ c
        loss += a[i0:i1] @ (K @ e)
        A = ((nrm[None, :] / nrm[i0:i1, None]) * sq / (2 * math.pi)) @ c
        B = (a[i0:i1, None] * c[None, :]) * theta / (2 * math.pi)
        gW[i0:i1] = (a[i0:i1] * A)[:, None] * W[i0:i1] + B @ V
    return loss, gW, ga


def torch_empirical_grad(torch, X, y, W, a, S):
    """relu empirical loss and gradient, samples in chunks of S."""
    n = X.shape[0]
    gW = torch.zeros_like(W)
    ga = torch.zeros_like(a)
    loss = torch.zeros((), device=W.device, dtype=W.dtype)
    for k0 in range(0, n, S):
        Xk = X[k0:k0 + S]
        Z = Xk @ W.T
        P = torch.relu(Z)
        r = P @ a - y[k0:k0 + S]
        loss += r @ r
        ga += P.T @ r
        gW += ((Z > 0) * r[:, None]).T @ Xk
    return loss / (2 * n), gW * (a[:, None] / n), ga / n


def time_population(m, d, ms, reps):
    torch = _torch()
    t = ff.Teacher.random(d, ms, dtype="float32", seed=0)
    net = ff.TwoLayer.init(d, m, dtype="float32", seed=1, scale=0.5)
    runner = ffgpu.runner_for(ff.Population(t), net)
    lrs = np.full(1, 1e-3)
    z = np.zeros(1)
    torch_s = gemm_s = None
    if torch is not None:
        dev = torch.device("cuda")
        W = torch.tensor(net.W, device=dev)
        a = torch.tensor(net.a, device=dev)
        V = torch.cat([W, torch.tensor(t.W, device=dev)])
        c = torch.cat([a, -torch.tensor(t.a, device=dev)])
        e = torch.cat([0.5 * a, -torch.tensor(t.a, device=dev)])
        R = max(1, min(m, (1 << 26) // V.shape[0]))
        _, gW, ga = runner.loss_grad()
        _, tW, ta = torch_population_grad(torch, W, a, V, c, e, R)
        _report(f"population m={m} gradient vs torch float32", max(_rel(gW, tW.cpu().numpy()),
                                                                   _rel(ga, ta.cpu().numpy())), 1e-3)
    ff_s = _time(lambda: runner(0, lrs, 0, z, z), reps)
    if torch is not None:

        def step():
            loss, gW, ga = torch_population_grad(torch, W, a, V, c, e, R)
            W.sub_(1e-3 * gW)
            a.sub_(1e-3 * ga)
            return loss

        torch_s = _time(step, reps)

        def gemms():
            for i0 in range(0, m, R):
                i1 = min(m, i0 + R)
                G = W[i0:i1] @ V.T
                G @ V

        gemm_s = _time(gemms, reps)
    N = m + ms
    _record("population", f"m={m} d={d} m*={ms}", ff_s, torch_s, gemm_s, 4.0 * m * N * d)


def time_empirical(n, m, d, reps):
    torch = _torch()
    t = ff.Teacher.random(d, min(8, d), dtype="float32", seed=0)
    obj = ff.Empirical.sample(t, n, seed=1)
    net = ff.TwoLayer.init(d, m, dtype="float32", seed=2, scale=0.5)
    runner = ffgpu.runner_for(obj, net)
    lrs = np.full(1, 1e-3)
    z = np.zeros(1)
    torch_s = gemm_s = None
    if torch is not None:
        dev = torch.device("cuda")
        X = torch.tensor(obj.X, device=dev)
        y = torch.tensor(obj.y, device=dev)
        W = torch.tensor(net.W, device=dev)
        a = torch.tensor(net.a, device=dev)
        S = max(1, min(n, (1 << 26) // m))
        L, gW, ga = runner.loss_grad()
        tL, tW, ta = torch_empirical_grad(torch, X, y, W, a, S)
        _report(f"empirical n={n} m={m} gradient vs torch float32", max(_rel(gW, tW.cpu().numpy()),
                                                                         _rel(ga, ta.cpu().numpy())), 1e-3)
    ff_s = _time(lambda: runner(0, lrs, 0, z, z), reps)
    if torch is not None:

        def step():
            loss, gW, ga = torch_empirical_grad(torch, X, y, W, a, S)
            W.sub_(1e-3 * gW)
            a.sub_(1e-3 * ga)
            return loss

        torch_s = _time(step, reps)

        def gemms():
            for k0 in range(0, n, S):
                Xk = X[k0:k0 + S]
                Z = Xk @ W.T
                Z.T @ Xk

        gemm_s = _time(gemms, reps)
    _record("empirical", f"n={n} m={m} d={d}", ff_s, torch_s, gemm_s, 4.0 * n * m * d)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller timing sizes")
    p.add_argument("--skip-correctness", action="store_true")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--smoke", action="store_true",
                   help="tiny sizes: checks this script itself (e.g. under NUMBA_ENABLE_CUDASIM=1)")
    p.add_argument("--only", choices=("population", "empirical"), help="time one objective only")
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args(argv)
    try:
        fc.require()
    except fc.CudaUnavailableError as exc:
        print(f"no usable GPU, nothing to check: {exc}")
        RESULTS["skipped"] = str(exc)
        _write(args.out)
        return 0
    from numba import cuda
    dev = cuda.get_current_device()
    name = getattr(dev, "name", "?")
    RESULTS["device"] = name.decode() if isinstance(name, bytes) else str(name)
    torch = _torch()
    RESULTS["torch"] = None if torch is None else torch.__version__
    print(f"device: {RESULTS['device']}; torch: {RESULTS['torch']}; TILE={fc.TILE} "
          f"THREADS_PER_BLOCK={fc.THREADS_PER_BLOCK}", flush=True)
    if not args.skip_correctness:
        correctness(args.smoke)
    print("timings (float32, relu; best of %d after a warm-up)" % args.reps, flush=True)
    pop = args.only in (None, "population")
    emp = args.only in (None, "empirical")
    if args.smoke:
        pop and time_population(9, 5, 2, 1)
        emp and time_empirical(11, 6, 5, 1)
    elif args.quick:
        pop and time_population(4096, 256, 8, args.reps)
        emp and time_empirical(8192, 2048, 256, args.reps)
    else:
        pop and time_population(16384, 512, 8, args.reps)
        pop and time_population(65536, 512, 8, max(1, args.reps - 1))
        emp and time_empirical(65536, 8192, 512, args.reps)
    _write(args.out)
    if FAILED:
        print(f"FAILED: {FAILED}")
        return 1
    return 0


def _write(path):
    if path:
        with open(path, "w") as f:
            json.dump(RESULTS, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
