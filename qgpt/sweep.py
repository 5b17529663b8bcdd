"""`qgpt sweep`: the float reference and every format x rounding x seed, trained and compared.

Every run is an ordinary qgpt training run (train.py's TrainConfig, make_model,
data order and nll), held in memory. Runs are independent and deterministic, so
they go to a pool of worker processes and every result is the same whatever
--jobs is; only the timings differ.

Seeds are the base seed plus i, i = 0..N-1 (--seed 42 --seeds 3: 42, 43, 44).
With the default base the first seed of each run is exactly what
`qgpt train --format F --rounding R` trains. The float reference trains with
the same seeds, hence the same initial weights and data order, so every integer
run is also compared with the float run of its own seed (the paired difference).

The out folder:
    results.json     the command, the dataset, every run's resolved config, policy,
                     summary and binned curves, and the per-format summary rows
    results.csv      the table in numbers: one row per format and rounding
    runs.csv         one row per run
    results.md       the table, the saturations by tensor, the runs, the definitions
    val_nll.png      validation NLL against format (float as a line and a band)
    loss_curves.png  smoothed training loss against step, a panel per format
    loss_gap.png     the same minus the float run of the same seed
    stalled.png      the stalled-update rate against step, a panel per format

Definitions (also written into results.md):
    saturations per step  values clipped by a saturating store (every tensor of the
                          forward pass, backward pass and Adam, as counted by
                          int_ops.Ctx) per training step; validation is not counted
    stalled-update rate   updates with Adam's step delta != 0 that rounded to 0, per
                          parameter per step (int_model's stalled_update_rate)
    frozen                parameters whose final value equals their initial value
"""

import csv
import hashlib
import io
import json
import math
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from tabulate import tabulate

from qgpt import checkpoint, data, qformat
from qgpt.params import N_PARAMS, SLOTS
from qgpt.policy import make_policy
from qgpt.train import TrainConfig, make_model, nll, training_steps

CURVE_BINS = 40  # points of each run's binned curves in results.json
SMOOTH_FRACTION = 10  # loss curves: moving average over steps // 10 steps
GAP_SYMLOG_ABOVE = 0.1  # loss_gap.png: panels with larger gaps get a symlog y scale,
GAP_LINEAR = 0.02  # linear within +-0.02 nats, logarithmic beyond
TIMING_KEY = "timing"  # the only part of a run record that depends on the machine


class SweepError(ValueError):
    """A bad sweep option, worded for the user (qgpt.cli prints it, exit code 2)."""


@dataclass(frozen=True)
class SweepConfig:
    formats: tuple  # Q formats, e.g. ("q8.8", "q4.12"); the float reference always runs
    roundings: tuple = ("nearest",)  # weight-update rounding modes
    seeds: int = 3  # runs per format and rounding, seeds seed .. seed + seeds - 1
    seed: int = 42  # the base seed
    steps: int = 1000  # training steps per run
    lr: float = 0.01  # peak learning rate
    data: str = str(data.DEFAULT_DATA)  # names file
    lowercase: bool = False  # lowercase names and drop those with other characters
    skip_long: bool = False  # skip names longer than the block size

    def seed_list(self):
        return [self.seed + i for i in range(self.seeds)]

    def run_configs(self):
        """Every run's TrainConfig: float for each seed, then format x rounding x seed."""
        base = TrainConfig(data=self.data, steps=self.steps, lr=self.lr, lowercase=self.lowercase,
                           skip_long=self.skip_long, checkpoint_every=self.steps)
        runs = [replace(base, seed=s) for s in self.seed_list()]
        for f in self.formats:
            for r in self.roundings:
                runs += [replace(base, format=f, rounding=r, seed=s) for s in self.seed_list()]
        return runs

    def command(self):
        """The qgpt command line that reproduces these results (--jobs and --out aside)."""
        parts = ["qgpt sweep", f"--formats {','.join(self.formats)}",
                 f"--rounding {','.join(self.roundings)}", f"--seeds {self.seeds}",
                 f"--seed {self.seed}", f"--steps {self.steps}", f"--lr {self.lr:g}",
                 f"--data {self.data}"]
        parts += ["--lowercase"] * self.lowercase + ["--skip-long"] * self.skip_long
        return " ".join(parts)


