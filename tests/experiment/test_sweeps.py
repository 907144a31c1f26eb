"""Sweeps on Dask distributed: every run equals `fastfeat run` alone, a dead worker loses nothing, an
interrupted sweep reruns only what is missing."""
import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest

import fastfeat as ff
from fastfeat import cli
from fastfeat import sweeps as sw

pytest.importorskip("distributed")

SWEEP = """
[teacher]
d = 5
m_star = 2
activation = "relu_centered"

[protocol]
m = 8
epochs = 2
epoch_steps = 20
log_every = 10

[sweep]
"protocol.m" = [8, 16]
"teacher.seed" = [0, 1]
"protocol.lam0" = [0.01, 0.03]
"teacher.activation" = ["relu_centered", "abs"]
"""


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_16_run_sweep_on_2_workers_equals_fastfeat_run_alone(tmp_path):
    from threadpoolctl import threadpool_limits
    import numba

    path = tmp_path / "s.toml"
    path.write_text(SWEEP)
    out = tmp_path / "out"
    rows = ff.sweep(str(path), out=out, workers=2, progress=False)
    assert len(rows) == 16 and len({r["key"] for r in rows}) == 16
    assert all(r["status"] == "ok" for r in rows), [r["message"] for r in rows]
    table = _rows(out / "results.csv")
    assert [r["key"] for r in table] == [r["key"] for r in rows]
    if importlib.util.find_spec("pyarrow") is not None:
        assert (out / "results.parquet").exists()
    _, runs = sw.load(str(path))
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)  # as each worker runs (threads_per_run=1)
        with threadpool_limits(1):
            for (swept, cfg), row in zip(runs, rows):
                alone = tmp_path / f"alone-{row['key']}"
                cfg_file = tmp_path / "one.toml"
                cfg_file.write_text(_toml(cfg))
                cli.run(str(cfg_file), str(alone), plots=False, progress=False)
                mine = json.loads((alone / "summary.json").read_text())
                theirs = json.loads((out / "runs" / row["key"] / "summary.json").read_text())
                for k in ("loss", "relative_loss", "best_cos", "captured_mass", "far_mass", "active_neurons"):
                    assert mine[k] == theirs[k], (swept, k)
                assert float(row["relative_loss"]) == mine["relative_loss"]
    finally:
        numba.set_num_threads(old)
    # a rerun computes nothing
    again = ff.sweep(str(path), out=out, workers=2, progress=False)
    assert json.loads((out / "sweep.json").read_text())["computed"] == 0 and len(again) == 16


def _toml(cfg):
    lines = []
    for t in ("teacher", "protocol"):
        lines.append(f"[{t}]")
        for k, v in cfg[t].items():
            lines.append(f"{k} = {json.dumps(v)}")
    return "\n".join(lines) + "\n"


def slow(cfg):
    time.sleep(0.4)
    return {"value": cfg["protocol"]["m"] * 10 + cfg["teacher"]["seed"]}


def test_a_worker_killed_in_the_middle_loses_nothing(tmp_path):
    from distributed import Client, LocalCluster

    runs = [{"teacher": {"seed": s}, "protocol": {"m": m}} for m in (4, 6, 8) for s in range(4)]
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    try:
        pids = list(client.run(os.getpid).values())

        def kill_one():  # once a few runs are in
            deadline = time.time() + 60
            while time.time() < deadline:
                table = tmp_path / "results.csv"
                if table.exists() and len(_rows(table)) >= 2:
                    break
                time.sleep(0.02)
            os.kill(pids[0], signal.SIGKILL)

        killer = threading.Thread(target=kill_one)
        killer.start()
        rows = ff.sweep(runs, out=tmp_path, fn=slow, client=client, progress=False)
        killer.join()
    finally:
        client.close()
        cluster.close()
    assert len(rows) == 12 and len({r["key"] for r in rows}) == 12
    assert all(r["status"] == "ok" for r in rows), [r["message"] for r in rows]
    assert sorted(int(float(r["value"])) for r in rows) == sorted(m * 10 + s for m in (4, 6, 8) for s in range(4))
    assert len(_rows(tmp_path / "results.csv")) == 12


