"""The summary figure of a sweep: a metric against a swept key, one line per value of another."""

import numpy as np

from ..experiment import pyplot, save_figure


#: the metrics of results.csv a summary plot can show (numbers)
PLOT_METRICS = ("relative_loss", "loss", "best_cos_min", "captured_mass_error", "far_mass", "active_neurons",
                "wall_seconds")


def check_plot(y):
    """ValueError unless ``y`` is a metric a summary plot can show (checked before a sweep runs)."""
    if y not in PLOT_METRICS:
        raise ValueError(f"plot: unknown metric {y!r}; choose one of {list(PLOT_METRICS)}")


def _number(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def plot(rows, path, *, x, y, by=None, logy=None):
    """A summary plot of metric ``y`` against swept key ``x`` (one line per value of swept key ``by``): the
    mean over the other swept keys (seeds, ...) with their spread (min to max) as a band, every run as a
    faint dot. A key whose values are not all numbers (an activation) is shown as categories; a numeric
    one spanning a factor 4 or more on a log axis. ``logy`` None: a log axis for a metric spanning a factor
    10 or more (losses), else linear (cosines)."""
    check_plot(y)
    plt = pyplot()
    ok = [r for r in rows if r.get("status") == "ok" and _number(r.get(y)) is not None]
    numeric = all(_number(r.get(x)) is not None for r in ok)
    if numeric:
        def pos(v):
            return _number(v)
        ticks = None
    else:
        cats = list(dict.fromkeys(str(r.get(x)) for r in ok))
        def pos(v):
            return float(cats.index(str(v)))
        ticks = cats
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    groups = {}
    for r in ok:
        groups.setdefault(r.get(by) if by else None, []).append((pos(r[x]), _number(r[y])))
    def order(kv):  # numbers in numeric order, then the rest by name
        v = _number(kv[0])
        return (0, v, "") if v is not None else (1, 0.0, str(kv[0]))

    for g, pts in sorted(groups.items(), key=order):
        xs = sorted({p[0] for p in pts})
        vals = [[p[1] for p in pts if p[0] == v] for v in xs]
        line = ax.plot(xs, [np.mean(v) for v in vals], "o-", label=f"{by} = {g}" if by else None)[0]
        if any(len(v) > 1 for v in vals):
            ax.fill_between(xs, [min(v) for v in vals], [max(v) for v in vals], color=line.get_color(), alpha=0.2,
                            linewidth=0)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], ".", color=line.get_color(), alpha=0.35)
    ys_all = [_number(r[y]) for r in ok]
    if logy is None:
        logy = bool(ys_all) and min(ys_all) > 0 and max(ys_all) >= 10 * min(ys_all)
    ax.set_xlabel(x)
    ax.set_ylabel(y + (" (log scale)" if logy else ""))
    ax.set_title(f"{y} against {x}" + (f", one line per {by}" if by else "")
                 + "\n(mean over the other swept keys, band: min to max, dots: runs)", fontsize=10)
    if ticks is not None:
        ax.set_xticks(range(len(ticks)))
        ax.set_xticklabels(ticks)
    else:
        xs_all = [pos(r[x]) for r in ok]
        if xs_all and min(xs_all) > 0 and max(xs_all) / min(xs_all) >= 4:  # widths, sample sizes: log axis
            ax.set_xscale("log")
    if logy and ys_all and min(ys_all) > 0:
        ax.set_yscale("log")
    if by:
        ax.legend(fontsize=8)
    save_figure(fig, path, plt, grid=(ax,))
