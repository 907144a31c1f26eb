"""On-disk caching of fastfeat's compiled kernels that never loads stale machine code.

Every kernel is a module-level function compiled with numba's ``cache=True``: the machine code of each
signature is written beside the source (``__pycache__``), or, where that folder is not writable, in
numba's user-wide cache folder; ``NUMBA_CACHE_DIR`` puts it wherever you like. A new process loads it
instead of compiling (``fastfeat warmup`` fills the cache for every kernel and both float types).

numba decides whether a cache entry is fresh from the modification time and size of the one file that
defines the function, so an entry would survive an edit of a function it calls in another file (the
activation table, a helper) and load code that no longer matches the source. fastfeat registers its
own locator in front of numba's: the same folders, but the freshness stamp of a function defined in
file F is a hash of the contents of F and of every fastfeat module F imports, directly or not: any
change in that code makes the old entries miss, and editing a module that F does not import leaves
them valid. The BLAS the kernels link to (``_blas``: numpy's OpenBLAS, or scipy's through numba) is part
of the cache files' names (``TAGS``), so code built for each is kept apart.

Code outside fastfeat that calls fastfeat's kernels from its own ``@njit(cache=True)`` functions is
cached by numba's own rules: after upgrading fastfeat, clear that code's cache (its ``__pycache__``
``*.nbi``/``*.nbc`` files) or touch its source.
"""
import ast
import hashlib
import os
import sys

from numba.core import caching

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the fastfeat package folder
_PKG = os.path.basename(_ROOT)
_stamps = {}
_imports = {}
#: extra strings folded into every stamp (the BLAS ABI, set by ``_blas`` before any kernel compiles)
TAGS = {}


def _module_file(name):
    """The file of fastfeat module ``name`` (dotted, starting with the package), or None."""
    parts = name.split(".")[1:]
    base = os.path.join(_ROOT, *parts)
    for cand in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(cand):
            return cand
    return None


def _module_name(path):
    rel = os.path.relpath(path, _ROOT)[:-3].split(os.sep)
    if rel[-1] == "__init__":
        rel = rel[:-1]
    return ".".join([_PKG] + rel)


def _direct_imports(path):
    """The fastfeat modules that ``path`` imports anywhere in its body (files)."""
    if path in _imports:
        return _imports[path]
    with open(path, "rb") as f:
        tree = ast.parse(f.read(), path)
    me = _module_name(path)
    package = me if path.endswith("__init__.py") else me.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        mods = []
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:  # a submodule, or a name defined in the module's own file
                mods.append(f"{mod}.{a.name}" if _module_file(f"{mod}.{a.name}") else mod)
        for n in mods:
            # the module itself; the packages on the way run too, but a kernel only reaches the code
            # of modules it imports names from, so their files are not followed
            if n == _PKG or n.startswith(_PKG + "."):
                f = _module_file(n)
                if f is not None:
                    found.add(f)
    found.discard(path)
    _imports[path] = found
    return found


def dependencies(path):
    """``path`` and every fastfeat module file it imports, transitively (sorted)."""
    seen = {path}
    todo = [path]
    while todo:
        for dep in _direct_imports(todo.pop()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return sorted(seen)


def source_stamp(path):
    """The freshness stamp of functions defined in ``path`` (see the module docstring)."""
    path = os.path.abspath(path)
    if path not in _stamps:
        h = hashlib.sha256()
        for dep in dependencies(path):
            h.update(os.path.relpath(dep, _ROOT).encode())
            with open(dep, "rb") as f:
                h.update(hashlib.sha256(f.read()).digest())
        _stamps[path] = h.hexdigest()
    return f"fastfeat:{_stamps[path]}"


class FastfeatCacheLocator(caching._CacheLocator):
    """numba's own locators for fastfeat's files, with ``source_stamp`` as the freshness stamp."""

    def __init__(self, inner, py_file):
        self._inner = inner
        self._py_file = py_file

    def ensure_cache_path(self):
        self._inner.ensure_cache_path()

    def get_cache_path(self):
        return self._inner.get_cache_path()

    def get_source_stamp(self):
        return source_stamp(self._py_file)

    def get_disambiguator(self):
        # the BLAS the code links to names the cache files, so builds for both can live side by side
        return self._inner.get_disambiguator() + "".join(f"-{v}" for _, v in sorted(TAGS.items()))

    @classmethod
    def from_function(cls, py_func, py_file):
        path = os.path.abspath(py_file)
        if not path.startswith(_ROOT + os.sep) or not path.endswith(".py"):
            return None
        for other in caching.CacheImpl._locator_classes:
            if other is cls:
                continue
            inner = other.from_function(py_func, py_file)
            if inner is not None:
                return cls(inner, path)
        return None


def install():
    """Put the locator in front of numba's (idempotent)."""
    classes = caching.CacheImpl._locator_classes
    if FastfeatCacheLocator not in classes:
        classes.insert(0, FastfeatCacheLocator)


def cache_dirs():
    """The folders fastfeat's kernels are cached in on this machine (for ``fastfeat info``)."""
    from . import cpu  # noqa: F401  (every kernel module)
    out = set()
    for name, mod in list(sys.modules.items()):
        f = getattr(mod, "__file__", None)
        if not name.startswith(_PKG + ".") or not f or not f.endswith(".py"):
            continue
        for v in vars(mod).values():
            cache = getattr(v, "_cache", None)
            loc = getattr(getattr(cache, "_impl", None), "locator", None)
            if loc is not None and getattr(v, "py_func", None) is not None and v.py_func.__module__ == name:
                out.add(loc.get_cache_path())
    return sorted(out)


install()
