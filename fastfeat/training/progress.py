"""The progress bar of ``ff.train`` (``progress=True``)."""
import numpy as np


class Progress:
    """The progress bar of ``progress=True`` (tqdm): steps done, and a postfix with the training speed
    (steps per second spent in the compiled calls only: compiling, logging and checkpoints excluded)
    and each logged scalar metric once."""

    def __init__(self, total, enabled):
        self.bar = None
        self.kernel_seconds = 0.0
        self.kernel_steps = 0
        self.calls = 0
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="step", dynamic_ncols=True, leave=True,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]")
        self.shown = 0
        self.last = {}

    def timed(self, seconds, steps):
        """Account one compiled call (the first one compiles: it is left out of the speed)."""
        self.calls += 1
        if self.calls > 1:
            self.kernel_seconds += seconds
            self.kernel_steps += steps

    def note(self, values):
        """Remember the scalar metrics of a row (shown at the next update)."""
        self.last.update({k: v for k, v in values.items() if "." not in k and np.ndim(v) == 0})

    def update(self, done, values):
        if self.bar is None:
            return
        parts = []
        if self.kernel_steps:
            parts.append(f"{self.kernel_steps / max(self.kernel_seconds, 1e-12):.3g} steps/s")
        self.note(values)  # the latest known value of each scalar metric (a "loss" may come with the next call)
        parts += [f"{k}={float(v):.4g}" for k, v in self.last.items()]
        self.bar.set_postfix_str(", ".join(parts), refresh=False)
        self.bar.update(done - self.shown)
        self.shown = done

    def close(self):
        if self.bar is not None:
            self.bar.close()
