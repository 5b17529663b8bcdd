"""Aggregation: one row per format and rounding over the seeds, and the tables made of them."""

import numpy as np
from tabulate import tabulate

from qgpt import qformat
from qgpt.params import SLOTS
from qgpt.sweep.execute import TIMING_KEY


def _std(a):
    return float(np.std(a, ddof=1)) if len(a) > 1 else 0.0


def summarize(sweep, records):
    """One row per format and rounding (float first): numbers, no formatting."""
    float_val = {r["config"]["seed"]: r["summary"]["val_nll"] for r in records
                 if r["config"]["format"] == "float"}
    float_mean = float(np.mean(list(float_val.values())))
    groups = [("float", None)] + [(f, r) for f in sweep.formats for r in sweep.roundings]
    rows = []
    for fmt, rounding in groups:
        recs = [r for r in records if r["config"]["format"] == fmt
                and (rounding is None or r["config"]["rounding"] == rounding)]
        s = [r["summary"] for r in recs]
        val = np.array([x["val_nll"] for x in s])
        paired = val - np.array([float_val[x["seed"]] for x in s])
        row = {"format": fmt, "rounding": rounding, "bits": 64, "int_bits": None,
               "frac_bits": None, "range_lo": None, "range_hi": None, "step": None}
        if fmt != "float":
            q = qformat.parse(fmt)
            lo, hi = q.range()
            row.update(bits=q.bits, int_bits=q.int_bits, frac_bits=q.frac_bits, range_lo=lo,
                       range_hi=hi + q.step, step=q.step)
        row.update({
            "seeds": len(s),
            "val_nll_mean": float(val.mean()),
            "val_nll_std": _std(val),
            "val_nll_min": float(val.min()),
            "val_nll_max": float(val.max()),
            "delta_float": float(val.mean()) - float_mean,
            "delta_float_paired_std": _std(paired),
            "train_loss_last100": float(np.mean([x["train_loss_last100"] for x in s])),
            "saturations_per_step": (float(np.mean([x["saturations_per_step"] for x in s]))
                                     if fmt != "float" else None),
            "stalled_update_rate": (float(np.mean([x["stalled_update_rate"] for x in s]))
                                    if fmt != "float" else None),
            "frozen_fraction": float(np.mean([x["frozen_fraction"] for x in s])),
            "weight_mean_change": float(np.mean([x["weight_mean_change"] for x in s])),
            "seconds_per_run": float(np.mean([r[TIMING_KEY]["train_seconds"]
                                              + r[TIMING_KEY]["eval_seconds"] for r in recs])),
        })
        rows.append(row)
    return rows


TABLE_HEADERS = ["format", "rounding", "bits", "range", "step", "val_nll", "std", "min-max",
                 "Δ float", "Δ std", "train last100", "sat/step", "stalled %", "frozen %",
                 "s/run"]


def num(x, spec):
    return "-" if x is None else format(x, spec)


def table_rows(rows):
    out = []
    for r in rows:
        is_float = r["format"] == "float"
        out.append([
            "float64" if is_float else r["format"],
            "-" if is_float else r["rounding"],
            r["bits"],
            "-" if is_float else f"[{r['range_lo']:g}, {r['range_hi']:g})",
            "-" if is_float else f"2^-{r['frac_bits']}",
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


def format_table(rows, tablefmt="simple"):
    return tabulate(table_rows(rows), headers=TABLE_HEADERS, tablefmt=tablefmt,
                    disable_numparse=True)


def _percent(fraction):
    return "<0.1%" if 100 * fraction < 0.05 else f"{100 * fraction:.1f}%"


def by_tensor_table(sweep, records, rows):
    """Markdown: per format and rounding (float first), the saturations per step and the
    frozen fraction of each tensor (means over seeds, zeros left out), and the mean
    weight change."""
    lines = []
    for row in rows:
        f, rnd = row["format"], row["rounding"]
        recs = [r["summary"] for r in records if r["config"]["format"] == f
                and (rnd is None or r["config"]["rounding"] == rnd)]
        tensors = sorted({t for s in recs for t in s.get("saturations", {})})
        per = {t: np.mean([s["saturations"].get(t, 0) for s in recs]) / sweep.steps
               for t in tensors}
        sat = ", ".join(f"{t} {v:.3g}" for t, v in sorted(per.items(), key=lambda kv: -kv[1])
                        if v > 0) or ("-" if f == "float" else "none")
        frozen = {s.name: np.mean([x["frozen_by_tensor"][s.name] for x in recs]) / s.size
                  for s in SLOTS}
        fro = ", ".join(f"{t} {_percent(v)}" for t, v in frozen.items() if v > 0) or "none"
        name = "float64" if f == "float" else f
        drift = f"{row['weight_mean_change']:+.4f}"
        lines.append(f"| {name} | {rnd or '-'} | {drift} | {sat} | {fro} |")
    return ("| format | rounding | mean weight change | saturations per step, by tensor "
            "| frozen, by tensor |\n|---|---|---|---|---|\n" + "\n".join(lines) + "\n")
