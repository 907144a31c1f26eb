"""The documentation: the site builds with warnings as errors, every example in the README and the docs
runs as written, the configuration reference lists every key with the code's default, and no page
points outside the repository."""
import io
import os
import re
import runpy
import subprocess
import sys
from contextlib import redirect_stdout

import pytest

import fastfeat as ff
from fastfeat import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md"] + sorted(os.path.relpath(os.path.join(d, f), ROOT)
                               for d, _, fs in os.walk(os.path.join(ROOT, "docs")) for f in fs if f.endswith(".md"))
FENCE = re.compile(r"(<!-- run: (\w+) -->\n)?```(\w+)\n(.*?)```", re.S)


def blocks(page, lang):
    """(mode, code) of the fenced ``lang`` blocks of a page, in order; mode from a ``<!-- run: X -->``
    line just before the block (None when there is none)."""
    text = open(os.path.join(ROOT, page), encoding="utf-8").read()
    return [(m.group(2), m.group(4)) for m in FENCE.finditer(text) if m.group(3) == lang]


PY_PAGES = [p for p in PAGES if any(mode is None for mode, _ in blocks(p, "python"))]


@pytest.mark.parametrize("page", PY_PAGES)
def test_examples_run_as_written(page, tmp_path, monkeypatch):
    """The python blocks of a page, in order, as one script (later blocks use the names of earlier ones)."""
    code = "\n\n".join(c for mode, c in blocks(page, "python") if mode is None)
    script = tmp_path / "example.py"
    script.write_text(code)
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with redirect_stdout(out):
        runpy.run_path(str(script), run_name="__main__")
    assert out.getvalue().strip(), f"{page}: the examples print nothing"


def test_gpu_example_runs_in_the_cuda_simulator(tmp_path):
    pytest.importorskip("numba_cuda")
    code = "\n\n".join(c for mode, c in blocks("docs/gpu.md", "python") if mode == "cudasim")
    assert "device=\"cuda\"" in code
    script = tmp_path / "gpu_example.py"
    script.write_text(code)
    # the simulator runs every GPU thread as a Python thread: small blocks
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", FASTFEAT_CUDA_THREADS="4", FASTFEAT_CUDA_TILE="2",
               FASTFEAT_CUDA_RB="2")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(proc.stdout.strip().splitlines()) == 3


def _numbers(text):
    return [float(x) for x in re.findall(r"-?\d+\.\d+(?:e[-+]\d+)?", text)]


@pytest.mark.parametrize("page", ["README.md", "docs/index.md"])
def test_the_quickstart_prints_what_the_page_shows(page, tmp_path, monkeypatch):
    code = blocks(page, "python")[0][1]
    shown = blocks(page, "text")[0][1]
    out = io.StringIO()
    script = tmp_path / "quickstart.py"
    script.write_text(code)
    monkeypatch.chdir(tmp_path)
    with redirect_stdout(out):
        runpy.run_path(str(script), run_name="__main__")
    got, want = _numbers(out.getvalue()), _numbers(shown)
    assert len(got) == len(want) and out.getvalue().splitlines()[0] == shown.splitlines()[0]
    for g, w in zip(got, want):
        assert g == pytest.approx(w, rel=0.02, abs=2e-4), (g, w)


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p, "toml")])
def test_configuration_examples_are_valid(page, tmp_path, capsys):
    from fastfeat import sweeps

    for _, text in blocks(page, "toml"):
        path = tmp_path / "c.toml"
        path.write_text(text)
        if "[sweep]" in text or "[[runs]]" in text:
            _, runs = sweeps.load(str(path))
            sweeps.check_runs(runs)  # raises SystemExit on any problem
            assert runs
            continue
        if "[train]" in text or "[objective]" in text or "[student]" in text:  # a `fastfeat train` configuration
            from fastfeat import trainjob
            _, net, objective, kw = trainjob.build(trainjob.read(str(path)))  # raises ConfigError on any problem
            assert net is not None and objective is not None
            continue
        cfg = cli.load_config(str(path))
        teacher, m, proto = cli.check_config(cfg)  # raises SystemExit on any problem
        assert isinstance(teacher, ff.Teacher) and m >= 2


def _reference_rows(table):
    text = open(os.path.join(ROOT, "docs", "cli.md"), encoding="utf-8").read()
    part = text.split(f"### `[{table}]`")[1].split("###")[0]
    rows = {}
    for line in part.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[0].startswith("`") and cells[0] != "key":
            rows[cells[0].strip("`")] = cells[2]
    return rows


def _shown(value):
    if value is None:
        return "absent"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, (tuple, list)):
        return "`[" + ", ".join(f'"{v}"' for v in value) + "]`"
    return f"`{value}`"


def test_the_configuration_reference_lists_every_key_with_its_default():
    protocol = _reference_rows("protocol")
    expected = {"m"} | set(ff.paper.KEYWORDS) - set(cli.CLI_KEYS)
    assert set(protocol) == expected
    for key, default in ff.paper.DEFAULTS.items():
        if key in protocol:
            assert protocol[key] == _shown(default), key
    assert protocol["m"] == _shown(cli.DEFAULT_CONFIG["protocol"]["m"])
    teacher = _reference_rows("teacher")
    assert set(teacher) == set(cli.TEACHER_KEYS)
    for key, value in cli.DEFAULT_CONFIG["teacher"].items():
        assert teacher[key] == _shown(value), key


def test_no_page_or_docstring_points_outside_the_repository():
    for root in ("fastfeat", "docs", "benchmarks"):
        for d, _, files in os.walk(os.path.join(ROOT, root)):
            for f in files:
                if f.endswith((".py", ".md")):
                    assert "DESIGN.md" not in open(os.path.join(d, f), encoding="utf-8").read(), f
    assert "DESIGN.md" not in open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()


def test_the_site_builds_with_warnings_as_errors(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    for name in ("three_stage", "TrainingDiverged", "Checkpoint", "alignment", "to_device"):
        assert name in api, name