def _split(text):
    return [t.strip() for t in str(text).split(",") if t.strip()]


def make_config(formats, roundings="nearest", seeds=3, seed=42, steps=1000, lr=0.01,
                data_path=None, lowercase=False, skip_long=False):
    """A checked SweepConfig from user values (comma-separated strings or lists);
    SweepError naming the bad value otherwise. Nothing is trained here."""
    fmts = _split(formats) if isinstance(formats, str) else list(formats)
    if not fmts:
        raise SweepError("--formats is empty: give Q formats like q8.8,q4.12")
    names = []
    for f in fmts:
        if str(f).strip().lower() == "float":
            raise SweepError("--formats: the float reference always runs; list only Q formats")
        try:
            name = qformat.parse(f).name
        except qformat.FormatError as e:
            raise SweepError(f"--formats: {e}") from None
        if name in names:
            raise SweepError(f"--formats: {name} is listed twice")
        names.append(name)
    rounds = _split(roundings) if isinstance(roundings, str) else list(roundings)
    if not rounds:
        raise SweepError(f"--rounding is empty: give one or more of {', '.join(qformat.ROUNDINGS)}")
    for r in rounds:
        if r not in qformat.ROUNDINGS:
            raise SweepError(f"--rounding: {r!r} is unknown: want one or more of "
                             f"{', '.join(qformat.ROUNDINGS)}, comma-separated")
    if len(set(rounds)) != len(rounds):
        raise SweepError("--rounding: a mode is listed twice")
    if not isinstance(seeds, int) or seeds < 1:
        raise SweepError(f"--seeds {seeds}: want at least 1 seed")
    if not isinstance(steps, int) or steps < 1:
        raise SweepError(f"--steps {steps}: want at least 1 step")
    cfg = SweepConfig(formats=tuple(names), roundings=tuple(rounds), seeds=seeds, seed=seed,
                      steps=steps, lr=lr, data=str(data_path or _shown_path(data.DEFAULT_DATA)),
                      lowercase=lowercase, skip_long=skip_long)
    for f in cfg.formats:  # the whole policy, as each run will build it (lr, update shift)
        for r in cfg.roundings:
            try:
                make_policy(f, r, "", lr)
            except qformat.FormatError as e:
                raise SweepError(f"{f} {r}: {e}") from None
    return cfg


def _shown_path(path):
    """path relative to the working folder when inside it (results stay machine-neutral)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def check_out_dir(out):
    """Create out if needed and prove a file can be written there, before any training."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SweepError(f"--out {out}: is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".qgpt-write-test-"):
            pass
    except OSError as e:
        raise SweepError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    return out


# --- one run (in a worker process) ---

_DATASETS = {}  # per process: (path, lowercase, skip_long) -> data.Dataset


def _dataset(cfg):
    k = (cfg.data, cfg.lowercase, cfg.skip_long)
    if k not in _DATASETS:
        _DATASETS[k] = data.load(*k)
    return _DATASETS[k]


def _weights(model):
    """What the optimizer updates: float64 params, or the integer weight store (raw)."""
    return model.store if model.kind == "int" else model.flat


def _real(model, weights):
    """Weights from _weights() as real numbers."""
    if model.kind == "int":
        return qformat.to_float(weights, model.policy.weight_store.frac_bits)
    return weights


def _train_command(cfg):
    if cfg.format == "float":
        kind = "--float"
    else:
        kind = f"--format {cfg.format} --rounding {cfg.rounding}"
    extra = " --lowercase" * cfg.lowercase + " --skip-long" * cfg.skip_long
    return (f"qgpt train {kind} --seed {cfg.seed} --steps {cfg.steps} --lr {cfg.lr:g} "
            f"--data {cfg.data}{extra}")


