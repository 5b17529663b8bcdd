"""The sweep's figures, grouped by any axis (--group-by, default format): validation NLL
against that axis, and three figures with a panel per value of it (smoothed training loss,
its gap to the float run of the same seed, stalled updates).

    val_nll.png      validation NLL against the axis (float as a line and a band)
    loss_curves.png  smoothed training loss against step, a panel per value
    loss_gap.png     the same minus the float run of the same seed
    stalled.png      the stalled-update rate against step, a panel per value
"""

import importlib.util
import io
import itertools
import math
import sys

import numpy as np

from qgpt import checkpoint
from qgpt.sweep.axes import AXES, AXIS_BY_NAME

SMOOTH_FRACTION = 10  # loss curves: moving average over steps // 10 steps
GAP_SYMLOG_ABOVE = 0.1  # loss_gap.png: panels with larger gaps get a symlog y scale,
GAP_LINEAR = 0.02  # linear within +-0.02 nats, logarithmic beyond
ROUNDING_COLORS = {"nearest": "tab:blue", "floor": "tab:orange", "stochastic": "tab:green"}


def _seeds(sweep):
    return f"{sweep.seeds} seed{'s' if sweep.seeds > 1 else ''}"


def _smooth(y, window):
    """Trailing moving average (shorter at the start)."""
    c = np.cumsum(np.insert(np.asarray(y, dtype=np.float64), 0, 0.0))
    n = np.arange(1, len(y) + 1)
    lo = np.maximum(0, n - window)
    return (c[n] - c[lo]) / (n - lo)


def _margins(fig, nrows, ncols, left, right, bottom, top, wgap, hgap):
    """Place a grid of axes by margins and gaps in inches: what tight_layout would find
    for these figures' labels, without measuring every label (a third of the drawing
    time)."""
    w, h = fig.get_size_inches()
    axes_w = (w - left - right - (ncols - 1) * wgap) / ncols
    axes_h = (h - bottom - top - (nrows - 1) * hgap) / nrows
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h,
                        wspace=wgap / axes_w, hspace=hgap / axes_h)


def _save_fig(fig, path):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    checkpoint.write_atomic(path, buf.getvalue())


class _Layout:
    """What goes where: x positions (val_nll.png) and panels (the others) are the values of
    the group-by axis; the lines are the combinations of the other axes that vary (rounding,
    or format when grouping by rounding, always); the float reference is matched to each
    integer point by the axes that apply to it (lr, steps)."""

    def __init__(self, sweep, records, group_by):
        self.sweep, self.records, self.group_by = sweep, records, group_by
        self.axis = AXIS_BY_NAME[group_by]
        self.xs = list(sweep.values(group_by))
        self.series_axes = [a.name for a in AXES if a.name != group_by and (
            len(sweep.values(a.name)) > 1 or a.name in ("format", "rounding"))]
        self.series = list(itertools.product(*(sweep.values(a) for a in self.series_axes)))
        self.single = {a.name: sweep.values(a.name)[0] for a in AXES}
        self.index = {}  # grid point (as a sorted tuple) -> indices of its runs in records
        for i, r in enumerate(records):
            self.index.setdefault(tuple(sorted(r["point"].items())), []).append(i)

    def point(self, x, series):
        point = dict(self.single)
        point[self.group_by] = x
        point.update(zip(self.series_axes, series, strict=True))
        return point

    def runs(self, point):
        return self.index.get(tuple(sorted(point.items())), [])

    def float_point(self, point):
        fp = {a.name: None for a in AXES}
        fp.update({a.name: point[a.name] for a in AXES if not a.integer_only}, format="float")
        return fp

    def float_points(self, points):
        """The distinct float reference points of points, in order."""
        out = []
        for p in points:
            fp = self.float_point(p)
            if fp not in out:
                out.append(fp)
        return out

    def float_label(self, fp, many):
        if not many:
            return "float64"
        return self.sweep.label(fp)

    def series_label(self, series):
        words = []
        for name, value in zip(self.series_axes, series, strict=True):
            shown = AXIS_BY_NAME[name].show(value)
            words.append(shown if name in ("format", "rounding") else f"{name} {shown}")
        return " ".join(words)

    def color(self, k, series):
        if self.series_axes == ["rounding"]:
            return ROUNDING_COLORS.get(series[0])
        return f"C{k % 10}"

    def title(self, x):
        if self.group_by == "format":
            return self.axis.show(x)
        return f"{self.group_by} {self.axis.show(x)}"


