"""`qgpt bench`: training speed and accuracy of float and integer runs, side by side.

Runs are timed in one process, one after another, several times (repeats),
and the median is reported together with the ratio to the float reference,
since absolute times on shared machines are noisy: by the wall clock ("x float") and by
the process's CPU time ("cpu x float"), which the other processes of a shared machine
disturb less (they still share its caches).
"""

import statistics
import time
from contextlib import contextmanager
from dataclasses import replace

from tabulate import tabulate

from qgpt import data, float_ops, int_model, int_ops, qformat
from qgpt.optim import FloatAdam
from qgpt.policy import UPDATE_ROUNDINGS
from qgpt.train import LOSS_BATCH, TrainConfig, make_model, nll, training_steps


def time_training(cfg, ds):
    """Train cfg on ds in memory; returns (seconds of the training loop, model, losses)."""
    seconds, _, model, losses = time_training_cpu(cfg, ds)
    return seconds, model, losses


def time_training_cpu(cfg, ds):
    """time_training, with the loop's CPU seconds too (the process's, time.process_time):
    (seconds, cpu seconds, model, losses)."""
    model = make_model(cfg)
    t0, c0 = time.perf_counter(), time.process_time()
    losses = [loss for _, loss, _ in training_steps(model, ds, cfg, loss_batch=LOSS_BATCH)]
    return time.perf_counter() - t0, time.process_time() - c0, model, losses


def check_runs(formats, roundings):
    """The canonical format names and the rounding modes; BenchError if one is not valid."""
    names = []
    for f in formats:
        try:
            names.append(qformat.parse(f).name)
        except qformat.FormatError as e:
            raise BenchError(f"--formats: {e}") from None
    for r in roundings:
        if r not in UPDATE_ROUNDINGS:
            raise BenchError(f"--rounding: {r[:40]!r} is unknown: want one or more of "
                             f"{', '.join(UPDATE_ROUNDINGS)}, comma-separated")
    if not names or not roundings:
        raise BenchError("--formats and --rounding each need at least one value")
    return names, list(roundings)


class BenchError(ValueError):
    """A bad bench option, worded for the user."""


def bench(formats=("q4.12", "q8.8"), roundings=("nearest",), steps=1000, seed=42,
          repeats=3, data_path=None, log=print):
    formats, roundings = check_runs(formats, roundings)
    data_path = str(data_path or data.DEFAULT_DATA)
    ds = data.load(data_path)
    base = TrainConfig(data=data_path, steps=steps, seed=seed)
    configs = [base] + [replace(base, format=f, rounding=r) for f in formats for r in roundings]
    times = {c: [] for c in configs}
    cpu = {c: [] for c in configs}
    results = {}
    for rep in range(repeats):
        for c in configs:  # interleaved, so slow phases of the machine hit every config
            seconds, cpu_seconds, model, losses = time_training_cpu(c, ds)
            times[c].append(seconds)
            cpu[c].append(cpu_seconds)
            if rep == 0:
                tail = losses[-100:]
                results[c] = (sum(tail) / len(tail), nll(model, ds.val))
    float_s, float_cpu = statistics.median(times[base]), statistics.median(cpu[base])
    rows = []
    for c in configs:
        s = statistics.median(times[c])
        label = "float64" if c.format == "float" else f"{c.format} {c.rounding}"
        val = results[c][1]
        rows.append([label, f"{steps / s:.0f}", f"{s:.2f}", f"{s / float_s:.2f}",
                     f"{statistics.median(cpu[c]) / float_cpu:.2f}",
                     f"{results[c][0]:.4f}", "none" if val is None else f"{val:.4f}"])
    table = tabulate(rows, headers=["run", "steps/s", "seconds", "x float", "cpu x float",
                                    "train_loss_last100", "val_nll"], tablefmt="github")
    log(f"data: {data_path} ({len(ds.train)} train / {len(ds.val)} val names), {steps} steps, "
        f"seed {seed}, median of {repeats}")
    if not ds.val:
        log("val_nll: none (no name fell in the validation split)")
    log(table)
    return rows


# --- where a step's time goes, op by op (--breakdown) ---


def _timed(f, label, totals, depth):
    """f, adding its seconds to totals[label] when no other timed function is running."""
    def timed(*args, **kwargs):
        if depth[0]:
            return f(*args, **kwargs)
        depth[0] += 1
        t0 = time.perf_counter()
        try:
            return f(*args, **kwargs)
        finally:
            totals[label] = totals.get(label, 0.0) + time.perf_counter() - t0
            depth[0] -= 1
    return timed


@contextmanager
def timed_ops(totals):
    """Within it, every forward/backward op of float_ops and int_ops, both optimizers' step
    ("adam"), the integer step's reported losses and its deferred saturation checks
    ("saturation_checks": one by range at the step's end, int_ctx.Ctx.defer) add their
    seconds into totals (the outermost call only: an op's own helpers count in it)."""
    targets = [(m, n) for m in (float_ops, int_ops) for n in dir(m)
               if n.endswith(("_forward", "_backward"))]
    targets += [(FloatAdam, "step"), (int_model.IntAdam, "step"),
                (int_model, "reported_losses_of_steps"), (int_ops.Ctx, "deferred_clip_nothing")]
    labels = {"step": "adam", "deferred_clip_nothing": "saturation_checks",
              "reported_losses_of_steps": "reported_losses"}
    depth, saved = [0], []
    for owner, name in targets:
        f = getattr(owner, name)
        saved.append((owner, name, f))
        setattr(owner, name, _timed(f, labels.get(name, name), totals, depth))
    try:
        yield
    finally:
        for owner, name, f in saved:
            setattr(owner, name, f)


def breakdown(configs, ds, repeats, log=print):
    """Microseconds per step by op for each config (median of repeats, interleaved), with
    the rest of the step (data order, encoding, the model's glue) and the total."""
    per = {c: [] for c in configs}
    for _ in range(repeats):
        for c in configs:
            totals = {}
            with timed_ops(totals):
                seconds, _, _ = time_training(c, ds)
            totals["(rest of the step)"] = seconds - sum(totals.values())
            totals["total"] = seconds
            per[c].append(totals)
    labels = sorted({k for c in configs for t in per[c] for k in t},
                    key=lambda k: (k in ("(rest of the step)", "total"), k == "total",
                                   -statistics.median(t.get(k, 0.0) for t in per[configs[-1]])))
    heads = ["op (us/step)"] + ["float64" if c.format == "float" else f"{c.format} {c.rounding}"
                                for c in configs]
    rows = [[k] + [f"{statistics.median(t.get(k, 0.0) for t in per[c]) / c.steps * 1e6:.1f}"
                   for c in configs] for k in labels]
    log(tabulate(rows, headers=heads, tablefmt="github"))
    return rows


def main(args):
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    roundings = [r.strip() for r in args.rounding.split(",") if r.strip()]
    if getattr(args, "breakdown", False):
        formats, roundings = check_runs(formats, roundings)
        ds = data.load(str(args.data or data.DEFAULT_DATA))
        base = TrainConfig(data=str(args.data or data.DEFAULT_DATA), steps=args.steps,
                           seed=args.seed)
        configs = [base] + [replace(base, format=f, rounding=r) for f in formats
                            for r in roundings]
        print(f"microseconds per training step, by op ({args.steps} steps, median of "
              f"{args.repeats}; timers add about a microsecond per op call)")
        breakdown(configs, ds, args.repeats)
        return 0
    bench(formats=formats, roundings=roundings, steps=args.steps, seed=args.seed,
          repeats=args.repeats, data_path=args.data)
    return 0