def _bins(values, steps):
    """Means over CURVE_BINS equal bins of steps, 6 significant digits."""
    width = max(1, math.ceil(steps / CURVE_BINS))
    a = np.asarray(values, dtype=np.float64)
    return width, [float(f"{a[i : i + width].mean():.6g}") for i in range(0, len(a), width)]


def run_one(cfg):
    """Train cfg in memory and evaluate it; returns (record, per-step losses)."""
    ds = _dataset(cfg)
    model = make_model(cfg)
    start = _weights(model).copy()
    is_int = model.kind == "int"
    losses, sats, stalled = [], [], []
    t0 = time.perf_counter()
    for _, loss, tele in training_steps(model, ds, cfg):  # train.train's loop, no run folder
        losses.append(loss)
        sats.append(tele.get("saturations", 0))
        stalled.append(tele.get("stalled_updates", 0.0))
    train_seconds = time.perf_counter() - t0
    # snapshot the training telemetry: evaluation runs the forward pass through the same
    # saturation counters
    by_tensor = dict(sorted(model.ctx.saturations.items())) if is_int else {}
    unchanged = _weights(model) == start  # (N_PARAMS,) bool
    change = _real(model, _weights(model)) - _real(model, start)  # (N_PARAMS,) real units
    t1 = time.perf_counter()
    val = nll(model, ds.val)
    eval_seconds = time.perf_counter() - t1
    sat_eval = sum(model.ctx.saturations.values()) - sum(by_tensor.values()) if is_int else 0

    summary = {
        "kind": model.kind,
        "format": cfg.format,
        "rounding": cfg.rounding if is_int else None,
        "seed": cfg.seed,
        "steps": cfg.steps,
        "params": N_PARAMS,
        "train_loss_first100": float(np.mean(losses[:100])),
        "train_loss_last100": float(np.mean(losses[-100:])),
        "val_nll": val,
        "frozen_fraction": float(np.mean(unchanged)),
        "frozen_by_tensor": {s.name: int(unchanged[s.offset : s.offset + s.size].sum())
                             for s in SLOTS},
        "weight_mean_change": float(change.mean()),
    }
    if is_int:
        summary.update({
            "saturations": by_tensor,
            "saturations_total": int(sum(by_tensor.values())),
            "saturations_per_step": sum(by_tensor.values()) / cfg.steps,
            "saturations_eval": int(sat_eval),
            "stalled_update_rate": model.stalled_total / (cfg.steps * N_PARAMS),
        })
    width, loss_curve = _bins(losses, cfg.steps)
    curve = {"bin_steps": width, "loss": loss_curve}
    if is_int:
        curve["saturations_per_step"] = _bins(sats, cfg.steps)[1]
        curve["stalled_update_rate"] = _bins(stalled, cfg.steps)[1]
    record = {
        "label": run_label(cfg),
        "command": _train_command(cfg),
        "config": asdict(cfg),
        "policy": model.policy.describe() if is_int else None,
        "summary": summary,
        "curve": curve,
        TIMING_KEY: {"train_seconds": train_seconds, "eval_seconds": eval_seconds,
                     "steps_per_second": cfg.steps / max(train_seconds, 1e-9)},
    }
    return record, losses


def run_label(cfg):
    if cfg.format == "float":
        return f"float64 seed {cfg.seed}"
    return f"{cfg.format} {cfg.rounding} seed {cfg.seed}"


