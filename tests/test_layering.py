"""The package is built in floors (docs/architecture.md): every module imports only modules of its own
group and of the floors below it, so there are no import cycles and no back doors. The kernels are the
bottom layer: nothing in ``fastfeat/kernels`` imports the objectives, the regularizers, training, the
paper pipeline or the command line (the CUDA runners, which need the objectives, live in ``fastfeat.gpu``).

Checked on the source, with ``ast``: every import statement anywhere in a module (also inside functions
and classes, absolute or relative), and ``importlib.import_module`` / ``__import__`` calls with a constant
module name.
"""
import ast
import os

import fastfeat

PACKAGE_DIR = os.path.dirname(os.path.abspath(fastfeat.__file__))
#: the layers above the kernels
ABOVE_KERNELS = ("fastfeat.objectives", "fastfeat.regularizers", "fastfeat.training", "fastfeat.paper",
                 "fastfeat.cli")


def _module_name(path, root):
    """Dotted name of the module at ``path`` inside package directory ``root`` (named ``fastfeat``)."""
    rel = os.path.relpath(path, os.path.dirname(root))[:-len(".py")].split(os.sep)
    return ".".join(rel[:-1] if rel[-1] == "__init__" else rel)


def _imported(node, module, is_package):
    """The absolute names an import node brings in (a ``from X import a`` counts as ``X`` and ``X.a``: ``a``
    may be a submodule)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            parts = module.split(".")
            base = parts if is_package else parts[:-1]
            base = base[:len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module
        return [prefix] + [f"{prefix}.{alias.name}" for alias in node.names]
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
        if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
            return [node.args[0].value]
    return []


def _above(name):
    return any(name == top or name.startswith(top + ".") for top in ABOVE_KERNELS)


def _modules(package_dir, folder):
    """(path, module name, whether it is a package's __init__) of every .py file under ``folder``."""
    for dirpath, _, files in os.walk(folder):
        for fname in sorted(files):
            if fname.endswith(".py"):
                path = os.path.join(dirpath, fname)
                yield path, _module_name(path, package_dir), fname == "__init__.py"


def _parse(path):
    with open(path, encoding="utf-8") as f:
        return ast.parse(f.read(), filename=path)


def upward_imports(package_dir=PACKAGE_DIR):
    """[(file, line, imported name)] for every import of a layer above the kernels in ``kernels/``."""
    found = []
    for path, module, is_init in _modules(package_dir, os.path.join(package_dir, "kernels")):
        for node in ast.walk(_parse(path)):
            names = [n for n in _imported(node, module, is_init) if _above(n)]
            if names:
                found.append((os.path.relpath(path, package_dir), node.lineno, names[0]))
    return found


def test_kernels_import_nothing_above_them():
    bad = upward_imports()
    assert not bad, "fastfeat/kernels imports a layer above it:\n" + "\n".join(
        f"  {path}:{line}: {name}" for path, line, name in bad)


def test_the_check_sees_every_kind_of_import(tmp_path):
    """The parser resolves relative imports and finds imports inside functions."""
    pkg = tmp_path / "fastfeat"
    (pkg / "kernels" / "cuda").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "kernels" / "__init__.py").write_text("from ..networks import TwoLayer\nfrom . import cuda\n")
    (pkg / "kernels" / "cuda" / "__init__.py").write_text("from ... import cli\n")
    (pkg / "kernels" / "cuda" / "runners.py").write_text(
        "import numpy\nfrom ...math import activations\n"
        "def f():\n    from ...objectives.online import LOSS_SEED\n"
        "class C:\n    def g(self):\n        import fastfeat.training.gd\n"
        "from ... import regularizers as r\n"
        "import importlib\nm = importlib.import_module('fastfeat.paper')\n")
    found = sorted((path, line) for path, line, _ in upward_imports(str(pkg)))
    runners = os.path.join("kernels", "cuda", "runners.py")
    assert found == [(os.path.join("kernels", "cuda", "__init__.py"), 1), (runners, 4), (runners, 7),
                     (runners, 8), (runners, 10)]


#: the floors, bottom first: a module of a group may import its own group and the groups of lower floors
#: (docs/architecture.md says what each holds). The package's ``__init__`` is the top.
FLOORS = (
    ("fastfeat.math", "fastfeat._validation", "fastfeat._version"),
    ("fastfeat.kernels", "fastfeat.schedules"),
    ("fastfeat.networks", "fastfeat.regularizers"),
    ("fastfeat.objectives",),
    ("fastfeat.metrics", "fastfeat.analysis"),
    ("fastfeat.gpu",),
    ("fastfeat.training",),
    ("fastfeat.paper",),
    ("fastfeat.experiment", "fastfeat._warmup_tasks"),
    ("fastfeat.sweeps", "fastfeat.trainjob"),
    ("fastfeat.cli",),
)


def _group(name):
    """(floor, group) of a module name; (len(FLOORS), "fastfeat") for the package itself."""
    for level, groups in enumerate(FLOORS):
        for g in groups:
            if name == g or name.startswith(g + "."):
                return level, g
    return (len(FLOORS), "fastfeat") if name == "fastfeat" else (None, None)


def floor_violations(package_dir=PACKAGE_DIR):
    """[(file, line, module, imported)] for every import of a module that is neither in the importer's
    group nor on a lower floor (also: modules in no floor). ``from fastfeat import sub`` counts as
    importing ``fastfeat.sub`` (the package itself is always loaded first)."""
    found = []
    root = os.path.dirname(package_dir)
    for path, module, is_init in _modules(package_dir, package_dir):
        level, group = _group(module)
        if level is None:
            found.append((os.path.relpath(path, package_dir), 0, module, "(in no floor)"))
            continue
        for node in ast.walk(_parse(path)):
            names = [n for n in _imported(node, module, is_init) if n == "fastfeat" or n.startswith("fastfeat.")]
            if len(names) > 1:  # from X import a, b: the submodules X.a, X.b where they exist
                subs = [n for n in names[1:] if os.path.exists(os.path.join(root, *n.split("."))) or
                        os.path.exists(os.path.join(root, *n.split(".")) + ".py")]
                names = subs or names[:1]
            for n in names:
                lv, g = _group(n)
                if g == group or (lv is not None and lv < level) or (n == "fastfeat" and module == "fastfeat"):
                    continue
                found.append((os.path.relpath(path, package_dir), node.lineno, module, n))
    return found


def test_every_module_imports_only_its_group_and_lower_floors():
    bad = floor_violations()
    assert not bad, "imports that go up or sideways (see FLOORS and docs/architecture.md):\n" + "\n".join(
        f"  {path}:{line}: {module} imports {name}" for path, line, module, name in bad)


def test_the_floor_check_sees_an_upward_import(tmp_path):
    pkg = tmp_path / "fastfeat"
    (pkg / "objectives").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from . import cli\n")
    (pkg / "cli.py").write_text("from . import objectives\n")
    (pkg / "objectives" / "__init__.py").write_text("from .. import kernels\n")
    (pkg / "objectives" / "online.py").write_text("def f():\n    from ..gpu import runner_for\n"
                                                  "from . import population\nimport fastfeat\n")
    (pkg / "kernels.py").write_text("")
    (pkg / "stray.py").write_text("")
    found = sorted((path, line, name) for path, line, _, name in floor_violations(str(pkg)))
    online = os.path.join("objectives", "online.py")
    assert found == [(online, 2, "fastfeat.gpu"), (online, 4, "fastfeat"), ("stray.py", 0, "(in no floor)")]
