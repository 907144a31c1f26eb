"""A sweep's results: ``results.csv`` (one row per run as it finishes, rewritten in sweep order at the end,
and ``results.parquet``), read back to skip finished runs, and the lock that keeps two sweeps out of one
folder."""

import csv
import json
import math
import os

import numpy as np


#: the columns of results.csv after the swept keys
METRIC_COLUMNS = ("status", "message", "relative_loss", "loss", "best_cos_min", "captured_mass_error", "far_mass",
                  "active_neurons", "wall_seconds", "best_cos", "captured_mass", "key")


FINISHED = ("ok", "diverged")


def summary_row(s):
    """The metric columns of results.csv from a run's summary.json."""
    a_star = np.asarray(s["teacher_a"], float)
    return dict(relative_loss=s["relative_loss"], loss=s["loss"], best_cos_min=float(np.min(s["best_cos"])),
                captured_mass_error=float(np.max(np.abs(np.asarray(s["captured_mass"]) - a_star))),
                far_mass=s["far_mass"], active_neurons=s["active_neurons"], best_cos=json.dumps(s["best_cos"]),
                captured_mass=json.dumps(s["captured_mass"]))


def read_rows(path):
    """(rows by key, header, what was skipped) of a results.csv: the rows that read back whole. A line that
    is not UTF-8, has another number of fields than the header (a truncated last line) or no key is
    skipped and counted, never an error: the runs it stood for are recovered from their folders, or run
    again."""
    if not os.path.exists(path):
        return {}, [], []
    with open(path, "rb") as f:
        raw = f.read().split(b"\n")
    text, skipped = [], []
    for i, line in enumerate(raw):
        try:
            text.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            skipped.append(f"line {i + 1} (not UTF-8)")
    lines = [t for t in text if t.strip()]
    if not lines:
        return {}, [], skipped
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except csv.Error:
        return {}, [], skipped + ["the header"]
    rows = {}
    n = 1
    while True:
        n += 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error:
            skipped.append(f"row {n} (not CSV)")
            continue
        if len(fields) != len(header):
            skipped.append(f"row {n} ({len(fields)} fields, the header has {len(header)})")
            continue
        r = dict(zip(header, fields))
        if not r.get("key"):
            skipped.append(f"row {n} (no key)")
            continue
        rows[r["key"]] = r
    return rows, header, skipped


def recover(out, todo, rows, listed):
    """Rows of this sweep's protocol runs that results.csv does not list (``listed``) but whose folder holds
    the summary.json a finished protocol writes: rebuilt from it into ``rows``. Returns the keys recovered."""
    found = []
    for swept, _, key in todo:
        if key in rows or key in listed:
            continue
        try:
            with open(os.path.join(out, "runs", key, "summary.json")) as f:
                s = json.load(f)
            row = dict(status="ok", message="recovered from runs/" + key, **summary_row(s))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        row["wall_seconds"] = s.get("wall_seconds", math.nan)
        rows[key] = dict(row, key=key, **swept)
        found.append(key)
    return found


class SweepBusyError(RuntimeError):
    """Another sweep is writing into the same folder."""


def take_lock(out):
    """An exclusive lock on the sweep folder ``out`` (held until the returned file is closed; the system
    releases it if the process dies); ``SweepBusyError`` when another sweep holds it."""
    f = open(os.path.join(out, ".sweep.lock"), "a+")
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no flock (Windows): no protection against a second sweep
        return f
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise SweepBusyError(f"another sweep is writing into {out}; wait for it to finish, or give this one "
                             "another --out") from None
    return f


def append_row(path, row, columns):
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        if f.tell() == 0:
            w.writeheader()
        w.writerow(row)
        f.flush()
        os.fsync(f.fileno())


def swept_keys(rows):
    """The swept keys of a sweep's rows, in order (the columns before ``status``)."""
    if not rows:
        return []
    keys = list(rows[0])

    def given(v):  # (results.csv keeps other sweeps' keys: empty in the rows of this one)
        return v is not None and v != "" and not (isinstance(v, float) and math.isnan(v))

    return [k for k in keys[:keys.index("status")] if k.partition(".")[0] in ("teacher", "protocol")
            and any(given(r.get(k)) for r in rows)]


def write_rows(path, rows, columns):
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