def default_jobs():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def run_all(configs, jobs, log):
    """Every run, in a pool of jobs spawned processes (or in this one for jobs 1);
    a line per finished run. Returns (records, losses) in the order of configs."""
    results = [None] * len(configs)
    total, t0 = len(configs), time.perf_counter()
    width = len(str(total))

    def report(done, i):
        rec = results[i][0]
        t = rec[TIMING_KEY]
        elapsed = time.perf_counter() - t0
        eta = elapsed / done * (total - done)
        log(f"[{done:>{width}}/{total}] {rec['label']:<28} val_nll {rec['summary']['val_nll']:.4f}"
            f"  train {t['train_seconds']:5.1f} s + val {t['eval_seconds']:4.1f} s"
            f"  | elapsed {elapsed:4.0f} s, ETA {eta:4.0f} s")

    if jobs == 1:
        for i, cfg in enumerate(configs):
            results[i] = run_one(cfg)
            report(i + 1, i)
    else:
        # spawn: a fresh interpreter per worker, the same on every platform. The slower
        # integer runs go first, so the float runs fill the gaps at the end.
        order = sorted(range(total), key=lambda i: configs[i].format == "float")
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(jobs, total), mp_context=ctx) as pool:
            futures = {pool.submit(run_one, configs[i]): i for i in order}
            try:
                for done, fut in enumerate(as_completed(futures), 1):
                    i = futures[fut]
                    results[i] = fut.result()
                    report(done, i)
            except BrokenProcessPool:
                raise SweepError("a worker process died (killed, out of memory, or it could "
                                 "not start: workers re-import the main script, so a script "
                                 "read from stdin needs --jobs 1); rerun with --jobs 1 to see "
                                 "the cause") from None
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    return [r[0] for r in results], [r[1] for r in results]


# --- summary over seeds ---


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


def _num(x, spec):
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
            _num(r["saturations_per_step"], ".2f"),
            _num(None if is_float else 100 * r["stalled_update_rate"], ".1f"),
            f"{100 * r['frozen_fraction']:.1f}",
            f"{r['seconds_per_run']:.1f}",
        ])
    return out


def format_table(rows, tablefmt="simple"):
    return tabulate(table_rows(rows), headers=TABLE_HEADERS, tablefmt=tablefmt,
                    disable_numparse=True)


# --- output files ---

DEFINITIONS = """\
- **val_nll**: mean per-token negative log-likelihood (nats) on the validation names, in
  float64 from each model's own logits (`qgpt.train.nll`). **std**: sample standard deviation
  over seeds (ddof = 1); **min-max**: over seeds.
- **Δ float**: the format's mean val_nll minus the float reference's mean val_nll.
  **Δ std**: the standard deviation over seeds of the paired difference (integer run minus
  the float run with the same seed: same initial weights, same data order).
- **train last100**: mean training loss of the last 100 steps (mean over seeds).
- **sat/step**: values clipped by a saturating store, summed over every tensor of the forward
  pass, backward pass and Adam, per training step (validation not counted).
- **stalled %**: parameter updates whose Adam step was non-zero but rounded to zero, in % of
  all parameter updates (steps x 4,192).
- **frozen %**: parameters whose final value equals their initial value exactly.
- **mean weight change** (below, and in results.csv): the mean over all 4,192 parameters of
  final minus initial value, in real units: a drift of every weight in one direction shows
  a biased rounding.
- **s/run**: seconds of training plus validation per run (one process, mean over seeds).
"""


def _git_commit():
    """The qgpt commit, with " (+ uncommitted changes in qgpt/)" when the package differs
    from it; None outside a git checkout."""
    here = Path(__file__).resolve().parent

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
    ds = data.load(sweep.data, sweep.lowercase, sweep.skip_long)
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


RUN_FIELDS = ["format", "rounding", "seed", "steps", "val_nll", "train_loss_first100",
              "train_loss_last100", "saturations_per_step", "saturations_eval",
              "stalled_update_rate", "frozen_fraction", "weight_mean_change"]


def _percent(fraction):
    return "<0.1%" if 100 * fraction < 0.05 else f"{100 * fraction:.1f}%"


def _by_tensor_table(sweep, records, rows):
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