def _window(steps):
    return max(1, steps // SMOOTH_FRACTION)


def _window_text(sweep):
    steps = sweep.values("steps")
    if len(steps) == 1:
        return f"{_window(steps[0])}-step moving average"
    return f"moving average over a {SMOOTH_FRACTION}th of the steps"


FIGURES = ("val_nll", "loss_curves", "loss_gap", "stalled")  # in results.md's order
DRAWING_ORDER = ("loss_curves", "loss_gap", "stalled", "val_nll")  # the slowest first


def can_plot():
    """True if matplotlib is installed (found without importing it)."""
    return importlib.util.find_spec("matplotlib") is not None


def write_plots(out, sweep, records, losses, rows, group_by="format", executor=None):
    """val_nll.png, loss_curves.png, loss_gap.png and stalled.png, grouped by the axis
    group_by; [] (and a note) without matplotlib. executor: a process pool of this machine
    to draw the figures side by side (draw_figure in its processes), or None: here."""
    if not can_plot():
        print("qgpt sweep: plots skipped: matplotlib is not installed (pip install -e '.[plot]')",
              file=sys.stderr)
        return []
    args = (out, sweep, records, losses, rows, group_by)
    if executor is None:
        for name in DRAWING_ORDER:
            draw_figure(name, *args)
    else:
        for future in [executor.submit(draw_figure, name, *args) for name in DRAWING_ORDER]:
            future.result()
    return [out / f"{name}.png" for name in FIGURES]


def _pyplot():
    """matplotlib's pyplot on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def preload_pyplot():
    """Import pyplot in this process (a pool's worker, before it draws a figure)."""
    _pyplot()


def draw_figure(name, out, sweep, records, losses, rows, group_by):
    """Draw the figure name of FIGURES into out/name.png."""
    plt = _pyplot()
    lay = _Layout(sweep, records, group_by)
    path = out / f"{name}.png"
    if name == "val_nll":
        _val_nll_figure(plt, lay, rows, path)
    elif name == "loss_curves":
        _loss_curves_figure(plt, lay, losses, path)
    elif name == "loss_gap":
        _loss_gap_figure(plt, lay, losses, path)
    else:
        _stalled_figure(plt, lay, path)
    return path


def _mean_curve(losses, indices, minus=None):
    """The smoothed mean of the runs' per-step losses (minus(i): a curve to subtract from
    run i's)."""
    ys = [np.asarray(losses[i]) - (0 if minus is None else minus(i)) for i in indices]
    return _smooth(np.mean(ys, axis=0), _window(len(ys[0])))


def _steps_of(curve):
    return np.arange(1, len(curve) + 1)


def _loss_curves_figure(plt, lay, losses, path):
    """Smoothed training loss against step, a panel per value of the group-by axis."""

    def draw_loss(ax, x):
        points = [lay.point(x, s) for s in lay.series]
        fps = lay.float_points(points)
        for fp in fps:
            y = _mean_curve(losses, lay.runs(fp))
            ax.plot(_steps_of(y), y, color="black", ls="--", lw=1,
                    label=lay.float_label(fp, len(fps) > 1))
        for k, (s, p) in enumerate(zip(lay.series, points, strict=True)):
            y = _mean_curve(losses, lay.runs(p))
            ax.plot(_steps_of(y), y, color=lay.color(k, s), lw=1.2, label=lay.series_label(s))
        return lay.title(x)

    _panel_figure(plt, lay.xs, draw_loss, "training loss", True, path,
                  f"training loss, mean over {_seeds(lay.sweep)}, {_window_text(lay.sweep)}")


def _loss_gap_figure(plt, lay, losses, path):
    """The loss curves minus the float run of the same seed (same init, same names)."""
    sweep, records = lay.sweep, lay.records
    float_loss = {}
    for fp in lay.float_points(sweep.points()):
        for i in lay.runs(fp):
            float_loss[tuple(sorted(fp.items())), records[i]["config"]["seed"]] = losses[i]

    def paired_float(point):
        key = tuple(sorted(lay.float_point(point).items()))
        return lambda i: np.asarray(float_loss[key, records[i]["config"]["seed"]])

    def draw_gap(ax, x):
        ax.axhline(0, color="black", ls="--", lw=1)
        gaps = []
        for s in lay.series:
            p = lay.point(x, s)
            gaps.append(_mean_curve(losses, lay.runs(p), minus=paired_float(p)))
        for k, (s, y) in enumerate(zip(lay.series, gaps, strict=True)):
            ax.plot(_steps_of(y), y, color=lay.color(k, s), lw=1.2, label=lay.series_label(s))
        if max(np.abs(y).max() for y in gaps) > GAP_SYMLOG_ABOVE:
            # linear within +-GAP_LINEAR nats, logarithmic beyond: small gaps and
            # divergence stay readable in one panel
            ax.set_yscale("symlog", linthresh=GAP_LINEAR)
            return f"{lay.title(x)} (symlog scale)"
        return lay.title(x)

    _panel_figure(plt, lay.xs, draw_gap, "loss - float loss (nats)", False, path,
                  f"training loss minus the float run with the same seed, mean over "
                  f"{_seeds(sweep)}, {_window_text(sweep)}")


def _stalled_figure(plt, lay, path):
    """The stalled-update rate against step (binned curves of results.json, mean over
    seeds)."""

    def draw_stalled(ax, x):
        for k, s in enumerate(lay.series):
            curves = [lay.records[i]["curve"] for i in lay.runs(lay.point(x, s))]
            width = curves[0]["bin_steps"]
            y = 100 * np.mean([c["stalled_update_rate"] for c in curves], axis=0)
            steps = np.arange(len(y)) * width + width / 2
            ax.plot(steps, y, color=lay.color(k, s), lw=1.2, marker=".", ms=3,
                    label=lay.series_label(s))
        ax.set_ylim(0, 100)
        return lay.title(x)

    _panel_figure(plt, lay.xs, draw_stalled, "stalled updates (%)", True, path,
                  f"updates that rounded to zero, % of parameters per step, mean over "
                  f"{_seeds(lay.sweep)} (learning rate decays linearly to 0)")


def _val_nll_figure(plt, lay, rows, path):
    """Validation NLL against the group-by axis: full scale, and zoomed on the float
    reference."""
    sweep = lay.sweep
    row_of = {tuple(sorted((a.name, r[a.name]) for a in AXES)): r for r in rows}

    def row(point):
        return row_of[tuple(sorted(point.items()))]

    float_rows = [r for r in rows if r["format"] == "float"]
    lo = min(r["val_nll_min"] for r in float_rows)
    hi = max(r["val_nll_max"] for r in float_rows)
    x = np.arange(len(lay.xs))
    n_series = len(lay.series)
    offset = min(0.12, 0.6 / n_series)  # the series side by side around each x
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, zoom in zip(axes, (False, True), strict=True):
        if lay.axis.integer_only:  # the float reference is a level: a line and its band
            fps = lay.float_points([lay.point(v, s) for v in lay.xs for s in lay.series])
            for k, fp in enumerate(fps):
                fr = row(fp)
                many = len(fps) > 1
                name = lay.float_label(fp, many)
                gray = "black" if not many else f"{0.6 * k / len(fps)}"
                ax.axhline(fr["val_nll_mean"], color=gray, lw=1, label=f"{name} (mean)")
                if not many:
                    ax.axhspan(fr["val_nll_min"], fr["val_nll_max"], color="black", alpha=0.12,
                               label="float64 (min-max over seeds)")
        else:  # the float reference varies along x too: a line per value of the others
            lines = []
            for s in lay.series:
                line = [lay.float_point(lay.point(v, s)) for v in lay.xs]
                if line not in lines:
                    lines.append(line)
            for k, line in enumerate(lines):
                frs = [row(fp) for fp in line]
                mean = np.array([r["val_nll_mean"] for r in frs])
                err = [mean - [r["val_nll_min"] for r in frs],
                       [r["val_nll_max"] for r in frs] - mean]
                name = lay.float_label({**line[0], lay.group_by: None}, len(lines) > 1)
                ax.errorbar(x, mean, yerr=err, fmt="s--", ms=4, capsize=3,
                            color="black" if len(lines) == 1 else f"{0.6 * k / len(lines)}",
                            label=f"{name} (mean, min-max)")
        for j, s in enumerate(lay.series):
            rs = [row(lay.point(v, s)) for v in lay.xs]
            mean = np.array([r["val_nll_mean"] for r in rs])
            err = [mean - [r["val_nll_min"] for r in rs], [r["val_nll_max"] for r in rs] - mean]
            ax.errorbar(x + offset * (j - (n_series - 1) / 2), mean, yerr=err, fmt="o-", ms=4,
                        capsize=3, color=lay.color(j, s),
                        label=f"{lay.series_label(s)} (mean, min-max)")
        ax.set_xticks(x, [lay.axis.show(v) for v in lay.xs])
        if lay.group_by == "format":
            ax.set_xlabel("format (qI.F: I integer bits with sign, F fractional bits)")
        else:
            ax.set_xlabel(lay.group_by)
        ax.set_ylabel("validation NLL (nats/token)")
        if zoom:
            ax.set_ylim(lo - 0.02, hi + 0.12)
            ax.set_title("zoom: within 0.1 nats of float")
        else:
            steps = ", ".join(map(str, sweep.values("steps")))
            ax.set_title(f"validation NLL, {steps} steps, {_seeds(sweep)}")
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    _margins(fig, 1, 2, left=0.7, right=0.15, bottom=0.6, top=0.35, wgap=0.8, hgap=0)
    _save_fig(fig, path)
    plt.close(fig)


def _panel_figure(plt, panels, draw, ylabel, sharey, path, title):
    """A grid of panels (at most 4 a row), one per item of panels, against step:
    draw(ax, item) plots one panel and returns its title; a legend in the first."""
    ncols = min(4, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3.2 * nrows), sharex=True,
                             sharey=sharey, squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= len(panels):
            ax.axis("off")
            continue
        ax.set_title(draw(ax, panels[k]))
        ax.grid(alpha=0.3)
        if k == 0:
            ax.legend(fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("step")
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    fig.suptitle(title)
    # y tick labels on every panel unless shared (loss_gap's symlog ones are the widest)
    _margins(fig, nrows, ncols, left=0.95, right=0.15, bottom=0.5, top=0.7,
             wgap=0.25 if sharey else 0.75, hgap=0.4)
    _save_fig(fig, path)
    plt.close(fig)
