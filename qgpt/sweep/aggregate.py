"""Aggregation: one row per grid point over the seeds (results.csv), and the tables made of
them, ordered by any axis.

Every integer grid point is compared with the float reference at the same values of the axes
that apply to float (lr, steps): Δ float with its mean, the paired Δ with the float run of
the same seed (same initial weights, same data order).
"""

import numpy as np
from tabulate import tabulate

from qgpt import qformat
from qgpt.params import SLOTS
from qgpt.policy import from_train_config
from qgpt.runconfig import TrainConfig
from qgpt.sweep.axes import AXES, AXIS_BY_NAME
from qgpt.sweep.execute import TIMING_KEY

TIMING_COLUMNS = ("seconds_per_run",)  # rows' columns that depend on the machine


def _std(a):
    return float(np.std(a, ddof=1)) if len(a) > 1 else 0.0


def float_key(point):
    """The float reference's grid point for point: the values of the axes that apply to it."""
    return tuple(point[a.name] for a in AXES if not a.integer_only)


def records_at(records, point):
    return [r for r in records if r["point"] == point]


def summarize(sweep, records):
    """One row per grid point, float first, in grid order: the axes' values, the format's
    properties, the means over seeds. Numbers, no formatting."""
    float_val = {(float_key(r["point"]), r["config"]["seed"]): r["summary"]["val_nll"]
                 for r in records if r["point"]["format"] == "float"}
    rows = []
    for point in sweep.points():
        recs = records_at(records, point)
        is_float = point["format"] == "float"
        s = [r["summary"] for r in recs]
        val = np.array([x["val_nll"] for x in s])
        base = np.array([float_val[float_key(point), x["seed"]] for x in s])
        row = dict(point)
        row.update({"bits": 64, "int_bits": None, "frac_bits": None, "range_lo": None,
                    "range_hi": None, "step": None})
        if not is_float:
            config = TrainConfig(**recs[0]["config"])  # the run's resolved weights format
            q = qformat.parse(config.format)
            lo, hi = q.range()
            row.update(bits=q.bits, int_bits=q.int_bits, frac_bits=q.frac_bits, range_lo=lo,
                       range_hi=hi + q.step, step=q.step)
        row["state_bytes"] = None if is_float else from_train_config(config).state_bytes()
        row.update({
            "seeds": len(s),
            "val_nll_mean": float(val.mean()),
            "val_nll_std": _std(val),
            "val_nll_min": float(val.min()),
            "val_nll_max": float(val.max()),
            "delta_float": float(val.mean()) - float(base.mean()),
            "delta_float_paired_std": _std(val - base),
            "train_loss_last100": float(np.mean([x["train_loss_last100"] for x in s])),
            "saturations_per_step": (None if is_float else
                                     float(np.mean([x["saturations_per_step"] for x in s]))),
            "stalled_update_rate": (None if is_float else
                                    float(np.mean([x["stalled_update_rate"] for x in s]))),
            "frozen_fraction": float(np.mean([x["frozen_fraction"] for x in s])),
            "weight_mean_change": float(np.mean([x["weight_mean_change"] for x in s])),
            "seconds_per_run": float(np.mean([r[TIMING_KEY]["train_seconds"]
                                              + r[TIMING_KEY]["eval_seconds"] for r in recs])),
        })
        rows.append(row)
    return rows


def group_rows(rows, axis):
    """rows ordered by the values of axis (in their first-seen order; float and "does not
    apply" first), the grid order kept within each value."""
    order = {}
    for r in rows:
        order.setdefault(_group_value(r, axis), len(order))
    return sorted(rows, key=lambda r: (_group_value(r, axis) is not None,
                                       order[_group_value(r, axis)]))


def _group_value(row, axis):
    value = row[axis]
    return None if value == "float" else value


def shown_axes(rows, group_by="format"):
    """The axes a table shows: those run labels name (axes.Axis.in_label), group_by first."""
    axes = [a for a in AXES
            if a.in_label(list(dict.fromkeys(r[a.name] for r in rows if r[a.name] is not None)))]
    return sorted(axes, key=lambda a: a.name != group_by)


def _axis_cells(axes, row):
    cells = []
    for a in axes:
        if a.name == "format" and row["format"] == "float":
            cells.append("float64")
        else:
            cells.append(AXIS_BY_NAME[a.name].show(row[a.name]))
    return cells


TABLE_HEADERS = ["bits", "range", "step", "state B", "val_nll", "std", "min-max", "Δ float",
                 "Δ std", "train last100", "sat/step", "stalled %", "frozen %", "s/run"]


def num(x, spec):
    return "-" if x is None else format(x, spec)


def table_rows(rows, axes):
    out = []
    for r in rows:
        is_float = r["format"] == "float"
        out.append(_axis_cells(axes, r) + [
            r["bits"],
            "-" if is_float else f"[{r['range_lo']:g}, {r['range_hi']:g})",
            "-" if is_float else f"2^-{r['frac_bits']}",
            num(r["state_bytes"], ","),
            f"{r['val_nll_mean']:.4f}",
            f"{r['val_nll_std']:.4f}",
            f"{r['val_nll_min']:.3f}-{r['val_nll_max']:.3f}",
            "-" if is_float else f"{r['delta_float']:+.4f}",
            "-" if is_float else f"{r['delta_float_paired_std']:.4f}",
            f"{r['train_loss_last100']:.4f}",
            num(r["saturations_per_step"], ".2f"),
            num(None if is_float else 100 * r["stalled_update_rate"], ".1f"),
            f"{100 * r['frozen_fraction']:.1f}",
            f"{r['seconds_per_run']:.1f}",
        ])
    return out


def format_table(rows, tablefmt="simple", group_by="format"):
    """The summary table, its rows ordered by the axis group_by."""
    axes = shown_axes(rows, group_by)
    return tabulate(table_rows(group_rows(rows, group_by), axes),
                    headers=[a.name for a in axes] + TABLE_HEADERS, tablefmt=tablefmt,
                    disable_numparse=True)


def _percent(fraction):
    return "<0.1%" if 100 * fraction < 0.05 else f"{100 * fraction:.1f}%"


def by_tensor_table(records, rows, group_by="format"):
    """Markdown: per grid point (float first), the saturations per step and the frozen
    fraction of each tensor (means over seeds, zeros left out), and the mean weight change."""
    axes = shown_axes(rows, group_by)
    lines = []
    for row in group_rows(rows, group_by):
        recs = [r["summary"] for r in records_at(records, {a.name: row[a.name] for a in AXES})]
        tensors = sorted({t for s in recs for t in s.get("saturations", {})})
        per = {t: np.mean([s["saturations"].get(t, 0) / s["steps"] for s in recs])
               for t in tensors}
        sat = ", ".join(f"{t} {v:.3g}" for t, v in sorted(per.items(), key=lambda kv: -kv[1])
                        if v > 0) or ("-" if row["format"] == "float" else "none")
        frozen = {s.name: np.mean([x["frozen_by_tensor"][s.name] for x in recs]) / s.size
                  for s in SLOTS}
        fro = ", ".join(f"{t} {_percent(v)}" for t, v in frozen.items() if v > 0) or "none"
        drift = f"{row['weight_mean_change']:+.4f}"
        lines.append("| " + " | ".join(_axis_cells(axes, row) + [drift, sat, fro]) + " |")
    header = [a.name for a in axes] + ["mean weight change", "saturations per step, by tensor",
                                       "frozen, by tensor"]
    return ("| " + " | ".join(header) + " |\n" + "|---" * len(header) + "|\n"
            + "\n".join(lines) + "\n")
