"""The sweep's figures: validation NLL against format, and three figures with a panel per
format (smoothed training loss, its gap to the float run of the same seed, stalled updates).

    val_nll.png      validation NLL against format (float as a line and a band)
    loss_curves.png  smoothed training loss against step, a panel per format
    loss_gap.png     the same minus the float run of the same seed
    stalled.png      the stalled-update rate against step, a panel per format
"""

import io
import math
import sys

import numpy as np

from qgpt import checkpoint

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


def _save_fig(fig, path):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    checkpoint.write_atomic(path, buf.getvalue())


def _pyplot():
    """matplotlib's pyplot on the Agg backend, or None (and a note) when it is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("qgpt sweep: plots skipped: matplotlib is not installed (pip install -e '.[plot]')",
              file=sys.stderr)
        return None
    return plt


def write_plots(out, sweep, records, losses, rows):
    """val_nll.png, loss_curves.png, loss_gap.png and stalled.png; [] (and a note)
    without matplotlib."""
    plt = _pyplot()
    if plt is None:
        return []
    paths = [out / "val_nll.png"]
    _val_nll_figure(plt, sweep, rows, paths[-1])

    window = max(1, sweep.steps // SMOOTH_FRACTION)
    steps = np.arange(1, sweep.steps + 1)

    def runs_of(f, rnd):
        return [i for i, r in enumerate(records)
                if r["config"]["format"] == f and r["config"]["rounding"] == rnd]

    # smoothed training loss against step
    float_runs = [i for i, r in enumerate(records) if r["config"]["format"] == "float"]
    float_curve = _smooth(np.mean([losses[i] for i in float_runs], axis=0), window)

    def draw_loss(ax, f):
        ax.plot(steps, float_curve, color="black", ls="--", lw=1, label="float64")
        for rnd in sweep.roundings:
            curve = _smooth(np.mean([losses[i] for i in runs_of(f, rnd)], axis=0), window)
            ax.plot(steps, curve, color=ROUNDING_COLORS.get(rnd), lw=1.2, label=rnd)
        return f

    paths.append(out / "loss_curves.png")
    _panel_figure(plt, sweep.formats, draw_loss, "training loss", True, paths[-1],
                  f"training loss, mean over {_seeds(sweep)}, {window}-step moving average")

    # the same curves minus the float run of the same seed (same init, same names)
    float_loss = {records[i]["config"]["seed"]: losses[i] for i in float_runs}

    def draw_gap(ax, f):
        ax.axhline(0, color="black", ls="--", lw=1)
        gaps = {rnd: _smooth(np.mean([np.asarray(losses[i])
                                      - float_loss[records[i]["config"]["seed"]]
                                      for i in runs_of(f, rnd)], axis=0), window)
                for rnd in sweep.roundings}
        for rnd, y in gaps.items():
            ax.plot(steps, y, color=ROUNDING_COLORS.get(rnd), lw=1.2, label=rnd)
        if max(np.abs(y).max() for y in gaps.values()) > GAP_SYMLOG_ABOVE:
            # linear within +-GAP_LINEAR nats, logarithmic beyond: small gaps and
            # divergence stay readable in one panel
            ax.set_yscale("symlog", linthresh=GAP_LINEAR)
            return f"{f} (symlog scale)"
        return f

    paths.append(out / "loss_gap.png")
    _panel_figure(plt, sweep.formats, draw_gap, "loss - float loss (nats)", False, paths[-1],
                  f"training loss minus the float run with the same seed, mean over "
                  f"{_seeds(sweep)}, {window}-step moving average")

    # stalled-update rate against step (binned curves of results.json, mean over seeds)
    def draw_stalled(ax, f):
        for rnd in sweep.roundings:
            curves = [records[i]["curve"] for i in runs_of(f, rnd)]
            width = curves[0]["bin_steps"]
            y = 100 * np.mean([c["stalled_update_rate"] for c in curves], axis=0)
            x = np.arange(len(y)) * width + width / 2
            ax.plot(x, y, color=ROUNDING_COLORS.get(rnd), lw=1.2, marker=".", ms=3, label=rnd)
        ax.set_ylim(0, 100)
        return f

    paths.append(out / "stalled.png")
    _panel_figure(plt, sweep.formats, draw_stalled, "stalled updates (%)", True, paths[-1],
                  f"updates that rounded to zero, % of parameters per step, mean over "
                  f"{_seeds(sweep)} (learning rate decays linearly to 0)")
    return paths


def _val_nll_figure(plt, sweep, rows, path):
    """Validation NLL against format: full scale, and zoomed on the float reference."""
    fl = rows[0]
    x = np.arange(len(sweep.formats))
    n_round = len(sweep.roundings)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, zoom in zip(axes, (False, True), strict=True):
        ax.axhline(fl["val_nll_mean"], color="black", lw=1, label="float64 (mean)")
        ax.axhspan(fl["val_nll_min"], fl["val_nll_max"], color="black", alpha=0.12,
                   label="float64 (min-max over seeds)")
        for j, rnd in enumerate(sweep.roundings):
            rs = [r for r in rows if r["rounding"] == rnd]
            mean = np.array([r["val_nll_mean"] for r in rs])
            err = [mean - [r["val_nll_min"] for r in rs], [r["val_nll_max"] for r in rs] - mean]
            ax.errorbar(x + 0.12 * (j - (n_round - 1) / 2), mean, yerr=err, fmt="o-", ms=4,
                        capsize=3, color=ROUNDING_COLORS.get(rnd), label=f"{rnd} (mean, min-max)")
        ax.set_xticks(x, sweep.formats)
        ax.set_xlabel("format (qI.F: I integer bits with sign, F fractional bits)")
        ax.set_ylabel("validation NLL (nats/token)")
        if zoom:
            ax.set_ylim(fl["val_nll_min"] - 0.02, fl["val_nll_max"] + 0.12)
            ax.set_title("zoom: within 0.1 nats of float")
        else:
            ax.set_title(f"validation NLL, {sweep.steps} steps, {_seeds(sweep)}")
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
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
    fig.tight_layout()
    _save_fig(fig, path)
    plt.close(fig)