def write_results(out, sweep, records, losses, rows, command, info, seconds, jobs):
    out = Path(out)
    doc = {
        "command": command,
        "equivalent_command": sweep.command(),
        "sweep": asdict(sweep),
        "seeds": sweep.seed_list(),
        "dataset": info,
        "qgpt_commit": _git_commit(),
        "wall_seconds": seconds,
        "jobs": jobs,
        "definitions": DEFINITIONS,
        "rows": rows,
        "runs": records,
    }
    _write(out / "results.json", json.dumps(doc, indent=1) + "\n")
    header = list(rows[0])
    _write(out / "results.csv", _csv_text(header, [[r[k] for k in header] for r in rows]))
    run_rows = [[r["summary"].get(k) for k in RUN_FIELDS] + [r[TIMING_KEY]["train_seconds"],
                r[TIMING_KEY]["eval_seconds"]] for r in records]
    _write(out / "runs.csv", _csv_text(RUN_FIELDS + ["train_seconds", "eval_seconds"], run_rows))

    plots = write_plots(out, sweep, records, losses, rows)
    md = [
        "# qgpt sweep\n",
        f"Command: `{command}`  ",
        f"Equivalent: `{sweep.command()}`  ",
        f"Dataset: `{info['path']}` ({info['train']} train / {info['val']} validation names, "
        f"sha256 `{info['sha256'][:16]}...`), {sweep.steps} steps, lr {sweep.lr:g}, seeds "
        f"{', '.join(map(str, sweep.seed_list()))}  ",
        f"qgpt commit: `{doc['qgpt_commit']}`; {len(records)} runs in {seconds:.0f} s with "
        f"{jobs} processes. Every run's resolved configuration is in `results.json`.\n",
        format_table(rows, "github") + "\n",
        DEFINITIONS,
        "## Weight drift, saturations and frozen parameters by tensor (means over seeds)\n",
        _by_tensor_table(sweep, records, rows),
    ]
    md += [f"![{p.stem}]({p.name})\n" for p in plots]
    md += ["## Runs\n", tabulate(
        [[r["label"], f"{r['summary']['val_nll']:.4f}", f"{r['summary']['train_loss_last100']:.4f}",
          _num(r["summary"].get("saturations_per_step"), ".2f"),
          _num(r["summary"].get("stalled_update_rate"), ".4f"),
          f"{r['summary']['frozen_fraction']:.4f}", f"`{r['command']}`"] for r in records],
        headers=["run", "val_nll", "train last100", "sat/step", "stalled", "frozen", "command"],
        tablefmt="github", disable_numparse=True) + "\n"]
    _write(out / "results.md", "\n".join(md))


def _seeds(sweep):
    return f"{sweep.seeds} seed{'s' if sweep.seeds > 1 else ''}"


def _smooth(y, window):
    """Trailing moving average (shorter at the start)."""
    c = np.cumsum(np.insert(np.asarray(y, dtype=np.float64), 0, 0.0))
    n = np.arange(1, len(y) + 1)
    lo = np.maximum(0, n - window)
    return (c[n] - c[lo]) / (n - lo)


