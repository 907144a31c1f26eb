"""Which runs a sweep has: a base configuration and the product of swept values, or an explicit list
(``expand``), from a TOML file (``load``), each named by a hash of its full configuration (``run_key``)."""

import hashlib
import itertools
import json

from ..experiment import ConfigError, DEFAULT_CONFIG, config_problems


def _set(cfg, dotted, value, where):
    table, _, key = dotted.partition(".")
    if table not in ("teacher", "protocol") or not key or "." in key:
        raise ValueError(f"{where}: {dotted!r} must be 'teacher.<key>' or 'protocol.<key>'")
    cfg[table][key] = value


def expand(base, sweep=None, runs=None, where="sweep"):
    """The runs of a sweep: a list of ``(swept, cfg)``, ``swept`` the dotted keys that vary and their
    values, ``cfg`` the full configuration (``{"teacher": {...}, "protocol": {...}}``)."""
    out = []
    if sweep:
        keys = list(sweep)
        for key in keys:
            if not isinstance(sweep[key], list) or not sweep[key]:
                raise ValueError(f"{where}: [sweep] {key!r} must be a non-empty list of values")
        for values in itertools.product(*(sweep[k] for k in keys)):
            cfg = {t: dict(v) for t, v in base.items()}
            for k, v in zip(keys, values):
                _set(cfg, k, v, where)
            out.append((dict(zip(keys, values)), cfg))
    for i, run in enumerate(runs or ()):
        if not isinstance(run, dict):
            raise ValueError(f"{where}: [[runs]] entry {i} must be a table")
        cfg = {t: dict(v) for t, v in base.items()}
        swept = {}
        for k, v in run.items():
            if k in ("teacher", "protocol") and isinstance(v, dict):
                for kk, vv in v.items():
                    cfg[k][kk] = vv
                    swept[f"{k}.{kk}"] = vv
            else:
                _set(cfg, k, v, f"{where}: [[runs]] entry {i}")
                swept[k] = v
        out.append((swept, cfg))
    if not sweep and not runs:
        out.append(({}, {t: dict(v) for t, v in base.items()}))
    return out


def run_key(cfg):
    """A short hash of a run's full configuration (its folder name and its identity across reruns)."""
    text = json.dumps(cfg, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load(path):
    """(base configuration, runs) of a sweep file; problems raise ``ConfigError``."""
    import tomllib

    def _fail(msg):
        raise ConfigError(msg)

    try:
        with open(path, "rb") as f:
            data = tomllib.loads(f.read().decode("utf-8"))
    except OSError as exc:
        _fail(f"cannot read sweep {path}: {exc.strerror or exc}")
    except UnicodeDecodeError:
        _fail(f"sweep {path} is not UTF-8 text")
    except tomllib.TOMLDecodeError as exc:
        _fail(f"sweep {path} is not valid TOML: {exc}")
    unknown = sorted(set(data) - {"teacher", "protocol", "sweep", "runs"})
    if unknown:
        _fail(f"sweep {path}: unknown table(s) {unknown}; use [teacher], [protocol], [sweep] and [[runs]]")
    base = {k: dict(v) for k, v in DEFAULT_CONFIG.items()}
    for t in ("teacher", "protocol"):
        if t in data:
            if not isinstance(data[t], dict):
                _fail(f"sweep {path}: {t} must be a table")
            base[t].update(data[t])
    runs = data.get("runs")
    if runs is not None and not isinstance(runs, list):
        _fail(f"sweep {path}: runs must be a list of tables ([[runs]])")
    try:
        return base, expand(base, data.get("sweep"), runs, f"sweep {path}")
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def check_runs(runs, where="sweep", plots=False):
    """Check every run's configuration before anything starts; all problems raised as one ``ConfigError``."""
    # each problem once, with the runs that have it (a typo in the base is in every run)
    runs_of = {}
    bad = 0
    for swept, cfg in runs:
        found = config_problems(cfg, plots)[3]
        bad += bool(found)
        for p in found:
            runs_of.setdefault(p, []).append(str(swept or "(the base configuration)"))
    if runs_of:
        parts = []
        for p, which in runs_of.items():
            where_ = "every run" if len(which) == len(runs) else (
                f"run {which[0]}" if len(which) == 1 else f"{len(which)} runs, e.g. {which[0]}")
            parts.append(f"{p} ({where_})")
        raise ConfigError(f"{where}: {bad} of {len(runs)} runs are invalid: " + " | ".join(parts[:8])
                          + (f" | and {len(parts) - 8} more problems" if len(parts) > 8 else ""))