def test_an_interrupted_sweep_reruns_only_the_missing_runs(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SWEEP.replace("epoch_steps = 20", "epoch_steps = 300").replace("m = 8\n", "m = 32\n"))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "fastfeat.cli", "sweep", str(path), "--out", str(out), "--workers", "2", "--quiet",
           "--plot", ""]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            if (out / "results.csv").exists() and len(_rows(out / "results.csv")) >= 3:
                break
            if proc.poll() is not None:
                pytest.fail(f"the sweep ended before it was interrupted: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its workers
        proc.wait()
    finished = {r["key"] for r in _rows(out / "results.csv")}
    assert 3 <= len(finished) < 16
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the recovered runs, if any, are reported
        rows = ff.sweep(str(path), out=out, workers=2, progress=False)
    info = json.loads((out / "sweep.json").read_text())
    # (a run killed after its summary.json but before its row is recovered from its folder, not rerun)
    assert info["skipped"] >= len(finished) and info["skipped"] + info["computed"] == 16
    assert len(rows) == 16 and len({r["key"] for r in rows}) == 16 and all(r["status"] == "ok" for r in rows)


def test_failures_are_recorded_and_the_others_go_on(tmp_path):
    runs = [{"protocol": {"m": 8, "epochs": 1, "epoch_steps": 10, "lr": lr}, "teacher": {"d": 4, "m_star": 2}}
            for lr in (0.1, 1e6)]
    rows = ff.sweep(runs, out=tmp_path, workers=1, progress=False)
    assert [r["status"] for r in rows] == ["ok", "diverged"]
    assert "diverged" in rows[1]["message"]


def test_bad_sweeps_are_one_error_line(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text(SWEEP + '\n[[runs]]\n"protocol.m" = 7\n')
    with pytest.raises(SystemExit) as info:
        cli.main(["sweep", str(path), "--out", str(tmp_path / "o"), "--workers", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and "m must be even" in err[0]
    assert not (tmp_path / "o").exists()
    path.write_text('[sweep]\n"protocol.m" = 8\n')
    with pytest.raises(SystemExit):
        cli.main(["sweep", str(path), "--out", str(tmp_path / "o")])
    assert "non-empty list" in capsys.readouterr().err


def test_the_library_raises_instead_of_exiting(tmp_path):
    """ff.sweep with invalid runs raises one ff.ConfigError (a ValueError) naming every invalid run, before
    anything runs or is created; an unreadable sweep file too. Only the command line exits."""
    runs = [{"protocol": {"m": 7}, "teacher": {"d": 4}}, {"protocol": {"m": 8}, "teacher": {"d": 4}},
            {"protocol": {"m": 8, "lr": -1.0}, "teacher": {"d": 0}}]
    with pytest.raises(ff.ConfigError) as info:
        ff.sweep(runs, out=tmp_path / "o", workers=1, progress=False)
    msg = str(info.value)
    assert isinstance(info.value, ValueError) and "2 of 3 runs are invalid" in msg
    assert "m must be even" in msg and "[teacher]" in msg and "lr" in msg
    assert not (tmp_path / "o").exists()
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"[sweep]\n\xff = 1\n")
    with pytest.raises(ff.ConfigError, match="not UTF-8"):
        ff.sweep(str(bad), out=tmp_path / "o2", workers=1, progress=False)


def _tiny(**protocol):
    return {"protocol": dict({"m": 8, "epochs": 1, "epoch_steps": 10}, **protocol), "teacher": {"d": 4, "m_star": 2}}


def test_a_second_grid_in_the_same_folder_keeps_every_row(tmp_path):
    """results.csv is the union of every finished run in the folder; the call returns its own rows."""
    first = ff.sweep([_tiny(lr=lr) for lr in (0.1, 0.2)], out=tmp_path, workers=1, progress=False)
    second = ff.sweep([_tiny(lam0=lam) for lam in (0.01, 0.02, 0.03)], out=tmp_path, workers=1, progress=False)
    assert len(first) == 2 and len(second) == 3 and all(r["status"] == "ok" for r in first + second)
    table = _rows(tmp_path / "results.csv")
    assert {r["key"] for r in table} == {r["key"] for r in first + second}
    assert {"protocol.lr", "protocol.lam0"} <= set(table[0])
    info = json.loads((tmp_path / "sweep.json").read_text())
    assert (info["runs"], info["skipped"], info["computed"], info["rows_in_results"]) == (3, 0, 3, 5)
    assert "protocol.lam0" in sw.swept_keys(second) and "protocol.lr" not in sw.swept_keys(second)
    again = ff.sweep([_tiny(lr=0.1)], out=tmp_path, workers=1, progress=False)  # a run of the first grid
    assert json.loads((tmp_path / "sweep.json").read_text())["computed"] == 0
    assert again[0]["key"] == first[0]["key"] and len(_rows(tmp_path / "results.csv")) == 5


def test_a_second_sweep_into_a_busy_folder_is_refused(tmp_path):
    lock = sw.results.take_lock(str(tmp_path))  # as a running sweep holds it
    try:
        with pytest.raises(sw.SweepBusyError, match="another sweep"):
            ff.sweep([_tiny()], out=tmp_path, workers=1, progress=False)
    finally:
        lock.close()
    assert not (tmp_path / "results.csv").exists()
    assert ff.sweep([_tiny()], out=tmp_path, workers=1, progress=False)[0]["status"] == "ok"


def test_a_damaged_table_is_rebuilt_from_the_run_folders(tmp_path):
    runs = [_tiny(lr=lr) for lr in (0.1, 0.2, 0.3)]
    rows = ff.sweep(runs, out=tmp_path, workers=1, progress=False)
    path = tmp_path / "results.csv"
    lines = path.read_bytes().split(b"\n")
    # the second row gets a byte that is not UTF-8, the last one is cut in the middle
    damaged = lines[:2] + [lines[2][:5] + b"\xff" + lines[2][5:], lines[3][: len(lines[3]) // 2]]
    path.write_bytes(b"\n".join(damaged))
    with pytest.warns(RuntimeWarning, match="damaged"):
        again = ff.sweep(runs, out=tmp_path, workers=1, progress=False)
    assert json.loads((tmp_path / "sweep.json").read_text())["computed"] == 0  # all recovered, none rerun
    assert [r["key"] for r in again] == [r["key"] for r in rows]
    assert [r["relative_loss"] for r in again] == pytest.approx([r["relative_loss"] for r in rows], rel=1e-12)
    assert len(_rows(path)) == 3


def test_plots_check_the_metric_first_and_show_categories(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text('[teacher]\nd = 4\nm_star = 2\n[protocol]\nm = 8\nepochs = 1\nepoch_steps = 10\n'
                    '[sweep]\n"teacher.activation" = ["relu_centered", "abs"]\n"teacher.seed" = [0, 1]\n')
    with pytest.raises(SystemExit) as info:
        cli.main(["sweep", str(path), "--out", str(tmp_path / "o"), "--workers", "1", "--plot", "relative_los"])
    assert info.value.code == 2 and "relative_los" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    pytest.importorskip("matplotlib")
    cli.main(["sweep", str(path), "--out", str(tmp_path / "o"), "--workers", "1", "--quiet"])
    assert (tmp_path / "o" / "summary.png").stat().st_size > 0


def test_expand_product_and_runs():
    base = {"teacher": {"d": 3}, "protocol": {"m": 4}}
    runs = sw.expand(base, {"protocol.m": [4, 6], "teacher.seed": [0, 1, 2]}, [{"protocol": {"m": 10}}])
    assert len(runs) == 7 and runs[-1][1]["protocol"]["m"] == 10 and runs[0][0] == {"protocol.m": 4, "teacher.seed": 0}
    assert len({sw.run_key(c) for _, c in runs}) == 7
    with pytest.raises(ValueError, match="teacher.<key>"):
        sw.expand(base, {"m": [1]})
    assert np.isfinite(len(runs))


def test_summary_plot(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [{"protocol.m": m, "teacher.seed": s, "status": "ok", "relative_loss": 1e-3 * m + s}
            for m in (8, 64) for s in (0, 1)] + [{"protocol.m": 8, "teacher.seed": 2, "status": "error"}]
    sw.plot(rows, tmp_path / "s.png", x="protocol.m", y="relative_loss", by="teacher.seed")
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_arguments_are_checked_before_the_folder_exists(tmp_path):
    """--threads-per-run 1000000 used to crash every worker's warm-up forever; workers = 0 was refused only
    after results.csv was rewritten."""
    out = tmp_path / "never"
    runs = [{"teacher": {"d": 4, "m_star": 1}, "protocol": {"m": 4, "epochs": 1, "epoch_steps": 2}}]
    with pytest.raises(ValueError, match="threads_per_run"):
        ff.sweep(runs, out=str(out), threads_per_run=1_000_000)
    with pytest.raises(ValueError, match="workers"):
        ff.sweep(runs, out=str(out), workers=0)
    assert not out.exists()


def test_a_user_function_cannot_overwrite_the_sweeps_columns(tmp_path):
    """A run returning status = "converged" used to replace the sweep's status (and be run again at every
    rerun, "converged" not being a finished state); its values are kept as fn.<name>."""
    rows = ff.sweep([{"teacher": {"d": 4, "m_star": 1}, "protocol": {"m": 4}}], out=str(tmp_path / "s"),
                    fn=_returns_status, workers=1, progress=False)
    assert rows[0]["status"] == "ok" and rows[0]["fn.status"] == "converged" and rows[0]["fn.wall_seconds"] == -1.0


def _returns_status(cfg):
    return {"status": "converged", "wall_seconds": -1.0}


def test_an_unreachable_scheduler_is_refused_before_the_folder_exists(tmp_path):
    out = tmp_path / "never"
    runs = [{"teacher": {"d": 4, "m_star": 1}, "protocol": {"m": 4}}]
    import dask
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}), \
            pytest.raises(OSError, match="cannot reach the Dask scheduler"):
        ff.sweep(runs, out=str(out), scheduler="tcp://127.0.0.1:9", progress=False)
    assert not out.exists()


_TOP_IMPORT_SCRIPT = '''
import json, sys
import numba
import fastfeat as ff  # at the top: each worker process imports this file before it becomes a worker


def probe(cfg):
    from fastfeat.kernels.cpu._blas import blas_threads
    k = cfg["teacher"]["seed"]
    f = numba.njit(lambda x: x + k)  # compiled in the worker
    return {"value": f(1), "threads": numba.get_num_threads(), "blas": blas_threads()}


if __name__ == "__main__":
    rows = ff.sweep([{"teacher": {"seed": 1}}, {"teacher": {"seed": 2}}], out=sys.argv[1], fn=probe, workers=1, progress=False)
    print(json.dumps([{k: r.get(k) for k in ("status", "message", "value", "threads", "blas")} for r in rows]))
'''


def test_workers_of_a_script_that_imports_fastfeat_at_the_top_use_their_threads(tmp_path):
    """A worker process first imports the main module of the script that started the sweep; one that
    imports fastfeat at its top started numba there with the script's NUMBA_NUM_THREADS (here 2, all
    cores). Before, every kernel a worker compiled then failed (numba's compiler refuses a
    NUMBA_NUM_THREADS that differs from the running pool: the runs' rows were errors, and the warm-up
    warned), and the runs used every core instead of threads_per_run."""
    script = tmp_path / "sweep_script.py"
    script.write_text(_TOP_IMPORT_SCRIPT)
    env = dict(os.environ, NUMBA_NUM_THREADS="2")
    r = subprocess.run([sys.executable, str(script), str(tmp_path / "out")], capture_output=True, text=True,
                       env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "warming up the workers failed" not in r.stderr, r.stderr[-3000:]
    rows = json.loads(r.stdout.strip().splitlines()[-1])
    assert [(row["status"], row["value"], row["threads"]) for row in rows] == [("ok", 2, 1), ("ok", 3, 1)], rows
    assert all(row["blas"] in (1, None) for row in rows), rows
