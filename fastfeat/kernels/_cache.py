"""On-disk caching of fastfeat's compiled kernels, outside the installed package, never stale.

Every kernel is a module-level function compiled with numba's ``cache=True``. Its machine code is kept
in a per-user cache folder, never beside the source: a folder written inside ``site-packages`` outlives
``pip uninstall`` (which then leaves an empty ``fastfeat`` namespace package that shadows a later
editable install) and cannot be written at all where the installation is read-only (shared cluster
installs, containers). The folder (``cache_root()``, shown by ``fastfeat info``) is, first found:

1. ``NUMBA_CACHE_DIR`` when set (numba's own setting, honoured as numba does);
2. the platform's per-user cache folder: ``$XDG_CACHE_HOME/fastfeat`` or ``~/.cache/fastfeat`` on
   Linux, ``~/Library/Caches/fastfeat`` on macOS, ``%LOCALAPPDATA%\\fastfeat\\Cache`` on Windows;
3. ``fastfeat-cache-<user>`` in the temporary folder, when the one above cannot be written.

Below it, one folder per numba version, then the kernel module's path inside the package
(``kernels/cpu``...). Entries do not depend on where fastfeat is installed: a regular and an editable
install of the same source, or two checkouts of one commit, share them.

numba decides whether a cache entry is fresh from the modification time and size of the one file that
defines the function, so an entry would survive an edit of a function it calls in another file (the
activation table, a helper) and load code that no longer matches the source. fastfeat's locator uses
as freshness stamp a hash of the contents of F and of every fastfeat module F imports, directly or not
(with their paths inside the package): any change in that code makes the old entries miss, and editing
a module that F does not import leaves them valid. The BLAS the kernels link to (``_blas``: numpy's
OpenBLAS, or scipy's through numba) is part of the cache files' names (``TAGS``), so code built for
each is kept apart; numba keys each entry by the target CPU's name and features as well.

A damaged entry (a truncated, emptied or overwritten ``.nbi`` / ``.nbc``: a full disk, a partly copied
shared cache) is a miss, not an error: the kernel is compiled again, the file replaced, and a
``RuntimeWarning`` names it once per process.

Code outside fastfeat that calls fastfeat's kernels from its own ``@njit(cache=True)`` functions is
cached by numba's own rules: after upgrading fastfeat, clear that code's cache (its ``__pycache__``
``*.nbi``/``*.nbc`` files) or touch its source.
"""
import ast
import getpass
import hashlib
import os
import sys
import tempfile
import warnings

import llvmlite.binding as ll
import numba
from numba.core import caching, codegen, config
from numba.misc.appdirs import AppDirs

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


def _writable(path):
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
        return True
    except OSError:
        return False


def _user_name():
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name (some containers): the uid is as good
        return str(os.getuid()) if hasattr(os, "getuid") else "user"


_roots = {}


def cache_root():
    """The folder fastfeat's kernels are cached in (see the module docstring for the order of choice)."""
    if config.CACHE_DIR:
        return os.path.abspath(config.CACHE_DIR)
    key = os.environ.get("XDG_CACHE_HOME", ""), os.path.expanduser("~")
    if key not in _roots:
        per_user = AppDirs(appname="fastfeat", appauthor=False).user_cache_dir
        fallback = os.path.join(tempfile.gettempdir(), f"fastfeat-cache-{_user_name()}")
        _roots[key] = next((p for p in (per_user, fallback) if _writable(p)), per_user)
    return _roots[key]


def kernel_cache_dir(py_file):
    """The cache folder of the kernels defined in ``py_file`` (a file of the fastfeat package)."""
    rel = os.path.relpath(os.path.dirname(os.path.abspath(py_file)), _ROOT)
    parts = [] if rel == os.curdir else rel.split(os.sep)
    return os.path.join(cache_root(), f"numba-{numba.__version__}", _PKG, *parts)


class FastfeatCacheLocator(caching._CacheLocator):
    """Caches the kernels of a fastfeat module in ``kernel_cache_dir`` with ``source_stamp`` as the
    freshness stamp (names of the cache files: numba's, plus ``TAGS``)."""

    def __init__(self, py_func, py_file):
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = kernel_cache_dir(py_file)

    def get_cache_path(self):
        return self._cache_path

    def get_source_stamp(self):
        return source_stamp(self._py_file)

    def get_disambiguator(self):
        # the BLAS the code links to names the cache files, so builds for both can live side by side
        return str(self._lineno) + "".join(f"-{v}" for _, v in sorted(TAGS.items()))

    @classmethod
    def from_function(cls, py_func, py_file):
        path = os.path.abspath(py_file)
        if not path.startswith(_ROOT + os.sep) or not path.endswith(".py"):
            return None
        self = cls(py_func, path)
        try:
            self.ensure_cache_path()
        except OSError as exc:
            # never fall back to numba's folder beside the source (inside the installed package)
            raise OSError(f"fastfeat cannot write its kernel cache in {self._cache_path} ({exc}); "
                          "set NUMBA_CACHE_DIR to a writable folder") from exc
        return self