def write_plots(out, sweep, records, losses, rows):
    """val_nll.png and loss_curves.png; [] (and a note) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("qgpt sweep: plots skipped: matplotlib is not installed (pip install -e '.[plot]')",
              file=sys.stderr)
        return []
    fl = rows[0]
    colors = {"nearest": "tab:blue", "floor": "tab:orange", "stochastic": "tab:green"}
    x = np.arange(len(sweep.formats))
    n_round = len(sweep.roundings)

    # validation NLL against format: full scale, and zoomed on the float reference
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
                        capsize=3, color=colors.get(rnd), label=f"{rnd} (mean, min-max)")
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
    paths = [out / "val_nll.png"]
    _save_fig(fig, paths[-1])
    plt.close(fig)

    # smoothed training loss against step, one panel per format
    window = max(1, sweep.steps // SMOOTH_FRACTION)
    steps = np.arange(1, sweep.steps + 1)

    def mean_curve(pick):
        ys = [losses[i] for i, r in enumerate(records) if pick(r["config"])]
        return _smooth(np.mean(ys, axis=0), window)

    float_curve = mean_curve(lambda c: c["format"] == "float")
    ncols = min(4, len(sweep.formats))
    nrows = math.ceil(len(sweep.formats) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3.2 * nrows), sharex=True,
                             sharey=True, squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= len(sweep.formats):
            ax.axis("off")
            continue
        f = sweep.formats[k]
        ax.plot(steps, float_curve, color="black", ls="--", lw=1, label="float64")
        for rnd in sweep.roundings:
            ax.plot(steps, mean_curve(lambda c, f=f, rnd=rnd: c["format"] == f
                                      and c["rounding"] == rnd),
                    color=colors.get(rnd), lw=1.2, label=rnd)
        ax.set_title(f)
        ax.grid(alpha=0.3)
        if k == 0:
            ax.legend(fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("step")
    for ax in axes[:, 0]:
        ax.set_ylabel("training loss")
    fig.suptitle(f"training loss, mean over {_seeds(sweep)}, {window}-step moving average")
    fig.tight_layout()
    paths.append(out / "loss_curves.png")
    _save_fig(fig, paths[-1])
    plt.close(fig)

    # the same curves minus the float run of the same seed (same init, same names)
    float_loss = {r["config"]["seed"]: losses[i] for i, r in enumerate(records)
                  if r["config"]["format"] == "float"}

    def gap_curve(f, rnd):
        ys = [np.asarray(losses[i]) - float_loss[r["config"]["seed"]]
              for i, r in enumerate(records)
              if r["config"]["format"] == f and r["config"]["rounding"] == rnd]
        return _smooth(np.mean(ys, axis=0), window)

    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3.2 * nrows), sharex=True,
                             squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= len(sweep.formats):
            ax.axis("off")
            continue
        f = sweep.formats[k]
        ax.axhline(0, color="black", ls="--", lw=1)
        gaps = {rnd: gap_curve(f, rnd) for rnd in sweep.roundings}
        for rnd, y in gaps.items():
            ax.plot(steps, y, color=colors.get(rnd), lw=1.2, label=rnd)
        if max(np.abs(y).max() for y in gaps.values()) > GAP_SYMLOG_ABOVE:
            # linear within +-GAP_LINEAR nats, logarithmic beyond: small gaps and
            # divergence stay readable in one panel
            ax.set_yscale("symlog", linthresh=GAP_LINEAR)
            ax.set_title(f"{f} (symlog scale)")
        else:
            ax.set_title(f)
        ax.grid(alpha=0.3)
        if k == 0:
            ax.legend(fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("step")
    for ax in axes[:, 0]:
        ax.set_ylabel("loss - float loss (nats)")
    fig.suptitle(f"training loss minus the float run with the same seed, mean over "
                 f"{_seeds(sweep)}, {window}-step moving average")
    fig.tight_layout()
    paths.append(out / "loss_gap.png")
    _save_fig(fig, paths[-1])
    plt.close(fig)

    # stalled-update rate against step (binned curves of results.json, mean over seeds)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3.2 * nrows), sharex=True,
                             sharey=True, squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= len(sweep.formats):
            ax.axis("off")
            continue
        f = sweep.formats[k]
        for rnd in sweep.roundings:
            curves = [r["curve"] for r in records
                      if r["config"]["format"] == f and r["config"]["rounding"] == rnd]
            width = curves[0]["bin_steps"]
            y = 100 * np.mean([c["stalled_update_rate"] for c in curves], axis=0)
            x = np.arange(len(y)) * width + width / 2
            ax.plot(x, y, color=colors.get(rnd), lw=1.2, marker=".", ms=3, label=rnd)
        ax.set_title(f)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        if k == 0:
            ax.legend(fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("step")
    for ax in axes[:, 0]:
        ax.set_ylabel("stalled updates (%)")
    fig.suptitle(f"updates that rounded to zero, % of parameters per step, mean over "
                 f"{_seeds(sweep)} (learning rate decays linearly to 0)")
    fig.tight_layout()
    paths.append(out / "stalled.png")
    _save_fig(fig, paths[-1])
    plt.close(fig)
    return paths


def _save_fig(fig, path):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    checkpoint.write_atomic(path, buf.getvalue())


# --- the sweep ---


def sweep(cfg, out, jobs=None, command=None, log=None):
    """Train every run of cfg, write the results into out; returns (rows, records).

    Every check (formats, roundings, seeds, data, out folder) happens before training.
    """
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    jobs = default_jobs() if jobs is None else jobs
    if not isinstance(jobs, int) or jobs < 1:
        raise SweepError(f"--jobs {jobs}: want at least 1 process")
    info = dataset_info(cfg)  # a DataError (a ValueError) for a bad --data
    if not info["val"]:  # a sweep compares validation NLLs: it needs some
        raise SweepError(f"--data {cfg.data}: no name fell in the validation split (about one "
                         "in ten does); give more names")
    out = check_out_dir(out)
    configs = cfg.run_configs()
    log(f"sweep: {len(configs)} runs ({len(cfg.formats)} formats x {len(cfg.roundings)} "
        f"roundings x {cfg.seeds} seeds + float x {cfg.seeds}), {cfg.steps} steps each, "
        f"{jobs} processes; data {info['path']} ({info['train']} train / {info['val']} val)")
    t0 = time.perf_counter()
    records, losses = run_all(configs, jobs, log)
    seconds = time.perf_counter() - t0
    rows = summarize(cfg, records)
    write_results(out, cfg, records, losses, rows, command or cfg.command(), info, seconds, jobs)
    log(f"sweep: {len(configs)} runs in {seconds:.1f} s -> {out}/results.md")
    return rows, records


# --- the command line ---


def cmd_sweep(args):
    cfg = make_config(args.formats, args.rounding, args.seeds, args.seed, args.steps, args.lr,
                      args.data, args.lowercase, args.skip_long)
    cmd = cfg.command() + f" --out {args.out}"
    rows, _ = sweep(cfg, args.out, jobs=args.jobs, command=cmd)
    print(format_table(rows))
    return 0


def add_sweep_parser(sub):
    """Register `qgpt sweep` on an argparse subparsers object."""
    from qgpt.cli import _learning_rate, _seed  # the checked option types

    p = sub.add_parser("sweep", help="train float and every format x rounding x seed; "
                                     "table, CSV, JSON, markdown and plots")
    p.add_argument("--formats", required=True, help="comma-separated Q formats, e.g. q8.8,q4.12")
    p.add_argument("--rounding", default="nearest",
                   help="comma-separated weight-update roundings: nearest,floor,stochastic "
                        "(default nearest)")
    p.add_argument("--seeds", type=int, default=3,
                   help="runs per format and rounding, seeds SEED..SEED+N-1 (default 3)")
    p.add_argument("--seed", type=_seed, default=42, help="the first seed (default 42)")
    p.add_argument("--steps", type=int, default=1000, help="training steps per run (default 1000)")
    p.add_argument("--lr", type=_learning_rate, default=0.01,
                   help="peak learning rate, 0 < lr < 1 (default 0.01)")
    p.add_argument("--data", default=None, help="names file (default: data/names.txt)")
    p.add_argument("--lowercase", action="store_true",
                   help="lowercase names and drop those with characters outside a-z")
    p.add_argument("--skip-long", action="store_true", help="skip names longer than 15 letters")
    p.add_argument("--jobs", type=int, default=None,
                   help="worker processes (default: every core); results do not depend on it")
    p.add_argument("--out", default="runs/sweep", help="results folder (default runs/sweep)")
    p.set_defaults(func=cmd_sweep)
    return p
