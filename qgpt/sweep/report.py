"""The out folder's files: results.json, results.csv, runs.csv and results.md."""

import csv
import hashlib
import io
import json
import subprocess
from pathlib import Path

from tabulate import tabulate

from qgpt import checkpoint
from qgpt.sweep.aggregate import TIMING_COLUMNS, by_tensor_table, format_table, num
from qgpt.sweep.axes import AXES
from qgpt.sweep.execute import TIMING_KEY, load_dataset
from qgpt.sweep.plots import write_plots

DEFINITIONS = """\
- **val_nll**: mean per-token negative log-likelihood (nats) on the validation names, in
  float64 from each model's own logits (`qgpt.train.nll`). **std**: sample standard deviation
  over seeds (ddof = 1); **min-max**: over seeds.
- **Δ float**: the row's mean val_nll minus the float reference's mean val_nll at the same
  learning rate and steps. **Δ std**: the standard deviation over seeds of the paired
  difference (integer run minus the float run with the same seed, learning rate and steps:
  same initial weights, same data order).
- **train last100**: mean training loss of the last 100 steps (mean over seeds).
- **sat/step**: values clipped by a saturating store, summed over every tensor of the forward
  pass, backward pass and Adam, per training step (validation not counted).
- **stalled %**: parameter updates whose Adam step was non-zero but rounded to zero, in % of
  all parameter updates (steps x 4,192).
- **frozen %**: parameters whose final value equals their initial value exactly.
- **mean weight change** (below, and in results.csv): the mean over all 4,192 parameters of
  final minus initial value, in real units: a drift of every weight in one direction shows
  a biased rounding.
- **s/run**: seconds of training plus validation per run (one process, mean over seeds);
  the only column that depends on the machine, so it is left out of results.csv.
"""


def _git_commit():
    """The qgpt commit, with " (+ uncommitted changes in qgpt/)" when the package differs
    from it; None outside a git checkout."""
    here = Path(__file__).resolve().parents[1]  # the qgpt package

    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=here,
                              timeout=10, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--", ".")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + (" (+ uncommitted changes in qgpt/)" if dirty else "")


def dataset_info(sweep):
    ds, _ = load_dataset(sweep)  # kept for the runs of this process and its forked workers
    digest = hashlib.sha256(Path(sweep.data).read_bytes()).hexdigest()
    return {"path": sweep.data, "sha256": digest, "train": len(ds.train), "val": len(ds.val),
            "dropped": ds.dropped}


def _csv_text(header, rows):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _write(path, text):
    checkpoint.write_atomic(path, text.encode() if isinstance(text, str) else text)


RUN_FIELDS = ["val_nll", "train_loss_first100", "train_loss_last100", "saturations_per_step",
              "saturations_eval", "stalled_update_rate", "frozen_fraction", "weight_mean_change"]


def write_results(out, sweep, records, losses, rows, command, info, where, seconds, ran,
                  group_by="format", pool=None):
    """Every file of the out folder but the run store. where: the backend in words; seconds
    and ran: this session's wall time and number of runs (the others were resumed); pool:
    a process pool that draws the figures (plots.write_plots), or None."""
    out = Path(out)
    doc = {
        "command": command,
        "equivalent_command": sweep.command(),
        "sweep": sweep.key(),
        "seeds": sweep.seed_list(),
        "dataset": info,
        "qgpt_commit": _git_commit(),
        "wall_seconds": seconds,
        "ran_on": where,
        "runs_this_session": ran,
        "definitions": DEFINITIONS,
        "rows": rows,
        "runs": records,
    }
    _write(out / "results.json", json.dumps(doc, indent=1) + "\n")
    header = [k for k in rows[0] if k not in TIMING_COLUMNS]
    _write(out / "results.csv", _csv_text(header, [[r[k] for k in header] for r in rows]))
    axes = [a.name for a in AXES]
    run_rows = [[r["point"][a] for a in axes] + [r["config"]["seed"]]
                + [r["summary"].get(k) for k in RUN_FIELDS]
                + [r[TIMING_KEY]["train_seconds"], r[TIMING_KEY]["eval_seconds"]] for r in records]
    _write(out / "runs.csv", _csv_text(axes + ["seed"] + RUN_FIELDS
                                       + ["train_seconds", "eval_seconds"], run_rows))

    plots = write_plots(out, sweep, records, losses, rows, group_by, pool)
    steps = ", ".join(map(str, sweep.values("steps")))
    lrs = ", ".join(f"{lr:g}" for lr in sweep.values("lr"))
    md = [
        "# qgpt sweep\n",
        f"Command: `{command}`  ",
        f"Equivalent: `{sweep.command()}`  ",
        f"Dataset: `{info['path']}` ({info['train']} train / {info['val']} validation names, "
        f"sha256 `{info['sha256'][:16]}...`), {steps} steps, lr {lrs}, seeds "
        f"{', '.join(map(str, sweep.seed_list()))}  ",
        f"qgpt commit: `{doc['qgpt_commit']}`; {len(records)} runs, {ran} of them in this "
        f"session ({seconds:.0f} s on {where}). Every run's resolved configuration is in "
        "`results.json`.\n",
        format_table(rows, "github", group_by) + "\n",
        DEFINITIONS,
        "## Weight drift, saturations and frozen parameters by tensor (means over seeds)\n",
        by_tensor_table(records, rows, group_by),
    ]
    md += [f"![{p.stem}]({p.name})\n" for p in plots]
    md += ["## Runs\n", tabulate(
        [[r["label"], f"{r['summary']['val_nll']:.4f}", f"{r['summary']['train_loss_last100']:.4f}",
          num(r["summary"].get("saturations_per_step"), ".2f"),
          num(r["summary"].get("stalled_update_rate"), ".4f"),
          f"{r['summary']['frozen_fraction']:.4f}", f"`{r['command']}`"] for r in records],
        headers=["run", "val_nll", "train last100", "sat/step", "stalled", "frozen", "command"],
        tablefmt="github", disable_numparse=True) + "\n"]
    _write(out / "results.md", "\n".join(md))