#: what reading a damaged cache file raises (a truncated, emptied or overwritten .nbi / .nbc): unpickling
#: arbitrary bytes can raise nearly anything (UnpicklingError, EOFError, ValueError, OverflowError, ...)
_DAMAGED = Exception
_warned = set()


def _ours(cache_file):
    """Whether a numba cache file object belongs to fastfeat's kernels (other code's caches are left as
    numba handles them)."""
    return f"{os.sep}numba-{numba.__version__}{os.sep}{_PKG}" in str(getattr(cache_file, "_cache_path", ""))


def _damaged(cache_file, path, exc):
    """A damaged entry of fastfeat's cache is a miss: say so once per file, and remove the file so that
    the kernel compiled now replaces it (and every later process finds a good one)."""
    if path not in _warned:
        _warned.add(path)
        warnings.warn(f"fastfeat: the kernel cache file {path} is damaged ({type(exc).__name__}); the kernel is "
                      "compiled again and the file replaced", RuntimeWarning, stacklevel=4)
    try:
        os.unlink(path)
    except OSError:
        pass


def _robust(cls):
    """Make ``cls`` (numba's ``IndexDataCacheFile``) treat an unreadable index or data file of fastfeat's
    cache as a miss instead of raising from every later kernel call (idempotent)."""
    if getattr(cls, "_fastfeat_robust", False):
        return
    load_index, load = cls._load_index, cls.load

    def _load_index(self):
        try:
            return load_index(self)
        except _DAMAGED as exc:
            if not _ours(self):
                raise
            _damaged(self, self._index_path, exc)
            return {}

    def _load(self, key):
        try:
            return load(self, key)
        except _DAMAGED as exc:
            if not _ours(self):
                raise
            name = self._load_index().get(key)
            _damaged(self, self._data_path(name) if name else self._index_path, exc)
            return None

    cls._load_index, cls.load, cls._fastfeat_robust = _load_index, _load, True


#: linkages of the copies numba links into a module (``_get_module_for_linking`` makes a library's functions
#: ``linkonce_odr``; parallel loop bodies are ``weak_odr``)
_SHARED_LINKAGES = frozenset((ll.Linkage.linkonce_any, ll.Linkage.linkonce_odr, ll.Linkage.weak_any,
                              ll.Linkage.weak_odr))


def _ours_library(module):
    """Whether an LLVM module is a fastfeat kernel's (its own functions carry fastfeat's mangled prefix)."""
    return any(not f.is_declaration and f.linkage == ll.Linkage.external and "8fastfeat" in f.name
               for f in module.functions)


def _own_copies(cls):
    """Make a fastfeat kernel run the copies of its callees that its own module holds, whether it was
    compiled in this process or loaded from the cache (idempotent).

    numba links a copy of every callee into the caller's module as a shared (``linkonce_odr`` /
    ``weak_odr``) symbol and optimizes the whole module again, which can vectorize the copy differently
    (another order of additions under fast-math's reassociation). The process that compiles the caller
    has the callee's own library loaded already, and the JIT resolves the shared symbol to that one; a
    process that loads the caller from the cache has only the caller's object code, so it runs the copy.
    The two gave results that differed in the last bits. Here, just before a fastfeat module is handed to
    the JIT (after it was optimized), the linked copies become internal, so every process runs the code
    the cache stores. The module that other code links (``_get_module_for_linking``, also what the cache
    keeps for linking) is made first, as numba makes it, so callers still share one copy of each callee."""
    if getattr(cls, "_fastfeat_own_copies", False):
        return
    finalize = cls._finalize_final_module

    def _finalize_final_module(self):
        mod = self._final_module
        if self._linking_libraries and _ours_library(mod):
            if self._shared_module is None:
                shared = mod.clone()
                for f in shared.functions:
                    if not f.is_declaration and f.linkage == ll.Linkage.external:
                        f.linkage = "linkonce_odr"
                self._shared_module = shared
            for f in mod.functions:
                if not f.is_declaration and f.linkage in _SHARED_LINKAGES:
                    f.linkage = "internal"
        return finalize(self)

    cls._finalize_final_module, cls._fastfeat_own_copies = _finalize_final_module, True


def install():
    """Put the locator in front of numba's, make damaged cache files misses, and make kernels run their
    own copies of their callees (idempotent)."""
    classes = caching.CacheImpl._locator_classes
    if FastfeatCacheLocator not in classes:
        classes.insert(0, FastfeatCacheLocator)
    _robust(caching.IndexDataCacheFile)
    _own_copies(codegen.CPUCodeLibrary)


def has_entries(dispatcher):
    """Whether the disk cache holds entries of a kernel for its current source (its index file exists): a
    cheap sign that the cache was filled, without loading anything."""
    cache_file = getattr(getattr(dispatcher, "_cache", None), "_cache_file", None)
    path = getattr(cache_file, "_index_path", None)
    return bool(path) and os.path.exists(path)


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
