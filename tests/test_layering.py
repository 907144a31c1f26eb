"""The kernels are the bottom layer: nothing in ``fastfeat/kernels`` imports the objectives, the
regularizers, training, the paper pipeline or the command line (the CUDA runners, which need the
objectives, live in ``fastfeat.gpu``).

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


def upward_imports(package_dir=PACKAGE_DIR):
    """[(file, line, imported name)] for every import of a layer above the kernels in ``kernels/``."""
    found = []
    kernels_dir = os.path.join(package_dir, "kernels")
    for dirpath, _, files in os.walk(kernels_dir):
        for fname in sorted(files):
            if not fname.endswith(".py"):
                continue
            path = os.path.join(dirpath, fname)
            module = _module_name(path, package_dir)
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read(), filename=path)
            for node in ast.walk(tree):
                names = [n for n in _imported(node, module, fname == "__init__.py") if _above(n)]
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
        "class C:\n    def g(self):\n        import fastfeat.training.train\n"
        "from ... import regularizers as r\n"
        "import importlib\nm = importlib.import_module('fastfeat.paper')\n")
    found = sorted((path, line) for path, line, _ in upward_imports(str(pkg)))
    runners = os.path.join("kernels", "cuda", "runners.py")
    assert found == [(os.path.join("kernels", "cuda", "__init__.py"), 1), (runners, 4), (runners, 7),
                     (runners, 8), (runners, 10)]
