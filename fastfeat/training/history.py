"""``ff.History``: what ``ff.train`` logged."""
import json

import numpy as np


class History:
    """Logged values: ``step`` (int array) and ``metrics`` {name: array with one row per logged step}.

    ``save(path)`` writes JSON (``.json``) or a numpy archive (``.npz``); ``History.load(path)`` reads
    either back.
    """

    def __init__(self, step=None, metrics=None, info=None):
        self.step = np.asarray([] if step is None else step, dtype=np.int64)
        self.metrics = {k: np.asarray(v) for k, v in (metrics or {}).items()}
        self.info = dict(info or {})

    # Rows logged by train() are kept in lists and turned into arrays when read, so logging costs
    # O(1) per row instead of copying every array at every row.
    @property
    def step(self):
        if self._new_steps:
            self._step = np.concatenate([self._step, np.asarray(self._new_steps, np.int64)])
            self._new_steps = []
        return self._step

    @step.setter
    def step(self, value):
        self._step = np.asarray(value, dtype=np.int64)
        self._new_steps = []

    @property
    def metrics(self):
        if self._new_rows:
            for k, rows in self._new_rows.items():
                new = np.asarray(rows, dtype=float)
                old = self._metrics.get(k)
                self._metrics[k] = new if old is None or len(old) == 0 else np.concatenate([old, new])
            self._new_rows = {}
        return self._metrics

    @metrics.setter
    def metrics(self, value):
        self._metrics = dict(value)
        self._new_rows = {}

    def __len__(self):
        return len(self.step)

    @property
    def alpha(self):
        """Online time ``alpha = step / d`` (the samples seen per input dimension, with batch 1), for a
        history of ``ff.train`` on ``ff.Online`` (its ``info["d"]``); ValueError for other histories."""
        d = self.info.get("d")
        if self.info.get("objective") != "online" or not d:
            raise ValueError("alpha = step / d is the time of online SGD: this history was not logged by ff.train "
                             "on ff.Online")
        return self.step / float(d)

    def __getitem__(self, name):
        return self.metrics[name]

    def __repr__(self):
        return f"History({len(self)} rows, metrics={sorted(self.metrics)})"

    def to_dict(self):
        return {"step": self.step.tolist(), "metrics": {k: np.asarray(v).tolist() for k, v in self.metrics.items()},
                "info": self.info}

    @classmethod
    def from_dict(cls, d):
        return cls(d["step"], {k: np.asarray(v, dtype=float) for k, v in d["metrics"].items()}, d.get("info"))

    def to_pandas(self):
        """A pandas DataFrame indexed by step, one column per logged value (a per-teacher metric such as
        ``alignment.best_cos`` becomes ``alignment.best_cos[0]``, ``[1]``, ...). Needs pandas."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("History.to_pandas needs pandas: pip install pandas") from None
        cols = {}
        for k, v in self.metrics.items():
            v = np.asarray(v)
            if v.ndim == 1:
                cols[k] = v
            else:
                flat = v.reshape(len(v), -1)
                for i in range(flat.shape[1]):
                    cols[f"{k}[{i}]"] = flat[:, i]
        return pd.DataFrame(cols, index=pd.Index(self.step, name="step"))

    def save(self, path):
        path = str(path)
        if path.endswith(".npz"):
            np.savez(path, step=self.step, info=json.dumps(self.info),
                     **{"metric:" + k: v for k, v in self.metrics.items()})
        else:
            with open(path, "w") as f:
                json.dump(self.to_dict(), f)

    @classmethod
    def load(cls, path):
        path = str(path)
        if path.endswith(".npz"):
            with np.load(path) as z:
                return cls(z["step"], {k[len("metric:"):]: z[k] for k in z.files if k.startswith("metric:")},
                           json.loads(str(z["info"])))
        with open(path) as f:
            return cls.from_dict(json.load(f))

    # used by train() while logging
    def _append(self, step, values):
        """One row. A name missing from ``values`` gets NaN in this row, and a name seen for the first
        time gets NaN in the earlier rows (shaped like its value), so every column keeps one entry per
        step (a run resumed with other metrics)."""
        rows = len(self._step) + len(self._new_steps)
        for k, v in values.items():
            if k not in self._new_rows and k not in self._metrics:
                self._new_rows[k] = [np.full(np.shape(v), np.nan)] * rows if rows else []
            elif k not in self._new_rows:
                self._new_rows[k] = []
            self._new_rows[k].append(v)
        for k in dict.fromkeys(list(self._metrics) + list(self._new_rows)):
            if k not in values:
                last = self._new_rows[k][-1] if self._new_rows.get(k) else self._metrics[k][-1]
                self._new_rows.setdefault(k, []).append(np.full(np.shape(last), np.nan))
        self._new_steps.append(int(step))

    @staticmethod
    def concat(histories):
        """Join histories of consecutive runs (e.g. the stages of a protocol) into one."""
        out = History()
        for h in histories:
            for i, s in enumerate(h.step):
                out._append(s, {k: v[i] for k, v in h.metrics.items()})
        return out
